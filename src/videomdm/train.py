"""The training loop: one loop for every supervision mode (DESIGN.md, "Supervision modes"), on one process or on
many (PyTorch DDP under ``torchrun``). What a step minimizes is the mode's objective (:mod:`videomdm.objectives`,
built once per run); the loop calls it on each micro-batch and knows nothing of the modes.

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
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

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
from .factory import autocast_dtype, build_denoiser, build_diffusion, build_model, resolve_device
from .model import use_fused_cpu_attention
from .objectives import build_objective
from .representation import Normalizer
from .text import build_text_encoder

__all__ = ["train", "RunExistsError", "Processes", "processes_from_env", "micro_batch_positions", "ItemRandom",
           "MicroBatch", "step_batches", "prefetch"]

T = TypeVar("T")


class RunExistsError(CheckpointError):
    """The output folder already holds a run and ``resume`` was not asked for."""


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
    padding either. Objectives draw through :meth:`timesteps` and :meth:`noise`
    (:class:`videomdm.objectives.ItemNoise`).
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


def _learning_rate(config: Config, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or a cosine decay to ``lr_final · lr`` at ``steps``."""
    cfg = config.train
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.lr_final + (1.0 - cfg.lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _training_normalizer(dataset: MotionWindows, config: Config) -> Normalizer:
    """The run's feature normalizer (DESIGN.md, "Normalization"): statistics of the training motions smoothed by
    ``data.stats_smoothing`` (a lifter's per-frame jitter would inflate them), grouped per
    ``data.normalization``."""
    normalizer = dataset.normalizer(smoothing=config.data.stats_smoothing)
    if config.data.normalization == "group":
        normalizer = normalizer.grouped(dataset.layout, root_emphasis=config.data.root_emphasis)
    return normalizer


def _initial_weights(source: Path, config: Config) -> tuple[dict[str, Tensor], Normalizer]:
    """The latest EMA weights and the normalizer of run ``source``, refused unless its model settings are
    ``config``'s."""
    last = latest_checkpoint(source)
    if last is None:
        raise CheckpointError(f"--init-from {source}: no checkpoint found under checkpoints/")
    ckpt = load_checkpoint(last)
    check_compatible(config, ckpt.config, f"--init-from checkpoint {last}")
    return ckpt.ema, Normalizer.from_state_dict(load_tensors(source / "normalizer.safetensors"))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, *, foreach: bool = False) -> None:
    """``θ_ema ← decay·θ_ema + (1 − decay)·θ``; ``foreach``: all parameters in one call (``torch._foreach_lerp_``,
    the same arithmetic without a Python loop)."""
    if foreach:
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
        return
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


@dataclass
class MicroBatch:
    """One micro-batch of a step: its ``positions`` in the step's global batch, the items' random streams and the
    batch (on the host)."""

    positions: range
    random: ItemRandom
    batch: Batch


def step_batches(dataset: MotionWindows, config: Config, processes: Processes, step: int) -> list[MicroBatch]:
    """This process's micro-batches of step ``step``: a function of ``(train.seed, step)`` and the dataset only, so
    they may be built ahead of the step (:func:`prefetch`)."""
    batch_size, accum = config.train.batch_size, config.train.grad_accum
    # The global batch depends on (seed, step) and its size only; this process takes its slots of it.
    rng = np.random.default_rng(_step_seed(config.train.seed, step))
    indices = rng.integers(0, len(dataset), batch_size * accum * processes.world_size).tolist()
    out = []
    for micro in range(accum):
        positions = micro_batch_positions(batch_size, processes, micro)
        random = ItemRandom(config.train.seed, step, positions, config.data.num_frames)
        out.append(MicroBatch(positions, random, micro_batch(dataset, [indices[p] for p in positions], random)))
    return out


def prefetch(make: Callable[[int], T], keys: Iterable[int], ahead: int = 1) -> Iterator[T]:
    """``make(key)`` for every key in order, computed on one background thread up to ``ahead`` keys before it is
    asked for (torch and numpy release the interpreter lock in their kernels, so it overlaps the consumer's work).
    One worker runs the calls one after another, in key order: results are those of calling ``make`` in the loop.
    An exception in ``make`` is raised here, when its result is asked for."""
    keys = iter(keys)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="videomdm-prefetch") as pool:
        pending = deque(pool.submit(make, key) for key in islice(keys, ahead + 1))
        try:
            while pending:
                result = pending.popleft().result()
                pending.extend(pool.submit(make, key) for key in islice(keys, 1))
                yield result
        finally:
            for future in pending:  # a consumer that stops early does not wait for batches it will not use
                future.cancel()


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


class CompiledOrEager(nn.Module):
    """``module`` run through ``torch.compile`` (``train.compile``); if compiling or running the compiled graph
    fails, one warning and ``module`` itself from then on (a real error in the module is raised again by it).

    The compiled module is kept out of this module's children (and so out of ``parameters()`` and
    ``state_dict()``): ``module`` is the one registered. Train / eval mode reaches both, since they share it.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self._compiled: list = [torch.compile(module)]  # a list: not registered as a child

    def forward(self, *args, **kwargs):
        if self._compiled:
            try:
                return self._compiled[0](*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - any compiler failure; the eager call below re-raises real ones
                warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error)[:300]}); training "
                              "continues without it", stacklevel=2)
                self._compiled.clear()
        return self.module(*args, **kwargs)


def train(data_dir: Path, run_dir: Path, config: Config, *, resume: bool = False, progress: bool = True,
          init_from: Path | None = None) -> Path:
    """Train a denoiser on ``data_dir``'s train split, writing checkpoints and metrics to ``run_dir``.

    ``init_from``: another run whose latest EMA weights initialize the model (and EMA) and whose normalizer the new
    run keeps, so the feature space the weights were trained in is unchanged (a run warm-started from one trained
    with another supervision mode). Its model settings must equal ``config``'s; the optimizer starts afresh at step 0. Ignored when
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


def _train(data_dir: Path, run_dir: Path, config: Config, processes: Processes, device: torch.device, *,
           resume: bool, progress: bool, init_from: Path | None) -> Path:
    supervision = config.train.supervision
    text_encoder = build_text_encoder(config.data.text_encoder, device=str(device))
    autocast = autocast_dtype(config.train.precision, device)
    objective = build_objective(config, text_encoder, device, autocast)
    dataset = MotionWindows(data_dir, "train", motion_field=MOTION_SOURCES[supervision],
                            num_frames=config.data.num_frames, min_frames=config.data.min_frames,
                            skeleton=config.data.skeleton, fps=config.data.fps,
                            contact_threshold=config.data.contact_threshold, facing_sigma=config.data.facing_sigma,
                            with_keypoints=objective.with_keypoints, cache_mb=config.data.cache_mb,
                            mirror=config.data.mirror)
    batch_size, accum = config.train.batch_size, config.train.grad_accum
    effective_batch = batch_size * accum * processes.world_size
    normalizer_file = run_dir / "normalizer.safetensors"
    error = None
    last = latest_checkpoint(run_dir) if resume else None
    initial = _initial_weights(init_from, config) if init_from is not None and last is None else None
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
    cond_dim = text_encoder.dim if text_encoder is not None else 0

    torch.manual_seed(config.train.seed)
    network = build_model(config, dataset.layout.dim, cond_dim).to(device)  # what checkpoints hold
    if initial is not None:
        network.load_state_dict(initial[0])
    ema = copy.deepcopy(network).eval().requires_grad_(False)
    fast = config.train.fast
    # The fast step updates all parameters in fused kernels (AdamW) or one call (gradient norm, EMA) and trains
    # attention on the CPU written out; the reference step (train.fast=false) one tensor at a time and through torch's
    # fused CPU attention kernel, as before. The arithmetic is the same up to float rounding.
    if not fast:
        use_fused_cpu_attention(network)
    fused = fast and device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay,
                                  fused=fused or None)
    start = 0
    if last is not None:
        ckpt = load_checkpoint(last)
        check_compatible(config, ckpt.config, f"checkpoint {last}")
        network.load_state_dict(ckpt.model)
        ema.load_state_dict(ckpt.ema)
        optimizer.load_state_dict(ckpt.state["optimizer"])
        for group in optimizer.param_groups:  # the saved groups carry the implementation of the run that saved them
            group["fused"], group["foreach"] = fused or None, None
        start = ckpt.step
        saved_batch = ckpt.state.get("effective_batch_size", effective_batch)
        if processes.is_main and saved_batch != effective_batch:
            warnings.warn(f"{last} was trained with an effective batch of {saved_batch} clips, this run uses "
                          f"{effective_batch}", stacklevel=2)
    model: nn.Module = build_denoiser(config, network).to(device)  # the x0 denoiser the objective calls
    if config.train.compile:
        if processes.world_size > 1:
            warnings.warn("train.compile is for one process; the processes of this run train eager", stacklevel=2)
        else:
            model = CompiledOrEager(model)
    if processes.world_size > 1:  # buffers are constants derived from the config: nothing to broadcast
        model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                        broadcast_buffers=False)
    diffusion = build_diffusion(config).to(device)

    metrics_file = run_dir / "metrics.jsonl"
    total = config.train.steps
    if processes.is_main:
        _truncate_metrics(metrics_file, start)
        if not resume:
            atomic_write_text(run_dir / "run.json", json.dumps({
                "data": str(data_dir.resolve()), "videomdm": __version__, "torch": torch.__version__,
                "python": platform.python_version(), "device": str(device), "processes": processes.world_size,
                "effective_batch_size": effective_batch, "precision": str(autocast or torch.float32),
                "train_clips": len(dataset), "skipped_short_clips": dataset.skipped,
                "init_from": None if init_from is None else str(init_from.resolve()),
            }, indent=2) + "\n")
        if progress:
            tqdm.write(f"effective batch {effective_batch} clips = {batch_size} per process × {accum} accumulated "
                       f"× {processes.world_size} process(es); device {device}, "
                       f"{'bf16 autocast' if autocast else 'fp32'}")

    checkpoint_path = last
    bar = tqdm(total=total, initial=start, disable=not (progress and processes.is_main), desc=f"train[{supervision}]",
               dynamic_ncols=True)
    t_last, steps_since = time.perf_counter(), 0
    pending: list[Tensor] = []  # per step since the last read: (1 + terms,) float64 loss and term means, on device
    model.train()

    def make_batches(step: int) -> list[MicroBatch]:
        return step_batches(dataset, config, processes, step)

    # The fast step on a GPU builds the next step's batches on a background thread while the device computes. On the
    # CPU the compute threads already use the cores, and the batch thread's Python holds the interpreter lock the
    # loop needs: there, it made a step slower (README, "Training throughput"), so batches are built in the loop.
    prefetched = prefetch(make_batches, range(start, total)) if fast and device.type != "cpu" else None
    with metrics_file.open("a") if processes.is_main else contextlib.nullcontext() as log, \
            contextlib.closing(prefetched) if prefetched is not None else contextlib.nullcontext():
        for step in range(start, total):
            with record_function("videomdm.batch"):  # with prefetching, only the wait for the batches
                batches = next(prefetched) if prefetched is not None else make_batches(step)
            lr = _learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            sums = None  # (1 + terms,) loss and loss terms summed over this process's micro-batches
            for micro, part in enumerate(batches):
                batch, random = part.batch.to(device), part.random
                torch.manual_seed(_seed_of(config.train.seed, step, part.positions[0], 2))  # dropout, cond. dropout
                # Gradients are averaged over processes only after the last micro-batch.
                sync = micro == accum - 1 or processes.world_size == 1
                with contextlib.nullcontext() if sync else model.no_sync():
                    with record_function("videomdm.loss"):  # forward passes and loss terms
                        loss, terms = objective(model, diffusion, normalizer, batch, random)
                    with record_function("videomdm.backward"):
                        (loss / accum).backward()
                values = torch.stack([loss.detach(), *terms.values()]).double()
                sums = values if sums is None else sums + values
            pending.append(_average_over_processes(sums / accum, processes))
            with record_function("videomdm.optimizer"):
                grad_norm = nn.utils.clip_grad_norm_(network.parameters(), config.train.grad_clip,
                                                     foreach=True if fast else None)
                optimizer.step()
                update_ema(ema, network, _ema_decay(config, step), foreach=fast)
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
                    run_dir, done, config, network.state_dict(), ema.state_dict(),
                    {"optimizer": optimizer.state_dict(), "processes": processes.world_size,
                     "effective_batch_size": effective_batch}, keep=config.train.keep_checkpoints)
    bar.close()
    if processes.world_size > 1:
        torch_dist.barrier()  # rank 0's last checkpoint is complete before any process returns
        checkpoint_path = latest_checkpoint(run_dir)
    if checkpoint_path is None:
        raise CheckpointError(f"{run_dir}: training ended without a checkpoint (steps={total}, start={start})")
    return checkpoint_path
