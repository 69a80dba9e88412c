"""The training loop: one loop for every supervision mode (DESIGN.md, "Supervision modes").

Determinism: every random choice of step ``s`` (batch, crops, diffusion timesteps, noise, dropout) is drawn from
generators seeded by ``(train.seed, s)``. A run resumed from the checkpoint of step ``s`` therefore continues with
exactly the batches and noise of an uninterrupted run, and on the CPU its loss curve is identical.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import (CheckpointError, atomic_write_text, check_compatible, latest_checkpoint, load_checkpoint,
                         load_run_config, load_tensors, save_checkpoint, save_config, save_tensors)
from .config import Config
from .data.dataset import MOTION_SOURCES, Batch, MotionWindows
from .diffusion import GaussianDiffusion
from .camera import ray_nearest_point
from .losses import (foot_contact_loss, joint_position_loss, joint_velocity_loss, masked_mse, reprojection_loss,
                     velocity_2d_loss)
from .model import MotionDenoiser
from .representation import FeatureLayout, Normalizer, decode, encode
from .skeleton import get_skeleton
from .text import TextEncoder, build_text_encoder

__all__ = ["train", "resolve_device", "build_model", "build_diffusion", "TrainState", "RunExistsError"]


class RunExistsError(CheckpointError):
    """The output folder already holds a run and ``resume`` was not asked for."""


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(config: Config, feature_dim: int, cond_dim: int) -> MotionDenoiser:
    m = config.model
    v_schedule = build_diffusion(config).alphas_cumprod if m.prediction == "v" else None
    return MotionDenoiser(feature_dim=feature_dim, cond_dim=cond_dim, width=m.width, layers=m.layers, heads=m.heads,
                          ff_size=m.ff_size, dropout=m.dropout, activation=m.activation, cond_dropout=m.cond_dropout,
                          v_schedule=v_schedule)


def build_diffusion(config: Config) -> GaussianDiffusion:
    return GaussianDiffusion(num_steps=config.diffusion.steps, schedule=config.diffusion.schedule)


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63)


@dataclass
class TrainState:
    """What one training step needs besides the batch."""

    config: Config
    model: MotionDenoiser
    ema: MotionDenoiser
    optimizer: torch.optim.Optimizer
    diffusion: GaussianDiffusion
    normalizer: Normalizer
    text_encoder: TextEncoder | None
    layout: FeatureLayout
    foot_joints: list[int]
    device: torch.device


def _learning_rate(config: Config, step: int) -> float:
    warmup = config.train.warmup_steps
    return config.train.lr * min(1.0, (step + 1) / warmup) if warmup > 0 else config.train.lr


def _condition(state: TrainState, texts: list[str]) -> tuple[Tensor | None, Tensor | None]:
    """Text embeddings ``(B, C)`` and ``uncond (B,)`` flags for items without a caption."""
    if state.text_encoder is None:
        return None, None
    uncond = torch.tensor([not t for t in texts], device=state.device)
    emb = state.text_encoder.encode([t or " " for t in texts]).to(state.device)
    return emb, uncond


def loss_3d(state: TrainState, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
    """x0-prediction loss on features (MDM eq. 2) plus the optional geometric terms (MDM eqs. 3–5).

    Used by the ``3d`` and ``teacher`` supervision modes; they differ only in which motion fills ``batch``.
    """
    w = state.config.loss
    x0 = state.normalizer.normalize(batch.features)  # (B, T, D)
    b = x0.shape[0]
    t = torch.randint(0, state.diffusion.num_steps, (b,), generator=generator).to(state.device)
    noise = torch.randn(x0.shape, generator=generator).to(state.device)
    x_t = state.diffusion.q_sample(x0, t, noise)
    cond, uncond = _condition(state, batch.texts)
    pred = state.model(x_t, t, batch.mask, cond=cond, uncond=uncond)
    terms = {"features": masked_mse(pred, x0, batch.mask)}
    if w.positions or w.velocities or w.foot_contact:
        num_joints = state.layout.num_joints
        pred_joints = decode(state.normalizer.denormalize(pred), num_joints)  # (B, T, J, 3)
        target_joints = decode(batch.features, num_joints)
        if w.positions:
            terms["positions"] = joint_position_loss(pred_joints, target_joints, batch.mask)
        if w.velocities:
            terms["velocities"] = joint_velocity_loss(pred_joints, target_joints, batch.mask)
        if w.foot_contact:
            contacts = batch.features[..., state.layout.foot_contacts]  # (B, T, 4)
            terms["foot_contact"] = foot_contact_loss(pred_joints, contacts, state.foot_joints, batch.mask)
    total = sum(getattr(w, name) * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}


def noised_teacher(state: TrainState, teacher: Tensor, t: Tensor, mask: Tensor, cond: Tensor | None,
                   uncond: Tensor | None, generator: torch.Generator) -> Tensor:
    """The model input at level ``t`` for ``2d`` supervision; the teacher is only ever noised to levels ≥ t*.

    Items with ``t ≥ t*`` get ``q_sample(teacher, t)``. Items with ``t < t*`` start from ``q_sample(teacher, t*)``
    and walk down to ``t`` in ``chain_steps`` evenly spaced levels: at each level the model's prediction (eval mode,
    no gradient, low-noise items only) is re-noised to the next level. At low noise the model therefore sees its own denoised motion, never the
    lifter's artifacts, which would otherwise be reproduced almost unchanged.

    Args:
        teacher: (B, T, D) normalized teacher features. t: (B,) target levels.
    Returns:
        (B, T, D) the noised input at level ``t`` (no gradient).
    """
    t_star = state.config.two_d.teacher_min_t
    diffusion = state.diffusion
    noise = torch.randn(teacher.shape, generator=generator).to(state.device)
    x = diffusion.q_sample(teacher, t.clamp_min(t_star), noise)
    low = torch.nonzero(t < t_star).squeeze(-1)  # (B_low,) items that walk a chain below t*
    if low.numel() == 0:
        return x
    chain = state.config.two_d.chain_steps
    target = t[low]
    x_low, mask_low = x[low], mask[low]
    cond_low = None if cond is None else cond[low]
    uncond_low = None if uncond is None else uncond[low]
    was_training = state.model.training
    state.model.eval()  # the chain's predictions are inputs, not training outputs: no dropout
    with torch.no_grad():
        for k in range(1, chain + 1):
            # Levels t* → t in ``chain`` steps: level_k = round(t* + (t − t*)·k/chain).
            current = torch.round(t_star + (target - t_star) * (k - 1) / chain).long().clamp_min(target)
            nxt = torch.round(t_star + (target - t_star) * k / chain).long().clamp_min(target)
            x0_hat = state.model(x_low, current, mask_low, cond=cond_low, uncond=uncond_low)
            step_noise = torch.randn(x_low.shape, generator=generator).to(state.device)
            x_low = diffusion.q_sample(x0_hat, nxt, step_noise)
    state.model.train(was_training)
    x = x.clone()
    x[low] = x_low
    return x


def loss_2d(state: TrainState, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
    """VideoMDM: the noised teacher in, 3D out, supervised by reprojection (DESIGN.md, supervision ``2d``).

    Terms: depth-weighted reprojection of the decoded prediction against the keypoints, 2D velocity consistency,
    and (optionally) alignment of the prediction's rotation/velocity/contact slices with the re-encoded prediction
    moved onto the keypoint rays. ``batch.features`` hold the teacher; no ground truth is read.
    """
    cfg = state.config.two_d
    teacher = state.normalizer.normalize(batch.features)  # (B, T, D)
    b = teacher.shape[0]
    t = torch.randint(0, state.diffusion.num_steps, (b,), generator=generator).to(state.device)
    cond, uncond = _condition(state, batch.texts)
    x_t = noised_teacher(state, teacher, t, batch.mask, cond, uncond, generator)
    pred = state.model(x_t, t, batch.mask, cond=cond, uncond=uncond)
    joints = decode(state.normalizer.denormalize(pred), state.layout.num_joints)  # (B, T, J, 3) canonical frame
    observed = (batch.keypoints, batch.confidence, batch.mask, batch.R, batch.t)
    terms = {
        "reprojection": reprojection_loss(joints, *observed, weighting=cfg.depth_weighting, min_depth=cfg.min_depth),
        "velocity_2d": velocity_2d_loss(joints, *observed, weighting=cfg.depth_weighting, min_depth=cfg.min_depth),
    }
    if cfg.alignment:
        terms["alignment"] = alignment_loss(state, pred, joints, batch)
    weights = {"reprojection": cfg.reprojection, "velocity_2d": cfg.velocity, "alignment": cfg.alignment}
    total = sum(weights[name] * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}


def alignment_loss(state: TrainState, pred: Tensor, joints: Tensor, batch: Batch) -> Tensor:
    """Representation alignment: pull the predicted rotation, local-velocity and foot-contact slices toward the
    features of the predicted joints moved onto their keypoint rays (re-encoded without gradient).

    Joints without a keypoint (confidence 0) stay where they are. Each item is re-encoded over its real frames only.
    """
    layout = state.layout
    with torch.no_grad():
        eye = torch.eye(3, device=joints.device, dtype=joints.dtype)  # keypoints are normalized coordinates: K = I
        moved = ray_nearest_point(joints, batch.keypoints, eye, batch.R, batch.t, min_depth=state.config.two_d.min_depth)
        moved = torch.where(batch.confidence[..., None] > 0, moved, joints)
        target = torch.zeros_like(pred)
        skeleton = get_skeleton(state.config.data.skeleton)
        for i, length in enumerate(batch.mask.sum(1).tolist()):
            features = encode(moved[i, :length], skeleton, contact_threshold=state.config.data.contact_threshold,
                              facing_sigma=state.config.data.facing_sigma)
            target[i, :length] = state.normalizer.normalize(features)
    slots = torch.zeros(layout.dim, dtype=torch.bool, device=pred.device)
    for part in (layout.rot6d, layout.local_velocity, layout.foot_contacts):
        slots[part] = True
    return masked_mse(pred[..., slots], target[..., slots], batch.mask)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``θ_ema ← decay·θ_ema + (1 − decay)·θ``."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)


def _ema_decay(config: Config, step: int) -> float:
    """EMA decay with the usual warm-up ``min(decay, (1 + s) / (10 + s))`` so early averages are not stale."""
    return min(config.train.ema_decay, (1 + step) / (10 + step))


def _prepare_run_dir(run_dir: Path, config: Config, resume: bool) -> None:
    """Create a run folder, or check that ``config`` may continue the run already in it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    has_run = (run_dir / "config.json").exists()
    if has_run and not resume:
        raise RunExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    if not has_run:
        if resume:
            raise CheckpointError(f"{run_dir}: nothing to resume (no config.json)")
        save_config(run_dir / "config.json", config)
        return
    saved = load_run_config(run_dir)
    check_compatible(saved, config, f"run {run_dir}")
    if saved.train.supervision != config.train.supervision:
        raise CheckpointError(f"run {run_dir} was trained with supervision {saved.train.supervision!r}, "
                              f"not {config.train.supervision!r}")
    save_config(run_dir / "config.json", config)  # non-model settings (e.g. a longer train.steps) may change


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop logged lines after ``step`` (they belong to the part of the run that is being redone)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    atomic_write_text(path, "".join(ln + "\n" for ln in lines))


def train(data_dir: Path, run_dir: Path, config: Config, *, resume: bool = False, progress: bool = True) -> Path:
    """Train a denoiser on ``data_dir``'s train split, writing checkpoints and metrics to ``run_dir``.

    Returns the path of the last checkpoint.
    """
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    supervision = config.train.supervision
    device = resolve_device(config.train.device)
    dataset = MotionWindows(data_dir, "train", motion_field=MOTION_SOURCES[supervision],
                            num_frames=config.data.num_frames, min_frames=config.data.min_frames,
                            skeleton=config.data.skeleton, fps=config.data.fps,
                            contact_threshold=config.data.contact_threshold, facing_sigma=config.data.facing_sigma,
                            with_keypoints=supervision == "2d")
    compute_loss = loss_2d if supervision == "2d" else loss_3d
    _prepare_run_dir(run_dir, config, resume)
    text_encoder = build_text_encoder(config.data.text_encoder, device=str(device))
    cond_dim = text_encoder.dim if text_encoder is not None else 0

    normalizer_file = run_dir / "normalizer.safetensors"
    if resume and normalizer_file.exists():
        normalizer = Normalizer.from_state_dict(load_tensors(normalizer_file))
    else:
        normalizer = dataset.normalizer()
        save_tensors(normalizer_file, normalizer.state_dict())
    normalizer = normalizer.to(device)

    torch.manual_seed(config.train.seed)
    model = build_model(config, dataset.layout.dim, cond_dim).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    skeleton = get_skeleton(config.data.skeleton)
    left, right = skeleton.foot_indices
    state = TrainState(config=config, model=model, ema=ema, optimizer=optimizer, diffusion=build_diffusion(config).to(device),
                       normalizer=normalizer, text_encoder=text_encoder, layout=dataset.layout,
                       foot_joints=left + right, device=device)

    start = 0
    metrics_file = run_dir / "metrics.jsonl"
    last = latest_checkpoint(run_dir) if resume else None
    if last is not None:
        ckpt = load_checkpoint(last)
        check_compatible(config, ckpt.config, f"checkpoint {last}")
        model.load_state_dict(ckpt.model)
        ema.load_state_dict(ckpt.ema)
        optimizer.load_state_dict(ckpt.state["optimizer"])
        start = ckpt.step
    _truncate_metrics(metrics_file, start)
    if not resume:
        atomic_write_text(run_dir / "run.json", json.dumps({
            "data": str(data_dir.resolve()), "videomdm": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device),
            "train_clips": len(dataset), "skipped_short_clips": dataset.skipped,
        }, indent=2) + "\n")

    total = config.train.steps
    checkpoint_path = last
    bar = tqdm(total=total, initial=start, disable=not progress, desc=f"train[{supervision}]", dynamic_ncols=True)
    t_last, steps_since = time.perf_counter(), 0
    model.train()
    with metrics_file.open("a") as log:
        for step in range(start, total):
            seed = _step_seed(config.train.seed, step)
            rng = np.random.default_rng(seed)
            generator = torch.Generator().manual_seed(seed)
            torch.manual_seed(seed)  # dropout and condition dropout
            batch = dataset.batch(rng.integers(0, len(dataset), config.train.batch_size).tolist(), rng).to(device)
            lr = _learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, terms = compute_loss(state, batch, generator)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"non-finite loss at step {step}: {terms}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
            optimizer.step()
            update_ema(ema, model, _ema_decay(config, step))
            steps_since += 1
            bar.update(1)
            done = step + 1
            if done % config.train.log_every == 0 or done == total:
                now = time.perf_counter()
                record = {"step": done, "loss": loss.item(), **{f"loss_{k}": v for k, v in terms.items()},
                          "grad_norm": float(grad_norm), "lr": lr, "steps_per_s": steps_since / (now - t_last)}
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{loss.item():.4f}", it_s=f"{record['steps_per_s']:.1f}")
                t_last, steps_since = now, 0
            if done % config.train.save_every == 0 or done == total:
                checkpoint_path = save_checkpoint(
                    run_dir, done, config, model.state_dict(), ema.state_dict(),
                    {"optimizer": optimizer.state_dict()}, keep=config.train.keep_checkpoints)
    bar.close()
    if checkpoint_path is None:
        raise CheckpointError(f"{run_dir}: training ended without a checkpoint (steps={total}, start={start})")
    return checkpoint_path

