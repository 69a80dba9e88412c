"""Small loss units. Every loss takes a frame mask ``(B, T)`` (True = real frame) and averages over real entries only.

3D losses (x0 prediction, MDM, Tevet et al. 2023, Sec. 3):

- :func:`masked_mse` — the simple objective ``‖x0 − x̂0‖²`` on normalized features (MDM eq. 2).
- :func:`joint_position_loss`, :func:`joint_velocity_loss`, :func:`foot_contact_loss` — MDM's geometric losses
  (eqs. 3–5) on joints decoded from the prediction.

2D losses (VideoMDM: the 3D prediction is supervised by reprojection against 2D keypoints, in normalized image
coordinates ``(x, y) = ((u − cx) / fx, (v − cy) / fy)``, see :mod:`videomdm.camera`):

- :func:`reprojection_loss` — confidence-weighted, frame-masked, depth-weighted squared 2D error.
- :func:`velocity_2d_loss` — the same on frame-to-frame differences of the projections.
- :func:`depth_weights` — the depth weighting (``"none"``, ``"mean_depth"``, ``"depth_squared"``);
  :func:`reprojection_diagnostics` — how many predicted joints are behind the camera.

Why the depth weighting. Let ``X_c = (X, Y, Z)`` be a joint in the camera frame, ``(x, y) = (X / Z, Y / Z)`` its
normalized projection and ``δ`` a small 3D error (camera axes). To first order in ``δ / Z``::

    Δ = π(X_c + δ) − π(X_c) = (δ_x − x δ_z,  δ_y − y δ_z) / Z.                                          (2D-1)

A fixed 3D error shrinks in the image as 1/Z, so an unweighted squared 2D error under-weights far joints and far
subjects by Z². Near the optical axis (x, y → 0) ``Z² ‖Δ‖² = δ_x² + δ_y² = ‖δ_⊥‖²``, the squared component of δ
perpendicular to the viewing ray ``d`` (off axis the image plane is oblique to the ray and
``Z² ‖Δ‖² = ‖δ_⊥‖² (1 + O(x² + y²))``). Since ``‖δ_⊥‖² = δᵀ (I − d dᵀ) δ``, over a distribution of viewing directions::

    E_d ‖δ_⊥‖² = δᵀ (I − E[d dᵀ]) δ.                                                                    (2D-2)

For directions uniform on the sphere ``E[d dᵀ] = I / 3``, so ``E ‖δ_⊥‖² = (2/3) ‖δ‖²`` and::

    (3/2) · E_d[ Z² ‖Δ‖² ] = ‖δ‖²                                                                        (2D-3)

— the ``depth_squared`` weighting (per-joint ``Z²``, detached) times 3/2 is, in expectation over viewpoints, the 3D
squared error of :func:`joint_position_loss` (m² per joint). ``mean_depth`` (the clip's mean predicted depth ``Z̄``,
detached, times the squared 2D error: the public release's choice) gives ``(Z̄ / Z²) ‖δ_⊥‖²``, off by a factor ``~Z``
(units m·rad²: far subjects under-weighted as 1/Z); ``none`` (rad²) is off by ``Z²``. The constant 3/2 is not part of
the weights: it belongs in the loss weight of the config.

Non-uniform viewpoints. (2D-2) is then a direction-dependent quadratic form, not a constant times ``‖δ‖²``. With the
azimuth uniform at a fixed elevation ``e``, ``d = (cos e sin a, sin e, cos e cos a)`` and
``E[d dᵀ] = diag(cos² e / 2, sin² e, cos² e / 2)``: a vertical error is seen with weight ``cos² e`` and a horizontal one
with ``(1 + sin² e) / 2`` (at ``e = 0``, typical of video, vertical errors count twice as much as horizontal ones). For
any single camera the component of δ along the ray is not seen at all; the 2D losses constrain depth only through
the prior (teacher, diffusion model) and the variety of viewpoints across the data set.
"""

from __future__ import annotations

import torch
from torch import Tensor

from videomdm.camera import DEFAULT_MIN_DEPTH, project_normalized, world_to_camera

__all__ = [
    "masked_mean", "masked_mse", "joint_position_loss", "joint_velocity_loss", "foot_contact_loss",
    "DEPTH_WEIGHTINGS", "depth_weights", "reprojection_loss", "velocity_2d_loss", "reprojection_diagnostics",
]


def _item_scaled(values: Tensor, item_weight: Tensor | None) -> Tensor:
    """``values (B, ...)`` times ``item_weight (B,)`` (unchanged when None)."""
    if item_weight is None:
        return values
    return values * item_weight.reshape((-1,) + (1,) * (values.dim() - 1)).to(values.dtype)


def masked_mean(values: Tensor, mask: Tensor, item_weight: Tensor | None = None) -> Tensor:
    """Mean of ``values (B, T, ...)`` over the entries of real frames ``mask (B, T)``; 0 if there are none. With
    ``item_weight (B,)`` each item's entries count that many times in the sum (the count is not reweighted)."""
    weight = mask.to(values.dtype).reshape(mask.shape + (1,) * (values.dim() - mask.dim())).expand_as(values)
    return (_item_scaled(values, item_weight) * weight).sum() / weight.sum().clamp_min(1.0)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor, item_weight: Tensor | None = None) -> Tensor:
    """Mean squared error over real frames. ``pred, target (B, T, D)``, ``mask (B, T)``, optional per-item weights
    ``(B,)`` (:func:`masked_mean`) → scalar."""
    return masked_mean((pred - target).square(), mask, item_weight)


def joint_position_loss(pred: Tensor, target: Tensor, mask: Tensor, item_weight: Tensor | None = None) -> Tensor:
    """MDM eq. 3: mean squared joint position error (m²). ``pred, target (B, T, J, 3)``, optional per-item weights
    ``(B,)``."""
    return masked_mean((pred - target).square().sum(-1), mask, item_weight)


def _pair_mask(mask: Tensor) -> Tensor:
    """(B, T−1): both frames of a difference are real."""
    return mask[:, 1:] & mask[:, :-1]


def joint_velocity_loss(pred: Tensor, target: Tensor, mask: Tensor, item_weight: Tensor | None = None) -> Tensor:
    """MDM eq. 5: squared error of frame-to-frame joint displacements (m² per frame²). ``(B, T, J, 3)``, optional
    per-item weights ``(B,)``."""
    pred_vel = pred[:, 1:] - pred[:, :-1]
    target_vel = target[:, 1:] - target[:, :-1]
    return masked_mean((pred_vel - target_vel).square().sum(-1), _pair_mask(mask), item_weight)


def foot_contact_loss(pred: Tensor, contacts: Tensor, foot_joints: list[int], mask: Tensor,
                      item_weight: Tensor | None = None) -> Tensor:
    """MDM eq. 4: squared speed of predicted foot joints on frames where the target foot is in contact.

    Args:
        pred: (B, T, J, 3) predicted joints.
        contacts: (B, T, F) target contact labels in {0, 1}, one per entry of ``foot_joints``.
        foot_joints: F joint indices (the skeleton's feet, in the order of the contact features).
        mask: (B, T) real frames.
        item_weight: optional (B,) per-item weights.
    """
    foot_vel = pred[:, 1:, foot_joints] - pred[:, :-1, foot_joints]  # (B, T-1, F, 3)
    speed_sq = foot_vel.square().sum(-1) * contacts[:, :-1]  # (B, T-1, F)
    return masked_mean(speed_sq, _pair_mask(mask), item_weight)


# --- 2D losses ------------------------------------------------------------------------------------------------------

DEPTH_WEIGHTINGS = ("none", "mean_depth", "depth_squared")


def depth_weights(depth: Tensor, mode: str, mask: Tensor | None = None, *,
                  min_depth: float = DEFAULT_MIN_DEPTH) -> Tensor:
    """Per-joint weights of a squared 2D error, detached (see the module docstring, eqs. 2D-1 to 2D-3).

    Args:
        depth: (B, T, J) predicted camera-frame depth Z, metres; clamped to ``min_depth`` (points behind the camera
            get the weight of a point at ``min_depth``).
        mode: ``"none"`` → 1; ``"mean_depth"`` → the clip's mean depth over its real frames and all joints,
            broadcast to (B, T, J); ``"depth_squared"`` → Z² per joint.
        mask: (B, T) real frames, used by ``"mean_depth"`` only (all frames if None).

    Returns:
        (B, T, J) weights: 1, metres, or m².
    """
    if mode not in DEPTH_WEIGHTINGS:
        raise ValueError(f"unknown depth weighting {mode!r}; expected one of {DEPTH_WEIGHTINGS}")
    z = depth.detach().clamp_min(min_depth)
    if mode == "none":
        return torch.ones_like(z)
    if mode == "depth_squared":
        return z.square()
    real = (torch.ones(z.shape[:2], dtype=torch.bool, device=z.device) if mask is None else mask)
    real = real[:, :, None].to(z.dtype).expand_as(z)  # (B, T, J)
    clip_mean = (z * real).sum((1, 2)) / real.sum((1, 2)).clamp_min(1.0)  # (B,)
    return clip_mean[:, None, None].expand_as(z)


def _check_2d_inputs(pred_world: Tensor, keypoints_norm: Tensor, confidence: Tensor, mask: Tensor) -> None:
    B, T, J = pred_world.shape[:3]
    if pred_world.shape != (B, T, J, 3) or keypoints_norm.shape != (B, T, J, 2):
        raise ValueError(f"pred_world must be (B, T, J, 3) and keypoints_norm (B, T, J, 2), "
                         f"got {tuple(pred_world.shape)}, {tuple(keypoints_norm.shape)}")
    if confidence.shape != (B, T, J) or mask.shape != (B, T):
        raise ValueError(f"confidence must be {(B, T, J)} and mask {(B, T)}, "
                         f"got {tuple(confidence.shape)}, {tuple(mask.shape)}")


def _weighted_mean(values: Tensor, weight: Tensor, item_weight: Tensor | None = None) -> Tensor:
    """``Σ w v / Σ w`` (0 when every weight is 0); with ``item_weight (B,)`` the numerator's items are scaled."""
    return _item_scaled(weight * values, item_weight).sum() / weight.sum().clamp_min(1e-8)


def reprojection_loss(pred_world: Tensor, keypoints_norm: Tensor, confidence: Tensor, mask: Tensor, R: Tensor,
                      t: Tensor, *, weighting: str = "depth_squared", min_depth: float = DEFAULT_MIN_DEPTH,
                      item_weight: Tensor | None = None) -> Tensor:
    """Depth-weighted reprojection loss (VideoMDM's 2D supervision)::

        L = Σ c · w(Z) · ‖π(R X + t) − k‖² / Σ c

    over real frames and joints with confidence ``c > 0`` (a confidence-weighted mean), with ``π`` the normalized
    projection (depth clamped to ``min_depth``), ``k`` the keypoints and ``w`` from :func:`depth_weights`. With
    ``weighting="depth_squared"`` and all confidences 1, ``(3/2) L`` equals :func:`joint_position_loss` in
    expectation over viewpoints uniform on the sphere (eq. 2D-3).

    Points at or behind the camera (``Z ≤ min_depth``) are projected with the clamped depth: finite values and
    gradients (none into Z) and a small weight; count them with :func:`reprojection_diagnostics`. Keypoints of
    masked frames or zero-confidence joints never enter the computation (they may hold anything, even NaN).

    Args:
        pred_world: (B, T, J, 3) predicted joints, world frame, metres.
        keypoints_norm: (B, T, J, 2) keypoints in normalized image coordinates.
        confidence: (B, T, J) in [0, 1], 0 = missing.
        mask: (B, T) bool, True = real frame.
        R, t: per-clip ``(B, 3, 3), (B, 3)`` or per-frame ``(B, T, 3, 3), (B, T, 3)`` world→camera extrinsics.
        weighting: ``"none"`` (rad²), ``"mean_depth"`` (m·rad²) or ``"depth_squared"`` (m²).
        min_depth: metres.
        item_weight: optional ``(B,)`` factor of each item's terms (e.g. a diffusion level's loss weight).

    Returns:
        Scalar.
    """
    _check_2d_inputs(pred_world, keypoints_norm, confidence, mask)
    points_cam = world_to_camera(pred_world, R, t)  # (B, T, J, 3)
    proj = project_normalized(points_cam, min_depth)  # (B, T, J, 2)
    valid = mask[:, :, None] & (confidence > 0)  # (B, T, J)
    weight = torch.where(valid, confidence, torch.zeros_like(confidence))
    target = torch.where(valid[..., None], keypoints_norm, proj.detach())  # invalid entries: error exactly 0
    error = (proj - target).square().sum(-1)  # (B, T, J)
    return _weighted_mean(error * depth_weights(points_cam[..., 2], weighting, mask, min_depth=min_depth), weight,
                          item_weight)


def velocity_2d_loss(pred_world: Tensor, keypoints_norm: Tensor, confidence: Tensor, mask: Tensor, R: Tensor,
                     t: Tensor, *, weighting: str = "depth_squared", min_depth: float = DEFAULT_MIN_DEPTH,
                     item_weight: Tensor | None = None) -> Tensor:
    """2D velocity loss: :func:`reprojection_loss` on frame-to-frame differences (per frame, not per second)::

        L = Σ c_i · w(Z_{i+1}) · ‖(π_{i+1} − π_i) − (k_{i+1} − k_i)‖² / Σ c_i,    c_i = min(c_{i+1}, c_i)

    over pairs of consecutive frames that are both real, with both confidences > 0. The pair weight is the MIN of the
    two confidences: a difference is as reliable as its worse keypoint (its variance is the sum of both; the product
    would penalize a pair of 0.5 keypoints four times, not twice). The depth weight is that of the later frame
    (``"mean_depth"``: the clip's mean, as in :func:`reprojection_loss`). Arguments as :func:`reprojection_loss`.

    Returns:
        Scalar.
    """
    _check_2d_inputs(pred_world, keypoints_norm, confidence, mask)
    points_cam = world_to_camera(pred_world, R, t)  # (B, T, J, 3)
    proj = project_normalized(points_cam, min_depth)  # (B, T, J, 2)
    valid_kp = mask[:, :, None] & (confidence > 0)  # (B, T, J)
    keypoints = torch.where(valid_kp[..., None], keypoints_norm, proj.detach())  # poisoned entries never used
    valid = valid_kp[:, 1:] & valid_kp[:, :-1]  # (B, T-1, J)
    pair_conf = torch.minimum(confidence[:, 1:], confidence[:, :-1])
    weight = torch.where(valid, pair_conf, torch.zeros_like(pair_conf))
    proj_vel = proj[:, 1:] - proj[:, :-1]  # (B, T-1, J, 2)
    target_vel = torch.where(valid[..., None], keypoints[:, 1:] - keypoints[:, :-1], proj_vel.detach())
    error = (proj_vel - target_vel).square().sum(-1)  # (B, T-1, J)
    depth_w = depth_weights(points_cam[..., 2], weighting, mask, min_depth=min_depth)[:, 1:]  # later frame
    return _weighted_mean(error * depth_w, weight, item_weight)


def reprojection_diagnostics(pred_world: Tensor, mask: Tensor, R: Tensor, t: Tensor, *,
                             min_depth: float = DEFAULT_MIN_DEPTH) -> dict[str, Tensor]:
    """Counts for logging: ``behind_camera`` (number of real-frame joints with ``Z ≤ min_depth``), its fraction
    ``behind_camera_fraction``, and ``mean_depth`` (m) over real frames.

    ``pred_world (B, T, J, 3)`` metres, ``mask (B, T)``, per-clip or per-frame ``R, t`` → dict of scalar tensors.
    """
    with torch.no_grad():
        points_cam = world_to_camera(pred_world, R, t)
        real = mask[:, :, None].expand(points_cam.shape[:3])  # (B, T, J)
        behind = (points_cam[..., 2] <= min_depth) & real
        count = real.sum().clamp_min(1)
        return {
            "behind_camera": behind.sum(),
            "behind_camera_fraction": behind.sum() / count,
            "mean_depth": (points_cam[..., 2] * real).sum() / count,
        }
