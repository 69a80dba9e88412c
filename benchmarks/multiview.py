"""Calibrated rigs: how well does triangulation explain a real rig, and how much better is it than one camera?

Two parts, one JSON line:

1. **Real rig** (Pose2Sim's single-person demo, 4 phone cameras, Qualisys calibration:
   :func:`videomdm.data.rig_demo.fetch_rig_demo`). MediaPipe BlazePose (the project's detector) runs on every video
   at 60 fps; the keypoints are undistorted with the calibration, the videos' frame offsets are estimated
   (:func:`videomdm.triangulation.estimate_offsets`) and the frames every view has are kept. Then, over the 33
   BlazePose keypoints:

   - ``used_views_median_px``: the triangulating teacher (:func:`videomdm.teacher.triangulate_teacher`)
     reprojected into the views each point used: the median over (view, frame, keypoint). This is the detector's
     own error as far as the rig can tell (its consistency with the other views);
   - ``heldout_view_median_px``: leave-one-camera-out: every point triangulated (robustly) from the other three
     views, projected into the held-out view and compared with that view's keypoints (median over its frames and
     keypoints of confidence ≥ 0.5), averaged over the four cameras. Target: ≤ 1.5 × ``used_views_median_px``;
   - ``ideal_rig_*``: the same two errors on the same rig, frames and masks without timing or calibration error
     (:func:`videomdm.triangulation.rig_consistency`: the real keypoints triangulated from every view, reprojected,
     plus Gaussian noise of ``ideal_rig_noise_px`` per image axis matched to the real used-view error), and
     ``heldout_over_ideal_rig``, the real held-out error over the ideal one: what the rig's timing and calibration
     add to the detector's noise (1 = nothing). The used views' error understates the detector's (each point is
     fitted to them), so even the ideal rig's held-out error is well above it.

2. **LAFAN1 virtual rigs** (:func:`videomdm.pipeline.prepare_benchmark` with ``--cameras`` views per clip: the
   built-in lifter trained on the ``lifter`` split lifts every view of the ``test`` clips alone, the simulated
   detector adds jitter, drops and left/right swaps). Over the ``test`` clips:

   - ``teacher_mpjpe_mm``: the triangulating teacher from all views (Gaussian smoothing σ = ``--smooth-seconds``)
     vs ``gt_3d``: MPJPE in the world frame, no alignment (``metrics.mpjpe``: a teacher is a world-frame motion);
     root-aligned as ``teacher_root_mpjpe_mm``, without smoothing as ``teacher_unsmoothed_mpjpe_mm``;
   - ``monocular_lifter_mpjpe_mm``: the lifter teacher of each single view vs ``gt_3d``, the same metrics averaged
     over views (frame-weighted). Target: teacher ≤ 0.3 × lifter.

    python benchmarks/multiview.py --out bench-multiview

Detections and the prepared LAFAN1 benchmark are cached under ``--out``; a second call only re-measures.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from videomdm.data.calibration import read_rig, undistort_points
from videomdm.data.clip import load_clip, read_dataset_index
from videomdm.data.rig_demo import fetch_rig_demo
from videomdm.metrics import mpjpe, root_mpjpe
from videomdm.pipeline import prepare_benchmark
from videomdm.teacher import triangulate_teacher
from videomdm.triangulation import estimate_offsets, rig_consistency


def detect_rig(demo: Path, rig, out: Path, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """``(V, T, 33, 2)`` pixels and ``(V, T, 33)`` confidences of the demo's videos (cached in ``out``)."""
    from videomdm.data.video import detect_video

    cache = out / f"rig_detections_{fps:g}fps.npz"
    if cache.exists():
        with np.load(cache) as data:
            return data["keypoints"], data["confidence"]
    sequences = [detect_video(demo / "videos" / f"{name}.mp4", fps=fps, progress=False) for name in rig.names]
    T = min(s.num_frames for s in sequences)
    keypoints = np.stack([s.keypoints[:T] for s in sequences])
    confidence = np.stack([s.confidence[:T] for s in sequences])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(cache, keypoints=keypoints, confidence=confidence)
    return keypoints, confidence


def real_rig(args: argparse.Namespace) -> dict[str, object]:
    demo = fetch_rig_demo(args.cache)
    rig = read_rig(demo / "calibration" / "Calib.qca.txt")
    keypoints, confidence = detect_rig(demo, rig, args.out, args.fps)
    undistorted = np.stack([undistort_points(kp, c.K, c.distortion) for kp, c in zip(keypoints, rig.cameras)])
    confidence = np.where(np.isfinite(undistorted).all(-1), confidence, 0.0)
    offsets, _ = estimate_offsets(undistorted, confidence, rig.K, rig.R, rig.t, max_offset=args.max_offset)
    T = undistorted.shape[1]
    first, last = max(0, -offsets.min()), min(T, T - offsets.max())
    uv = np.stack([u[first + d:last + d] for u, d in zip(undistorted, offsets)])  # (V, T', 33, 2)
    conf = np.stack([c[first + d:last + d] for c, d in zip(confidence, offsets)])
    teacher = triangulate_teacher(uv, conf, rig.K, rig.R, rig.t, keypoint_skeleton="blazepose33",
                                  threshold_px=args.threshold_px)
    used = teacher.used_median_px
    # Leave-one-camera-out, and the same on the rig without timing or calibration error (rig_consistency).
    consistency = rig_consistency(uv, conf, rig.K, rig.R, rig.t, threshold_px=args.threshold_px, max_frames=240,
                                  draws=2, seed=args.seed)
    heldout = np.array(consistency["heldout_view_px"])
    ideal_heldout = float(np.mean(consistency["ideal_rig_heldout_px"]))
    return {
        "views": len(rig), "rig_frames": int(uv.shape[1]), "rig_fps": args.fps, "rig_offsets": offsets.tolist(),
        "used_views_median_px": round(used, 2),
        "used_views_median_px_per_camera": [round(float(e), 2) for e in teacher.per_view_median_px],
        "heldout_view_median_px": round(float(np.mean(heldout)), 2),
        "heldout_view_median_px_per_camera": heldout.tolist(),
        "heldout_over_used": round(float(np.mean(heldout)) / used, 3),
        "ideal_rig_noise_px": consistency["ideal_rig_noise_px"],
        "ideal_rig_heldout_view_median_px": round(ideal_heldout, 2),
        "ideal_rig_heldout_over_used": round(ideal_heldout / used, 3),
        "heldout_over_ideal_rig": consistency["heldout_over_ideal_rig"],
        "rig_views_used_mean": round(float(teacher.triangulation.used.sum(0).mean()), 3),
    }


def virtual_rigs(args: argparse.Namespace) -> dict[str, object]:
    data = prepare_benchmark(args.out / f"lafan1-{args.cameras}cams", cache=args.cache, cameras=args.cameras,
                             seed=args.seed, progress=False, log=lambda line: None)
    index = read_dataset_index(data.data_2d)
    takes: dict[str, list] = defaultdict(list)
    for path in index.clip_paths("test"):
        clip = load_clip(path)
        takes[clip.name.rsplit("_cam", 1)[0]].append(clip)
    rows = defaultdict(list)  # metric → (frames, value)
    for name, views in sorted(takes.items()):
        views.sort(key=lambda c: int(c.name.rsplit("_cam", 1)[1]))
        gt = views[0].gt_3d.astype(np.float64)
        def stacked(field: str, tail: int) -> np.ndarray:  # one row per view, with or without a clip's view axis
            arrays = [np.asarray(getattr(c, field)) for c in views]
            return np.concatenate([a.reshape((-1,) + a.shape[a.ndim - tail:]) for a in arrays])

        arrays = (stacked("keypoints_2d", 3), stacked("confidence", 2), stacked("K", 2), stacked("R", 2),
                  stacked("t", 1))
        options = dict(keypoint_skeleton=views[0].keypoint_skeleton, threshold_px=args.threshold_px, where=name)
        result = triangulate_teacher(*arrays, smooth_frames=args.smooth_seconds * float(views[0].fps), **options)
        unsmoothed = triangulate_teacher(*arrays, **options)
        rows["teacher"].append((len(gt), mpjpe(result.joints, gt)))
        rows["teacher_root"].append((len(gt), root_mpjpe(result.joints, gt)))
        rows["teacher_unsmoothed"].append((len(gt), mpjpe(unsmoothed.joints, gt)))
        rows["teacher_used_px"].append((len(gt), result.used_median_px))
        for clip in views:
            rows["lifter"].append((len(gt), mpjpe(clip.teacher_3d, gt)))
            rows["lifter_root"].append((len(gt), root_mpjpe(clip.teacher_3d, gt)))

    def mean(key: str) -> float:
        frames, values = zip(*rows[key])
        return round(float(np.average(values, weights=frames)), 1)

    teacher, lifter = mean("teacher"), mean("lifter")
    return {"virtual_views": args.cameras, "virtual_test_takes": len(takes),
            "teacher_mpjpe_mm": teacher, "monocular_lifter_mpjpe_mm": lifter,
            "teacher_over_lifter": round(teacher / lifter, 3),
            "teacher_root_mpjpe_mm": mean("teacher_root"), "monocular_lifter_root_mpjpe_mm": mean("lifter_root"),
            "teacher_over_lifter_root": round(mean("teacher_root") / mean("lifter_root"), 3),
            "teacher_unsmoothed_mpjpe_mm": mean("teacher_unsmoothed"), "smooth_seconds": args.smooth_seconds,
            "virtual_used_views_median_px": mean("teacher_used_px")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-multiview"))
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "videomdm")
    parser.add_argument("--cameras", type=int, default=4, help="virtual cameras per LAFAN1 clip (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=60.0, help="detection frame rate on the real rig")
    parser.add_argument("--max-offset", type=int, default=10, help="frames searched for the real rig's offsets")
    parser.add_argument("--threshold-px", type=float, default=20.0, help="outlier view threshold (pixels)")
    parser.add_argument("--smooth-seconds", type=float, default=0.05,
                        help="σ of the teacher's Gaussian filter over time (default: %(default)s s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-real", action="store_true", help="only the LAFAN1 virtual rigs")
    parser.add_argument("--skip-virtual", action="store_true", help="only the real rig")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    result: dict[str, object] = {}
    if not args.skip_real:
        result.update(real_rig(args))
    if not args.skip_virtual:
        result.update(virtual_rigs(args))
    result["threshold_px"] = args.threshold_px
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
