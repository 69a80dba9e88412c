"""From real footage to training data and to clean 3D: the steps behind ``videomdm prepare video``,
``videomdm prepare keypoints`` and ``videomdm lift RUN VIDEO``.

- :func:`prepare_videos`: detect the main person in each video (:mod:`videomdm.data.video`), add a teacher and write
  2D training clips (:func:`videomdm.data.observed.prepare_sequences`).
- :func:`prepare_keypoint_files`: the same from another detector's files (:mod:`videomdm.data.keypoint_formats`).
- :func:`lift_video`: detect, build the clips, lift each with a trained prior (:func:`videomdm.sample.lift`, 2D ray
  guidance), and write the 3D joints, metrics and a side-by-side overlay video.
"""

from __future__ import annotations

import collections
import itertools
import json
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .camera import project_to_pixels
from .checkpoint import atomic_write_text
from .data.captions import match_captions
from .data.clip import Clip
from .data.dataset import clip_observations
from .data.errors import DataError
from .data.keypoint_formats import keypoint_files, read_keypoints
from .data.observed import KeypointSequence, clips_from_sequence, prepare_sequences, clip_reprojection_px
from .data.video import detect_video, find_videos, iter_frames, require_mediapipe
from .data.writer import PROGRESS_DIR
from .experiments import LiftSettings
from .export import write_bvh, write_joints
from .metrics import acceleration
from .render import render_overlay
from .sample import LoadedRun, lift
from .skeleton import Skeleton, get_skeleton
from .teacher import LiftedData, make_teacher

__all__ = ["VIDEO_TEACHERS", "KEYPOINT_TEACHERS", "LIFT_COMPARISON_KEYS", "prepare_videos", "prepare_keypoint_files",
           "lift_video"]

# Teachers (:func:`videomdm.teacher.make_teacher`) for footage: ``mediapipe`` is the detector's own 3D, ``lifter``
# the built-in lifter, ``file`` a teacher ``.npz`` with one array per clip name (``<video>_<k>``, see
# :class:`videomdm.teacher.TeacherFile`; world arrays are taken in the estimated camera's world, so use
# ``__frame__ = "camera"``). Keypoint files carry no detector 3D.
VIDEO_TEACHERS = ("mediapipe", "lifter", "file")
KEYPOINT_TEACHERS = ("lifter", "file")


def _captions_for(names: list[str], captions: dict[str, list[str]] | None, caption: str | None,
                  log: Callable[[str], None]) -> tuple[dict[str, list[str]], list[str]]:
    """Captions by source name (a single ``caption`` for all, or from a file) and the file's unknown names."""
    if caption is not None and captions is not None:
        raise ValueError("give --captions FILE or --caption TEXT, not both")
    if caption is not None:
        return {name: [caption] for name in names}, []
    if captions is None:
        return {}, []
    matched, unknown = match_captions(captions, names)
    for key in unknown:
        log(f"warning: the captions file names {key!r}, which is not among the sources; ignored")
    return matched, unknown


def prepare_videos(src: Path, out: Path, *, teacher: str = "mediapipe", lifter_dir: Path | None = None,
                   teacher_file: Path | None = None, fps: float = 20.0, focal_px: float | None = None,
                   fov_deg: float | None = None, max_seconds: float | None = None, max_gap_s: float = 0.5,
                   min_clip_s: float = 1.0, captions: dict[str, list[str]] | None = None,
                   caption: str | None = None, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """A video or a folder of videos → a 2D training dataset in ``out`` (resumable; see
    :func:`~videomdm.data.observed.prepare_sequences` for the summary). ``max_seconds`` reads only the start of
    each video."""
    if teacher not in VIDEO_TEACHERS:
        raise ValueError(f"unknown teacher {teacher!r}; known: {', '.join(VIDEO_TEACHERS)}")
    require_mediapipe()
    videos = find_videos(Path(src))
    by_name, unknown = _captions_for([v.stem for v in videos], captions, caption, log)
    sources = [(v.stem, str(v), partial(detect_video, v, fps=fps, max_seconds=max_seconds, progress=progress))
               for v in videos]
    summary = prepare_sequences(
        sources, Path(out), fps=fps, teacher=make_teacher(
            teacher, lifts=LiftedData(Path(src).stem, ("train",), Path(out)), lifter=lifter_dir, path=teacher_file),
        teacher_name=teacher, dataset_name=Path(src).stem, captions=by_name, focal_px=focal_px, fov_deg=fov_deg,
        max_gap_s=max_gap_s, min_clip_s=min_clip_s, log=log,
        extra={"source": str(Path(src).resolve()), "detector": "mediapipe BlazePose (model_complexity=1)"})
    summary["captions_unknown"] = unknown
    return summary


def prepare_keypoint_files(src: Path, out: Path, fmt: str, *, teacher: str = "lifter", lifter_dir: Path | None = None,
                           teacher_file: Path | None = None, fps: float = 20.0, source_fps: float | None = None,
                           focal_px: float | None = None, fov_deg: float | None = None,
                           image_size: tuple[int, int] | None = None, allow_pickle: bool = False,
                           max_gap_s: float = 0.5, min_clip_s: float = 1.0,
                           captions: dict[str, list[str]] | None = None, caption: str | None = None,
                           log: Callable[[str], None] = print) -> dict:
    """Keypoint files of another detector → a 2D training dataset in ``out`` (resumable). ``source_fps`` is the
    frame rate of files that do not store one; ``image_size`` the frame size when the files do not give it (else it
    is estimated from the keypoints' extent). A file that cannot be read is reported and skipped. On resume, a file
    read by an earlier run (its sequence names are listed in ``out/progress/.keypoint_files.json``) is read again
    only if one of its sequences is not prepared yet."""
    if teacher not in KEYPOINT_TEACHERS:
        raise ValueError(f"keypoint files need --teacher lifter or file (no detector 3D), got {teacher!r}")
    files = keypoint_files(Path(src), fmt)
    listed_path = Path(out) / PROGRESS_DIR / ".keypoint_files.json"  # file → the names of its sequences
    try:
        listed: dict[str, list[str]] = json.loads(listed_path.read_text()) if listed_path.is_file() else {}
    except ValueError:
        listed = {}  # unreadable: every file is read again

    @lru_cache(maxsize=1)  # a file's sequences are prepared one after another
    def read(path: Path) -> list[KeypointSequence]:
        found = read_keypoints(path, fmt, fps=source_fps, allow_pickle=allow_pickle)
        for seq in found:
            if image_size is not None and seq.image_size is None:
                seq.image_size = tuple(image_size)
        return found

    def read_later(path: Path, name: str) -> KeypointSequence:
        """Sequence ``name`` of a file listed by an earlier run, read only if it still needs preparing."""
        for seq in read(path):
            if seq.name == name:
                return seq
        raise DataError(f"{path}: no longer holds the sequence {name!r} it held when it was first prepared")

    sequences: list[tuple[str, str, Callable[[], KeypointSequence]]] = []
    failed: dict[str, str] = {}
    for path in files:
        key = str(path.resolve())
        if key in listed:  # an earlier run read it: finished sequences are skipped without reading it again
            sequences += [(name, str(path), partial(read_later, path, name)) for name in listed[key]]
            continue
        try:
            found = read(path)
        except DataError as err:
            failed[path.stem] = str(err)
            log(f"error: {err}")
            continue
        listed[key] = [seq.name for seq in found]
        sequences += [(seq.name, seq.source, lambda seq=seq: seq) for seq in found]
    if not sequences:
        raise DataError(f"{src}: no keypoint file could be read: {json.dumps(failed)}")
    by_name, unknown = _captions_for([name for name, _, _ in sequences], captions, caption, log)
    try:
        summary = prepare_sequences(
            sequences, Path(out), fps=fps,
            teacher=make_teacher(teacher, lifts=LiftedData(Path(src).stem, ("train",), Path(out)), lifter=lifter_dir,
                                 path=teacher_file), teacher_name=teacher,
            dataset_name=Path(src).stem, captions=by_name, focal_px=focal_px, fov_deg=fov_deg, max_gap_s=max_gap_s,
            min_clip_s=min_clip_s, log=log, extra={"source": str(Path(src).resolve()), "keypoint_format": fmt})
    finally:
        if listed_path.parent.is_dir():  # not made when ``out`` was refused
            atomic_write_text(listed_path, json.dumps(listed, indent=2))
    summary["failed"].update(failed)
    summary["captions_unknown"] = unknown
    return summary


LIFT_COMPARISON_KEYS = ("teacher_reprojection_px", "lift_reprojection_px", "teacher_accel_ms2", "lift_accel_ms2")
"""What a lift's ``metrics.json`` compares, teacher against lift, for a video or a rig take (no ground truth)."""


def _write_motion(out: Path, name: str, joints: np.ndarray, fps: float, skeleton: Skeleton) -> list[Path]:
    """The one place where a lifted motion ``(T, J, 3)`` (world metres, y up) is written to files."""
    path, bvh = out / f"{name}.npy", out / f"{name}.bvh"
    write_joints(path, joints, skeleton)
    write_bvh(bvh, joints, fps, skeleton)
    return [path, bvh]


def _projected(clip: Clip, joints: np.ndarray, view: int = 0) -> np.ndarray:
    """``(T, J, 2)`` pixels of world joints through the camera of the clip's view ``view``."""
    to = partial(torch.as_tensor, dtype=torch.float64)
    return project_to_pixels(to(joints)[None], to(clip.K[view]), to(clip.R[view])[None],
                             to(clip.t[view])[None])[0].numpy()


def lift_video(run: LoadedRun, video: Path, out: Path, *, settings: LiftSettings = LiftSettings(),
               teacher: str = "mediapipe", lifter_dir: Path | None = None, focal_px: float | None = None,
               fov_deg: float | None = None, max_seconds: float | None = None, render: bool = True,
               progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Lift one video with a trained prior and write, per clip (a stretch with the person in view):
    ``<clip>.npy`` (T, 22, 3) world metres at the run's fps, ``<clip>_teacher.npy``, ``<clip>.mp4`` (the overlay,
    :func:`videomdm.render.render_overlay`), and ``metrics.json`` with, for the teacher and for the lift, the
    reprojection error in pixels (over the joints the detector sees) and the mean joint acceleration in m/s² (no
    ground truth: how much each moves; jitter shows as acceleration), per clip and frame-weighted over the video,
    and the lifting ``settings``.
    """
    video, out = Path(video), Path(out)
    fps = run.config.data.fps
    if teacher not in ("mediapipe", "lifter"):
        raise ValueError(f"unknown teacher {teacher!r}; known: mediapipe, lifter")
    by_clip = make_teacher(teacher, lifts=LiftedData(video.stem, ()), lifter=lifter_dir)  # a video is in no split
    seq = detect_video(video, fps=fps, max_seconds=max_seconds, progress=progress)
    clips, reason = clips_from_sequence(seq, fps=fps, teacher=by_clip, focal_px=focal_px, fov_deg=fov_deg,
                                        skeleton=run.skeleton)
    if not clips:
        raise DataError(f"{video}: nothing to lift ({reason})")
    keypoint_skeleton = get_skeleton(seq.skeleton)
    rows = {}
    # One decode for all overlays: the clips are disjoint frame ranges in increasing order, so each overlay takes its
    # range from one stream of the video's frames, of which ``position`` have been consumed.
    stream, position = iter_frames(video, fps, max_seconds=max_seconds), 0
    for start, clip in clips:
        observations = clip_observations(clip, run.skeleton, video)
        joints = lift(run, clip.teacher_3d, observations, **settings.lift_kwargs())
        written = _write_motion(out, clip.name, joints, fps, run.skeleton)
        write_joints(out / f"{clip.name}_teacher.npy", clip.teacher_3d, run.skeleton)
        rows[clip.name] = {
            "start_frame": start, "frames": len(joints), "fps": fps,
            "teacher_reprojection_px": clip_reprojection_px(clip, run.skeleton),
            "lift_reprojection_px": clip_reprojection_px(clip, run.skeleton, joints=joints),
            "teacher_accel_ms2": acceleration(clip.teacher_3d, fps),
            "lift_accel_ms2": acceleration(joints, fps),
            "files": [p.name for p in written],
        }
        if render:
            frames = itertools.islice(stream, start - position, start - position + len(joints))
            overlay = render_overlay(frames, clip.keypoints_2d[0], clip.confidence[0], keypoint_skeleton,
                                     _projected(clip, joints), joints, run.skeleton, out / f"{clip.name}.mp4",
                                     fps=fps, title=clip.name)
            collections.deque(frames, maxlen=0)  # any of the range the renderer left unread
            position = start + len(joints)
            rows[clip.name]["files"].append(overlay.name)
        row = rows[clip.name]
        log(f"{clip.name}: {len(joints)} frames, teacher → lift: reprojection {row['teacher_reprojection_px']:.1f} → "
            f"{row['lift_reprojection_px']:.1f} px, acceleration {row['teacher_accel_ms2']:.1f} → "
            f"{row['lift_accel_ms2']:.1f} m/s²")
    frames = sum(r["frames"] for r in rows.values())
    metrics = {
        "video": str(video), "run": str(run.checkpoint), "teacher": teacher, "settings": settings.lift_kwargs(),
        "clips": rows, "frames": frames,
        **{key: sum(r[key] * r["frames"] for r in rows.values()) / frames for key in LIFT_COMPARISON_KEYS},
        "units": "joints in metres, world y up, floor y = 0; SMPL-22 order",
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics
