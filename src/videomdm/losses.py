"""Small loss units. Every loss takes a frame mask ``(B, T)`` (True = real frame) and averages over real entries only.

3D losses (x0 prediction, MDM, Tevet et al. 2023, Sec. 3):

- :func:`masked_mse` — the simple objective ``‖x0 − x̂0‖²`` on normalized features (MDM eq. 2).
- :func:`joint_position_loss`, :func:`joint_velocity_loss`, :func:`foot_contact_loss` — MDM's geometric losses
  (eqs. 3–5) on joints decoded from the prediction.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["masked_mean", "masked_mse", "joint_position_loss", "joint_velocity_loss", "foot_contact_loss"]


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values (B, T, ...)`` over the entries of real frames ``mask (B, T)``; 0 if there are none."""
    weight = mask.to(values.dtype).reshape(mask.shape + (1,) * (values.dim() - mask.dim())).expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over real frames. ``pred, target (B, T, D)``, ``mask (B, T)`` → scalar."""
    return masked_mean((pred - target).square(), mask)


def joint_position_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """MDM eq. 3: mean squared joint position error (m²). ``pred, target (B, T, J, 3)``."""
    return masked_mean((pred - target).square().sum(-1), mask)


def _pair_mask(mask: Tensor) -> Tensor:
    """(B, T−1): both frames of a difference are real."""
    return mask[:, 1:] & mask[:, :-1]


def joint_velocity_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """MDM eq. 5: squared error of frame-to-frame joint displacements (m² per frame²). ``(B, T, J, 3)``."""
    pred_vel = pred[:, 1:] - pred[:, :-1]
    target_vel = target[:, 1:] - target[:, :-1]
    return masked_mean((pred_vel - target_vel).square().sum(-1), _pair_mask(mask))


def foot_contact_loss(pred: Tensor, contacts: Tensor, foot_joints: list[int], mask: Tensor) -> Tensor:
    """MDM eq. 4: squared speed of predicted foot joints on frames where the target foot is in contact.

    Args:
        pred: (B, T, J, 3) predicted joints.
        contacts: (B, T, F) target contact labels in {0, 1}, one per entry of ``foot_joints``.
        foot_joints: F joint indices (the skeleton's feet, in the order of the contact features).
        mask: (B, T) real frames.
    """
    foot_vel = pred[:, 1:, foot_joints] - pred[:, :-1, foot_joints]  # (B, T-1, F, 3)
    speed_sq = foot_vel.square().sum(-1) * contacts[:, :-1]  # (B, T-1, F)
    return masked_mean(speed_sq, _pair_mask(mask))
