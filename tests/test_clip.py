"""Clip record: validation, atomic .npz round trip, corrupt files; the dataset index and its errors."""

import json
import zipfile

import numpy as np
import pytest

from videomdm.data import clip as clip_module
from videomdm.data.clip import Clip, load_clip, read_dataset_index, save_clip, write_dataset_index
from videomdm.data.errors import DataError

T = 8


def full_clip(**changes) -> Clip:
    """A clip with every field set: SMPL-22 3D, COCO-17 keypoints, per-frame camera."""
    rng = np.random.default_rng(0)
    angles = np.linspace(0, 0.5, T)
    R = np.stack([[[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]] for a in angles])  # (T, 3, 3)
    fields = dict(
        name="take_000", fps=20.0, skeleton="smpl22", source="unit test",
        gt_3d=rng.normal(size=(T, 22, 3)).astype(np.float32),
        teacher_3d=rng.normal(size=(T, 22, 3)).astype(np.float32),
        keypoints_2d=rng.uniform(0, 640, size=(T, 17, 2)).astype(np.float32),
        confidence=rng.uniform(0, 1, size=(T, 17)).astype(np.float32),
        keypoint_skeleton="coco17",
        K=np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]),
        R=R, t=rng.normal(size=(T, 3)) + [0, 0, 5],
        text=["a person walks", "someone # strolls"],
        image_size=(640, 480),
    )
    fields.update(changes)
    return Clip(**fields)


def test_round_trip_keeps_every_field(tmp_path):
    original = full_clip()
    path = tmp_path / "clips" / "train" / "take_000.npz"
    save_clip(path, original)
    loaded = load_clip(path)
    for name in ("name", "fps", "skeleton", "source", "keypoint_skeleton", "text", "image_size"):
        assert getattr(loaded, name) == getattr(original, name), name
    for name in ("gt_3d", "teacher_3d", "keypoints_2d", "confidence", "K", "R", "t"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name), err_msg=name)
    assert loaded.gt_3d.dtype == np.float32 and loaded.R.dtype == np.float64
    assert loaded.num_frames == T


def test_round_trip_of_a_minimal_clip(tmp_path):
    minimal = Clip(name="m", fps=30.0, skeleton="smpl22", source="s", gt_3d=np.zeros((3, 22, 3), np.float32))
    save_clip(tmp_path / "m.npz", minimal)
    loaded = load_clip(tmp_path / "m.npz")
    assert loaded.teacher_3d is None and loaded.keypoints_2d is None and loaded.R is None
    assert loaded.text == [] and loaded.image_size is None and loaded.keypoint_skeleton is None


def test_per_clip_camera_is_valid():
    full_clip(R=np.eye(3), t=np.array([0.0, 0, 4])).validate()


def _with_nan(field, index):
    value = full_clip().__dict__[field].copy()
    if field in ("keypoints_2d", "confidence"):
        value = value[0]  # the clip holds one view; full_clip() takes the monocular layout
    value[index] = np.nan
    return {field: value}


INVALID = {
    "wrong_gt_shape": ({"gt_3d": np.zeros((T, 17, 3))}, r"gt_3d must have shape \(T, 22, 3\)"),
    "teacher_frames_mismatch": ({"teacher_3d": np.zeros((T + 1, 22, 3))}, r"teacher_3d has 9 frames .* 8"),
    "keypoint_frames_mismatch": ({"keypoints_2d": np.zeros((T - 1, 17, 2)), "confidence": np.ones((T - 1, 17))},
                                 r"keypoints_2d has 7 frames"),
    "nan_in_gt": (_with_nan("gt_3d", (2, 3, 1)), r"gt_3d contains NaN"),
    "nan_in_teacher": (_with_nan("teacher_3d", (0, 0, 0)), r"teacher_3d contains NaN"),
    "nan_in_keypoints": (_with_nan("keypoints_2d", (1, 4, 0)), r"keypoints_2d contains NaN.*confidence 0"),
    "confidence_above_one": ({"confidence": np.full((T, 17), 1.5)}, r"confidence must lie in \[0, 1\]"),
    "confidence_negative": ({"confidence": np.full((T, 17), -0.1)}, r"confidence must lie in \[0, 1\]"),
    "confidence_nan": (_with_nan("confidence", (0, 0)), r"confidence must lie in \[0, 1\]"),
    "confidence_shape": ({"confidence": np.ones((T, 16))}, r"confidence must have shape"),
    "keypoints_without_confidence": ({"confidence": None}, r"keypoints_2d and confidence must be given together"),
    "keypoints_without_skeleton": ({"keypoint_skeleton": None}, r"needs keypoint_skeleton"),
    "keypoints_wrong_joint_count": ({"keypoint_skeleton": "blazepose33"},
                                    r"keypoints_2d must have shape \(V, T, 33, 2\) for skeleton blazepose33"),
    "unknown_keypoint_skeleton": ({"keypoint_skeleton": "openpose25"}, r"unknown skeleton 'openpose25'"),
    "unknown_3d_skeleton": ({"skeleton": "smplx"}, r"unknown skeleton 'smplx'"),
    "per_clip_R_with_per_frame_t": ({"R": np.eye(3)}, r"per view \(V, 3, 3\), \(V, 3\) or per view and frame"),
    "per_frame_R_with_per_clip_t": ({"t": np.zeros(3)}, r"per view \(V, 3, 3\), \(V, 3\) or per view and frame"),
    "R_without_t": ({"t": None}, r"R and t must be given together"),
    "per_frame_R_frames_mismatch": ({"R": np.tile(np.eye(3), (T + 2, 1, 1)), "t": np.zeros((T + 2, 3))},
                                    r"R has 10 frames"),
    "subject_behind_camera": ({"t": np.tile([0.0, 0.0, -5.0], (T, 1))},
                              r"\(gt_3d\) is behind the camera .* in 8 of 8 frames"),
    "teacher_behind_camera": ({"gt_3d": None, "t": np.tile([0.0, 0.0, -5.0], (T, 1))},
                              r"\(teacher_3d\) is behind the camera .* in 8 of 8 frames"),
    "R_not_a_rotation": ({"R": np.tile(2 * np.eye(3), (T, 1, 1))}, r"R is not a rotation"),
    "K_shape": ({"K": np.eye(4)}, r"K must be finite \(V, 3, 3\)"),
    "nothing_to_learn_from": ({"gt_3d": None, "teacher_3d": None, "keypoints_2d": None, "confidence": None},
                              r"has none of gt_3d, teacher_3d, keypoints_2d"),
    "bad_fps": ({"fps": 0.0}, r"fps must be a positive number"),
    "text_not_strings": ({"text": ["ok", 3]}, r"text must be a list of strings"),
    "image_size": ({"image_size": (640, 0)}, r"image_size"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_validate_rejects(case):
    changes, pattern = INVALID[case]
    clip = full_clip(name=f"clip_{case}", **changes)
    with pytest.raises(DataError, match=pattern) as info:
        clip.validate()
    assert f"clip_{case}" in str(info.value)


def test_save_validates_and_writes_nothing_for_an_invalid_clip(tmp_path):
    with pytest.raises(DataError, match="gt_3d contains NaN"):
        save_clip(tmp_path / "bad.npz", full_clip(**_with_nan("gt_3d", (0, 0, 0))))
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    save_clip(tmp_path / "a.npz", full_clip())
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]
    before = (tmp_path / "a.npz").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(clip_module.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_clip(tmp_path / "a.npz", full_clip(name="other"))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]  # no temp file left behind
    assert (tmp_path / "a.npz").read_bytes() == before  # the old file is intact


def test_corrupt_clip_files_are_data_errors_naming_the_file(tmp_path):
    random_bytes = tmp_path / "random.npz"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(DataError, match="random.npz.*cannot read"):
        load_clip(random_bytes)

    save_clip(tmp_path / "good.npz", full_clip())
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes((tmp_path / "good.npz").read_bytes()[:1500])
    with pytest.raises(DataError, match="truncated.npz"):
        load_clip(truncated)

    no_fields = tmp_path / "other.npz"
    np.savez(no_fields, x=np.zeros(3))
    with pytest.raises(DataError, match="other.npz.*not a clip file"):
        load_clip(no_fields)

    partial = tmp_path / "partial.npz"
    with np.load(tmp_path / "good.npz") as data:
        arrays = {k: data[k] for k in data.files if k != "skeleton"}
    np.savez(partial, **arrays)
    with pytest.raises(DataError, match=r"partial.npz.*lacks the fields \['skeleton'\]"):
        load_clip(partial)

    invalid = tmp_path / "invalid.npz"
    arrays["skeleton"] = np.array("smpl22")
    arrays["confidence"] = arrays["confidence"] + 5
    np.savez(invalid, **arrays)
    with pytest.raises(DataError, match=r"invalid.npz: clip 'take_000': confidence"):
        load_clip(invalid)

    with pytest.raises(DataError, match="missing.npz.*does not exist"):
        load_clip(tmp_path / "missing.npz")

    pickled = tmp_path / "pickled.npz"
    with zipfile.ZipFile(pickled, "w") as z:
        z.writestr("clip_format_version.npy", b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="pickled.npz"):
        load_clip(pickled)


# --- dataset index ------------------------------------------------------------------------------------------------


def make_dataset(root, splits=("train", "test")):
    rels = {}
    for split in splits:
        rel = f"clips/{split}/c.npz"
        save_clip(root / rel, full_clip(name=f"{split}_c"))
        rels[split] = [rel]
    write_dataset_index(root, name="toy", fps=20.0, skeleton="smpl22", splits=rels, license="CC0",
                        extra={"note": 1})
    return rels


def test_index_round_trip(tmp_path):
    make_dataset(tmp_path)
    index = read_dataset_index(tmp_path)
    assert (index.name, index.fps, index.skeleton, index.license) == ("toy", 20.0, "smpl22", "CC0")
    assert index.extra == {"note": 1} and index.format_version == 1
    assert index.clip_paths("test") == [tmp_path / "clips/test/c.npz"]
    assert load_clip(index.clip_paths("train")[0]).name == "train_c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips", "dataset.json"]  # no temp file


def test_index_errors(tmp_path):
    with pytest.raises(DataError, match="missing.*does not exist"):
        read_dataset_index(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty.*is empty.*dataset.json.*videomdm data"):
        read_dataset_index(empty)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="foreign: no dataset.json.*clips/<split>.*videomdm data lafan1"):
        read_dataset_index(foreign)

    root = tmp_path / "ds"
    make_dataset(root)
    index_path = root / "dataset.json"
    data = json.loads(index_path.read_text())

    index_path.write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(DataError, match="dataset.json: unknown format_version 99"):
        read_dataset_index(root)

    index_path.write_text("{not json")
    with pytest.raises(DataError, match="dataset.json: cannot read"):
        read_dataset_index(root)

    index_path.write_text(json.dumps({**data, "splits": {**data["splits"], "val": ["clips/val/gone.npz"]}}))
    with pytest.raises(DataError, match="1 listed clip files do not exist: clips/val/gone.npz"):
        read_dataset_index(root)

    index_path.write_text(json.dumps({**data, "splits": {"train": ["../escape.npz"]}}))
    with pytest.raises(DataError, match="must be relative"):
        read_dataset_index(root)

    index_path.write_text(json.dumps({**data, "splits": {**data["splits"], "val": []}}))
    index = read_dataset_index(root)
    with pytest.raises(DataError, match="split 'val' is empty"):
        index.clip_paths("val")
    with pytest.raises(DataError, match=r"no split 'dev'.*\['test', 'train', 'val'\]"):
        index.clip_paths("dev")


def test_nan_keypoints_in_a_file_are_masked_with_a_counting_warning(tmp_path):
    clip = full_clip()
    path = tmp_path / "clip.npz"
    save_clip(path, clip)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["keypoints_2d"][0, 1, 4] = np.nan  # (V, T, J2, 2)
    arrays["keypoints_2d"][0, 3, 0, 1] = np.inf
    np.savez(path, **arrays)
    with pytest.warns(UserWarning, match=r"clip.npz: 2 of 136 keypoints are NaN or infinite"):
        loaded = load_clip(path)
    assert np.isfinite(loaded.keypoints_2d).all()
    assert loaded.confidence[0, 1, 4] == 0 and loaded.confidence[0, 3, 0] == 0
    untouched = np.ones((1, T, 17), dtype=bool)
    untouched[0, 1, 4] = untouched[0, 3, 0] = False
    np.testing.assert_array_equal(loaded.confidence[untouched], clip.confidence[untouched])


def test_skipped_fields_are_not_read(tmp_path):
    path = tmp_path / "clip.npz"
    save_clip(path, full_clip())
    assert load_clip(path, skip=("gt_3d",)).gt_3d is None
    with pytest.raises(ValueError, match="unknown clip fields"):
        load_clip(path, skip=("gt3d",))
