"""scmdm.mdlm: models in MDLM's Hugging Face layout load with MDLM's exact logits, and go back out unchanged.

The fixture (tests/fixtures/mdlm_dit, a copy of the shared one; its README lists every key) holds two tiny MDLM DiT
checkpoints — time conditioning off and on — with the raw logits, conditioning vectors and SUBS log-probabilities
that MDLM's own code computes for fixed inputs, in float64 and float32. They are loaded through the import path
(``load_checkpoint`` of the folder) and must match: float64 to 1e-8, float32 to 1e-5."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scmdm import mdlm
from scmdm.checkpoint import build_model, load_checkpoint
from scmdm.diffusion import subs_log_probs
from scmdm.errors import CheckpointError
from scmdm.model import Transformer
from scmdm.model.config import MDLM_EPS
from tests.conftest import char_tokenizer_json

FIXTURE = Path(__file__).parent / "fixtures" / "mdlm_dit"
VARIANTS = ("time_conditioning_false", "time_conditioning_true")
MASK = 60
def fixture_folder(tmp_path: Path, variant: str, *, with_tokenizer: bool = True) -> Path:
    """The fixture's config.json and model.safetensors (the MDLM layout), with a tokenizer.json beside them."""
    folder = tmp_path / variant
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(FIXTURE / variant / name, folder / name)
    if with_tokenizer:
        char_tokenizer_json(folder / "tokenizer.json")
    return folder


def times(sigma: torch.Tensor) -> torch.Tensor:
    """The t whose MDLM total noise −log(1 − (1 − ε)t) is ``sigma`` (float64)."""
    return -torch.expm1(-sigma.double()) / (1.0 - MDLM_EPS)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_logits_match_mdlms_own(tmp_path, variant: str, precision: str) -> None:
    loaded = load_checkpoint(fixture_folder(tmp_path, variant))
    assert loaded.config.model.time_conditioning == (variant == "time_conditioning_true")
    assert loaded.tokenizer.mask_id == MASK and loaded.model.config.block_type == "adaln"
    dtype = {"float64": torch.float64, "float32": torch.float32}[precision]
    model = loaded.model.to(dtype)
    inputs = load_file(str(FIXTURE / variant / "inputs.safetensors"))
    expected = load_file(str(FIXTURE / variant / "expected_logits.safetensors"))
    tol = 1e-8 if precision == "float64" else 1e-5
    suffix = "fp64" if precision == "float64" else "fp32"
    with torch.no_grad():
        t = times(inputs["sigma"]).to(dtype)
        cond = model.condition(t, 3, torch.device("cpu"))
        torch.testing.assert_close(cond, expected[f"cond_{suffix}"].to(dtype), rtol=0, atol=tol)
        logits = model(inputs["tokens"], t)
        torch.testing.assert_close(logits, expected[f"logits_{suffix}"].to(dtype), rtol=0, atol=tol)
        if precision == "float32":  # and against MDLM's float64 numbers
            torch.testing.assert_close(logits.double(), expected["logits_fp64"], rtol=0, atol=tol)
        x_t = inputs["tokens_subs"]
        subs_logits = model(x_t, times(inputs["sigma_subs"]).to(dtype))
        torch.testing.assert_close(subs_logits, expected[f"logits_subs_batch_{suffix}"].to(dtype), rtol=0, atol=tol)
        log_p = subs_log_probs(subs_logits, x_t, MASK)
    theirs = expected[f"subs_log_probs_{suffix}"].to(log_p.dtype)
    masked = x_t == MASK
    # masked rows: distributions over the real tokens (MDLM puts −1e6 − lse on MASK, scmdm −inf)
    torch.testing.assert_close(log_p[masked][:, :MASK], theirs[masked][:, :MASK], rtol=0, atol=tol)
    assert (theirs[masked][:, MASK] < -9.9e5).all() and torch.isinf(log_p[masked][:, MASK]).all()
    # unmasked rows carry the observed token (log 1 = 0), nothing else
    observed = x_t[~masked]
    assert torch.equal(log_p[~masked].argmax(-1), observed) and torch.equal(theirs[~masked].argmax(-1), observed)
    assert (log_p[~masked].max(-1).values == 0).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_hidden_states_match_block_by_block(tmp_path, variant: str) -> None:
    """The residual stream after the embedding and after each block (MDLM's output_hidden_states), in float64."""
    model = load_checkpoint(fixture_folder(tmp_path, variant)).model.double()
    inputs = load_file(str(FIXTURE / variant / "inputs.safetensors"))
    expected = load_file(str(FIXTURE / variant / "expected_logits.safetensors"))["hidden_states_fp64"]
    states = []
    hooks = [model.vocab_embed.register_forward_hook(lambda m, i, out: states.append(out))]
    hooks += [block.register_forward_hook(lambda m, i, out: states.append(out)) for block in model.blocks]
    with torch.no_grad():
        model(inputs["tokens"], times(inputs["sigma"]))
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(torch.stack(states), expected, rtol=0, atol=1e-8)  # [state, batch, L, H]


def test_every_fixture_tensor_is_used(tmp_path) -> None:
    """The mapping reads every tensor of the fixture (nothing silently ignored) and the model has no other."""
    folder = fixture_folder(tmp_path, "time_conditioning_true")
    tensors = load_file(str(folder / "model.safetensors"))
    loaded = load_checkpoint(folder)
    renamed = mdlm.to_scmdm_weights(tensors, loaded.model, folder)
    assert set(renamed) == set(loaded.model.state_dict())
    assert len(tensors) == 31 and len(renamed) == 30  # inv_freq is checked and recomputed, not stored


def test_a_changed_rotary_base_is_refused(tmp_path) -> None:
    from safetensors.torch import save_file

    folder = fixture_folder(tmp_path, "time_conditioning_false")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["backbone.rotary_emb.inv_freq"] = tensors["backbone.rotary_emb.inv_freq"] * 0.5
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="other rotary frequencies"):
        load_checkpoint(folder)


def test_full_size_mdlm_owt_config_builds_the_169_6m_model(tmp_path) -> None:
    """mdlm-owt's config.json (written here; no weights) gives exactly MDLM's 169.6 M parameters, with the keys and
    shapes of the fixture's README scaled up: H = 768, C = 128, V = 50258, 12 blocks, 4H MLP."""
    config = {"architectures": ["MDLM"], "model_type": "mdlm", "cond_dim": 128, "dropout": 0.1, "hidden_dim": 768,
              "model_length": 1024, "n_blocks": 12, "n_heads": 12, "return_dict": False, "time_conditioning": False,
              "vocab_size": 50258}
    (tmp_path / "config.json").write_text(json.dumps(config))
    fields = mdlm.read_fields(tmp_path)
    scm = mdlm.config_from_fields(fields)

    class Vocab:
        vocab_size = 50258

    with torch.device("meta"):
        model = build_model(scm, Vocab())
    H, C, V = 768, 128, 50258
    expected = {"backbone.vocab_embed.embedding": (V, H), "backbone.sigma_map.mlp.0.weight": (C, 256),
                "backbone.sigma_map.mlp.0.bias": (C,), "backbone.sigma_map.mlp.2.weight": (C, C),
                "backbone.sigma_map.mlp.2.bias": (C,), "backbone.output_layer.norm_final.weight": (H,),
                "backbone.output_layer.linear.weight": (V, H), "backbone.output_layer.linear.bias": (V,),
                "backbone.output_layer.adaLN_modulation.weight": (2 * H, C),
                "backbone.output_layer.adaLN_modulation.bias": (2 * H,)}
    for i in range(12):
        expected.update({f"backbone.blocks.{i}.norm1.weight": (H,), f"backbone.blocks.{i}.attn_qkv.weight": (3 * H, H),
                         f"backbone.blocks.{i}.attn_out.weight": (H, H), f"backbone.blocks.{i}.norm2.weight": (H,),
                         f"backbone.blocks.{i}.mlp.0.weight": (4 * H, H), f"backbone.blocks.{i}.mlp.0.bias": (4 * H,),
                         f"backbone.blocks.{i}.mlp.2.weight": (H, 4 * H), f"backbone.blocks.{i}.mlp.2.bias": (H,),
                         f"backbone.blocks.{i}.adaLN_modulation.weight": (6 * H, C),
                         f"backbone.blocks.{i}.adaLN_modulation.bias": (6 * H,)})
    ours = {("backbone." + k): tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected
    # by hand: embedding V·H; σ map 256·C + C + C·C + C; per block 3H·H + H·H + 2H + (4H·H + 4H + 4H·H + H) +
    # (6H·C + 6H); output H + (H·V + V) + (2H·C + 2H)
    block = 3 * H * H + H * H + 2 * H + (4 * H * H + 4 * H + 4 * H * H + H) + (6 * H * C + 6 * H)
    by_hand = V * H + (256 * C + C + C * C + C) + 12 * block + H + (H * V + V) + (2 * H * C + 2 * H)
    assert model.num_parameters() == by_hand == 169_627_218 and round(by_hand / 1e6, 1) == 169.6
    # the same names as the fixture, at the fixture's size (its README's table)
    small = {k for k in load_file(str(FIXTURE / VARIANTS[0] / "model.safetensors"))}
    assert {k for k in expected if not k.startswith(tuple(f"backbone.blocks.{i}." for i in range(2, 12)))} | {
        "backbone.rotary_emb.inv_freq"} == small
    assert math.isclose(scm.model.dropout, 0.1) and scm.model.time_input == "sigma" and scm.data.max_length == 1024


def test_a_pickle_is_refused_with_how_to_convert_it(tmp_path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mdlm"}))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")  # never opened
    with pytest.raises(CheckpointError, match="pytorch_model.bin, a pickle: scmdm never unpickles.*weights_only=True"):
        load_checkpoint(folder)


def test_missing_tokenizer_and_wrong_vocabulary_are_clear(tmp_path) -> None:
    folder = fixture_folder(tmp_path, "time_conditioning_false", with_tokenizer=False)
    with pytest.raises(CheckpointError, match="no tokenizer.*--tokenizer PATH"):
        load_checkpoint(folder)
    other = tmp_path / "tok"
    other.mkdir()
    char_tokenizer_json(other / "tokenizer.json")
    assert load_checkpoint(folder, tokenizer=other).tokenizer.vocab_size == 61  # given as a path
    small = json.loads((other / "tokenizer.json").read_text())
    del small["model"]["vocab"]["?"]
    (other / "tokenizer.json").write_text(json.dumps(small))
    with pytest.raises(CheckpointError, match="the tokenizer has 60 ids with MASK appended, but .* vocab_size 61"):
        load_checkpoint(folder, tokenizer=other)
    with pytest.raises(CheckpointError, match="missing"):
        mdlm.read_fields(tmp_path)  # no config.json


def test_import_export_import_is_identical(tmp_path) -> None:
    """MDLM folder → scmdm folder (``scmdm import``) → MDLM layout (``scmdm export --format mdlm``) → loaded again:
    the same tensors under the same names, bit for bit, and the same logits."""
    from scmdm.cli import main

    source = fixture_folder(tmp_path, "time_conditioning_true")
    assert main(["import", str(source), "--out", str(tmp_path / "imported")]) == 0
    assert main(["export", str(tmp_path / "imported"), "--format", "mdlm", "--out", str(tmp_path / "back")]) == 0
    original = load_file(str(source / "model.safetensors"))
    back = load_file(str(tmp_path / "back" / "model.safetensors"))
    assert set(original) == set(back) and all(torch.equal(original[k], back[k]) for k in original)
    first, again = load_checkpoint(source).model, load_checkpoint(tmp_path / "back").model
    x = torch.randint(0, MASK + 1, (4, 16), generator=torch.Generator().manual_seed(0))
    t = torch.rand(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first(x, t), again(x, t))
    assert mdlm.read_fields(tmp_path / "back") == mdlm.read_fields(source)


def test_scmdm_additions_go_under_their_own_prefix(tmp_path) -> None:
    """A self-conditioned, speculative model in MDLM's layout: the base under backbone.*, what scmdm adds under
    scmdm.* (nothing dropped), and the README says so; a prenorm model is refused with the reason."""
    from scmdm.config import load_config
    from scmdm.domains.text.tokenizer import HfTokenizer

    char_tokenizer_json(tmp_path / "tokenizer.json")
    tokenizer = HfTokenizer.from_path(tmp_path / "tokenizer.json")
    config = load_config(None, ["data.domain=text", "data.max_length=16", "text.tokenizer=hf", "model.depth=1",
                                "model.width=32", "model.heads=2", "model.block_type=adaln",
                                "selfcond.injection=projection", "speculative.causal_layers=1"])
    model = build_model(config, tokenizer)
    out = mdlm.write_folder(config, tokenizer, model, tmp_path / "out")
    names = set(load_file(str(out / "model.safetensors")))
    assert {k for k in names if k.startswith("scmdm.")} == {f"scmdm.{k}" for k in model.state_dict()
                                                             if k.startswith(Transformer.ADDITIONS)}
    assert "scmdm.self_cond.proj.weight" in names and "scmdm.causal.out_proj.weight" in names
    assert "under the prefix `scmdm.`" in (out / "README.md").read_text()
    back = load_checkpoint(out)
    assert all(torch.equal(v, back.model.state_dict()[k]) for k, v in model.state_dict().items())
    prenorm = load_config(None, ["data.domain=text", "data.max_length=16", "text.tokenizer=hf", "model.depth=1",
                                 "model.width=32", "model.heads=2"])
    with pytest.raises(ValueError, match="block_type='prenorm'"):
        mdlm.write_folder(prenorm, tokenizer, build_model(prenorm, tokenizer), tmp_path / "refused")


def tiny_text(path: Path) -> Path:
    """~4,000 characters of CHARS-only text (a small corpus a test can train on in a second)."""
    words = ["the", "model", "reads", "Every", "masked", "token", "and", "fills", "it", "again", "Diffusion", "runs",
             "backward", "from", "noise", "to", "text"]
    rng = torch.Generator().manual_seed(0)
    sentences = []
    for _ in range(220):
        n = int(torch.randint(3, 8, (1,), generator=rng))
        picked = [words[int(i)] for i in torch.randint(0, len(words), (n,), generator=rng)]
        sentences.append(" ".join(picked) + ("." if n % 2 else "!"))
    path.write_text(" ".join(sentences))  # one line: the character vocabulary has no newline
    return path


POST = ["train.steps=3", "train.batch_size=8", "train.warmup_steps=1", "train.eval_every=0", "train.save_every=0",
        "train.val_sequences=16", "train.val_num_t=2", "train.log_every=1"]


@pytest.mark.parametrize("injection", ["mask_add", "projection", "gated"])
def test_post_train_an_imported_model_with_self_conditioning(tmp_path, injection: str) -> None:
    """MDLM folder → ``scmdm posttrain --from`` it (self-conditioned, 3 steps on a small text file, packed as MDLM
    packs OpenWebText) → the run saves, resumes its config and samples."""
    from scmdm.cli import main

    source = fixture_folder(tmp_path, "time_conditioning_false")
    text = tiny_text(tmp_path / "corpus.txt")
    run = tmp_path / f"sc_{injection}"
    assert main(["posttrain", "--from", str(source), "--out", str(run), "--no-progress", f"data.source={text}",
                 f"selfcond.injection={injection}", *POST]) == 0
    loaded = load_checkpoint(run)
    assert loaded.config.selfcond.injection == injection and loaded.config.model.time_input == "sigma"
    assert loaded.tokenizer.kind == "hf" and loaded.tokenizer.vocab_size == 61
    base = load_checkpoint(source).model.state_dict()
    assert all(not torch.equal(base[k], v) for k, v in loaded.model.state_dict().items()
               if k.startswith("blocks.0.attn_qkv"))  # every weight is post-trained
    assert main(["sample", str(run), "--no-progress", "sample.num_samples=4", "sample.steps=8"]) == 0


def test_speculative_post_training_of_an_imported_model(tmp_path) -> None:
    from scmdm.cli import main

    source = fixture_folder(tmp_path, "time_conditioning_true")
    text = tiny_text(tmp_path / "corpus.txt")
    assert main(["posttrain", "--from", str(source), "--out", str(tmp_path / "spec"), "--speculative", "--no-progress",
                 f"data.source={text}", *POST]) == 0
    loaded = load_checkpoint(tmp_path / "spec")
    trunk = load_checkpoint(source).model.state_dict()
    assert all(torch.equal(trunk[k], v) for k, v in loaded.model.state_dict().items() if k in trunk)  # frozen
    assert main(["sample", str(tmp_path / "spec"), "--no-progress", "sample.num_samples=4",
                 "sample.sampler=speculative", "sample.window=4"]) == 0


def test_import_posttrain_sample_eval_export_import(tmp_path, capsys, text_scorer) -> None:
    """The issue's end-to-end path: ``scmdm import`` the fixture → post-train (self-conditioned) 3 steps on a small
    text → sample → eval → ``export --format mdlm`` → import again: the same logits."""
    from scmdm.cli import main

    source = fixture_folder(tmp_path, "time_conditioning_false")
    text = tiny_text(tmp_path / "corpus.txt")
    assert main(["import", str(source), "--out", str(tmp_path / "imported")]) == 0
    run = tmp_path / "sc"
    assert main(["posttrain", "--from", str(tmp_path / "imported"), "--out", str(run), "--no-progress",
                 f"data.source={text}", *POST]) == 0
    assert main(["sample", str(run), "--no-progress", "--out", str(tmp_path / "s.txt"), "sample.num_samples=6",
                 "sample.steps=8"]) == 0
    assert main(["eval", str(run), "--no-progress", "--samples", str(tmp_path / "s.txt")]) == 0
    table = capsys.readouterr().out
    assert "s.txt" in table and "real held-out text" in table
    assert main(["export", str(run), "--format", "mdlm", "--out", str(tmp_path / "mdlm")]) == 0
    assert main(["import", str(tmp_path / "mdlm"), "--out", str(tmp_path / "again")]) == 0
    x = torch.randint(0, MASK + 1, (3, 16), generator=torch.Generator().manual_seed(2))
    t = torch.rand(3, generator=torch.Generator().manual_seed(3))
    models = [load_checkpoint(p).model for p in (run, tmp_path / "mdlm", tmp_path / "again")]
    hint = torch.softmax(torch.randn(3, 16, MASK + 1), dim=-1)
    outputs = [m(x, t, p_prev=hint) for m in models]  # the self-conditioning input came through too
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
