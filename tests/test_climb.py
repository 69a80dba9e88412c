"""The climbing mocap source: the 53-joint → SMPL-22 mapping, the reader's errors, the fetch from a wheel (with a
wheel the test writes itself) and the dataset built from it; the real wheel in one integration test."""

import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from synthetic import walk

from videomdm.data import climb, package_files
from videomdm.data.climb import (
    CLIMB_FILES,
    CLIMB_JOINTS,
    SMPL22_FROM_CLIMB,
    SPINE2_FRACTION,
    build_climb_dataset,
    climb_to_smpl22,
    fetch_climb_joints,
    load_climb_take,
)
from videomdm.data.clip import load_clip, read_dataset_index
from videomdm.data.errors import DataError
from videomdm.data.mocap import load_mocap, resample
from videomdm.skeleton import SMPL_22


def climbing_joints(smpl: np.ndarray, seed: int = 0) -> np.ndarray:
    """(T, 53, 3) z-up joints laid out as the climbing files are, whose mapped joints are those of ``smpl``
    ((T, 22, 3) y up); fingers and foot markers sit near the hands and feet, off any mapped place."""
    rng = np.random.default_rng(seed)
    z_up = np.stack([smpl[..., 0], -smpl[..., 2], smpl[..., 1]], axis=-1)  # (x, y, z) y up → (x, −z, y) z up
    out = np.zeros((len(smpl), len(CLIMB_JOINTS), 3), dtype=np.float32)
    for name in CLIMB_JOINTS:
        if name.endswith("FootMod"):
            anchor = SMPL_22.index(("left" if name.startswith("Left") else "right") + "_ankle")
        elif "Hand" in name:
            anchor = SMPL_22.index(("left" if name.startswith("Left") else "right") + "_wrist")
        else:
            continue
        out[:, CLIMB_JOINTS.index(name)] = z_up[:, anchor] + rng.normal(scale=0.05, size=3)
    for target, source in SMPL22_FROM_CLIMB.items():
        if source is not None:
            out[:, CLIMB_JOINTS.index(source)] = z_up[:, SMPL_22.index(target)]
    return out


def test_mapping_recovers_every_mapped_joint_and_places_spine2_by_the_rule():
    smpl = walk(40).astype(np.float64)
    mapped = climb_to_smpl22(climbing_joints(smpl))
    assert mapped.shape == (40, 22, 3)
    spine2 = SMPL_22.index("spine2")
    others = [j for j in range(22) if j != spine2]
    np.testing.assert_allclose(mapped[:, others], smpl[:, others], atol=1e-6)
    pelvis, neck = smpl[:, SMPL_22.index("pelvis")], smpl[:, SMPL_22.index("neck")]
    np.testing.assert_allclose(mapped[:, spine2], pelvis + SPINE2_FRACTION * (neck - pelvis), atol=1e-6)
    assert [k for k, v in SMPL22_FROM_CLIMB.items() if v is None] == ["spine2"]  # the only placed joint
    assert len({v for v in SMPL22_FROM_CLIMB.values() if v}) == 21  # no climbing joint used twice


def test_axes_turn_z_up_into_y_up_by_a_proper_rotation():
    # Unit vectors placed at three mapped joints (pelvis at the origin) read the axis change off directly.
    joints = np.zeros((1, len(CLIMB_JOINTS), 3))
    for name, axis in (("LeftUpLeg", 0), ("RightUpLeg", 1), ("Spine", 2)):
        joints[0, CLIMB_JOINTS.index(name), axis] = 1.0
    mapped = climb_to_smpl22(joints)[0]
    M = np.stack([mapped[SMPL_22.index(n)] for n in ("left_hip", "right_hip", "spine1")], axis=1)  # columns
    np.testing.assert_allclose(M, [[1, 0, 0], [0, 0, 1], [0, -1, 0]], atol=1e-12)  # (x, y, z) → (x, z, −y)
    assert np.linalg.det(M) == pytest.approx(1.0)  # a rotation: a left joint stays on the subject's left
    with pytest.raises(ValueError, match=r"\(T, 53, 3\)"):
        climb_to_smpl22(np.zeros((3, 22, 3)))


def test_reader_names_the_file_and_the_problem(tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((10, 22, 3), dtype=np.float32))
    with pytest.raises(DataError, match=r"wrong\.npy: expected climbing joints of shape \(T >= 2, 53, 3\)"):
        load_climb_take(wrong)
    nan = tmp_path / "nan.npy"
    joints = climbing_joints(walk(5))
    joints[3, 7, 1] = np.nan
    np.save(nan, joints)
    with pytest.raises(DataError, match=r"nan\.npy: .*NaN.*first at frame 3"):
        load_climb_take(nan)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not an array")
    with pytest.raises(DataError, match="garbage.npy: cannot read"):
        load_climb_take(garbage)


# --- the fetch, with a wheel the test writes -------------------------------------------------------------------------


def _takes(frames: int = 130) -> dict[str, bytes]:
    """Cache name → .npy bytes of a short synthetic take each (120 fps)."""
    return {name: _npy_bytes(climbing_joints(walk(frames, fps=120.0, seed=i), seed=i))
            for i, name in enumerate(CLIMB_FILES)}


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _use_takes(monkeypatch, takes: dict[str, bytes]) -> None:
    monkeypatch.setattr(climb, "CLIMB_FILES", {
        name: (member, hashlib.sha256(takes[name]).hexdigest()) for name, (member, _) in CLIMB_FILES.items()})


def _fake_pip(takes: dict[str, bytes], calls: list, *, extra: dict[str, bytes] | None = None, drop: str | None = None):
    def run(command, **kw):
        calls.append(command)
        dest = Path(command[command.index("-d") + 1])
        with zipfile.ZipFile(dest / "holosoma_retargeting-0.1.0-py3-none-any.whl", "w") as wheel:
            for name, (member, _) in CLIMB_FILES.items():
                if member != drop:
                    wheel.writestr(member, takes[name])
            for member, data in (extra or {}).items():
                wheel.writestr(member, data)
        return subprocess.CompletedProcess(command, 0, "", "")
    return run


def test_fetch_extracts_the_five_takes_and_then_uses_the_cache(tmp_path, monkeypatch):
    takes = _takes()
    _use_takes(monkeypatch, takes)
    calls: list = []
    monkeypatch.setattr(package_files.subprocess, "run", _fake_pip(takes, calls, extra={"holosoma_retargeting/x.py": b"1"}))
    paths = fetch_climb_joints(tmp_path)
    assert [p.name for p in paths] == list(CLIMB_FILES)
    assert [p.read_bytes() for p in paths] == list(takes.values())
    assert calls[0][1:4] == ["-m", "pip", "download"] and "holosoma-retargeting==0.1.0" in calls[0]
    assert "--no-deps" in calls[0] and "--only-binary" in calls[0]
    assert sorted(p.name for p in paths[0].parent.iterdir()) == sorted(CLIMB_FILES)  # the wheel is gone
    assert fetch_climb_joints(tmp_path) == paths and len(calls) == 1  # cached: pip not run again


def test_fetch_rejects_other_contents_and_names_missing_files(tmp_path, monkeypatch):
    takes = _takes(20)
    _use_takes(monkeypatch, takes)
    tampered = dict(takes)
    tampered["climb_seq_2.npy"] = _npy_bytes(np.zeros((20, 53, 3), dtype=np.float32))
    monkeypatch.setattr(package_files.subprocess, "run", _fake_pip(tampered, []))
    with pytest.raises(DataError, match="mocap_climb_seq_2_.*SHA-256"):
        fetch_climb_joints(tmp_path / "a")
    member = CLIMB_FILES["climb_seq_4.npy"][0]
    monkeypatch.setattr(package_files.subprocess, "run", _fake_pip(takes, [], drop=member))
    with pytest.raises(DataError, match=r"the wheel lacks \[.*mocap_climb_seq_4_"):
        fetch_climb_joints(tmp_path / "b")


def test_dataset_from_the_fetched_takes(tmp_path, monkeypatch):
    takes = _takes(130)  # 130 frames at 120 fps → 22 frames at 20 fps
    _use_takes(monkeypatch, takes)
    monkeypatch.setattr(package_files.subprocess, "run", _fake_pip(takes, []))
    summary = build_climb_dataset(tmp_path / "climb", tmp_path / "cache", window_frames=10, test_fraction=0.0)
    index = read_dataset_index(tmp_path / "climb")
    assert index.name == "climb" and index.fps == 20.0 and index.license == climb.CLIMB_LICENSE
    assert summary["splits"]["train"]["clips"] == 5 * 4 and index.splits["test"] == []
    smpl22 = tmp_path / "cache" / "climb-holosoma-retargeting-0.1.0" / "smpl22"
    assert json.loads((smpl22 / "climb_seq_0.json").read_text())["fps"] == 120.0
    assert load_mocap(smpl22 / "climb_seq_0.npy").fps == 120.0
    raw = np.load(tmp_path / "cache" / "climb-holosoma-retargeting-0.1.0" / "climb_seq_0.npy")
    expected = resample(climb_to_smpl22(raw).astype(np.float32), 120.0, 20.0)  # (22, 22, 3)
    first = load_clip(next(p for p in index.clip_paths("train") if p.name == "climb_seq_0_000005.npz"))
    np.testing.assert_allclose(first.gt_3d, expected[5:15], atol=1e-6)


def test_dataset_refuses_an_existing_dataset_before_downloading(tmp_path, monkeypatch):
    (tmp_path / "climb").mkdir()
    (tmp_path / "climb" / "dataset.json").write_text("{}")

    def no_pip(command, **kw):
        raise AssertionError("pip must not run")

    monkeypatch.setattr(package_files.subprocess, "run", no_pip)
    with pytest.raises(DataError):
        build_climb_dataset(tmp_path / "climb", tmp_path / "cache")


# --- the real wheel --------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_climbing_takes_for_real(tmp_path):
    paths = fetch_climb_joints(tmp_path / "cache")
    for path, frames in zip(paths, (2801, 2423, 3011, 2401, 2303)):
        joints = load_climb_take(path)  # (T, 22, 3) y up, metres
        assert joints.shape == (frames, 22, 3)
        span = np.ptp(joints[..., 1], axis=1)  # (T,) joint height span per frame
        assert 1.3 <= np.percentile(span, 95) <= 2.0  # a standing adult, in metres
        bones = np.linalg.norm(joints[:, SMPL_22.index("left_knee")] - joints[:, SMPL_22.index("left_hip")], axis=-1)
        assert np.ptp(bones) < 1e-3  # constant bone lengths: the same joint in every frame
        left = joints[:, SMPL_22.index("left_hip")] - joints[:, SMPL_22.index("right_hip")]
        toes = joints[:, SMPL_22.index("left_foot")] - joints[:, SMPL_22.index("left_ankle")]
        forward = np.cross(left, [0.0, 1.0, 0.0])
        assert np.median(np.sum(forward[:, [0, 2]] * toes[:, [0, 2]], axis=1)) > 0  # not mirrored
