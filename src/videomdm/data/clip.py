"""The clip record (DESIGN.md, "one clip record"), its ``.npz`` file, and the dataset folder index.

A dataset folder::

    ROOT/
      dataset.json          the index: name, fps, skeleton, splits (relative clip paths), license, extra
      clips/<split>/*.npz   one clip per file (:func:`save_clip` / :func:`load_clip`)

``dataset.json`` is written last (every dataset is written by :class:`videomdm.data.writer.DatasetWriter`), so a
folder without one is an unfinished or foreign folder. Every file is written to a temporary file in the same folder
and renamed into place (``os.replace``), so no reader ever sees half a file.

Clip ``.npz`` layout: one array per non-``None`` field (strings as 0-d unicode arrays, ``text`` as a 1-d unicode
array, ``image_size`` as two ints) plus ``clip_format_version``. Loaded with ``allow_pickle=False``.

Views (DESIGN.md, "Views"): a clip holds V synchronized views of one motion, so every camera and keypoint field has a
leading view axis: ``keypoints_2d (V, T, J2, 2)``, ``confidence (V, T, J2)``, ``K (V, 3, 3)``, ``R (V, 3, 3)`` or
``(V, T, 3, 3)``, ``t (V, 3)`` or ``(V, T, 3)``. A monocular clip is V = 1. Files of format 2 store that layout; files
of format 1 (written before views existed) hold one view without the axis and are read as V = 1.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import atomic_path
from ..skeleton import get_skeleton
from .errors import DataError

__all__ = [
    "Clip",
    "save_clip",
    "load_clip",
    "ClipSummary",
    "read_clip_summary",
    "mask_missing_keypoints",
    "DatasetIndex",
    "write_dataset_index",
    "read_dataset_index",
    "atomic_write_bytes",
    "DATASET_FORMAT_VERSION",
    "CLIP_FORMAT_VERSION",
    "INDEX_NAME",
]

DATASET_FORMAT_VERSION = 1
CLIP_FORMAT_VERSION = 2  # 2: keypoint and camera fields have a leading view axis
_READABLE_CLIP_VERSIONS = (1, 2)  # 1: one view, stored without the axis
INDEX_NAME = "dataset.json"
_MAKE_ONE = ("make one with `videomdm data lafan1 --out DIR`, `videomdm data mocap SRC --out DIR` or "
             "`videomdm data humanml3d SRC --out DIR`")

_ARRAY_FIELDS = ("gt_3d", "teacher_3d", "keypoints_2d", "confidence", "K", "R", "t")
_FLOAT32_FIELDS = ("gt_3d", "teacher_3d", "keypoints_2d", "confidence")  # K, R, t are kept in float64
_VIEW_FIELDS = ("keypoints_2d", "confidence", "K", "R", "t")  # the fields with a leading view axis


@dataclass
class Clip:
    """One clip: any of 3D ground truth, teacher 3D and 2D keypoints with their camera, plus provenance.

    Attributes:
        name: unique name within the dataset.
        fps: frames per second.
        skeleton: name of the 3D skeleton of ``gt_3d`` / ``teacher_3d`` (``"smpl22"``).
        source: provenance (file, frame range, ...).
        gt_3d: (T, J, 3) float32 world joints in metres (mocap benchmarks only), or None.
        teacher_3d: (T, J, 3) float32 lifter output in the world frame, metres, or None.
        keypoints_2d: (V, T, J2, 2) float32 pixels in ``keypoint_skeleton``'s joint order, one row per view, or
            None. Never NaN: missing keypoints carry confidence 0.
        confidence: (V, T, J2) float32 in [0, 1], present exactly when ``keypoints_2d`` is.
        keypoint_skeleton: skeleton name of the keypoints (``"coco17"``, ...), or None.
        K: (V, 3, 3) intrinsics in pixels, or None.
        R, t: world→camera rotation (V, 3, 3) and translation (V, 3) per view, or (V, T, 3, 3) and (V, T, 3) per view
            and frame: ``X_c = R X_w + t``. Both or neither, and only with ``K``.
        text: captions (may be empty).
        image_size: (width, height) in pixels (every view's), or None.

    A monocular clip may be given without the view axis (``keypoints_2d (T, J2, 2)``, ``confidence (T, J2)``,
    ``K (3, 3)``, ``R (3, 3)`` or ``(T, 3, 3)``, ``t (3,)`` or ``(T, 3)``): it is stored as V = 1. Which layout was
    given is read from ``keypoints_2d`` (3 or 4 dims), else from ``K`` (2 or 3 dims).
    """

    name: str
    fps: float
    skeleton: str
    source: str
    gt_3d: np.ndarray | None = None
    teacher_3d: np.ndarray | None = None
    keypoints_2d: np.ndarray | None = None
    confidence: np.ndarray | None = None
    keypoint_skeleton: str | None = None
    K: np.ndarray | None = None
    R: np.ndarray | None = None
    t: np.ndarray | None = None
    text: list[str] = field(default_factory=list)
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in _ARRAY_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, np.ndarray):
                setattr(self, name, np.asarray(value))
        if isinstance(self.text, (tuple, np.ndarray)):
            self.text = [str(s) for s in self.text]
        if self.image_size is not None:
            self.image_size = tuple(int(v) for v in self.image_size)  # type: ignore[assignment]
        if self._monocular_layout():
            for name in _VIEW_FIELDS:
                value = getattr(self, name)
                if value is not None:
                    setattr(self, name, value[None])  # one view: (1, ...)

    def _monocular_layout(self) -> bool:
        """Whether the keypoint and camera fields were given without the view axis (see the class docstring)."""
        if self.keypoints_2d is not None:
            return self.keypoints_2d.ndim == 3
        return self.K is not None and self.K.ndim == 2

    @property
    def num_frames(self) -> int:
        """T, from the first present of ``gt_3d``, ``teacher_3d``, ``keypoints_2d`` (0 when none is)."""
        for name in ("gt_3d", "teacher_3d"):
            value = getattr(self, name)
            if value is not None:
                return int(value.shape[0])
        return int(self.keypoints_2d.shape[1]) if self.keypoints_2d is not None else 0

    @property
    def num_views(self) -> int:
        """V, the number of views of the keypoints and cameras (0 for a clip without either)."""
        for name in ("keypoints_2d", "K"):
            value = getattr(self, name)
            if value is not None:
                return int(value.shape[0])
        return 0

    def view(self, index: int) -> "Clip":
        """The clip seen from view ``index`` alone (V = 1; the 3D fields, text and provenance shared)."""
        return self.select_views([index])

    def select_views(self, indices: list[int] | range) -> "Clip":
        """The clip seen from the views ``indices`` only, in that order (the 3D fields, text and provenance shared)."""
        indices = list(indices)
        bad = [i for i in indices if not 0 <= i < self.num_views]
        if bad or not indices:
            raise IndexError(f"clip {self.name!r} has {self.num_views} views, cannot select views {indices}")
        picked = {name: getattr(self, name)[indices] for name in _VIEW_FIELDS if getattr(self, name) is not None}
        return replace(self, **picked)

    def validate(self) -> "Clip":
        """Check shapes, frame counts, values and camera layout; raise :class:`DataError` naming the clip.

        Returns ``self`` so that ``clip.validate()`` can be chained.
        """
        where = f"clip {self.name!r}"

        def fail(message: str) -> DataError:
            return DataError(f"{where}: {message}")

        if not isinstance(self.name, str) or not self.name:
            raise fail("name must be a non-empty string")
        if not isinstance(self.fps, (int, float, np.floating, np.integer)) or not np.isfinite(self.fps) \
                or self.fps <= 0:
            raise fail(f"fps must be a positive number, got {self.fps!r}")
        if self.gt_3d is None and self.teacher_3d is None and self.keypoints_2d is None:
            raise fail("has none of gt_3d, teacher_3d, keypoints_2d")
        try:
            skeleton = get_skeleton(self.skeleton)
        except KeyError as err:
            raise fail(f"3D skeleton: {err.args[0]}") from None
        frames = self.num_frames
        if frames < 1:
            raise fail("has no frames")

        def check_frames(name: str, value: np.ndarray, axis: int = 0) -> None:
            if value.shape[axis] != frames:
                raise fail(f"{name} has {value.shape[axis]} frames but the clip has {frames}")

        views = self.num_views
        for name in _VIEW_FIELDS:
            value = getattr(self, name)
            if value is not None and (value.ndim < 2 or value.shape[0] != views):
                raise fail(f"{name} must have a leading view axis of {views} views (keypoints_2d (V, T, J2, 2), "
                           f"K (V, 3, 3), ...), got shape {value.shape}")

        for name in ("gt_3d", "teacher_3d"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.ndim != 3 or value.shape[1:] != (skeleton.num_joints, 3):
                raise fail(f"{name} must have shape (T, {skeleton.num_joints}, 3) for skeleton {skeleton.name}, got "
                           f"{value.shape}")
            check_frames(name, value)
            if not np.isfinite(value).all():
                raise fail(f"{name} contains NaN or infinite values")

        if (self.keypoints_2d is None) != (self.confidence is None):
            raise fail("keypoints_2d and confidence must be given together")
        if self.keypoints_2d is not None:
            kp, conf = self.keypoints_2d, self.confidence
            assert conf is not None
            if self.keypoint_skeleton is None:
                raise fail("keypoints_2d needs keypoint_skeleton (the skeleton of the 2D joints)")
            try:
                kp_skeleton = get_skeleton(self.keypoint_skeleton)
            except KeyError as err:
                raise fail(f"keypoint skeleton: {err.args[0]}") from None
            if kp.ndim != 4 or kp.shape[2:] != (kp_skeleton.num_joints, 2):
                raise fail(f"keypoints_2d must have shape (V, T, {kp_skeleton.num_joints}, 2) for skeleton "
                           f"{kp_skeleton.name}, got {kp.shape}")
            check_frames("keypoints_2d", kp, axis=1)
            if conf.shape != kp.shape[:3]:
                raise fail(f"confidence must have shape {kp.shape[:3]} (V, T, J2), got {conf.shape}")
            if not np.isfinite(kp).all():
                raise fail("keypoints_2d contains NaN or infinite values; store missing keypoints with confidence 0 "
                           "and any finite position")
            if not np.isfinite(conf).all() or conf.min() < 0 or conf.max() > 1:
                raise fail("confidence must lie in [0, 1] (and never be NaN)")

        if self.K is not None:
            if self.K.shape != (views, 3, 3) or not np.isfinite(self.K).all():
                raise fail(f"K must be finite (V, 3, 3) matrices, got shape {self.K.shape}")
        if (self.R is None) != (self.t is None):
            raise fail("R and t must be given together")
        if self.R is not None and self.K is None:
            raise fail("R, t need the intrinsics K")
        if self.R is not None and self.t is not None:
            R, t = self.R, self.t
            if R.shape == (views, 3, 3) and t.shape == (views, 3):
                pass
            elif R.ndim == 4 and R.shape[2:] == (3, 3) and t.ndim == 3 and t.shape[2] == 3:
                check_frames("R", R, axis=1)
                check_frames("t", t, axis=1)
            else:
                raise fail(f"R, t must be per view (V, 3, 3), (V, 3) or per view and frame (V, T, 3, 3), (V, T, 3); "
                           f"got {R.shape} and {t.shape}")
            if not (np.isfinite(R).all() and np.isfinite(t).all()):
                raise fail("R or t contains NaN or infinite values")
            identity_error = np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(3)).max()
            if identity_error > 1e-3 or (np.linalg.det(R) <= 0).any():
                raise fail(f"R is not a rotation matrix (|RᵀR − I| = {identity_error:.2g})")

            for name in ("gt_3d", "teacher_3d"):
                joints = getattr(self, name)
                if joints is None:
                    continue
                center = joints.mean(axis=1)  # (T, 3) the body's centre in the world
                R_f = R if R.ndim == 4 else R[:, None]  # (V, T or 1, 3, 3)
                t_f = t if t.ndim == 3 else t[:, None]  # (V, T or 1, 3)
                depth = (np.einsum("vtij,tj->vti", R_f, np.broadcast_to(center, (frames, 3))) + t_f)[..., 2]
                per_view = (depth <= 0).sum(axis=1)  # (V,) frames behind each view's camera (depth: (V, T))
                behind = int((depth <= 0).any(axis=0).sum())  # frames behind some view's camera
                message = (f"the subject ({name}) is behind the camera (its centre has depth ≤ 0) in {behind} of "
                           f"{frames} frames{'' if views == 1 else ' in some view'}")
                # The ground truth is always in view; a teacher may misplace a few frames (the 2D losses guard
                # points behind the camera), but a teacher behind the camera in most frames of every view is a
                # convention error (a monocular teacher lifted from one view of a rig may be far off in the others).
                if behind and (name == "gt_3d" or per_view.min() > frames // 2):
                    raise fail(f"{message}; check that R, t map world to camera (X_c = R X_w + t) and the units are "
                               f"metres")
                if behind:
                    warnings.warn(f"{where}: {message}; the 2D losses ignore those points", stacklevel=2)

        if not isinstance(self.text, list) or not all(isinstance(s, str) for s in self.text):
            raise fail("text must be a list of strings")
        if self.image_size is not None:
            if len(self.image_size) != 2 or min(self.image_size) <= 0:
                raise fail(f"image_size must be (width, height) in pixels, got {self.image_size}")
        return self


# --- clip files ------------------------------------------------------------------------------------------------------


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a binary temporary file in ``path``'s folder, then rename it to ``path``
    (:func:`videomdm.checkpoint.atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def save_clip(path: str | Path, clip: Clip) -> None:
    """Validate ``clip`` and write it to ``path`` (``.npz``) atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise DataError(f"{path}: clip files must end in .npz")
    clip.validate()
    arrays: dict[str, np.ndarray] = {
        "clip_format_version": np.array(CLIP_FORMAT_VERSION),
        "name": np.array(clip.name),
        "fps": np.array(float(clip.fps)),
        "skeleton": np.array(clip.skeleton),
        "source": np.array(clip.source),
        "text": np.array(clip.text, dtype=str) if clip.text else np.zeros(0, dtype="<U1"),
    }
    for name in _ARRAY_FIELDS:
        value = getattr(clip, name)
        if value is not None:
            arrays[name] = value.astype(np.float32 if name in _FLOAT32_FIELDS else np.float64)
    if clip.keypoint_skeleton is not None:
        arrays["keypoint_skeleton"] = np.array(clip.keypoint_skeleton)
    if clip.image_size is not None:
        arrays["image_size"] = np.array(clip.image_size, dtype=np.int64)
    atomic_write_bytes(path, lambda f: np.savez(f, **arrays))


def mask_missing_keypoints(keypoints: np.ndarray, confidence: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``(..., J2, 2)`` (e.g. ``(V, T, J2, 2)``) that are NaN/inf (or whose confidence ``(..., J2)`` is
    NaN) become ``(0, 0)`` with confidence 0.

    The record never holds NaN (DESIGN.md data contract); detectors and keypoint files often mark a missing joint
    with NaN instead. A warning naming ``where`` counts the masked keypoints; nothing else changes.
    """
    missing = ~np.isfinite(keypoints).all(axis=-1) | ~np.isfinite(confidence)  # (..., J2)
    if not missing.any():
        return keypoints, confidence
    warnings.warn(f"{where}: {int(missing.sum())} of {missing.size} keypoints are NaN or infinite; they are masked "
                  f"(confidence 0)", stacklevel=3)
    keypoints = np.where(missing[..., None], 0.0, keypoints).astype(keypoints.dtype)
    confidence = np.where(missing, 0.0, confidence).astype(confidence.dtype)
    return keypoints, confidence


def load_clip(path: str | Path, *, skip: tuple[str, ...] = ()) -> Clip:
    """Read a clip written by :func:`save_clip` and validate it; :class:`DataError` naming the file otherwise.

    ``skip`` names array fields not to read (e.g. ``("gt_3d",)`` for training that must never see ground truth).
    NaN keypoints are masked with a warning (:func:`mask_missing_keypoints`).
    """
    path = Path(path)
    unknown = set(skip) - set(_ARRAY_FIELDS)
    if unknown:
        raise ValueError(f"cannot skip unknown clip fields {sorted(unknown)}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files if key not in skip}
    except FileNotFoundError:
        raise DataError(f"{path}: clip file does not exist") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as err:
        raise DataError(f"{path}: cannot read clip file (corrupt or not a .npz written by save_clip): {err}") from None
    if not isinstance(arrays, dict) or "clip_format_version" not in arrays:
        raise DataError(f"{path}: not a clip file (no clip_format_version)")
    version = int(arrays["clip_format_version"])
    if version not in _READABLE_CLIP_VERSIONS:
        raise DataError(f"{path}: clip format version {version}, this code reads versions "
                        f"{', '.join(map(str, _READABLE_CLIP_VERSIONS))}")
    if version == 1:  # one view, stored without the view axis
        for name in _VIEW_FIELDS:
            if name in arrays:
                arrays[name] = arrays[name][None]
    missing = [k for k in ("name", "fps", "skeleton", "source", "text") if k not in arrays]
    if missing:
        raise DataError(f"{path}: clip file lacks the fields {missing}")

    def string(key: str) -> str | None:
        return str(arrays[key][()]) if key in arrays else None

    if "keypoints_2d" in arrays and "confidence" in arrays \
            and arrays["keypoints_2d"].shape[:-1] == arrays["confidence"].shape:
        arrays["keypoints_2d"], arrays["confidence"] = mask_missing_keypoints(arrays["keypoints_2d"],
                                                                              arrays["confidence"], str(path))
    image_size = arrays.get("image_size")
    clip = Clip(
        name=str(string("name")),
        fps=float(arrays["fps"]),
        skeleton=str(string("skeleton")),
        source=str(string("source")),
        keypoint_skeleton=string("keypoint_skeleton"),
        text=[str(s) for s in arrays["text"]],
        image_size=None if image_size is None else (int(image_size[0]), int(image_size[1])),
        **{name: arrays.get(name) for name in _ARRAY_FIELDS},
    )
    try:
        clip.validate()
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    return clip


@dataclass
class ClipSummary:
    """What a dataset index needs of one clip file, read without loading its arrays.

    Attributes:
        name: the clip's name.
        text: its captions.
        frames: frame count of each array field present in the file (``{"gt_3d": T, ...}``).
        views: V, the number of views of its keypoints and cameras (0 without either).
    """

    name: str
    text: list[str]
    frames: dict[str, int]
    views: int = 0


def read_clip_summary(path: str | Path) -> ClipSummary:
    """The name, captions and per-field frame counts of a clip file, from the array headers only (the motion and
    keypoint data are not read, so indexing a large dataset costs a few small reads per clip).

    The arrays themselves are checked when the clip is loaded (:func:`load_clip`); :class:`DataError` naming the file
    for anything unreadable here.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
            if "clip_format_version" not in members:
                raise DataError(f"{path}: not a clip file (no clip_format_version)")
            missing = [key for key in ("name", "text") if key not in members]
            if missing:
                raise DataError(f"{path}: clip file lacks the fields {missing}")

            def small(key: str) -> np.ndarray:
                with archive.open(members[key]) as f:
                    return np.lib.format.read_array(f, allow_pickle=False)

            viewed = int(small("clip_format_version")) >= 2  # view fields carry a leading view axis
            frames, views = {}, 0
            for key in _ARRAY_FIELDS:
                if key in members:
                    with archive.open(members[key]) as f:
                        version = np.lib.format.read_magic(f)
                        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0)
                        shape = read_header(f)[0]
                    if key in _VIEW_FIELDS and viewed:
                        views, shape = (int(shape[0]) if shape else 0), shape[1:]
                    elif key in _VIEW_FIELDS:
                        views = 1
                    frames[key] = int(shape[0]) if shape else 0
            return ClipSummary(name=str(small("name")[()]), text=[str(s) for s in small("text")], frames=frames,
                               views=views)
    except FileNotFoundError:
        raise DataError(f"{path}: clip file does not exist") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as err:
        raise DataError(f"{path}: cannot read clip file (corrupt or not a .npz written by save_clip): {err}") from None


# --- dataset folder --------------------------------------------------------------------------------------------------


@dataclass
class DatasetIndex:
    """The contents of ``dataset.json``.

    Attributes:
        root: the dataset folder.
        name, fps, skeleton: dataset name, frame rate of every clip, 3D skeleton name.
        splits: split name → clip paths relative to ``root``.
        license: license text of the source data, or None.
        extra: free-form provenance (e.g. where normalization statistics are).
        format_version: version of this index format.
    """

    root: Path
    name: str
    fps: float
    skeleton: str
    splits: dict[str, list[str]]
    license: str | None
    extra: dict[str, Any]
    format_version: int = DATASET_FORMAT_VERSION

    def clip_paths(self, split: str) -> list[Path]:
        """Absolute paths of the clips of ``split``; :class:`DataError` for an unknown or empty split."""
        if split not in self.splits:
            raise DataError(f"{self.root / INDEX_NAME}: no split {split!r}; the dataset has {sorted(self.splits)}")
        if not self.splits[split]:
            raise DataError(f"{self.root / INDEX_NAME}: split {split!r} is empty")
        return [self.root / rel for rel in self.splits[split]]


def _check_relative(root: Path, rel: str) -> None:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not rel:
        raise DataError(f"{root / INDEX_NAME}: clip path {rel!r} must be relative to the dataset folder, without '..'")


def write_dataset_index(root: str | Path, *, name: str, fps: float, skeleton: str, splits: dict[str, list[str]],
                        license: str | None, extra: dict[str, Any]) -> Path:
    """Write ``root/dataset.json`` atomically and return its path. Clip paths are relative to ``root``."""
    root = Path(root)
    for rels in splits.values():
        for rel in rels:
            _check_relative(root, rel)
    index = {
        "format_version": DATASET_FORMAT_VERSION,
        "name": name,
        "fps": float(fps),
        "skeleton": skeleton,
        "license": license,
        "splits": {split: list(rels) for split, rels in splits.items()},
        "num_clips": {split: len(rels) for split, rels in splits.items()},
        "extra": extra,
    }
    text = json.dumps(index, indent=2, default=str) + "\n"
    path = root / INDEX_NAME
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))
    return path


def read_dataset_index(root: str | Path) -> DatasetIndex:
    """Read and check ``root/dataset.json`` (every listed clip file must exist)."""
    root = Path(root)
    path = root / INDEX_NAME
    what = (f"a dataset folder holds {INDEX_NAME} and clips/<split>/*.npz; {_MAKE_ONE}")
    if not root.exists():
        raise DataError(f"{root}: dataset folder does not exist ({what})")
    if not root.is_dir():
        raise DataError(f"{root}: is not a folder ({what})")
    if not any(root.iterdir()):
        raise DataError(f"{root}: dataset folder is empty ({what})")
    if not path.is_file():
        raise DataError(f"{root}: no {INDEX_NAME} in this folder; it is not a dataset or its preparation did not "
                        f"finish ({what})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read the dataset index: {err}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: the dataset index must be a JSON object")
    version = data.get("format_version")
    if version != DATASET_FORMAT_VERSION:
        raise DataError(f"{path}: unknown format_version {version!r} (this code reads {DATASET_FORMAT_VERSION}); "
                        f"rebuild the dataset with this version ({_MAKE_ONE})")
    missing = [k for k in ("name", "fps", "skeleton", "splits") if k not in data]
    if missing:
        raise DataError(f"{path}: the dataset index lacks {missing}")
    splits = data["splits"]
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise DataError(f"{path}: 'splits' must map split names to lists of clip paths")
    absent = []
    for rels in splits.values():
        for rel in rels:
            _check_relative(root, rel)
            if not (root / rel).is_file():
                absent.append(rel)
    if absent:
        shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        raise DataError(f"{path}: {len(absent)} listed clip files do not exist: {shown}")
    try:
        fps = float(data["fps"])
    except (TypeError, ValueError):
        raise DataError(f"{path}: fps must be a number, got {data['fps']!r}") from None
    return DatasetIndex(root=root, name=str(data["name"]), fps=fps, skeleton=str(data["skeleton"]),
                        splits={str(k): [str(r) for r in v] for k, v in splits.items()},
                        license=data.get("license"), extra=dict(data.get("extra") or {}), format_version=version)
