"""Templates for conditional generation (scmdm.templates) and each domain's syntax: gaps by hand, prefixes, N runs,
inpainting rectangles, and one clear error for a bad template — then the CLI end to end on tiny real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scmdm.domains import get_domain
from scmdm.domains.dna.tokenizer import DnaTokenizer
from scmdm.domains.image import inpainting_templates
from scmdm.domains.image.tokenizer import ImageTokenizer
from scmdm.domains.molecule.tokenizer import SmilesTokenizer
from scmdm.domains.text.tokenizer import CharTokenizer
from scmdm.errors import TokenizerError
from scmdm.templates import canvas_from_pieces, mask_items, middle_span, prefix_mask, span_mask, split_gaps
from tests.conftest import TINY, TINY_TEXT, requires_digits, requires_qm9


def test_gaps_by_hand() -> None:
    assert split_gaps("ab[MASK:2]c[MASK]") == ["ab", 2, "c", 1]
    assert split_gaps("[MASK:3]") == [3] and split_gaps("plain") == ["plain"]
    assert canvas_from_pieces([[5, 6], 2, [7]], 7, 9).tolist() == [5, 6, 9, 9, 7, 9, 9]  # the tail is generated
    with pytest.raises(ValueError, match="needs 8 positions but the model's canvas has 7"):
        canvas_from_pieces([[1] * 6, 2], 7, 9)
    with pytest.raises(ValueError, match="nothing to generate"):
        canvas_from_pieces([[1] * 7], 7, 9)
    with pytest.raises(ValueError, match="at least one position"):
        split_gaps("a[MASK:0]")


def test_text_and_molecule_syntax() -> None:
    text = CharTokenizer.build(["In the beginning"])
    canvas = get_domain("text").template("In[MASK:2]the", text, 10)
    m = text.mask_id
    assert canvas.tolist() == [text.stoi["I"], text.stoi["n"], m, m, text.stoi["t"], text.stoi["h"], text.stoi["e"],
                               m, m, m]
    with pytest.raises(TokenizerError, match=r"template 'Zebra': 3 character\(s\) not in the 9-character vocabulary"):
        get_domain("text").template("Zebra", text, 10)
    smiles = SmilesTokenizer.build(["CC(=O)O", "c1ccccc1Cl"])
    canvas = get_domain("molecule").template("CC(=O)[MASK:2]Cl", smiles, 12)
    s = smiles.stoi
    assert canvas[:8].tolist() == [s["C"], s["C"], s["("], s["="], s["O"], s[")"], smiles.mask_id, smiles.mask_id]
    assert canvas[8].item() == s["Cl"] and (canvas[9:] == smiles.mask_id).all()  # no EOS: the model ends it
    with pytest.raises(TokenizerError, match="'Br' is not in the model's vocabulary"):
        get_domain("molecule").template("CBr", smiles, 12)


def test_dna_n_runs_and_inpainting_rectangles() -> None:
    dna = DnaTokenizer()
    canvas = get_domain("dna").template("ACnnG[MASK:2]", dna, 8)
    assert canvas.tolist() == [2, 3, 6, 6, 4, 6, 6, 6]
    with pytest.raises(TokenizerError, match=r"other than A, C, G, T and N \(the gaps\): \['X'\]"):
        get_domain("dna").template("ACXG", dna, 8)
    images = ImageTokenizer(4, 3, 4)
    image = np.arange(12).reshape(3, 4) % 4
    canvas = inpainting_templates([image], images, region=(1, 0, 3, 2))[0].view(3, 4)
    masked = canvas == images.mask_id
    assert masked.tolist() == [[False, True, True, False], [False, True, True, False], [False] * 4]
    assert torch.equal(canvas[~masked], torch.from_numpy(image)[~masked] + 2)  # levels keep their ids
    with pytest.raises(ValueError, match="not a rectangle inside the 4x3 image"):
        inpainting_templates([image], images, region=(0, 0, 5, 2))
    with pytest.raises(ValueError, match="no nonzero pixel"):
        inpainting_templates([image], images, mask=np.zeros((3, 4)))


def test_templates_from_complete_items_by_hand() -> None:
    """mask_items: a span of every row, or a prefix kept per row; the item's tokens elsewhere."""
    assert middle_span(128, 0.25) == (48, 80) and middle_span(10, 0.25) == (4, 6)  # round(2.5) = 2
    assert middle_span(3, 0.01) == (1, 2)  # at least one position
    with pytest.raises(ValueError, match="whole canvas"):
        middle_span(2, 0.9)
    items = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    assert mask_items(items, span_mask(5, 1, 3), 0).tolist() == [[1, 0, 0, 4, 5], [6, 0, 0, 9, 10]]
    assert prefix_mask([2, 0], 4).tolist() == [[False, False, True, True], [True] * 4]
    assert mask_items(items, prefix_mask([3, 1], 5), 0).tolist() == [[1, 2, 3, 0, 0], [6, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="not a non-empty span"):
        span_mask(5, 3, 3)
    with pytest.raises(ValueError, match="at least one to generate"):
        prefix_mask([5], 5)
    with pytest.raises(ValueError, match="item #2 has no position to generate"):
        mask_items(items, torch.tensor([[True] + [False] * 4, [False] * 5]), 0)
    with pytest.raises(ValueError, match=r"must be \[L\] or \[N, L\]"):
        mask_items(items, span_mask(4, 0, 1), 0)


@requires_qm9
def test_molecule_prompt_and_infill_from_the_command_line(tmp_path, capsys) -> None:
    from scmdm.cli import main

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-progress", *TINY]) == 0
    out = tmp_path / "p.smi"
    assert main(["sample", str(run), "--out", str(out), "--no-progress", "--prompt", "CC(", "sample.num_samples=8",
                 "sample.steps=6"]) == 0
    assert all(line.startswith("CC(") for line in out.read_text().splitlines())
    infill = tmp_path / "t.txt"
    infill.write_text("C[MASK:3]O\nc1ccccc1[MASK:2]\n")
    for sampler in ("ancestral", "speculative"):
        if sampler == "speculative":
            assert main(["posttrain", "--from", str(run), "--out", str(tmp_path / "spec"), "--speculative",
                         "--no-progress", "train.steps=2", "train.batch_size=32", "train.val_sequences=32"]) == 0
        model = run if sampler == "ancestral" else tmp_path / "spec"
        assert main(["sample", str(model), "--out", str(out), "--force", "--no-progress", "--infill", str(infill),
                     "--per-template", "3", f"sample.sampler={sampler}", "sample.steps=6"]) == 0, sampler
        lines = out.read_text().splitlines()
        assert len(lines) == 6 and all(x.startswith("C") for x in lines[:3]) and lines[3].startswith("c1ccccc1")
    capsys.readouterr()
    bad = tmp_path / "bad.txt"
    bad.write_text("C" * 40 + "[MASK]\n")
    assert main(["sample", str(run), "--infill", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "needs 41 positions but the model's canvas has 24" in err and len(err.strip().splitlines()) == 1
    assert main(["sample", str(run), "--inpaint", str(bad), "--no-progress"]) == 2
    assert "--inpaint is for image models" in capsys.readouterr().err


def test_text_infill_from_the_command_line(tmp_path, kjv) -> None:
    from scmdm.cli import main

    run = tmp_path / "kjv"
    assert main(["train", "--out", str(run), "--no-progress", *TINY_TEXT]) == 0
    infill = tmp_path / "gaps.txt"
    infill.write_text("In the [MASK:5] God created\n")
    out = tmp_path / "s.txt"
    assert main(["sample", str(run), "--out", str(out), "--no-progress", "--infill", str(infill), "--per-template",
                 "2", "sample.sampler=threshold"]) == 0
    from scmdm.domains.text.data import parse_text_samples

    samples = parse_text_samples(out.read_text())  # a tiny model may end a sample early with EOS: check the start
    assert len(samples) == 2 and all(s.startswith("In the ") for s in samples)
    out_py = tmp_path / "t.txt"
    assert main(["sample", str(run), "--out", str(out_py), "--no-progress", "--prompt", "And God", "sample.steps=4",
                 "sample.num_samples=3"]) == 0
    assert all(s.startswith("And God") for s in parse_text_samples(out_py.read_text()))


@requires_digits
def test_image_inpainting_from_the_command_line(tmp_path) -> None:
    from scmdm.cli import main
    from scmdm.domains.image.data import load_images, read_pgm, write_pgm

    run = tmp_path / "digits"
    assert main(["train", "--out", str(run), "--no-progress", "data.domain=image", "data.source=digits",
                 "image.levels=4", "data.subset=256", "model.depth=1", "model.width=32", "model.heads=2",
                 "train.batch_size=32", "train.steps=2", "train.warmup_steps=1", "train.eval_every=0",
                 "train.val_sequences=32", "train.val_num_t=2"]) == 0
    given = load_images("digits", levels=4).test[:3]
    write_pgm(given, tmp_path / "given.pgm", 4)
    out = tmp_path / "filled.pgm"
    assert main(["sample", str(run), "--out", str(out), "--no-progress", "--inpaint", str(tmp_path / "given.pgm"),
                 "--region", "0,4,8,8", "sample.steps=4"]) == 0
    filled, _ = read_pgm(out)
    assert len(filled) == 3 and all(np.array_equal(f[:4], g[:4]) for f, g in zip(filled, given, strict=True))
    assert (tmp_path / "filled.inpaint.png").stat().st_size > 100
