"""Samplers for masked diffusion, one module each, all reporting the network evaluations (NFE) they spent:

* ``ancestral`` — MDLM's ancestral chain, and its ``cached`` variant (skips passes whose input did not change);
* ``topk`` — confidence top-k unmasking (MaskGIT / LLaDA style);
* ``first_hitting`` — jump to the next reveal event (the ancestral chain at T → ∞, NFE = the canvas length);
* ``remdm`` — ReMDM remasking: revealed tokens may be masked again (cap, rescale, conf, loop);
* ``blocks`` — semi-autoregressive blocks with low-confidence remasking (LLaDA);
* ``threshold`` — confidence-threshold parallel decoding (Fast-dLLM): NFE adapts per sequence;
* ``speculative`` — self-speculative sampling with a causal verifier (exact accept/reject).

``generate`` runs any of them by name (``SAMPLERS``); ``steps`` holds the time grid they share, and
``scmdm.denoiser`` the network evaluation they call. Self-conditioned models carry their hint through every
sampler at no extra NFE (the cached sampler refuses them).
"""

from scmdm.sampling.ancestral import ancestral_sample
from scmdm.sampling.blocks import block_sample
from scmdm.sampling.first_hitting import first_hitting_sample
from scmdm.sampling.generate import SAMPLER_NAMES, SAMPLERS, Sampler, SampleResult, SamplerOptions, generate
from scmdm.sampling.remdm import REMASK_STRATEGIES, remdm_sample
from scmdm.sampling.speculative import speculative_sample
from scmdm.sampling.threshold import threshold_sample
from scmdm.sampling.topk import topk_sample

__all__ = ["generate", "SampleResult", "SAMPLERS", "SAMPLER_NAMES", "Sampler", "SamplerOptions", "ancestral_sample",
           "topk_sample", "first_hitting_sample", "remdm_sample", "block_sample", "threshold_sample",
           "speculative_sample", "REMASK_STRATEGIES"]
