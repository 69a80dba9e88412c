import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import walk  # noqa: E402


def make_motion_dataset(root: Path, *, num_train: int = 6, num_test: int = 2, frames: int = 50,
                        texts: bool = False) -> Path:
    """A tiny dataset of synthetic walks in the project's dataset format (gt_3d and a perturbed teacher_3d)."""
    from videomdm.data.clip import Clip, save_clip, write_dataset_index

    rng = np.random.default_rng(0)
    splits: dict[str, list[str]] = {"train": [], "test": []}
    for split, count in (("train", num_train), ("test", num_test)):
        for i in range(count):
            gt = walk(frames, seed=zlib.crc32(f"{split}/{i}".encode()) % 1000)  # the same in every process
            teacher = gt + rng.normal(scale=0.02, size=gt.shape).astype(np.float32)
            caption = ["a person walks forward" if i % 2 == 0 else "someone strolls and turns"] if texts else []
            rel = f"clips/{split}/walk_{i:02d}.npz"
            save_clip(root / rel, Clip(name=f"{split}_walk_{i:02d}", fps=20.0, skeleton="smpl22", source="synthetic",
                                       gt_3d=gt, teacher_3d=teacher, text=caption))
            splits[split].append(rel)
    write_dataset_index(root, name="synthetic", fps=20.0, skeleton="smpl22", splits=splits, license=None, extra={})
    return root


def poison_ground_truth(dataset: Path) -> None:
    """Overwrite every clip's gt_3d with NaN, bypassing the clip writer (which would refuse NaN)."""
    for path in (dataset / "clips").rglob("*.npz"):
        with np.load(path) as data:
            arrays = dict(data)
        arrays["gt_3d"] = np.full_like(arrays["gt_3d"], np.nan)
        np.savez(path, **arrays)


@pytest.fixture
def motion_dataset(tmp_path: Path) -> Path:
    return make_motion_dataset(tmp_path / "data")


@pytest.fixture
def text_dataset(tmp_path: Path) -> Path:
    return make_motion_dataset(tmp_path / "data_text", texts=True)


@pytest.fixture
def dataset_2d(motion_dataset: Path, tmp_path: Path) -> Path:
    """Synthetic walks filmed by 2 virtual cameras each, with a corrupted-ground-truth teacher."""
    from videomdm.data.prepare import prepare_mocap_2d
    from videomdm.teacher import make_teacher

    out = tmp_path / "data_2d"
    prepare_mocap_2d(motion_dataset, out, teacher=make_teacher("corrupt", severity=1.0), teacher_name="corrupt",
                     num_cameras=2, progress=False)
    return out
