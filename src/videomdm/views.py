"""The view axis of 2D observations: V synchronized, calibrated cameras filming one motion (DESIGN.md, "Views").

Observations come per view, ``keypoints (B, V, T, J, 2)`` (normalized image coordinates), ``confidence
(B, V, T, J)``, per-frame cameras ``R (B, V, T, 3, 3)``, ``t (B, V, T, 3)``, and ``view_mask (B, V)`` (False for the
padding views of a clip with fewer views than its batch's most). A monocular clip is V = 1. The motion itself,
``joints (B, T, J, 3)``, has no view axis: every view sees the same 3D.

The single-camera units (the 2D losses of :mod:`videomdm.losses`, the placement solve of :mod:`videomdm.placement`)
take views folded into an axis they already sum over, so V = 1 is exactly the monocular computation:

- :func:`views_as_items`: views become items of the batch axis (B·V items, each joint repeated per view). The
  reprojection and 2D velocity losses are confidence-weighted means over all their entries, so over a clip's views
  they are the **average** of every view's depth-weighted error, weighted by confidence: the loss keeps its scale (m²
  per joint with ``depth_squared``; eq. 2D-3 of :mod:`videomdm.losses` becomes an average over the rig's viewpoints
  instead of over the data set's), so the ``two_d`` loss weights mean the same for 1 and 4 views, while a clip seen by
  more cameras contributes more observations to a batch's mean. A sum over views would multiply the loss, and its
  gradient, by V.
- :func:`views_as_frames`: views become frames of the frame axis (V·T rows) for the per-window placement (P-1),
  whose normal equations sum over frames and joints; each view adds its rows (P-2).
- :func:`nearest_point_to_rays`: the point nearest (in the weighted least-squares sense) to a joint's keypoint rays
  in every view: the multi-view generalization of :func:`videomdm.camera.ray_nearest_point`, used by ray guidance and
  the alignment target.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .camera import DEFAULT_MIN_DEPTH, ray_nearest_point

__all__ = ["views_as_items", "views_as_frames", "nearest_point_to_rays", "view_weight"]


def _check(joints: Tensor, keypoints: Tensor, R: Tensor, t: Tensor) -> tuple[int, int]:
    B, T, J = joints.shape[:3]
    V = keypoints.shape[1]
    if joints.shape != (B, T, J, 3) or keypoints.shape != (B, V, T, J, 2) or R.shape != (B, V, T, 3, 3) \
            or t.shape != (B, V, T, 3):
        raise ValueError(f"expected joints (B, T, J, 3), keypoints (B, V, T, J, 2), R (B, V, T, 3, 3), t (B, V, T, 3), "
                         f"got {tuple(joints.shape)}, {tuple(keypoints.shape)}, {tuple(R.shape)}, {tuple(t.shape)}")
    return B, V


def view_weight(confidence: Tensor, mask: Tensor, view_mask: Tensor | None = None) -> Tensor:
    """Keypoint weights ``(B, V, T, J)``: ``confidence (B, V, T, J)`` on real frames ``mask (B, T)`` of real views
    ``view_mask (B, V)`` (None: all views real), 0 elsewhere."""
    weight = confidence * mask[:, None, :, None]
    return weight if view_mask is None else weight * view_mask[:, :, None, None]


def views_as_items(joints: Tensor, keypoints: Tensor, weight: Tensor, mask: Tensor, R: Tensor, t: Tensor,
                   item_weight: Tensor | None = None) -> dict[str, Tensor | None]:
    """Fold views into the batch axis, as the 2D losses' keyword arguments (``pred_world``, ``keypoints_norm``,
    ``confidence``, ``mask``, ``R``, ``t``, ``item_weight``).

    Args:
        joints: ``(B, T, J, 3)`` metres. keypoints: ``(B, V, T, J, 2)``. weight: ``(B, V, T, J)`` (:func:`view_weight`).
        mask: ``(B, T)``. R, t: ``(B, V, T, 3, 3)``, ``(B, V, T, 3)``. item_weight: ``(B,)`` or None.

    Returns:
        The same quantities with ``B·V`` items, item ``b·V + v`` being view v of item b.
    """
    B, V = _check(joints, keypoints, R, t)
    T, J = joints.shape[1:3]
    return {
        "pred_world": joints[:, None].expand(B, V, T, J, 3).reshape(B * V, T, J, 3),
        "keypoints_norm": keypoints.reshape(B * V, T, J, 2),
        "confidence": weight.reshape(B * V, T, J),
        "mask": mask[:, None].expand(B, V, T).reshape(B * V, T),
        "R": R.reshape(B * V, T, 3, 3),
        "t": t.reshape(B * V, T, 3),
        "item_weight": None if item_weight is None else item_weight.repeat_interleave(V),
    }


def views_as_frames(joints: Tensor, keypoints: Tensor, weight: Tensor, R: Tensor,
                    t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Fold views into the frame axis for :func:`videomdm.placement.solve_placement`: ``joints (B, V·T, J, 3)``
    (each frame repeated per view), ``keypoints (B, V·T, J, 2)``, ``weight (B, V·T, J)``, ``R (B, V·T, 3, 3)``,
    ``t (B, V·T, 3)``; row ``v·T + f`` is frame f seen by view v. Inputs as :func:`views_as_items`."""
    B, V = _check(joints, keypoints, R, t)
    T, J = joints.shape[1:3]
    return (joints[:, None].expand(B, V, T, J, 3).reshape(B, V * T, J, 3), keypoints.reshape(B, V * T, J, 2),
            weight.reshape(B, V * T, J), R.reshape(B, V * T, 3, 3), t.reshape(B, V * T, 3))


def nearest_point_to_rays(joints: Tensor, keypoints: Tensor, weight: Tensor, R: Tensor, t: Tensor, *,
                          min_depth: float = DEFAULT_MIN_DEPTH, ridge: float = 1e-6) -> Tensor:
    """The point nearest to each joint's keypoint rays in all views, pulled (barely) towards the joint itself::

        X* = argmin_X  Σ_v w_v ‖(I − r_v r_vᵀ)(X − P_v)‖² + ε ‖X − P‖²,    ε = ridge · Σ_v w_v              (V-1)

    with ``P`` the joint, ``P_v`` the point of view v's ray nearest to it (:func:`~videomdm.camera.ray_nearest_point`,
    eq. 6, which also keeps it in front of the camera) and ``r_v`` that ray's unit direction in the world. The normal
    equations ``(Σ_v w_v Π_v + ε I) X = Σ_v w_v Π_v P_v + ε P`` (``Π_v = I − r_v r_vᵀ``) are solved per joint. With
    two or more views the rays' (near-)intersection is the triangulated point and the ridge is immaterial; with one view
    ``X* = P + (P_1 − P) / (1 + ridge)``, the ray's nearest point within a relative ``ridge``; without any weight
    ``X* = P``.

    Args:
        joints: ``(B, T, J, 3)`` metres. keypoints: ``(B, V, T, J, 2)`` normalized image coordinates (anything where
            the weight is 0). weight: ``(B, V, T, J)`` ≥ 0. R, t: ``(B, V, T, 3, 3)``, ``(B, V, T, 3)``.
        min_depth: metres along each ray (eq. 6).

    Returns:
        ``(B, T, J, 3)`` metres.
    """
    B, V = _check(joints, keypoints, R, t)
    T, J = joints.shape[1:3]
    w = torch.where(torch.isfinite(keypoints).all(-1), weight.clamp_min(0.0), torch.zeros_like(weight))
    k = torch.where(w[..., None] > 0, keypoints, torch.zeros_like(keypoints))  # (B, V, T, J, 2), NaN-safe
    eye = torch.eye(3, dtype=joints.dtype, device=joints.device)  # normalized coordinates: K = I
    folded = joints[:, None].expand(B, V, T, J, 3).reshape(B * V, T, J, 3)
    on_ray = ray_nearest_point(folded, k.reshape(B * V, T, J, 2), eye, R.reshape(B * V, T, 3, 3),
                               t.reshape(B * V, T, 3), min_depth=min_depth).reshape(B, V, T, J, 3)
    ray_cam = torch.nn.functional.normalize(torch.cat([k, torch.ones_like(k[..., :1])], -1), dim=-1)
    ray = torch.einsum("bvtij,bvtkj->bvtki", R.transpose(-1, -2), ray_cam).double()  # (B, V, T, J, 3) world
    # Solved for X − P in float64: with one view the ridge is the only curvature along the ray (1e-6 of the rest).
    projector = torch.eye(3, dtype=torch.float64, device=joints.device) - ray[..., :, None] * ray[..., None, :]
    wp = w.double()[..., None, None] * projector  # (B, V, T, J, 3, 3): w (I − r rᵀ)
    offset = (on_ray - joints[:, None]).double()  # (B, V, T, J, 3): P_v − P
    epsilon = ridge * w.double().sum(1) + 1e-12  # (B, T, J)
    lhs = wp.sum(1) + epsilon[..., None, None] * torch.eye(3, dtype=torch.float64, device=joints.device)
    rhs = (wp @ offset[..., None]).sum(1)  # (B, T, J, 3, 1)
    return joints + torch.linalg.solve(lhs, rhs)[..., 0].to(joints.dtype)
