"""The network, its parameterization and the diffusion built from a run's config, and the device and precision they
run on. Shared by training, sampling and the benchmarks; imports nothing about data or training.
"""

from __future__ import annotations

import os
import platform
import warnings
from pathlib import Path

import torch

from .config import Config
from .diffusion import GaussianDiffusion
from .model import MotionDenoiser
from .parameterization import Parameterized
from .representation import FeatureLayout

__all__ = ["build_model", "build_denoiser", "build_diffusion", "resolve_device", "bf16_supported", "PRECISIONS",
           "autocast_dtype", "device_summary"]


def build_model(config: Config, feature_dim: int, cond_dim: int) -> MotionDenoiser:
    """The network of ``config.model`` for ``feature_dim`` features per frame and ``cond_dim``-sized condition
    vectors (0: unconditional). Its state dict is what checkpoints hold."""
    m = config.model
    return MotionDenoiser(feature_dim=feature_dim, cond_dim=cond_dim, width=m.width, layers=m.layers, heads=m.heads,
                          ff_size=m.ff_size, dropout=m.dropout, activation=m.activation, cond_dropout=m.cond_dropout,
                          frames_per_token=m.frames_per_token, temporal_kernel=m.temporal_kernel,
                          zero_init_output=m.zero_init_output)


def build_denoiser(config: Config, network: torch.nn.Module) -> Parameterized:
    """``network`` read under ``config.model.prediction``: the x0 denoiser that objectives and samplers call."""
    data_std = None
    if config.model.prediction == "edm":
        layout = FeatureLayout.from_dim(network.feature_dim)
        data_std = torch.ones(layout.dim)
        if config.data.normalization == "group":
            for name in layout.root_names:  # the slices Normalizer.grouped divides by root_emphasis
                data_std[layout.slices()[name]] = config.data.root_emphasis
    return Parameterized(network, config.model.prediction, build_diffusion(config).alphas_cumprod,
                         max_cycles_per_frame=config.model.max_frequency_hz / config.data.fps, data_std=data_std)


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


PRECISIONS = ("auto", "fp32", "bf16")


def autocast_dtype(precision: str, device: torch.device, use: str = "training") -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``, None meaning fp32. The one precision check of training and
    sampling.

    ``"bf16"``: ``torch.bfloat16`` where the device computes bf16 natively (:func:`bf16_supported`), else fp32 with a
    warning naming ``use``. ``"auto"``: the same without the warning (bf16 where it is native, fp32 elsewhere).
    ``"fp32"``: None.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(repr(p) for p in PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return None
    if not bf16_supported(device):
        if precision == "bf16":
            warnings.warn(f"precision bf16: {device} has no native bf16 support; {use} in fp32", stacklevel=2)
        return None
    return torch.bfloat16


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def device_summary(device: torch.device) -> dict[str, object]:
    """What a benchmark figure was measured on: ``device``, ``cpu`` (model name), ``cpu_capability`` (torch's
    vector ISA level), ``bf16_units`` (:func:`bf16_supported`), ``gpu`` (CUDA device name, or None), ``torch``,
    ``threads`` (torch intra-op threads) and ``cpu_count``."""
    return {"device": str(device), "cpu": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_units": bf16_supported(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
