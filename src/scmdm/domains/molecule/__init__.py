"""The molecule domain: SMILES strings on a canvas of regex tokens (``tokenizer``), QM9 or a SMILES file split by
seed (``data``), validity / uniqueness / novelty / FCD / QED / SA (``evaluator``), ``molecule.*`` options
(``settings``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scmdm import templates
from scmdm.domains.base import Domain, format_lines, parse_lines
from scmdm.domains.molecule.data import MAX_SMILES_CHARS, load_smiles_file, molecule_split, prepare_molecules
from scmdm.domains.molecule.evaluator import MoleculeEvaluator
from scmdm.domains.molecule.reference import is_statistics_file, read_fcd_statistics
from scmdm.domains.molecule.settings import MoleculeSettings
from scmdm.domains.molecule.tokenizer import SmilesTokenizer
from scmdm.errors import TokenizerError

__all__ = ["DOMAIN", "molecule_evaluator"]


def molecule_evaluator(config: Any, split_info: dict | None = None, tokenizer: Any = None, *,
                       max_reference: int = 10000, reference: str | Path | None = None, **_: Any) -> MoleculeEvaluator:
    """Novelty against the run's training split; FCD against its test split, or against ``reference``: a file of
    SMILES, or precomputed ChemNet statistics (``.npz`` / ``.safetensors``, MOSES's ``test_stats.npz`` too:
    ``scmdm.domains.molecule.reference``); the reference row from the run's validation split (split verified against
    ``split_info`` when given)."""
    split, _ = molecule_split(config)
    if split_info:  # an imported model ({}) has no split to check
        split.verify(split_info)
    if reference is None:
        test = f"data.test_source={config.data.test_source}" if config.data.test_source else "test split"
        return MoleculeEvaluator(split.train, split.test, holdout_smiles=split.valid, max_reference=max_reference,
                                 reference_name=f"the run's {test} ({len(split.test):,} molecules)")
    if is_statistics_file(reference):
        stats = read_fcd_statistics(reference)
        return MoleculeEvaluator(split.train, reference_stats=stats, holdout_smiles=split.valid,
                                 reference_name=stats.description)
    molecules = load_smiles_file(reference, key="--reference", too_long="skip", max_chars=MAX_SMILES_CHARS)
    return MoleculeEvaluator(split.train, molecules, holdout_smiles=split.valid, max_reference=max_reference,
                             reference_name=f"the {len(molecules):,} molecules of {reference}")


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
    template=molecule_template, read_templates=read_molecule_templates, validity_metric="validity",
    sizes_from_data=lambda config: config.data.resolved_source != "qm9")
