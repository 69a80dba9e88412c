"""The built-in lifter: :class:`TemporalLifter`, a VideoPose3D-style stack of dilated temporal convolutions trained
here on mocap rendered through random virtual cameras and a simulated 2D detector (:func:`train_lifter`).

It lifts the keypoints to root-relative camera-frame joints; :func:`lift_clip` places them in the world with
:func:`videomdm.teacher.grounding.ground_to_world`. It reads only the 2D keypoints, their confidences and the
camera, never ``gt_3d``. Frames and equations: :mod:`videomdm.teacher.arrays`.


Lifter input normalization (:func:`normalize_keypoints`), in three steps, each removing a nuisance the network
should not have to learn:

1. **Normalized image coordinates** (eq. 3): the focal length, principal point and resolution are gone.
2. **Ray alignment**: per frame, the keypoint rays are rotated by the smallest rotation ``Q_t`` that takes the ray
   through the 2D root (pelvis; mid-hip when the pelvis is missing) to the optical axis, and re-projected. The root
   lands at ``(0, 0)`` and the image becomes the one a camera turned to look at the subject would see, so where the
   subject stands in the frame (which otherwise shears the apparent pose, ``δx ≈ (δX − x_root δZ) / Z``) no longer
   matters. The network predicts root-relative joints in this aligned frame; they are rotated back with ``Q_tᵀ``.
3. **Per-clip 2D scale**: the aligned coordinates are divided by the clip's median 2D torso length (root to neck;
   mid-shoulder when the neck is missing). A subject twice as far away, or seen through a lens of twice the focal
   length, gives the same input. Depth and size are therefore not observable from the input: the network outputs
   metres from the body-size prior it learned from mocap, which is exactly the monocular scale ambiguity; absolute
   depth is recovered afterwards from the reprojection (:func:`~videomdm.teacher.grounding.solve_root_translation`).

Each joint's input is ``(x̃, ỹ, c)``: the normalized aligned coordinates (0 when missing) and the confidence (0 when
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..camera import pixels_to_normalized, world_to_camera
from ..checkpoint import CheckpointError, atomic_write_text, load_tensors, read_description, save_tensors
from ..data.clip import load_clip, read_dataset_index
from ..data.errors import DataError
from ..data.virtual import DetectorNoise, camera_for_clip, simulate_detections
from ..metrics import mpjpe
from ..skeleton import SMPL_22, Skeleton, get_skeleton, joint_map
from .arrays import camera_to_pixels, fill_gaps, on_arrays, per_frame_extrinsics
from .grounding import ground_to_world

__all__ = [
    "LIFTER_WEIGHTS",
    "LIFTER_INFO",
    "LifterConfig",
    "TemporalLifter",
    "Lifter",
    "NormalizedKeypoints",
    "build_network",
    "normalize_keypoints",
    "train_lifter",
    "load_lifter",
    "lift_clip",
    "evaluate_lifter",
]

LIFTER_WEIGHTS = "lifter.safetensors"
LIFTER_INFO = "lifter.json"
_FORMAT = "videomdm-lifter"
_FORMAT_VERSION = 1

@dataclass
class LifterConfig:
    """Architecture, training budget and data synthesis of the built-in lifter.

    Architecture (VideoPose3D, Pavllo et al. 2019, fig. 2, with "same" replicate padding): an expansion convolution
    (``kernel``, dilation 1), then ``blocks`` residual blocks with dilation ``kernel^(i+1)``, then a 1×1 projection
    to ``3 J``. The receptive field is ``1 + (kernel − 1) Σ_{i=0..blocks} kernel^i`` frames: 27 for (3, 2), 81 for
    (3, 3), i.e. 1.35 s / 4 s at 20 fps.

    Training: ``steps`` Adam steps on ``batch_size`` random windows of ``window`` frames of the split's ``gt_3d``,
    each seen through a random virtual camera (``distance`` m, ``elevation_deg``, ``azimuth_deg``, ``focal_px``,
    ``image_size``; ranges ``(low, high)``) and the simulated detector at ``noise_severity`` (0 = clean keypoints),
    mirrored with probability ``flip_probability``. Loss: root-relative MPJPE + ``velocity_weight`` × mean velocity
    error. The learning rate follows a cosine from ``lr`` to ``lr · final_lr_fraction``. The last ``val_fraction``
    of every clip's frames is held out and lifted through ``val_views`` fixed random cameras for the validation
    MPJPE.

    Default budget (measured on 2 CPU cores, torch 2.13): 1000 steps in ≈ 110 s. Trained on the ``lifter`` split of
    the LAFAN1 sample at 20 fps (``build_lafan1_dataset(lifter_fraction=0.25)``, the benchmark of
    :mod:`videomdm.pipeline`), its ``test`` split lifted through 2 random cameras per clip with the default detector
    noise gives 85 mm root-aligned MPJPE, 73 mm PA-MPJPE and 279 mm world MPJPE after grounding (depth dominates: a
    3% body-size error is 15 cm of depth at 5 m); 600 steps (the demo's): 94 / 78 / 297 mm.

    ``keypoint_skeleton``: the 2D detector skeleton the lifter is meant for; SMPL-22 joints that it cannot provide
    (per :func:`videomdm.skeleton.joint_map`) are zeroed in training and at inference.
    """

    channels: int = 256
    blocks: int = 2
    kernel: int = 3
    dropout: float = 0.1
    window: int = 64
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    final_lr_fraction: float = 0.05
    velocity_weight: float = 0.5
    seed: int = 0
    distance: tuple[float, float] = (3.0, 8.0)
    elevation_deg: tuple[float, float] = (-5.0, 30.0)
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    focal_px: tuple[float, float] = (600.0, 1600.0)
    image_size: tuple[int, int] = (1280, 720)
    noise_severity: float = 1.0
    flip_probability: float = 0.5
    keypoint_skeleton: str = "smpl22"
    val_fraction: float = 0.1
    val_views: int = 2
    fps: float = 20.0

    def __post_init__(self) -> None:
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (symmetric receptive field), got {self.kernel}")
        for name in ("channels", "window", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    @property
    def receptive_field(self) -> int:
        """Frames seen by one output frame: ``1 + (k − 1) Σ_{i=0..blocks} k^i``."""
        return 1 + (self.kernel - 1) * sum(self.kernel ** i for i in range(self.blocks + 1))

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LifterConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown lifter config keys {unknown}")
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**converted)


def _rotation_to_optical_axis(direction: Tensor) -> Tensor:
    """Smallest rotation ``Q`` with ``Q d = e_z`` for unit ``d (..., 3)`` with ``d_z > 0`` (Rodrigues' formula).

    With ``v = d × e_z = (d_y, −d_x, 0)`` and ``c = d · e_z = d_z``: ``Q = I + [v]× + [v]×² / (1 + c)``.
    Returns ``(..., 3, 3)``.
    """
    dx, dy, dz = direction.unbind(-1)
    zero = torch.zeros_like(dx)
    vx, vy = dy, -dx
    skew = torch.stack([
        torch.stack([zero, zero, vy], -1),
        torch.stack([zero, zero, -vx], -1),
        torch.stack([-vy, vx, zero], -1),
    ], dim=-2)  # (..., 3, 3) [v]× with v = (vx, vy, 0)
    eye = torch.eye(3, dtype=direction.dtype, device=direction.device).expand_as(skew)
    return eye + skew + (skew @ skew) / (1.0 + dz)[..., None, None]


@dataclass
class NormalizedKeypoints:
    """The lifter's input and what is needed to undo it.

    Attributes:
        features: ``(B, T, 3 J)`` per joint ``(x̃, ỹ, c)`` (module docstring, steps 1–3).
        rotation: ``(B, T, 3, 3)`` ``Q_t``, camera frame → ray-aligned frame.
        scale: ``(B,)`` per-clip 2D torso length in aligned normalized coordinates.
    """

    features: Tensor
    rotation: Tensor
    scale: Tensor


def normalize_keypoints(keypoints: Tensor, confidence: Tensor, skeleton: Skeleton = SMPL_22,
                        joint_mask: Tensor | None = None) -> NormalizedKeypoints:
    """The lifter's input normalization (module docstring): normalized coords → ray alignment → per-clip scale.

    Args:
        keypoints: ``(B, T, J, 2)`` normalized image coordinates (eq. 3), motion-skeleton joint order.
        confidence: ``(B, T, J)`` in [0, 1]; 0 = missing (its coordinates are ignored, even if NaN).
        skeleton: the motion skeleton (root = joint 0; uses its hips, shoulders and ``neck``).
        joint_mask: ``(J,)`` bool, joints the lifter may see (others are zeroed); default all.

    Returns:
        :class:`NormalizedKeypoints`.

    The 2D root is the pelvis, else the mid-hip, else linearly interpolated from the nearest frames that have one.
    The scale is the median over frames of the 2D distance root → neck (or mid-shoulder); without any such frame,
    0.3 × the median vertical extent of the visible joints; without any visible joint, 1.
    """
    if keypoints.shape[-1] != 2 or keypoints.ndim != 4 or confidence.shape != keypoints.shape[:-1]:
        raise ValueError(f"keypoints must be (B, T, J, 2) and confidence (B, T, J), got {tuple(keypoints.shape)}, "
                         f"{tuple(confidence.shape)}")
    if keypoints.shape[2] != skeleton.num_joints:
        raise ValueError(f"expected {skeleton.num_joints} joints of {skeleton.name}, got {keypoints.shape[2]}")
    conf = confidence.clamp(0.0, 1.0)
    if joint_mask is not None:
        conf = conf * joint_mask.to(conf.dtype)
    seen = conf > 0  # (B, T, J)
    xy = torch.where(seen.unsqueeze(-1), keypoints, torch.zeros_like(keypoints))  # NaN-safe

    def pick(names: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        """Mean 2D position ``(B, T, 2)`` of joints, valid ``(B, T)`` where all are seen."""
        idx = skeleton.indices(names)
        return xy[:, :, idx].mean(dim=2), seen[:, :, idx].all(dim=2)

    right_hip, left_hip, right_shoulder, left_shoulder = skeleton.facing or ("", "", "", "")
    root, root_ok = xy[:, :, 0], seen[:, :, 0]
    if skeleton.facing is not None:
        mid_hip, mid_hip_ok = pick((left_hip, right_hip))
        root = torch.where(root_ok.unsqueeze(-1), root, mid_hip)
        root_ok = root_ok | mid_hip_ok
    root = fill_gaps(root, root_ok)  # (B, T, 2)

    # Step 2: rotate every keypoint ray (x, y, 1) by Q_t, the rotation taking the root ray to the optical axis.
    root_ray = F.normalize(torch.cat([root, torch.ones_like(root[..., :1])], dim=-1), dim=-1)  # (B, T, 3)
    rotation = _rotation_to_optical_axis(root_ray)  # (B, T, 3, 3)
    rays = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1)  # (B, T, J, 3)
    rotated = (rotation.unsqueeze(2) @ rays.unsqueeze(-1)).squeeze(-1)  # (B, T, J, 3)
    aligned = rotated[..., :2] / rotated[..., 2:3].clamp_min(1e-6)  # (B, T, J, 2), root at (0, 0)

    # Step 3: per-clip scale = median 2D torso length in the aligned image.
    neck, neck_ok = (aligned[:, :, skeleton.index("neck")], seen[:, :, skeleton.index("neck")]) \
        if "neck" in skeleton.joint_names else (aligned[:, :, 0], torch.zeros_like(root_ok))
    if skeleton.facing is not None:
        idx = skeleton.indices((left_shoulder, right_shoulder))
        mid_shoulder, mid_shoulder_ok = aligned[:, :, idx].mean(dim=2), seen[:, :, idx].all(dim=2)
        neck = torch.where(neck_ok.unsqueeze(-1), neck, mid_shoulder)
        neck_ok = neck_ok | mid_shoulder_ok
    torso = neck.norm(dim=-1)  # (B, T): distance from the root, which sits at (0, 0)
    torso_ok = neck_ok & root_ok & (torso > 0)
    nan = torch.full_like(torso, float("nan"))
    scale = torch.where(torso_ok, torso, nan).nanmedian(dim=1).values  # (B,)
    y_seen = torch.where(seen, aligned[..., 1], float("nan"))  # (B, T, J)
    extent = y_seen.nan_to_num(float("-inf")).amax(dim=2) - y_seen.nan_to_num(float("inf")).amin(dim=2)  # (B, T)
    extent = torch.where(seen.sum(dim=2) >= 2, extent, float("nan"))
    fallback = 0.3 * extent.nanmedian(dim=1).values
    scale = torch.where(torch.isfinite(scale), scale, fallback)
    scale = torch.where(torch.isfinite(scale) & (scale > 1e-6), scale, torch.ones_like(scale))

    coords = torch.where(seen.unsqueeze(-1), aligned / scale[:, None, None, None], torch.zeros_like(aligned))
    features = torch.cat([coords, conf.unsqueeze(-1)], dim=-1)  # (B, T, J, 3)
    return NormalizedKeypoints(features.flatten(2), rotation, scale)  # features (B, T, 3J)


class _ResidualBlock(nn.Module):
    """``x + drop(relu(bn(conv1×1(drop(relu(bn(conv_k,d(x))))))))`` over ``(B, C, T)``, length-preserving."""

    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.pad = (kernel - 1) // 2 * dilation
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm1d(channels)
        self.mix = nn.Conv1d(channels, channels, 1, bias=False)
        self.bn_mix = nn.BatchNorm1d(channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = F.pad(x, (self.pad, self.pad), mode="replicate")  # symmetric, output length = input length
        h = self.drop(F.relu(self.bn(self.conv(h))))
        h = self.drop(F.relu(self.bn_mix(self.mix(h))))
        return x + h


class TemporalLifter(nn.Module):
    """Dilated temporal convolutions: keypoints ``(B, T, J, 2)`` + confidence → root-relative camera-frame joints.

    ``forward`` applies :func:`normalize_keypoints`, the network (module docstring; :class:`LifterConfig` for the
    architecture), and undoes the ray alignment: the output is ``(B, T, J, 3)`` metres in the camera frame
    (OpenCV axes), root (joint 0) exactly at 0. The output length equals the input length (replicate padding).
    """

    def __init__(self, num_joints: int = 22, *, channels: int = 256, blocks: int = 2, kernel: int = 3,
                 dropout: float = 0.1, skeleton: Skeleton = SMPL_22, joint_mask: np.ndarray | None = None) -> None:
        super().__init__()
        if skeleton.num_joints != num_joints:
            raise ValueError(f"skeleton {skeleton.name} has {skeleton.num_joints} joints, not {num_joints}")
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {kernel}")
        self.num_joints, self.skeleton = num_joints, skeleton
        mask = np.ones(num_joints, dtype=bool) if joint_mask is None else np.asarray(joint_mask, dtype=bool)
        self.register_buffer("joint_mask", torch.from_numpy(mask.copy()), persistent=False)
        self.expand_pad = (kernel - 1) // 2
        self.expand = nn.Conv1d(3 * num_joints, channels, kernel, bias=False)
        self.expand_bn = nn.BatchNorm1d(channels)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_ResidualBlock(channels, kernel, kernel ** (i + 1), dropout)
                                    for i in range(blocks))
        self.shrink = nn.Conv1d(channels, 3 * num_joints, 1)

    def network(self, features: Tensor) -> Tensor:
        """``(B, T, 3 J)`` normalized features → ``(B, T, J, 3)`` root-relative joints in the aligned frame."""
        b, num_frames, _ = features.shape
        x = features.transpose(1, 2)  # (B, 3J, T)
        x = F.pad(x, (self.expand_pad, self.expand_pad), mode="replicate")
        x = self.drop(F.relu(self.expand_bn(self.expand(x))))  # (B, C, T)
        for block in self.blocks:
            x = block(x)
        out = self.shrink(x).transpose(1, 2).reshape(b, num_frames, self.num_joints, 3)  # (B, T, J, 3)
        return out - out[:, :, :1]  # root at 0

    def forward(self, keypoints: Tensor, confidence: Tensor) -> Tensor:
        """``keypoints (B, T, J, 2)`` normalized image coords, ``confidence (B, T, J)`` → ``(B, T, J, 3)`` metres."""
        normalized = normalize_keypoints(keypoints, confidence, self.skeleton, self.joint_mask)
        aligned = self.network(normalized.features)
        # Back to the camera frame: X_c = Q_tᵀ X_aligned.
        return (normalized.rotation.transpose(-1, -2).unsqueeze(2) @ aligned.unsqueeze(-1)).squeeze(-1)


def _input_joint_mask(keypoint_skeleton: str, skeleton: Skeleton = SMPL_22) -> np.ndarray:
    """``(J,)`` bool: motion-skeleton joints that the keypoint skeleton provides (directly or derived)."""
    return joint_map(get_skeleton(keypoint_skeleton), skeleton).present


def build_network(config: LifterConfig, skeleton: Skeleton = SMPL_22) -> TemporalLifter:
    return TemporalLifter(skeleton.num_joints, channels=config.channels, blocks=config.blocks, kernel=config.kernel,
                          dropout=config.dropout, skeleton=skeleton,
                          joint_mask=_input_joint_mask(config.keypoint_skeleton, skeleton))


@dataclass
class Lifter:
    """A trained lifter: the network (in eval mode), its config and what it was trained on (``lifter.json``)."""

    network: TemporalLifter
    config: LifterConfig
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def skeleton(self) -> Skeleton:
        return self.network.skeleton

    @property
    def trained_on(self) -> tuple[str | None, str | None]:
        """(dataset name, split) of the training data."""
        dataset = self.info.get("dataset", {})
        return dataset.get("name"), dataset.get("split")

    @torch.no_grad()
    def predict(self, keypoints: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """Root-relative camera-frame joints of one clip, one batched pass over all its frames.

        Args:
            keypoints: ``(T, J, 2)`` normalized image coordinates, motion-skeleton order.
            confidence: ``(T, J)``.
        Returns:
            ``(T, J, 3)`` float32 metres, root at 0.
        """
        self.network.eval()
        kp = torch.as_tensor(np.asarray(keypoints), dtype=torch.float32)[None]
        conf = torch.as_tensor(np.asarray(confidence), dtype=torch.float32)[None]
        return self.network(kp, conf)[0].numpy()


# --- training data: mocap windows seen through virtual cameras ------------------------------------------------------


def _detector_noise(severity: float):
    """The simulated detector (``data.virtual.DetectorNoise``) at ``severity``: 0 = clean keypoints, 1 = the
    default detector, other values scale its jitter, drop and swap rates."""
    if severity <= 0:
        return DetectorNoise.clean()
    return replace(DetectorNoise(), severity=float(severity))


@dataclass
class _Motions:
    """The ``gt_3d`` of a split in SMPL-22, with the frames held out for validation."""

    motions: list[np.ndarray]  # (T_i, J, 3) float32 world metres
    train_frames: list[int]  # first train_frames[i] frames are for training, the rest held out


def _load_motions(data_dir: Path, split: str, skeleton: Skeleton, val_fraction: float) -> tuple[_Motions, Any]:
    index = read_dataset_index(Path(data_dir))
    paths = list(index.clip_paths(split))
    if not paths:
        raise DataError(f"{data_dir}: split {split!r} has no clips")
    motions, train_frames = [], []
    for path in paths:
        clip = load_clip(path)
        if clip.gt_3d is None:
            raise DataError(f"{path}: clip {clip.name} has no gt_3d, needed to train the lifter")
        gt = np.asarray(clip.gt_3d, dtype=np.float64)
        source = get_skeleton(clip.skeleton)
        if source.name != skeleton.name:
            mapping = joint_map(source, skeleton)
            if not mapping.present.all():
                missing = [skeleton.joint_names[j] for j in np.flatnonzero(~mapping.present)]
                raise DataError(f"{path}: clip {clip.name} skeleton {source.name} lacks {missing}")
            gt, _ = mapping.apply(gt)
        if not np.isfinite(gt).all():
            raise DataError(f"{path}: clip {clip.name} gt_3d has non-finite values")
        num_val = int(round(val_fraction * len(gt)))
        if len(gt) - num_val < 1:
            num_val = 0
        motions.append(gt.astype(np.float32))
        train_frames.append(len(gt) - num_val)
    return _Motions(motions, train_frames), index


def _render_window(window: np.ndarray, config: LifterConfig, noise, rng: np.random.Generator,
                   skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One virtual view of a world window ``(T, J, 3)``.

    Returns normalized noisy keypoints ``(T, J, 2)``, confidence ``(T, J)`` and the root-relative camera-frame
    target ``(T, J, 3)``, all float32.
    """
    stride = max(1, math.ceil(len(window) / 16))  # the camera is chosen to fit every 'stride'-th frame: 4× cheaper
    K, R, t = camera_for_clip(window[::stride], rng, distance=config.distance, elevation_deg=config.elevation_deg,
                              azimuth_deg=config.azimuth_deg, focal_px=config.focal_px,
                              image_size=config.image_size)
    R_f, t_f = per_frame_extrinsics(R, t, len(window))
    cam = on_arrays(world_to_camera, window, R_f, t_f)  # (T, J, 3)
    uv = on_arrays(camera_to_pixels, cam, K)
    uv_noisy, conf = simulate_detections(uv.astype(np.float32), skeleton, noise, rng)
    xy = on_arrays(pixels_to_normalized, uv_noisy, K)
    conf = np.asarray(conf, dtype=np.float64)
    xy = np.where(conf[..., None] > 0, xy, 0.0)  # missing detections may carry any value
    return xy.astype(np.float32), conf.astype(np.float32), (cam - cam[:, :1]).astype(np.float32)


def _training_batch(motions: _Motions, config: LifterConfig, noise, rng: np.random.Generator,
                    skeleton: Skeleton) -> tuple[Tensor, Tensor, Tensor]:
    """``batch_size`` random windows, each with its own virtual camera, detector noise and random mirroring.

    Windows are drawn from the training frames of every clip, clips weighted by their number of training frames;
    a clip shorter than ``window`` is padded by repeating its last frame. Mirroring negates camera-frame x (and hence
    normalized x) and swaps left/right joints in the keypoints, confidences and target alike.
    """
    lengths = np.asarray(motions.train_frames, dtype=np.float64)
    mirror = skeleton.mirror_permutation
    keypoints, confidences, targets = [], [], []
    for _ in range(config.batch_size):
        i = int(rng.choice(len(lengths), p=lengths / lengths.sum()))
        available = motions.train_frames[i]
        start = int(rng.integers(0, max(available - config.window, 0) + 1))
        window = motions.motions[i][start:min(start + config.window, available)]
        if len(window) < config.window:
            window = np.concatenate([window, np.repeat(window[-1:], config.window - len(window), axis=0)])
        xy, conf, target = _render_window(window, config, noise, rng, skeleton)
        if rng.random() < config.flip_probability:
            xy = xy[:, mirror] * np.array([-1.0, 1.0], dtype=np.float32)
            conf = conf[:, mirror]
            target = target[:, mirror] * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
        keypoints.append(xy)
        confidences.append(conf)
        targets.append(target)
    return (torch.from_numpy(np.stack(keypoints)), torch.from_numpy(np.stack(confidences)),
            torch.from_numpy(np.stack(targets)))


def _lifter_loss(pred: Tensor, target: Tensor, velocity_weight: float) -> tuple[Tensor, Tensor]:
    """Root-relative MPJPE + ``velocity_weight`` × mean per-joint velocity error (VideoPose3D eq. for MPJVE).

    ``pred``, ``target``: ``(B, T, J, 3)`` metres. Returns (total loss, MPJPE), scalars.
    """
    position = (pred - target).norm(dim=-1).mean()
    if pred.shape[1] > 1:
        velocity = ((pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])).norm(dim=-1).mean()
    else:
        velocity = pred.new_zeros(())
    return position + velocity_weight * velocity, position


def _validation_views(motions: _Motions, config: LifterConfig, noise,
                      skeleton: Skeleton) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Held-out segments (the last frames of each clip) seen through ``val_views`` fixed cameras each.

    The cameras and detector noise are seeded by ``(seed, clip, view)``, independent of the training steps.
    """
    views = []
    for i, (motion, start) in enumerate(zip(motions.motions, motions.train_frames)):
        segment = motion[start:]
        if len(segment) < 2:
            continue
        for v in range(config.val_views):
            rng = np.random.default_rng([config.seed, 2**31 - 1, i, v])
            xy, conf, target = _render_window(segment, config, noise, rng, skeleton)
            views.append((torch.from_numpy(xy)[None], torch.from_numpy(conf)[None], torch.from_numpy(target)[None]))
    return views


@torch.no_grad()
def _validation_mpjpe(network: TemporalLifter, views: list[tuple[Tensor, Tensor, Tensor]]) -> float | None:
    """Frame-weighted root-relative MPJPE (metres) over the validation views; None without any."""
    if not views:
        return None
    was_training = network.training
    network.eval()
    total, count = 0.0, 0
    for kp, conf, target in views:
        pred = network(kp, conf)
        total += float((pred - target).norm(dim=-1).mean(dim=-1).sum())
        count += target.shape[1]
    network.train(was_training)
    return total / count


def _learning_rate(config: LifterConfig, step: int) -> float:
    """Cosine decay from ``lr`` to ``lr · final_lr_fraction`` over ``steps``."""
    progress = step / max(config.steps - 1, 1)
    low = config.lr * config.final_lr_fraction
    return low + 0.5 * (config.lr - low) * (1 + math.cos(math.pi * progress))


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63)


def train_lifter(data_dir: Path, out_dir: Path, *, split: str = "lifter", config: LifterConfig = LifterConfig(),
                 progress: bool = True) -> Path:
    """Train :class:`TemporalLifter` on the ``gt_3d`` of one split of a mocap dataset.

    Pairs are made on the fly (:func:`_training_batch`): random windows, a random virtual camera per window
    (``camera_for_clip``), projection and ``simulate_detections``, random mirroring. Step ``s`` draws everything
    (windows, cameras, detector noise, flips, dropout) from generators seeded by ``(config.seed, s)``; the weights
    are initialized from ``config.seed``; on the CPU two runs give identical weights.

    Writes ``out_dir/lifter.safetensors`` (weights and BatchNorm statistics) and ``out_dir/lifter.json`` (config,
    dataset path/name/split/fps, final training loss and MPJPE (mean of the last 10% of steps), validation MPJPE
    on the held-out frames before and after training, wall time). Returns ``out_dir``.
    """
    from tqdm.auto import tqdm

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    skeleton = SMPL_22
    motions, index = _load_motions(data_dir, split, skeleton, config.val_fraction)
    if abs(float(index.fps) - config.fps) > 1e-6:
        warnings.warn(f"{data_dir}: dataset is at {index.fps} fps, the lifter config expects {config.fps} fps; "
                      f"its receptive field in seconds changes accordingly", stacklevel=2)
    noise = _detector_noise(config.noise_severity)
    started = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = build_network(config, skeleton)
        optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, amsgrad=True)
        val_views = _validation_views(motions, config, noise, skeleton)
        val_initial = _validation_mpjpe(network, val_views)
        network.train()
        losses, errors = [], []
        bar = tqdm(range(config.steps), desc="lifter", disable=not progress, leave=False)
        for step in bar:
            rng = np.random.default_rng([config.seed, step])
            torch.manual_seed(_step_seed(config.seed, step))  # dropout
            keypoints, confidence, target = _training_batch(motions, config, noise, rng, skeleton)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(config, step)
            pred = network(keypoints, confidence)
            loss, error = _lifter_loss(pred, target, config.velocity_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            errors.append(float(error.detach()))
            if progress:
                bar.set_postfix(loss=f"{losses[-1]:.4f}", mpjpe_mm=f"{1000 * errors[-1]:.0f}")
        val_final = _validation_mpjpe(network, val_views)
    tail = max(1, config.steps // 10)
    info = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "config": config.to_dict(),
        "skeleton": skeleton.name,
        "receptive_field": config.receptive_field,
        "dataset": {"path": str(data_dir.resolve()), "name": index.name, "split": split, "fps": float(index.fps),
                    "clips": len(motions.motions)},
        "final_train_loss": float(np.mean(losses[-tail:])),
        "final_train_mpjpe_m": float(np.mean(errors[-tail:])),
        "val_mpjpe_m": val_final,
        "val_mpjpe_initial_m": val_initial,
        "val_frames": int(sum(v[2].shape[1] for v in val_views)),
        "train_seconds": round(time.time() - started, 2),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(out_dir / LIFTER_WEIGHTS, network.state_dict())
    atomic_write_text(out_dir / LIFTER_INFO, json.dumps(info, indent=2) + "\n")
    return out_dir


def load_lifter(directory: Path) -> Lifter:
    """Load a lifter written by :func:`train_lifter`; any missing/corrupt file raises ``CheckpointError`` naming it."""
    directory = Path(directory)
    info_path = directory / LIFTER_INFO
    info = read_description(info_path, format_tag=_FORMAT, what="lifter")
    try:
        config = LifterConfig.from_dict(info["config"])
        skeleton = get_skeleton(info.get("skeleton", SMPL_22.name))
        network = build_network(config, skeleton)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{info_path}: invalid lifter config ({err})") from None
    weights_path = directory / LIFTER_WEIGHTS
    state = load_tensors(weights_path)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{weights_path}: weights do not match the config in {info_path} ({err})") from None
    network.eval()
    return Lifter(network=network, config=config, info=info, path=directory)


def lift_clip(lifter: Lifter, keypoints_2d: np.ndarray, confidence: np.ndarray, K: np.ndarray, R: np.ndarray,
              t: np.ndarray, *, level_floor: bool = False) -> np.ndarray:
    """Lift one clip to a world-frame teacher.

    Args:
        keypoints_2d: ``(T, J, 2)`` pixels in the motion skeleton's order (SMPL-22); entries with confidence 0
            are ignored.
        confidence: ``(T, J)``.
        K: ``(3, 3)`` intrinsics. R, t: per-clip ``(3, 3)``, ``(3,)`` or per-frame ``(T, 3, 3)``, ``(T, 3)``.
        level_floor: shift the result so that :func:`videomdm.representation.floor_from_feet` is at y = 0 (for
            estimated extrinsics).

    Returns:
        ``(T, J, 3)`` float32 world metres: root-relative prediction (one batched pass), grounded with
        :func:`ground_to_world`.
    """
    keypoints_2d = np.asarray(keypoints_2d, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    J = lifter.skeleton.num_joints
    if keypoints_2d.ndim != 3 or keypoints_2d.shape[1:] != (J, 2) or confidence.shape != keypoints_2d.shape[:2]:
        raise ValueError(f"keypoints_2d must be (T, {J}, 2) and confidence (T, {J}), got {keypoints_2d.shape}, "
                         f"{confidence.shape}")
    confidence = np.where(np.isfinite(keypoints_2d).all(-1), confidence, 0.0)
    xy = np.where(confidence[..., None] > 0, on_arrays(pixels_to_normalized, np.nan_to_num(keypoints_2d), K), 0.0)
    rel_cam = lifter.predict(xy, confidence)
    world = ground_to_world(rel_cam, xy, confidence, R, t, lifter.skeleton, level_floor=level_floor)
    return world.astype(np.float32)


@torch.no_grad()
def evaluate_lifter(lifter: Lifter, motions: list[np.ndarray], *, views: int = 2, seed: int = 0,
                    noise_severity: float | None = None) -> dict[str, float]:
    """Root-relative and grounded world MPJPE (metres) of a lifter on world motions ``(T, J, 3)`` (SMPL-22),
    each seen through ``views`` seeded virtual cameras (the lifter's camera ranges) and the simulated detector."""
    config = lifter.config
    noise = _detector_noise(config.noise_severity if noise_severity is None else noise_severity)
    rel_total, world_total, frames = 0.0, 0.0, 0
    for i, motion in enumerate(motions):
        for v in range(views):
            rng = np.random.default_rng([seed, i, v])
            K, R, t = camera_for_clip(motion, rng, distance=config.distance, elevation_deg=config.elevation_deg,
                                      azimuth_deg=config.azimuth_deg, focal_px=config.focal_px,
                                      image_size=config.image_size)
            R_f, t_f = per_frame_extrinsics(R, t, len(motion))
            cam = on_arrays(world_to_camera, motion, R_f, t_f)
            uv = on_arrays(camera_to_pixels, cam, K).astype(np.float32)
            uv, conf = simulate_detections(uv, lifter.skeleton, noise, rng)
            xy = np.where(np.asarray(conf)[..., None] > 0, on_arrays(pixels_to_normalized, uv, K), 0.0)
            rel = lifter.predict(xy, conf)
            world = ground_to_world(rel, xy, conf, R, t, lifter.skeleton)
            rel_total += mpjpe(rel, cam - cam[:, :1]) / 1000.0 * len(motion)  # metres: mpjpe gives millimetres
            world_total += mpjpe(world, motion) / 1000.0 * len(motion)
            frames += len(motion)
    return {"mpjpe_m": rel_total / frames, "world_mpjpe_m": world_total / frames, "frames": frames}
