"""Per-sampling-step latency of the default MotionDenoiser.

One JSON line per configuration, e.g.

    {"device": "cpu", "dtype": "fp32", "batch": 1, "cfg": true, "forward_batch": 2, "frames": 196,
     "ms_per_step": 41.2, "repeats": 5, "threads": 2}

Configurations: batch 1 with classifier-free guidance (one forward on a batch of 2, as a guided sampling step)
and batch 64 without guidance (one forward on 64), 196 frames, eval mode, ``torch.inference_mode``, in fp32 and in
bf16 autocast where the device supports it. ``ms_per_step`` is the median over ``--repeats`` timed steps after
``--warmup`` untimed ones. The device is cuda when available, else cpu (override with ``--device``).

Usage: python benchmarks/denoiser.py [--repeats 5] [--warmup 1] [--cfg-batch 1] [--plain-batch 64] [--frames 196]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext

import torch

from videomdm.diffusion import classifier_free_guidance
from videomdm.model import MotionDenoiser

FEATURE_DIM = 263  # HumanML3D, 22 joints
COND_DIM = 384  # MiniLM text embeddings
CFG_SCALE = 2.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--cfg-batch", type=int, default=1, help="batch run with guidance (0 = skip)")
    parser.add_argument("--plain-batch", type=int, default=64, help="batch run without guidance (0 = skip)")
    parser.add_argument("--frames", type=int, default=196)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    return parser.parse_args()


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is worth timing on this device."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def autocast(device: torch.device, dtype: str):
    """The autocast context for ``dtype`` ("fp32" = none)."""
    if dtype == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step, device: torch.device, dtype: str, warmup: int, repeats: int) -> float:
    """Median wall time of ``step()`` in milliseconds."""
    times = []
    with torch.inference_mode(), autocast(device, dtype):
        for i in range(warmup + repeats):
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def make_step(model: MotionDenoiser, batch: int, frames: int, cfg: bool, device: torch.device):
    """One sampling step's model call: a guided model_fn (2B forward) or a plain forward (B)."""
    generator = torch.Generator(device=device).manual_seed(0)
    x_t = torch.randn(batch, frames, FEATURE_DIM, generator=generator, device=device)
    t = torch.randint(0, 50, (batch,), generator=generator, device=device)
    mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    cond = torch.randn(batch, COND_DIM, generator=generator, device=device)
    if cfg:
        model_fn = classifier_free_guidance(model, CFG_SCALE, mask=mask, cond=cond)
        return lambda: model_fn(x_t, t)
    return lambda: model(x_t, t, mask, cond)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    model = MotionDenoiser(FEATURE_DIM, cond_dim=COND_DIM).to(device).eval()  # defaults: 8 x 512, 4 heads, ff 1024
    configs = [(b, cfg) for b, cfg in ((args.cfg_batch, True), (args.plain_batch, False)) if b > 0]
    for dtype in args.dtypes:
        if dtype == "bf16" and not bf16_supported(device):
            continue
        for batch, cfg in configs:
            step = make_step(model, batch, args.frames, cfg, device)
            ms = time_step(step, device, dtype, args.warmup, args.repeats)
            record = {
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "dtype": dtype,
                "batch": batch,
                "cfg": cfg,
                "forward_batch": 2 * batch if cfg else batch,
                "frames": args.frames,
                "ms_per_step": round(ms, 3),
                "repeats": args.repeats,
                "threads": torch.get_num_threads(),
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
