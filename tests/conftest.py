from __future__ import annotations

import importlib.util

import pytest


def have_qm9() -> bool:
    return importlib.util.find_spec("qm9pack") is not None and importlib.util.find_spec("rdkit") is not None


requires_qm9 = pytest.mark.skipif(not have_qm9(), reason="QM9 needs qm9pack and rdkit (`make test` installs them)")


@pytest.fixture(scope="session")
def qm9_smiles() -> list[str]:
    if not have_qm9():
        pytest.skip("QM9 needs qm9pack and rdkit (`make test` installs them)")
    from scmdm.data.molecules import load_qm9_smiles

    return load_qm9_smiles()
