"""Synchronized videos of a calibrated rig → multi-view clips (videomdm.rig_footage): lens models removed, frame
offsets estimated, the triangulating teacher, grounding with every camera; the command line on the real rig."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import walk
from test_calibration import make_rig

from videomdm.camera import project_to_pixels
from videomdm.data.calibration import distort_points
from videomdm.data.clip import load_clip, read_dataset_index
from videomdm.data.errors import DataError
from videomdm.data.observed import KeypointSequence, clip_reprojection_px
from videomdm.rig_footage import align_views, rig_clip


def _filmed(rig, offsets, frames=90, fps=60.0, margin=6):
    """A 60 fps walk seen by every camera of ``rig`` through its lens, camera v's frame ``f + d_v`` showing camera
    0's frame f; returns the sequences and the walk (camera 0's frame f is the walk's frame ``f + margin``)."""
    truth = walk(frames + 2 * margin, fps=fps, seed=3).astype(np.float64)
    truth[..., [0, 2]] -= truth[:, :1, [0, 2]].mean(0)  # walk through the rig's middle
    sequences = []
    for camera, d in zip(rig.cameras, offsets):
        instants = truth[margin - d:margin - d + frames]  # camera frame g shows walk frame g + margin − d
        uv = project_to_pixels(torch.from_numpy(instants)[None], torch.from_numpy(camera.K),
                               torch.from_numpy(camera.R)[None], torch.from_numpy(camera.t)[None])[0].numpy()
        seen = distort_points(uv, camera.K, camera.distortion)  # what the lens puts on the sensor
        sequences.append(KeypointSequence(name=camera.name, keypoints=seen, confidence=np.ones(seen.shape[:2]),
                                          skeleton="smpl22", fps=fps, image_size=camera.image_size, source=camera.name))
    return sequences, truth


def test_a_take_becomes_one_grounded_multi_view_clip_with_its_offsets_found():
    rig = make_rig(3)
    sequences, _ = _filmed(rig, [0, 4, -3])
    clip, report, views_used = rig_clip("take", sequences, rig, fps=20.0, max_offset=6, smooth_seconds=0.0)
    assert report["offsets_estimated"] and report["offsets"] == [0, 4, -3]
    assert max(report["offset_error_px"][1:]) < 0.1 < min(report["zero_offset_error_px"][1:])
    assert clip.num_views == 3 and clip.keypoint_skeleton == "smpl22" and clip.fps == 20.0
    assert clip.num_frames == (90 - 4 - 3 - 1) // 3 + 1  # the 83 common 60 fps frames at 20 fps
    # Exact views: the triangulated teacher (unsmoothed) reprojects onto every view's (undistorted) keypoints.
    assert report["teacher"]["used_median_px"] < 0.05 and clip_reprojection_px(clip) < 0.05
    # Noiseless, synchronized views: each held-out view is predicted exactly by the other two.
    consistency = report["consistency"]
    assert max(consistency["heldout_view_px"]) < 0.05 and consistency["heldout_over_ideal_rig"] is None
    # Grounded: root at the origin on the first frame, floor at y = 0 (the cameras moved along).
    assert np.allclose(clip.teacher_3d[0, 0, [0, 2]], 0.0, atol=1e-5)
    assert abs(np.percentile(clip.teacher_3d[..., 1].min(-1), 5)) < 0.02


def test_the_rig_consistency_report_tells_a_synchronized_rig_from_an_unsynchronized_one():
    """With detector noise alone the held-out views agree with a rig without timing error (ratio ≈ 1); a camera
    whose offset is given wrong makes the held-out error grow well beyond it."""
    from dataclasses import replace

    rig = make_rig(4, seed=2)
    sequences, _ = _filmed(rig, [0, 3, 0, -2])
    rng = np.random.default_rng(0)
    noisy = [replace(s, keypoints=s.keypoints + rng.normal(scale=2.0, size=s.keypoints.shape)) for s in sequences]
    _, synced, _ = rig_clip("take", noisy, rig, fps=20.0, offsets=[0, 3, 0, -2], smooth_seconds=0.0)
    _, shifted, _ = rig_clip("take", noisy, rig, fps=20.0, offsets=[0, 0, 0, -2], smooth_seconds=0.0)
    ok, off = synced["consistency"], shifted["consistency"]
    assert ok["frames"] == 85 and len(ok["heldout_view_px"]) == 4 and 1.8 < ok["ideal_rig_noise_px"] < 2.2
    assert 0.9 < ok["heldout_over_ideal_rig"] < 1.1
    assert off["heldout_over_ideal_rig"] > 1.5 and off["heldout_view_px"][1] > 2 * ok["heldout_view_px"][1]


def test_a_view_that_swapped_left_and_right_is_left_out_of_the_views_used():
    """The views each keypoint was triangulated from (what lifting a take is guided by): a camera whose detector
    swapped the ankles is rejected for them wherever the swap moves them beyond the outlier threshold, and kept for
    every other joint."""
    from dataclasses import replace

    rig = make_rig(3)
    sequences, _ = _filmed(rig, [0, 0, 0])
    swapped = sequences[2].keypoints.copy()
    swapped[:, [7, 8]] = swapped[:, [8, 7]]  # SMPL-22 left and right ankle
    sequences[2] = replace(sequences[2], keypoints=swapped)
    clip, _, views_used = rig_clip("take", sequences, rig, fps=20.0, offsets=[0, 0, 0], smooth_seconds=0.0)
    assert views_used.shape == clip.confidence.shape and views_used.dtype == bool
    apart = np.linalg.norm(clip.keypoints_2d[2, :, 7] - clip.keypoints_2d[2, :, 8], axis=-1) > 60  # px, swap visible
    assert apart.sum() > 5 and not views_used[2, apart][:, [7, 8]].any()
    assert views_used[:2][:, apart][..., [7, 8]].all()
    others = [j for j in range(22) if j not in (7, 8)]
    assert views_used[:, :, others].all()


def test_given_offsets_are_used_and_bad_ones_refused():
    rig = make_rig(2, seed=1)
    sequences, _ = _filmed(rig, [0, 2])
    clip, report, _ = rig_clip("take", sequences, rig, fps=20.0, offsets=[0, 2], smooth_seconds=0.0)
    assert report["offsets"] == [0, 2] and not report["offsets_estimated"] and clip_reprojection_px(clip) < 0.05
    _, wrong, _ = rig_clip("take", sequences, rig, fps=20.0, offsets=[0, 0])
    assert wrong["teacher"]["used_median_px"] > 1.0  # unsynchronized views disagree
    with pytest.raises(DataError, match="one offset per camera with 0 for the first"):
        rig_clip("take", sequences, rig, fps=20.0, offsets=[1, 2])
    with pytest.raises(DataError, match="3 videos for a rig of 2 cameras"):
        rig_clip("take", sequences + sequences[:1], rig, fps=20.0)


def test_align_views_keeps_the_instants_every_view_has():
    keypoints = np.arange(10, dtype=float)[None, :, None, None].repeat(2, 0).repeat(2, -1)  # (2, 10, 1, 2)
    aligned, _ = align_views(keypoints, np.ones((2, 10, 1)), [0, 3])
    assert aligned.shape == (2, 7, 1, 2) and aligned[0, 0, 0, 0] == 0 and aligned[1, 0, 0, 0] == 3
    with pytest.raises(DataError, match="leave 0 common frames"):
        align_views(keypoints, np.ones((2, 10, 1)), [0, 12])


def test_the_overlay_of_a_rig_shows_every_view_beside_the_3d_scene(tmp_path):
    import imageio.v3 as iio

    from videomdm.render import RenderError, render_views_overlay
    from videomdm.skeleton import COCO_17, SMPL_22

    joints = walk(4)
    frames = [[np.full((120, 160, 3), 40, np.uint8), np.full((240, 120, 3), 90, np.uint8)] for _ in range(4)]
    keypoints = np.random.default_rng(0).uniform(0, 120, size=(2, 4, 17, 2))
    projected = np.random.default_rng(1).uniform(0, 120, size=(2, 4, 22, 2))
    out = render_views_overlay(frames, keypoints, np.ones((2, 4, 17)), COCO_17, projected, joints, SMPL_22,
                               tmp_path / "rig.mp4", height_px=120)
    video = iio.imread(out)
    assert video.shape[:3] == (4, 120, 160 + 60 + 120)  # both views scaled to 120 px high, then the 3D scene
    with pytest.raises(RenderError, match="frame 0 has 1 views, expected 2"):
        render_views_overlay([f[:1] for f in frames], keypoints, np.ones((2, 4, 17)), COCO_17, projected, joints,
                             SMPL_22, tmp_path / "bad.mp4")


@pytest.mark.integration
def test_prepare_video_with_a_calibration_on_the_real_rig(request, tmp_path):
    """MediaPipe on the first 0.4 s of Pose2Sim's 4-camera demo, through the command line."""
    pytest.importorskip("mediapipe")
    from videomdm.cli import main
    from videomdm.data.rig_demo import fetch_rig_demo

    demo = fetch_rig_demo(Path(request.config.cache.mkdir("videomdm-pose2sim")))
    videos = [str(demo / "videos" / f"cam0{k}.mp4") for k in range(1, 5)]
    out = tmp_path / "rig"
    assert main(["prepare", "video", *videos, "--calibration", str(demo / "calibration" / "Calib.qca.txt"),
                 "--out", str(out), "--max-seconds", "0.4", "--max-offset", "6", "--quiet"]) == 0
    index = read_dataset_index(out)
    clip = load_clip(index.clip_paths("train")[0])
    report = index.extra["takes"][clip.name]
    assert clip.num_views == 4 and clip.keypoint_skeleton == "blazepose33" and clip.num_frames >= 5
    assert report["teacher"]["used_median_px"] < 15  # pixels on 1088×1920 images
    # The slow first 0.4 s: the views agree as on a rig without timing or calibration error (measured 0.94).
    assert 0.7 < report["consistency"]["heldout_over_ideal_rig"] < 1.3
    # Keypoints the triangulation rejected are stored with confidence 0: the views left per point are those it used.
    assert (clip.confidence > 0).sum(0).mean() == pytest.approx(report["teacher"]["views_used_mean"], abs=1e-3)
    assert [c["name"] for c in index.extra["calibration"]["cameras"]] == ["cam01", "cam02", "cam03", "cam04"]
    assert json.dumps(index.extra)  # the provenance is plain JSON


@pytest.mark.integration
def test_lift_a_rig_take_draws_every_view(request, motion_dataset, tmp_path):
    """A tiny prior lifts the first 0.4 s of the Pose2Sim demo from its triangulation, guided by its 4 views."""
    pytest.importorskip("mediapipe")
    import imageio.v3 as iio
    from test_train import TINY

    from videomdm.cli import main
    from videomdm.config import load_config
    from videomdm.data.rig_demo import fetch_rig_demo
    from videomdm.train import train

    demo = fetch_rig_demo(Path(request.config.cache.mkdir("videomdm-pose2sim")))
    train(motion_dataset, tmp_path / "run", load_config("small", TINY + ["train.steps=1"]), progress=False)
    out = tmp_path / "lifted"
    assert main(["lift", str(tmp_path / "run"), str(demo / "videos"), "--calibration",
                 str(demo / "calibration" / "Calib.qca.txt"), "--out", str(out), "--max-seconds", "0.4",
                 "--max-offset", "6"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cameras"] == ["cam01", "cam02", "cam03", "cam04"] and len(metrics["offsets"]) == 4
    assert metrics["settings"]["samples"] == 8 and metrics["settings"]["guidance"] == 1.0
    assert len(metrics["lift_reprojection_px_per_view"]) == 4 and np.isfinite(metrics["lift_reprojection_px"])
    joints = np.load(out / f"{metrics['take']}.npy")
    assert joints.shape == (metrics["frames"], 22, 3)
    video = iio.imread(out / f"{metrics['take']}.mp4")
    assert video.shape[0] == metrics["frames"] and video.shape[2] > 4 * 360 * 1088 / 1920  # four portrait panels
