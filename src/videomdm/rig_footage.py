"""Synchronized videos of a calibrated rig → multi-view training clips (DESIGN.md, "Views").

One take is V videos of one person, in the rig's camera order (:func:`videomdm.data.calibration.read_rig`). The
main person is detected in every video at its own frame rate (MediaPipe BlazePose, :func:`detect_video`), the
keypoints are undistorted with each camera's lens model (:func:`~videomdm.data.calibration.undistort_points`), and
the videos are aligned in time: view v's frame ``f + d_v`` shows the instant of view 0's frame f, with the offsets
``d`` given (``offsets``) or estimated by minimizing the median two-view triangulation error over
``[−max_offset, max_offset]`` frames (:func:`~videomdm.triangulation.estimate_offsets`; the error of the chosen and
of the zero offset are reported). The frames every view has are kept and resampled to the dataset's frame rate
(:func:`~videomdm.data.observed.resample_sequence`). The teacher is the rig's triangulation
(:class:`~videomdm.teacher.TriangulatingTeacher`), and the clip is grounded and canonicalized with its cameras
(:func:`~videomdm.data.observed.ground_clip`), so every view's pixels are unchanged.

A clip stores undistorted keypoints, the rig's ``K``, ``R``, ``t`` per view (static) and the first camera's image size;
the calibration (lens models included) is kept in the dataset's ``extra`` for drawing overlays distorted again.

:func:`lift_rig_take` lifts one take with a trained prior, guided by every view, and draws the overlay of all views
(keypoints and the lift's projection put back through each lens onto the raw frames).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .camera import project_to_pixels
from .checkpoint import atomic_write_text
from .data.calibration import Rig, distort_points, read_rig, undistort_points
from .data.clip import Clip
from .data.dataset import clip_observations
from .data.errors import DataError
from .data.observed import KeypointSequence, clip_reprojection_px, ground_clip, resample_sequence
from .data.video import detect_video, find_videos, video_info
from .data.writer import DatasetWriter
from .experiments import LiftSettings
from .export import write_joints
from .footage import _write_motion
from .metrics import acceleration
from .render import render_views_overlay
from .sample import LoadedRun, lift
from .skeleton import SMPL_22, get_skeleton
from .teacher import TriangulatingTeacher
from .triangulation import estimate_offsets, rig_consistency

__all__ = ["take_videos", "align_views", "rig_clip", "prepare_rig_videos", "lift_rig_take"]


def take_videos(src: Path, rig: Rig) -> list[Path]:
    """The videos of one take in the rig's camera order: a folder holding one video per camera, named after the
    cameras (``<camera name>.<ext>``) or, failing that, sorted by name. DataError naming the folder otherwise."""
    videos = find_videos(Path(src))
    by_stem = {v.stem: v for v in videos}
    if all(name in by_stem for name in rig.names):
        return [by_stem[name] for name in rig.names]
    if len(videos) != len(rig):
        raise DataError(f"{src}: {len(videos)} videos for a rig of {len(rig)} cameras ({', '.join(rig.names)}); "
                        f"a take folder holds one video per camera")
    return videos


def align_views(keypoints: np.ndarray, confidence: np.ndarray, offsets: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Cut views to the instants they all show: view v's frame ``f + d_v`` with view 0's frame f.

    Args:
        keypoints: ``(V, T, J, 2)``; confidence: ``(V, T, J)``; offsets: ``(V,)`` ints ``d_v`` (``d_0 = 0``).

    Returns:
        ``(V, T', J, 2)``, ``(V, T', J)`` with ``T' = T − max(d) + min(d)``; DataError when nothing overlaps.
    """
    offsets = np.asarray(offsets, dtype=int)
    T = keypoints.shape[1]
    first, last = max(0, -int(offsets.min())), min(T, T - int(offsets.max()))  # view-0 frames every view has
    if last - first < 2:
        raise DataError(f"the offsets {offsets.tolist()} leave {max(last - first, 0)} common frames of {T}")
    keypoints = np.stack([k[first + d:last + d] for k, d in zip(keypoints, offsets)])
    confidence = np.stack([c[first + d:last + d] for c, d in zip(confidence, offsets)])
    return keypoints, confidence


def rig_clip(name: str, sequences: Sequence[KeypointSequence], rig: Rig, *, fps: float,
             offsets: Sequence[int] | None = None, max_offset: int = 30, threshold_px: float = 20.0,
             smooth_seconds: float = 0.05, text: Sequence[str] = ()) -> tuple[Clip, dict, np.ndarray]:
    """One take's detections (one :class:`KeypointSequence` per camera, in the rig's order, at one frame rate) → a
    grounded multi-view clip with the triangulating teacher, and a report.

    Args:
        offsets: frame offsets at the detections' frame rate (module docstring); None: estimated within
            ``±max_offset`` frames.
        threshold_px: the triangulation's outlier threshold (:func:`~videomdm.triangulation.triangulate`).
        smooth_seconds: the teacher's Gaussian smoothing over time (:class:`~videomdm.teacher.TriangulatingTeacher`).

    Returns:
        ``(clip, report, views_used)``: ``views_used`` ``(V, T, J2)`` bool, the views each keypoint was
        triangulated from (the others were rejected as outliers or not seen); report with ``offsets``,
        ``offsets_estimated``, ``offset_error_px`` / ``zero_offset_error_px`` (median two-view error of the chosen / zero offsets, per view; estimated only),
        ``frames``, ``teacher`` (the triangulation's per-view median pixels, :meth:`TriangulatedTeacher.report`)
        ``teacher_reprojection_px`` (the grounded teacher against the keypoints, mean over views) and, with 3
        cameras or more, ``consistency`` (:func:`~videomdm.triangulation.rig_consistency` at the detections' rate).
    """
    if len(sequences) != len(rig):
        raise DataError(f"{name}: {len(sequences)} videos for a rig of {len(rig)} cameras")
    rates = {round(float(s.fps), 6) for s in sequences}
    skeletons = {s.skeleton for s in sequences}
    if len(rates) != 1 or len(skeletons) != 1:
        raise DataError(f"{name}: the views must share one frame rate and keypoint skeleton, got "
                        f"{sorted(rates)} fps and {sorted(skeletons)}")
    source_fps, skeleton = float(sequences[0].fps), skeletons.pop()
    frames = min(s.num_frames for s in sequences)
    keypoints = np.stack([undistort_points(s.keypoints[:frames], camera.K, camera.distortion)
                          for s, camera in zip(sequences, rig.cameras)])  # (V, T, J, 2) undistorted pixels
    confidence = np.stack([s.confidence[:frames] for s in sequences])
    confidence = np.where(np.isfinite(keypoints).all(-1), confidence, 0.0)
    keypoints = np.nan_to_num(keypoints)
    report: dict = {"offsets_estimated": offsets is None}
    if offsets is None:
        offsets, costs = estimate_offsets(keypoints, confidence, rig.K, rig.R, rig.t, max_offset=max_offset)
        zero = max_offset  # the column of shift 0
        report["offset_error_px"] = [None if v == 0 else round(float(np.nanmin(costs[v])), 2)
                                     for v in range(len(rig))]
        report["zero_offset_error_px"] = [None if v == 0 else round(float(costs[v, zero]), 2)
                                          for v in range(len(rig))]
    offsets = [int(d) for d in offsets]
    if len(offsets) != len(rig) or offsets[0] != 0:
        raise DataError(f"{name}: give one offset per camera with 0 for the first, got {offsets}")
    report["offsets"] = offsets
    report["first_frame"] = max(0, -min(offsets))  # camera 0's first kept frame (camera v's: + d_v)
    report["source_fps"] = source_fps
    keypoints, confidence = align_views(keypoints, confidence, offsets)
    if len(rig) >= 3:  # leave-one-camera-out against the ideal rig: the rig's timing and calibration, measured
        report["consistency"] = rig_consistency(keypoints, confidence, rig.K, rig.R, rig.t, threshold_px=threshold_px)
    views = [resample_sequence(KeypointSequence(name=name, keypoints=k, confidence=c, skeleton=skeleton,
                                                fps=source_fps, image_size=None, source=name), fps)
             for k, c in zip(keypoints, confidence)]
    clip = Clip(name=name, fps=fps, skeleton=SMPL_22.name, source=", ".join(s.source for s in sequences),
                keypoints_2d=np.stack([v.keypoints for v in views]).astype(np.float32),
                confidence=np.stack([v.confidence for v in views]).astype(np.float32), keypoint_skeleton=skeleton,
                K=rig.K, R=rig.R, t=rig.t, text=list(text), image_size=rig.cameras[0].image_size)
    teacher = TriangulatingTeacher(threshold_px=threshold_px, smooth_seconds=smooth_seconds)
    clip = ground_clip(replace(clip, teacher_3d=teacher(clip)))
    report.update(frames=clip.num_frames, teacher=teacher.reports[name],
                  teacher_reprojection_px=round(clip_reprojection_px(clip), 3))
    return clip, report, teacher.views_used[name]


def prepare_rig_videos(takes: Sequence[Sequence[Path]], calibration: Path, out: Path, *, fps: float = 20.0,
                       offsets: Sequence[int] | None = None, max_offset: int = 30, threshold_px: float = 20.0,
                       max_seconds: float | None = None, caption: str | None = None, overwrite: bool = False,
                       progress: bool = True, log: Callable[[str], None] = print,
                       detect: Callable[..., KeypointSequence] = detect_video) -> dict:
    """Takes of a calibrated rig (each a list of videos in the calibration's camera order) → a multi-view 2D
    dataset in ``out`` (split ``train``, one clip per take named after its first video's folder, or after the
    videos' common stem prefix for a loose list). Returns a summary with each take's :func:`rig_clip` report.

    ``offsets`` apply to every take (frames at the videos' own rate); ``detect`` is the detector (a video path and
    ``fps``, ``max_seconds``, ``progress`` → :class:`KeypointSequence`; MediaPipe by default).
    """
    rig = read_rig(Path(calibration))
    out = Path(out)
    summary: dict = {"out": str(out), "calibration": str(Path(calibration).resolve()), "cameras": rig.names,
                     "takes": {}}
    with DatasetWriter(out, splits=["train"], replace=overwrite) as writer:
        for videos in takes:
            videos = [Path(v) for v in videos]
            rates = {round(video_info(v)[0], 3) for v in videos}
            if len(rates) != 1:
                raise DataError(f"{videos[0].parent}: the videos of a take must share one frame rate, got "
                                f"{sorted(rates)} fps")
            name = _take_name(videos)
            log(f"{name}: detecting {len(videos)} views at {rates.pop():g} fps")
            sequences = [detect(v, fps=video_info(v)[0], max_seconds=max_seconds, progress=progress) for v in videos]
            clip, report, views_used = rig_clip(name, sequences, rig, fps=fps, offsets=offsets,
                                                max_offset=max_offset, threshold_px=threshold_px,
                                                text=[caption] if caption else [])
            # A keypoint the triangulation rejected (its view disagrees with the others beyond the outlier
            # threshold: a detector that swapped left and right there) is no evidence of the joint: confidence 0,
            # so that multi-view training and lifting use the views that agree.
            writer.add("train", replace(clip, confidence=clip.confidence * views_used))
            summary["takes"][name] = report
            consistency = report.get("consistency", {})
            log(f"{name}: {report['frames']} frames, offsets {report['offsets']}, triangulation "
                f"{report['teacher'].get('used_median_px')} px (median over the views used)"
                + (f", held-out views {consistency['heldout_view_px']} px = {consistency['heldout_over_ideal_rig']}"
                   f" × a rig without timing or calibration error" if consistency else ""))
        writer.commit(name=out.name, fps=fps, skeleton=SMPL_22.name, license=None, extra={
            "teacher": "triangulate", "detector": "mediapipe BlazePose (model_complexity=1)",
            "calibration": rig.to_dict(), "takes": summary["takes"],
            "keypoints": "undistorted pixels (the calibration's lens models removed); confidence 0 where the "
                         "triangulation rejected the view for the joint"})
    summary["clips"] = len(summary["takes"])
    return summary


def _take_name(videos: Sequence[Path]) -> str:
    parents = {v.parent for v in videos}
    if len(parents) == 1 and len(videos) > 1 and all(v.parent.name for v in videos):
        parent = videos[0].parent
        return parent.parent.name if parent.name == "videos" and parent.parent.name else parent.name
    stems = [v.stem for v in videos]
    prefix = stems[0][:min(len(s) for s in stems)]
    while prefix and not all(s.startswith(prefix) for s in stems):
        prefix = prefix[:-1]
    return prefix.rstrip("_-. ") or stems[0]


def _frames_at(video: Path, indices: Sequence[int]):
    """RGB frames of ``video`` at the given (non-decreasing) source frame indices, decoded as a stream."""
    import imageio.v3 as iio

    wanted = iter(indices)
    target = next(wanted, None)
    for index, frame in enumerate(iio.imiter(video, plugin="FFMPEG")):
        while target is not None and target == index:
            yield frame
            target = next(wanted, None)
        if target is None:
            return


def lift_rig_take(run: LoadedRun, videos: Sequence[Path], calibration: Path, out: Path, *,
                  settings: LiftSettings = LiftSettings(), offsets: Sequence[int] | None = None, max_offset: int = 30,
                  threshold_px: float = 20.0, max_seconds: float | None = None, render: bool = True,
                  progress: bool = True, log: Callable[[str], None] = print,
                  detect: Callable[..., KeypointSequence] = detect_video) -> dict:
    """Lift one take of a calibrated rig (videos in the calibration's camera order) with a trained prior, guided by
    every view (:func:`videomdm.sample.lift`), starting from the triangulating teacher (:func:`rig_clip`).

    Writes ``<take>.npy`` (T, 22, 3) world metres at the run's fps (the take's grounded frame) and ``<take>.bvh``,
    ``<take>_teacher.npy``, ``<take>.mp4`` (every view's raw frames with its keypoints and the lift's projection,
    both put back through the lens, beside the 3D skeleton) and ``metrics.json``: the teacher's and the lift's
    reprojection error in pixels per view and their mean (undistorted pixels, the joints the detector gives), the
    acceleration of both, the take's :func:`rig_clip` report and the lifting ``settings``.
    """
    rig = read_rig(Path(calibration))
    videos, out = [Path(v) for v in videos], Path(out)
    fps = run.config.data.fps
    rates = {round(video_info(v)[0], 3) for v in videos}
    if len(rates) != 1:
        raise DataError(f"{videos[0]}: the videos of a take must share one frame rate, got {sorted(rates)} fps")
    source_fps = video_info(videos[0])[0]
    name = _take_name(videos)
    sequences = [detect(v, fps=source_fps, max_seconds=max_seconds, progress=progress) for v in videos]
    clip, report, views_used = rig_clip(name, sequences, rig, fps=fps, offsets=offsets, max_offset=max_offset,
                                        threshold_px=threshold_px)
    # Guidance by the keypoints the triangulation kept: a view it rejected for a joint (a detector that swapped left
    # and right there) would pull the joint off the rays of the views that agree.
    guiding = replace(clip, confidence=clip.confidence * views_used)
    joints = lift(run, clip.teacher_3d, clip_observations(guiding, run.skeleton, name), **settings.lift_kwargs())
    out.mkdir(parents=True, exist_ok=True)
    written = _write_motion(out, name, joints, fps, run.skeleton)
    write_joints(out / f"{name}_teacher.npy", clip.teacher_3d, run.skeleton)
    per_view = {who: [clip_reprojection_px(clip.view(v), run.skeleton, joints=motion) for v in range(len(rig))]
                for who, motion in (("teacher", clip.teacher_3d), ("lift", joints))}
    metrics = {
        "take": name, "videos": [str(v) for v in videos], "run": str(run.checkpoint),
        "settings": settings.lift_kwargs(), "frames": len(joints),
        "fps": fps, "cameras": rig.names, **report,
        **{f"{who}_reprojection_px_per_view": [round(e, 3) for e in errors] for who, errors in per_view.items()},
        **{f"{who}_reprojection_px": float(np.mean(errors)) for who, errors in per_view.items()},
        "teacher_accel_ms2": acceleration(clip.teacher_3d, fps),
        "lift_accel_ms2": acceleration(joints, fps),
        "files": [p.name for p in written] + [f"{name}_teacher.npy"],
        "units": "joints in metres, world y up, floor y = 0; SMPL-22 order; pixels undistorted",
    }
    if render:
        step = report["source_fps"] / fps
        indices = [[report["first_frame"] + d + int(round(k * step)) for k in range(len(joints))]
                   for d in report["offsets"]]
        drawn_keypoints, drawn_projection = [], []
        for v, camera in enumerate(rig.cameras):
            projected = project_to_pixels(*(torch.as_tensor(a, dtype=torch.float64)[None]
                                            for a in (joints, clip.K[v], clip.R[v], clip.t[v])))  # (1, T, J, 2)
            drawn_projection.append(distort_points(projected[0].numpy(), camera.K, camera.distortion))
            drawn_keypoints.append(distort_points(clip.keypoints_2d[v].astype(np.float64), camera.K,
                                                  camera.distortion))
        frames = zip(*(_frames_at(video, idx) for video, idx in zip(videos, indices)))
        overlay = render_views_overlay((list(f) for f in frames), np.stack(drawn_keypoints), clip.confidence,
                                       get_skeleton(clip.keypoint_skeleton), np.stack(drawn_projection), joints,
                                       run.skeleton, out / f"{name}.mp4", fps=fps, title=name)
        metrics["files"].append(overlay.name)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    log(f"{name}: {len(joints)} frames, reprojection {metrics['teacher_reprojection_px']:.1f} px (triangulation) → "
        f"{metrics['lift_reprojection_px']:.1f} px (lift), acceleration {metrics['teacher_accel_ms2']:.1f} → "
        f"{metrics['lift_accel_ms2']:.1f} m/s²")
    return metrics
