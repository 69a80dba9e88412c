"""The project's own evaluator: a contrastive motion encoder trained once per dataset.

(:func:`train_evaluator`, :func:`load_evaluator`, :class:`Evaluator`.) A small temporal-convolution encoder
(:class:`MotionEncoder`) maps a motion's normalized HumanML3D features ``(B, T, D)`` with a frame mask ``(B, T)`` to
a unit-norm embedding ``(B, E)``. It is trained once per dataset, on the ``gt_3d`` of its train split, with a
contrastive (InfoNCE, temperature ``temperature``) objective on crop pairs:

- positives: two random crops of the same clip (lengths between ``crop_min_fraction`` and 100 % of the clip, at most
  ``max_frames``, random offsets), each encoded on its own with :func:`videomdm.representation.encode` exactly as
  :meth:`Evaluator.embed_joints` encodes a motion;
- negatives: the crops of the other clips of the batch (a batch holds distinct clips);
- hard negatives ("degraded"): the positive crop after a degradation, re-encoded: Gaussian joint jitter (std
  log-uniform in ``[jitter_min_m, jitter_max_m]`` per coordinate per frame) or gliding (the whole body slides on the
  ground at ``[slide_min_mps, slide_max_mps]``, so planted feet skate). Contrastive training on clean crops alone
  learns "which clip is this" and is blind to quality; with degraded negatives, the embedding moves away from clean
  motion when the motion gets noisy or skates;
- a realism probe (logistic regression on the embedding, weight ``realism_weight``) separating clean from degraded
  crops, so that degradations move embeddings along a consistent direction, which the mean term of FID sees. (With
  hard negatives alone each degraded crop moves away from its own clip in its own direction, and FID barely rises.)
- when the split has captions (and ``config.text_encoder`` is not ``"none"``), a text head (an MLP over frozen
  sentence embeddings from :mod:`videomdm.text`) is trained jointly with a symmetric motion–text InfoNCE, giving the
  shared space that R-precision needs (:meth:`Evaluator.embed_texts`). Without captions there is no text head.

Time reversal is never used in training: :func:`sanity_table` reports it as the degradation the evaluator has not
seen. Jitter and sliding are in the training family, so their rows show sensitivity, not generalization.

Crop features are precomputed in a pool of about ``pool_size`` (clean, degraded) crops, some clips of which get new
crops every ``refresh_every`` steps: :func:`~videomdm.representation.encode` costs more than the network on a CPU,
and the pool keeps the default budget (about a minute on one CPU thread for 60 clips of 196 frames at 20 fps) while
still covering every clip of a large dataset over training. The network is small: on a busy machine, one intra-op
thread (``torch.set_num_threads(1)``) can be much faster than several.

Embeddings are unit vectors, so FID values computed on them lie in [0, ~4] and are only comparable between
evaluations made with the same evaluator (:meth:`Evaluator.check_dataset`).

An evaluator is a folder::

    OUT/
      evaluator.safetensors   network weights (``encoder.*``, ``probe.*``, ``text_head.*``) and
                              ``normalizer.mean`` / ``normalizer.std`` (the training split's feature statistics)
      evaluator.json          config, format version, the dataset identity (name, split, fps, skeleton, per-clip
                              digests and the split fingerprint), training summary; written last

The dataset identity lets :meth:`Evaluator.check_dataset` refuse a dataset the evaluator was not trained for: an
evaluator is a ruler, and numbers measured with rulers trained on other data are not comparable. A clip's digest is
the SHA-256 of the names, CRC-32s and sizes of the arrays in its ``.npz`` (read from the zip directory, so it follows
the content, not the file's timestamps); the fingerprint is the SHA-256 of the sorted ``path:digest`` lines.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import CheckpointError, atomic_write_text, load_tensors, read_description, save_tensors
from ..data.clip import INDEX_NAME, DatasetIndex, load_clip, read_dataset_index
from ..data.errors import DataError
from ..data.mocap import resample
from ..metrics import fid
from ..representation import FeatureLayout, Normalizer
from ..skeleton import Skeleton, get_skeleton
from .common import EvaluatorError, as_motion_list, encode_many, load_state, resolve_device

__all__ = [
    "EVALUATOR_VERSION",
    "WEIGHTS_NAME",
    "META_NAME",
    "EvaluatorConfig",
    "DEGRADATIONS",
    "MotionEncoder",
    "RealismProbe",
    "TextHead",
    "EvaluatorNetworks",
    "Evaluator",
    "train_evaluator",
    "load_evaluator",
    "dataset_identity",
    "jitter_joints",
    "slide_joints",
    "reverse_joints",
    "sanity_table",
]

EVALUATOR_VERSION = 1
WEIGHTS_NAME = "evaluator.safetensors"
META_NAME = "evaluator.json"
_FORMAT = "videomdm-evaluator"
DEGRADATIONS = ("jitter", "slide")


# --- config ----------------------------------------------------------------------------------------------------------


@dataclass
class EvaluatorConfig:
    """Everything that defines an evaluator and its training; saved in ``evaluator.json``.

    Lengths are in frames at the dataset's fps, distances in metres.
    """

    # data
    motion_field: str = "gt_3d"  # clip field the evaluator learns from (mocap ground truth)
    max_frames: int = 196  # longest crop used in training (HumanML3D's 9.8 s at 20 fps)
    min_frames: int = 40  # clips shorter than this are skipped; shortest crop (HumanML3D's 2 s at 20 fps)
    crop_min_fraction: float = 0.2  # crop lengths are drawn in [fraction, 1] × min(clip length, max_frames)
    crop_unit: int = 4  # crop lengths are multiples of this above the minimum (fewer lengths: batched encoding)
    contact_threshold: float = 0.002  # representation.encode settings
    facing_sigma: float = 20.0
    # hard negatives: each positive crop gets one degraded copy, of a kind drawn uniformly from `degradations`:
    # "jitter": Gaussian joint noise, std per coordinate per frame log-uniform in [jitter_min_m, jitter_max_m];
    # "slide": the whole body glides on the ground at a speed uniform in [slide_min_mps, slide_max_mps] (m/s)
    degradations: tuple[str, ...] = ("jitter", "slide")
    jitter_min_m: float = 0.01
    jitter_max_m: float = 0.08
    slide_min_mps: float = 0.25
    slide_max_mps: float = 1.0
    realism_weight: float = 1.0  # weight of the logistic probe "clean vs degraded" on the embedding (0 = none)
    # network
    hidden: int = 64
    embed_dim: int = 128
    num_blocks: int = 3
    kernel_size: int = 5
    # text head (used only when the split has captions)
    text_encoder: str = "minilm"  # a name from videomdm.text.TEXT_ENCODERS; "none" = never a text head
    text_weight: float = 1.0
    # optimization
    steps: int = 500
    batch_size: int = 32  # clips per step (each gives an anchor, a positive and a degraded crop)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    pool_size: int = 512  # (clean, degraded) crops held encoded: max(2, pool_size // clips) per clip
    refresh_every: int = 100  # steps between pool refreshes (0 = never)
    refresh_fraction: float = 0.25  # share of the pool redrawn at each refresh
    seed: int = 0

    def validate(self) -> EvaluatorConfig:
        if self.motion_field not in ("gt_3d", "teacher_3d"):
            raise ValueError(f"motion_field must be gt_3d or teacher_3d, got {self.motion_field!r}")
        if not 2 <= self.min_frames <= self.max_frames:
            raise ValueError(f"need 2 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if not 0 < self.crop_min_fraction <= 1:
            raise ValueError(f"crop_min_fraction must be in (0, 1], got {self.crop_min_fraction}")
        self.degradations = tuple(self.degradations)
        unknown = sorted(set(self.degradations) - set(DEGRADATIONS))
        if unknown or not self.degradations:
            raise ValueError(f"degradations must be a non-empty subset of {DEGRADATIONS}, got {self.degradations}")
        if not 0 < self.jitter_min_m <= self.jitter_max_m:
            raise ValueError(f"need 0 < jitter_min_m <= jitter_max_m, got {self.jitter_min_m}, {self.jitter_max_m}")
        if not 0 < self.slide_min_mps <= self.slide_max_mps:
            raise ValueError(f"need 0 < slide_min_mps <= slide_max_mps, got {self.slide_min_mps}, "
                             f"{self.slide_max_mps}")
        for name in ("crop_unit", "hidden", "embed_dim", "num_blocks", "batch_size", "pool_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 (contrastive learning needs negatives)")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.steps < 0 or self.refresh_every < 0 or not 0 <= self.refresh_fraction <= 1:
            raise ValueError("steps and refresh_every must be >= 0 and refresh_fraction in [0, 1]")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaluatorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown evaluator config keys {unknown}")
        return cls(**values).validate()


# --- networks --------------------------------------------------------------------------------------------------------


class _ConvBlock(nn.Module):
    """Residual block: dilated Conv1d → GELU → Conv1d(k=1), padded frames kept at zero."""

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                              dilation=dilation)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        """``h (B, C, T)`` zero on padded frames, ``mask (B, 1, T)`` float → ``(B, C, T)``, zero on padded frames."""
        return h + self.out(F.gelu(self.conv(h))) * mask


class MotionEncoder(nn.Module):
    """Normalized features ``(B, T, D)`` + frame mask ``(B, T)`` (True = real) → unit-norm embedding ``(B, E)``.

    A convolution over non-overlapping 4-frame patches (Guo et al.'s evaluator also works on 4-frame units) maps the
    motion to T/4 steps of ``hidden`` channels; ``num_blocks`` residual dilated convolutions (dilations 1, 2, 4, ...)
    follow, then a LayerNorm, masked mean and max pooling over time and an MLP. Padded frames are zeroed, and T is
    padded to a multiple of 4, so a motion's embedding does not depend on how much padding follows it.
    """

    patch = 4

    def __init__(self, input_dim: int, hidden: int, embed_dim: int, num_blocks: int, kernel_size: int) -> None:
        super().__init__()
        self.stem = nn.Linear(self.patch * input_dim, hidden)  # one 4-frame patch → one step
        self.blocks = nn.ModuleList([_ConvBlock(hidden, kernel_size, 2**i) for i in range(num_blocks)])
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Sequential(nn.Linear(2 * hidden, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if x.ndim != 3 or mask.shape != x.shape[:2]:
            raise ValueError(f"expected features (B, T, D) and mask (B, T), got {tuple(x.shape)}, {tuple(mask.shape)}")
        mask = mask.to(torch.bool)
        extra = -x.shape[1] % self.patch
        x = F.pad(x * mask[..., None].to(x.dtype), (0, 0, 0, extra))  # (B, T', D), T' a multiple of 4
        steps = F.pad(mask, (0, extra))[:, 0::self.patch]  # (B, T'/4): a step is real when its first frame is
        m = steps[:, None].to(x.dtype)  # (B, 1, T'/4)
        patches = x.reshape(x.shape[0], -1, self.patch * x.shape[2])  # (B, T'/4, 4·D), frames of a step in order
        h = F.gelu(self.stem(patches)).transpose(1, 2) * m  # (B, H, T'/4)
        for block in self.blocks:
            h = block(h, m)
        h = self.norm(h.transpose(1, 2))  # (B, T'/4, H)
        m = m.transpose(1, 2)  # (B, T'/4, 1)
        mean = (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, H)
        peak = h.masked_fill(m == 0, float("-inf")).amax(1)  # (B, H)
        z = self.head(torch.cat([mean, peak], dim=-1))  # (B, E)
        return F.normalize(z, dim=-1)


class RealismProbe(nn.Module):
    """Logistic regression on the embedding: ``(B, E) → (B,)`` logit of "clean" (vs degraded).

    Trained jointly with the encoder so that degradations move embeddings along a consistent direction, which the
    mean term of FID sees; kept with the weights (:meth:`Evaluator.realism`) as a diagnostic.
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embed_dim, 1)

    def forward(self, z: Tensor) -> Tensor:
        return self.linear(z)[:, 0]


class TextHead(nn.Module):
    """Frozen sentence embeddings ``(B, text_dim)`` → unit-norm embeddings ``(B, E)`` in the motion space."""

    def __init__(self, text_dim: int, hidden: int, embed_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))

    def forward(self, text: Tensor) -> Tensor:
        return F.normalize(self.net(text), dim=-1)


class EvaluatorNetworks(nn.Module):
    """Everything an evaluator trains: ``encoder``, ``probe`` (when ``realism_weight > 0``) and ``text_head``
    (when trained with captions); its state dict is the evaluator's weights (plus the normalizer)."""

    def __init__(self, config: EvaluatorConfig, input_dim: int, text_dim: int | None) -> None:
        super().__init__()
        self.encoder = MotionEncoder(input_dim, config.hidden, config.embed_dim, config.num_blocks,
                                     config.kernel_size)
        self.probe = RealismProbe(config.embed_dim) if config.realism_weight > 0 else None
        self.text_head = TextHead(text_dim, config.hidden, config.embed_dim) if text_dim else None


# --- degradations ----------------------------------------------------------------------------------------------------


def jitter_joints(joints: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add i.i.d. Gaussian noise of std ``sigma`` (metres) to every coordinate of every joint of every frame.

    ``(..., T, J, 3) → (..., T, J, 3)`` float32.
    """
    joints = np.asarray(joints, dtype=np.float32)
    return joints + rng.normal(scale=sigma, size=joints.shape).astype(np.float32)


def slide_joints(joints: np.ndarray, fps: float, speed: float, rng: np.random.Generator) -> np.ndarray:
    """Foot sliding: translate the whole body on the ground plane at ``speed`` (m/s) in a random direction.

    Every planted foot then skates at that speed while the limbs move as before. ``(T, J, 3) → (T, J, 3)`` float32.
    """
    joints = np.asarray(joints, dtype=np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    direction = np.array([np.sin(angle), 0.0, np.cos(angle)], dtype=np.float32)
    drift = (np.arange(joints.shape[-3], dtype=np.float32) * speed / fps)[:, None, None] * direction  # (T, 1, 3)
    return joints + drift


def reverse_joints(joints: np.ndarray) -> np.ndarray:
    """Time reversal: ``(T, J, 3)`` played backwards."""
    return np.ascontiguousarray(np.asarray(joints, dtype=np.float32)[::-1])


# --- dataset identity ------------------------------------------------------------------------------------------------


def _clip_digest(path: Path) -> str:
    """SHA-256 (16 hex digits) of the member names, CRC-32s and sizes of a clip ``.npz`` (its zip directory)."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = sorted((info.filename, info.CRC, info.file_size) for info in archive.infolist())
    except (OSError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: cannot read the clip file's directory ({err})") from None
    text = "\n".join(f"{name}:{crc:08x}:{size}" for name, crc, size in entries)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_identity(data_dir: str | Path, split: str = "train") -> dict[str, Any]:
    """What an evaluator records about the data it was trained on.

    Returns:
        ``{"name", "split", "fps", "skeleton", "num_clips", "fingerprint", "clips": {relative path: digest}}``;
        ``fingerprint`` is the SHA-256 of the sorted ``path:digest`` lines of the split (module docstring).
    """
    index = read_dataset_index(Path(data_dir))
    paths = index.clip_paths(split)
    clips = {rel: _clip_digest(path) for rel, path in zip(index.splits[split], paths)}
    lines = "\n".join(f"{rel}:{digest}" for rel, digest in sorted(clips.items()))
    return {
        "name": index.name, "split": split, "fps": index.fps, "skeleton": index.skeleton, "num_clips": len(clips),
        "fingerprint": hashlib.sha256(lines.encode()).hexdigest(), "clips": clips,
    }


# --- the evaluator ---------------------------------------------------------------------------------------------------


def _pad(features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """List of ``(T_i, D)`` → zero-padded ``(B, T_max, D)`` float32 and mask ``(B, T_max)`` bool."""
    lengths = torch.tensor([f.shape[0] for f in features])
    out = torch.nn.utils.rnn.pad_sequence(list(features), batch_first=True).float()
    mask = torch.arange(out.shape[1])[None, :] < lengths[:, None]
    return out, mask


def _encode_settings(config: EvaluatorConfig) -> dict[str, float]:
    return {"contact_threshold": config.contact_threshold, "facing_sigma": config.facing_sigma}


class Evaluator:
    """A trained evaluator: motion (and, with a text head, caption) embeddings in one unit-norm space.

    Attributes:
        config: the :class:`EvaluatorConfig` it was trained with.
        networks: the :class:`EvaluatorNetworks` (eval mode): ``encoder``, ``probe``, ``text_head``.
        normalizer: the feature :class:`~videomdm.representation.Normalizer` of its training split.
        meta: the contents of ``evaluator.json`` (dataset identity, training summary).
        path: the evaluator folder (None before saving).
        skeleton, fps: the skeleton and frame rate of its training data (what :meth:`embed_joints` expects).
    """

    def __init__(self, config: EvaluatorConfig, networks: EvaluatorNetworks, normalizer: Normalizer,
                 meta: dict[str, Any], path: Path | None = None, device: str | torch.device = "cpu") -> None:
        self.config = config
        self.device = resolve_device(device)
        self.networks = networks.to(self.device).eval()
        self.normalizer = normalizer.to(self.device)
        self.meta = meta
        self.path = path
        self.skeleton = get_skeleton(meta["dataset"]["skeleton"])
        self.fps = float(meta["dataset"]["fps"])
        self._text_encoder: Any = None

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def encoder(self) -> MotionEncoder:
        return self.networks.encoder

    @property
    def text_head(self) -> TextHead | None:
        return self.networks.text_head

    @property
    def has_text(self) -> bool:
        return self.text_head is not None

    def _where(self) -> str:
        return str(self.path / META_NAME) if self.path is not None else "this evaluator"

    # -- dataset check --

    def check_dataset(self, data_dir: str | Path) -> None:
        """Refuse a dataset this evaluator was not trained for.

        Compares the dataset's name, fps, skeleton and the fingerprint of the split the evaluator was trained on
        with ``evaluator.json``; raises :class:`EvaluatorError` naming both files and the differing clip files.
        """
        trained = self.meta["dataset"]
        index_file = Path(data_dir) / INDEX_NAME
        try:
            found = dataset_identity(data_dir, trained["split"])
        except DataError as err:
            raise EvaluatorError(f"{self._where()} was trained on split {trained['split']!r} of dataset "
                                 f"{trained['name']!r}, which {index_file} does not provide: {err}") from None
        problems = [f"{key} {found[key]!r} (trained on {trained[key]!r})" for key in ("name", "fps", "skeleton")
                    if found[key] != trained[key]]
        if found["fingerprint"] != trained["fingerprint"]:
            old, new = trained.get("clips", {}), found["clips"]
            removed = sorted(set(old) - set(new))
            added = sorted(set(new) - set(old))
            changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])

            def show(items: list[str]) -> str:
                return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")

            detail = [f"{what}: {show(items)}" for what, items in
                      (("missing", removed), ("not trained on", added), ("changed", changed)) if items]
            problems.append(f"split {trained['split']!r} has other clips than the evaluator was trained on "
                            f"({found['num_clips']} vs {trained['num_clips']} clips; " + "; ".join(detail) + ")")
        if problems:
            raise EvaluatorError(f"{self._where()} does not belong to the dataset {index_file}: " + "; ".join(problems)
                                 + ". Train an evaluator on this dataset (train_evaluator) instead.")

    # -- embeddings --

    def embed_features(self, features: Sequence[Tensor] | Tensor, mask: Tensor | None = None, *,
                       batch_size: int = 256) -> np.ndarray:
        """Embed unnormalized features (as :func:`~videomdm.representation.encode` makes them).

        Args:
            features: ``(N, T, D)`` with ``mask (N, T)`` (True = real frame; None = all real), or a list of
                ``(T_i, D)``. Each motion must be canonicalized at its own first frame (encode does that).
            batch_size: motions per network call.

        Returns:
            ``(N, E)`` float32 unit-norm embeddings, in input order.
        """
        if isinstance(features, Tensor):
            if features.ndim != 3:
                raise ValueError(f"expected features (N, T, D), got {tuple(features.shape)}")
            mask = torch.ones(features.shape[:2], dtype=torch.bool) if mask is None else mask.to(torch.bool).cpu()
            items = [f[m] for f, m in zip(features.detach().cpu().float(), mask)]
        else:
            items = [torch.as_tensor(f, dtype=torch.float32) for f in features]
        if not items:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        if any(f.ndim != 2 or f.shape[-1] != self.normalizer.dim for f in items):
            raise ValueError(f"every motion must have {self.normalizer.dim} features per frame")
        if any(f.shape[0] < 1 for f in items):
            raise ValueError("every motion needs at least one real frame")
        order = sorted(range(len(items)), key=lambda i: items[i].shape[0])  # similar lengths together: less padding
        out = np.zeros((len(items), self.embed_dim), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                part = order[start:start + batch_size]
                x, m = _pad([items[i] for i in part])
                x, m = x.to(self.device), m.to(self.device)
                z = self.encoder(self.normalizer.normalize(x) * m[..., None], m)
                out[part] = z.float().cpu().numpy()
        return out

    def embed_joints(self, joints: Any, fps: float, *, batch_size: int = 256) -> np.ndarray:
        """Embed world joint positions.

        Args:
            joints: ``(N, T, J, 3)`` array/tensor, or a list of ``(T_i, J, 3)`` (variable lengths), metres, y up,
                in the evaluator's skeleton (``self.skeleton``).
            fps: their frame rate; resampled (linear interpolation) to the evaluator's fps when different.

        Returns:
            ``(N, E)`` float32 unit-norm embeddings, in input order. Each motion is encoded on its own with
            :func:`~videomdm.representation.encode` and normalized with the evaluator's own normalizer.
        """
        motions = as_motion_list(joints)
        if abs(float(fps) - self.fps) > 1e-6:
            motions = [resample(m, float(fps), self.fps).astype(np.float32) for m in motions]
        for m in motions:
            if m.shape[1:] != (self.skeleton.num_joints, 3):
                raise ValueError(f"expected motions (T, {self.skeleton.num_joints}, 3) of skeleton "
                                 f"{self.skeleton.name}, got {m.shape}")
            if m.shape[0] < 2:
                raise ValueError(f"a motion needs at least 2 frames at {self.fps} fps, got {m.shape[0]}")
        features = encode_many(motions, self.skeleton, **_encode_settings(self.config))
        return self.embed_features(features, batch_size=batch_size)

    def realism(self, embeddings: np.ndarray) -> np.ndarray:
        """The realism probe's probability that each embedding ``(N, E)`` comes from clean (not degraded) motion:
        ``(N,)`` in [0, 1]. A diagnostic of the training degradations only, not a metric."""
        if self.networks.probe is None:
            raise EvaluatorError(f"{self._where()} was trained without a realism probe (realism_weight = 0)")
        with torch.no_grad():
            z = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32, device=self.device)
            return torch.sigmoid(self.networks.probe(z)).cpu().numpy()

    def embed_texts(self, texts: Sequence[str], *, text_encoder: Any = None) -> np.ndarray:
        """Embed captions into the motion space: N strings → ``(N, E)`` float32 unit-norm.

        Args:
            text_encoder: a :class:`videomdm.text.TextEncoder` to use instead of building the one named in the config
                (it must produce the same embeddings the evaluator was trained with).
        """
        if self.text_head is None:
            raise EvaluatorError(f"{self._where()} has no text head (its training split had no captions)")
        if isinstance(texts, str):
            raise TypeError("embed_texts expects a list of captions, not a single string")
        encoder = text_encoder or self._get_text_encoder()
        if encoder.dim != self.meta["text_dim"]:
            raise EvaluatorError(f"{self._where()}: the text encoder gives {encoder.dim}-d embeddings, the text head "
                                 f"expects {self.meta['text_dim']}")
        with torch.no_grad():
            z = self.text_head(encoder.encode(list(texts)).float().to(self.device))
        return z.cpu().numpy()

    def _get_text_encoder(self) -> Any:
        if self._text_encoder is None:
            from .text import build_text_encoder

            self._text_encoder = build_text_encoder(self.meta["text_encoder"])
        return self._text_encoder

    # -- saving --

    def state_dict(self) -> dict[str, Tensor]:
        """The weights file's tensors: the networks' state dict and ``normalizer.mean`` / ``normalizer.std``."""
        tensors = dict(self.networks.state_dict())
        tensors.update({f"normalizer.{k}": v for k, v in self.normalizer.state_dict().items()})
        return tensors

    def save(self, out_dir: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``evaluator.safetensors`` then ``evaluator.json`` (each atomically) into ``out_dir``.

        An existing evaluator there is refused unless ``overwrite``; with it, the old ``evaluator.json`` is removed
        first, so a crash never leaves a folder whose json describes other weights.
        """
        out_dir = Path(out_dir)
        _check_out_dir(out_dir, overwrite)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / META_NAME).unlink(missing_ok=True)
        save_tensors(out_dir / WEIGHTS_NAME, self.state_dict())
        atomic_write_text(out_dir / META_NAME, json.dumps(self.meta, indent=2) + "\n")
        self.path = out_dir
        return out_dir


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise EvaluatorError(f"{out_dir}: exists and is not a folder")
    held = [name for name in (META_NAME, WEIGHTS_NAME) if (out_dir / name).exists()]
    if held and not overwrite:
        raise EvaluatorError(f"{out_dir}: already holds an evaluator ({', '.join(held)}); choose another folder or "
                             f"pass overwrite=True")


def load_evaluator(path: str | Path, *, dataset_dir: str | Path | None = None,
                   device: str | torch.device = "auto") -> Evaluator:
    """Load an evaluator folder written by :func:`train_evaluator`.

    Args:
        path: the evaluator folder (or its ``evaluator.json``).
        dataset_dir: when given, :meth:`Evaluator.check_dataset` refuses it unless it is the training dataset.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``, ...

    Raises:
        EvaluatorError: missing, corrupt or inconsistent files (the message names the file), or a foreign dataset.
    """
    path = Path(path)
    if path.name == META_NAME:
        path = path.parent
    meta_file = path / META_NAME
    if not path.is_dir():
        raise EvaluatorError(f"{path}: evaluator folder not found")
    meta = read_description(meta_file, format_tag=_FORMAT, what="evaluator", error=EvaluatorError)
    if meta.get("version") != EVALUATOR_VERSION:
        raise EvaluatorError(f"{meta_file}: evaluator version {meta.get('version')!r}, this code reads "
                             f"{EVALUATOR_VERSION}")
    try:
        config = EvaluatorConfig.from_dict(meta["config"])
        input_dim, text_dim = int(meta["input_dim"]), meta.get("text_dim")
        for key in ("name", "split", "fps", "skeleton", "fingerprint", "num_clips"):
            meta["dataset"][key]
    except (KeyError, TypeError, ValueError) as err:
        raise EvaluatorError(f"{meta_file}: invalid evaluator description ({type(err).__name__}: {err})") from None

    weights_file = path / WEIGHTS_NAME
    try:
        tensors = load_tensors(weights_file)
    except CheckpointError as err:
        raise EvaluatorError(str(err)) from None
    networks = EvaluatorNetworks(config, input_dim, text_dim)
    load_state(networks, {k: v for k, v in tensors.items() if not k.startswith("normalizer.")}, str(weights_file))
    try:
        normalizer = Normalizer(tensors["normalizer.mean"], tensors["normalizer.std"])
    except (KeyError, ValueError) as err:
        raise EvaluatorError(f"{weights_file}: missing or invalid normalizer ({err})") from None
    if normalizer.dim != input_dim:
        raise EvaluatorError(f"{weights_file}: normalizer has {normalizer.dim} features, {meta_file} says {input_dim}")
    evaluator = Evaluator(config, networks, normalizer, meta, path, device)
    if dataset_dir is not None:
        evaluator.check_dataset(dataset_dir)
    return evaluator


# --- training --------------------------------------------------------------------------------------------------------


class _CropPool:
    """Encoded, normalized crops of a split's motions, each with a degraded copy (see the module docstring).

    The pool holds ``per_clip = max(2, pool_size // num_clips)`` crops for each of up to ``pool_size // per_clip``
    clips (all clips when they fit). :meth:`refresh` redraws the crops of a share of those clips, preferring clips
    not in the pool, so that training covers every clip of a large split.
    """

    def __init__(self, motions: list[np.ndarray], fps: float, skeleton: Skeleton, normalizer: Normalizer,
                 config: EvaluatorConfig, rng: np.random.Generator) -> None:
        self.motions, self.skeleton, self.normalizer, self.config, self.rng = motions, skeleton, normalizer, config, rng
        self.fps = fps
        self.per_clip = max(2, config.pool_size // len(motions))
        capacity = min(len(motions), max(2, config.pool_size // self.per_clip))
        chosen = rng.choice(len(motions), size=capacity, replace=False)
        self.crops: dict[int, list[tuple[Tensor, Tensor]]] = self._make([int(c) for c in chosen])

    def _crop(self, clip: int) -> tuple[int, int]:
        """A random (start, length): length in [fraction, 1] × min(clip length, max_frames) in steps of crop_unit."""
        cfg = self.config
        total = min(len(self.motions[clip]), cfg.max_frames)
        low = min(total, max(cfg.min_frames, int(math.ceil(cfg.crop_min_fraction * total))))
        length = low + (int(self.rng.integers(0, total - low + 1)) // cfg.crop_unit) * cfg.crop_unit
        start = int(self.rng.integers(0, len(self.motions[clip]) - length + 1))
        return start, length

    def _degrade(self, crop: np.ndarray) -> np.ndarray:
        cfg = self.config
        kind = cfg.degradations[int(self.rng.integers(len(cfg.degradations)))]
        if kind == "jitter":
            sigma = math.exp(self.rng.uniform(math.log(cfg.jitter_min_m), math.log(cfg.jitter_max_m)))
            return jitter_joints(crop, sigma, self.rng)
        return slide_joints(crop, self.fps, self.rng.uniform(cfg.slide_min_mps, cfg.slide_max_mps), self.rng)

    def _make(self, clips: list[int]) -> dict[int, list[tuple[Tensor, Tensor]]]:
        """``per_clip`` (clean, degraded) feature pairs ``(T_k, D)`` per clip, normalized."""
        cfg = self.config
        joints: list[np.ndarray] = []
        for clip in clips:
            for _ in range(self.per_clip):
                start, length = self._crop(clip)
                crop = self.motions[clip][start:start + length]
                joints += [crop, self._degrade(crop)]
        features = encode_many(joints, self.skeleton, normalizer=self.normalizer, **_encode_settings(cfg))
        pairs = list(zip(features[0::2], features[1::2]))
        return {clip: pairs[i * self.per_clip:(i + 1) * self.per_clip] for i, clip in enumerate(clips)}

    def refresh(self, fraction: float) -> None:
        count = int(round(fraction * len(self.crops)))
        if count == 0:
            return
        dropped = [int(c) for c in self.rng.choice(sorted(self.crops), size=count, replace=False)]
        outside = [c for c in range(len(self.motions)) if c not in self.crops]
        fresh = [int(c) for c in self.rng.permutation(outside)[:count]]
        fresh += dropped[:count - len(fresh)]  # small splits: new crops of the same clips
        for clip in dropped:
            del self.crops[clip]
        self.crops.update(self._make(fresh))

    def batch(self, size: int) -> tuple[list[int], list[Tensor], list[Tensor], list[Tensor]]:
        """``size`` distinct clips (fewer if the pool holds fewer), each with two distinct crops: the anchor, the
        positive, and the positive's degraded copy. Returns (clips, anchors, positives, degraded)."""
        clips = sorted(self.crops)
        picked = [clips[int(i)] for i in self.rng.choice(len(clips), size=min(size, len(clips)), replace=False)]
        anchors, positives, degraded = [], [], []
        for clip in picked:
            i, j = self.rng.choice(len(self.crops[clip]), size=2, replace=False)
            anchors.append(self.crops[clip][int(i)][0])
            positives.append(self.crops[clip][int(j)][0])
            degraded.append(self.crops[clip][int(j)][1])
        return picked, anchors, positives, degraded


def _info_nce(query: Tensor, keys: Tensor, same: Tensor, temperature: float) -> Tensor:
    """InfoNCE: row i of ``query (B, E)`` should pick key i among ``keys (K ≥ B, E)``.

    ``same (B, B)`` bool marks pairs that are not negatives (another crop of the same clip, the same caption): their
    logits among the first B keys are masked out, except the diagonal.
    """
    batch = query.shape[0]
    block = same & ~torch.eye(batch, dtype=torch.bool, device=query.device)  # (B, B)
    block = F.pad(block, (0, keys.shape[0] - batch))  # (B, K): the keys after the first B are always negatives
    logits = (query @ keys.T / temperature).masked_fill(block, float("-inf"))  # (B, K)
    return F.cross_entropy(logits, torch.arange(batch, device=query.device))


def train_evaluator(data_dir: str | Path, out_dir: str | Path, *, split: str = "train",
                    config: EvaluatorConfig | None = None, device: str | torch.device = "auto",
                    progress: bool = True, overwrite: bool = False, text_encoder: Any = None) -> Path:
    """Train an evaluator on ``config.motion_field`` of a dataset split and save it to ``out_dir``.

    Args:
        data_dir: dataset folder (with ``dataset.json``).
        out_dir: evaluator folder to write (refused if it already holds one, unless ``overwrite``).
        split: the split to learn from (the train split: never fit the ruler on the data it will measure).
        config: :class:`EvaluatorConfig` (default: the CPU-friendly defaults).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``, ...
        progress: show a progress bar.
        text_encoder: a :class:`videomdm.text.TextEncoder` instance to use instead of building
            ``config.text_encoder`` (used only when the split has captions). It must compute what the named encoder
            computes: ``evaluator.json`` records ``config.text_encoder``, which :meth:`Evaluator.embed_texts` builds.

    Returns:
        ``out_dir``.
    """
    config = (config or EvaluatorConfig()).validate()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    _check_out_dir(out_dir, overwrite)  # fail before training
    began = time.perf_counter()
    dev = resolve_device(device)
    identity = dataset_identity(data_dir, split)
    index: DatasetIndex = read_dataset_index(data_dir)
    skeleton = get_skeleton(index.skeleton)
    layout = FeatureLayout(skeleton.num_joints)

    motions: list[np.ndarray] = []
    captions: list[list[str]] = []
    skipped = 0
    for path in index.clip_paths(split):
        clip = load_clip(path)
        motion = getattr(clip, config.motion_field)
        if motion is None:
            raise DataError(f"{path}: clip {clip.name} has no {config.motion_field}, which the evaluator learns from")
        if len(motion) < config.min_frames:
            skipped += 1
            continue
        motions.append(np.asarray(motion, dtype=np.float32))
        captions.append(list(clip.text))
    if len(motions) < 2:
        raise DataError(f"{data_dir / INDEX_NAME}: split {split!r} has {len(motions)} clips with at least "
                        f"{config.min_frames} frames of {config.motion_field}; contrastive training needs 2 or more")

    # Text: frozen sentence embeddings of every distinct caption, computed once.
    use_text = any(captions) and config.text_encoder != "none"
    caption_list: list[str] = sorted({c for cs in captions for c in cs}) if use_text else []
    caption_index = {c: i for i, c in enumerate(caption_list)}
    caption_ids = [[caption_index[c] for c in cs] for cs in captions] if use_text else []  # rows of text_table
    text_table: Tensor | None = None
    if use_text:
        if text_encoder is None:
            from .text import build_text_encoder

            text_encoder = build_text_encoder(config.text_encoder)
        text_table = text_encoder.encode(caption_list).float().to(dev)  # (C, text_dim)

    rng = np.random.default_rng(config.seed)
    normalizer = Normalizer.from_features(torch.cat(encode_many(motions, skeleton, **_encode_settings(config))))
    pool = _CropPool(motions, index.fps, skeleton, normalizer, config, rng)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        networks = EvaluatorNetworks(config, layout.dim, text_table.shape[1] if text_table is not None else None)
    networks.to(dev).train()
    optimizer = torch.optim.AdamW(networks.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, config.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / max(1, config.steps)))))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc="evaluator", leave=False)
    losses: list[float] = []
    for step in range(config.steps):
        if config.refresh_every and step and step % config.refresh_every == 0:
            pool.refresh(config.refresh_fraction)
        clips, anchors, positives, degraded = pool.batch(config.batch_size)
        batch = len(clips)
        x, mask = _pad(anchors + positives + degraded)  # (3B, T, D), (3B, T)
        z = networks.encoder(x.to(dev), mask.to(dev))  # (3B, E)
        z_a, z_p, z_d = z[:batch], z[batch:2 * batch], z[2 * batch:]
        distinct = torch.zeros(batch, batch, dtype=torch.bool, device=dev)  # the batch's clips are distinct
        # Clean crops of the other clips and the degraded copies of every positive are the negatives.
        loss = 0.5 * (_info_nce(z_a, torch.cat([z_p, z_d]), distinct, config.temperature)
                      + _info_nce(z_p, torch.cat([z_a, z_d]), distinct, config.temperature))
        if networks.probe is not None:  # clean (anchors, positives) → 1, degraded → 0
            target = torch.cat([torch.ones(2 * batch, device=dev), torch.zeros(batch, device=dev)])
            loss = loss + config.realism_weight * F.binary_cross_entropy_with_logits(networks.probe(z), target)
        if networks.text_head is not None and text_table is not None:
            rows = [k for k, clip in enumerate(clips) if caption_ids[clip]]
            if len(rows) >= 2:
                chosen = [caption_ids[clips[k]][int(rng.integers(len(caption_ids[clips[k]])))] for k in rows]
                z_t = networks.text_head(text_table[chosen])  # (B_t, E)
                ids = torch.tensor(chosen, device=dev)
                same_text = ids[:, None] == ids[None, :]  # (B_t, B_t): a shared caption is no negative
                z_m = z_a[torch.tensor(rows, device=dev)]
                loss = loss + config.text_weight * 0.5 * (_info_nce(z_m, z_t, same_text, config.temperature)
                                                          + _info_nce(z_t, z_m, same_text, config.temperature))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if bar is not None:
        bar.close()

    meta = {
        "format": _FORMAT,
        "version": EVALUATOR_VERSION,
        "config": asdict(config),
        "input_dim": layout.dim,
        "text_dim": int(text_table.shape[1]) if text_table is not None else None,
        "text_encoder": config.text_encoder if use_text else "none",
        "dataset": identity,
        "training": {
            "seconds": round(time.perf_counter() - began, 2), "device": str(dev), "clips": len(motions),
            "skipped_clips": skipped, "captions": len(caption_list),
            "final_loss": float(np.mean(losses[-20:])) if losses else None,
        },
    }
    evaluator = Evaluator(config, networks.cpu(), normalizer, meta)
    return evaluator.save(out_dir, overwrite=overwrite)


# --- sanity check ----------------------------------------------------------------------------------------------------


def _windows(motions: list[np.ndarray], length: int, stride: int) -> list[np.ndarray]:
    """Cut motions into windows of ``length`` frames every ``stride`` frames; shorter motions are kept whole."""
    out = []
    for m in motions:
        if len(m) <= length:
            out.append(m)
            continue
        out.extend(m[s:s + length] for s in range(0, len(m) - length + 1, stride))
    return out


def sanity_table(evaluator: Evaluator, data_dir: str | Path, *, reference_split: str | None = None,
                 eval_split: str = "test", window_seconds: float = 4.0, stride_seconds: float = 1.0,
                 jitter_m: Sequence[float] = (0.02, 0.05), slide_speed: float = 0.5, seed: int = 0,
                 check: bool = True) -> dict[str, Any]:
    """FID of clean and degraded held-out motion against the evaluator's training split.

    Both splits' ``motion_field`` motions are cut into windows (``window_seconds`` long every ``stride_seconds``);
    the rows are FIDs (:func:`videomdm.metrics.fid`) of the ``eval_split`` windows, clean and degraded, against the
    ``reference_split`` windows (default: the split the evaluator was trained on):

    - ``clean``: the held-out windows as they are (the floor: finite-sample noise and the split gap);
    - ``jitter N cm``: :func:`jitter_joints` with std N cm per coordinate per frame (seen in training, as hard
      negatives, at random strengths);
    - ``sliding X m/s``: :func:`slide_joints` (seen in training at random speeds, unless removed from
      ``config.degradations``);
    - ``reversed``: :func:`reverse_joints` (never seen in training: the row that tests generalization).

    Returns:
        ``{"reference": split, "eval": split, "num_reference": int, "num_eval": int, "window_frames": int,
        "fid": {row name: float}}``. Degraded rows should be clearly above ``clean``.
    """
    if check:
        evaluator.check_dataset(data_dir)
    reference_split = reference_split or evaluator.meta["dataset"]["split"]
    index = read_dataset_index(Path(data_dir))
    field = evaluator.config.motion_field
    fps = index.fps
    length = max(2, int(round(window_seconds * fps)))
    stride = max(1, int(round(stride_seconds * fps)))

    def load(split: str) -> list[np.ndarray]:
        motions = []
        for path in index.clip_paths(split):
            motion = getattr(load_clip(path), field)
            if motion is None:
                raise DataError(f"{path}: no {field}")
            motions.append(np.asarray(motion, dtype=np.float32))
        return _windows(motions, length, stride)

    reference, held_out = load(reference_split), load(eval_split)
    rng = np.random.default_rng(seed)
    reference_z = evaluator.embed_joints(reference, fps)
    rows: dict[str, list[np.ndarray]] = {"clean": held_out}
    for sigma in jitter_m:
        rows[f"jitter {sigma * 100:g} cm"] = [jitter_joints(m, sigma, rng) for m in held_out]
    rows[f"sliding {slide_speed:g} m/s"] = [slide_joints(m, fps, slide_speed, rng) for m in held_out]
    rows["reversed"] = [reverse_joints(m) for m in held_out]
    table = {name: fid(evaluator.embed_joints(motions, fps), reference_z) for name, motions in rows.items()}
    return {"reference": reference_split, "eval": eval_split, "num_reference": len(reference),
            "num_eval": len(held_out), "window_frames": length, "fid": table}
