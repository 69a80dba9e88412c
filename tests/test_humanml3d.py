"""HumanML3D conversion on a tiny synthetic folder in HumanML3D's layout."""

from pathlib import Path

import numpy as np
import pytest

from videomdm.data.clip import load_clip, read_dataset_index
from videomdm.data.errors import DataError
from videomdm.data.humanml3d import convert_humanml3d, read_captions


def joints(frames: int, seed: int) -> np.ndarray:
    """(T, 22, 3) with x = frame index, so slices can be checked."""
    rng = np.random.default_rng(seed)
    out = rng.normal(size=(frames, 22, 3)).astype(np.float32)
    out[:, :, 0] = np.arange(frames)[:, None]
    return out


def make_humanml3d(root: Path) -> Path:
    """Ids: 000001 (whole-clip captions, 60 frames), 000002 (whole + sub-ranges, 100 frames), 000003 (listed in
    train, no joints file), M000004 (sub-range captions only, 80 frames), 000005 (no text file, 50 frames)."""
    for part in ("new_joints", "new_joint_vecs", "texts"):
        (root / part).mkdir(parents=True)
    for motion_id, frames, seed in (("000001", 60, 1), ("000002", 100, 2), ("M000004", 80, 4), ("000005", 50, 5)):
        np.save(root / "new_joints" / f"{motion_id}.npy", joints(frames, seed))
        np.save(root / "new_joint_vecs" / f"{motion_id}.npy", np.zeros((frames - 1, 263), np.float32))
    (root / "texts" / "000001.txt").write_text(
        "a person walks forward.#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0\n"
        "someone strolls ahead.#someone/PRON stroll/VERB ahead/ADV#0.0#0.0\n")
    (root / "texts" / "000002.txt").write_text(
        "a man jumps.#a/DET man/NOUN jump/VERB#0.0#0.0\n"
        "he waves with # his hand.#he/PRON wave/VERB#0.5#2.5\n"  # frames [10, 50): 40 frames, kept
        "he lifts his arm.#he/PRON lift/VERB#0.5#2.5\n"  # same range: same sub-clip
        "a quick nod.#a/DET quick/ADJ nod/NOUN#4.0#5.5\n"  # frames [80, 110) clamped to [80, 100): too short
        "\n")
    (root / "texts" / "M000004.txt").write_text(
        "a person kicks.#a/DET person/NOUN kick/VERB#1.0#3.5\n")  # frames [20, 70)
    (root / "texts" / "000003.txt").write_text("never used.#x#0.0#0.0\n")
    (root / "train.txt").write_text("000001\n000002\n000003\n")
    (root / "val.txt").write_text("000005\n")
    (root / "test.txt").write_text("M000004\n\n")
    rng = np.random.default_rng(9)
    np.save(root / "Mean.npy", rng.normal(size=263).astype(np.float32))
    np.save(root / "Std.npy", rng.uniform(0.1, 1, size=263).astype(np.float32))
    return root


def test_convert_synthetic_folder(tmp_path):
    src = make_humanml3d(tmp_path / "HumanML3D")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="1 ids .* no joints file"):
        summary = convert_humanml3d(src, out)
    assert summary["skipped_missing_joints"] == {"train": ["000003"], "val": [], "test": []}
    assert summary["splits"]["train"] == {"ids": 2, "clips": 3, "subclips": 1, "frames": 60 + 100 + 40,
                                          "seconds": 10.0}
    assert summary["splits"]["val"]["clips"] == 1 and summary["splits"]["test"]["clips"] == 1
    assert summary["skipped_too_short"] == 1  # the nod
    assert summary["subclip_only_ids"] == 1 and summary["ids_without_text"] == 1

    index = read_dataset_index(out)
    assert index.fps == 20.0 and index.skeleton == "smpl22"
    clips = {c.name: c for split in ("train", "val", "test") for c in map(load_clip, index.clip_paths(split))}
    assert sorted(clips) == ["000001", "000002", "000002_0010_0050", "000005", "M000004_0020_0070"]
    assert clips["000001"].text == ["a person walks forward.", "someone strolls ahead."]
    assert clips["000002"].text == ["a man jumps."]
    assert clips["000002_0010_0050"].text == ["he waves with # his hand.", "he lifts his arm."]
    assert clips["000005"].text == []
    sub = clips["000002_0010_0050"].gt_3d
    assert sub.shape == (40, 22, 3)
    np.testing.assert_array_equal(sub, joints(100, 2)[10:50])
    assert clips["M000004_0020_0070"].gt_3d[0, 0, 0] == 20.0
    np.testing.assert_array_equal(clips["000001"].gt_3d, joints(60, 1))
    assert all(c.fps == 20.0 and c.teacher_3d is None for c in clips.values())

    stats = np.load(out / "humanml3d_mean_std.npz")
    np.testing.assert_array_equal(stats["mean"], np.load(src / "Mean.npy"))
    np.testing.assert_array_equal(stats["std"], np.load(src / "Std.npy"))
    assert index.extra["humanml3d_mean_std"] == "humanml3d_mean_std.npz"

    with pytest.raises(DataError, match="already holds a dataset"):
        convert_humanml3d(src, out)


def test_min_frames_and_split_selection(tmp_path):
    src = make_humanml3d(tmp_path / "HumanML3D")
    summary = convert_humanml3d(src, tmp_path / "out", splits=("test",), min_frames=60)
    assert list(summary["splits"]) == ["test"]
    assert summary["splits"]["test"]["clips"] == 0 and summary["skipped_too_short"] == 1  # 50-frame kick


def test_read_captions_groups_by_frame_range(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("a#t#0.0#0.0\nb#t#nan#nan\nc#t#1.0#2.0\nd#t#1.0#2.0\n")
    assert read_captions(path) == {None: ["a", "b"], (20, 40): ["c", "d"]}
    path.write_text("ok#t#0.0#0.0\nbroken line without tags\n")
    with pytest.raises(DataError, match=r"x.txt: line 2: expected 'caption#tokens#start#end'"):
        read_captions(path)
    path.write_text("a#t#zero#0.0\n")
    with pytest.raises(DataError, match=r"x.txt: line 1: start/end must be numbers"):
        read_captions(path)


def test_missing_folder_parts(tmp_path):
    with pytest.raises(DataError, match="nowhere.*does not exist"):
        convert_humanml3d(tmp_path / "nowhere", tmp_path / "out")
    src = make_humanml3d(tmp_path / "HumanML3D")
    (src / "val.txt").unlink()
    for f in (src / "texts").iterdir():
        f.unlink()
    (src / "texts").rmdir()
    with pytest.raises(DataError, match=r"not a HumanML3D folder: missing \['texts/', 'val.txt'\]"):
        convert_humanml3d(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("part,array,pattern", [
    ("new_joints/000001.npy", np.zeros((60, 21, 3)),
     r"new_joints/000001.npy: expected joints of shape .*\(60, 21, 3\)"),
    ("new_joint_vecs/000001.npy", np.zeros((60, 263)), r"new_joint_vecs/000001.npy: expected shape \(59, 263\)"),
    ("Mean.npy", np.zeros(251), r"Mean.npy: expected 263 finite values"),
])
def test_wrong_shapes_name_the_file(tmp_path, part, array, pattern):
    src = make_humanml3d(tmp_path / "HumanML3D")
    np.save(src / part, array)
    with pytest.raises(DataError, match=pattern):
        convert_humanml3d(src, tmp_path / "out")


def test_nan_joints_name_the_file(tmp_path):
    src = make_humanml3d(tmp_path / "HumanML3D")
    bad = joints(60, 1)
    bad[3, 4, 2] = np.nan
    np.save(src / "new_joints" / "000001.npy", bad)
    with pytest.raises(DataError, match=r"000001.npy.*NaN"):
        convert_humanml3d(src, tmp_path / "out")
