"""One way to build a teacher: the :class:`Teacher` protocol, :class:`LiftedData` and :func:`make_teacher`.

A clip's ``teacher_3d`` (DESIGN.md, clip record) comes from one of :data:`TEACHER_KINDS`:

- ``lifter``: the built-in lifter (:mod:`videomdm.teacher.lifter`), grounded in the world
  (:mod:`videomdm.teacher.grounding`); reads only the 2D keypoints, their confidences and the camera;
- ``corrupt``: the ground truth damaged by a model of lifter errors (:mod:`videomdm.teacher.corrupt`);
- ``file``: per-clip arrays made by any external lifter (:mod:`videomdm.teacher.file`);
- ``mediapipe``: the 2D detector's own 3D (:mod:`videomdm.teacher.detector`);
- ``triangulate``: a calibrated rig's views triangulated (:mod:`videomdm.teacher.triangulate`).

**A lifter never lifts the split it was trained on** (its errors there would be smaller than on new data, so a
teacher made that way flatters every number measured against it). :func:`make_teacher` therefore asks what a lifter
teacher will lift (:class:`LiftedData`) and refuses, with :class:`TrainingSplitError`, a lifter trained on one of
those splits of the same dataset.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..data.dataset import observed_keypoints
from ..data.errors import DataError
from ..skeleton import get_skeleton
from .corrupt import CorruptionParams, corrupt_teacher
from .detector import detector_teacher
from .file import load_teacher_file
from .lifter import Lifter, lift_clip, load_lifter
from .triangulate import TriangulatingTeacher

if TYPE_CHECKING:  # pragma: no cover
    from ..data.clip import Clip

__all__ = ["TEACHER_KINDS", "Teacher", "LiftedData", "TrainingSplitError", "make_teacher"]

TEACHER_KINDS = ("lifter", "corrupt", "file", "mediapipe", "triangulate")


class Teacher(Protocol):
    """``teacher(clip, detector_3d) → teacher_3d``: ``(T, 22, 3)`` float32, world frame, metres, SMPL-22 order.

    ``clip`` is an observed clip (``keypoints_2d``, ``confidence``, ``K``, ``R``, ``t``; ``gt_3d`` only in mocap
    benchmarks). ``detector_3d`` is the 2D detector's own root-relative 3D for the clip's frames, ``(T, 33, 3)``
    metres in camera axes (NaN where nothing was detected), or None; only the ``mediapipe`` teacher reads it.
    Missing inputs raise ``DataError`` naming the clip.
    """

    def __call__(self, clip: Clip, detector_3d: np.ndarray | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class LiftedData:
    """What a teacher will lift: the dataset's ``name`` (its ``dataset.json`` name; a video's or folder's stem for
    footage), its folder ``path`` when it has one, and the ``splits`` whose clips get a ``teacher_3d`` (empty for
    clips that belong to no dataset, such as a video lifted directly)."""

    name: str
    splits: tuple[str, ...]
    path: Path | None = None


class TrainingSplitError(ValueError):
    """A lifter asked to lift the split of the dataset it was trained on."""


def _refuse_training_split(lifter: Lifter, lifts: LiftedData) -> None:
    """:class:`TrainingSplitError` naming the lifter, its training data and the data to lift, when they overlap.

    The dataset is the same when the folders match or, as a folder may have moved, when the names match.
    """
    trained = lifter.info.get("dataset", {})
    same_path = lifts.path is not None and trained.get("path") == str(Path(lifts.path).resolve())
    same_dataset = same_path or trained.get("name") == lifts.name
    if same_dataset and trained.get("split") in lifts.splits:
        raise TrainingSplitError(
            f"{lifter.path}: this lifter was trained on split {trained.get('split')!r} of dataset "
            f"{trained.get('name')!r} ({trained.get('path')}), which would be lifted too (dataset {lifts.name!r}"
            f"{f' in {lifts.path}' if lifts.path is not None else ''}, splits {list(lifts.splits)}); prepare other "
            f"splits (--splits) or train the lifter on a disjoint split")


def make_teacher(kind: str, *, lifts: LiftedData | None = None, lifter: Lifter | Path | None = None,
                 level_floor: bool = False, severity: float = 1.0, seed: int = 0,
                 params: CorruptionParams = CorruptionParams(), path: Path | None = None,
                 threshold_px: float = 20.0, smooth_seconds: float = 0.05) -> Teacher:
    """The teacher of ``kind`` (one of :data:`TEACHER_KINDS`); each reads only its own options.

    - ``lifter``: ``lifter`` (a :class:`~videomdm.teacher.lifter.Lifter` or its folder) and ``lifts``, the data it
      will lift (required: a lifter trained on one of those splits of that dataset raises
      :class:`TrainingSplitError`); ``level_floor`` (for estimated extrinsics, see :func:`lift_clip`). Reads ONLY
      ``keypoints_2d``, ``confidence``, ``keypoint_skeleton``, ``K``, ``R``, ``t`` (and ``name``, ``fps`` for
      messages), never ``gt_3d``.
    - ``corrupt``: ``severity``, ``seed``, ``params``. Reads ``gt_3d``, ``R``, ``t``, ``fps``; each clip's
      randomness is seeded by ``(seed, crc32(clip.name))``.
    - ``file``: ``path``, a teacher ``.npz`` (:func:`~videomdm.teacher.file.load_teacher_file`).
    - ``mediapipe``: no option; the detector's 3D passed with each clip
      (:func:`~videomdm.teacher.detector.detector_teacher`).
    - ``triangulate``: ``threshold_px`` (the reprojection error above which a view is left out of a joint),
      ``smooth_seconds`` (σ of the Gaussian filter over time) and ``level_floor``; reads a multi-view clip's
      keypoints and cameras, never ``gt_3d`` (:class:`~videomdm.teacher.triangulate.TriangulatingTeacher`, whose ``reports`` hold each clip's per-view
      reprojection error).
    """
    if kind == "lifter":
        if lifter is None:
            raise ValueError("--teacher lifter needs --lifter DIR (made by `videomdm lifter train`)")
        if lifts is None:
            raise ValueError("make_teacher('lifter') needs lifts= (the dataset and splits it will lift), so that a "
                             "lifter never lifts the split it was trained on")
        loaded = lifter if isinstance(lifter, Lifter) else load_lifter(Path(lifter))
        _refuse_training_split(loaded, lifts)
        return _lifter_teacher(loaded, level_floor)
    if kind == "corrupt":
        return _corrupt_teacher(severity, seed, params)
    if kind == "file":
        if path is None:
            raise ValueError("--teacher file needs --teacher-file FILE.npz")
        by_clip = load_teacher_file(Path(path)).for_clip
        return lambda clip, detector_3d=None: by_clip(clip)
    if kind == "mediapipe":
        return detector_teacher
    if kind == "triangulate":
        return TriangulatingTeacher(threshold_px=threshold_px, smooth_seconds=smooth_seconds, level_floor=level_floor)
    raise ValueError(f"unknown teacher kind {kind!r}; known: {list(TEACHER_KINDS)}")


def _lifter_teacher(lifter: Lifter, level_floor: bool) -> Teacher:
    warned: set[str] = set()  # warn once per teacher about a keypoint-skeleton mismatch

    def lifter_teacher(clip: Clip, detector_3d: np.ndarray | None = None) -> np.ndarray:
        if clip.keypoints_2d is None or clip.confidence is None or clip.K is None or clip.R is None \
                or clip.t is None:
            raise DataError(f"clip {clip.name}: the lifter teacher needs keypoints_2d, confidence, K, R and t")
        if abs(float(clip.fps) - lifter.config.fps) > 1e-6:
            warnings.warn(f"clip {clip.name} is at {clip.fps} fps, the lifter was trained at "
                          f"{lifter.config.fps} fps", stacklevel=2)
        expected = lifter.config.keypoint_skeleton
        if (clip.keypoint_skeleton or lifter.skeleton.name) != expected and expected not in warned:
            warned.add(expected)
            warnings.warn(f"clip {clip.name} has {clip.keypoint_skeleton} keypoints but the lifter was trained "
                          f"for {expected} keypoints; joints the clip lacks are treated as always missing "
                          f"(train with LifterConfig(keypoint_skeleton={clip.keypoint_skeleton!r}))",
                          stacklevel=2)
        uv, conf = observed_keypoints(clip, lifter.skeleton)  # (V, T, J, 2): a monocular lifter lifts the first view
        try:
            return lift_clip(lifter, uv[0], conf[0], clip.K[0], clip.R[0], clip.t[0], level_floor=level_floor)
        except ValueError as err:
            raise DataError(f"clip {clip.name}: {err}") from None

    return lifter_teacher


def _corrupt_teacher(severity: float, seed: int, params: CorruptionParams) -> Teacher:
    def corrupt(clip: Clip, detector_3d: np.ndarray | None = None) -> np.ndarray:
        if clip.gt_3d is None or clip.R is None or clip.t is None:
            raise DataError(f"clip {clip.name}: the corrupt teacher needs gt_3d, R and t")
        rng = np.random.default_rng([seed, zlib.crc32(clip.name.encode())])
        skeleton = get_skeleton(clip.skeleton)
        try:
            return corrupt_teacher(clip.gt_3d, clip.K[0], clip.R[0], clip.t[0], skeleton, severity=severity, rng=rng,
                                   fps=float(clip.fps), params=params)
        except ValueError as err:
            raise DataError(f"clip {clip.name}: {err}") from None

    return corrupt
