"""The ``corrupt`` teacher: the ground truth damaged by a documented, parametric model of lifter errors with one
severity knob (:func:`corrupt_teacher`), for controlled experiments on mocap benchmarks."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..skeleton import SMPL_22, Skeleton
from .arrays import per_frame_extrinsics

__all__ = ["CorruptionParams", "corrupt_teacher"]


@dataclass(frozen=True)
class CorruptionParams:
    """Magnitudes of the lifter-error model of :func:`corrupt_teacher` at severity 1 (all scale linearly).

    Defaults give ≈ 7 cm root-relative MPJPE (≈ 15–25 cm world MPJPE, dominated by the depth error) on walking
    motion seen from 3–8 m, in the range of published monocular lifters (VideoPose3D 4.7 cm on Human3.6M with
    ground-truth 2D, 5–9 cm with detected 2D and in the wild), with visible jitter:

    - ``scale_sigma`` 0.05: per-clip log-std of the scale about the camera centre (5% depth and size error; 25 cm
      of depth at 5 m; ≈ 1.5 cm root-relative).
    - ``depth_sigma`` 0.05 m, ``depth_time`` 0.4 s: per-frame displacement of the whole pose along the camera ray
      through the root, Gaussian-smoothed white noise with this correlation time (depth wobble).
    - ``bone_sigma`` 0.04: per-clip relative error of each bone length (≈ 1–2 cm at the extremities).
    - ``pose_sigma`` 0.03 m, ``pose_time`` 0.3 s: slowly varying per-joint offsets (systematic pose errors, the
      largest part of a real lifter's MPJPE). Not a separate item of the brief; documented here.
    - ``jitter_sigma`` 0.008 m: white per-joint per-frame Gaussian noise (frame-to-frame jitter).
    - ``flip_rate`` 0.05 per second, ``flip_seconds`` (0.15, 0.5): segments where every left/right pair of joints
      is swapped (a label flip), starting as a Poisson process.
    """

    scale_sigma: float = 0.05
    depth_sigma: float = 0.05
    depth_time: float = 0.4
    bone_sigma: float = 0.04
    pose_sigma: float = 0.03
    pose_time: float = 0.3
    jitter_sigma: float = 0.008
    flip_rate: float = 0.05
    flip_seconds: tuple[float, float] = (0.15, 0.5)

    def only(self, *names: str) -> "CorruptionParams":
        """These params with every magnitude except ``names`` set to 0 (to study one component)."""
        magnitudes = ("scale_sigma", "depth_sigma", "bone_sigma", "pose_sigma", "jitter_sigma", "flip_rate")
        unknown = set(names) - set(magnitudes)
        if unknown:
            raise ValueError(f"unknown components {sorted(unknown)}; known: {magnitudes}")
        return replace(self, **{m: 0.0 for m in magnitudes if m not in names})


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float, frames: float) -> np.ndarray:
    """Stationary Gaussian noise ``shape = (T, ...)`` with std ``sigma`` and a Gaussian autocorrelation of width
    ``frames`` along axis 0: white noise filtered by a Gaussian kernel normalized to unit energy (Σ g² = 1)."""
    num_frames = shape[0]
    if frames <= 0.5:
        return sigma * rng.standard_normal(shape)
    radius = int(math.ceil(3 * frames))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / frames) ** 2)
    taps /= np.sqrt((taps ** 2).sum())
    white = rng.standard_normal((num_frames + 2 * radius,) + tuple(shape[1:]))
    flat = white.reshape(len(white), -1)
    out = np.stack([np.convolve(flat[:, k], taps, mode="valid") for k in range(flat.shape[1])], axis=1)
    return sigma * out.reshape(shape)


def _rescale_bones(joints: np.ndarray, skeleton: Skeleton, factors: np.ndarray) -> np.ndarray:
    """Scale every bone ``parent → j`` by ``factors[j]`` keeping its direction, root fixed (forward along the tree).

    ``joints (T, J, 3)``, ``factors (J,)`` → ``(T, J, 3)``.
    """
    out = joints.copy()
    for j, p in enumerate(skeleton.parents):
        if p >= 0:
            out[:, j] = out[:, p] + factors[j] * (joints[:, j] - joints[:, p])
    return out


def corrupt_teacher(gt_3d: np.ndarray, K: np.ndarray | None, R: np.ndarray, t: np.ndarray,
                    skeleton: Skeleton = SMPL_22, *, severity: float = 1.0, rng: np.random.Generator,
                    fps: float = 20.0, params: CorruptionParams = CorruptionParams()) -> np.ndarray:
    """The ground truth damaged like a monocular lifter's output (:class:`CorruptionParams` gives the magnitudes,
    each multiplied by ``severity``; severity 0 returns ``gt_3d`` exactly).

    Applied in this order (C_t = −R_tᵀ t_t the camera centre, ``X`` world joints):

    1. bone lengths: each bone scaled by ``1 + bone_sigma·n_j``, ``n_j ~ N(0, 1)`` per clip (:func:`_rescale_bones`);
    2. pose error + jitter: ``X_tj += e_tj + ε_tj``, ``e`` smooth (``pose_sigma``, ``pose_time``), ``ε`` white
       (``jitter_sigma``);
    3. left/right flips: over short segments the positions of mirrored joints are swapped;
    4. depth jitter: ``X_t += δ_t u_t`` with ``u_t`` the unit ray from ``C_t`` through the root and ``δ_t`` smooth
       (``depth_sigma``, ``depth_time``): the root still projects where it did, the pose moves in depth;
    5. depth/scale: ``X ← C + s (X − C)``, ``s = exp(scale_sigma·n)`` per clip; in the camera frame ``X_c ← s X_c``,
       so every projection is unchanged while depth and size are wrong by ``s`` (the monocular ambiguity).

    Args:
        gt_3d: ``(T, J, 3)`` world metres. K: unused (kept for a uniform camera signature; may be None).
        R, t: per-clip ``(3, 3)``, ``(3,)`` or per-frame ``(T, 3, 3)``, ``(T, 3)``.
        rng: the only source of randomness (same seed, same output).
        fps: frame rate, to turn the correlation times and flip rate into frames.

    Returns:
        ``(T, J, 3)`` float32 world metres.
    """
    del K
    gt = np.asarray(gt_3d, dtype=np.float64)
    if gt.ndim != 3 or gt.shape[1:] != (skeleton.num_joints, 3):
        raise ValueError(f"gt_3d must be (T, {skeleton.num_joints}, 3), got {gt.shape}")
    if severity < 0:
        raise ValueError(f"severity must be ≥ 0, got {severity}")
    if severity == 0:
        return np.asarray(gt_3d, dtype=np.float32).copy()
    num_frames, num_joints, _ = gt.shape
    R_f, t_f = per_frame_extrinsics(R, t, num_frames)
    p = params
    # Every draw is made whatever the magnitudes, so one component's noise does not depend on another's setting.
    bone_n = rng.standard_normal(num_joints)
    pose_e = _smooth_noise(rng, (num_frames, num_joints, 3), 1.0, p.pose_time * fps)
    jitter = rng.standard_normal((num_frames, num_joints, 3))
    depth_d = _smooth_noise(rng, (num_frames,), 1.0, p.depth_time * fps)
    scale_n = rng.standard_normal()
    flips = np.zeros(num_frames, dtype=bool)
    frame = 0.0
    rate = p.flip_rate * severity / fps  # flips per frame
    while rate > 0:
        frame += rng.exponential(1.0 / rate)
        if frame >= num_frames:
            break
        length = int(round(rng.uniform(*p.flip_seconds) * fps))
        flips[int(frame):int(frame) + max(length, 1)] = True

    out = _rescale_bones(gt, skeleton, np.clip(1.0 + severity * p.bone_sigma * bone_n, 0.5, 1.5))
    out = out + severity * (p.pose_sigma * pose_e + p.jitter_sigma * jitter)
    out[flips] = out[flips][:, skeleton.mirror_permutation]
    centre = -np.einsum("tji,tj->ti", R_f, t_f)  # (T, 3) C = −Rᵀ t
    ray = gt[:, 0] - centre
    ray /= np.linalg.norm(ray, axis=-1, keepdims=True).clip(1e-9)
    out = out + (severity * p.depth_sigma * depth_d)[:, None, None] * ray[:, None, :]
    s = math.exp(severity * p.scale_sigma * scale_n)
    out = centre[:, None, :] + s * (out - centre[:, None, :])
    return out.astype(np.float32)
