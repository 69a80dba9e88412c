"""The training loop: one loop for every supervision mode (DESIGN.md, "Supervision modes"), on one process or on
many (PyTorch DDP under ``torchrun``).

Determinism: every random choice of step ``s`` is drawn from generators seeded by ``(train.seed, s)``. The step's
global batch (``batch_size · grad_accum · processes`` clips) is drawn from ``(seed, s)``; the item at position ``p``
of that batch draws its window, diffusion timestep and noise from its own generators seeded by ``(seed, s, p)``
(:class:`ItemRandom`), whichever process and micro-batch hold it. A run resumed from the checkpoint of step ``s``
therefore continues with exactly the batches and noise of an uninterrupted run (on the CPU its loss curve is
identical), also with another number of processes, and no random-generator state needs saving. Dropout masks are
the one exception: they come from the global generator, seeded per step and per micro-batch slot.

Distributed runs: ``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`train` reads them, joins the
process group (NCCL on CUDA, gloo on the CPU), and splits each global batch into disjoint per-process micro-batches
(:func:`micro_batch_positions`). Gradients are averaged over processes by DDP and over micro-batches by scaling, so a
step equals one process's step on the whole global batch wherever the losses weight the items equally. Only rank 0
writes the run folder, the metrics and the checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import (CheckpointError, atomic_write_text, check_compatible, latest_checkpoint, load_checkpoint,
                         load_run_config, load_tensors, save_checkpoint, save_config, save_tensors)
from .config import Config
from .data.dataset import MOTION_SOURCES, Batch, MotionWindows, collate
from .diffusion import GaussianDiffusion
from .camera import ray_nearest_point, world_to_camera
from .losses import (foot_contact_loss, joint_position_loss, joint_velocity_loss, masked_mse, reprojection_loss,
                     velocity_2d_loss)
from .model import MotionDenoiser
from .placement import solve_placement
from .representation import FeatureLayout, Normalizer, decode, encode
from .skeleton import get_skeleton
from .text import TextEncoder, build_text_encoder

__all__ = ["train", "resolve_device", "build_model", "build_diffusion", "TrainState", "RunExistsError", "Processes",
           "processes_from_env", "micro_batch_positions", "ItemRandom", "bf16_supported", "autocast_dtype"]


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
                          v_schedule=v_schedule, frames_per_token=m.frames_per_token)


def build_diffusion(config: Config) -> GaussianDiffusion:
    return GaussianDiffusion(num_steps=config.diffusion.steps, schedule=config.diffusion.schedule)


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63)


def _seed_of(*entropy: int) -> int:
    """A 63-bit generator seed mixed from integers (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0]) >> 1


@dataclass(frozen=True)
class Processes:
    """This process's place in a run: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def processes_from_env(env: Mapping[str, str] = os.environ) -> Processes:
    """The ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` that ``torchrun`` sets; without them, a run of one process."""
    if "WORLD_SIZE" not in env:
        return Processes()
    try:
        world_size, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError(f"WORLD_SIZE/RANK/LOCAL_RANK must be integers, got {env.get('WORLD_SIZE')!r}/"
                         f"{env.get('RANK')!r}/{env.get('LOCAL_RANK')!r}") from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(f"RANK={rank}, LOCAL_RANK={local_rank} do not fit WORLD_SIZE={world_size}")
    return Processes(rank=rank, world_size=world_size, local_rank=local_rank)


def _process_device(name: str, processes: Processes) -> torch.device:
    """The configured device; in a multi-process CUDA run each process takes the GPU of its ``LOCAL_RANK``."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None and processes.world_size > 1:
        return torch.device("cuda", processes.local_rank)
    return device


def _join_process_group(processes: Processes, device: torch.device) -> bool:
    """Join the default process group (NCCL for CUDA, gloo otherwise); False when there is nothing to join."""
    if processes.world_size == 1 or torch_dist.is_initialized():
        return False
    missing = [key for key in ("MASTER_ADDR", "MASTER_PORT") if key not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={processes.world_size} but {', '.join(missing)} not set: launch with torchrun")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=processes.rank,
                                  world_size=processes.world_size)
    return True


def micro_batch_positions(batch_size: int, processes: Processes, micro: int) -> range:
    """Positions in the step's global batch (``batch_size · grad_accum · world_size`` items) held by micro-batch
    ``micro`` of this process: slot ``micro · world_size + rank`` of ``batch_size`` consecutive items. Slots of all
    processes and micro-batches are disjoint and cover the global batch."""
    slot = micro * processes.world_size + processes.rank
    return range(slot * batch_size, (slot + 1) * batch_size)


class ItemRandom:
    """Independent random streams for the items of one micro-batch.

    The item at position ``p`` of step ``step``'s global batch draws from generators seeded by ``(seed, step, p)``:
    its window and caption (numpy, :meth:`MotionWindows.sample`), then its timestep and noise (torch, in call order).
    Noise is drawn for ``max_frames`` frames and cut to the batch's padded length, so it does not depend on the
    padding either.
    """

    def __init__(self, seed: int, step: int, positions: list[int] | range, max_frames: int) -> None:
        self.numpy = [np.random.default_rng([seed, step, p]) for p in positions]
        self.torch = [torch.Generator().manual_seed(_seed_of(seed, step, p, 1)) for p in positions]
        self.max_frames = max_frames

    def __len__(self) -> int:
        return len(self.torch)

    def timesteps(self, num_steps: int, device: torch.device) -> Tensor:
        """(B,) int64 diffusion levels, uniform in ``[0, num_steps)``."""
        return torch.cat([torch.randint(0, num_steps, (1,), generator=g) for g in self.torch]).to(device)

    def noise(self, frames: int, dim: int, device: torch.device, items: list[int] | None = None) -> Tensor:
        """(B', frames, dim) standard normal noise for ``items`` (default all) of the micro-batch."""
        if frames > self.max_frames:
            raise ValueError(f"noise for {frames} frames asked from streams of {self.max_frames}")
        chosen = range(len(self)) if items is None else items
        rows = [torch.randn(self.max_frames, dim, generator=self.torch[i])[:frames] for i in chosen]
        return torch.stack(rows).to(device)


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


@dataclass
class TrainState:
    """What one training step needs besides the batch. ``model`` is what the step calls (the DDP wrapper in a
    multi-process run); ``autocast`` the dtype of its forward passes (None: fp32)."""

    config: Config
    model: nn.Module
    ema: MotionDenoiser
    optimizer: torch.optim.Optimizer
    diffusion: GaussianDiffusion
    normalizer: Normalizer
    text_encoder: TextEncoder | None
    layout: FeatureLayout
    foot_joints: list[int]
    device: torch.device
    autocast: torch.dtype | None = None


def _denoise(state: TrainState, x: Tensor, t: Tensor, mask: Tensor, cond: Tensor | None,
             uncond: Tensor | None) -> Tensor:
    """The model's x0 prediction ``(B, T, D)`` in float32 (the forward pass under autocast when configured; the
    losses, decoding and projection always run in float32)."""
    with torch.autocast(state.device.type, dtype=state.autocast or torch.bfloat16, enabled=state.autocast is not None):
        pred = state.model(x, t, mask, cond=cond, uncond=uncond)
    return pred.float()


def _learning_rate(config: Config, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or a cosine decay to ``lr_final · lr`` at ``steps``."""
    cfg = config.train
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.lr_final + (1.0 - cfg.lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _condition(state: TrainState, texts: list[str]) -> tuple[Tensor | None, Tensor | None]:
    """Text embeddings ``(B, C)`` and ``uncond (B,)`` flags for items without a caption."""
    if state.text_encoder is None:
        return None, None
    uncond = torch.tensor([not t for t in texts], device=state.device)
    emb = state.text_encoder.encode([t or " " for t in texts]).to(state.device)
    return emb, uncond


def loss_3d(state: TrainState, batch: Batch, random: ItemRandom) -> tuple[Tensor, dict[str, Tensor]]:
    """x0-prediction loss on features (MDM eq. 2) plus the optional geometric terms (MDM eqs. 3–5): the weighted
    total (0-d, with gradient) and each unweighted term (0-d, detached, on the device: reading them is left to the
    caller, so no step waits for the device).

    Used by the ``3d`` and ``teacher`` supervision modes; they differ only in which motion fills ``batch``.
    """
    w = state.config.loss
    x0 = state.normalizer.normalize(batch.features)  # (B, T, D)
    t = random.timesteps(state.diffusion.num_steps, state.device)
    noise = random.noise(x0.shape[1], x0.shape[2], state.device)
    x_t = state.diffusion.q_sample(x0, t, noise)
    cond, uncond = _condition(state, batch.texts)
    pred = _denoise(state, x_t, t, batch.mask, cond, uncond)
    item_weight = state.diffusion.loss_weights(t, w.time_weighting, w.min_snr_gamma)  # (B,)
    terms = {"features": masked_mse(pred, x0, batch.mask, item_weight)}
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
    return total, {name: value.detach() for name, value in terms.items()}


def noised_teacher(state: TrainState, teacher: Tensor, t: Tensor, mask: Tensor, cond: Tensor | None,
                   uncond: Tensor | None, random: ItemRandom) -> Tensor:
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
    frames, dim = teacher.shape[1:]
    noise = random.noise(frames, dim, state.device)
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
            # Levels t* → t in ``chain`` deterministic DDIM steps (eta 0: the step keeps the noise the model's
            # prediction implies, as sampling does): level_k = round(t* + (t − t*)·k/chain).
            current = torch.round(t_star + (target - t_star) * (k - 1) / chain).long().clamp_min(target)
            nxt = torch.round(t_star + (target - t_star) * k / chain).long().clamp_min(target)
            x0_hat = _denoise(state, x_low, current, mask_low, cond_low, uncond_low)
            x_low = diffusion.q_sample(x0_hat, nxt, diffusion.predict_noise_from_x0(x_low, current, x0_hat))
    state.model.train(was_training)
    x = x.clone()
    x[low] = x_low
    return x


def loss_2d(state: TrainState, batch: Batch, random: ItemRandom) -> tuple[Tensor, dict[str, Tensor]]:
    """VideoMDM: the noised teacher in, 3D out, supervised by reprojection (DESIGN.md, supervision ``2d``). Returns
    the weighted total and the detached terms, as :func:`loss_3d`.

    Terms: depth-weighted reprojection of the decoded prediction against the keypoints, 2D velocity consistency,
    and (optionally) alignment of the prediction's rotation/velocity/contact slices with the re-encoded prediction
    moved onto the keypoint rays. ``batch.features`` hold the teacher; no ground truth is read.
    """
    cfg = state.config.two_d
    teacher = state.normalizer.normalize(batch.features)  # (B, T, D)
    t = random.timesteps(state.diffusion.num_steps, state.device)
    cond, uncond = _condition(state, batch.texts)
    with record_function("videomdm.noised_teacher"):
        x_t = noised_teacher(state, teacher, t, batch.mask, cond, uncond, random)
    pred = _denoise(state, x_t, t, batch.mask, cond, uncond)
    loss_cfg = state.config.loss
    item_weight = state.diffusion.loss_weights(t, loss_cfg.time_weighting, loss_cfg.min_snr_gamma)  # (B,)
    joints = decode(state.normalizer.denormalize(pred), state.layout.num_joints)  # (B, T, J, 3) canonical frame
    # The prediction decodes at the teacher window's anchor (root x, z = 0, facing +z); its placement is solved from
    # the keypoints instead (detached: at the optimum the loss has no gradient along a translation anyway).
    with torch.no_grad():
        placement = solve_placement(joints, batch.keypoints, batch.confidence * batch.mask[..., None], batch.R,
                                    batch.t, solve_yaw=cfg.solve_yaw)
        # Depth weights from the teacher, which is where it is: the placed prediction must not set its own.
        teacher_depth = world_to_camera(decode(batch.features, state.layout.num_joints), batch.R, batch.t)[..., 2]
    joints = placement.apply(joints)
    observed = (batch.keypoints, batch.confidence, batch.mask, batch.R, batch.t)
    weighting = {"weighting": cfg.depth_weighting, "min_depth": cfg.min_depth, "depth": teacher_depth,
                 "item_weight": item_weight}
    terms = {
        "reprojection": reprojection_loss(joints, *observed, **weighting),
        "velocity_2d": velocity_2d_loss(joints, *observed, **weighting),
    }
    if cfg.alignment:
        terms["alignment"] = alignment_loss(state, pred, joints, batch)
    weights = {"reprojection": cfg.reprojection, "velocity_2d": cfg.velocity, "alignment": cfg.alignment}
    total = sum(weights[name] * value for name, value in terms.items())
    return total, {name: value.detach() for name, value in terms.items()}


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


def _training_normalizer(dataset: MotionWindows, config: Config) -> Normalizer:
    """The run's feature normalizer (DESIGN.md, "Normalization"): statistics of the training motions smoothed by
    ``data.stats_smoothing`` (a lifter's jitter would inflate them), grouped per ``data.normalization``."""
    normalizer = dataset.normalizer(smoothing=config.data.stats_smoothing)
    if config.data.normalization == "group":
        normalizer = normalizer.grouped(dataset.layout, root_emphasis=config.data.root_emphasis)
    return normalizer


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


def micro_batch(dataset: MotionWindows, indices: list[int], random: ItemRandom) -> Batch:
    """The windows of clips ``indices``, each cut with its own item generator (:class:`ItemRandom`)."""
    return collate([dataset.sample(index, rng) for index, rng in zip(indices, random.numpy)])


def _average_over_processes(values: Tensor, processes: Processes) -> Tensor:
    """The mean of a tensor over all processes (itself in a single-process run)."""
    if processes.world_size > 1:
        values = values.clone()
        torch_dist.all_reduce(values)
        values /= processes.world_size
    return values


def _on_all_processes(error: BaseException | None, processes: Processes) -> None:
    """Raise ``error`` (set on rank 0 only) on every process, so a refused run stops all of them, not only rank 0."""
    if processes.world_size > 1:
        message = [None if error is None else f"{type(error).__name__}: {error}"]
        torch_dist.broadcast_object_list(message, src=0)
        if error is None and message[0] is not None:
            raise CheckpointError(f"rank 0 refused the run: {message[0]}")
    if error is not None:
        raise error


def train(data_dir: Path, run_dir: Path, config: Config, *, resume: bool = False, progress: bool = True,
          init_from: Path | None = None) -> Path:
    """Train a denoiser on ``data_dir``'s train split, writing checkpoints and metrics to ``run_dir``.

    ``init_from``: another run whose latest EMA weights initialize the model (and EMA) and whose normalizer the new
    run keeps, so the feature space the weights were trained in is unchanged (a ``2d`` run warm-started from a
    ``teacher`` run). Its model settings must equal ``config``'s; the optimizer starts afresh at step 0. Ignored when
    a run resumes from its own checkpoint.

    Under ``torchrun`` (``WORLD_SIZE`` set) every process calls this; they join one process group for the call.
    Returns the path of the last checkpoint.
    """
    processes = processes_from_env()
    device = _process_device(config.train.device, processes)
    joined = _join_process_group(processes, device)
    try:
        return _train(Path(data_dir), Path(run_dir), config, processes, device, resume=resume, progress=progress,
                      init_from=None if init_from is None else Path(init_from))
    finally:
        if joined:
            torch_dist.destroy_process_group()


def _initial_weights(source: Path, config: Config) -> tuple[dict[str, Tensor], Normalizer]:
    """The latest EMA weights and the normalizer of run ``source``, refused unless its model settings are
    ``config``'s."""
    last = latest_checkpoint(source)
    if last is None:
        raise CheckpointError(f"--init-from {source}: no checkpoint found under checkpoints/")
    ckpt = load_checkpoint(last)
    check_compatible(config, ckpt.config, f"--init-from checkpoint {last}")
    return ckpt.ema, Normalizer.from_state_dict(load_tensors(source / "normalizer.safetensors"))


def _train(data_dir: Path, run_dir: Path, config: Config, processes: Processes, device: torch.device, *,
           resume: bool, progress: bool, init_from: Path | None) -> Path:
    supervision = config.train.supervision
    dataset = MotionWindows(data_dir, "train", motion_field=MOTION_SOURCES[supervision],
                            num_frames=config.data.num_frames, min_frames=config.data.min_frames,
                            skeleton=config.data.skeleton, fps=config.data.fps,
                            contact_threshold=config.data.contact_threshold, facing_sigma=config.data.facing_sigma,
                            with_keypoints=supervision == "2d", cache_mb=config.data.cache_mb)
    compute_loss = loss_2d if supervision == "2d" else loss_3d
    batch_size, accum = config.train.batch_size, config.train.grad_accum
    effective_batch = batch_size * accum * processes.world_size
    normalizer_file = run_dir / "normalizer.safetensors"
    error = None
    resuming = resume and latest_checkpoint(run_dir) is not None
    initial = _initial_weights(init_from, config) if init_from is not None and not resuming else None
    if processes.is_main:  # rank 0 alone writes the run folder; the others wait for its verdict
        try:
            _prepare_run_dir(run_dir, config, resume)
            if not (resume and normalizer_file.exists()):
                normalizer = initial[1] if initial is not None else _training_normalizer(dataset, config)
                save_tensors(normalizer_file, normalizer.state_dict())
        except (CheckpointError, OSError) as err:
            error = err
    _on_all_processes(error, processes)
    normalizer = Normalizer.from_state_dict(load_tensors(normalizer_file)).to(device)
    text_encoder = build_text_encoder(config.data.text_encoder, device=str(device))
    cond_dim = text_encoder.dim if text_encoder is not None else 0

    torch.manual_seed(config.train.seed)
    module = build_model(config, dataset.layout.dim, cond_dim).to(device)
    if initial is not None:
        module.load_state_dict(initial[0])
    ema = copy.deepcopy(module).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    start = 0
    last = latest_checkpoint(run_dir) if resume else None
    if last is not None:
        ckpt = load_checkpoint(last)
        check_compatible(config, ckpt.config, f"checkpoint {last}")
        module.load_state_dict(ckpt.model)
        ema.load_state_dict(ckpt.ema)
        optimizer.load_state_dict(ckpt.state["optimizer"])
        start = ckpt.step
        saved_batch = ckpt.state.get("effective_batch_size", effective_batch)
        if processes.is_main and saved_batch != effective_batch:
            warnings.warn(f"{last} was trained with an effective batch of {saved_batch} clips, this run uses "
                          f"{effective_batch}", stacklevel=2)
    model: nn.Module = module
    if processes.world_size > 1:  # buffers are constants derived from the config: nothing to broadcast
        model = DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                        broadcast_buffers=False)
    skeleton = get_skeleton(config.data.skeleton)
    left, right = skeleton.foot_indices
    state = TrainState(config=config, model=model, ema=ema, optimizer=optimizer,
                       diffusion=build_diffusion(config).to(device), normalizer=normalizer, text_encoder=text_encoder,
                       layout=dataset.layout, foot_joints=left + right, device=device,
                       autocast=autocast_dtype(config.train.precision, device))

    metrics_file = run_dir / "metrics.jsonl"
    total = config.train.steps
    if processes.is_main:
        _truncate_metrics(metrics_file, start)
        if not resume:
            atomic_write_text(run_dir / "run.json", json.dumps({
                "data": str(data_dir.resolve()), "videomdm": __version__, "torch": torch.__version__,
                "python": platform.python_version(), "device": str(device), "processes": processes.world_size,
                "effective_batch_size": effective_batch, "precision": str(state.autocast or torch.float32),
                "train_clips": len(dataset), "skipped_short_clips": dataset.skipped,
                "init_from": None if init_from is None else str(init_from.resolve()),
            }, indent=2) + "\n")
        if progress:
            tqdm.write(f"effective batch {effective_batch} clips = {batch_size} per process × {accum} accumulated "
                       f"× {processes.world_size} process(es); device {device}, "
                       f"{'bf16 autocast' if state.autocast else 'fp32'}")

    checkpoint_path = last
    bar = tqdm(total=total, initial=start, disable=not (progress and processes.is_main), desc=f"train[{supervision}]",
               dynamic_ncols=True)
    t_last, steps_since = time.perf_counter(), 0
    pending: list[Tensor] = []  # per step since the last read: (1 + terms,) float64 loss and term means, on device
    model.train()
    with metrics_file.open("a") if processes.is_main else contextlib.nullcontext() as log:
        for step in range(start, total):
            # The global batch depends on (seed, step) and its size only; this process takes its slots of it.
            rng = np.random.default_rng(_step_seed(config.train.seed, step))
            indices = rng.integers(0, len(dataset), effective_batch).tolist()
            lr = _learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            sums = None  # (1 + terms,) loss and loss terms summed over this process's micro-batches
            for micro in range(accum):
                positions = micro_batch_positions(batch_size, processes, micro)
                random = ItemRandom(config.train.seed, step, positions, config.data.num_frames)
                with record_function("videomdm.batch"):
                    batch = micro_batch(dataset, [indices[p] for p in positions], random).to(device)
                torch.manual_seed(_seed_of(config.train.seed, step, positions[0], 2))  # dropout, condition dropout
                # Gradients are averaged over processes only after the last micro-batch.
                sync = micro == accum - 1 or processes.world_size == 1
                with contextlib.nullcontext() if sync else model.no_sync():
                    with record_function("videomdm.loss"):  # forward passes and loss terms
                        loss, terms = compute_loss(state, batch, random)
                    with record_function("videomdm.backward"):
                        (loss / accum).backward()
                values = torch.stack([loss.detach(), *terms.values()]).double()
                sums = values if sums is None else sums + values
            pending.append(_average_over_processes(sums / accum, processes))
            with record_function("videomdm.optimizer"):
                grad_norm = nn.utils.clip_grad_norm_(module.parameters(), config.train.grad_clip)
                optimizer.step()
                update_ema(ema, module, _ema_decay(config, step))
            steps_since += 1
            bar.update(1)
            done = step + 1
            saving = done % config.train.save_every == 0 or done == total
            if not (saving or done % config.train.log_every == 0):
                continue
            # The losses reach the host only here, once per logging interval (and before a checkpoint is saved): a
            # non-finite loss stops the run at the next such point, naming its step, and is never saved.
            means = torch.stack(pending).cpu().tolist()  # (steps since the last read, 1 + terms)
            for offset, row in enumerate(means):
                if not math.isfinite(row[0]):
                    bad = done - len(means) + offset
                    raise FloatingPointError(f"non-finite loss at step {bad}: {dict(zip(terms, row[1:]))}")
            pending.clear()
            step_loss, term_means = means[-1][0], dict(zip(terms, means[-1][1:]))
            if processes.is_main and (done % config.train.log_every == 0 or done == total):
                now = time.perf_counter()
                steps_per_s = steps_since / (now - t_last)
                record = {"step": done, "loss": step_loss, **{f"loss_{k}": v for k, v in term_means.items()},
                          "grad_norm": float(grad_norm), "lr": lr, "steps_per_s": steps_per_s,
                          "clips_per_s": steps_per_s * effective_batch}
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{step_loss:.4f}", it_s=f"{steps_per_s:.1f}")
                t_last, steps_since = now, 0
            if processes.is_main and saving:
                checkpoint_path = save_checkpoint(
                    run_dir, done, config, module.state_dict(), ema.state_dict(),
                    {"optimizer": optimizer.state_dict(), "processes": processes.world_size,
                     "effective_batch_size": effective_batch}, keep=config.train.keep_checkpoints)
    bar.close()
    if processes.world_size > 1:
        torch_dist.barrier()  # rank 0's last checkpoint is complete before any process returns
        checkpoint_path = latest_checkpoint(run_dir)
    if checkpoint_path is None:
        raise CheckpointError(f"{run_dir}: training ended without a checkpoint (steps={total}, start={start})")
    return checkpoint_path
