"""The one typed configuration of a run.

A :class:`Config` is a tree of dataclasses. It is built from a named preset (``default``, ``small``) or a JSON/TOML
file, then ``key=value`` overrides (``train.lr=2e-4``); unknown keys and badly typed values are errors. The fully
resolved config is saved as ``config.json`` in every run and travels with every checkpoint, so ``sample``,
``evaluate`` and ``lift`` rebuild exactly the model that was trained.
"""

from __future__ import annotations

import json
import sys
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser as the PyPI package ``tomli`` (a dependency there, see pyproject.toml)
    import tomli as tomllib

__all__ = [
    "ModelConfig",
    "DiffusionConfig",
    "DataConfig",
    "LossConfig",
    "TwoDConfig",
    "TrainConfig",
    "Config",
    "ConfigError",
    "PRESETS",
    "load_config",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "MODEL_DEFINING_SECTIONS",
    "model_defining_values",
]


class ConfigError(ValueError):
    """A config file, preset or override that cannot be used."""


@dataclass
class ModelConfig:
    """The denoiser (MDM's transformer encoder design)."""

    width: int = 512
    layers: int = 8
    heads: int = 4
    ff_size: int = 1024
    dropout: float = 0.1
    activation: str = "gelu"
    cond_dropout: float = 0.1  # probability of dropping the condition in training (classifier-free guidance)
    prediction: str = "x0"  # x0 (MDM) | v | edm (v with each feature group's data std); the model returns x0 either way
    frames_per_token: int = 1  # k consecutive frames per transformer token (temporal patching, see model.py); 1 = MDM
    temporal_kernel: int = 0  # odd width (tokens) of a depthwise temporal convolution in every block; 0 = none (MDM)
    max_frequency_hz: float = 0.0  # band limit of every x0 prediction (DCT low-pass, bandlimit.py); 0 = none (MDM)
    zero_init_output: bool = False  # output layer starts at 0: an untrained v/eps network returns its input (MDM: False)


@dataclass
class DiffusionConfig:
    """Noise schedule and default sampler."""

    steps: int = 50  # number of diffusion steps the model is trained with
    schedule: str = "cosine"  # cosine | linear
    sampler: str = "ddim"  # ddim | ddpm
    sample_steps: int = 50  # DDIM steps used at sampling time (any number ≤ steps)
    eta: float = 0.0  # DDIM stochasticity (0 = deterministic, 1 = ancestral)
    guidance_scale: float = 2.5  # classifier-free guidance scale for text-conditioned sampling
    sample_precision: str = "fp32"  # fp32 | bf16: denoiser autocast at sampling time (bf16 where the device has it)
    compile: bool = False  # torch.compile the denoiser for sampling (pays a one-off compilation per shape)


@dataclass
class DataConfig:
    """How clips become training windows."""

    fps: float = 20.0  # model frame rate; every clip is resampled to it at preparation time
    num_frames: int = 196  # maximum window length in frames
    min_frames: int = 40  # shorter clips are skipped
    skeleton: str = "smpl22"
    text_encoder: str = "none"  # none | minilm
    contact_threshold: float = 0.002  # squared foot displacement per frame (m²) below which a foot is in contact
    facing_sigma: float = 20.0  # Gaussian smoothing (frames) of the facing direction, as HumanML3D
    cache_mb: float = 1024.0  # bound of the training set's encoded-clip cache (MiB): memory stops growing with data
    normalization: str = "group"  # group: one std per feature group (HumanML3D) | dimension: one std per feature
    root_emphasis: float = 5.0  # group normalization: root slices' std divided by this (HumanML3D's feat_bias)
    stats_smoothing: float = 2.0  # Gaussian std (frames) smoothing motions before normalization statistics; 0 = off
    mirror: float = 0.0  # probability that a training window is mirrored left/right (data/mirror.py); 0 = never


@dataclass
class LossConfig:
    """Weights of the training loss terms (x0 prediction)."""

    features: float = 1.0  # masked MSE on normalized features
    positions: float = 0.0  # MDM geometric loss: joint positions after decoding (m²)
    velocities: float = 0.0  # MDM geometric loss: joint velocities after decoding (m² per frame²)
    foot_contact: float = 0.0  # MDM geometric loss: foot velocity where the target foot is in contact
    time_weighting: str = "x0"  # per-level weight of the terms: x0 (1) | v (SNR + 1, the v-space loss) | min_snr
    min_snr_gamma: float = 5.0  # γ of time_weighting=min_snr (also for two_d.time_weighting)


@dataclass
class TwoDConfig:
    """The ``2d`` supervision mode (VideoMDM): noised teacher in, 3D out, supervised by reprojection."""

    depth_weighting: str = "depth_squared"  # none | mean_depth | depth_squared (see losses.py for the derivation)
    reprojection: float = 7.0  # weight of the depth-weighted reprojection loss
    velocity: float = 350.0  # weight of the 2D velocity consistency loss (7·50 as the public release)
    alignment: float = 0.0  # weight of the representation alignment loss (rotations, velocities, contacts)
    teacher_min_t: int = 12  # t*: the teacher is only ever noised to t ≥ t*
    chain_steps: int = 4  # below t*, inputs come from chains of this many detached self-predictions
    low_levels: str = "chain"  # below t*: chain (2D terms on chain inputs) | self (denoise the model's own estimate)
    min_depth: float = 0.1  # metres; points nearer the camera are clamped in the projection
    solve_yaw: bool = True  # placement solved from the keypoints: turn about +y and translation (False: translation)
    time_weighting: str = "x0"  # per-level weight of the 2d terms, as loss.time_weighting (small preset: min_snr)


@dataclass
class TrainConfig:
    """Optimization and bookkeeping."""

    supervision: str = "3d"  # 3d | teacher | 2d (see DESIGN.md)
    steps: int = 200_000
    batch_size: int = 64  # clips per process and micro-batch; effective batch = batch_size · grad_accum · processes
    grad_accum: int = 1  # micro-batches whose gradients are summed before each optimizer step
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # constant | cosine (after the warm-up, cosine decay to lr_final · lr at train.steps)
    lr_final: float = 0.1  # cosine schedule: final learning rate as a fraction of train.lr
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun, CUDA means each process's LOCAL_RANK GPU)
    precision: str = "auto"  # auto (bf16 where the device computes it natively, else fp32) | fp32 | bf16 (autocast)
    fast: bool = True  # False: the reference step (one tensor at a time in AdamW/EMA, batches built in the loop)
    compile: bool = False  # torch.compile the denoiser for training (one process; eager, with a warning, if it fails)
    log_every: int = 50
    save_every: int = 5000
    keep_checkpoints: int = 3


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    two_d: TwoDConfig = field(default_factory=TwoDConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Sections that define the network and what it predicts: a checkpoint is only valid under the same values.
MODEL_DEFINING_SECTIONS = ("model", "diffusion.steps", "diffusion.schedule", "data.skeleton", "data.text_encoder",
                           "data.fps")


def _small() -> Config:
    """A model and budget that train in a few minutes on 2 CPU cores (the demo). EDM preconditioning with each
    feature group's data std (v-prediction for unit-std features; at this budget an x0 model trained from 2D
    collapses to a static mean pose) from a zero output layer, the v-space loss for the feature objective (it gets
    gradient at low noise), min-SNR-5 level weights for the 2D objective with the levels below t* denoising the
    model's own estimate, predictions band-limited to 4 Hz (a short-trained network passes white noise and the
    teacher's jitter through to its output), and no dropout (a run this short does not overfit; CPU dropout masks
    were 14 % of a step); README, "Does the prior clean its teacher?". A lifting prior: at this budget its
    unconditional samples are noise, and a generator needs ``model.prediction=x0`` with ``loss.time_weighting=x0``
    (README, "What breaks generation")."""
    return Config(
        model=ModelConfig(width=128, layers=4, heads=4, ff_size=256, dropout=0.0, prediction="edm",
                          max_frequency_hz=4.0, zero_init_output=True),
        data=DataConfig(num_frames=60, min_frames=40),
        loss=LossConfig(time_weighting="v"),
        two_d=TwoDConfig(time_weighting="min_snr", low_levels="self"),
        train=TrainConfig(steps=1200, batch_size=32, lr=3e-4, warmup_steps=100, lr_schedule="cosine",
                          ema_decay=0.995, log_every=25, save_every=400),
    )


PRESETS: dict[str, typing.Callable[[], Config]] = {"default": Config, "small": _small}


def config_to_dict(config: Config) -> dict[str, Any]:
    return asdict(config)


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(prefix + k for k in unknown)}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in values:
            continue
        hint = hints[f.name]
        if is_dataclass(hint):
            if not isinstance(values[f.name], dict):
                raise ConfigError(f"config key {prefix}{f.name} must be a section (mapping)")
            kwargs[f.name] = _build(hint, values[f.name], f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = _coerce(values[f.name], hint, prefix + f.name)
    return cls(**kwargs)


def _coerce(value: Any, hint: type, key: str) -> Any:
    """Check/convert a value to the field's type; strings from the command line are parsed."""
    if isinstance(value, str) and hint is not str:
        text = value.strip()
        if hint is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ConfigError(f"config key {key} expects true/false, got {value!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"config key {key} expects {hint.__name__}, got {value!r}") from None
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key} expects true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key} expects an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key} expects a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key} expects a string, got {value!r}")
        return value
    raise ConfigError(f"config key {key} has an unsupported type {hint}")


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build a config from a (possibly partial) nested mapping; missing keys keep their defaults."""
    return _validate(_build(Config, values, ""))


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Apply ``section.key=value`` overrides; unknown keys and badly typed values raise :class:`ConfigError`."""
    values = config_to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        path = key.strip().split(".")
        node = values
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown config key: {key.strip()}")
            node = node[part]
        if path[-1] not in node or isinstance(node[path[-1]], dict):
            raise ConfigError(f"unknown config key: {key.strip()}")
        node[path[-1]] = raw
    return config_from_dict(values)


def load_config(name_or_file: str | Path = "default", overrides: Sequence[str] = ()) -> Config:
    """A preset name (``default``, ``small``) or a ``.json``/``.toml`` file (partial: missing keys take the
    ``default`` preset's values), then ``overrides``."""
    name = str(name_or_file)
    if name in PRESETS:
        config = PRESETS[name]()
    else:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"config {name!r} is neither a preset ({', '.join(PRESETS)}) nor an existing file")
        try:
            text = path.read_text()
            values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot read config file {path}: {err}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        try:
            config = config_from_dict(values)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    return apply_overrides(config, overrides)


def _validate(config: Config) -> Config:
    choices = {
        "train.supervision": (config.train.supervision, ("3d", "teacher", "2d")),
        "diffusion.schedule": (config.diffusion.schedule, ("cosine", "linear")),
        "diffusion.sampler": (config.diffusion.sampler, ("ddim", "ddpm")),
        "diffusion.sample_precision": (config.diffusion.sample_precision, ("fp32", "bf16")),
        "data.text_encoder": (config.data.text_encoder, ("none", "minilm")),
        "model.activation": (config.model.activation, ("gelu", "relu")),
        "model.prediction": (config.model.prediction, ("x0", "v", "edm")),
        "two_d.depth_weighting": (config.two_d.depth_weighting, ("none", "mean_depth", "depth_squared")),
        "train.precision": (config.train.precision, ("auto", "fp32", "bf16")),
        "train.lr_schedule": (config.train.lr_schedule, ("constant", "cosine")),
        "two_d.low_levels": (config.two_d.low_levels, ("chain", "self")),
        "data.normalization": (config.data.normalization, ("group", "dimension")),
        "loss.time_weighting": (config.loss.time_weighting, ("x0", "v", "min_snr")),
        "two_d.time_weighting": (config.two_d.time_weighting, ("x0", "v", "min_snr")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"config key {key} must be one of {allowed}, got {value!r}")
    if config.model.temporal_kernel < 0 or (config.model.temporal_kernel > 0 and config.model.temporal_kernel % 2 == 0):
        raise ConfigError(f"model.temporal_kernel must be 0 or a positive odd number, got {config.model.temporal_kernel}")
    if config.model.max_frequency_hz < 0:
        raise ConfigError(f"model.max_frequency_hz must be ≥ 0 (0 = no band limit), got {config.model.max_frequency_hz}")
    if config.model.frames_per_token < 1:
        raise ConfigError(f"model.frames_per_token must be at least 1, got {config.model.frames_per_token}")
    if config.model.width % config.model.heads:
        raise ConfigError("model.width must be divisible by model.heads")
    if not 1 <= config.diffusion.sample_steps <= config.diffusion.steps:
        raise ConfigError("diffusion.sample_steps must be between 1 and diffusion.steps")
    if not 0 <= config.two_d.teacher_min_t < config.diffusion.steps:
        raise ConfigError("two_d.teacher_min_t must be in [0, diffusion.steps)")
    if config.two_d.chain_steps < 1:
        raise ConfigError("two_d.chain_steps must be at least 1")
    if config.data.root_emphasis <= 0 or config.data.stats_smoothing < 0:
        raise ConfigError("data.root_emphasis must be positive and data.stats_smoothing ≥ 0")
    if config.data.cache_mb < 0:
        raise ConfigError(f"data.cache_mb must be ≥ 0 (0 = no cache), got {config.data.cache_mb}")
    if not 0.0 <= config.data.mirror <= 1.0:
        raise ConfigError(f"data.mirror is a probability in [0, 1], got {config.data.mirror}")
    if config.data.min_frames > config.data.num_frames:
        raise ConfigError("data.min_frames must not exceed data.num_frames")
    positive = {"train.steps": config.train.steps, "train.batch_size": config.train.batch_size,
                "diffusion.steps": config.diffusion.steps, "data.num_frames": config.data.num_frames,
                "train.save_every": config.train.save_every, "train.log_every": config.train.log_every,
                "train.grad_accum": config.train.grad_accum}
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"config key {key} must be positive, got {value}")
    return config


def model_defining_values(config: Config) -> dict[str, Any]:
    """The flat ``key → value`` items a checkpoint depends on (see ``MODEL_DEFINING_SECTIONS``)."""
    flat = _flatten(config_to_dict(config))
    return {k: v for k, v in flat.items() if any(k == s or k.startswith(s + ".") for s in MODEL_DEFINING_SECTIONS)}


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out

