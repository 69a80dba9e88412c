"""The dataset writer (videomdm.data.writer): atomic commit, names, index last, shards, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from synthetic import walk

from videomdm.data import writer as writer_module
from videomdm.data.clip import INDEX_NAME, Clip, load_clip, read_dataset_index
from videomdm.data.errors import DataError
from videomdm.data.shards import Shard, merge_shards
from videomdm.data.writer import DatasetWriter, check_destination

META = dict(fps=20.0, skeleton="smpl22", license=None, extra={"note": 1})


def clip(name: str, frames: int = 10) -> Clip:
    return Clip(name=name, fps=20.0, skeleton="smpl22", source="synthetic", gt_3d=walk(frames))


def write(out: Path, names: dict[str, list[str]], *, name: str = "a", **kw) -> Path:
    with DatasetWriter(out, splits=list(names), **kw) as w:
        for split, clip_names in names.items():
            for n in clip_names:
                w.add(split, clip(n))
        return w.commit(name=name, **META)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_a_new_dataset_lists_splits_in_order_and_counts_frames(tmp_path):
    out = tmp_path / "ds"
    with DatasetWriter(out, splits=["train", "test", "val"]) as w:
        assert not out.exists()  # nothing under the final name before the commit
        w.add("test", clip("t0", 7))
        w.add("train", clip("b", 10))
        w.add("train", clip("a", 12))
        w.commit(name="toy", **META)
    assert w.num_clips == {"train": 2, "test": 1, "val": 0} and w.frames == {"train": 22, "test": 7, "val": 0}
    index = read_dataset_index(out)
    assert list(index.splits) == ["train", "test", "val"]
    assert index.splits["train"] == ["clips/train/b.npz", "clips/train/a.npz"] and index.splits["val"] == []
    assert load_clip(out / "clips/test/t0.npz").num_frames == 7
    assert no_temporaries(tmp_path)


def test_duplicate_and_unsafe_names_are_refused(tmp_path):
    with DatasetWriter(tmp_path / "ds", splits=["train", "test"]) as w:
        w.add("train", clip("walk 1"))
        with pytest.raises(DataError, match=r"'walk 1' and 'walk\?1' of split train would both be saved as walk_1"):
            w.add("train", clip("walk?1"))  # same file name once made safe
        w.add("test", clip("walk 1"))  # another split is another folder
        with pytest.raises(DataError, match="empty name"):
            w.add("train", clip(" "))
        rel = w.add("train", clip("../../escape"))
        assert rel == "clips/train/.._.._escape.npz" and (w.work / rel).is_file()  # stays inside clips/train
        with pytest.raises(ValueError, match="not declared"):
            w.add("val", clip("x"))
    with pytest.raises(DataError, match="not a plain folder name"):
        DatasetWriter(tmp_path / "other", splits=["../up"])
    assert no_temporaries(tmp_path)


def test_an_existing_dataset_is_refused_unless_replaced_and_other_files_are_kept(tmp_path):
    out = tmp_path / "ds"
    write(out, {"train": ["a", "b"]})
    (out / "README").write_text("keep me")
    with pytest.raises(DataError, match=f"{out}: already holds a dataset.*overwrite"):
        DatasetWriter(out, splits=["train"])
    check_destination(out, replace=True)  # only checks
    write(out, {"train": ["c"]}, name="b", replace=True)
    assert read_dataset_index(out).name == "b"
    assert sorted(p.name for p in (out / "clips/train").iterdir()) == ["c.npz"]  # no stale clip survives
    assert (out / "README").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="exists and is not a folder"):
        check_destination(tmp_path / "file", replace=True)
    assert no_temporaries(tmp_path)


def test_a_failure_before_the_commit_leaves_the_destination_as_it_was(tmp_path):
    out = tmp_path / "ds"
    write(out, {"train": ["a", "b"]})
    before = snapshot(out)
    with pytest.raises(RuntimeError, match="teacher crashed"):
        with DatasetWriter(out, splits=["train"], replace=True) as w:
            w.add("train", clip("c"))
            raise RuntimeError("teacher crashed")
    assert snapshot(out) == before and no_temporaries(tmp_path)


@pytest.mark.parametrize("fail_on", [INDEX_NAME, "clips"])
def test_a_failure_while_swapping_in_restores_the_destination(tmp_path, monkeypatch, fail_on):
    out = tmp_path / "ds"
    write(out, {"train": ["a", "b"]})
    before = snapshot(out)
    real = os.replace

    def failing(src, dst):
        if Path(dst) == out / fail_on and ".tmp-" in str(src):  # moving the new entry into place
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(writer_module.os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        write(out, {"train": ["c"]}, name="new", replace=True)
    assert snapshot(out) == before and no_temporaries(tmp_path)


def test_the_index_is_written_last(tmp_path, monkeypatch):
    """When the index is written every clip is already saved; when the new index arrives, the clips are in place."""
    out = tmp_path / "ds"
    real_index, real_replace = writer_module.write_dataset_index, os.replace
    events: list[str] = []

    def index_spy(root, **kw):
        events.append(f"index written with {sorted(p.name for p in Path(root).rglob('*.npz'))}")
        return real_index(root, **kw)

    def replace_spy(src, dst):
        if Path(dst).parent == out:
            events.append(f"moved in {Path(dst).name}")
        return real_replace(src, dst)

    write(out, {"train": ["old"]})
    monkeypatch.setattr(writer_module, "write_dataset_index", index_spy)
    monkeypatch.setattr(writer_module.os, "replace", replace_spy)
    write(out, {"train": ["a", "b"]}, replace=True)
    assert events[0] == "index written with ['a.npz', 'b.npz']"
    assert events[1:] == ["moved in clips", f"moved in {INDEX_NAME}"]


def test_owned_files_are_replaced_with_the_dataset(tmp_path):
    out = tmp_path / "ds"
    with DatasetWriter(out, splits=["train"], owns=("stats.npz",)) as w:
        w.write_file("stats.npz", lambda f: np.savez(f, x=np.ones(2)))
        w.add("train", clip("a"))
        w.commit(name="a", **META)
    assert (out / "stats.npz").is_file()
    with DatasetWriter(out, splits=["train"], owns=("stats.npz",), replace=True) as w:
        with pytest.raises(ValueError, match="not among the files"):
            w.write_file("other.npz", lambda f: None)
        w.add("train", clip("b"))
        w.commit(name="b", **META)
    assert not (out / "stats.npz").exists()  # the replaced dataset's statistics do not outlive it


def test_shards_publish_without_overwriting_and_merge_in_source_order(tmp_path):
    out = tmp_path / "ds"
    for index in (1, 0):
        with DatasetWriter(out, splits=["train"], shard=Shard(index, 2)) as w:
            for position in range(4):
                if Shard(index, 2).selects(position):
                    w.add("train", clip(f"c{position}"), position=position)
            w.commit(name="toy", **META, statistics={"train": {"clips": w.num_clips["train"]}})
    assert not (out / INDEX_NAME).exists()
    merge_shards(out)
    index = read_dataset_index(out)
    assert index.splits["train"] == [f"clips/train/c{p}.npz" for p in range(4)]
    assert index.extra == {"note": 1, "statistics": {"train": {"clips": 4}}}
    with pytest.raises(ValueError, match="source position"):
        DatasetWriter(tmp_path / "x", splits=["train"], shard=Shard(0, 1)).add("train", clip("a"))


def test_resume_lists_finished_sources_and_redoes_the_others(tmp_path):
    out = tmp_path / "ds"
    settings = {"fps": 20.0}
    w = DatasetWriter(out, splits=["train"], resume=settings)
    assert w.start_source("s1") is None
    w.add("train", clip("s1_a", 5))
    w.add("train", clip("s1_b", 6))
    assert w.finish_source({"source": "one"}) == {"source": "one", "clips": ["clips/train/s1_a.npz",
                                                                            "clips/train/s1_b.npz"], "frames": 11}
    assert w.start_source("s2") is None
    w.add("train", clip("s2_a"))  # interrupted: never finished, so never listed
    w.commit(name="a", **META)
    assert read_dataset_index(out).splits["train"] == ["clips/train/s1_a.npz", "clips/train/s1_b.npz"]

    with pytest.raises(DataError, match="was prepared with other settings"):
        DatasetWriter(out, splits=["train"], resume={"fps": 25.0})
    w = DatasetWriter(out, splits=["train"], resume=settings)
    assert w.start_source("s1")["frames"] == 11  # finished: listed again without preparing it
    assert w.start_source("s2") is None
    w.add("train", clip("s2_a"))  # the unlisted file of the interrupted run is written again
    w.finish_source({})
    w.commit(name="b", **META)
    assert read_dataset_index(out).splits["train"] == ["clips/train/s1_a.npz", "clips/train/s1_b.npz",
                                                       "clips/train/s2_a.npz"]

    (out / "progress" / "s1.json").unlink()  # a finished source whose record is lost is prepared again ...
    w = DatasetWriter(out, splits=["train"], resume=settings)
    assert w.start_source("s1") is None
    with pytest.raises(DataError, match="s1_a.npz: is listed in the dataset's dataset.json"):
        w.add("train", clip("s1_a", 5))  # ... but never over a clip the current index lists
    assert read_dataset_index(out).name == "b"

    foreign = tmp_path / "foreign"
    write(foreign, {"train": ["x"]})
    with pytest.raises(DataError, match="not made by this command"):
        DatasetWriter(foreign, splits=["train"], resume=settings)


def test_modes_are_exclusive(tmp_path):
    with pytest.raises(ValueError, match="different modes"):
        DatasetWriter(tmp_path / "x", splits=["train"], replace=True, resume={})
    assert json.loads(json.dumps(META))  # the metadata used above is plain JSON
