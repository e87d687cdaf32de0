"""External FCD references: statistics files in every accepted form (a MOSES-format one built here), read without
unpickling, and the command line a user runs with their own train / test files and a reference."""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest

from scmdm.domains.molecule.reference import read_fcd_statistics
from tests.conftest import requires_qm9


def _psd(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(512, 40))
    return rng.normal(size=512), a @ a.T / 40


class _Exploit:
    def __reduce__(self):
        return os.system, ("touch pwned_by_stats",)


def test_statistics_files_are_read_in_every_form(tmp_path) -> None:
    import safetensors.numpy

    mu, sigma = _psd()
    np.savez(tmp_path / "plain.npz", mu=mu, sigma=sigma)
    safetensors.numpy.save_file({"mu": mu, "sigma": sigma}, str(tmp_path / "stats.safetensors"))
    # MOSES's layout (moses/dataset/data/test_stats.npz): np.savez(stats=dict) — a pickled dict of dicts, with the
    # other metrics' statistics beside FCD's
    np.savez(tmp_path / "test_stats.npz", stats={"FCD": {"mu": mu.astype(np.float32), "sigma": sigma},
                                                 "SNN": {"fps": np.zeros((3, 8), dtype=np.uint8)},
                                                 "Frag": {"frag": collections.Counter({"c1ccccc1": 3})},
                                                 "Scaf": {"scaf": collections.Counter()}})
    for name in ("plain.npz", "stats.safetensors", "test_stats.npz"):
        stats = read_fcd_statistics(tmp_path / name)
        tolerance = 1e-6 if name == "test_stats.npz" else 0  # MOSES's mu is float32 here
        assert np.abs(stats.mu - mu).max() <= tolerance * np.abs(mu).max() and np.array_equal(stats.sigma, sigma)
    assert "MOSES-format" in read_fcd_statistics(tmp_path / "test_stats.npz").description


def test_bad_statistics_files_are_one_clear_error(tmp_path) -> None:
    mu, sigma = _psd()
    cases = {
        "shape.npz": (dict(mu=mu[:100], sigma=sigma), r"mu must be \(512,\) and sigma \(512, 512\)"),
        "nan.npz": (dict(mu=np.where(np.arange(512) == 3, np.nan, mu), sigma=sigma), "holds NaN or inf"),
        "asym.npz": (dict(mu=mu, sigma=sigma + np.triu(np.ones((512, 512)))), "sigma is not symmetric"),
        "other.npz": (dict(weights=mu), r"holds neither arrays mu and sigma nor MOSES's stats\['FCD'\] \(members: "
                                        r"weights\)"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(ValueError, match=message):
            read_fcd_statistics(tmp_path / name)
    np.savez(tmp_path / "evil.npz", stats={"FCD": {"mu": mu, "sigma": sigma}, "x": _Exploit()})
    with pytest.raises(ValueError, match=r"member .stats. cannot be read as plain data: it refers to \w+\.system"):
        read_fcd_statistics(tmp_path / "evil.npz")
    assert not os.path.exists("pwned_by_stats")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_fcd_statistics(tmp_path / "none.npz")


@requires_qm9
def test_own_train_and_test_files_and_an_external_reference_from_the_cli(tmp_path, capsys, qm9_smiles) -> None:
    """The user's path, from the command line alone: train on their train file with their validation and test files
    held out (the canvas sized from the data, printed), evaluate against the run's test file, against another file
    of reference molecules, and against precomputed statistics of those same molecules in MOSES's format — which give
    the very same FCD; the reference row states its true size and is never the reference itself."""
    from scmdm.cli import main
    from scmdm.domains.molecule.evaluator import MoleculeEvaluator

    def smi(name: str, lines: list[str]):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        return tmp_path / name

    train, valid, test = smi("train.smi", qm9_smiles[:1500]), smi("valid.smi", qm9_smiles[1500:1530]), \
        smi("test.smi", qm9_smiles[1600:1700])
    reference = qm9_smiles[2000:2300]
    ref_file = smi("ref.smi", reference)
    ref = MoleculeEvaluator([], reference, max_reference=10_000)  # ChemNet statistics of the reference molecules
    np.savez(tmp_path / "test_stats.npz", stats={"FCD": {"mu": ref.ref_mu, "sigma": ref.ref_sigma}})
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-progress", "model.depth=1", "model.width=32", "model.heads=2",
                 "train.steps=3", "train.batch_size=32", "train.warmup_steps=1", "train.eval_every=0",
                 "train.val_sequences=32", "train.val_num_t=2", "train.threads=1", f"data.source={train}",
                 f"data.valid_source={valid}", f"data.test_source={test}"]) == 0
    err = capsys.readouterr().err
    assert "note: data.max_length=auto: a canvas of" in err and "the longest training molecule" in err
    samples = smi("s.smi", qm9_smiles[3000:3040])

    def evaluate(*extra: str) -> tuple[str, dict]:
        metrics = tmp_path / "m.json"
        assert main(["eval", str(run), "--samples", str(samples), "--json", str(metrics), "--force", *extra]) == 0
        return capsys.readouterr().out, json.loads(metrics.read_text())

    own, own_json = evaluate()
    assert "real held-out molecules (n=30)" in own  # 40 samples, but the validation file has 30: its true size
    assert f"reference: FCD against the run's data.test_source={test} (100 molecules)" in own
    by_file, file_json = evaluate("--reference", str(ref_file))
    assert "FCD against the 300 molecules of" in by_file and file_json["reference"]["n_samples"] == 30
    by_stats, stats_json = evaluate("--reference", str(tmp_path / "test_stats.npz"))
    assert "FCD against MOSES-format ChemNet statistics (stats['FCD']) in" in stats_json["reference_source"]
    assert stats_json["model"]["fcd"] == pytest.approx(file_json["model"]["fcd"], abs=1e-9)  # the same statistics
    assert stats_json["reference"]["fcd"] == pytest.approx(file_json["reference"]["fcd"], abs=1e-9)
    assert own_json["model"]["fcd"] != file_json["model"]["fcd"]  # another reference, another distance
    assert own_json["model"]["novelty"] == file_json["model"]["novelty"]  # novelty: against the training file
    assert main(["eval", str(run), "--reference", str(tmp_path / "nope.npz")]) == 2
    assert "--reference" in capsys.readouterr().err
