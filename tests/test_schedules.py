"""Tests of scmdm.schedules: α(t), α′(t), the NELBO weight and the reverse unmasking probability."""

from __future__ import annotations

import math

import pytest
import torch

from scmdm.schedules import (
    SCHEDULES,
    CosineSchedule,
    LinearSchedule,
    LogLinearSchedule,
    NoiseSchedule,
    get_schedule,
)

ALL = sorted(SCHEDULES)
INTERIOR_T = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95]


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_registry_holds_the_three_mdlm_schedules() -> None:
    assert set(SCHEDULES) == {"loglinear", "cosine", "linear"}
    for name, cls in SCHEDULES.items():
        schedule = get_schedule(name)
        assert type(schedule) is cls
        assert isinstance(schedule, NoiseSchedule)
        assert schedule.name == name


@pytest.mark.parametrize("name", ALL)
def test_alpha_at_zero_is_one(name: str) -> None:
    assert get_schedule(name).alpha(_t(0.0)).item() == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize(("name", "expected"),
                         [("loglinear", 0.0), ("cosine", 0.0), ("linear", math.exp(-20.0))])
def test_alpha_at_one(name: str, expected: float) -> None:
    # loglinear: 1 − 1 = 0; cosine: cos(π/2) = 6e-17 in float64; linear: exp(−σ_max·1) with σ_max = 20.
    assert get_schedule(name).alpha(_t(1.0)).item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", ALL)
def test_alpha_strictly_decreasing_on_grid(name: str) -> None:
    t = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
    alpha = get_schedule(name).alpha(t)
    assert torch.all(alpha[1:] < alpha[:-1])
    assert torch.all((alpha >= 0) & (alpha <= 1))


def _alpha_prime_central_difference(schedule, t_value: float, h: float = 1e-6) -> torch.Tensor:
    """(α(t + h) − α(t − h)) / 2h; its error is O(h²·α‴) ≈ 1e-12·20³ for the linear schedule, rounding ≈ 1e-16/h."""
    return (schedule.alpha(_t(t_value + h)) - schedule.alpha(_t(t_value - h))) / (2 * h)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("t_value", INTERIOR_T)
def test_alpha_prime_matches_central_difference(name: str, t_value: float) -> None:
    schedule = get_schedule(name)
    fd = _alpha_prime_central_difference(schedule, t_value)
    analytic = schedule.alpha_prime(_t(t_value))
    assert analytic.item() < 0
    assert analytic.item() == pytest.approx(fd.item(), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("t_value", INTERIOR_T)
def test_loss_weight_is_minus_alpha_prime_over_one_minus_alpha(name: str, t_value: float) -> None:
    schedule = get_schedule(name)
    fd_prime = _alpha_prime_central_difference(schedule, t_value)
    expected = -fd_prime / (1.0 - schedule.alpha(_t(t_value)))
    assert schedule.loss_weight(_t(t_value)).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("t_value", INTERIOR_T)
def test_loss_weight_closed_forms(t_value: float) -> None:
    t = _t(t_value)
    # loglinear: α = 1 − t, α′ = −1  ⇒  w = 1/t.
    assert LogLinearSchedule().loss_weight(t).item() == pytest.approx(1.0 / t_value, rel=1e-12)
    # cosine: w = (π/2)·sin(πt/2) / (1 − cos(πt/2)).
    half_pi_t = 0.5 * math.pi * t_value
    assert CosineSchedule().loss_weight(t).item() == pytest.approx(
        0.5 * math.pi * math.sin(half_pi_t) / (1.0 - math.cos(half_pi_t)), rel=1e-12)
    # linear (σ_max = 20): w = 20·e^{−20t} / (1 − e^{−20t}).
    e = math.exp(-20.0 * t_value)
    assert LinearSchedule().loss_weight(t).item() == pytest.approx(20.0 * e / (1.0 - e), rel=1e-12)


def test_loglinear_loss_weight_is_one_over_t_on_a_grid() -> None:
    t = torch.linspace(0.01, 1.0, 100, dtype=torch.float64)
    torch.testing.assert_close(LogLinearSchedule().loss_weight(t), 1.0 / t, rtol=1e-12, atol=0)


def test_unmask_probability_by_hand() -> None:
    # loglinear, t = 0.5, s = 0.25: (α(s) − α(t)) / (1 − α(t)) = (0.75 − 0.5) / 0.5 = 0.5
    assert LogLinearSchedule().unmask_probability(_t(0.5), _t(0.25)).item() == pytest.approx(0.5, rel=1e-12)
    # cosine, t = 1, s = 0.5: (cos(π/4) − cos(π/2)) / (1 − cos(π/2)) = √2/2
    assert CosineSchedule().unmask_probability(_t(1.0), _t(0.5)).item() == pytest.approx(
        math.sqrt(0.5), rel=1e-12)
    # s = t: nothing is unmasked.
    assert LogLinearSchedule().unmask_probability(_t(0.4), _t(0.4)).item() == 0.0


@pytest.mark.parametrize("name", ALL)
def test_unmask_probability_is_one_at_s_zero(name: str) -> None:
    # α(0) = 1  ⇒  (1 − α(t)) / (1 − α(t)) = 1: every token is clean at time 0.
    schedule = get_schedule(name)
    t = _t(*INTERIOR_T, 1.0)
    torch.testing.assert_close(schedule.unmask_probability(t, torch.zeros_like(t)), torch.ones_like(t),
                               rtol=0, atol=1e-12)


def test_get_schedule_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown noise schedule 'bogus'") as info:
        get_schedule("bogus")
    for name in SCHEDULES:
        assert name in str(info.value)


def test_linear_schedule_rejects_non_positive_sigma_max() -> None:
    with pytest.raises(ValueError, match="sigma_max"):
        LinearSchedule(sigma_max=0.0)
