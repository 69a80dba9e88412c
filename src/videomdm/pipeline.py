"""The mocap → 2D benchmark pipeline shared by the demo, the benchmarks and the experiments.

Mocap takes are split by time into ``lifter`` / ``train`` / ``test`` (:func:`videomdm.data.mocap.build_mocap_dataset`);
the built-in lifter learns from the ``lifter`` split only; the ``train`` and ``test`` splits are filmed by virtual
cameras with detector noise and lifted by that lifter (:func:`videomdm.data.prepare.prepare_mocap_2d`). The result
is a 2D dataset whose teacher never saw the clips it lifted and whose ``gt_3d`` is kept for evaluation only.

Every stage is skipped when its output already exists, so a second call reuses the first one's work.

:func:`prepare_rig_views` films the same ``train`` and ``test`` clips with a virtual rig of N synchronized cameras
(one clip of N views each, the same lifter teacher lifting the first view) and keeps versions with the first 1, 2, ...
views, so that what each extra camera buys can be measured with everything else equal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from .data.clip import INDEX_NAME, read_dataset_index
from .data.lafan1 import LAFAN1_LICENSE, build_lafan1_dataset
from .data.mocap import build_mocap_dataset, find_mocap_files
from .data.prepare import first_views_dataset, prepare_mocap_2d
from .teacher import LIFTER_WEIGHTS, LifterConfig, LiftedData, make_teacher, train_lifter

__all__ = ["BenchmarkData", "prepare_benchmark", "prepare_rig_views"]


@dataclass(frozen=True)
class BenchmarkData:
    """Folders of a prepared benchmark: the mocap dataset, the lifter trained on its ``lifter`` split, and the 2D
    dataset (``train`` and ``test`` filmed and lifted)."""

    mocap: Path
    lifter: Path
    data_2d: Path
    license: str | None


def prepare_benchmark(root: Path, *, cache: Path, mocap: Path | None = None, lifter_fraction: float = 0.25,
                      test_fraction: float = 0.2, lifter_steps: int | None = None, lifter: Path | None = None,
                      cameras: int = 2, seed: int = 0, progress: bool = True,
                      log: Callable[[str], None] = print) -> BenchmarkData:
    """Build (or reuse) ``root/{mocap,lifter,data_2d}``.

    Args:
        root: output folder.
        cache: download cache for the LAFAN1 sample.
        mocap: a folder of ``.bvh`` / joints ``.npy`` files to use instead of the LAFAN1 sample.
        lifter_fraction, test_fraction: time split of every take (module docstring).
        lifter_steps: lifter training steps (default: :class:`~videomdm.teacher.LifterConfig`'s).
        lifter: a lifter folder trained elsewhere (``videomdm lifter train`` on another dataset) to teach instead
            of one trained on this mocap's ``lifter`` split: a cross-domain teacher, as the paper's are. A
            ``data_2d`` already made by another lifter is refused.
        cameras: virtual cameras per clip.
        seed: seed of the cameras and the detector noise.
        log: where progress lines go.
    """
    root = Path(root)
    mocap_dir, lifter_dir, data_2d = root / "mocap", root / "lifter", root / "data_2d"
    split = {"lifter_fraction": lifter_fraction, "test_fraction": test_fraction}
    if (mocap_dir / INDEX_NAME).exists():
        log(f"mocap dataset: reusing {mocap_dir}")
    elif mocap is None:
        log(f"mocap dataset: LAFAN1 sample → {mocap_dir}\n  license: {LAFAN1_LICENSE}")
        build_lafan1_dataset(mocap_dir, cache, **split)
    else:
        files: Sequence[Path] = find_mocap_files(Path(mocap))
        log(f"mocap dataset: {len(files)} files from {mocap} → {mocap_dir}")
        build_mocap_dataset(files, mocap_dir, name=Path(mocap).name, **split)
    if lifter is not None:
        lifter_dir = Path(lifter)
        log(f"lifter: {lifter_dir} (trained elsewhere)")
    elif (lifter_dir / LIFTER_WEIGHTS).exists():
        log(f"lifter: reusing {lifter_dir}")
    else:
        config = LifterConfig() if lifter_steps is None else replace(LifterConfig(), steps=lifter_steps)
        log(f"lifter: training {config.steps} steps on the 'lifter' split → {lifter_dir}")
        train_lifter(mocap_dir, lifter_dir, split="lifter", config=config, progress=progress)
    teacher_name = f"lifter:{lifter_dir.resolve()}"
    if (data_2d / INDEX_NAME).exists():
        made_by = str(read_dataset_index(data_2d).extra.get("teacher"))
        if lifter is not None and made_by != teacher_name:
            raise ValueError(f"{data_2d} was lifted by {made_by}, not {teacher_name}: use another output folder")
        log(f"2D dataset: reusing {data_2d}")
    else:
        log(f"2D dataset: {cameras} virtual cameras per clip, lifter teacher → {data_2d}")
        splits = ("train", "test")
        lifts = LiftedData(read_dataset_index(mocap_dir).name, splits, mocap_dir)
        teacher = make_teacher("lifter", lifter=lifter_dir, lifts=lifts)
        prepare_mocap_2d(mocap_dir, data_2d, teacher=teacher, teacher_name=teacher_name,
                         num_cameras=cameras, seed=seed, splits=list(splits), progress=progress)
    return BenchmarkData(mocap=mocap_dir, lifter=lifter_dir, data_2d=data_2d,
                         license=LAFAN1_LICENSE if mocap is None else None)


def prepare_rig_views(root: Path, data: BenchmarkData, views: Sequence[int], *, seed: int = 0, progress: bool = True,
                      log: Callable[[str], None] = print) -> dict[int, Path]:
    """Build (or reuse) ``root/rig<N>`` (the benchmark's ``train`` and ``test`` clips filmed by a virtual rig of
    ``N = max(views)`` cameras, lifted by the benchmark's lifter from the first view) and ``root/rig<N>_views<v>`` for
    each ``v`` in ``views`` (every clip cut to its first v views, :func:`~videomdm.data.prepare.first_views_dataset`).

    Returns ``{v: dataset folder}``.
    """
    if not views or min(views) < 1:
        raise ValueError(f"views must be positive view counts, got {list(views)}")
    root, most = Path(root), max(views)
    rig = root / f"rig{most}"
    if (rig / INDEX_NAME).exists():
        log(f"rig dataset: reusing {rig}")
    else:
        log(f"rig dataset: a virtual rig of {most} cameras per clip, lifter teacher on the first view → {rig}")
        splits = ("train", "test")
        lifts = LiftedData(read_dataset_index(data.mocap).name, splits, data.mocap)
        teacher = make_teacher("lifter", lifter=data.lifter, lifts=lifts)
        prepare_mocap_2d(data.mocap, rig, teacher=teacher, teacher_name=f"lifter:{Path(data.lifter).resolve()}",
                         num_cameras=most, seed=seed, splits=list(splits), progress=progress, multiview=True)
    out = {}
    for count in sorted(set(views)):
        folder = root / f"rig{most}_views{count}"
        if not (folder / INDEX_NAME).exists():
            log(f"rig dataset: the first {count} of {most} views → {folder}")
            first_views_dataset(rig, folder, count)
        out[count] = folder
    return out
