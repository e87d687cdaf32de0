"""Training objectives, one module each: the NELBO (``nelbo``), two-pass self-conditioned post-training
(``selfcond``) and the self-speculative draft + verifier loss (``speculative``); the trainer runs whichever
``make_objective`` picks from a run's config (``base`` says what an objective provides)."""

from __future__ import annotations

import typing

import torch

from scmdm.objectives.base import Objective, StepNoise, Terms
from scmdm.objectives.nelbo import NelboObjective
from scmdm.objectives.selfcond import HintPass, SelfConditionedObjective
from scmdm.objectives.speculative import VERIFIER_LABELS, SpeculativeObjective

if typing.TYPE_CHECKING:
    from scmdm.schedules import NoiseSchedule

__all__ = ["Objective", "StepNoise", "Terms", "NelboObjective", "SelfConditionedObjective", "SpeculativeObjective",
           "HintPass", "make_objective", "METRIC_LABELS"]

#: every validation metric an objective reports → what it is
METRIC_LABELS = {**SelfConditionedObjective.metric_labels, **VERIFIER_LABELS}


def make_objective(config: typing.Any, schedule: NoiseSchedule, *, mask_id: int, vocab_size: int,
                   device: torch.device) -> Objective:
    """The objective of a run: speculative when the model has a causal verifier, else two-pass self-conditioned
    when it has a self-conditioning input, else the NELBO."""
    if config.speculative.causal_layers > 0:
        kind = SpeculativeObjective
    elif config.selfcond.injection != "none":
        kind = SelfConditionedObjective
    else:
        kind = NelboObjective
    return kind(config, schedule, mask_id=mask_id, vocab_size=vocab_size, device=device)
