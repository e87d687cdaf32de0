"""The molecule domain: SMILES strings on a canvas of regex tokens (``tokenizer``), QM9 or a SMILES file split by
seed (``data``), validity / uniqueness / novelty / FCD / QED / SA (``evaluator``), ``molecule.*`` options
(``settings``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scmdm import templates
from scmdm.domains.base import Domain, format_lines, parse_lines
from scmdm.domains.molecule.data import load_molecules, prepare_molecules, split_molecules
from scmdm.domains.molecule.evaluator import MoleculeEvaluator
from scmdm.domains.molecule.settings import MoleculeSettings
from scmdm.domains.molecule.tokenizer import SmilesTokenizer
from scmdm.errors import TokenizerError

__all__ = ["DOMAIN", "molecule_evaluator"]


def molecule_evaluator(config: Any, split_info: dict | None = None, tokenizer: Any = None, *,
                       max_reference: int = 10000, **_: Any) -> MoleculeEvaluator:
    """Novelty against the run's training split, FCD against its test split (split verified against
    ``split_info`` when given)."""
    d = config.data
    source = d.resolved_source
    split = split_molecules(load_molecules(source), source=source, seed=d.split_seed,
                            valid_fraction=d.valid_fraction, test_fraction=d.test_fraction)
    if split_info:  # an imported model ({}) has no split to check
        split.verify(split_info)
    return MoleculeEvaluator(split.train, split.test, max_reference=max_reference)


def molecule_template(text: str, tokenizer: Any, length: int) -> torch.Tensor:
    """A SMILES fragment with gaps ([MASK], [MASK:n]) on the canvas: its SMILES tokens, no EOS (the model ends the
    molecule where it likes)."""
    def encode(fragment: str) -> list[int]:
        ids = []
        for token in SmilesTokenizer.split(fragment):
            if token not in tokenizer.stoi or tokenizer.stoi[token] in (tokenizer.pad_id, tokenizer.eos_id,
                                                                        tokenizer.mask_id):
                raise TokenizerError(f"SMILES token {token!r} is not in the model's vocabulary")
            ids.append(tokenizer.stoi[token])
        return ids

    return templates.text_template(text, encode, length, tokenizer.mask_id, where=f"template {text!r}")


def read_molecule_templates(path: Path, tokenizer: Any, length: int) -> torch.Tensor:
    """One template per non-empty, non-comment line."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{path} holds no template (it is empty)")
    return torch.stack([molecule_template(line, tokenizer, length) for line in lines])


DOMAIN = Domain(
    name="molecule", default_source="qm9", tokenizers={SmilesTokenizer.kind: SmilesTokenizer},
    prepare=prepare_molecules, evaluator=molecule_evaluator, settings=MoleculeSettings,
    format_samples=format_lines, parse_samples=parse_lines, sample_suffix=".smi", item_name="molecules",
    reference_label="real held-out molecules",
    table_columns=("validity", "uniqueness", "novelty", "valid_unique_novel", "fcd", "qed", "sa", "nfe", "seconds"),
    template=molecule_template, read_templates=read_molecule_templates, validity_metric="validity")
