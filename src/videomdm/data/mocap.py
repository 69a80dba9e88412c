"""Mocap joint sequences (BVH or joint ``.npy``) in SMPL-22 order, resampling and windowing.

A :class:`MocapSequence` holds ``joints (T, 22, 3)`` float32 metres in SMPL-22 order (HumanML3D's), y up, in the
file's own world frame (no canonicalization here: :func:`videomdm.representation.canonicalize` does that per window).

Accepted files:

- ``.bvh`` whose joint names include all of LAFAN1's 22 names (``Hips``, ``LeftUpLeg``, ...; mapped with
  ``joint_map(LAFAN_22, SMPL_22)``) or all of SMPL-22's names (``pelvis``, ``left_hip``, ...). Extra joints are
  ignored. Units are detected as described in :mod:`videomdm.data.bvh`.
- ``.npy`` holding ``(T, 22, 3)`` joint positions in SMPL-22 order, metres, y up (:func:`load_joints`). Its fps
  comes from ``npy_fps`` or from the JSON file beside it (:func:`recorded_fps`: ``<name>.json`` holding
  ``{"fps": ...}``, or ``samples.json`` for a ``joints.npy``).

:func:`load_joints`, :func:`check_joints` and :func:`recorded_fps` are also what the ``render``, ``export`` and
``view`` commands use to read a joints file.

**Split by time.** :func:`build_mocap_dataset` (behind ``videomdm data mocap`` and ``data lafan1``) resamples each
take to the model's fps and splits it by time into up to three consecutive parts: the first ``lifter_fraction`` of its
frames are ``lifter`` (the 2D→3D lifter's training data, disjoint from everything the lifter will later lift), the
next part ``train``, the last ``test_fraction`` ``test``. Windows are cut inside each part, so no window crosses a
boundary and no frame is in two splits. Train and lifter windows overlap by half (stride = window/2), test windows do
not (stride = window); a shorter tail window is kept when it has at least half a window of frames. Every take's clips
come from :func:`take_clips` and are written by :class:`videomdm.data.writer.DatasetWriter`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..skeleton import LAFAN_22, SMPL_22, Skeleton, joint_map
from .bvh import read_bvh
from .clip import Clip
from .errors import DataError
from .writer import DatasetWriter

__all__ = ["MocapSequence", "load_mocap", "check_joints", "load_joints", "read_sidecar", "recorded_fps", "resample",
           "resample_indices", "window_starts", "find_mocap_files", "MOCAP_SUFFIXES", "split_ranges", "take_clips",
           "build_mocap_dataset"]

MOCAP_SUFFIXES = (".bvh", ".npy")


@dataclass
class MocapSequence:
    """One mocap take.

    Attributes:
        joints: (T, 22, 3) float32 world positions in metres, SMPL-22 joint order, y up.
        fps: frames per second.
        source: where it came from (file name and skeleton), for provenance.
    """

    joints: np.ndarray
    fps: float
    source: str

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])


def _select_bvh_joints(path: Path, names: list[str], positions: np.ndarray) -> tuple[np.ndarray, Skeleton]:
    """(T, 22, 3) SMPL-22 positions from a BVH's (T, J, 3) positions, by joint name."""
    lookup = {n: i for i, n in enumerate(names)}
    missing: dict[str, list[str]] = {}
    for skeleton in (LAFAN_22, SMPL_22):
        absent = [n for n in skeleton.joint_names if n not in lookup]
        if not absent:
            picked = positions[:, [lookup[n] for n in skeleton.joint_names]]  # (T, 22, 3) in skeleton's order
            mapped, present = joint_map(skeleton, SMPL_22).apply(picked)
            assert present.all()
            return mapped, skeleton
        missing[skeleton.name] = absent
    closest = min(missing, key=lambda k: len(missing[k]))
    raise DataError(
        f"{path}: the BVH joint names match neither LAFAN1's nor SMPL-22's 22 joints; closest is {closest}, which "
        f"misses {missing[closest]} (the file has {names})"
    )


def check_joints(joints: np.ndarray, skeleton: Skeleton, where: str, min_frames: int = 1) -> np.ndarray:
    """``joints`` as float64 ``(T, J, 3)`` for ``skeleton``; :class:`DataError` naming ``where`` for a wrong shape, a
    non-numeric dtype, fewer than ``min_frames`` frames, or NaN / infinite values."""
    joints = np.asarray(joints)
    if joints.ndim != 3 or joints.shape[1:] != (skeleton.num_joints, 3):
        raise DataError(f"{where}: expected joints of shape (T, {skeleton.num_joints}, 3) for skeleton "
                        f"{skeleton.name}, got {joints.shape}")
    if not np.issubdtype(joints.dtype, np.number):
        raise DataError(f"{where}: expected numbers, got dtype {joints.dtype}")
    if joints.shape[0] < min_frames:
        raise DataError(f"{where}: need at least {min_frames} frame(s), got {joints.shape[0]}")
    finite = np.isfinite(joints).all(axis=(1, 2))
    if not finite.all():
        raise DataError(f"{where}: joints of shape {joints.shape} contain NaN or infinite values (first at frame "
                        f"{int(np.argmin(finite))})")
    return joints.astype(np.float64)


def load_joints(path: str | Path, skeleton: Skeleton = SMPL_22, *, several: bool = True) -> np.ndarray:
    """Read a joints ``.npy`` (metres, y up, ``skeleton``'s joint order), every motion checked by
    :func:`check_joints`.

    Args:
        several: accept ``(T, J, 3)`` (one motion) or ``(N, T, J, 3)`` (``N`` motions, as ``videomdm sample``
            writes) and return ``(N, T, J, 3)``; else accept and return only ``(T, J, 3)``.

    Returns:
        float64 joints. Raises :class:`DataError` naming the file (and the motion) for a missing or unreadable file or
        bad joints.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot read as a .npy array ({err})") from None
    if not several:
        return check_joints(array, skeleton, str(path))
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or len(array) == 0:
        raise DataError(f"{path}: expected joints of shape (T, {skeleton.num_joints}, 3) or (N, T, "
                        f"{skeleton.num_joints}, 3) for skeleton {skeleton.name}, got {array.shape}")
    return np.stack([check_joints(m, skeleton, str(path) if len(array) == 1 else f"{path} (motion {i})")
                     for i, m in enumerate(array)])


def _sidecar_path(path: Path) -> Path:
    """The JSON file beside a joints file: ``samples.json`` for a ``joints.npy``, else ``<name>.json``."""
    return path.parent / "samples.json" if path.name == "joints.npy" else path.with_suffix(".json")


def read_sidecar(path: str | Path) -> dict:
    """What is recorded beside a joints file (:func:`_sidecar_path`): ``fps`` and ``texts`` in the ``samples.json``
    that ``videomdm sample`` writes, ``fps`` and ``text`` in a ``<name>.json``; {} when there is no such file."""
    candidate = _sidecar_path(Path(path))
    if not candidate.is_file():
        return {}
    try:
        info = json.loads(candidate.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{candidate}: not valid JSON ({err})") from None
    if not isinstance(info, dict):
        raise DataError(f"{candidate}: expected a JSON object")
    return info


def recorded_fps(path: str | Path) -> float | None:
    """The frame rate recorded beside a joints file (:func:`read_sidecar`'s ``fps``), or None when none is.

    Raises :class:`DataError` naming the JSON file when its ``fps`` is not a positive number.
    """
    path = Path(path)
    value = read_sidecar(path).get("fps")
    if value is None:
        return None
    try:
        fps = float(value)
    except (TypeError, ValueError):
        fps = float("nan")
    if not np.isfinite(fps) or fps <= 0:
        raise DataError(f"{_sidecar_path(path)}: fps must be a positive number, got {value!r}")
    return fps


def _load_npy(path: Path, npy_fps: float | None) -> MocapSequence:
    joints = load_joints(path, SMPL_22, several=False)
    fps = float(npy_fps) if npy_fps is not None else recorded_fps(path)
    if fps is None:
        raise DataError(f"{path}: a joints .npy has no frame rate; pass npy_fps or write "
                        f"{_sidecar_path(path).name} with {{\"fps\": 30}} next to it")
    if not np.isfinite(fps) or fps <= 0:
        raise DataError(f"{path}: fps must be positive, got {fps}")
    return MocapSequence(joints.astype(np.float32), fps, f"{path.name} (smpl22 npy)")


def load_mocap(path: str | Path, *, unit: str = "auto", npy_fps: float | None = None) -> MocapSequence:
    """Load a ``.bvh`` or joints ``.npy`` file as SMPL-22 joints in metres (see module docstring).

    Args:
        path: the file.
        unit: BVH length unit (``"auto"``, ``"m"``, ``"cm"``, ``"mm"``, ``"inch"``); ignored for ``.npy``.
        npy_fps: frame rate of a ``.npy`` file (else read from the sidecar ``<name>.json``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".bvh":
        motion = read_bvh(path, unit=unit)
        joints, skeleton = _select_bvh_joints(path, motion.joint_names, motion.positions)
        source = f"{path.name} ({skeleton.name} bvh, {motion.unit})"
        return MocapSequence(joints.astype(np.float32), motion.fps, source)
    if suffix == ".npy":
        return _load_npy(path, npy_fps)
    raise DataError(f"{path}: unsupported mocap file type {path.suffix!r} (expected one of {MOCAP_SUFFIXES})")


def resample_indices(num_frames: int, src_fps: float, dst_fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the frames of a ``num_frames``-long sequence resampled from ``src_fps`` to ``dst_fps`` fall.

    Output frame ``k`` is at time ``k / dst_fps`` (the first frames coincide), i.e. at fractional input frame
    ``s_k = k · src / dst``; frames are produced while that time is within the input's span ``(T − 1) / src_fps``, so
    ``T' = floor((T − 1) · dst / src) + 1``. Output frame ``k`` is ``(1 − w_k) · x[lower_k] + w_k · x[upper_k]`` with
    ``lower_k = floor(s_k)``, ``upper_k = lower_k + 1`` and ``w_k = s_k − lower_k``; an output frame within 1e-9 of
    an input frame takes that frame alone (``upper_k = lower_k``, ``w_k = 0``).

    Returns:
        ``lower (T',)``, ``upper (T',)`` int64 input frames and ``weight (T',)`` float64 of ``upper``.
    """
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"fps must be positive, got {src_fps} -> {dst_fps}")
    if num_frames == 0:
        raise ValueError("cannot resample an empty sequence")
    count = int(np.floor((num_frames - 1) * dst_fps / src_fps + 1e-9)) + 1
    source_index = np.arange(count) * (src_fps / dst_fps)  # (T',) fractional input frame of each output frame
    lower = np.minimum(np.floor(source_index).astype(np.int64), num_frames - 1)
    on_frame = source_index - lower < 1e-9
    upper = np.where(on_frame, lower, np.minimum(lower + 1, num_frames - 1))
    weight = np.where(on_frame, 0.0, source_index - lower)
    return lower, upper, weight


def resample(joints: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Resample ``(T, ...)`` values (joint positions ``(T, J, 3)``) from ``src_fps`` to ``dst_fps`` by linear
    interpolation in time at the frames of :func:`resample_indices`. Linear interpolation is right for positions (it
    is not for rotations, which this never touches): a constant-velocity motion stays exactly constant-velocity.

    Returns:
        ``(T', ...)`` array of the input's dtype (a copy when the rates are equal).
    """
    joints = np.asarray(joints)
    lower, upper, weight = resample_indices(joints.shape[0], src_fps, dst_fps)
    if src_fps == dst_fps:
        return joints.copy()
    weight = weight.reshape(-1, *([1] * (joints.ndim - 1)))  # (T', 1, 1)
    data = joints.astype(np.float64)
    out = (1.0 - weight) * data[lower] + weight * data[upper]
    return out.astype(joints.dtype)


def window_starts(num_frames: int, length: int, stride: int, *, min_length: int | None = None) -> list[int]:
    """Start frames of windows ``[s, min(s + length, num_frames))`` over a sequence.

    Full windows start at ``0, stride, 2·stride, ...`` while they fit. With ``min_length``, one shorter tail window
    is added after the last full one (at the next stride step, or at 0 if no full window fits) when frames are left
    uncovered and the tail holds at least ``min_length`` frames. Without ``min_length`` only full windows are returned.
    """
    if length <= 0 or stride <= 0:
        raise ValueError(f"length and stride must be positive, got {length} and {stride}")
    starts = list(range(0, num_frames - length + 1, stride)) if num_frames >= length else []
    if min_length is not None:
        covered = starts[-1] + length if starts else 0
        tail = starts[-1] + stride if starts else 0
        if covered < num_frames and num_frames - tail >= max(min_length, 1):
            starts.append(tail)
    return starts


def find_mocap_files(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """Sorted ``.bvh`` / ``.npy`` files in ``folder`` (and below it with ``recursive``).

    Raises:
        DataError: the folder does not exist or holds no such file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in MOCAP_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no mocap files (expected {' or '.join(MOCAP_SUFFIXES)})")
    return files


def _split_windows(ranges: dict[str, tuple[int, int]], window: int) -> dict[str, list[tuple[int, int]]]:
    """(start, end) frame windows per split, each inside its split's frame range ``[begin, end)``."""
    half = max(window // 2, 1)
    windows = {}
    for split, (begin, end) in ranges.items():
        stride = window if split == "test" else half
        windows[split] = [(begin + s, min(begin + s + window, end))
                          for s in window_starts(end - begin, window, stride, min_length=half)]
    return windows


def split_ranges(num_frames: int, lifter_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """Frame ranges ``[begin, end)`` of the ``lifter`` (only when ``lifter_fraction > 0``), ``train`` and ``test``
    parts of one take of ``num_frames`` frames, in that order in time."""
    lifter_end = int(np.floor(lifter_fraction * num_frames))
    test_begin = int(np.floor((1.0 - test_fraction) * num_frames))
    ranges = {"lifter": (0, lifter_end)} if lifter_fraction > 0 else {}
    ranges.update({"train": (lifter_end, test_begin), "test": (test_begin, num_frames)})
    return ranges


def take_clips(name: str, source: str, joints: np.ndarray, windows: dict[str, list[tuple[int, int]]],
               fps: float) -> Iterator[tuple[str, Clip]]:
    """``(split, clip)`` for every window of one take: ``gt_3d = joints[start:end]`` ((T, 22, 3) metres at ``fps``),
    named ``<name>_<start:06d>``, in the order of ``windows`` (split → ``[(start, end), ...]`` frames)."""
    for split, split_windows in windows.items():
        for start, end in split_windows:
            yield split, Clip(name=f"{name}_{start:06d}", fps=float(fps), skeleton="smpl22",
                              source=f"{source} frames [{start}, {end}) at {fps:g} fps", gt_3d=joints[start:end],
                              teacher_3d=None)


def build_mocap_dataset(files: Sequence[str | Path], out_dir: str | Path, *, name: str, fps: float = 20.0,
                        window_frames: int = 196, test_fraction: float = 0.2, lifter_fraction: float = 0.0,
                        license: str | None = None,
                        overwrite: bool = False, unit: str = "auto", npy_fps: float | None = None) -> dict[str, Any]:
    """Build a ``gt_3d`` dataset folder from mocap files (module docstring: split by time, windows).

    Args:
        files: ``.bvh`` / ``.npy`` files (see :func:`videomdm.data.mocap.load_mocap`); file stems must be unique.
        out_dir: dataset folder to create (refused if it holds a dataset, unless ``overwrite``).
        name: dataset name for the index.
        fps: frame rate of the written clips (every take is resampled to it).
        window_frames: clip length in frames at ``fps``.
        test_fraction: share of each take's frames (its end) that goes to the test split; 0 gives no test clips.
        lifter_fraction: share of each take's frames (its start) that goes to a ``lifter`` split; 0 gives no such
            split.
        license: license text stored in the index.
        overwrite: replace an existing dataset in ``out_dir``.
        unit, npy_fps: passed to ``load_mocap``.

    Returns:
        summary: ``{"name", "fps", "window_frames", "files", "splits": {split: {"clips", "frames", "seconds"}},
        "takes": [...], "license"}``; ``frames`` counts the distinct frames of a split (windows overlap in train).
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if not 0.0 <= lifter_fraction < 1.0 - test_fraction:
        raise ValueError(f"lifter_fraction must be in [0, 1 - test_fraction), got {lifter_fraction}")
    if window_frames < 2:
        raise ValueError(f"window_frames must be at least 2, got {window_frames}")
    files = [Path(f) for f in files]
    if not files:
        raise DataError(f"{out_dir}: no mocap files to build the dataset from")
    stems = [f.stem for f in files]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise DataError(f"{out_dir}: several input files share the stems {duplicates}; clip names would collide")
    out_dir = Path(out_dir)
    split_names = (["lifter"] if lifter_fraction > 0 else []) + ["train", "test"]
    frames = {name: 0 for name in split_names}  # distinct frames (train windows overlap)
    takes = []
    with DatasetWriter(out_dir, splits=split_names, replace=overwrite) as writer:
        # Read everything first: a bad input file must fail before anything is written.
        loaded = []
        for path in files:
            sequence = load_mocap(path, unit=unit, npy_fps=npy_fps)
            loaded.append((path, sequence, resample(sequence.joints, sequence.fps, fps)))  # (T', 22, 3)
        for path, sequence, joints in loaded:
            num_frames = len(joints)
            ranges = split_ranges(num_frames, lifter_fraction, test_fraction)
            all_windows = _split_windows(ranges, window_frames)
            for split, clip in take_clips(path.stem, sequence.source, joints, all_windows, fps):
                writer.add(split, clip)
            for split, windows in all_windows.items():
                covered = np.zeros(num_frames, dtype=bool)
                for start, end in windows:
                    covered[start:end] = True
                frames[split] += int(covered.sum())
            take = {"file": path.name, "source": sequence.source, "source_fps": sequence.fps, "frames": num_frames}
            for split, frame_range in ranges.items():
                take[f"{split}_range"] = list(frame_range)
                take[f"{split}_clips"] = len(all_windows[split])
            takes.append(take)
        extra = {"kind": "mocap",
                 "split_rule": "by time: the first lifter_fraction of each take is lifter, the last test_fraction "
                               "test, the rest train",
                 "window_frames": window_frames, "lifter_fraction": lifter_fraction, "test_fraction": test_fraction,
                 "takes": takes}
        writer.commit(name=name, fps=fps, skeleton="smpl22", license=license, extra=extra)
    return {
        "name": name,
        "fps": float(fps),
        "window_frames": window_frames,
        "files": len(files),
        "splits": {split: {"clips": writer.num_clips[split], "frames": frames[split],
                           "seconds": round(frames[split] / fps, 2)} for split in split_names},
        "takes": takes,
        "license": license,
    }


