"""The network, its parameterization and the diffusion built from a run's config, and the device and precision they
run on. Shared by training, sampling and the benchmarks; imports nothing about data or training.
"""

from __future__ import annotations

import warnings

import torch

from .config import Config
from .diffusion import GaussianDiffusion
from .model import MotionDenoiser
from .parameterization import Parameterized

__all__ = ["build_model", "build_denoiser", "build_diffusion", "resolve_device", "bf16_supported", "autocast_dtype"]


def build_model(config: Config, feature_dim: int, cond_dim: int) -> MotionDenoiser:
    """The network of ``config.model`` for ``feature_dim`` features per frame and ``cond_dim``-sized condition
    vectors (0: unconditional). Its state dict is what checkpoints hold."""
    m = config.model
    return MotionDenoiser(feature_dim=feature_dim, cond_dim=cond_dim, width=m.width, layers=m.layers, heads=m.heads,
                          ff_size=m.ff_size, dropout=m.dropout, activation=m.activation, cond_dropout=m.cond_dropout,
                          frames_per_token=m.frames_per_token, temporal_kernel=m.temporal_kernel)


def build_denoiser(config: Config, network: torch.nn.Module) -> Parameterized:
    """``network`` read under ``config.model.prediction``: the x0 denoiser that objectives and samplers call."""
    return Parameterized(network, config.model.prediction, build_diffusion(config).alphas_cumprod,
                         max_cycles_per_frame=config.model.max_frequency_hz / config.data.fps)


def build_diffusion(config: Config) -> GaussianDiffusion:
    """The noise schedule of ``config.diffusion`` (``steps`` levels); on the CPU, move it with ``.to(device)``."""
    return GaussianDiffusion(num_steps=config.diffusion.steps, schedule=config.diffusion.schedule)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: CUDA ``torch.cuda.is_bf16_supported()``; CPU AVX512-BF16 or AMX
    instructions (bf16 matrix products without them are emulated and slower than fp32); other devices: no."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def autocast_dtype(precision: str, device: torch.device, use: str = "training") -> torch.dtype | None:
    """``torch.bfloat16`` for ``precision="bf16"`` on a device with native bf16 support (:func:`bf16_supported`),
    else None (fp32). The one precision check of training and sampling; falling back warns, naming ``use``.

    Raises:
        ValueError: ``precision`` is neither ``"fp32"`` nor ``"bf16"``.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if precision == "fp32":
        return None
    if not bf16_supported(device):
        warnings.warn(f"precision bf16: {device} has no native bf16 support; {use} in fp32", stacklevel=2)
        return None
    return torch.bfloat16
