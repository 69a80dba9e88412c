"""A motion's global placement solved from its 2D keypoints: a turn about the vertical axis and a translation.

The motion representation (:mod:`videomdm.representation`) is invariant to where a motion stands and which way it
faces at its first frame: every window decodes at the origin facing +z. A window's camera, carried into the
teacher's canonical frame, therefore places a prediction at the TEACHER's first-frame position and facing, which
are off by tens of centimetres and several degrees; scored there, the ground truth would fit its own keypoints worse
than the teacher does. The 2D objective and lifting instead place each window where its keypoints put it:

    P' = Y(θ) P + d,    (θ, d) = argmin Σ w ‖e(θ, d)‖²                                                      (P-1)

with ``Y(θ)`` the rotation by θ about +y (the pivot is immaterial: ``d`` is free), ``w`` the keypoint weights and
``e`` the depth-weighted reprojection residual of each joint in each frame and view. With ``Q = R P' + t`` (camera
frame, rows ``r₁, r₂, r₃`` of R) and the normalized keypoint ``(x, y)``::

    e = Z (π(Q) − k) = (Q_x − x Q_z,  Q_y − y Q_z) = A P' + c,   A = (r₁ − x r₃; r₂ − y r₃),  c = (t_x − x t_z; t_y − y t_z)   (P-2)

so ``Σ w ‖e‖² = Σ w Z² ‖π − k‖²`` is the ``depth_squared`` reprojection loss of :mod:`videomdm.losses` at the
placed depths. (P-2) is linear in ``d``: with θ fixed, ``d`` solves the 3×3 normal equations
``(Σ w Aᵀ A) d = −Σ w Aᵀ (A Y P + c)`` exactly. θ enters through ``Y(θ)``; Gauss–Newton on (θ, d) linearizes
``Y(θ + δ) P ≈ Y(θ) P + δ Y'(θ) P`` and solves the 4×4 normal equations, a few iterations from θ = 0. A tiny ridge
(relative to the trace of the normal matrix) keeps a window without usable keypoints at its anchor (θ = 0, d = 0)
and barely pulls a well-observed one (it must stay tiny: the depth along the viewing ray is fixed only through the
body's extent, so its eigenvalue is orders of magnitude below the trace; a ridge of 1e-3 pulled it by 20 cm); θ is clamped to ``±max_yaw``, so a near-symmetric pose cannot flip front to
back. One view fixes the depth through the body's extent in the image; V views simply add their rows.

(P-2) has a bias that matters: its residual is the reprojection error times the depth, so moving a window towards
the camera shrinks every residual. Where the shape does not fit its keypoints exactly (any prediction), its
minimum lies nearer the camera than the reprojection error's, by centimetres to decimetres (the depth is weakly
fixed, above); a prediction placed too near then projects too large, and training answers by shrinking the body.
So (P-2) only starts the solve, and a few Gauss–Newton steps follow on the loss that training minimizes::

    (θ, d) = argmin Σ w Z̄² ‖π(Q) − k‖²,    Z̄ the depths of the previous iterate, held fixed                      (P-3)

with ``∂π/∂Q = [I₂ | −π] / Z``. At its solution the ``depth_squared`` reprojection loss (whose depth weights are
detached) has no gradient along θ or d.

Everything here is solved without gradient (callers detach): at the optimum the loss has no first-order gradient
along θ or d, so a prediction is trained on its shape and motion, never on its anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .camera import DEFAULT_MIN_DEPTH
from .representation import yaw_matrix

__all__ = ["Placement", "solve_placement"]


@dataclass
class Placement:
    """Per-window placement (P-1): ``yaw (B,)`` radians about +y and ``translation (B, 3)`` metres."""

    yaw: Tensor
    translation: Tensor

    def apply(self, points: Tensor) -> Tensor:
        """``Y(yaw) P + translation`` for ``points (B, ..., 3)``."""
        rotation = yaw_matrix(self.yaw)
        shape = (points.shape[0],) + (1,) * (points.ndim - 2)
        rotated = torch.einsum("bij,b...j->b...i", rotation, points)
        return rotated + self.translation.reshape(shape + (3,))


def _coefficients(theta: Tensor, shift: Tensor) -> Tensor:
    """``v = (cos θ, sin θ, 1, d)`` ``(B, 3 + U)`` of :func:`_camera_planes` for ``θ (B,)`` and the solved
    components of the translation ``d (B, U)``."""
    return torch.cat([torch.stack([theta.cos(), theta.sin(), torch.ones_like(theta)], -1), shift], -1)


def _coefficient_jacobian(theta: Tensor, num_axes: int, solve_yaw: bool) -> Tensor:
    """``S = ∂v/∂(θ, d)`` ``(B, 3 + U, 1 + U)`` of :func:`_coefficients` (without ``solve_yaw``: ``∂v/∂d``,
    ``(B, 3 + U, U)``)."""
    d_shift = torch.eye(3 + num_axes, dtype=theta.dtype, device=theta.device)[:, 3:].expand(theta.shape[0], -1, -1)
    if not solve_yaw:
        return d_shift
    zero = torch.zeros_like(theta)
    d_theta = torch.stack([-theta.sin(), theta.cos(), *([zero] * (1 + num_axes))], -1)  # (B, 3 + U)
    return torch.cat([d_theta[..., None], d_shift], -1)


def _usable_keypoints(keypoints_norm: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, T, J, 2)`` keypoints with 0 where unused (NaN-safe) and ``(B, T, J)`` weights with unusable entries
    (negative, or a non-finite keypoint) zeroed."""
    w = torch.where(torch.isfinite(keypoints_norm).all(-1), weight.clamp_min(0.0), torch.zeros_like(weight))
    return torch.where(w[..., None] > 0, keypoints_norm, torch.zeros_like(keypoints_norm)), w


def _ridge_solve(normal: Tensor, rhs: Tensor, ridge: float) -> Tensor:
    """``(N + λ I)⁻¹ rhs`` per window, ``λ = ridge · trace(N) / U + 1e-9``: ``(B, U, U), (B, U) → (B, U)``."""
    unknowns = normal.shape[-1]
    lam = ridge * normal.diagonal(dim1=-2, dim2=-1).sum(-1) / unknowns + 1e-9  # (B,)
    eye = torch.eye(unknowns, dtype=normal.dtype, device=normal.device)
    return torch.linalg.solve(normal + lam[:, None, None] * eye, rhs)


def _camera_planes(points: Tensor, R: Tensor, t: Tensor, axes: list[int]) -> Tensor:
    """The columns of the placed points in the camera frame, ``C (B, K, 3, N)`` with ``K = 3 + len(axes)`` and
    ``N = T·J``: ``Q(θ, d) = R (Y(θ) P + d) + t = Σ_k v_k C[:, k]`` with ``v = (cos θ, sin θ, 1, d_i for i in axes)``.

    With ``Y(θ) P = cos θ P_h + sin θ P_h⊥ + P_y`` (``P_h = (x, 0, z)``, ``P_h⊥ = (z, 0, −x)``, ``P_y = (0, y, 0)``):
    ``C = [R P_h, R P_h⊥, R P_y + t, R e_i for i in axes]``, so ``∂Q/∂θ = C (−sin θ, cos θ, 0, 0..)`` and
    ``∂Q/∂d_i = R e_i``. Laid out column by column and camera axis by axis (``C[:, k, a]`` is one contiguous row of
    the N points), so that every product below runs over contiguous rows."""
    B, T, J = points.shape[:3]
    R_full = R if R.ndim == 4 else R[:, None].expand(B, T, 3, 3)  # (B, T, 3, 3)
    t_full = t if t.ndim == 3 else t[:, None].expand(B, T, 3)  # (B, T, 3)
    Re = R_full.permute(0, 3, 2, 1)[..., None]  # (B, 3, 3, T, 1): [:, i, a] = (R e_i)_a over frames
    x, y, z = (points[..., i][:, None] for i in range(3))  # (B, 1, T, J)
    C = points.new_empty(B, 3 + len(axes), 3, T, J)
    C[:, 0] = Re[:, 0] * x + Re[:, 2] * z  # R P_h
    C[:, 1] = Re[:, 0] * z - Re[:, 2] * x  # R P_h⊥
    C[:, 2] = Re[:, 1] * y + t_full.permute(0, 2, 1)[..., None]  # R P_y + t
    for n, i in enumerate(axes):
        C[:, 3 + n] = Re[:, i]  # R e_i, the same for every joint
    return C.reshape(B, 3 + len(axes), 3, T * J)


def _weighted_gram(rows_x: Tensor, rows_y: Tensor, w: Tensor) -> Tensor:
    """``Σ_n w_n (x_n x_nᵀ + y_n y_nᵀ)``: rows ``(B, K, N)`` of the two image axes, weights ``(B, 1, N)`` →
    ``(B, K, K)``."""
    return (rows_x * w) @ rows_x.transpose(1, 2) + (rows_y * w) @ rows_y.transpose(1, 2)


def solve_placement(points_world: Tensor, keypoints_norm: Tensor, weight: Tensor, R: Tensor, t: Tensor, *,
                    solve_yaw: bool = True, solve_height: bool = True, max_yaw: float = 0.5, iterations: int = 4,
                    refinements: int = 3, ridge: float = 1e-6, min_depth: float = DEFAULT_MIN_DEPTH) -> Placement:
    """The placement (P-1) of each window that best fits its keypoints: solved under the algebraic residual (P-2),
    then refined on the reprojection error (P-3).

    Args:
        points_world: ``(B, T, J, 3)`` metres, the windows as predicted (decoded at their anchor).
        keypoints_norm: ``(B, T, J, 2)`` normalized image coordinates (anything where ``weight`` is 0).
        weight: ``(B, T, J)`` ≥ 0, e.g. confidence × real-frame mask; 0 = not used.
        R, t: per-window ``(B, 3, 3), (B, 3)`` or per-frame ``(B, T, 3, 3), (B, T, 3)`` world→camera.
        solve_yaw: also solve the turn θ (Gauss–Newton); False: translation only (exact in one solve).
        solve_height: also solve the vertical translation; False: ``d_y = 0``, the window keeps the height above the
            floor that it decodes with (a prediction free to float would leave its root height untrained).
        max_yaw: bound of |θ|, radians.
        iterations: Gauss–Newton iterations on (P-2) (with ``solve_yaw``).
        refinements: Gauss–Newton iterations on (P-3); 0 = the solution of (P-2).
        ridge: relative Tikhonov weight pulling (θ, d) towards (0, 0) (towards the current estimate in (P-3)).
        min_depth: metres; nearer points are projected at this depth in (P-3), as the loss does.

    Returns:
        :class:`Placement` with ``yaw (B,)`` (zeros without ``solve_yaw``) and ``translation (B, 3)``.
    """
    if points_world.ndim != 4 or keypoints_norm.shape != points_world.shape[:-1] + (2,) \
            or weight.shape != points_world.shape[:-1]:
        raise ValueError(f"expected points (B, T, J, 3), keypoints (B, T, J, 2), weight (B, T, J), got "
                         f"{tuple(points_world.shape)}, {tuple(keypoints_norm.shape)}, {tuple(weight.shape)}")
    axes = [0, 1, 2] if solve_height else [0, 2]  # the solved components of d
    batch = points_world.shape[0]
    # Every point, residual and Jacobian is a combination of fixed columns (_camera_planes): Q = C v and
    #     e(θ, 0) = M (cos θ, sin θ, 1, 0..),   ∂e/∂θ = M (−sin θ, cos θ, 0, 0..),   ∂e/∂d_i = M e_{3+i},
    # with M = col(C), whose rows are C_x − x C_z and C_y − y C_z, so the weighted normal equations of every
    # iteration of (P-2) are S^T G S with G = M^T W M, formed once. In the points' dtype: (P-3) refines the result
    # in it anyway (float64 here changed the refined placement by ~2 µm).
    k, w = _usable_keypoints(keypoints_norm, weight)  # (B, T, J, 2), (B, T, J)
    C = _camera_planes(points_world, R, t, axes)  # (B, K, 3, N)
    Cx, Cy, Cz = C.unbind(2)  # (B, K, N) each: the columns' camera-frame x, y, z
    kx, ky = (k.reshape(batch, 1, -1, 2)[..., i] for i in range(2))  # (B, 1, N)
    w = w.reshape(batch, 1, -1)  # (B, 1, N)
    G = _weighted_gram(torch.addcmul(Cx, kx, Cz, value=-1.0), torch.addcmul(Cy, ky, Cz, value=-1.0), w)  # (B, K, K)
    axes_index = torch.tensor(axes, device=G.device)
    theta = G.new_zeros(batch)
    translation = G.new_zeros(batch, 3)
    for _ in range(iterations if solve_yaw else 1):
        v = _coefficients(theta, theta.new_zeros(batch, len(axes)))  # (B, K): e(θ, 0) = M v
        S = _coefficient_jacobian(theta, len(axes), solve_yaw)  # (B, K, U): the Jacobian is M S
        if solve_yaw:
            v = v - S[..., 0] * theta[:, None]  # linearized about θ, not 0
        normal = S.transpose(1, 2) @ G @ S  # (B, U, U)
        rhs = -(S.transpose(1, 2) @ (G @ v[..., None]))[..., 0]  # (B, U)
        solution = _ridge_solve(normal, rhs, ridge)
        if solve_yaw:
            theta, solution = solution[:, 0].clamp(-max_yaw, max_yaw), solution[:, 1:]
        translation = translation.index_copy(1, axes_index, solution)

    # (P-3): Gauss–Newton on the reprojection error itself, from the solution of (P-2). ∂π/∂Q = [I₂ | −π] / Z, so
    # with D = C_xy − π C_z (Z times the Jacobian of π in v) and ω = w Z², the normal equations in v are
    # Σ ω (D/Z)ᵀ (D/Z) = Σ w Dᵀ D and Σ ω (D/Z)ᵀ r = Σ w Z Dᵀ r, then S = ∂v/∂(θ, d) carries them to (θ, d).
    columns = C.reshape(batch, C.shape[1], -1)  # (B, K, 3N)
    for _ in range(refinements):
        v = _coefficients(theta, translation[:, axes])  # (B, K)
        Q = (v[:, None, :] @ columns).reshape(batch, 3, 1, -1)  # (B, 3, 1, N) camera frame
        depth = Q[:, 2].clamp_min(min_depth)  # (B, 1, N)
        px, py = Q[:, 0] / depth, Q[:, 1] / depth  # (B, 1, N): π(Q), as camera.project_normalized
        Dx, Dy = torch.addcmul(Cx, px, Cz, value=-1.0), torch.addcmul(Cy, py, Cz, value=-1.0)  # (B, K, N)
        normal_v = _weighted_gram(Dx, Dy, w)  # (B, K, K)
        wz = (w * depth).transpose(1, 2)  # (B, N, 1)
        rhs_v = Dx @ (wz * (px - kx).transpose(1, 2)) + Dy @ (wz * (py - ky).transpose(1, 2))  # (B, K, 1): Σ w Z Dᵀ r
        S = _coefficient_jacobian(theta, len(axes), solve_yaw)  # (B, K, U)
        St = S.transpose(1, 2)
        step = _ridge_solve(St @ normal_v @ S, -(St @ rhs_v)[..., 0], ridge)
        if solve_yaw:
            theta, step = (theta + step[:, 0]).clamp(-max_yaw, max_yaw), step[:, 1:]
        translation = translation.index_add(1, axes_index, step)
    return Placement(theta, translation)
