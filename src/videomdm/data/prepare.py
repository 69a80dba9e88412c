"""Build a 2D training dataset from a mocap dataset: virtual cameras, detector noise, and a teacher's 3D.

:func:`prepare_mocap_2d` reads a dataset whose clips carry ``gt_3d`` (e.g. made by the mocap importers), films every
clip with random virtual cameras (:func:`videomdm.data.virtual.observe_clip`), asks a teacher (a 2D→3D lifter) for
``teacher_3d`` from each observed clip, and writes the observed clips as a new dataset: exactly what ``2d``
supervision trains on, with ``gt_3d`` kept so the result can be evaluated against the truth.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..skeleton import get_skeleton
from .clip import Clip, load_clip, read_dataset_index
from .errors import DataError
from .shards import Shard
from .virtual import (DEFAULT_AZIMUTH_DEG, DEFAULT_DISTANCE, DEFAULT_ELEVATION_DEG, DEFAULT_FOCAL_PX,
                      DEFAULT_IMAGE_SIZE, DetectorNoise, observe_clip, observe_rig)
from .writer import DatasetWriter

__all__ = ["prepare_mocap_2d", "clip_rng", "first_views_dataset"]


def clip_rng(seed: int, split: str, name: str) -> np.random.Generator:
    """The generator of one source clip, a function of ``(seed, split, clip name)`` only (not of processing order)."""
    digest = hashlib.sha256(f"{split}\x00{name}".encode("utf-8")).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def _check_teacher_output(result: object, clip: Clip, split: str, expected: tuple[int, int, int]) -> np.ndarray:
    """The teacher's answer as ``(T, J, 3)`` float32, or DataError naming the clip."""
    try:
        teacher_3d = np.asarray(result, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise DataError(f"teacher output for clip {clip.name} (split {split}) is not an array: {error}") from None
    if teacher_3d.shape != expected:
        raise DataError(f"teacher output for clip {clip.name} (split {split}) has shape {teacher_3d.shape}, "
                        f"expected {expected} (T, J, 3)")
    if not np.isfinite(teacher_3d).all():
        bad = int((~np.isfinite(teacher_3d)).any(axis=(1, 2)).sum())
        raise DataError(f"teacher output for clip {clip.name} (split {split}) is not finite in {bad} frame(s)")
    return teacher_3d


def _check_overlap(src: Path, out: Path) -> None:
    """Refuse an ``out`` that contains ``src`` or lies inside it."""
    src_r, out_r = src.resolve(), out.resolve()
    if out_r == src_r or out_r in src_r.parents or src_r in out_r.parents:
        raise DataError(f"output {out} and source {src} must not contain each other")


def prepare_mocap_2d(
    src: Path,
    out: Path,
    *,
    teacher: Callable[[Clip], np.ndarray],
    teacher_name: str,
    num_cameras: int = 2,
    noise: DetectorNoise | None = None,
    seed: int = 0,
    splits: list[str] | None = None,
    distance: float | tuple[float, float] = DEFAULT_DISTANCE,
    elevation_deg: float | tuple[float, float] = DEFAULT_ELEVATION_DEG,
    azimuth_deg: float | tuple[float, float] = DEFAULT_AZIMUTH_DEG,
    focal_px: float | tuple[float, float] = DEFAULT_FOCAL_PX,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    overwrite: bool = False,
    progress: bool = True,
    shard: Shard | None = None,
    multiview: bool = False,
) -> dict:
    """Make a 2D training dataset (keypoints, cameras, teacher 3D, kept GT 3D) from a mocap dataset.

    For every clip of the chosen splits of ``src`` (clips with ``gt_3d (T, J, 3)``, metres): ``num_cameras``
    observed clips from :func:`~videomdm.data.virtual.observe_clip`, each given
    ``teacher_3d = teacher(observed_clip)`` (``(T, J, 3)`` metres, world frame, the dataset's skeleton), validated
    and saved as ``out/clips/<split>/<name>.npz`` (name ``<clip>_cam<k>``). The index keeps the split names, fps,
    skeleton and license of the source; its ``extra`` records the source path, teacher, noise, cameras and seed.

    The teacher receives the whole observed clip, ``gt_3d`` included (so a synthetic "noisy GT" teacher is
    possible); a real lifter must read only ``keypoints_2d``, ``confidence``, ``K``, ``R``, ``t``, ``fps``.

    Randomness: each source clip's cameras and noise come from :func:`clip_rng` ``(seed, split, clip name)``, so the
    output does not depend on processing order or on which other clips/splits are prepared.

    Safety (:class:`~videomdm.data.writer.DatasetWriter`): the dataset is written to a temporary folder next to
    ``out`` and moved to ``out`` only when complete, so a failure never leaves a partial dataset under ``out`` (nor touches an existing one). An existing dataset
    (``dataset.json`` or ``clips/``) in ``out`` is replaced only with ``overwrite=True``, and then only those two
    entries: other files in ``out`` are kept. ``out`` must not contain ``src`` nor lie inside it.

    Args:
        src: source dataset folder.
        out: output dataset folder.
        teacher: ``Clip → (T, J, 3)`` array; a wrong shape or a non-finite value raises DataError naming the clip.
        teacher_name: recorded in the index (e.g. ``"builtin-lifter"``).
        num_cameras: views per source clip.
        noise: detector noise model; default ``DetectorNoise()``.
        seed: base seed.
        splits: split names to prepare; None = all splits of the source.
        distance, elevation_deg, azimuth_deg, focal_px, image_size: camera ranges (see ``virtual.camera_for_clip``).
        overwrite: replace an existing dataset in ``out``.
        progress: show a tqdm bar (one step per source clip).
        shard: prepare only this part of the sources (:class:`~videomdm.data.shards.Shard`): its clips go into
            ``out/clips`` (never overwriting a file there) with a partial index in ``out/shards``; the index is
            written by :func:`~videomdm.data.shards.merge_shards` once every shard is done. ``overwrite`` does not
            apply. Merging the shards of any ``n`` gives the dataset an unsharded run writes.
        multiview: write one clip per source clip holding all ``num_cameras`` views (a virtual calibrated rig,
            :func:`~videomdm.data.virtual.observe_rig`, named ``<clip>_rig``) instead of one monocular clip per camera;
            the same cameras and noise. A monocular teacher lifts the rig's first view.

    Returns:
        A summary: ``{"out", "teacher", "num_cameras", "clips", "frames", "splits": {split: {"source_clips",
        "clips", "frames"}}}`` (frames counted over observed clips).
    """
    src, out = Path(src), Path(out)
    noise = DetectorNoise() if noise is None else noise
    if num_cameras < 1:
        raise ValueError(f"num_cameras must be >= 1, got {num_cameras}")
    index = read_dataset_index(src)
    chosen = list(index.splits) if splits is None else list(splits)
    unknown = [s for s in chosen if s not in index.splits]
    if unknown:
        raise DataError(f"{src}: no split(s) {unknown}; the dataset has {sorted(index.splits)}")
    _check_overlap(src, out)
    num_joints = get_skeleton(index.skeleton).num_joints
    camera_ranges = {"distance": distance, "elevation_deg": elevation_deg, "azimuth_deg": azimuth_deg,
                     "focal_px": focal_px, "image_size": tuple(image_size)}

    statistics: dict[str, dict[str, int]] = {}
    mine: dict[str, list[tuple[int, Path]]] = {}  # split → this run's sources with their positions
    position = 0  # over all chosen splits' sources, in index order (empty splits allowed)
    for split in chosen:
        mine[split] = []
        for rel in index.splits[split]:
            if shard is None or shard.selects(position):
                mine[split].append((position, index.root / rel))
            position += 1
    total = sum(len(m) for m in mine.values())
    with DatasetWriter(out, splits=chosen, replace=overwrite and shard is None, shard=shard) as writer, \
            tqdm(total=total, desc=f"prepare {out.name}", unit="clip", disable=not progress) as bar:
        for split in chosen:
            for position, path in mine[split]:
                source = load_clip(path)
                if source.gt_3d is None:
                    raise DataError(f"{path}: clip {source.name} has no gt_3d to film")
                film = observe_rig if multiview else observe_clip
                views = film(source, num_cameras=num_cameras, rng=clip_rng(seed, split, source.name), noise=noise,
                             **camera_ranges)
                views = [views] if multiview else views
                for view in views:
                    expected = (len(view.gt_3d), num_joints, 3)
                    view.teacher_3d = _check_teacher_output(teacher(view), view, split, expected)
                    writer.add(split, view, position=position)
                bar.update(1)
            statistics[split] = {"source_clips": len(mine[split]), "clips": writer.num_clips[split],
                                 "frames": writer.frames[split]}
        extra = {
            "source_dataset": str(src.resolve()),
            "source_name": index.name,
            "teacher": teacher_name,
            "noise": asdict(noise),
            "num_cameras": num_cameras,
            "multiview": multiview,
            "seed": seed,
            "cameras": camera_ranges,
        }
        writer.commit(name=f"{index.name}-2d", fps=index.fps, skeleton=index.skeleton, license=index.license,
                      extra=extra, statistics=statistics)
    return {
        "out": str(out),
        "teacher": teacher_name,
        "num_cameras": num_cameras,
        "multiview": multiview,
        "clips": sum(c["clips"] for c in statistics.values()),
        "frames": sum(c["frames"] for c in statistics.values()),
        "splits": statistics,
        **({} if shard is None else {"shard": f"{shard.index}/{shard.count}"}),
    }



def first_views_dataset(src: Path, out: Path, num_views: int, *, overwrite: bool = False) -> dict:
    """Write the dataset ``src`` with every clip cut to its first ``num_views`` views (:meth:`Clip.select_views`):
    e.g. the 1-, 2- and 4-camera versions of one virtual rig, whose views, teachers and ground truth are otherwise
    the same. A clip with fewer views is refused. The index keeps ``src``'s name, fps, skeleton, license and extra,
    with ``extra["views"] = num_views`` and ``extra["views_of"] = src``.

    Returns ``{"out", "views", "clips"}``.
    """
    src, out = Path(src), Path(out)
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    _check_overlap(src, out)
    index = read_dataset_index(src)
    with DatasetWriter(out, splits=list(index.splits), replace=overwrite) as writer:
        for split in index.splits:
            for path in index.clip_paths(split) if index.splits[split] else []:
                clip = load_clip(path)
                if clip.num_views < num_views:
                    raise DataError(f"{path}: clip {clip.name} has {clip.num_views} views, fewer than {num_views}")
                writer.add(split, clip.select_views(range(num_views)))
        writer.commit(name=index.name, fps=index.fps, skeleton=index.skeleton, license=index.license,
                      extra={**index.extra, "views": num_views, "views_of": str(src.resolve())})
    return {"out": str(out), "views": num_views, "clips": sum(writer.num_clips.values())}
