"""Band-limited motion: the orthogonal projection of a window onto its lowest temporal frequencies.

A window of T frames is expanded in the orthonormal DCT-II basis (Ahmed et al. 1974), whose k-th vector oscillates at
``k / (2T)`` cycles per frame, and only the coefficients up to a cut-off frequency f_c are kept:

    P_T = C_Kᵀ C_K,    K = min(T, floor(2 T f_c) + 1)                                          (1)

with ``C_K`` the first K rows of the (T, T) DCT-II matrix and f_c in cycles per frame (Hz / fps). P_T is symmetric
and idempotent; it leaves every frequency ≤ f_c untouched and removes the rest, without the phase shift or the end
effects of a causal filter (the DCT's even extension has no jump at the window's ends). Representing motion by its
low DCT coefficients is a standard prior for human motion (Mao et al. 2019, "Learning Trajectory Dependencies for
Human Motion Prediction"; Chen et al. 2023, "HumanMAC").

Used on the denoiser's x0 prediction (:class:`videomdm.parameterization.Parameterized`): white noise spreads evenly
over all T frequencies, motion captured at 20–30 fps lives in the lowest few, so the projection removes most of what
a short-trained network leaves of the noise (and of a lifter's per-frame jitter) at no cost to the motion.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
import torch
from torch import Tensor

__all__ = ["kept_coefficients", "lowpass_projector", "bandlimit"]


def kept_coefficients(num_frames: int, cycles_per_frame: float) -> int:
    """K of eq. (1): how many DCT-II coefficients of a ``num_frames`` window lie at or below ``cycles_per_frame``."""
    if num_frames < 1:
        raise ValueError(f"a window has at least one frame, got {num_frames}")
    if not cycles_per_frame > 0:
        raise ValueError(f"the cut-off must be a positive frequency, got {cycles_per_frame} cycles per frame")
    return min(num_frames, int(np.floor(2 * num_frames * cycles_per_frame)) + 1)


@lru_cache(maxsize=64)
def _projector(num_frames: int, kept: int) -> np.ndarray:
    basis = scipy.fft.dct(np.eye(num_frames), type=2, norm="ortho", axis=0)[:kept]  # (K, T): row k = frequency k
    return basis.T @ basis  # (T, T)


def lowpass_projector(num_frames: int, cycles_per_frame: float) -> np.ndarray:
    """P_T of eq. (1), ``(T, T)`` float64."""
    return _projector(num_frames, kept_coefficients(num_frames, cycles_per_frame))


@lru_cache(maxsize=64)
def _projector_tensor(num_frames: int, cycles_per_frame: float, device: torch.device) -> Tensor:
    """:func:`lowpass_projector` as a float32 tensor on ``device``, made once per window length (every denoiser
    call projects: no host-to-device copy per call)."""
    return torch.as_tensor(lowpass_projector(num_frames, cycles_per_frame), dtype=torch.float32, device=device)


def bandlimit(x: Tensor, mask: Tensor, cycles_per_frame: float) -> Tensor:
    """Project every window of a batch onto its frequencies ≤ ``cycles_per_frame`` (eq. (1)), each over its real
    frames.

    Args:
        x: (B, T, D) per-frame features.
        mask: (B, T) bool, True = real frame; the real frames of a window come first (padding follows them).
        cycles_per_frame: f_c, the cut-off (Hz / fps); must be positive.
    Returns:
        (B, T, D): ``P_n x[:n]`` on the n real frames of each window, 0 on padding.
    """
    lengths = mask.sum(dim=1)  # (B,)
    frames = torch.arange(mask.shape[1], device=mask.device)
    if not torch.equal(mask, frames[None, :] < lengths[:, None]):
        raise ValueError("bandlimit needs the real frames of each window first, padding after them")
    out = torch.zeros_like(x)
    with torch.autocast(x.device.type, enabled=False):  # in float32 even under bf16 autocast: a sum over T frames
        for n in lengths.unique().tolist():
            if n == 0:
                continue
            rows = lengths == n
            projector = _projector_tensor(n, cycles_per_frame, x.device)
            out[rows, :n] = torch.einsum("st,btd->bsd", projector, x[rows, :n].float()).to(x.dtype)
    return out
