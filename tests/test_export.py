"""Export: BVH round trip through the project's BVH reader, BVH grammar, HumanML3D features, and bad input."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from synthetic import walk
from videomdm.cli import main
from videomdm.data.bvh import read_bvh
from videomdm.data.errors import DataError
from videomdm.data.mocap import load_mocap
from videomdm.export import ExportError, export_motion, write_bvh, write_humanml3d
from videomdm.representation import encode
from videomdm.skeleton import SMPL_22


def rigid_motion(num_frames: int = 40, seed: int = 0) -> np.ndarray:
    """A rigid-skeleton motion whose branch angles differ from the canonical rest directions (as in real mocap):
    random offsets, smooth random rotations, a moving root."""
    rng = np.random.default_rng(seed)
    offsets = SMPL_22.rest_directions_array() * rng.uniform(0.08, 0.45, size=(22, 1))
    offsets += rng.normal(scale=0.03, size=offsets.shape)
    offsets[0] = 0.0
    t = np.linspace(0, 2 * np.pi, num_frames)[:, None, None]
    rotvec = 0.6 * np.sin(t + rng.uniform(0, 2 * np.pi, size=(1, 22, 3))) * rng.uniform(0.2, 1, size=(1, 22, 3))
    local = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(num_frames, 22, 3, 3)
    root = np.stack([np.linspace(0, 2, num_frames), 0.9 + 0.05 * np.sin(3 * t[:, 0, 0]), np.zeros(num_frames)], -1)
    glob = np.zeros_like(local)  # forward kinematics: global rotations and positions, parents first
    positions = np.zeros((num_frames, 22, 3))
    for j, parent in enumerate(SMPL_22.parents):
        if parent < 0:
            glob[:, j], positions[:, j] = local[:, j], root
        else:
            glob[:, j] = glob[:, parent] @ local[:, j]
            positions[:, j] = positions[:, parent] + glob[:, parent] @ offsets[j]
    return positions


@pytest.mark.parametrize("motion", [walk(60), rigid_motion()], ids=["walk", "rigid-random-branches"])
def test_bvh_round_trip_through_the_project_reader(tmp_path: Path, motion: np.ndarray) -> None:
    out = tmp_path / "motion.bvh"
    reported = write_bvh(out, motion, fps=30.0)
    back = load_mocap(out)  # SMPL-22 order by joint name, units detected
    error = np.linalg.norm(back.joints - motion, axis=-1).max()
    assert error < 1e-3  # within 1 mm
    assert reported < 1e-4
    assert back.fps == 30.0
    assert read_bvh(out).unit == "m"


def test_non_rigid_motion_reports_its_error(tmp_path: Path) -> None:
    noisy = walk(40) + np.random.default_rng(1).normal(scale=0.01, size=(40, 22, 3))
    reported = write_bvh(tmp_path / "noisy.bvh", noisy, fps=20.0)
    measured = np.linalg.norm(load_mocap(tmp_path / "noisy.bvh").joints - noisy, axis=-1).max()
    assert reported > 0.005  # a rigid skeleton cannot follow 1 cm bone noise, and the function says so
    assert abs(reported - measured) < 1e-6  # the file read back (float32 in load_mocap)


def test_bvh_follows_the_grammar(tmp_path: Path) -> None:
    """HIERARCHY / ROOT / JOINT blocks with OFFSET and CHANNELS, End Site for leaves, balanced braces, MOTION with
    Frames, Frame Time and one line of numbers per frame, as many as the channels declared."""
    out = tmp_path / "motion.bvh"
    write_bvh(out, walk(25), fps=20.0)
    lines = out.read_text().splitlines()
    assert lines[0] == "HIERARCHY" and lines[1] == "ROOT pelvis"
    motion_at = lines.index("MOTION")
    hierarchy = lines[1:motion_at]
    depth, joints, channels, end_sites = 0, [], 0, 0
    for line in hierarchy:
        words = line.split()
        if words[0] in ("ROOT", "JOINT"):
            joints.append(words[1])
        elif words[0] == "CHANNELS":
            assert int(words[1]) == len(words) - 2
            assert words[-3:] == ["Zrotation", "Yrotation", "Xrotation"]
            channels += int(words[1])
        elif words[0] == "OFFSET":
            assert len(words) == 4 and all(re.fullmatch(r"-?\d+\.\d+", w) for w in words[1:])
        elif words == ["End", "Site"]:
            end_sites += 1
        elif words == ["{"]:
            depth += 1
        elif words == ["}"]:
            depth -= 1
            assert depth >= 0
        else:
            pytest.fail(f"unexpected hierarchy line {line!r}")
    assert depth == 0
    assert sorted(joints) == sorted(SMPL_22.joint_names)
    leaves = [n for j, n in enumerate(SMPL_22.joint_names) if j not in SMPL_22.parents]
    assert end_sites == len(leaves)
    assert channels == 6 + 3 * 21
    assert lines[motion_at + 1] == "Frames: 25"
    assert lines[motion_at + 2] == "Frame Time: 0.05000000"
    frames = lines[motion_at + 3:]
    assert len(frames) == 25 and all(len(f.split()) == channels for f in frames)


def test_humanml3d_export_is_the_representation_at_20_fps(tmp_path: Path) -> None:
    motion = walk(40)
    write_humanml3d(tmp_path / "f.npy", motion, fps=20.0)
    features = np.load(tmp_path / "f.npy")
    assert features.shape == (40, 263) and features.dtype == np.float32
    np.testing.assert_allclose(features, encode(torch.as_tensor(motion, dtype=torch.float64), SMPL_22).numpy(),
                               atol=1e-5)
    write_humanml3d(tmp_path / "g.npy", walk(61, fps=30.0), fps=30.0)  # resampled: 2 s at 20 fps
    assert np.load(tmp_path / "g.npy").shape == (41, 263)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((10, 17, 3)), "expected joints of shape"),
    (np.full((10, 22, 3), np.nan), "NaN"),
    (np.zeros((0, 22, 3)), "at least 1 frame"),
])
def test_bad_joints_are_refused_and_nothing_is_written(tmp_path: Path, bad: np.ndarray, message: str) -> None:
    for fmt in ("bvh", "npy", "humanml3d"):
        out = tmp_path / f"out.{fmt}"
        with pytest.raises(DataError, match=message):
            export_motion(out, bad, 20.0, fmt)
        assert list(tmp_path.iterdir()) == []


def test_unknown_format_and_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown export format 'fbx'"):
        export_motion(tmp_path / "x.fbx", walk(10), 20.0, "fbx")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="cannot write"):
        write_bvh(blocker / "motion.bvh", walk(10), 20.0)
    assert blocker.read_text() == "not a folder"


def test_failed_write_leaves_the_previous_file(tmp_path: Path) -> None:
    out = tmp_path / "motion.bvh"
    write_bvh(out, walk(10), 20.0)
    before = out.read_text()
    with pytest.raises(DataError, match="NaN"):
        write_bvh(out, np.full((10, 22, 3), np.inf), 20.0)
    assert out.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["motion.bvh"]


def test_cli_export_reads_fps_from_samples_json(tmp_path: Path, capsys) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    np.save(samples / "joints.npy", np.stack([walk(30), walk(30, seed=1)]))
    (samples / "samples.json").write_text(json.dumps({"fps": 25.0, "texts": ["a", "b"]}))
    assert main(["export", str(samples / "joints.npy"), "--index", "1", "--format", "bvh",
                 "--out", str(tmp_path / "m.bvh")]) == 0
    assert "fps from" in capsys.readouterr().out
    back = load_mocap(tmp_path / "m.bvh")
    assert back.fps == 25.0 and np.linalg.norm(back.joints - walk(30, seed=1), axis=-1).max() < 1e-3
    assert main(["export", str(samples / "joints.npy"), "--format", "fbx", "--out", str(tmp_path / "m.fbx")]) == 2
    assert "unknown export format" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 21, 3)))
    assert main(["export", str(bad), "--format", "npy", "--out", str(tmp_path / "o.npy")]) == 2
    assert f"{bad}: expected joints of shape (T, 22, 3)" in capsys.readouterr().err  # names the input file
    assert not (tmp_path / "o.npy").exists()
