"""Tests of scmdm.domains.molecule.evaluator: RDKit metrics and the FCD via fcd_torch's ChemNet."""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("rdkit", reason="rdkit not installed (extra 'molecules')")
pytest.importorskip("fcd_torch", reason="fcd_torch not installed (installed --no-deps by the Makefile)")

from rdkit import Chem  # noqa: E402
from rdkit.Chem import QED, RDConfig  # noqa: E402

from scmdm.domains.molecule.evaluator import MoleculeEvaluator  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

SMALL_REF = ["CCO", "CC", "CCC", "CCN", "c1ccccc1", "CC(=O)O", "CCOC", "C1CCCCC1", "OCCO", "CN(C)C",
             "C#N", "CC=O", "c1ccncc1", "NC(=O)C", "CCCl"]


def _qm9_smiles(n: int) -> list[str]:
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or spec.origin is None:
        pytest.skip("qm9pack not installed: no real molecules for the FCD tests")
    path = Path(spec.origin).parent / "data" / "qm9_part1.csv"
    if not path.exists():
        pytest.skip(f"qm9pack has no {path}")
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            mol = Chem.MolFromSmiles(row["SMILES"])
            if mol is not None:
                out.append(Chem.MolToSmiles(mol))
            if len(out) >= n:
                break
    return out


@pytest.fixture(scope="module")
def small_evaluator() -> MoleculeEvaluator:
    return MoleculeEvaluator({"CCO"}, SMALL_REF)


@pytest.fixture(scope="module")
def qm9() -> list[str]:
    return _qm9_smiles(400)


@pytest.fixture(scope="module")
def qm9_evaluator(qm9: list[str]) -> MoleculeEvaluator:
    return MoleculeEvaluator(qm9[300:], qm9[:300])


def _load_sascorer():
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    spec = importlib.util.spec_from_file_location("test_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hand_computed_fractions(small_evaluator: MoleculeEvaluator) -> None:
    samples = ["CCO", "OCC", "CCO", "C1CC", "xyz", "c1ccccc1", ""]
    m = small_evaluator.evaluate(samples)
    assert m.n_samples == 7
    assert m.validity == 4 / 7
    assert m.uniqueness == 2 / 4  # {CCO, c1ccccc1}; 'OCC' canonicalizes to 'CCO'
    assert m.novelty == 1 / 2  # only benzene is not in train
    assert m.valid_unique_novel == 1 / 7
    assert math.isfinite(m.fcd) and m.fcd > 0


def test_qed_and_sa_means(small_evaluator: MoleculeEvaluator) -> None:
    benzene = Chem.MolFromSmiles("c1ccccc1")
    m = small_evaluator.evaluate(["c1ccccc1"])
    assert m.qed == pytest.approx(QED.qed(benzene), abs=1e-12)
    assert math.isnan(m.fcd)  # < 2 valid

    sascorer = _load_sascorer()
    smiles = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "invalid("]
    mols = [Chem.MolFromSmiles(s) for s in smiles[:3]]
    m = small_evaluator.evaluate(smiles)
    assert m.sa == pytest.approx(sum(sascorer.calculateScore(x) for x in mols) / 3, abs=1e-12)
    assert m.qed == pytest.approx(sum(QED.qed(x) for x in mols) / 3, abs=1e-12)
    assert sascorer.calculateScore(mols[0]) != sascorer.calculateScore(mols[2])  # the mean is informative


def test_all_invalid(small_evaluator: MoleculeEvaluator) -> None:
    m = small_evaluator.evaluate(["", "xyz", "C1CC", "(((", "C(C)(C)(C)(C)C"])
    assert m.n_samples == 5
    assert m.validity == 0.0
    assert m.valid_unique_novel == 0.0
    for name in ("uniqueness", "novelty", "fcd", "qed", "sa"):
        assert math.isnan(getattr(m, name)), name
    empty = small_evaluator.evaluate([])
    assert empty.n_samples == 0 and math.isnan(empty.validity)


def test_fcd_identical_small_different_large(qm9: list[str], qm9_evaluator: MoleculeEvaluator) -> None:
    same = qm9_evaluator.evaluate(qm9[:300])
    assert abs(same.fcd) < 0.5
    other_real = qm9_evaluator.evaluate(qm9[300:400])
    alkanes = qm9_evaluator.evaluate(["C" * k for k in range(3, 60)])
    assert alkanes.fcd > 10.0
    assert alkanes.fcd > 5 * other_real.fcd
    assert other_real.fcd > same.fcd


def test_fcd_matches_fcd_torch_and_is_order_invariant(
    qm9: list[str], qm9_evaluator: MoleculeEvaluator
) -> None:
    from fcd_torch import FCD

    gen = qm9[300:400] + ["C" * k for k in range(3, 30)]
    ours = qm9_evaluator.evaluate(gen).fcd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.row_stack / sqrtm(disp=) deprecations inside fcd_torch
        theirs = FCD(device="cpu", n_jobs=1)(qm9[:300], gen)
    assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-4)

    shuffled = list(gen)
    random.Random(0).shuffle(shuffled)
    assert qm9_evaluator.evaluate(shuffled).fcd == ours  # exactly: inputs are sorted before ChemNet


def test_reference_row_and_subset(qm9: list[str]) -> None:
    ev = MoleculeEvaluator(qm9[300:], qm9[:300], max_reference=50, seed=3)
    assert ev.n_reference == 50
    again = MoleculeEvaluator(qm9[300:], qm9[:300], max_reference=50, seed=3)
    assert (ev.ref_mu == again.ref_mu).all()
    other = MoleculeEvaluator(qm9[300:], qm9[:300], max_reference=50, seed=4)
    assert not (ev.ref_mu == other.ref_mu).all()

    row = ev.reference_row(n=40, seed=1)
    assert row.n_samples == 40
    assert row.validity == 1.0 and row.uniqueness == 1.0 and row.novelty == 1.0
    assert math.isfinite(row.fcd)
    assert ev.reference_row(n=40, seed=1) == row
    # without held-out molecules, at most half of the reference, scored against the statistics of the other half
    assert ev.reference_row(n=10_000).n_samples == 150


def test_the_reference_row_never_scores_molecules_against_themselves(qm9: list[str]) -> None:
    """The issue's case: a reference of 293 molecules and a row of "1000". Drawn from the held-out (validation)
    molecules less any reference molecule, it states its true size; without held-out molecules, the row's molecules
    are left out of the statistics it is scored against, so its FCD is no self-comparison (≈ 0)."""
    train, reference, holdout = qm9[600:], qm9[:293], qm9[250:400]  # 43 of the held-out are reference molecules
    ev = MoleculeEvaluator(train, reference, holdout_smiles=holdout)
    row = ev.reference_row(n=1000)
    assert row.n_samples == 150 - 43 and row.novelty == 1.0
    self_scored = MoleculeEvaluator(train, reference).evaluate(reference).fcd  # what the old row was
    assert abs(self_scored) < 1e-6
    left_out = MoleculeEvaluator(train, reference).reference_row(n=1000)
    assert left_out.n_samples == 146 and left_out.fcd > 1.0


def test_import_is_light() -> None:
    src = str(ROOT / "src")
    code = ("import sys, scmdm.evaluation, scmdm.domains.molecule.evaluator; "
            "print(sorted(m for m in ('fcd_torch', 'rdkit') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
