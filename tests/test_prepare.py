"""Building a 2D training dataset from mocap (videomdm.data.prepare)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic import walk

from videomdm.data.clip import Clip, load_clip, read_dataset_index, save_clip, write_dataset_index
from videomdm.data.errors import DataError
from videomdm.data.prepare import prepare_mocap_2d
from videomdm.data.virtual import DetectorNoise

FIELDS = ("keypoints_2d", "confidence", "K", "R", "t", "teacher_3d", "gt_3d")


def make_mocap(root: Path, *, reverse: bool = False, frames: int = 40) -> Path:
    """A tiny mocap dataset (gt_3d only): 3 train clips, 1 test clip; ``reverse`` lists the clips in reverse order."""
    splits: dict[str, list[str]] = {}
    for split, count in (("train", 3), ("test", 1)):
        rels = []
        for i in range(count):
            rel = f"clips/{split}/walk_{i}.npz"
            save_clip(root / rel, Clip(name=f"{split}_walk_{i}", fps=20.0, skeleton="smpl22",
                                       source=f"synthetic walk {i}", gt_3d=walk(frames, seed=10 * i + len(split)),
                                       text=[f"walk number {i}"]))
            rels.append(rel)
        splits[split] = rels[::-1] if reverse else rels
    write_dataset_index(root, name="mocap", fps=20.0, skeleton="smpl22", splits=splits, license="CC-BY-4.0",
                        extra={})
    return root


def noisy_gt_teacher(clip: Clip) -> np.ndarray:
    """A deterministic stand-in lifter: ground truth plus a fixed offset."""
    return clip.gt_3d + np.float32(0.05)


def load_all(root: Path) -> dict[str, Clip]:
    index = read_dataset_index(root)
    return {clip.name: clip for split in index.splits for clip in map(load_clip, index.clip_paths(split))}


def assert_same_clips(a: dict[str, Clip], b: dict[str, Clip]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        for field in FIELDS:
            np.testing.assert_array_equal(getattr(a[name], field), getattr(b[name], field), err_msg=f"{name} {field}")


def test_prepare_writes_a_valid_2d_dataset(tmp_path):
    src = make_mocap(tmp_path / "mocap")
    out = tmp_path / "out"
    calls = []

    def teacher(clip: Clip) -> np.ndarray:
        calls.append(clip.name)
        assert clip.teacher_3d is None and clip.keypoints_2d is not None
        return noisy_gt_teacher(clip)

    summary = prepare_mocap_2d(src, out, teacher=teacher, teacher_name="noisy-gt", num_cameras=2,
                               noise=DetectorNoise.clean(), seed=5, progress=False)
    assert summary["clips"] == 8 and summary["frames"] == 8 * 40 and summary["num_cameras"] == 2
    assert summary["splits"]["train"] == {"source_clips": 3, "clips": 6, "frames": 240}
    assert summary["teacher"] == "noisy-gt"
    assert len(calls) == 8

    index = read_dataset_index(out)
    source_index = read_dataset_index(src)
    assert set(index.splits) == {"train", "test"}
    assert index.fps == 20.0 and index.skeleton == "smpl22" and index.license == "CC-BY-4.0"
    assert index.extra["teacher"] == "noisy-gt" and index.extra["num_cameras"] == 2 and index.extra["seed"] == 5
    assert index.extra["source_dataset"] == str(src.resolve())
    assert index.extra["noise"]["pixel_std"] == 0.0 and "drop_rate" in index.extra["noise"]
    assert all(rel.startswith(f"clips/{split}/") for split, rels in index.splits.items() for rel in rels)

    sources = {c.name: c for split in source_index.splits for c in map(load_clip, source_index.clip_paths(split))}
    clips = load_all(out)
    assert sorted(clips) == sorted(f"{name}_cam{k}" for name in sources for k in range(2))
    for name, clip in clips.items():
        clip.validate()
        source = sources[name.rsplit("_cam", 1)[0]]
        np.testing.assert_array_equal(clip.gt_3d, source.gt_3d)
        np.testing.assert_allclose(clip.teacher_3d, source.gt_3d + 0.05, atol=1e-6)
        assert clip.text == source.text and clip.fps == source.fps and clip.keypoint_skeleton == "smpl22"
        # the stored camera reproduces the (clean) keypoints from the ground truth
        assert clip.num_views == 1
        cam = clip.gt_3d.astype(np.float64) @ clip.R[0].T + clip.t[0]
        assert (cam[..., 2] > 0).all()
        uv = (cam @ clip.K[0].T)[..., :2] / cam[..., 2:3]
        np.testing.assert_allclose(clip.keypoints_2d[0], uv, atol=1e-4)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_prepare_is_deterministic_and_order_independent(tmp_path):
    src = make_mocap(tmp_path / "mocap")
    src_reversed = make_mocap(tmp_path / "mocap_reversed", reverse=True)
    kwargs = dict(teacher=noisy_gt_teacher, teacher_name="t", num_cameras=2, seed=3, progress=False)
    prepare_mocap_2d(src, tmp_path / "a", **kwargs)
    prepare_mocap_2d(src, tmp_path / "b", **kwargs)
    prepare_mocap_2d(src_reversed, tmp_path / "c", **kwargs)
    prepare_mocap_2d(src, tmp_path / "d", splits=["test"], **kwargs)
    a, b, c, d = (load_all(tmp_path / n) for n in "abcd")
    assert_same_clips(a, b)
    assert_same_clips(a, c)  # another clip order gives the same per-clip output
    assert_same_clips({n: clip for n, clip in a.items() if n.startswith("test_")}, d)  # so does a subset
    assert set(read_dataset_index(tmp_path / "d").splits) == {"test"}
    other = load_all(prepare_mocap_2d(src, tmp_path / "e", **{**kwargs, "seed": 4})["out"])
    assert not np.array_equal(a["train_walk_0_cam0"].keypoints_2d, other["train_walk_0_cam0"].keypoints_2d)


def test_prepare_noise_reaches_the_clips(tmp_path):
    src = make_mocap(tmp_path / "mocap", frames=200)
    prepare_mocap_2d(src, tmp_path / "out", teacher=noisy_gt_teacher, teacher_name="t", num_cameras=1,
                     noise=DetectorNoise(drop_rate=0.05), progress=False)
    clips = load_all(tmp_path / "out")
    dropped = np.concatenate([(c.confidence == 0).ravel() for c in clips.values()])
    assert 0.02 < dropped.mean() < 0.12  # drops (plus any joints outside the image)


@pytest.mark.parametrize("bad, message", [
    (lambda clip: np.full_like(clip.gt_3d, np.nan), "not finite"),
    (lambda clip: clip.gt_3d[:, :10], "shape"),
    (lambda clip: clip.gt_3d[:-1], "shape"),
])
def test_bad_teacher_raises_naming_the_clip(tmp_path, bad, message):
    src = make_mocap(tmp_path / "mocap")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=message) as err:
        prepare_mocap_2d(src, out, teacher=bad, teacher_name="bad", progress=False)
    assert "_walk_0_cam0" in str(err.value)
    assert not out.exists()  # nothing half-written under the final name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_existing_dataset_needs_overwrite(tmp_path):
    src = make_mocap(tmp_path / "mocap")
    out = tmp_path / "out"
    kwargs = dict(teacher=noisy_gt_teacher, teacher_name="first", num_cameras=1, progress=False)
    prepare_mocap_2d(src, out, **kwargs)
    (out / "NOTES.txt").write_text("mine")
    before = load_all(out)

    with pytest.raises(DataError, match="overwrite"):
        prepare_mocap_2d(src, out, **{**kwargs, "teacher_name": "second"})
    assert read_dataset_index(out).extra["teacher"] == "first"

    # a failing rebuild with overwrite leaves the previous dataset untouched
    with pytest.raises(DataError):
        prepare_mocap_2d(src, out, **{**kwargs, "teacher": lambda c: c.gt_3d * np.nan}, overwrite=True)
    assert read_dataset_index(out).extra["teacher"] == "first"
    assert_same_clips(before, load_all(out))

    prepare_mocap_2d(src, out, **{**kwargs, "teacher_name": "second", "num_cameras": 2}, overwrite=True)
    index = read_dataset_index(out)
    assert index.extra["teacher"] == "second" and len(load_all(out)) == 8
    assert sorted(p.name for p in (out / "clips" / "train").iterdir()) == sorted(
        f"train_walk_{i}_cam{k}.npz" for i in range(3) for k in range(2))
    assert (out / "NOTES.txt").read_text() == "mine"  # other files are kept
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_output_must_not_overlap_the_source(tmp_path):
    src = make_mocap(tmp_path / "mocap")
    for out in (src, src / "derived", tmp_path):
        with pytest.raises(DataError, match="contain"):
            prepare_mocap_2d(src, out, teacher=noisy_gt_teacher, teacher_name="t", overwrite=True, progress=False)
    assert len(load_all(src)) == 4


def test_unknown_split_and_missing_gt(tmp_path):
    src = make_mocap(tmp_path / "mocap")
    with pytest.raises(DataError, match="valid"):
        prepare_mocap_2d(src, tmp_path / "out", teacher=noisy_gt_teacher, teacher_name="t", splits=["valid"],
                         progress=False)
    no_gt = tmp_path / "no_gt"
    save_clip(no_gt / "clips/train/a.npz", Clip(name="a", fps=20.0, skeleton="smpl22", source="s",
                                                teacher_3d=walk(10)))
    write_dataset_index(no_gt, name="x", fps=20.0, skeleton="smpl22", splits={"train": ["clips/train/a.npz"]},
                        license=None, extra={})
    with pytest.raises(DataError, match="gt_3d"):
        prepare_mocap_2d(no_gt, tmp_path / "out2", teacher=noisy_gt_teacher, teacher_name="t", progress=False)


# --- sharded preparation ------------------------------------------------------------------------------------------


def test_shards_merged_give_the_unsharded_dataset(tmp_path):
    from videomdm.data.shards import Shard, merge_shards

    src = make_mocap(tmp_path / "mocap")
    kwargs = dict(teacher=noisy_gt_teacher, teacher_name="t", num_cameras=2, seed=3, progress=False)
    prepare_mocap_2d(src, tmp_path / "whole", **kwargs)
    for n in (1, 3, 5):  # 5 shards for 4 sources: one shard has nothing to do
        out = tmp_path / f"sharded_{n}"
        for i in reversed(range(n)):  # any order
            summary = prepare_mocap_2d(src, out, shard=Shard(i, n), **kwargs)
            assert summary["shard"] == f"{i}/{n}"
        assert not (out / "dataset.json").exists()
        merged = merge_shards(out)
        assert merged["shards"] == n and merged["clips"] == 8 and merged["frames"] == 8 * 40
        whole, sharded = read_dataset_index(tmp_path / "whole"), read_dataset_index(out)
        assert sharded.splits == whole.splits and sharded.extra == whole.extra and sharded.name == whole.name
        assert sharded.extra["statistics"]["train"] == {"source_clips": 3, "clips": 6, "frames": 240}
        assert_same_clips(load_all(tmp_path / "whole"), load_all(out))
        assert sorted(p.name for p in out.iterdir()) == ["clips", "dataset.json"]  # no partial or temporary files


def test_shard_parts_are_disjoint_and_cover_the_sources():
    from videomdm.data.shards import Shard

    for n in (1, 2, 7):
        owners = [[i for i in range(n) if Shard(i, n).selects(p)] for p in range(20)]
        assert all(len(o) == 1 for o in owners)
    assert Shard.parse(" 3/16 ") == Shard(3, 16)
    for bad in ("16/16", "-1/4", "3", "a/b", "1/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_merge_refuses_missing_duplicate_and_mixed_shards(tmp_path):
    from videomdm.data.shards import Shard, merge_shards

    src = make_mocap(tmp_path / "mocap")
    kwargs = dict(teacher=noisy_gt_teacher, teacher_name="t", num_cameras=1, progress=False)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="no partial indices"):
        merge_shards(out)
    prepare_mocap_2d(src, out, shard=Shard(0, 3), **kwargs)
    prepare_mocap_2d(src, out, shard=Shard(2, 3), **kwargs)
    with pytest.raises(DataError, match=r"1 of 3 shards are missing \(1/3\)"):
        merge_shards(out)
    with pytest.raises(DataError, match="already done"):  # a finished shard is not redone over its files
        prepare_mocap_2d(src, out, shard=Shard(0, 3), **kwargs)

    other = tmp_path / "other"  # a shard of a 2-way split dropped into the folder
    prepare_mocap_2d(src, other, shard=Shard(1, 2), **kwargs)
    (out / "shards" / "shard-00001-of-00002.json").write_bytes(
        (other / "shards" / "shard-00001-of-00002.json").read_bytes())
    with pytest.raises(DataError, match="different shard counts"):
        merge_shards(out)
    (out / "shards" / "shard-00001-of-00002.json").unlink()

    # shard 1/3 with another teacher: its settings differ from the others'
    prepare_mocap_2d(src, out, shard=Shard(1, 3), **{**kwargs, "teacher_name": "other"})
    with pytest.raises(DataError, match="different settings"):
        merge_shards(out)
    assert not (out / "dataset.json").exists()


def test_a_shard_never_overwrites_existing_clips(tmp_path):
    from videomdm.data.shards import Shard, merge_shards

    src = make_mocap(tmp_path / "mocap")
    kwargs = dict(teacher=noisy_gt_teacher, teacher_name="t", num_cameras=1, progress=False)
    out = tmp_path / "out"
    prepare_mocap_2d(src, out, shard=Shard(0, 2), **kwargs)
    done = out / "shards" / "shard-00000-of-00002.json"
    record = done.read_bytes()
    done.unlink()  # forget that shard 0 ran, its clips stay
    before = {p: p.read_bytes() for p in (out / "clips").rglob("*.npz")}
    with pytest.raises(DataError, match="would overwrite existing clip files"):
        prepare_mocap_2d(src, out, shard=Shard(0, 2), **{**kwargs, "teacher": lambda c: c.gt_3d + np.float32(0.2)})
    assert {p: p.read_bytes() for p in (out / "clips").rglob("*.npz")} == before
    assert not done.exists()

    done.write_bytes(record)
    prepare_mocap_2d(src, out, shard=Shard(1, 2), **kwargs)
    assert merge_shards(out)["clips"] == 4
    with pytest.raises(DataError, match="already holds a dataset"):
        prepare_mocap_2d(src, out, shard=Shard(1, 2), **kwargs)
    with pytest.raises(DataError, match="already holds a merged dataset"):
        merge_shards(out)


def test_shard_and_merge_commands(tmp_path, capsys):
    from videomdm.cli import main

    src = make_mocap(tmp_path / "mocap")
    out = tmp_path / "out"
    common = ["prepare", "mocap", str(src), "--out", str(out), "--teacher", "corrupt", "--cameras", "1", "--quiet"]
    assert main(common + ["--shard", "1/2"]) == 0
    assert main(["prepare", "merge", str(out)]) == 2
    assert "1 of 2 shards are missing (0/2)" in capsys.readouterr().err
    assert main(common + ["--shard", "0/2", "--overwrite"]) == 2  # shards never replace anything
    assert main(common + ["--shard", "0/2"]) == 0
    assert main(["prepare", "merge", str(out)]) == 0
    assert '"clips": 4' in capsys.readouterr().out
    assert len(load_all(out)) == 4
