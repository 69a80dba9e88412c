"""Triangulation and the triangulating teacher: exact DLT on noiseless projections, robustness to a view that swapped
left and right, frame offsets, the teacher on synthetic rigs and on the real rig of Pose2Sim's demo."""

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from synthetic import walk
from test_calibration import make_rig

from videomdm.data.calibration import distort_points
from videomdm.data.errors import DataError
from videomdm.data.rig_demo import fetch_rig_demo
from videomdm.skeleton import SMPL_22
from videomdm.teacher import make_teacher, triangulate_teacher
from videomdm.triangulation import (estimate_offsets, heldout_view_errors, ideal_rig, project, rig_consistency,
                                   triangulate, triangulate_dlt)

LEFT = [SMPL_22.index(a) for a, _ in SMPL_22.left_right]
RIGHT = [SMPL_22.index(b) for _, b in SMPL_22.left_right]


def centred_walk(num_frames: int, seed: int = 0, fps: float = 20.0) -> np.ndarray:
    """A synthetic walk ``(T, 22, 3)`` float64 moved so that its mean root is above the rig's centre."""
    motion = walk(num_frames, fps=fps, seed=seed).astype(np.float64)
    motion[..., [0, 2]] -= motion[:, 0, [0, 2]].mean(axis=0)
    return motion


def observe(points: np.ndarray, rig, noise_px: float = 0.0, seed: int = 0) -> np.ndarray:
    """``(V, T, J, 2)`` pinhole pixels of ``points (T, J, 3)`` in every camera of ``rig``, plus Gaussian noise."""
    uv, depth = project(points, rig.K, rig.R, rig.t)
    assert (depth > 0).all()
    return uv + np.random.default_rng(seed).normal(scale=noise_px, size=uv.shape) if noise_px else uv


def test_dlt_is_exact_on_noiseless_projections():
    rig = make_rig(4)
    rng = np.random.default_rng(0)
    points = rng.uniform([-1, 0, -1], [1, 2, 1], size=(6, 9, 3))
    uv = observe(points, rig)
    weights = rng.uniform(0.2, 1.0, size=uv.shape[:-1])
    np.testing.assert_allclose(triangulate_dlt(uv, weights, rig.K, rig.R, rig.t), points, atol=1e-9)
    two = triangulate_dlt(uv[:2], weights[:2], rig.K[:2], rig.R[:2], rig.t[:2])
    np.testing.assert_allclose(two, points, atol=1e-9)
    weights[1:] = 0  # one view left: nothing to triangulate
    assert np.isnan(triangulate_dlt(uv, weights, rig.K, rig.R, rig.t)).all()


def test_a_view_with_left_and_right_swapped_is_left_out():
    rig = make_rig(4, seed=3)
    motion = centred_walk(30, seed=1)
    uv = observe(motion, rig, noise_px=1.0)
    uv[2][:, LEFT + RIGHT] = uv[2][:, RIGHT + LEFT]  # view 2's detector mirrored every limb
    confidence = np.ones(uv.shape[:-1])
    robust = triangulate(uv, confidence, rig.K, rig.R, rig.t, threshold_px=15.0)
    naive = triangulate(uv, confidence, rig.K, rig.R, rig.t, threshold_px=np.inf)
    lateral = LEFT + RIGHT
    error = lambda tri: np.linalg.norm(tri.points[:, lateral] - motion[:, lateral], axis=-1)  # noqa: E731
    assert error(robust).max() < 0.02  # metres
    assert error(naive).mean() > 0.05  # the swapped view pulls every lateral joint when it is kept
    assert not robust.used[2][:, lateral].any() and robust.used[[0, 1, 3]].all()
    assert robust.used[2][:, [SMPL_22.index("pelvis"), SMPL_22.index("head")]].all()  # central joints keep it
    per_view = robust.per_view_median_px()
    assert (per_view < 3).all()  # 1 px noise
    assert np.nanmedian(robust.errors_px[2][:, lateral]) > 30  # its rejected keypoints are far from the point


def test_two_views_that_disagree_or_a_point_behind_a_camera_give_no_point():
    rig = make_rig(2)
    points = centred_walk(5)
    uv = observe(points, rig)
    uv[1, 2, 4] += 80.0  # one keypoint 80 px off
    confidence = np.ones(uv.shape[:-1])
    confidence[0, 3, 7] = 0.0  # seen by one view only
    tri = triangulate(uv, confidence, rig.K, rig.R, rig.t, threshold_px=10.0)
    assert np.isnan(tri.points[2, 4]).all() and not tri.used[:, 2, 4].any()
    assert np.isnan(tri.points[3, 7]).all()
    assert tri.valid.sum() == tri.valid.size - 2
    np.testing.assert_allclose(tri.points[tri.valid], points[tri.valid], atol=1e-8)


def test_frame_offsets_are_recovered():
    rig = make_rig(3, seed=5)
    motion = centred_walk(70, seed=2)
    T = 60
    views = [observe(motion[5:5 + T], rig.subset([0]))[0],  # the reference: instants 5 .. 64
             observe(motion[3:3 + T], rig.subset([1]))[0],  # started 2 frames early: its frame f + 2 = instant f + 5
             observe(motion[8:8 + T], rig.subset([2]))[0]]  # started 3 frames late: offset −3
    uv = np.stack(views) + np.random.default_rng(0).normal(scale=0.5, size=(3, T, 22, 2))
    offsets, costs = estimate_offsets(uv, np.ones(uv.shape[:-1]), rig.K, rig.R, rig.t, max_offset=6)
    assert offsets.tolist() == [0, 2, -3]
    assert costs.shape == (3, 13) and np.isnan(costs[0]).all()
    assert costs[1, 6 + 2] < 2 and np.nanmin(np.delete(costs[1], 6 + 2)) > 2 * costs[1, 6 + 2]


def test_heldout_views_and_the_ideal_rig_of_a_synthetic_rig():
    """Leave-one-camera-out is exact without noise; with Gaussian noise the ideal rig finds the noise back from the
    used views' error and predicts the held-out error, which is well above the used views' even on a perfect rig."""
    rig = make_rig(4, seed=3)
    motion = centred_walk(40, seed=1)
    confidence = np.ones((4,) + motion.shape[:2])
    assert np.nanmax(heldout_view_errors(observe(motion, rig), confidence, rig.K, rig.R, rig.t)) < 1e-6
    with pytest.raises(ValueError, match="at least 3 views"):
        heldout_view_errors(observe(motion, rig)[:2], confidence[:2], rig.K[:2], rig.R[:2], rig.t[:2])

    noise_px = 3.0
    uv = observe(motion, rig, noise_px=noise_px, seed=4)
    used = float(np.nanmedian(triangulate(uv, confidence, rig.K, rig.R, rig.t).used_errors()))
    heldout = heldout_view_errors(uv, confidence, rig.K, rig.R, rig.t)
    ideal = ideal_rig(motion, confidence, rig.K, rig.R, rig.t, used_median_px=used, seed=7)
    assert abs(ideal.noise_px - noise_px) < 0.1 * noise_px
    assert abs(ideal.used_median_px - used) < 0.01 * used
    assert ideal.heldout_median_px.shape == (4,)
    np.testing.assert_allclose(ideal.heldout_median_px, heldout, rtol=0.15)
    assert np.mean(heldout) > 1.5 * used and np.mean(ideal.heldout_median_px) > 1.5 * ideal.used_median_px
    assert used < 1.177 * noise_px  # the fitted views understate the detector's median error (1.177 σ)
    assert ideal.matched
    # Past the outlier rejection's reach (a used-view median above what the 20 px threshold lets through): no match.
    beyond = ideal_rig(motion, confidence, rig.K, rig.R, rig.t, used_median_px=25.0, seed=7)
    assert not beyond.matched and beyond.used_median_px < 20.0


def test_the_rig_consistency_report_of_views_that_see_nothing():
    """A camera that never sees the person has no held-out error (None, JSON-safe); a take no two views agree on
    gives a report of Nones, without warnings."""
    import json
    import warnings

    rig = make_rig(4, seed=3)
    motion = centred_walk(30, seed=1)
    uv = observe(motion, rig, noise_px=2.0, seed=2)
    confidence = np.ones((4,) + motion.shape[:2])
    confidence[2] = 0.0
    report = rig_consistency(uv, confidence, rig.K, rig.R, rig.t)
    assert report["heldout_view_px"][2] is None and report["ideal_rig_heldout_px"][2] is None
    assert 0.9 < report["heldout_over_ideal_rig"] < 1.1 and report["frames"] == 30
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = rig_consistency(uv, np.zeros_like(confidence), rig.K, rig.R, rig.t)
    assert empty["heldout_view_px"] == [None] * 4 and empty["heldout_over_ideal_rig"] is None
    assert json.loads(json.dumps(empty, allow_nan=False)) == empty


def test_teacher_on_a_synthetic_rig_with_lens_distortion():
    wide = np.array([-0.35, 0.15, 0.002, -0.001, -0.03])  # a wide-angle lens: barrel distortion
    rig = make_rig(3, seed=7)
    rig = replace(rig, cameras=tuple(replace(c, distortion=wide) for c in rig.cameras))
    motion = centred_walk(40, seed=4)
    uv = observe(motion, rig, noise_px=0.5)
    distorted = np.stack([distort_points(uv[v], c.K, c.distortion) for v, c in enumerate(rig.cameras)])
    confidence = np.full(uv.shape[:-1], 0.9)
    confidence[:, 10, SMPL_22.index("left_wrist")] = 0.0  # nobody sees the left wrist in frame 10
    result = triangulate_teacher(distorted, confidence, rig.K, rig.R, rig.t, keypoint_skeleton="smpl22",
                                 distortion=[c.distortion for c in rig.cameras])
    assert result.joints.shape == (40, 22, 3) and result.joints.dtype == np.float32
    assert np.linalg.norm(result.joints - motion, axis=-1).max() < 0.03
    assert result.filled.sum() == 1 and result.filled[10, SMPL_22.index("left_wrist")]
    report = result.report(rig.names)
    assert set(report) >= {"median_px_cam1", "used_median_px", "filled_fraction"} and report["used_median_px"] < 2
    ignored = triangulate_teacher(distorted, confidence, rig.K, rig.R, rig.t, keypoint_skeleton="smpl22",
                                  threshold_px=np.inf)  # the lens ignored: worse
    assert np.linalg.norm(ignored.joints - motion, axis=-1).mean() > 2 * np.linalg.norm(
        result.joints - motion, axis=-1).mean()
    floored = triangulate_teacher(uv, confidence, rig.K, rig.R, rig.t, keypoint_skeleton="smpl22", level_floor=True)
    assert floored.floor_shift != 0.0
    # Per-frame detector noise on a motion filmed at 60 fps: smoothing over time (σ = 2 frames) removes much of it.
    motion60 = centred_walk(60, fps=60.0, seed=4)
    jittery = observe(motion60, rig, noise_px=4.0, seed=1)
    raw, smooth = (triangulate_teacher(jittery, np.ones(jittery.shape[:-1]), rig.K, rig.R, rig.t,
                                       keypoint_skeleton="smpl22", smooth_frames=sigma) for sigma in (0.0, 2.0))
    error = lambda joints: np.linalg.norm(joints - motion60, axis=-1).mean()  # noqa: E731
    assert error(smooth.joints) < 0.7 * error(raw.joints)


def test_teacher_protocol_reads_multi_view_clips_only():
    rig = make_rig(4, seed=2)
    motion = centred_walk(20)
    uv = observe(motion, rig, noise_px=0.5)
    clip = SimpleNamespace(name="take1", keypoints_2d=uv.astype(np.float32), confidence=np.ones(uv.shape[:-1]),
                           keypoint_skeleton="smpl22", K=rig.K, R=rig.R, t=rig.t, gt_3d=None, fps=20.0)
    teacher = make_teacher("triangulate", threshold_px=10.0, smooth_seconds=0.0)
    joints = teacher(clip)
    assert np.linalg.norm(joints - motion, axis=-1).max() < 0.02
    assert teacher.reports["take1"]["used_median_px"] < 1.5
    mono = SimpleNamespace(**{**vars(clip), "keypoints_2d": uv[0], "confidence": np.ones(uv.shape[1:-1]),
                              "K": rig.K[0], "R": rig.R[0], "t": rig.t[0]})
    with pytest.raises(DataError, match="clip take1: the triangulating teacher needs a multi-view clip"):
        teacher(mono)
    coco = SimpleNamespace(**{**vars(clip), "keypoints_2d": uv[:, :, :17], "confidence": np.ones((4, 20, 17)),
                              "keypoint_skeleton": "coco17"})
    with pytest.raises(DataError, match="coco17 keypoints cannot place SMPL-22 joints"):
        teacher(coco)


@pytest.mark.integration
def test_teacher_on_the_real_rig(request):
    """MediaPipe on the first 0.5 s of Pose2Sim's 4-camera demo, triangulated with its Qualisys calibration."""
    pytest.importorskip("mediapipe")
    from videomdm.data.calibration import read_rig, undistort_points
    from videomdm.data.video import detect_video

    demo = fetch_rig_demo(Path(request.config.cache.mkdir("videomdm-pose2sim")))
    rig = read_rig(demo / "calibration" / "Calib.qca.txt")
    sequences = [detect_video(demo / "videos" / f"{name}.mp4", fps=60.0, max_seconds=0.5, progress=False)
                 for name in rig.names]
    T = min(s.num_frames for s in sequences)
    keypoints = np.stack([s.keypoints[:T] for s in sequences])  # (4, T, 33, 2)
    confidence = np.stack([s.confidence[:T] for s in sequences])
    assert T >= 28 and (confidence.max(axis=-1) > 0.5).all()  # one person, seen by every camera in every frame

    undistorted = np.stack([undistort_points(kp, c.K, c.distortion) for kp, c in zip(keypoints, rig.cameras)])
    offsets, _ = estimate_offsets(undistorted, confidence, rig.K, rig.R, rig.t, max_offset=8)
    assert offsets[0] == 0 and np.abs(offsets).max() <= 8
    first, last = max(0, -offsets.min()), min(T, T - offsets.max())  # reference frames every view has
    keypoints = np.stack([kp[first + d:last + d] for kp, d in zip(keypoints, offsets)])
    confidence = np.stack([c[first + d:last + d] for c, d in zip(confidence, offsets)])

    result = triangulate_teacher(keypoints, confidence, rig.K, rig.R, rig.t, keypoint_skeleton="blazepose33",
                                 distortion=[c.distortion for c in rig.cameras])
    assert (result.per_view_median_px < 15).all()  # pixels, on 1088×1920 images
    assert result.used_median_px < 12 and result.filled.mean() < 0.05
    joints = result.joints.astype(np.float64)
    feet = joints[:, [SMPL_22.index(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")], 1]
    assert abs(np.percentile(feet.min(axis=1), 10)) < 0.15  # standing on the calibrated floor (y = 0)
    assert 1.3 < np.median(joints[:, SMPL_22.index("head"), 1]) < 2.0
    thigh = np.linalg.norm(joints[:, SMPL_22.index("left_hip")] - joints[:, SMPL_22.index("left_knee")], axis=-1)
    assert 0.3 < np.median(thigh) < 0.55
