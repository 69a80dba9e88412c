"""HumanML3D folder → this project's dataset format.

Expected layout of a HumanML3D root (as produced by the HumanML3D scripts)::

    ROOT/
      new_joints/<id>.npy       (T, 22, 3) SMPL-22 joints, metres, y up, 20 fps          required
      texts/<id>.txt            one caption per line: ``caption#tokens#start#end``       required (a missing file
                                                                                          gives a clip without text)
      train.txt, val.txt, test.txt   one id per line                                       the requested ones
      new_joint_vecs/<id>.npy   (T - 1, 263) HumanML3D features                          optional, shape-checked
      Mean.npy, Std.npy         (263,) statistics of those features                      optional, copied

Caption ranges: ``start``/``end`` are seconds; ``0.0#0.0`` (or ``nan``) means the whole clip. A caption with a range
describes the sub-clip of frames ``[int(start · 20), int(end · 20))`` (HumanML3D's own rule); captions with the same
range form one sub-clip, written as a separate clip ``<id>_<first>_<end>``. As in HumanML3D's loader, the whole clip
is written when it has whole-clip captions or no captions at all, and left out when every caption names a sub-range.
Clips shorter than ``min_frames`` are skipped and counted (HumanML3D also drops clips of 200 frames or more; we keep
them, the training sampler crops).

Ids listed in a split file without a ``new_joints`` file are skipped with a warning and listed in the summary.
``Mean.npy``/``Std.npy`` are HumanML3D's statistics of *its* 263-dim features (T − 1 frames, raw facing); they are
copied to ``OUT/humanml3d_mean_std.npz`` for comparison with published numbers, not for normalizing this project's
features (which come from :class:`videomdm.representation.Normalizer`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..skeleton import SMPL_22
from .clip import Clip
from .errors import DataError
from .writer import DatasetWriter

__all__ = ["convert_humanml3d", "humanml3d_clips", "read_captions", "HUMANML3D_FPS", "HUMANML3D_FEATURE_DIM",
           "MEAN_STD_FILE"]

HUMANML3D_FPS = 20.0
HUMANML3D_FEATURE_DIM = 12 * SMPL_22.num_joints - 1  # 263
MEAN_STD_FILE = "humanml3d_mean_std.npz"


def read_captions(path: Path, fps: float = HUMANML3D_FPS) -> dict[tuple[int, int] | None, list[str]]:
    """Captions of one ``texts/<id>.txt``, grouped by frame range.

    Returns:
        ``{None: [whole-clip captions], (first, end): [captions of frames first..end-1], ...}``.
    """
    groups: dict[tuple[int, int] | None, list[str]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read captions: {err}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit("#", 3)  # the caption itself may contain '#'
        if len(parts) != 4:
            raise DataError(f"{path}: line {number}: expected 'caption#tokens#start#end', found {line[:80]!r}")
        caption = parts[0].strip()
        try:
            start, end = float(parts[2]), float(parts[3])
        except ValueError:
            raise DataError(f"{path}: line {number}: start/end must be numbers (seconds), found "
                            f"{parts[2]!r}, {parts[3]!r}") from None
        start = 0.0 if np.isnan(start) else start
        end = 0.0 if np.isnan(end) else end
        key = None if start == 0.0 and end == 0.0 else (int(start * fps), int(end * fps))
        if caption:
            groups.setdefault(key, []).append(caption)
    return groups


def _load_joints(path: Path) -> np.ndarray:
    try:
        joints = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot read joints: {err}") from None
    if joints.ndim != 3 or joints.shape[1:] != (SMPL_22.num_joints, 3) or len(joints) == 0:
        raise DataError(f"{path}: expected joints of shape (T, {SMPL_22.num_joints}, 3), got {joints.shape}")
    if not np.isfinite(joints).all():
        raise DataError(f"{path}: joints of shape {joints.shape} contain NaN or infinite values")
    return joints.astype(np.float32)


def _check_feature_vectors(path: Path, num_frames: int) -> None:
    """``new_joint_vecs/<id>.npy`` must be (T - 1, 263) when present (only its header is read)."""
    if not path.is_file():
        return
    try:
        vecs = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot read feature vectors: {err}") from None
    if vecs.shape != (num_frames - 1, HUMANML3D_FEATURE_DIM):
        raise DataError(f"{path}: expected shape ({num_frames - 1}, {HUMANML3D_FEATURE_DIM}) for {num_frames} joint "
                        f"frames, got {vecs.shape}")


def _read_mean_std(root: Path) -> tuple[np.ndarray, np.ndarray] | None:
    mean_path, std_path = root / "Mean.npy", root / "Std.npy"
    if not mean_path.exists() and not std_path.exists():
        return None
    arrays = []
    for path in (mean_path, std_path):
        if not path.is_file():
            other = std_path if path == mean_path else mean_path
            raise DataError(f"{path}: missing while {other.name} exists (HumanML3D ships both)")
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise DataError(f"{path}: cannot read: {err}") from None
        if value.shape != (HUMANML3D_FEATURE_DIM,) or not np.isfinite(value).all():
            raise DataError(f"{path}: expected {HUMANML3D_FEATURE_DIM} finite values, got shape {value.shape}")
        arrays.append(value.astype(np.float32))
    return arrays[0], arrays[1]


def _read_split(path: Path) -> list[str]:
    try:
        ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read split file: {err}") from None
    return list(dict.fromkeys(i for i in ids if i))  # drop blanks and repeats, keep order


def convert_humanml3d(root: str | Path, out_dir: str | Path, *, splits: Sequence[str] = ("train", "val", "test"),
                      min_frames: int = 40, overwrite: bool = False) -> dict[str, Any]:
    """Convert a HumanML3D folder into a dataset folder (module docstring).

    Args:
        root: HumanML3D root folder.
        out_dir: dataset folder to create (refused if it holds a dataset, unless ``overwrite``).
        splits: split files to read (``<split>.txt``).
        min_frames: clips (whole or sub-clips) shorter than this are skipped.
        overwrite: replace an existing dataset in ``out_dir``.

    Returns:
        summary: ``{"splits": {split: {"ids", "clips", "subclips", "frames", "seconds"}}, "skipped_missing_joints":
        {split: [ids]}, "skipped_too_short": n, "subclip_only_ids": n, "ids_without_text": n, "mean_std": file|None}``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: HumanML3D folder does not exist")
    parts = [root / "new_joints", root / "texts"] + [root / f"{s}.txt" for s in splits]
    absent = [p.name + ("/" if p.suffix == "" else "") for p in parts if not p.exists()]
    if absent:
        raise DataError(f"{root}: not a HumanML3D folder: missing {absent} (expected new_joints/, texts/ and the split "
                        f"files {[f'{s}.txt' for s in splits]})")
    split_ids = {split: _read_split(root / f"{split}.txt") for split in splits}
    mean_std = _read_mean_std(root)

    tally: dict[str, Any] = {"missing": {}, "subclips": {}, "too_short": 0, "subclip_only": 0, "without_text": 0}
    with DatasetWriter(out_dir, splits=list(split_ids), replace=overwrite, owns=(MEAN_STD_FILE,)) as writer:
        if mean_std is not None:
            mean, std = mean_std
            writer.write_file(MEAN_STD_FILE, lambda f: np.savez(f, mean=mean, std=std))
        for split, clip in humanml3d_clips(root, split_ids, min_frames=min_frames, tally=tally):
            writer.add(split, clip)
        missing = tally["missing"]
        skipped = sum(len(v) for v in missing.values())
        extra = {"kind": "humanml3d", "min_frames": min_frames,
                 "humanml3d_mean_std": MEAN_STD_FILE if mean_std is not None else None,
                 "humanml3d_mean_std_note": "HumanML3D's statistics of its own 263-dim features (T-1 frames, raw "
                                            "facing); for comparison only, not this project's Normalizer",
                 "skipped_missing_joints": missing}
        writer.commit(name="humanml3d", fps=HUMANML3D_FPS, skeleton="smpl22", extra=extra,
                      license="HumanML3D: see https://github.com/EricGuo5513/HumanML3D (AMASS/HumanAct12 licenses)")
    if skipped:
        examples = [i for v in missing.values() for i in v][:5]
        warnings.warn(f"{root / 'new_joints'}: {skipped} ids listed in the split files have no joints file and were "
                      f"skipped (e.g. {examples}); the summary lists them all", stacklevel=2)
    summary_splits = {split: {"ids": len(ids) - len(missing[split]), "clips": writer.num_clips[split],
                              "subclips": tally["subclips"][split], "frames": writer.frames[split],
                              "seconds": round(writer.frames[split] / HUMANML3D_FPS, 2)}
                      for split, ids in split_ids.items()}
    return {"splits": summary_splits, "skipped_missing_joints": missing, "skipped_too_short": tally["too_short"],
            "subclip_only_ids": tally["subclip_only"], "ids_without_text": tally["without_text"],
            "mean_std": MEAN_STD_FILE if mean_std is not None else None}


def humanml3d_clips(root: Path, split_ids: dict[str, list[str]], *, min_frames: int,
                    tally: dict[str, Any]) -> Iterator[tuple[str, Clip]]:
    """``(split, clip)`` for every motion id of every split (module docstring: whole clips and sub-clips, ``gt_3d``
    (T, 22, 3) metres at 20 fps, captions as ``text``). What is left out is counted in ``tally``: ``missing``
    (split → ids without a joints file), ``too_short``, ``subclip_only``, ``without_text``, and ``subclips``
    (split → sub-clips yielded)."""
    for split, ids in split_ids.items():
        tally["missing"][split], tally["subclips"][split] = [], 0
        for motion_id in ids:
            joints_path = root / "new_joints" / f"{motion_id}.npy"
            if not joints_path.is_file():
                tally["missing"][split].append(motion_id)
                continue
            joints = _load_joints(joints_path)  # (T, 22, 3)
            _check_feature_vectors(root / "new_joint_vecs" / f"{motion_id}.npy", len(joints))
            text_path = root / "texts" / f"{motion_id}.txt"
            if text_path.is_file():
                groups = read_captions(text_path)
            else:
                groups = {}
                tally["without_text"] += 1
            pieces: list[tuple[str, int, int, list[str]]] = []  # (name, first, end, captions)
            if None in groups or not groups:
                pieces.append((motion_id, 0, len(joints), groups.get(None, [])))
            else:
                tally["subclip_only"] += 1
            for key, captions in groups.items():
                if key is not None:
                    first, end = key[0], min(key[1], len(joints))
                    pieces.append((f"{motion_id}_{first:04d}_{end:04d}", first, end, captions))
            for name, first, end, captions in pieces:
                if end - first < min_frames:
                    tally["too_short"] += 1
                    continue
                tally["subclips"][split] += name != motion_id
                yield split, Clip(name=name, fps=HUMANML3D_FPS, skeleton="smpl22",
                                  source=f"humanml3d {motion_id} frames [{first}, {end})", gt_3d=joints[first:end],
                                  text=list(captions))
