"""Generation from a trained run: rebuild the model from the run's config, sample features, decode to joints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .checkpoint import CheckpointError, check_compatible, latest_checkpoint, load_checkpoint, load_run_config, \
    load_tensors
from .config import Config
from .diffusion import GaussianDiffusion, classifier_free_guidance
from .model import MotionDenoiser
from .representation import Normalizer, decode
from .skeleton import Skeleton, get_skeleton
from .text import TextEncoder, build_text_encoder
from .train import build_diffusion, build_model, resolve_device

__all__ = ["LoadedRun", "load_run", "generate"]


@dataclass
class LoadedRun:
    """A trained run ready to sample: the EMA denoiser (eval mode) and everything needed around it."""

    config: Config
    model: MotionDenoiser
    diffusion: GaussianDiffusion
    normalizer: Normalizer
    text_encoder: TextEncoder | None
    skeleton: Skeleton
    device: torch.device
    step: int
    checkpoint: Path


def load_run(run_dir: Path, *, checkpoint: Path | None = None, device: str = "auto", use_ema: bool = True) -> LoadedRun:
    """Load a run folder (its config, normalizer and latest or given checkpoint).

    A checkpoint trained with other model settings than the run's ``config.json`` is refused.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    path = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"{run_dir}: no checkpoint found under checkpoints/")
    ckpt = load_checkpoint(path)
    check_compatible(config, ckpt.config, f"checkpoint {path}")
    dev = resolve_device(device)
    text_encoder = build_text_encoder(config.data.text_encoder, device=str(dev))
    normalizer = Normalizer.from_state_dict(load_tensors(run_dir / "normalizer.safetensors")).to(dev)
    feature_dim = int(normalizer.mean.shape[-1])
    model = build_model(config, feature_dim, text_encoder.dim if text_encoder is not None else 0)
    weights = ckpt.ema if use_ema else ckpt.model
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model of {run_dir / 'config.json'} ({err})") from None
    model.to(dev).eval()
    return LoadedRun(config=config, model=model, diffusion=build_diffusion(config).to(dev), normalizer=normalizer,
                     text_encoder=text_encoder, skeleton=get_skeleton(config.data.skeleton), device=dev,
                     step=ckpt.step, checkpoint=path)


@torch.no_grad()
def generate(run: LoadedRun, num: int, *, texts: Sequence[str] | None = None, num_frames: int | None = None,
             steps: int | None = None, guidance_scale: float | None = None, eta: float | None = None,
             sampler: str | None = None, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Sample ``num`` motions; returns joints ``(num, T, J, 3)`` float32 in metres (canonical frame, y up).

    Args:
        texts: one caption per motion (or one caption for all); ``None`` for unconditional sampling.
        num_frames: motion length (default: the training window length).
        steps: sampling steps (default: ``diffusion.sample_steps``); DDIM uses any subset of the training steps.
        guidance_scale: classifier-free guidance scale for text (default: ``diffusion.guidance_scale``).
    """
    cfg = run.config.diffusion
    num_frames = num_frames or run.config.data.num_frames
    steps = steps or cfg.sample_steps
    guidance_scale = cfg.guidance_scale if guidance_scale is None else guidance_scale
    sampler = sampler or cfg.sampler
    if texts is not None and run.text_encoder is None:
        raise ValueError("this run was trained without a text encoder (data.text_encoder=none); omit --text")
    if texts is not None and len(texts) not in (1, num):
        raise ValueError(f"give one caption or {num} captions, not {len(texts)}")

    shape = (num, num_frames, int(run.normalizer.mean.shape[-1]))
    mask = torch.ones(num, num_frames, dtype=torch.bool, device=run.device)
    if texts is not None:
        captions = list(texts) * num if len(texts) == 1 else list(texts)
        cond = run.text_encoder.encode(captions).to(run.device)
        model_fn = classifier_free_guidance(run.model, guidance_scale, mask=mask, cond=cond)
    elif run.text_encoder is not None:  # a text model sampled unconditionally: the dropped-condition branch
        uncond = torch.ones(num, dtype=torch.bool, device=run.device)
        cond = torch.zeros(num, run.text_encoder.dim, device=run.device)

        def model_fn(x, t):
            return run.model(x, t, mask, cond=cond, uncond=uncond)
    else:
        def model_fn(x, t):
            return run.model(x, t, mask)

    generator = torch.Generator(device=run.device).manual_seed(seed)
    noise = torch.randn(shape, generator=generator, device=run.device)
    if sampler == "ddpm":
        x0 = run.diffusion.ddpm_sample(model_fn, shape, noise=noise, generator=generator, progress=progress)
    else:
        x0 = run.diffusion.ddim_sample(model_fn, shape, steps=steps, eta=cfg.eta if eta is None else eta,
                                       noise=noise, generator=generator, progress=progress)
    joints = decode(run.normalizer.denormalize(x0), run.skeleton.num_joints)
    return joints.float().cpu().numpy()
