"""scmdm: masked (absorbing-state) discrete diffusion models — train, sample, evaluate.

Importing the package is cheap. From the bottom of the import graph up:

* ``errors``, ``cache``, ``files`` (atomic, checksummed folders), ``outputs`` (output files checked before the work),
  ``plaindata`` (plain arrays out of .npz files and pickles, never unpickled), ``schedules``, ``categorical``
  (Gumbel-max draws, top-p), ``tracks`` (generation orders);
* ``diffusion`` (forward process, SUBS, NELBO), ``selfcond`` (the hint and its injection);
* ``model`` (layers, causal verifier, the ``Transformer``), ``denoiser`` (what a sampler calls);
* ``sampling`` (one module per sampler, ``generate``), ``objectives`` (NELBO, self-conditioned, speculative);
* ``tokenizer``, ``data``, ``evaluation`` (shared by the domains), ``domains`` (one package per data domain);
* ``config``, ``checkpoint``, ``distributed``, ``training``, ``workflows``, ``cli``.

``scmdm.load(path)`` loads a trained model.
"""

from __future__ import annotations

import typing

__version__ = "0.1.0"
__all__ = ["load", "__version__"]

if typing.TYPE_CHECKING:
    from pathlib import Path

    import torch

    from scmdm.checkpoint import LoadedCheckpoint


def load(path: str | Path, device: str | torch.device = "cpu", *, use_ema: bool = True) -> LoadedCheckpoint:
    """Load a model in one call: an exported folder (``scmdm export``), a checkpoint folder or a run
    folder (its newest checkpoint). Returns a ``LoadedCheckpoint`` — ``.model`` (in eval mode, on
    ``device``), ``.tokenizer``, ``.config``, ``.split_info``, ``.state`` — ready for
    ``scmdm.sampling.generate``; ``Trainer(config, run_dir, init_from=path)`` (or ``scmdm train
    --init-from``) continues training from it. Problems raise ``scmdm.checkpoint.CheckpointError``."""
    from scmdm.checkpoint import load_checkpoint  # imported here so that ``import scmdm`` stays cheap

    return load_checkpoint(path, use_ema=use_ema, device=device)
