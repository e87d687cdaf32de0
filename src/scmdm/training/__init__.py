"""Training: the loop (``trainer``), its optimisation schedule (``optim``) and its metrics log (``metrics``)."""

from scmdm.training.metrics import plot_metrics, read_metrics
from scmdm.training.optim import EMA, batch_indices, learning_rate
from scmdm.training.trainer import Trainer, TrainResult

__all__ = ["Trainer", "TrainResult", "EMA", "learning_rate", "batch_indices", "read_metrics", "plot_metrics"]
