"""Denoising-step latency of our MotionDenoiser against the reference denoiser design, in the same process.

The reference design (MDM, Tevet et al. 2023, as the public release builds it) is re-implemented below from its
description: input linear to width 512, sinusoidal positional encoding, a timestep MLP on the positional table plus
the projected 512-d text embedding as ONE prepended token, ``nn.TransformerEncoder`` (8 layers, 4 heads,
feed-forward 1024, GELU, dropout 0.1 in training, post-norm as torch's default, sequence-first), output linear.
Its guided step runs the conditional and the unconditional model one after the other (two forwards of the batch), in
fp32, eagerly. Ours runs both branches in one forward on a doubled batch, with ``scaled_dot_product_attention``,
optionally under bf16 autocast.

Prints ONE JSON line, e.g.

    {"device": "cpu", "threads": 1, "frames": 196, "ours_ms": 30.1, "reference_ms": 70.2, "ratio": 0.43,
     "ours_precision": "bf16", "ours_fp32_ms": ..., "ours_bf16_ms": ..., "ours_small_fp32_ms": ...,
     "ours_patch2_ms": ..., "ratio_patch2": ..., "ours_b64_ms": ..., "reference_b64_ms": ..., "ratio_b64": ..., ...}

``*_ms`` are medians over ``--repeats`` timed steps after ``--warmup`` untimed ones: a guided step for one motion
(batch 1) and an unguided forward at batch 64, all at 196 frames, eval mode, no gradients. ``ours_ms`` is ours at the
reference size in the faster of fp32 and bf16 (``ours_precision`` says which); ``ratio = ours_ms / reference_ms``
(target ≤ 0.5). ``small`` is the project's ``small`` preset (width 128, 4 layers); the ``default`` preset is the
reference size. ``patch2`` is ours at the reference size with temporal patching ``model.frames_per_token = 2`` (two
consecutive frames per token: 98 frame tokens + the condition token instead of 196 + 1; not the reference design, a
different model that must be trained as such); ``ours_patch2_ms`` is its faster precision and
``ratio_patch2 = ours_patch2_ms / reference_ms``. On CPU, ``ours_int8_ms`` times ours with int8 dynamically quantized linear layers, as a measurement
only. The configurations are timed round-robin, so load changes on a shared machine hit them alike.

Usage: OMP_NUM_THREADS=1 python benchmarks/denoiser.py [--repeats 5] [--warmup 1] [--batch 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Callable

import torch
from torch import Tensor, nn

from videomdm.config import load_config
from videomdm.diffusion import classifier_free_guidance
from videomdm.factory import bf16_supported
from videomdm.model import MotionDenoiser
from videomdm.sample import inference_precision

FEATURE_DIM = 263  # HumanML3D features, 22 joints
OUR_COND_DIM = 384  # MiniLM text embeddings
REFERENCE_COND_DIM = 512  # CLIP ViT-B/32 text embeddings
CFG_SCALE = 2.5
DIFFUSION_STEPS = 1000  # the reference's training steps (only sets the range of timesteps drawn)


class ReferencePositionalEncoding(nn.Module):
    """Sinusoidal table ``pe[p, 2i] = sin(p / 10000^(2i/W))``, ``pe[p, 2i+1] = cos(...)`` (sequence-first), added
    to the tokens, then dropout."""

    def __init__(self, width: int, dropout: float, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        div_term = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
        pe = torch.zeros(max_len, width)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe[:, None, :])  # (max_len, 1, W)

    def forward(self, x: Tensor) -> Tensor:
        """(S, B, W) → (S, B, W)."""
        return self.dropout(x + self.pe[: x.shape[0]])


class ReferenceDenoiser(nn.Module):
    """The reference denoiser design (module docstring), fp32, sequence-first, no padding mask."""

    def __init__(self, feature_dim: int = FEATURE_DIM, cond_dim: int = REFERENCE_COND_DIM, width: int = 512,
                 layers: int = 8, heads: int = 4, ff_size: int = 1024, dropout: float = 0.1) -> None:
        super().__init__()
        self.input_process = nn.Linear(feature_dim, width)
        self.positional = ReferencePositionalEncoding(width, dropout)
        self.timestep_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.embed_text = nn.Linear(cond_dim, width)
        layer = nn.TransformerEncoderLayer(d_model=width, nhead=heads, dim_feedforward=ff_size, dropout=dropout,
                                           activation="gelu")
        # Sequence-first layers never take the nested-tensor path; saying so silences torch's warning about it.
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.output_process = nn.Linear(width, feature_dim)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor, uncond: bool) -> Tensor:
        """x (B, T, D), t (B,), cond (B, C) → x0 (B, T, D); ``uncond`` zeroes the text embedding."""
        token = self.timestep_mlp(self.positional.pe[t, 0])  # (B, W)
        token = token + self.embed_text(cond * (0.0 if uncond else 1.0))  # (B, W)
        frames = self.input_process(x).permute(1, 0, 2)  # (T, B, W)
        sequence = self.positional(torch.cat([token[None], frames], dim=0))  # (1 + T, B, W)
        out = self.encoder(sequence)[1:]  # (T, B, W)
        return self.output_process(out).permute(1, 0, 2)  # (B, T, D)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--batch", type=int, default=64, help="batch of the unguided forward (0 = skip)")
    parser.add_argument("--frames", type=int, default=196)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    return parser.parse_args()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(steps: dict[str, Callable[[], Tensor]], device: torch.device, warmup: int,
              repeats: int) -> dict[str, float]:
    """Median wall time of each step in milliseconds, without gradients. The steps are timed round-robin (one
    call of each per round), so a change in the machine's load affects them alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    with torch.no_grad():
        for round_ in range(warmup + repeats):
            for name, step in steps.items():
                synchronize(device)
                start = time.perf_counter()
                step()
                synchronize(device)
                if round_ >= warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def inputs(batch: int, frames: int, cond_dim: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator(device=device).manual_seed(0)
    x_t = torch.randn(batch, frames, FEATURE_DIM, generator=generator, device=device)
    t = torch.randint(0, DIFFUSION_STEPS, (batch,), generator=generator, device=device)
    cond = torch.randn(batch, cond_dim, generator=generator, device=device)
    return x_t, t, cond


def our_steps(model: MotionDenoiser, batch: int, frames: int, device: torch.device, precision: str):
    """Our guided step for ``batch`` motions (one forward on 2·batch) and our unguided forward."""
    denoiser = inference_precision(model, device, precision)
    x_t, t, cond = inputs(batch, frames, OUR_COND_DIM, device)
    mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    guided = classifier_free_guidance(denoiser, CFG_SCALE, mask=mask, cond=cond)
    return (lambda: guided(x_t, t)), (lambda: denoiser(x_t, t, mask, cond=cond))


def reference_steps(model: ReferenceDenoiser, batch: int, frames: int, device: torch.device):
    """The reference's guided step (conditional forward, then unconditional forward) and its plain forward."""
    x_t, t, cond = inputs(batch, frames, REFERENCE_COND_DIM, device)

    def guided() -> Tensor:
        out_cond = model(x_t, t, cond, uncond=False)
        out_uncond = model(x_t, t, cond, uncond=True)
        return out_uncond + CFG_SCALE * (out_cond - out_uncond)

    return guided, (lambda: model(x_t, t, cond, uncond=False))


def our_model(preset: str, device: torch.device, frames_per_token: int = 1) -> MotionDenoiser:
    m = load_config(preset).model
    torch.manual_seed(0)
    return MotionDenoiser(FEATURE_DIM, cond_dim=OUR_COND_DIM, width=m.width, layers=m.layers, heads=m.heads,
                          ff_size=m.ff_size, dropout=m.dropout, activation=m.activation,
                          frames_per_token=frames_per_token).to(device).eval()


def int8_copy(model: MotionDenoiser) -> nn.Module:
    """Ours with every Linear dynamically quantized to int8 (torch's eager dynamic quantization, deprecated in
    torch 2.13): a measurement for CPUs without bf16 units, not a sampling option of the project."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    timing = {"device": device, "warmup": args.warmup, "repeats": args.repeats}
    record: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "frames": args.frames, "torch": torch.__version__,
        "repeats": args.repeats,
    }
    torch.manual_seed(0)
    reference = ReferenceDenoiser().to(device).eval()
    precisions = ["fp32"] + (["bf16"] if bf16_supported(device) else [])
    ours = {"": our_model("default", device), "small_": our_model("small", device),
            "patch2_": our_model("default", device, frames_per_token=2)}

    guided = {"reference": reference_steps(reference, 1, args.frames, device)[0]}
    for prefix, model in ours.items():
        for precision in precisions:
            guided[f"ours_{prefix}{precision}"] = our_steps(model, 1, args.frames, device, precision)[0]
    if device.type == "cpu":
        guided["ours_int8"] = our_steps(int8_copy(ours[""]), 1, args.frames, device, "fp32")[0]
    record.update({f"{name}_ms": ms for name, ms in median_ms(guided, **timing).items()})
    best = min(precisions, key=lambda p: record[f"ours_{p}_ms"])
    record["ours_precision"] = best
    record["ours_ms"] = record[f"ours_{best}_ms"]
    record["ratio"] = record["ours_ms"] / record["reference_ms"]
    record["ours_patch2_ms"] = min(record[f"ours_patch2_{p}_ms"] for p in precisions)
    record["ratio_patch2"] = record["ours_patch2_ms"] / record["reference_ms"]
    if "ours_int8_ms" in record:
        record["ratio_int8"] = record["ours_int8_ms"] / record["reference_ms"]

    if args.batch > 0:
        record["batch"] = args.batch
        plain = {"reference_b64": reference_steps(reference, args.batch, args.frames, device)[1]}
        for precision in sorted({"fp32", best}):  # a precision slower at batch 1 is not timed at batch 64
            plain[f"ours_b64_{precision}"] = our_steps(ours[""], args.batch, args.frames, device, precision)[1]
        record.update({f"{name}_ms": ms for name, ms in median_ms(plain, **timing).items()})
        record["ours_b64_ms"] = min(record[f"ours_b64_{p}_ms"] for p in sorted({"fp32", best}))
        record["ratio_b64"] = record["ours_b64_ms"] / record["reference_b64_ms"]
    record["parameters_ours"] = sum(p.numel() for p in ours[""].parameters())
    record["parameters_reference"] = sum(p.numel() for p in reference.parameters())
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}), flush=True)


if __name__ == "__main__":
    main()
