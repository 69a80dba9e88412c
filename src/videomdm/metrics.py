"""Evaluation metrics: pose errors against a reference, single-motion quality, 2D reprojection, distributions.

Every metric is a small pure function: numpy arrays or torch tensors in (converted to float64 numpy), a python float
or a small dict of floats out. Units follow ``DESIGN.md``: inputs in metres, seconds and pixels; outputs say their
unit in the name or docstring (pose errors are reported in millimetres, as is customary). Bad input (wrong ndim,
mismatched shapes or lengths, NaN/inf, empty sets, a mask without real frames) raises ``ValueError`` naming the
argument.

Shapes. Joints are ``(T, J, 3)`` (one clip) or ``(B, T, J, 3)`` (a batch); a frame mask is ``(T,)`` or ``(B, T)``
bool with True = real frame. Batched results pool all real entries (frames, joints, clips) into one mean, so a
long clip weighs more than a short one. Temporal derivatives are finite differences over consecutive frames of
one clip; a difference is used only when every frame it touches is real.

Pose errors (prediction vs. reference):

- :func:`mpjpe` — mean per-joint position error, no alignment (world / global MPJPE).
- :func:`root_mpjpe` — after subtracting the root joint per frame (Human3.6M protocol #1).
- :func:`pa_mpjpe` — after a per-frame similarity (Procrustes) alignment (Human3.6M protocol #2).
- :func:`pck` — fraction of joints within a threshold (3DPCK, Mehta et al. 2017), root-aligned by default.
- :func:`acceleration_error` — mean norm of the difference of accelerations (Kanazawa et al. 2019), here in m/s².

Single-motion quality (no reference):

- :func:`acceleration`, :func:`jitter` — mean norm of the 2nd (m/s²) and 3rd (m/s³) time derivatives.
- :func:`foot_skating` — horizontal foot speed while the foot is on the ground, and the share of skating frames.
- :func:`ground_penetration` — how far, and how often, the body goes below the floor y = 0.
- :func:`bone_length_variation` — per-bone standard deviation of the length over time (a rigid skeleton gives 0).

2D: :func:`reprojection_error` — confidence-weighted pixel distance between projected joints and keypoints.

Distributions over evaluator features ``(N, D)`` (the evaluator network that produces them is separate):
:func:`frechet_distance` / :func:`fid`, :func:`kid`, :func:`diversity`, :func:`precision_recall`,
:func:`r_precision`, :func:`multimodal_distance`.

Convenience: :func:`pose_errors` and :func:`motion_quality` return the usual tables with units in the key names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import roma
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from videomdm.camera import project_to_pixels
from videomdm.skeleton import Skeleton

__all__ = [
    "ALIGNMENTS",
    "align",
    "procrustes_align",
    "mpjpe",
    "root_mpjpe",
    "pa_mpjpe",
    "pck",
    "acceleration_error",
    "acceleration",
    "jitter",
    "foot_skating",
    "ground_penetration",
    "bone_length_variation",
    "reprojection_error",
    "frechet_distance",
    "fid",
    "kid",
    "diversity",
    "precision_recall",
    "r_precision",
    "multimodal_distance",
    "pose_errors",
    "motion_quality",
]

ROOT = 0  # every Skeleton has its only root at joint 0 (enforced in skeleton.py)
ALIGNMENTS = ("none", "root", "procrustes")
UP_AXIS = 1  # y up (DESIGN.md)
HORIZONTAL_AXES = [0, 2]  # x, z


# --- input validation -----------------------------------------------------------------------------------------------


def _array(x: Any, name: str) -> np.ndarray:
    """A float64 numpy copy of ``x`` (numpy, torch or nested lists); ``ValueError`` if empty or not finite."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}") from error
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf ({int((~np.isfinite(arr)).sum())} values)")
    return arr


def _joints(x: Any, name: str) -> np.ndarray:
    """Joints ``(T, J, 3)`` or ``(B, T, J, 3)`` as float64."""
    arr = _array(x, name)
    if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise ValueError(f"{name} must be (T, J, 3) or (B, T, J, 3) metres, got shape {arr.shape}")
    return arr


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = _joints(pred, "pred"), _joints(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} must have the same shape")
    return p, t


def _frame_mask(mask: Any, frames_shape: tuple[int, ...]) -> np.ndarray:
    """Bool mask of shape ``frames_shape`` (``(T,)`` or ``(B, T)``); all True when ``mask`` is None."""
    if mask is None:
        return np.ones(frames_shape, dtype=bool)
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.integer) or not np.isin(m, (0, 1)).all():
            raise ValueError(f"mask must be bool (True = real frame) or 0/1 integers, got dtype {m.dtype}")
        m = m.astype(bool)
    if m.shape != frames_shape:
        raise ValueError(f"mask must have shape {frames_shape} (the frame dims of the joints), got {m.shape}")
    if not m.any():
        raise ValueError("mask has no real frame")
    return m


def _fps(fps: float) -> float:
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    return fps


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _batched(joints: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add a batch dim to one clip: ``(T, J, 3), (T,)`` → ``(1, T, J, 3), (1, T)``."""
    if joints.ndim == 3:
        return joints[None], mask[None]
    return joints, mask


def _check_skeleton(joints: np.ndarray, skeleton: Skeleton, name: str) -> None:
    if joints.shape[-2] != skeleton.num_joints:
        raise ValueError(f"{name} has {joints.shape[-2]} joints but skeleton {skeleton.name} has "
                         f"{skeleton.num_joints}")


def _features(x: Any, name: str, min_rows: int = 1) -> np.ndarray:
    """Feature set ``(N, D)`` with at least ``min_rows`` rows."""
    arr = _array(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a feature set (N, D), got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples, got {arr.shape[0]}")
    return arr


def _same_dim(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names} must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}")


# --- finite differences ---------------------------------------------------------------------------------------------


def _derivative(joints: np.ndarray, mask: np.ndarray, order: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """``order``-th finite difference in time (``np.diff``), scaled to per-second units.

    ``joints (B, T, J, 3)`` metres, ``mask (B, T)`` → ``(B, T − order, J, 3)`` m/s^order and its ``(B, T − order)``
    validity (every frame the difference touches is real). Second difference: ``(x[t+1] − 2 x[t] + x[t−1]) fps²``;
    third: ``(x[t+2] − 3 x[t+1] + 3 x[t] − x[t−1]) fps³``. Exact for polynomials of degree ≤ ``order``.
    """
    frames = joints.shape[1]
    if frames <= order:
        raise ValueError(f"a derivative of order {order} needs at least {order + 1} frames, got {frames}")
    diff = np.diff(joints, n=order, axis=1) * fps**order
    valid = np.ones(mask[:, order:].shape, dtype=bool)
    for shift in range(order + 1):
        valid &= mask[:, shift:frames - order + shift]
    if not valid.any():
        raise ValueError(f"no {order + 1} consecutive real frames for a derivative of order {order}")
    return diff, valid


# --- alignment --------------------------------------------------------------------------------------------------------


def procrustes_align(pred: Any, target: Any) -> np.ndarray:
    """Similarity-align ``pred`` to ``target`` per frame (Human3.6M protocol #2; Umeyama 1991).

    For each frame, finds the scale ``s``, rotation ``Q`` (det +1: reflections are not allowed) and translation ``b``
    minimizing ``Σ_j ‖s Q p_j + b − y_j‖²``. With centred point sets ``P, Y (J, 3)`` and the SVD
    ``Pᵀ Y = U Σ Vᵀ``: ``Q = V D Uᵀ`` with ``D = diag(1, 1, sign det(V Uᵀ))``, the rotation nearest to ``Yᵀ P``
    (:func:`roma.special_procrustes`, whose signed singular values are ``Σ D``), and ``s = tr(Σ D) / ‖P‖²``.

    Args:
        pred, target: ``(..., J, 3)`` metres, same shape (at least ``(J, 3)``).

    Returns:
        ``(..., J, 3)`` float64, ``pred`` aligned to ``target``. A degenerate frame (all predicted joints at one point)
        is aligned by translation only.
    """
    p, y = _array(pred, "pred"), _array(target, "target")
    if p.shape != y.shape or p.ndim < 2 or p.shape[-1] != 3:
        raise ValueError(f"pred and target must be (..., J, 3) of the same shape, got {p.shape} and {y.shape}")
    mu_p, mu_y = p.mean(-2, keepdims=True), y.mean(-2, keepdims=True)  # (..., 1, 3)
    p0, y0 = p - mu_p, y - mu_y
    rotation, sigma_d = roma.special_procrustes(torch.from_numpy(np.swapaxes(y0, -1, -2) @ p0), method="svd",
                                                return_singular_values=True)  # Q (..., 3, 3), Σ D (..., 3)
    rotation, sigma_d = rotation.numpy(), sigma_d.numpy()
    norm = (p0**2).sum(axis=(-1, -2))  # (...) ‖P‖²
    scale = np.where(norm > 1e-12, sigma_d.sum(-1) / np.maximum(norm, 1e-12), 0.0)  # (...)
    # Row vectors: (s Q p)ᵀ = s pᵀ Qᵀ.
    return scale[..., None, None] * (p0 @ np.swapaxes(rotation, -1, -2)) + mu_y


def align(pred: Any, target: Any, alignment: str = "root") -> tuple[np.ndarray, np.ndarray]:
    """``(pred, target)`` as float64 ``(..., J, 3)`` after an alignment from :data:`ALIGNMENTS`.

    ``"none"``: unchanged; ``"root"``: the root joint (joint 0 of every skeleton) subtracted from both, per frame;
    ``"procrustes"``: ``pred`` similarity-aligned to ``target`` per frame (:func:`procrustes_align`).
    """
    p, y = _array(pred, "pred"), _array(target, "target")
    if p.shape != y.shape or p.ndim < 2 or p.shape[-1] != 3:
        raise ValueError(f"pred and target must be (..., J, 3) of the same shape, got {p.shape} and {y.shape}")
    if alignment == "none":
        return p, y
    if alignment == "root":
        return p - p[..., ROOT:ROOT + 1, :], y - y[..., ROOT:ROOT + 1, :]
    if alignment == "procrustes":
        return procrustes_align(p, y), y
    raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")


# --- pose errors ----------------------------------------------------------------------------------------------------


def _joint_errors(pred: Any, target: Any, mask: Any, alignment: str) -> np.ndarray:
    """Per-joint Euclidean errors (metres) of the real frames, flattened."""
    p, y = _pair(pred, target)
    m = _frame_mask(mask, p.shape[:-2])
    p, y = align(p[m], y[m], alignment)  # (F, J, 3) real frames only
    return np.linalg.norm(p - y, axis=-1)  # (F, J)


def mpjpe(pred: Any, target: Any, mask: Any = None) -> float:
    """Mean per-joint position error in millimetres, without any alignment (global / world MPJPE).

    Args:
        pred, target: ``(T, J, 3)`` or ``(B, T, J, 3)`` metres, same shape.
        mask: optional ``(T,)`` / ``(B, T)`` bool, True = real frame; the mean is over joints of real frames.
    """
    return float(_joint_errors(pred, target, mask, "none").mean() * 1000.0)


def root_mpjpe(pred: Any, target: Any, mask: Any = None) -> float:
    """Root-aligned MPJPE in millimetres (Human3.6M protocol #1): the root joint (joint 0) is subtracted from both
    poses per frame before :func:`mpjpe`. The root itself counts (error 0) in the mean over joints.

    Args: as :func:`mpjpe`.
    """
    return float(_joint_errors(pred, target, mask, "root").mean() * 1000.0)


def pa_mpjpe(pred: Any, target: Any, mask: Any = None) -> float:
    """Procrustes-aligned MPJPE (PA-MPJPE) in millimetres (Human3.6M protocol #2): each predicted frame is aligned to
    its target by the best similarity transform (rotation, translation, uniform scale; no reflection), see
    :func:`procrustes_align`.

    Args: as :func:`mpjpe`.
    """
    return float(_joint_errors(pred, target, mask, "procrustes").mean() * 1000.0)


def pck(pred: Any, target: Any, threshold_mm: float = 50.0, mask: Any = None, alignment: str = "root") -> float:
    """Percentage of correct keypoints in 3D (3DPCK, Mehta et al. 2017), as a fraction in [0, 1]: the share of joints
    of real frames whose error after ``alignment`` (``"root"`` by default, ``"none"`` or ``"procrustes"``) is at most
    ``threshold_mm`` millimetres. With root alignment the root joint counts as correct.

    Args:
        pred, target: ``(T, J, 3)`` or ``(B, T, J, 3)`` metres, same shape.
        threshold_mm: millimetres (50 and 100 in :func:`pose_errors`).
        mask: optional frame mask (True = real).
    """
    threshold_m = _positive(threshold_mm, "threshold_mm") / 1000.0
    return float((_joint_errors(pred, target, mask, alignment) <= threshold_m).mean())


def acceleration_error(pred: Any, target: Any, fps: float, mask: Any = None) -> float:
    """Acceleration error in m/s² (Kanazawa et al. 2019, there in mm/frame²): the mean over frames and joints of
    ``‖a_pred − a_target‖``, with accelerations from the second finite difference
    ``a[t] = (x[t+1] − 2 x[t] + x[t−1]) · fps²``. No alignment.

    Args:
        pred, target: ``(T, J, 3)`` or ``(B, T, J, 3)`` metres, same shape, ``T ≥ 3``.
        fps: frames per second of the clip.
        mask: optional frame mask; an acceleration counts when its three frames are real.
    """
    p, y = _pair(pred, target)
    fps = _fps(fps)
    m = _frame_mask(mask, p.shape[:-2])
    p, m_b = _batched(p, m)
    y, _ = _batched(y, m)
    acc_p, valid = _derivative(p, m_b, 2, fps)
    acc_y, _ = _derivative(y, m_b, 2, fps)
    return float(np.linalg.norm(acc_p - acc_y, axis=-1)[valid].mean())


# --- single-motion quality ------------------------------------------------------------------------------------------


def _mean_derivative_norm(joints: Any, fps: float, mask: Any, order: int) -> float:
    x = _joints(joints, "joints")
    fps = _fps(fps)
    x, m = _batched(x, _frame_mask(mask, x.shape[:-2]))
    diff, valid = _derivative(x, m, order, fps)
    return float(np.linalg.norm(diff, axis=-1)[valid].mean())


def acceleration(joints: Any, fps: float, mask: Any = None) -> float:
    """Mean acceleration magnitude in m/s²: the mean over frames and joints of ``‖a[t]‖``, second finite difference
    ``a[t] = (x[t+1] − 2 x[t] + x[t−1]) · fps²``. Zero for constant-velocity motion.

    Args:
        joints: ``(T, J, 3)`` or ``(B, T, J, 3)`` metres, ``T ≥ 3``.
        fps: frames per second. mask: optional frame mask (True = real).
    """
    return _mean_derivative_norm(joints, fps, mask, 2)


def jitter(joints: Any, fps: float, mask: Any = None) -> float:
    """Jitter in m/s³: the mean over frames and joints of the norm of the third finite difference (jerk)
    ``(x[t+2] − 3 x[t+1] + 3 x[t] − x[t−1]) · fps³``. Zero for motion of constant acceleration.

    Args:
        joints: ``(T, J, 3)`` or ``(B, T, J, 3)`` metres, ``T ≥ 4``.
        fps: frames per second. mask: optional frame mask (True = real).
    """
    return _mean_derivative_norm(joints, fps, mask, 3)


def foot_skating(joints: Any, fps: float, skeleton: Skeleton, mask: Any = None, *, height_threshold: float = 0.05,
                 skate_speed: float = 0.5) -> dict[str, float]:
    """Foot skating: how fast feet slide horizontally while they are on the ground.

    Definition. Each foot joint of the skeleton (``skeleton.foot_indices``: ankle and toe of both feet) is treated on
    its own, per step between consecutive real frames ``t → t+1``:

    - *contact*: the joint's height ``y`` is below ``height_threshold`` at both frames (ground at y = 0). Contact is
      defined by height only: a speed criterion would declare a sliding foot "not in contact" and hide the very
      skating this measures.
    - *speed*: the horizontal (x, z) speed ``‖(x, z)[t+1] − (x, z)[t]‖ · fps``, m/s.

    ``foot_skating_ms`` is the mean speed over (joint, step) pairs in contact, 0 when no foot joint is ever in
    contact (see ``contact_fraction``). ``skating_fraction`` is the share of steps in which at least one foot joint in
    contact moves faster than ``skate_speed``; with the defaults (5 cm, 0.5 m/s = 2.5 cm per frame at 20 fps) this is
    the foot-skating ratio of guided motion diffusion evaluations (Karunratanakul et al. 2023).

    Args:
        joints: ``(T, J, 3)`` or ``(B, T, J, 3)`` metres, y up, floor at y = 0, ``T ≥ 2``.
        fps: frames per second.
        skeleton: the joints' skeleton (must define feet).
        mask: optional frame mask (True = real).
        height_threshold: metres. skate_speed: m/s.

    Returns:
        ``{"foot_skating_ms", "skating_fraction", "contact_fraction"}`` (``contact_fraction``: share of
        (foot joint, step) pairs in contact).
    """
    x = _joints(joints, "joints")
    _check_skeleton(x, skeleton, "joints")
    fps = _fps(fps)
    height_threshold = float(height_threshold)
    skate_speed = _positive(skate_speed, "skate_speed")
    left, right = skeleton.foot_indices
    feet = list(left) + list(right)
    if not feet:
        raise ValueError(f"skeleton {skeleton.name} defines no foot joints")
    x, m = _batched(x, _frame_mask(mask, x.shape[:-2]))
    foot = x[:, :, feet]  # (B, T, F, 3)
    velocity, valid = _derivative(foot, m, 1, fps)  # (B, T − 1, F, 3) m/s, (B, T − 1)
    speed = np.linalg.norm(velocity[..., HORIZONTAL_AXES], axis=-1)  # (B, T − 1, F)
    low = foot[..., UP_AXIS] < height_threshold  # (B, T, F)
    contact = low[:, 1:] & low[:, :-1] & valid[..., None]  # (B, T − 1, F)
    skating_step = (contact & (speed > skate_speed)).any(-1)  # (B, T − 1)
    return {
        "foot_skating_ms": float(speed[contact].mean()) if contact.any() else 0.0,
        "skating_fraction": float(skating_step[valid].mean()),
        "contact_fraction": float(contact.sum() / (valid.sum() * len(feet))),
    }


def ground_penetration(joints: Any, mask: Any = None, *, threshold: float = 0.02) -> dict[str, float]:
    """Ground penetration against the floor y = 0.

    Per real frame, ``h = min_j y_j`` is the height of the lowest joint. ``penetration_m`` is the mean over frames
    of ``max(0, −h)`` (metres below the floor; frames above it count as 0); ``penetration_fraction`` is the share of
    frames with ``h < −threshold`` (some joint more than ``threshold`` metres under the floor).

    Args:
        joints: ``(T, J, 3)`` or ``(B, T, J, 3)`` metres, y up.
        mask: optional frame mask (True = real).
        threshold: metres, ≥ 0.
    """
    x = _joints(joints, "joints")
    threshold = float(threshold)
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be ≥ 0 metres, got {threshold}")
    m = _frame_mask(mask, x.shape[:-2])
    lowest = x[..., UP_AXIS].min(-1)[m]  # (F,) height of the lowest joint per real frame
    return {
        "penetration_m": float(np.maximum(-lowest, 0.0).mean()),
        "penetration_fraction": float((lowest < -threshold).mean()),
    }


def bone_length_variation(joints: Any, skeleton: Skeleton, mask: Any = None) -> float:
    """Bone-length variation in millimetres: for each bone ``(parent, child)`` of ``skeleton.bones``, the standard
    deviation over real frames (population, ``ddof = 0``) of its length, averaged over bones (and clips). 0 for any
    rigid skeleton, however it moves.

    Args:
        joints: ``(T, J, 3)`` or ``(B, T, J, 3)`` metres.
        skeleton: the joints' skeleton.
        mask: optional frame mask (True = real); clips without real frames are skipped.
    """
    x = _joints(joints, "joints")
    _check_skeleton(x, skeleton, "joints")
    bones = np.asarray(skeleton.bones)  # (K, 2) parent, child
    if len(bones) == 0:
        raise ValueError(f"skeleton {skeleton.name} has no bones")
    x, m = _batched(x, _frame_mask(mask, x.shape[:-2]))
    lengths = np.linalg.norm(x[:, :, bones[:, 1]] - x[:, :, bones[:, 0]], axis=-1)  # (B, T, K)
    stds = [lengths[b][m[b]].std(axis=0) for b in range(len(x)) if m[b].any()]  # each (K,)
    return float(np.mean(stds) * 1000.0)


# --- 2D ---------------------------------------------------------------------------------------------------------------


def reprojection_error(joints: Any, keypoints_2d: Any, confidence: Any, K: Any, R: Any, t: Any,
                       mask: Any = None) -> float:
    """Confidence-weighted reprojection error in pixels.

    World joints are projected with the pinhole camera (``X_c = R X_w + t``, OpenCV axes, intrinsics ``K``; see
    :func:`videomdm.camera.project_to_pixels`, which clamps depths below 0.1 m as the training losses do) and
    compared with the keypoints: ``Σ c_tj ‖π(X_tj) − u_tj‖ / Σ c_tj`` over real frames. Confidence 0 = ignored.

    Args:
        joints: ``(T, J, 3)`` world metres.
        keypoints_2d: ``(T, J, 2)`` pixels, in the same joint order.
        confidence: ``(T, J)`` weights ≥ 0.
        K: ``(3, 3)`` intrinsics, pixels.
        R, t: per clip ``(3, 3)``, ``(3,)`` or per frame ``(T, 3, 3)``, ``(T, 3)``; world→camera, metres.
        mask: optional ``(T,)`` frame mask (True = real).
    """
    x = _array(joints, "joints")
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"joints must be (T, J, 3) world metres, got shape {x.shape}")
    uv = _array(keypoints_2d, "keypoints_2d")
    if uv.shape != x.shape[:-1] + (2,):
        raise ValueError(f"keypoints_2d must be {x.shape[:-1] + (2,)} pixels to match joints, got {uv.shape}")
    c = _array(confidence, "confidence")
    if c.shape != x.shape[:-1]:
        raise ValueError(f"confidence must be {x.shape[:-1]} to match joints, got {c.shape}")
    if (c < 0).any():
        raise ValueError("confidence must be ≥ 0")
    K_, R_, t_ = _array(K, "K"), _array(R, "R"), _array(t, "t")
    frames = x.shape[0]
    if K_.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got {K_.shape}")
    if not ((R_.shape, t_.shape) == ((3, 3), (3,)) or (R_.shape, t_.shape) == ((frames, 3, 3), (frames, 3))):
        raise ValueError(f"R, t must be per clip (3, 3), (3,) or per frame ({frames}, 3, 3), ({frames}, 3), "
                         f"got {R_.shape}, {t_.shape}")
    m = _frame_mask(mask, (frames,))
    weights = c * m[:, None]  # (T, J)
    if weights.sum() <= 0:
        raise ValueError("no keypoint with positive confidence in a real frame")
    as_t = torch.from_numpy
    projected = project_to_pixels(as_t(x)[None], as_t(K_), as_t(R_)[None], as_t(t_)[None])[0].numpy()  # (T, J, 2)
    distance = np.linalg.norm(projected - uv, axis=-1)  # (T, J) pixels
    return float((weights * distance).sum() / weights.sum())


# --- distributions ----------------------------------------------------------------------------------------------------


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = 1e-6) -> float:
    """Fréchet distance between two Gaussians ``N(μ1, Σ1)``, ``N(μ2, Σ2)`` (Heusel et al. 2017; the FID formula)::

        d² = ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2})

    ``(Σ1 Σ2)^{1/2}`` comes from ``scipy.linalg.sqrtm``. If it is not finite (near-singular covariances), ``eps`` is
    added to both diagonals and it is recomputed. Its imaginary part, round-off for positive semi-definite inputs,
    is dropped when small (≤ 1e-3 relative to its diagonal) and raises ``ValueError`` otherwise. Tiny negative
    results from round-off are clipped to 0.

    Args:
        mu1, mu2: ``(D,)`` means. sigma1, sigma2: ``(D, D)`` covariances.

    Returns:
        The squared distance ``d²`` (as FID reports it), in squared feature units.
    """
    m1, m2 = _array(mu1, "mu1"), _array(mu2, "mu2")
    s1, s2 = _array(sigma1, "sigma1"), _array(sigma2, "sigma2")
    if m1.ndim != 1 or m1.shape != m2.shape:
        raise ValueError(f"mu1 and mu2 must be (D,) of the same size, got {m1.shape} and {m2.shape}")
    dim = m1.shape[0]
    if s1.shape != (dim, dim) or s2.shape != (dim, dim):
        raise ValueError(f"sigma1 and sigma2 must be ({dim}, {dim}), got {s1.shape} and {s2.shape}")
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(dim) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        diag = np.diagonal(covmean)
        if np.abs(diag.imag).max() > 1e-3 * max(1.0, np.abs(diag.real).max()):
            raise ValueError(f"sqrtm(sigma1 @ sigma2) has a large imaginary part ({np.abs(diag.imag).max():.3g}); "
                             "are the covariances positive semi-definite?")
        covmean = covmean.real
    diff = m1 - m2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def fid(features_a: Any, features_b: Any) -> float:
    """Fréchet Inception-style distance between two feature sets (FID, Heusel et al. 2017; on motion evaluator
    features as Guo et al. 2022): :func:`frechet_distance` of their means and unbiased (``N − 1``) covariances.

    Args:
        features_a, features_b: ``(N_a, D)``, ``(N_b, D)``, ``N ≥ 2`` each.
    """
    a, b = _features(features_a, "features_a", 2), _features(features_b, "features_b", 2)
    _same_dim(a, b, "features_a and features_b")
    return frechet_distance(a.mean(0), np.atleast_2d(np.cov(a, rowvar=False)),
                            b.mean(0), np.atleast_2d(np.cov(b, rowvar=False)))


def kid(features_a: Any, features_b: Any, *, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> dict[str, float]:
    """Kernel distance (KID, Bińkowski et al. 2018): the unbiased estimate of MMD² with the cubic polynomial kernel
    ``k(x, y) = (x·y / D + 1)³``, averaged over ``num_subsets`` random subsets of ``m = min(subset_size, N_a, N_b)``
    samples from each set (drawn without replacement within a subset; seeded). Per subset::

        MMD² = Σ_{i≠j} k(a_i, a_j) / (m (m−1)) + Σ_{i≠j} k(b_i, b_j) / (m (m−1)) − 2 Σ_{i,j} k(a_i, b_j) / m²

    Args:
        features_a, features_b: ``(N_a, D)``, ``(N_b, D)``, at least 2 samples each.
        num_subsets: ≥ 1. subset_size: ≥ 2 (capped by the set sizes). seed: of the subset draws.

    Returns:
        ``{"kid": mean over subsets, "kid_std_error": std over subsets / sqrt(num_subsets)}`` (0 error for one
        subset). Unbiased, so it can be slightly negative for equal distributions.
    """
    a, b = _features(features_a, "features_a", 2), _features(features_b, "features_b", 2)
    _same_dim(a, b, "features_a and features_b")
    if int(num_subsets) < 1 or int(subset_size) < 2:
        raise ValueError(f"need num_subsets ≥ 1 and subset_size ≥ 2, got {num_subsets}, {subset_size}")
    dim = a.shape[1]
    m = min(int(subset_size), len(a), len(b))
    rng = np.random.default_rng(seed)
    values = np.empty(int(num_subsets))
    for i in range(len(values)):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (x @ x.T / dim + 1.0) ** 3
        k_yy = (y @ y.T / dim + 1.0) ** 3
        k_xy = (x @ y.T / dim + 1.0) ** 3
        values[i] = ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
                     - 2.0 * k_xy.mean())
    std_error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return {"kid": float(values.mean()), "kid_std_error": float(std_error)}


def diversity(features: Any, diversity_times: int = 300, seed: int = 0) -> float:
    """Diversity (Guo et al. 2020/2022, as reported by MDM): the mean Euclidean distance between ``diversity_times``
    random pairs of samples. Two index sets of size ``diversity_times`` are drawn without replacement (seeded) and
    paired element-wise, so a pair may occasionally be one sample with itself, as in the reference protocol.

    Args:
        features: ``(N, D)`` evaluator features, ``N ≥ diversity_times`` (300 for HumanML3D, 100 for KIT-ML).
        diversity_times: number of pairs.
        seed: of the draws.

    Returns:
        The mean distance, in feature units.
    """
    x = _features(features, "features")
    times = int(diversity_times)
    if times < 1:
        raise ValueError(f"diversity_times must be ≥ 1, got {diversity_times}")
    if len(x) < times:
        raise ValueError(f"diversity needs at least diversity_times={times} samples, got {len(x)}")
    rng = np.random.default_rng(seed)
    first = rng.choice(len(x), times, replace=False)
    second = rng.choice(len(x), times, replace=False)
    return float(np.linalg.norm(x[first] - x[second], axis=-1).mean())


def _knn_radii(x: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """``(N,)`` distance from each sample to its ``k``-th nearest neighbour in ``x`` (itself excluded)."""
    radii = np.empty(len(x))
    for start in range(0, len(x), chunk):
        d = cdist(x[start:start + chunk], x)  # (c, N); the sample itself is one of the zeros
        radii[start:start + chunk] = np.partition(d, k, axis=1)[:, k]
    return radii


def _in_manifold(queries: np.ndarray, reference: np.ndarray, radii: np.ndarray, chunk: int) -> np.ndarray:
    """``(Q,)`` bool: the query lies in at least one reference hypersphere ``‖q − r_i‖ ≤ radius_i``."""
    inside = np.empty(len(queries), dtype=bool)
    for start in range(0, len(queries), chunk):
        d = cdist(queries[start:start + chunk], reference)  # (c, N_ref)
        inside[start:start + chunk] = (d <= radii[None]).any(axis=1)
    return inside


def precision_recall(real: Any, generated: Any, k: int = 3, chunk: int = 1024) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    Each set's manifold is the union of hyperspheres centred on its samples with radius the distance to the sample's
    ``k``-th nearest neighbour in the same set. Precision is the share of generated samples inside the real manifold
    (fidelity); recall is the share of real samples inside the generated manifold (coverage).

    Args:
        real, generated: ``(N_r, D)``, ``(N_g, D)`` evaluator features, more than ``k`` samples each.
        k: neighbourhood size (3 as in the paper).
        chunk: rows per distance block (memory only).

    Returns:
        ``{"precision", "recall"}`` in [0, 1].
    """
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    r, g = _features(real, "real", k + 1), _features(generated, "generated", k + 1)
    _same_dim(r, g, "real and generated")
    real_radii, gen_radii = _knn_radii(r, k, chunk), _knn_radii(g, k, chunk)
    return {
        "precision": float(_in_manifold(g, r, real_radii, chunk).mean()),
        "recall": float(_in_manifold(r, g, gen_radii, chunk).mean()),
    }


def _paired_embeddings(text_embeddings: Any, motion_embeddings: Any) -> tuple[np.ndarray, np.ndarray]:
    text, motion = _features(text_embeddings, "text_embeddings"), _features(motion_embeddings, "motion_embeddings")
    if text.shape != motion.shape:
        raise ValueError(f"text_embeddings {text.shape} and motion_embeddings {motion.shape} must be paired by index "
                         "(same N and D)")
    return text, motion


def r_precision(text_embeddings: Any, motion_embeddings: Any, *, batch_size: int = 32, top_k: int = 3,
                queries: str = "motion", seed: int = 0) -> dict[str, float]:
    """R-precision (Guo et al. 2022): retrieval accuracy of the true pair among ``batch_size`` candidates.

    Samples are shuffled (seeded) and split into consecutive batches of ``batch_size`` (an incomplete last batch is
    dropped). In each batch, with ``queries="motion"`` (the paper's description), every motion ranks the batch's
    texts (its true text + ``batch_size − 1`` others) by Euclidean distance of the embeddings; with
    ``queries="text"`` (the reference evaluation code's direction) every text ranks the batch's motions. Top-k
    accuracy is the share of queries whose true partner ranks among the k nearest (ties count in its favour).

    Args:
        text_embeddings, motion_embeddings: ``(N, D)``, paired by index, ``N ≥ batch_size``.
        batch_size: candidates per query (32). top_k: report top-1 … top-k. queries: ``"motion"`` or ``"text"``.
        seed: of the shuffle.

    Returns:
        ``{"top1", "top2", …, f"top{top_k}"}`` in [0, 1].
    """
    text, motion = _paired_embeddings(text_embeddings, motion_embeddings)
    batch_size, top_k = int(batch_size), int(top_k)
    if batch_size < 2 or not 1 <= top_k <= batch_size:
        raise ValueError(f"need batch_size ≥ 2 and 1 ≤ top_k ≤ batch_size, got {batch_size}, {top_k}")
    if len(text) < batch_size:
        raise ValueError(f"r_precision needs at least batch_size={batch_size} pairs, got {len(text)}")
    if queries not in ("motion", "text"):
        raise ValueError(f"queries must be 'motion' or 'text', got {queries!r}")
    query_set, candidates = (motion, text) if queries == "motion" else (text, motion)
    order = np.random.default_rng(seed).permutation(len(text))
    num_batches = len(text) // batch_size
    ranks = []
    for b in range(num_batches):
        idx = order[b * batch_size:(b + 1) * batch_size]
        d = cdist(query_set[idx], candidates[idx])  # (batch, batch); the true pair is on the diagonal
        ranks.append((d < np.diagonal(d)[:, None]).sum(axis=1))  # 0 = the true partner is the nearest
    rank = np.concatenate(ranks)
    return {f"top{k}": float((rank < k).mean()) for k in range(1, top_k + 1)}


def multimodal_distance(text_embeddings: Any, motion_embeddings: Any) -> float:
    """Multimodal distance ("matching score", Guo et al. 2022): the mean Euclidean distance between each motion's
    embedding and its paired text's embedding, over all ``N`` pairs.

    Args:
        text_embeddings, motion_embeddings: ``(N, D)``, paired by index.
    """
    text, motion = _paired_embeddings(text_embeddings, motion_embeddings)
    return float(np.linalg.norm(text - motion, axis=-1).mean())


# --- tables -----------------------------------------------------------------------------------------------------------


def pose_errors(pred: Any, target: Any, fps: float, skeleton: Skeleton, mask: Any = None) -> dict[str, float]:
    """The pose-error table of a prediction against its reference.

    Args:
        pred, target: ``(T, J, 3)`` or ``(B, T, J, 3)`` metres in ``skeleton``'s joint order, ``T ≥ 3``.
        fps: frames per second. mask: optional frame mask (True = real).

    Returns:
        ``mpjpe_mm`` (no alignment), ``root_mpjpe_mm`` (protocol #1), ``pa_mpjpe_mm`` (protocol #2), ``pck50`` and
        ``pck100`` (root-aligned, fractions), ``accel_error_ms2``.
    """
    p, y = _pair(pred, target)
    _check_skeleton(p, skeleton, "pred")
    return {
        "mpjpe_mm": mpjpe(p, y, mask),
        "root_mpjpe_mm": root_mpjpe(p, y, mask),
        "pa_mpjpe_mm": pa_mpjpe(p, y, mask),
        "pck50": pck(p, y, 50.0, mask),
        "pck100": pck(p, y, 100.0, mask),
        "accel_error_ms2": acceleration_error(p, y, fps, mask),
    }


def motion_quality(joints: Any, fps: float, skeleton: Skeleton, mask: Any = None) -> dict[str, float]:
    """The single-motion quality table (no reference needed), with default thresholds.

    Args:
        joints: ``(T, J, 3)`` or ``(B, T, J, 3)`` metres, y up, floor at y = 0, ``T ≥ 4``.
        fps: frames per second. skeleton: the joints' skeleton. mask: optional frame mask (True = real).

    Returns:
        ``accel_ms2``, ``jitter_ms3``, ``foot_skating_ms``, ``skating_fraction``, ``foot_contact_fraction``,
        ``penetration_m``, ``penetration_fraction``, ``bone_length_std_mm`` (see the individual metrics).
    """
    x = _joints(joints, "joints")
    _check_skeleton(x, skeleton, "joints")
    skating = foot_skating(x, fps, skeleton, mask)
    penetration = ground_penetration(x, mask)
    return {
        "accel_ms2": acceleration(x, fps, mask),
        "jitter_ms3": jitter(x, fps, mask),
        "foot_skating_ms": skating["foot_skating_ms"],
        "skating_fraction": skating["skating_fraction"],
        "foot_contact_fraction": skating["contact_fraction"],
        "penetration_m": penetration["penetration_m"],
        "penetration_fraction": penetration["penetration_fraction"],
        "bone_length_std_mm": bone_length_variation(x, skeleton, mask),
    }
