"""Evaluating a trained run on a dataset, and the recovery experiment (3d vs teacher vs 2d supervision).

:func:`evaluate_run` measures the two things the prior is for:

- **lifting**: every clip of a split (with 2D keypoints, camera and a teacher) is lifted by :func:`videomdm.sample.lift`
  (teacher initialization at t*, 2D ray guidance) and compared with its ``gt_3d``; the teacher itself is scored the
  same way, so each ``lift_*`` number has its ``teacher_*`` counterpart. Errors are frame-weighted means over clips.
- **generation**: ``num_samples`` unconditional motions are scored alone (:func:`~videomdm.metrics.motion_quality`)
  and against the split's ground-truth windows in the evaluator network's space (FID, KID, diversity,
  precision/recall).

:func:`run_recovery` trains the three supervision modes with one config and seed on the same 2D benchmark data and
reports the share of the teacher→3D gap that ``2d`` supervision closes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .checkpoint import atomic_write_text
from .data.clip import Clip, load_clip, read_dataset_index
from .data.dataset import clip_observations, observed_keypoints
from .metrics import diversity, fid, kid, motion_quality, pose_errors, precision_recall, reprojection_error
from .representation import floor_from_feet
from .skeleton import get_skeleton
from .sample import LoadedRun, denoising_errors, generate, lift, load_run, window_starts

if TYPE_CHECKING:
    from .evaluator import EvaluatorConfig

__all__ = ["LiftSettings", "lift_split", "evaluate_run", "write_report", "run_recovery", "gap_closed"]

LIFT_KEYS = ("mpjpe_mm", "root_mpjpe_mm", "pa_mpjpe_mm", "pck100", "accel_error_ms2")


@dataclass(frozen=True)
class LiftSettings:
    """How :func:`lift_split` lifts: see :func:`videomdm.sample.lift`. ``guidance = 0``: no ray guidance (the windows
    are still placed from the keypoints); ``t_start`` None: the run's ``two_d.teacher_min_t``; ``samples``: lifts
    averaged into the posterior mean; ``final_fit_hz`` None: the run's band."""

    init: str = "teacher"
    t_start: int | None = None
    guidance: float = 1.0
    guidance_min_t: int = 1
    seed: int = 0
    samples: int = 8
    final_fit_hz: float | None = None

    def lift_kwargs(self) -> dict:
        """The keyword arguments of :func:`videomdm.sample.lift` these settings stand for."""
        return dataclasses.asdict(self)


def _frame_weighted(rows: list[tuple[int, dict[str, float]]], keys: tuple[str, ...]) -> dict[str, float]:
    frames = sum(n for n, _ in rows)
    return {key: sum(n * row[key] for n, row in rows) / frames for key in keys}


def lift_split(run: LoadedRun, data_dir: Path, split: str, settings: LiftSettings = LiftSettings(), *,
               out_dir: Path | None = None, log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Lift every clip of ``split`` and score the lift and the teacher against ``gt_3d`` (when present).

    Writes ``out_dir/<clip>.npy`` (T, J, 3) metres when ``out_dir`` is given. Returns ``lift_<metric>`` and
    ``teacher_<metric>`` for :data:`LIFT_KEYS` plus ``lift_accel_ms2`` / ``teacher_accel_ms2`` (mean acceleration
    magnitude) and ``lift_clips``. Clips with keypoints add ``lift_reprojection_px`` and ``teacher_reprojection_px``
    (and ``gt_reprojection_px``, the detector-noise floor, where ``gt_3d`` exists), which need no ground truth.
    """
    index = read_dataset_index(data_dir)
    lifted_rows, teacher_rows, reprojection_rows = [], [], []
    paths = index.clip_paths(split)
    started = time.perf_counter()
    for i, path in enumerate(paths):
        clip: Clip = load_clip(path)
        if clip.teacher_3d is None:
            raise ValueError(f"{path}: clip {clip.name} has no teacher_3d to lift from")
        observations = clip_observations(clip, run.skeleton, path) if clip.keypoints_2d is not None else None
        joints = lift(run, clip.teacher_3d, observations, **settings.lift_kwargs())
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            np.save(Path(out_dir) / f"{clip.name}.npy", joints)
        if observations is not None and observations.confidence.any():
            pixels, confidence = observed_keypoints(clip, run.skeleton)  # (V, T, J, 2): mapped once for the motions
            motions = {"lift": joints, "teacher": clip.teacher_3d, "gt": clip.gt_3d}
            reprojection_rows.append((len(joints), {  # the mean over views
                f"{name}_reprojection_px": float(np.mean([
                    reprojection_error(motion, pixels[v], confidence[v], clip.K[v], clip.R[v], clip.t[v])
                    for v in range(len(pixels))]))
                for name, motion in motions.items() if motion is not None}))
        if clip.gt_3d is None:
            continue
        for rows, motion in ((lifted_rows, joints), (teacher_rows, clip.teacher_3d)):
            row = pose_errors(motion, clip.gt_3d, fps=clip.fps, skeleton=run.skeleton)
            row["accel_ms2"] = motion_quality(motion, fps=clip.fps, skeleton=run.skeleton)["accel_ms2"]
            rows.append((len(clip.gt_3d), row))
        if log is not None and (i + 1) % 10 == 0:
            log(f"lifted {i + 1}/{len(paths)} clips ({time.perf_counter() - started:.0f} s)")
    result: dict[str, float] = {"lift_clips": float(len(paths))}
    if reprojection_rows:
        keys = tuple(k for k in reprojection_rows[0][1] if all(k in row for _, row in reprojection_rows))
        result.update(_frame_weighted(reprojection_rows, keys))
    if lifted_rows:
        keys = LIFT_KEYS + ("accel_ms2",)
        result.update({f"lift_{k}": v for k, v in _frame_weighted(lifted_rows, keys).items()})
        result.update({f"teacher_{k}": v for k, v in _frame_weighted(teacher_rows, keys).items()})
    return result


DENOISING_WINDOWS = 64  # windows of the split used by :func:`videomdm.sample.denoising_errors` in evaluations


def _real_windows(data_dir: Path, split: str, field: str, length: int) -> list[np.ndarray]:
    """Windows of ``length`` frames covering every clip of a split (:func:`videomdm.sample.window_starts`), each
    clip moved so that its floor (lowest foot joint over the clip, as encoding puts it) is at y = 0: encoded with
    ``floor=0`` they are the features training cuts from whole clips."""
    windows = []
    index = read_dataset_index(data_dir)
    skeleton = get_skeleton(index.skeleton)
    for path in index.clip_paths(split):
        motion = getattr(load_clip(path, skip=() if field == "gt_3d" else ("gt_3d",)), field)
        if motion is None or len(motion) < length:
            continue
        floor = floor_from_feet(motion, skeleton, percentile=0.0)  # the lowest foot joint, as encoding floors it
        motion = motion - np.array([0.0, floor, 0.0], dtype=motion.dtype)
        windows += [motion[s:s + length] for s in window_starts(len(motion), length)]
    return windows


def evaluate_run(run_dir: Path, data_dir: Path, out_dir: Path, *, split: str = "test", evaluator_dir: Path | None = None,
                 num_samples: int = 64, lift_settings: LiftSettings = LiftSettings(), device: str = "auto",
                 seed: int = 0, log: Callable[[str], None] = print) -> dict[str, float]:
    """Write ``out_dir/metrics.json`` (flat keys, units in the names) and ``out_dir/report.md``; return the metrics.

    Lifting metrics need clips with 2D keypoints, a camera and a teacher; generation metrics against the data need
    ``evaluator_dir`` (an evaluator trained on this dataset, refused otherwise) and ``gt_3d`` in ``split``. The
    per-level denoising errors (:func:`videomdm.sample.denoising_errors`) use up to :data:`DENOISING_WINDOWS` windows
    of ``gt_3d``, or of ``teacher_3d`` where the split has no ground truth.
    """
    from .evaluator import load_evaluator

    out_dir = Path(out_dir)
    run = load_run(run_dir, device=device)
    evaluator = None if evaluator_dir is None else load_evaluator(evaluator_dir, dataset_dir=data_dir, device=device)
    metrics: dict[str, float] = {"step": float(run.step)}
    log(f"lifting the {split} split")
    metrics.update(lift_split(run, data_dir, split, lift_settings, out_dir=out_dir / "lifted", log=log))

    length = run.config.data.num_frames
    for field in ("gt_3d", "teacher_3d"):  # the clean motion where known, else what the prior was taught from
        windows = _real_windows(data_dir, split, field, length)[:DENOISING_WINDOWS]
        if windows:
            log(f"denoising {len(windows)} {field} windows at each level")
            metrics.update(denoising_errors(run, np.stack(windows), floor=0.0, seed=seed))
            break
    log(f"sampling {num_samples} motions")
    samples = generate(run, num_samples, seed=seed)  # (N, T, J, 3)
    fps = run.config.data.fps
    quality = [motion_quality(m, fps=fps, skeleton=run.skeleton) for m in samples]
    for key in quality[0]:
        metrics[f"gen_{key}"] = float(np.mean([q[key] for q in quality]))
    if evaluator is not None:
        real = _real_windows(data_dir, split, "gt_3d", samples.shape[1])
        if len(real) < 2:
            raise ValueError(f"{data_dir}: split {split!r} has fewer than 2 windows of {samples.shape[1]} frames "
                             f"of gt_3d to compare samples with")
        real_emb = evaluator.embed_joints(real, fps)
        gen_emb = evaluator.embed_joints(samples, fps)
        metrics["fid"] = fid(gen_emb, real_emb)
        kid_value = kid(gen_emb, real_emb, subset_size=min(len(gen_emb), len(real_emb), 1000), seed=seed)
        metrics["kid"], metrics["kid_std_error"] = kid_value["kid"], kid_value["kid_std_error"]
        times = min(300, len(gen_emb) - 1, len(real_emb) - 1)
        metrics["diversity"] = diversity(gen_emb, diversity_times=times, seed=seed)
        metrics["real_diversity"] = diversity(real_emb, diversity_times=times, seed=seed)
        metrics.update(precision_recall(real_emb, gen_emb))
        metrics["real_windows"] = float(len(real))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_report(out_dir / "report.md", {str(run_dir): metrics}, title=f"Evaluation on {data_dir} ({split})")
    return metrics


def write_report(path: Path, results: dict[str, dict[str, float]], *, title: str, notes: str = "") -> None:
    """A markdown table: one row per metric, one column per run."""
    names = list(results)
    keys = [k for k in results[names[0]] if all(k in r for r in results.values())]
    lines = [f"# {title}", "", "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{results[n][key]:.4g}" for n in names) + " |")
    if notes:
        lines += ["", notes]
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def gap_closed(teacher: float, two_d: float, three_d: float) -> float:
    """Share of the teacher→3d gap closed by 2d supervision, for a metric where lower is better:
    ``(teacher − 2d) / (teacher − 3d)`` (1 = all of it). NaN when there is no gap to close (the ``3d`` run no better
    than the ``teacher`` run): the ratio would then only flip sign or blow up with the runs' noise."""
    gap = teacher - three_d
    return float("nan") if gap <= 1e-12 else (teacher - two_d) / gap


RECOVERY_MODES = ("3d", "teacher", "2d")
GAP_METRICS = ("fid", "lift_mpjpe_mm", "lift_accel_error_ms2")


def _plot(path: Path, results: dict[str, dict[str, float]]) -> None:
    """Bars of FID, lifting MPJPE and lifting acceleration error per supervision mode (the teacher's own lifting
    error as a dashed line)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), dpi=100)
    modes = list(results)
    for ax, (key, label) in zip(axes, (("fid", "FID ↓"), ("lift_mpjpe_mm", "lifting MPJPE (mm) ↓"),
                                       ("lift_accel_error_ms2", "lifting accel. error (m/s²) ↓"))):
        values = [results[m].get(key, np.nan) for m in modes]
        ax.bar(modes, values, color=["#4c72b0", "#dd8452", "#55a868"][:len(modes)])
        teacher_key = key.replace("lift_", "teacher_")
        if teacher_key != key and teacher_key in results[modes[0]]:
            ax.axhline(results[modes[0]][teacher_key], color="k", linestyle="--", linewidth=1, label="lifter itself")
            ax.legend(fontsize=8)
        ax.set_title(label, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def run_recovery(out: Path, *, cache: Path, mocap: Path | None = None, config: str = "small", steps: int | None = None,
                 overrides: Sequence[str] = (), seed: int = 0, cameras: int = 2, lifter_steps: int | None = None,
                 lifter: Path | None = None, views: Sequence[int] = (),
                 evaluator_config: EvaluatorConfig | None = None, num_samples: int = 64, device: str = "auto",
                 progress: bool = False, log: Callable[[str], None] = print) -> dict:
    """The recovery experiment (module docstring). Every stage is reused when its output exists; a run that stopped
    early is resumed. Writes ``out/results.json``, ``out/results.md`` and ``out/results.png``; returns the results.

    Args:
        config, overrides, steps: the model/training config of all three runs (``steps`` = the budget).
        lifter_steps, evaluator_config: budgets of the lifter and the evaluator network (defaults: theirs).
        lifter: a lifter trained on another dataset (cross-domain teacher) instead of one trained on the first
            ``lifter_fraction`` of the same takes (in-domain, see :func:`~videomdm.pipeline.prepare_benchmark`).
        views: the multi-view arm: for each v, a ``2d`` run (``2d_views<v>``) trained on the same clips filmed by a
            virtual rig of ``max(views)`` cameras, keeping the first v views of each clip
            (:func:`~videomdm.pipeline.prepare_rig_views`). It is evaluated as the other runs are (generation, and
            lifting the monocular test clips), and its ``rig_*`` metrics lift the rig's test clips guided by v views.
    """
    from .checkpoint import latest_checkpoint, list_checkpoints
    from .config import load_config
    from .evaluator import META_NAME, train_evaluator
    from .pipeline import prepare_benchmark, prepare_rig_views
    from .train import train

    out = Path(out)
    started = time.perf_counter()
    data = prepare_benchmark(out / "data", cache=cache, mocap=mocap, lifter_steps=lifter_steps, lifter=lifter,
                             cameras=cameras,
                             seed=seed, progress=progress, log=log)
    evaluator_dir = out / "evaluator"
    if not (evaluator_dir / META_NAME).exists():
        log(f"evaluator: training on the gt_3d of the train split → {evaluator_dir}")
        train_evaluator(data.data_2d, evaluator_dir, config=evaluator_config, device=device, progress=progress)
    arms = {mode: (mode, data.data_2d) for mode in RECOVERY_MODES}  # run name → (supervision, dataset)
    if views:
        rigs = prepare_rig_views(out / "data", data, views, seed=seed, progress=progress, log=log)
        arms.update({f"2d_views{count}": ("2d", folder) for count, folder in rigs.items()})
    results: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}
    for mode, (supervision, data_dir) in arms.items():
        run_dir = out / "runs" / mode
        settings = [*overrides, f"train.supervision={supervision}", f"train.seed={seed}", f"train.device={device}"]
        run_config = load_config(config, settings + ([f"train.steps={steps}"] if steps else []))
        done = latest_checkpoint(run_dir)
        t0 = time.perf_counter()
        if done is None or not any(c.name == f"step_{run_config.train.steps:07d}" for c in list_checkpoints(run_dir)):
            log(f"{mode}: training {run_config.train.steps} steps → {run_dir}")
            train(data_dir, run_dir, run_config, resume=done is not None, progress=progress)
        timings[f"train_{mode}_s"] = time.perf_counter() - t0
        log(f"{mode}: evaluating")
        results[mode] = evaluate_run(run_dir, data.data_2d, out / "eval" / mode, evaluator_dir=evaluator_dir,
                                     num_samples=num_samples, device=device, seed=seed, log=log)
        if data_dir != data.data_2d:  # a view arm: also lift the rig's test clips, guided by its views
            rig = lift_split(load_run(run_dir, device=device), data_dir, "test")
            results[mode].update({f"rig_{key}": value for key, value in rig.items()})
    summary = {f"gap_{key}": results["teacher"][key] - results["3d"][key] for key in GAP_METRICS}  # teacher − 3d
    summary.update({f"gap_closed_{key}": gap_closed(results["teacher"][key], results["2d"][key], results["3d"][key])
                    for key in GAP_METRICS})
    for count in sorted(set(views)):  # the same gaps for each view count
        summary.update({f"gap_closed_{key}_views{count}": gap_closed(results["teacher"][key],
                                                                     results[f"2d_views{count}"][key],
                                                                     results["3d"][key]) for key in GAP_METRICS})
    two_d = results["2d"]
    summary["lift_mpjpe_vs_lifter"] = two_d["lift_mpjpe_mm"] / two_d["teacher_mpjpe_mm"]
    summary["lift_accel_error_vs_lifter"] = two_d["lift_accel_error_ms2"] / two_d["teacher_accel_error_ms2"]
    report = {
        "config": config, "overrides": list(overrides), "steps": run_config.train.steps,
        "seed": seed, "cameras": cameras, "views": sorted(set(views)), "mocap": str(mocap) if mocap else "LAFAN1 sample (bvhtools==1.6.0)",
        "lifter": str(data.lifter), "teacher_domain": "in-domain" if lifter is None else "cross-domain",
        "results": results, "summary": summary, "timings_s": timings,
        "wall_minutes": (time.perf_counter() - started) / 60,
    }
    atomic_write_text(out / "results.json", json.dumps(report, indent=2) + "\n")
    notes = "\n".join(f"- {key}: {value:.4g}" if math.isfinite(value) else f"- {key}: n/a (no teacher→3d gap)"
                      for key, value in summary.items())
    write_report(out / "results.md", results, title=f"Recovery experiment ({report['steps']} steps, seed {seed})",
                 notes="The teacher→3d gap (teacher − 3d; lower is better), the share of it closed by 2d supervision, "
                       "and 2d lifting relative to the lifter:\n" + notes)
    _plot(out / "results.png", results)
    return report
