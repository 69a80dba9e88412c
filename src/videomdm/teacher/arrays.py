"""Array helpers shared by the teacher modules: per-frame extrinsics, :mod:`videomdm.camera` on numpy arrays, and
filling gaps in time.

Frames and equations (:mod:`videomdm.camera`): world y up; camera OpenCV (x right, y down, z forward);
``X_c = R X_w + t`` (eq. 1); normalized image coordinates ``(x, y) = (X_c / Z_c, Y_c / Z_c) = K⁻¹ (u, v, 1)``
(eq. 3).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ..camera import normalized_to_pixels, project_normalized

__all__ = ["per_frame_extrinsics", "on_arrays", "camera_to_pixels", "fill_gaps"]


def per_frame_extrinsics(R: np.ndarray, t: np.ndarray, num_frames: int,
                         where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Broadcast per-clip ``R (3, 3)``, ``t (3,)`` or per-frame ``R (T, 3, 3)``, ``t (T, 3)`` to per-frame arrays."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    prefix = f"{where}: " if where else ""
    if R.shape == (3, 3) and t.shape == (3,):
        return np.broadcast_to(R, (num_frames, 3, 3)), np.broadcast_to(t, (num_frames, 3))
    if R.shape == (num_frames, 3, 3) and t.shape == (num_frames, 3):
        return R, t
    raise ValueError(f"{prefix}extrinsics must be per clip R (3, 3), t (3,) or per frame R ({num_frames}, 3, 3), "
                     f"t ({num_frames}, 3); got R {R.shape}, t {t.shape}")


def on_arrays(function: Callable[..., Tensor], *arrays: Any) -> np.ndarray:
    """``function`` (from :mod:`videomdm.camera`) applied to numpy arrays, in float64. With per-frame cameras
    (``R (T, 3, 3)``, ``t (T, 3)``) and points ``(T, J, 3)`` the frames are :mod:`~videomdm.camera`'s batch."""
    return function(*(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for a in arrays)).numpy()


def camera_to_pixels(points_cam: Tensor, K: Tensor) -> Tensor:
    """Eqs. 3–4: camera-frame ``(..., 3)`` → pixels ``(..., 2)`` (depth clamped as
    :func:`videomdm.camera.project_normalized`)."""
    return normalized_to_pixels(project_normalized(points_cam), K)


def fill_gaps(values: Tensor, valid: Tensor) -> Tensor:
    """Fill invalid frames by linear interpolation between the nearest valid frames (nearest value at the ends).

    Args:
        values: ``(B, T, C)``. valid: ``(B, T)`` bool.
    Returns:
        ``(B, T, C)``; items without any valid frame are returned as zeros.
    """
    b, num_frames = valid.shape
    frames = torch.arange(num_frames, device=values.device).expand(b, num_frames)  # (B, T)
    prev = torch.where(valid, frames, torch.full_like(frames, -1)).cummax(dim=1).values  # last valid index ≤ t
    nxt = torch.where(valid, frames, torch.full_like(frames, num_frames))
    nxt = nxt.flip(1).cummin(dim=1).values.flip(1)  # first valid index ≥ t
    has_prev, has_next = prev >= 0, nxt < num_frames
    prev_c, next_c = prev.clamp(0, num_frames - 1), nxt.clamp(0, num_frames - 1)
    span = (next_c - prev_c).clamp_min(1).to(values.dtype)
    w = ((frames - prev_c).to(values.dtype) / span).unsqueeze(-1)  # (B, T, 1) weight of the next valid frame
    w = torch.where(has_prev.unsqueeze(-1), w, torch.ones_like(w))
    w = torch.where(has_next.unsqueeze(-1), w, torch.zeros_like(w))
    gather = lambda idx: values.gather(1, idx.unsqueeze(-1).expand(-1, -1, values.shape[-1]))  # noqa: E731
    filled = (1 - w) * gather(prev_c) + w * gather(next_c)
    any_valid = valid.any(dim=1)[:, None, None]
    return torch.where(any_valid, filled, torch.zeros_like(filled))
