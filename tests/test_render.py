"""Renders: one motion (the old call), a grid of motions with captions, foot-contact marks, bad input."""

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from synthetic import walk
from videomdm.cli import main
from videomdm.data.errors import DataError
from videomdm.render import RenderError, foot_contacts, render_motion, render_motions
from videomdm.representation import FeatureLayout, encode
from videomdm.skeleton import SMPL_22


def test_single_motion_call_still_works(tmp_path: Path) -> None:
    out = render_motion(walk(3), SMPL_22, tmp_path / "m.gif", fps=20.0, title="a walk", size_px=80)
    frames = iio.imread(out)
    assert frames.shape[:3] == (3, 80, 80)


def test_grid_holds_every_motion_and_the_longest_length(tmp_path: Path) -> None:
    motions = [walk(2), walk(3, seed=1), walk(1, seed=2)]
    out = render_motions(motions, SMPL_22, tmp_path / "grid.gif", captions=["one", "two", "three"], size_px=80)
    frames = iio.imread(out)
    assert frames.shape[:3] == (3, 160, 160)  # 2 x 2 grid, 3 frames; shorter motions hold their last frame


def test_foot_contacts_are_the_representation_slice() -> None:
    motion = walk(40)
    expected = encode(torch.as_tensor(motion, dtype=torch.float64), SMPL_22)[:, FeatureLayout(22).foot_contacts]
    np.testing.assert_array_equal(foot_contacts(motion, SMPL_22, 20.0), expected.numpy() > 0.5)
    standing = np.repeat(walk(1), 10, axis=0)
    assert foot_contacts(standing, SMPL_22, 20.0).all()
    # The threshold is a speed: the same motion at twice the frame rate has the same contacts (every other frame).
    slow = walk(41, fps=40.0)
    fast_rate = foot_contacts(slow, SMPL_22, 40.0)[::2][:10]
    assert fast_rate.tolist() == foot_contacts(slow[::2], SMPL_22, 20.0)[:10].tolist()


def test_contact_marks_are_drawn(tmp_path: Path) -> None:
    standing = np.repeat(walk(1), 3, axis=0)
    with_marks = iio.imread(render_motions([standing], SMPL_22, tmp_path / "a.gif", size_px=80))
    without = iio.imread(render_motions([standing], SMPL_22, tmp_path / "b.gif", size_px=80, contacts=False))
    assert (with_marks[-1] != without[-1]).any()


def test_bad_input_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"motion 1\): expected joints of shape"):
        render_motions([walk(3), np.zeros((3, 17, 3))], SMPL_22, tmp_path / "x.gif")
    with pytest.raises(RenderError, match="2 captions for 1 motions"):
        render_motions([walk(3)], SMPL_22, tmp_path / "x.gif", captions=["a", "b"])
    with pytest.raises(DataError, match="NaN"):
        render_motion(np.full((3, 22, 3), np.nan), SMPL_22, tmp_path / "x.gif")
    assert list(tmp_path.iterdir()) == []


def test_cli_renders_a_sample_grid_with_captions(tmp_path: Path) -> None:
    np.save(tmp_path / "joints.npy", np.stack([walk(2), walk(2, seed=1)]))
    (tmp_path / "samples.json").write_text(json.dumps({"fps": 20.0, "texts": ["walks", "turns"]}))
    assert main(["render", str(tmp_path / "joints.npy"), "--grid", "--out", str(tmp_path / "g.gif")]) == 0
    assert iio.imread(tmp_path / "g.gif").shape[0] == 2


def test_render_export_and_view_read_a_joints_file_alike(tmp_path: Path, capsys) -> None:
    from PIL import Image

    np.save(tmp_path / "take.npy", walk(3))
    (tmp_path / "take.json").write_text(json.dumps({"fps": 10}))
    assert main(["render", str(tmp_path / "take.npy"), "--out", str(tmp_path / "t.gif")]) == 0
    assert Image.open(tmp_path / "t.gif").info["duration"] == 100  # ms per frame: the fps recorded beside the file
    bad = np.stack([walk(3), walk(3)])
    bad[1, 2, 0, 0] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    message = f"{tmp_path / 'bad.npy'} (motion 1): joints of shape (3, 22, 3) contain NaN or infinite values"
    for command in (["render", "--grid"], ["export", "--format", "npy"], ["view"]):
        assert main([command[0], str(tmp_path / "bad.npy"), *command[1:], "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err, command


def test_overlay_draws_the_video_beside_the_3d_scene(tmp_path: Path) -> None:
    from videomdm.render import render_overlay
    from videomdm.skeleton import COCO_17

    joints = walk(5)
    frames = [np.full((120, 160, 3), 30 * i, np.uint8) for i in range(6)]  # one frame more than the motion
    keypoints = np.random.default_rng(0).uniform(0, 120, size=(5, 17, 2))
    projected = np.random.default_rng(1).uniform(0, 120, size=(5, 22, 2))
    out = render_overlay(frames, keypoints, np.ones((5, 17)), COCO_17, projected, joints, SMPL_22, tmp_path / "o.mp4",
                         height_px=120)
    video = iio.imread(out)
    assert video.shape[:3] == (5, 120, 160 + 120)  # the frame (scaled to 120 px high) and a square 3D view
    assert video[:, :, 170:].std() > 0  # the 3D scene is drawn
    with pytest.raises(RenderError, match="do not match 5 frames"):
        render_overlay(frames, keypoints[:, :16], np.ones((5, 16)), COCO_17, projected, joints, SMPL_22,
                       tmp_path / "p.mp4")
    with pytest.raises(DataError, match="NaN"):
        render_overlay(frames, keypoints, np.ones((5, 17)), COCO_17, projected, np.full((5, 22, 3), np.nan), SMPL_22,
                       tmp_path / "p.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]
