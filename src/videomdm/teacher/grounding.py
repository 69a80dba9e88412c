"""World grounding: root-relative camera-frame joints placed on their keypoint rays and moved into the world.

:func:`solve_root_translation` solves, per frame, the root translation that best reprojects onto the keypoints;
:func:`ground_to_world` adds it and undoes the extrinsics. Frames and equations: :mod:`videomdm.teacher.arrays`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..camera import camera_to_world
from ..representation import floor_from_feet
from ..skeleton import SMPL_22, Skeleton
from .arrays import fill_gaps, on_arrays, per_frame_extrinsics

__all__ = ["solve_root_translation", "ground_to_world"]


def solve_root_translation(rel_cam: np.ndarray, keypoints_norm: np.ndarray, confidence: np.ndarray, *,
                           min_joints: int = 2, min_depth: float = 0.1) -> np.ndarray:
    """Per frame, the camera-frame translation ``T`` that puts ``rel_cam + T`` on the keypoint rays.

    Reprojection ``x_j = (X_j + T_x) / (Z_j + T_z)`` (eq. 3) is linearized by multiplying out the depth::

        T_x − x_j T_z = x_j Z_j − X_j,      T_y − y_j T_z = y_j Z_j − Y_j                       (eq. G1)

    and solved by confidence-weighted linear least squares, ``min_T Σ_j c_j ‖A_j T − b_j‖²`` (each joint gives the
    two rows of G1), through the 3×3 normal equations ``(Σ_j c_j A_jᵀ A_j) T = Σ_j c_j A_jᵀ b_j`` (eq. G2). The
    residual of G1 is the reprojection error times the joint's depth, i.e. metres in the image plane at the joint.
    With exact keypoints of ``rel_cam + T*`` the solution is exactly ``T*``.

    Frames with fewer than ``min_joints`` joints of positive confidence, an ill-conditioned G2, or a solution that
    puts any joint closer than ``min_depth`` are filled by linear interpolation of ``T`` from the nearest solved
    frames (nearest value at the ends).

    Args:
        rel_cam: ``(T, J, 3)`` root-relative (or any) camera-frame joints, metres.
        keypoints_norm: ``(T, J, 2)`` normalized image coordinates.
        confidence: ``(T, J)`` weights ≥ 0 (0 = ignored, whatever its keypoint).

    Returns:
        ``(T, 3)`` float64 translation, metres. ``ValueError`` if no frame can be solved.
    """
    P = np.asarray(rel_cam, dtype=np.float64)
    xy = np.asarray(keypoints_norm, dtype=np.float64)
    w = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, None)
    if P.ndim != 3 or P.shape[-1] != 3 or xy.shape != P.shape[:-1] + (2,) or w.shape != P.shape[:-1]:
        raise ValueError(f"need rel_cam (T, J, 3), keypoints (T, J, 2), confidence (T, J); got {P.shape}, "
                         f"{xy.shape}, {w.shape}")
    w = np.where(np.isfinite(xy).all(-1) & np.isfinite(P).all(-1), w, 0.0)
    xy = np.where(w[..., None] > 0, xy, 0.0)
    P = np.where(w[..., None] > 0, P, 0.0)
    x, y = xy[..., 0], xy[..., 1]
    X, Y, Z = P[..., 0], P[..., 1], P[..., 2]
    bx, by = x * Z - X, y * Z - Y  # (T, J) right-hand sides of G1
    sw, swx, swy = w.sum(1), (w * x).sum(1), (w * y).sum(1)
    swr = (w * (x * x + y * y)).sum(1)
    zeros = np.zeros_like(sw)
    M = np.stack([  # (T, 3, 3) Σ c_j A_jᵀ A_j with rows (1, 0, −x_j) and (0, 1, −y_j)
        np.stack([sw, zeros, -swx], -1),
        np.stack([zeros, sw, -swy], -1),
        np.stack([-swx, -swy, swr], -1),
    ], axis=-2)
    rhs = np.stack([(w * bx).sum(1), (w * by).sum(1), -(w * (x * bx + y * by)).sum(1)], -1)  # (T, 3)
    enough = (w > 0).sum(1) >= max(min_joints, 2)
    # Conditioning: the smallest eigenvalue relative to the largest (M is symmetric positive semi-definite).
    eig = np.linalg.eigvalsh(np.where(enough[:, None, None], M, np.eye(3)))
    ok = enough & (eig[:, 0] > 1e-9 * np.maximum(eig[:, -1], 1e-12))
    solution = np.zeros((len(P), 3))
    if ok.any():
        solution[ok] = np.linalg.solve(M[ok], rhs[ok][..., None])[..., 0]
    in_front = (Z + solution[:, 2:3] > min_depth) | (w == 0)  # (T, J)
    ok &= in_front.all(1)
    if not ok.any():
        raise ValueError("no frame has enough confident joints to solve the root translation")
    filled = fill_gaps(torch.from_numpy(solution)[None], torch.from_numpy(ok)[None])[0]
    return filled.numpy()


def ground_to_world(rel_cam: np.ndarray, keypoints_norm: np.ndarray, confidence: np.ndarray, R: np.ndarray,
                    t: np.ndarray, skeleton: Skeleton = SMPL_22, *, level_floor: bool = False) -> np.ndarray:
    """Root-relative camera-frame joints → world joints.

    ``X_c = rel_cam + T`` with ``T`` from :func:`solve_root_translation`, then ``X_w = Rᵀ (X_c − t)`` (inverse of
    eq. 1) with per-clip ``R (3, 3)``, ``t (3,)`` or per-frame ``R (T, 3, 3)``, ``t (T, 3)``. With
    ``level_floor`` the result is shifted vertically so that :func:`floor_from_feet` is 0; use it when the
    extrinsics are estimated (their floor is then a guess), not when they are calibrated.

    Returns ``(T, J, 3)`` float64 world metres.
    """
    rel_cam = np.asarray(rel_cam, dtype=np.float64)
    translation = solve_root_translation(rel_cam, keypoints_norm, confidence)
    cam = rel_cam + translation[:, None, :]
    R_f, t_f = per_frame_extrinsics(R, t, len(cam))
    world = on_arrays(camera_to_world, cam, R_f, t_f)
    if level_floor:
        world[..., 1] -= floor_from_feet(world, skeleton)
    return world
