"""Keypoints observed in real footage (a video or another detector's files) → 2D training clips.

A :class:`KeypointSequence` is what a detector gives for one video: per frame, the main person's 2D keypoints in
pixels with confidences (0 where the person was not found) and, from detectors that have it, their own root-relative
3D (metres, camera axes). :func:`prepare_sequences` turns sequences into clips of the data contract:

1. **frame rate**: :func:`resample_sequence` to the dataset fps (20 by default);
2. **splitting**: :func:`split_at_gaps` cuts where the person is lost for more than ``max_gap_s`` seconds and where
   the detector jumps to another person (:func:`identity_switches`); shorter gaps stay inside a clip with confidence
   0; segments shorter than ``min_clip_s`` are dropped;
3. **camera**: a static pinhole camera. Intrinsics from a focal length or field of view the user gives, otherwise
   :func:`default_focal_px` (the image diagonal in pixels, about 47° horizontal field of view for 16:9 footage).
   Extrinsics: gravity is taken from the camera's up direction (no roll, no pitch: :data:`CAMERA_ROTATION`, the
   camera looks along world +z with its image y axis pointing down the world's y axis);
4. **teacher**: any function ``Clip → (T, 22, 3)`` world joints given that camera (the detector's own 3D,
   :func:`videomdm.teacher.detector_teacher`, the built-in lifter, or a lifter file, see
   :func:`videomdm.teacher.make_teacher`);
5. **grounding and canonicalization**: :func:`ground_clip` puts the floor
   (:func:`videomdm.representation.floor_from_feet`) at y = 0, the root of frame 0 at the x, z origin facing +z,
   and carries the camera along.

Writing is resumable (:class:`videomdm.data.writer.DatasetWriter`, resume mode): each finished source writes
``progress/<source>.json`` after its clips; a later run skips sources with such a record and writes ``dataset.json``
from all records. A source that fails is reported and the others still run.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np
import torch

from ..camera import transform_camera
from ..metrics import reprojection_error
from ..representation import canonicalize, floor_from_feet
from ..skeleton import SMPL_22, Skeleton, get_skeleton
from .clip import Clip
from .dataset import observed_keypoints
from .errors import DataError
from .mocap import resample, resample_indices
from .writer import DatasetWriter

if TYPE_CHECKING:  # pragma: no cover
    from ..teacher import Teacher

__all__ = [
    "KeypointSequence",
    "CAMERA_ROTATION",
    "default_focal_px",
    "intrinsics_for",
    "resample_sequence",
    "split_at_gaps",
    "person_box",
    "identity_switches",
    "ground_clip",
    "clips_from_sequence",
    "clip_reprojection_px",
    "prepare_sequences",
]

# World→camera rotation of the estimated static camera: camera x = −world x, camera y (image down) = −world y (up),
# camera z (forward) = world z. A proper rotation (a half turn about z).
CAMERA_ROTATION = np.diag([-1.0, -1.0, 1.0])


@dataclass
class KeypointSequence:
    """One source's detections of its main person.

    Attributes:
        name: source name (video file stem, or the name inside a keypoint file).
        keypoints: ``(T, J, 2)`` float pixels in ``skeleton``'s order; anything where ``confidence`` is 0.
        confidence: ``(T, J)`` in [0, 1]; a frame without a detection is all 0.
        skeleton: keypoint skeleton name (``blazepose33``, ``coco17``, ``body25``, ``h36m17``).
        fps: frame rate of the frames, or None when the source does not say (the caller must supply it).
        image_size: ``(width, height)`` pixels, or None when unknown (then estimated from the keypoints' extent).
        world: optional ``(T, J, 3)`` root-relative 3D from the detector, metres, OpenCV camera axes (x right, y
            down, z forward); NaN in frames without a detection.
        source: provenance (file path).
        source_fps: frame rate of the original recording when the frames were already resampled (a video read at
            the dataset fps); default ``fps``.
    """

    name: str
    keypoints: np.ndarray
    confidence: np.ndarray
    skeleton: str
    fps: float | None
    image_size: tuple[int, int] | None
    source: str
    world: np.ndarray | None = None
    source_fps: float | None = None

    def __post_init__(self) -> None:
        J = get_skeleton(self.skeleton).num_joints
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64)
        self.confidence = np.asarray(self.confidence, dtype=np.float64)
        where = f"{self.source}: {self.name}"
        if self.keypoints.ndim != 3 or self.keypoints.shape[1:] != (J, 2):
            raise DataError(f"{where}: keypoints must be (T, {J}, 2) for skeleton {self.skeleton}, "
                            f"got shape {self.keypoints.shape}")
        if self.confidence.shape != self.keypoints.shape[:2]:
            raise DataError(f"{where}: confidence must be {self.keypoints.shape[:2]}, got {self.confidence.shape}")
        if self.world is not None and self.world.shape != self.keypoints.shape[:2] + (3,):
            raise DataError(f"{where}: detector 3D must be {self.keypoints.shape[:2] + (3,)}, got {self.world.shape}")
        bad = ~np.isfinite(self.keypoints).all(-1) | ~np.isfinite(self.confidence)
        self.confidence = np.clip(np.where(bad, 0.0, self.confidence), 0.0, 1.0)
        self.keypoints = np.where(bad[..., None], 0.0, self.keypoints)
        if self.fps is not None and not (np.isfinite(self.fps) and self.fps > 0):
            raise DataError(f"{where}: fps must be positive, got {self.fps}")
        if self.source_fps is None:
            self.source_fps = self.fps

    @property
    def num_frames(self) -> int:
        return len(self.keypoints)


# --- frame rate and gaps ----------------------------------------------------------------------------------------------


def resample_sequence(seq: KeypointSequence, fps: float) -> KeypointSequence:
    """Resample to ``fps`` by linear interpolation between the two neighbouring source frames
    (:func:`videomdm.data.mocap.resample`).

    An output frame's confidence is the lower of its two neighbours' (0 if the person is missing in either), so a
    gap never gets interpolated keypoints. Output frame ``k`` is at time ``k / fps``; the last one is at or before the
    last source frame.
    """
    if seq.fps is None:
        raise DataError(f"{seq.source}: {seq.name}: frame rate unknown; give it (--fps)")
    if abs(seq.fps - fps) < 1e-9 or seq.num_frames == 0:
        return replace(seq, fps=float(fps))
    lower, upper, _ = resample_indices(seq.num_frames, seq.fps, fps)
    confidence = np.minimum(seq.confidence[lower], seq.confidence[upper])
    world = None if seq.world is None else resample(seq.world, seq.fps, fps)
    return replace(seq, keypoints=resample(seq.keypoints, seq.fps, fps), confidence=confidence, world=world,
                   fps=float(fps))


def split_at_gaps(detected: np.ndarray, max_gap: int, min_length: int,
                  breaks: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Frame ranges ``[start, stop)`` of the person's presence.

    ``detected (T,)`` bool marks frames with a detection. Runs of undetected frames longer than ``max_gap`` split
    the sequence; shorter runs stay inside a range. A detected frame marked in ``breaks (T,)`` always starts a new
    range (another person). Ranges start and end on detected frames; ranges shorter than ``min_length`` frames are
    dropped.
    """
    frames = np.flatnonzero(np.asarray(detected, dtype=bool))
    if len(frames) == 0:
        return []
    breaks = np.zeros(len(detected), bool) if breaks is None else np.asarray(breaks, dtype=bool)
    ranges = []
    start = prev = int(frames[0])
    for f in frames[1:]:
        f = int(f)
        if f - prev - 1 > max_gap or breaks[f]:
            ranges.append((start, prev + 1))
            start = f
        prev = f
    ranges.append((start, prev + 1))
    return [(a, b) for a, b in ranges if b - a >= min_length]


def person_box(keypoints: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre ``(2,)`` (pixels) and diagonal (pixels, 0 when nothing is seen) of the box around the keypoints
    ``(J, 2)`` whose ``confidence (J,)`` is positive."""
    seen = keypoints[confidence > 0]
    if len(seen) == 0:
        return np.zeros(2), 0.0
    lo, hi = seen.min(0), seen.max(0)
    return (lo + hi) / 2, float(np.linalg.norm(hi - lo))


def identity_switches(keypoints: np.ndarray, confidence: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """``(T,)`` bool: detected frames whose person's box centre lies more than one box diagonal away from the
    previous detected frame's (a detector that lost its person and picked up another)."""
    switches = np.zeros(len(keypoints), bool)
    last = None
    for f in np.flatnonzero(detected):
        centre, size = person_box(keypoints[f], confidence[f])
        if last is not None and np.linalg.norm(centre - last[0]) > max(size, last[1]):
            switches[f] = True
        last = (centre, size)
    return switches


# --- camera and grounding -----------------------------------------------------------------------------------------------


def default_focal_px(image_size: tuple[int, int]) -> float:
    """The default focal length when none is given: the image diagonal in pixels, ``√(w² + h²)``.

    This is a field of view of ``2·atan(w / (2·diag))``: 47° horizontally for 16:9 footage, 53° for 4:3 (between a
    phone's main camera and a mild telephoto); an error of ±30 % in focal length mostly scales the teacher's depth.
    """
    width, height = image_size
    return float(np.hypot(width, height))


def intrinsics_for(image_size: tuple[int, int], *, focal_px: float | None = None,
                   fov_deg: float | None = None) -> np.ndarray:
    """``(3, 3)`` intrinsics: principal point at the image centre, focal from ``focal_px``, else from the horizontal
    field of view ``fov_deg``, else :func:`default_focal_px`."""
    from ..camera import intrinsics, intrinsics_from_fov

    if focal_px is not None and fov_deg is not None:
        raise ValueError("give a focal length or a field of view, not both")
    if focal_px is not None:
        if not focal_px > 0:
            raise ValueError(f"focal length must be positive, got {focal_px}")
        return intrinsics(float(focal_px), image_size, dtype=torch.float64).numpy()
    if fov_deg is not None:
        if not 0 < fov_deg < 180:
            raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
        return intrinsics_from_fov(float(fov_deg), image_size, dtype=torch.float64).numpy()
    return intrinsics(default_focal_px(image_size), image_size, dtype=torch.float64).numpy()


def _rigid_camera(R: np.ndarray, t: np.ndarray, rotation: torch.Tensor, translation: torch.Tensor):
    """Every view's camera ``R (V, [T,] 3, 3)``, ``t (V, [T,] 3)`` carried through one rigid transform ``(1, 3, 3)``,
    ``(1, 3)``."""
    views = len(R)
    new_R, new_t = transform_camera(torch.as_tensor(R), torch.as_tensor(t), rotation.expand(views, 3, 3),
                                    translation.expand(views, 3))
    return new_R.numpy(), new_t.numpy()


def ground_clip(clip: Clip, skeleton: Skeleton = SMPL_22, *, facing_sigma: float = 20.0) -> Clip:
    """Canonicalize a clip's ``teacher_3d`` and carry its camera along (the pixels do not change).

    Root x, z of frame 0 at the origin facing +z (:func:`videomdm.representation.canonicalize`), then the floor of
    :func:`videomdm.representation.floor_from_feet` (a low percentile of the lowest foot, robust to a few frames where
    a foot goes through the floor) at y = 0.
    """
    joints = torch.as_tensor(clip.teacher_3d, dtype=torch.float64)[None]  # (1, T, J, 3)
    canonical, transform = canonicalize(joints, skeleton, facing_sigma=facing_sigma)
    R, t = _rigid_camera(clip.R, clip.t, transform.rotation, transform.translation)
    floor = floor_from_feet(canonical[0].numpy(), skeleton)
    lift_floor = torch.tensor([[0.0, -floor, 0.0]], dtype=torch.float64)
    R, t = _rigid_camera(R, t, torch.eye(3, dtype=torch.float64)[None], lift_floor)
    teacher = canonical[0].numpy() + lift_floor.numpy()
    return replace(clip, teacher_3d=teacher.astype(np.float32), R=R, t=t)


def clip_reprojection_px(clip: Clip, skeleton: Skeleton = SMPL_22, joints: np.ndarray | None = None) -> float:
    """Confidence-weighted reprojection error (pixels) of ``joints`` (default: the clip's teacher) against the
    clip's keypoints, over the joints the keypoint skeleton provides (:func:`videomdm.metrics.reprojection_error`),
    averaged over the clip's views."""
    uv, conf = observed_keypoints(clip, skeleton)  # (V, T, J, 2), (V, T, J)
    joints = clip.teacher_3d if joints is None else joints
    errors = [reprojection_error(joints, uv[v], conf[v], clip.K[v], clip.R[v], clip.t[v]) for v in range(len(uv))]
    return float(np.mean(errors))




def clips_from_sequence(seq: KeypointSequence, *, fps: float, teacher: Teacher, focal_px: float | None = None,
                        fov_deg: float | None = None, max_gap_s: float = 0.5, min_clip_s: float = 1.0,
                        captions: list[str] | None = None,
                        skeleton: Skeleton = SMPL_22) -> tuple[list[tuple[int, Clip]], str]:
    """The clips of one sequence with their first frame (at ``fps``), and why there are none when the list is empty.

    ``teacher(clip, detector_3d)`` receives each clip with its keypoints, ``K`` and the un-grounded camera (``R =``
    :data:`CAMERA_ROTATION`, ``t = 0``), and the detector's own 3D for the clip's frames (or None), and returns
    ``(T, J, 3)`` world joints; the result is then grounded (:func:`ground_clip`). Raises :class:`DataError` naming
    the source for a teacher that fails.
    """
    seq = resample_sequence(seq, fps)
    image_size = seq.image_size
    if image_size is None:  # a keypoint file without a frame size: the keypoints' extent, with a margin
        seen = seq.keypoints[seq.confidence > 0]
        if len(seen) == 0:
            return [], "no person detected in any frame"
        image_size = (int(np.ceil(seen[:, 0].max() * 1.1)) + 1, int(np.ceil(seen[:, 1].max() * 1.1)) + 1)
    K = intrinsics_for(image_size, focal_px=focal_px, fov_deg=fov_deg)
    detected = (seq.confidence > 0).sum(axis=1) >= 4  # a frame counts when at least 4 joints are seen
    if not detected.any():
        return [], "no person detected in any frame"
    ranges = split_at_gaps(detected, max_gap=int(round(max_gap_s * fps)), min_length=int(round(min_clip_s * fps)),
                           breaks=identity_switches(seq.keypoints, seq.confidence, detected))
    if not ranges:
        return [], f"no stretch of at least {min_clip_s} s with the person in view"
    clips = []
    for k, (start, stop) in enumerate(ranges):
        base = Clip(
            name=f"{seq.name}_{k:02d}", fps=float(fps), skeleton=skeleton.name,
            source=f"{seq.source}; frames {start}-{stop - 1} at {fps:g} fps",
            keypoints_2d=seq.keypoints[start:stop].astype(np.float32),
            confidence=seq.confidence[start:stop].astype(np.float32), keypoint_skeleton=seq.skeleton,
            K=K, R=CAMERA_ROTATION.copy(), t=np.zeros(3), text=list(captions or []), image_size=tuple(image_size))
        try:
            detector_3d = None if seq.world is None else seq.world[start:stop]
            world = np.asarray(teacher(base, detector_3d), dtype=np.float64)
        except (ValueError, RuntimeError) as err:
            raise DataError(f"{seq.source}: clip {base.name}: teacher failed: {err}") from None
        if world.shape != (stop - start, skeleton.num_joints, 3) or not np.isfinite(world).all():
            raise DataError(f"{seq.source}: clip {base.name}: teacher gave shape {world.shape} or non-finite "
                            f"values, expected ({stop - start}, {skeleton.num_joints}, 3)")
        clips.append((start, ground_clip(replace(base, teacher_3d=world.astype(np.float32)), skeleton)))
    return clips, ""


def prepare_sequences(sources: Iterable[tuple[str, str, Callable[[], KeypointSequence]]], out: Path, *,
                      fps: float, teacher: Teacher, teacher_name: str, dataset_name: str,
                      captions: dict[str, list[str]] | None = None, focal_px: float | None = None,
                      fov_deg: float | None = None, max_gap_s: float = 0.5, min_clip_s: float = 1.0,
                      extra: dict | None = None, log: Callable[[str], None] = print) -> dict:
    """Write the clips of every source to ``out`` (resumable), then ``out/dataset.json``; return a summary.

    Args:
        sources: ``(name, where, load)`` per source: its name (clip names and captions key), where it comes from
            (for messages), and a function reading its :class:`KeypointSequence` (may raise DataError/OSError; the
            source is then reported as failed and the others go on).
        captions: source name → captions (every clip of that source gets them).
        other arguments: see :func:`clips_from_sequence`.

    Returns:
        ``{"out", "sources", "done", "resumed", "failed": {name: reason}, "empty": {name: reason}, "clips",
        "frames", "teacher_reprojection_px"}``; the last is the frame-weighted mean over this run's new clips.
    """
    out = Path(out)
    captions = captions or {}
    settings = {"fps": fps, "teacher": teacher_name, "focal_px": focal_px, "fov_deg": fov_deg,
                "max_gap_s": max_gap_s, "min_clip_s": min_clip_s}
    writer = DatasetWriter(out, splits=["train"], resume=settings)
    summary: dict = {"out": str(out), "sources": 0, "done": 0, "resumed": 0, "failed": {}, "empty": {}, "clips": 0,
                     "frames": 0}
    all_clips: list[str] = []
    source_fps: dict[str, float | None] = {}
    reprojection, reprojection_frames = 0.0, 0
    started = time.perf_counter()
    for name, where, load in sources:
        summary["sources"] += 1
        record = writer.start_source(name)
        if record is not None:
            summary["resumed"] += 1
            log(f"{name}: already prepared ({len(record['clips'])} clips), skipped")
        else:
            try:
                seq = load()
                clips, reason = clips_from_sequence(seq, fps=fps, teacher=teacher, focal_px=focal_px,
                                                    fov_deg=fov_deg, max_gap_s=max_gap_s, min_clip_s=min_clip_s,
                                                    captions=captions.get(name))
                for _, clip in clips:
                    writer.add("train", clip)
                    error = clip_reprojection_px(clip)
                    reprojection += error * len(clip.teacher_3d)
                    reprojection_frames += len(clip.teacher_3d)
                record = writer.finish_source({"source": where, "reason": reason, "details": {
                    "source_fps": seq.source_fps, "image_size": seq.image_size}})
            except (DataError, OSError, ValueError, RuntimeError) as err:
                summary["failed"][name] = str(err)
                log(f"error: {where}: {err}")
                if not isinstance(err, (DataError, OSError)):
                    log(traceback.format_exc(limit=3))
                continue
            summary["done"] += 1
            if not record["clips"]:
                summary["empty"][name] = record.get("reason", "")
                log(f"{where}: no clip ({record.get('reason', '')})")
        all_clips += record["clips"]
        summary["frames"] += record["frames"]
        source_fps[name] = record.get("details", {}).get("source_fps")
    summary["clips"] = len(all_clips)
    rates = sorted({r for r in source_fps.values() if r is not None})
    summary["source_fps"] = source_fps
    if len(rates) > 1 or (rates and abs(rates[0] - fps) > 1e-6):
        log(f"sources recorded at {', '.join(f'{r:g}' for r in rates)} fps were resampled to {fps:g} fps")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["teacher_reprojection_px"] = (reprojection / reprojection_frames) if reprojection_frames else None
    if not all_clips:
        raise DataError(f"{out}: no clip was made from {summary['sources']} source(s): "
                        f"{json.dumps({**summary['failed'], **summary['empty']})}")
    writer.commit(name=dataset_name, fps=fps, skeleton=SMPL_22.name, license=None, extra={
        "teacher": teacher_name, "camera": {
            "focal_px": focal_px, "fov_deg": fov_deg,
            "default": "focal = image diagonal in pixels" if focal_px is None and fov_deg is None else None,
            "rotation": "camera up = world up (no roll, no pitch)"},
        "max_gap_s": max_gap_s, "min_clip_s": min_clip_s, **(extra or {})})
    return summary

