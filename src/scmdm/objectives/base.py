"""What every training objective gives the trainer (``scmdm.training``), which runs one and knows none of them.

An objective, for the global batch x₀ of update ``step``:

* ``draw``: every random number of the update, drawn for the whole batch first, from the trainer's noise
  generator, in the order the loss itself would draw them (``StepNoise``); each micro-batch and process takes its
  rows, so accumulated and distributed gradients equal the one-process gradient;
* ``loss``: the scalar to minimise on a micro-batch (nats per canvas token) and its named parts (``Terms``);
* ``validate``: its validation metrics under a fixed protocol (bits per token, deterministic);
* which parameters learn (``select_trainable``), which submodules train (``train_mode``), and whether an update may
  leave a trainable parameter without gradient (``may_leave_parameters_unused``, for DDP).

``make_objective`` (``scmdm.objectives``) picks the objective of a run's config.
"""

from __future__ import annotations

import contextlib
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import nn

from scmdm.selfcond import HintDraws

if typing.TYPE_CHECKING:
    from scmdm.schedules import NoiseSchedule

__all__ = ["StepNoise", "Terms", "Objective"]


@dataclass
class StepNoise:
    """Every random number of one update, drawn for the whole global batch: times ``t`` and the noised batch
    ``x_t`` (NELBO), or generation orders and revealed counts (speculative loss), whether the update is two-pass
    (self-conditioning) and the hint draws of a two-pass update. ``rows`` gives a micro-batch's share."""

    t: torch.Tensor | None = None
    x_t: torch.Tensor | None = None
    order: torch.Tensor | None = None
    revealed: torch.Tensor | None = None
    hint: HintDraws | None = None
    two_pass: bool = False

    def rows(self, index: slice) -> StepNoise:
        def cut(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value[index]

        return StepNoise(cut(self.t), cut(self.x_t), cut(self.order), cut(self.revealed),
                         self.hint.rows(index) if self.hint is not None else None, self.two_pass)


@dataclass
class Terms:
    """The loss of a micro-batch (differentiable, nats per canvas token) and its named parts (detached), which the
    trainer logs in bits as ``<name>_bits``."""

    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective(ABC):
    """The base of every objective (module docstring). ``config`` is the run's ``scmdm.config.Config``."""

    #: validation metric → what it is (for logs and plots)
    metric_labels: dict[str, str] = {}
    #: the named parts of ``loss`` (in the order they are logged)
    part_names: tuple[str, ...] = ()

    def __init__(self, config: typing.Any, schedule: NoiseSchedule, *, mask_id: int, vocab_size: int,
                 device: torch.device) -> None:
        self.config, self.schedule, self.mask_id, self.vocab_size = config, schedule, mask_id, vocab_size
        self.device = device

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast when ``train.precision=bfloat16``, else nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.config.train.precision == "bfloat16")

    @abstractmethod
    def draw(self, x0: torch.Tensor, step: int, generator: torch.Generator) -> StepNoise:
        """All random numbers of update ``step`` for the global batch ``x0``."""

    @abstractmethod
    def loss(self, model: nn.Module, x0: torch.Tensor, noise: StepNoise) -> Terms:
        """The loss of the micro-batch ``x0`` with its rows of the step's noise."""

    @abstractmethod
    def validate(self, model: nn.Module, data: torch.Tensor, *, num_t: int) -> dict[str, float]:
        """Validation metrics of ``model`` (in eval mode) on ``data`` [N, L], deterministic."""

    def select_trainable(self, model: nn.Module) -> None:  # noqa: B027 - a hook: most objectives train everything
        """Set ``requires_grad`` of the parameters that learn (default: all of them)."""

    def train_mode(self, model: nn.Module) -> None:
        """Put ``model`` in training mode for an update."""
        model.train()

    def may_leave_parameters_unused(self, model: nn.Module) -> bool:
        """Whether some update may give a trainable parameter no gradient (DDP's ``find_unused_parameters``)."""
        return False
