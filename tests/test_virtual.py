"""Virtual cameras and the detector noise model (videomdm.data.virtual)."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import walk

from videomdm.data.clip import Clip
from videomdm.data.errors import DataError
from videomdm.data.virtual import DetectorNoise, camera_for_clip, observe_clip, simulate_detections
from videomdm.skeleton import COCO_17, SMPL_22


def project(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference pinhole projection in float64 numpy: (T, J, 3) world → (T, J, 2) pixels and (T, J) depth."""
    cam = points.astype(np.float64) @ R.T + t  # (T, J, 3)
    xy = cam[..., :2] / cam[..., 2:3]
    uv = np.stack([K[0, 0] * xy[..., 0] + K[0, 1] * xy[..., 1] + K[0, 2], K[1, 1] * xy[..., 1] + K[1, 2]], -1)
    return uv, cam[..., 2]


def person_uv(num_frames: int, seed: int = 0) -> np.ndarray:
    """(T, 22, 2) exact keypoints of a walking person seen by a fixed front camera (about 360 px tall)."""
    gt = walk(num_frames, seed=seed, speed=0.0)  # walking on the spot keeps the person in view
    K, R, t = camera_for_clip(gt, np.random.default_rng(seed), distance=5.0, elevation_deg=10.0, azimuth_deg=0.0,
                              focal_px=1400.0)
    return project(gt, K, R, t)[0]


def mocap_clip(num_frames: int = 60, seed: int = 0) -> Clip:
    return Clip(name=f"walk{seed}", fps=20.0, skeleton="smpl22", source="synthetic walk", gt_3d=walk(num_frames,
                seed=seed), text=["a person walks"])


# --- noise model ------------------------------------------------------------------------------------------------------


def test_clean_noise_keeps_exact_keypoints():
    uv = person_uv(30)
    noisy, conf = simulate_detections(uv, SMPL_22, DetectorNoise.clean(), np.random.default_rng(0))
    assert noisy.dtype == np.float32 and conf.dtype == np.float32
    assert noisy.shape == uv.shape and conf.shape == uv.shape[:2]
    np.testing.assert_allclose(noisy, uv, atol=1e-4)
    assert (conf == 1).all()


@pytest.mark.parametrize("severity", [1.0, 2.0])
def test_jitter_std_matches_fraction_of_box_size(severity):
    uv = person_uv(3000)
    noise = DetectorNoise(pixel_std=0.01, drop_rate=0.0, swap_rate=0.0, severity=severity)
    noisy, conf = simulate_detections(uv, SMPL_22, noise, np.random.default_rng(1))
    box = (uv.max(axis=1) - uv.min(axis=1)).max(axis=1)  # (T,) box size, pixels
    assert 300 < box.mean() < 700  # a realistic person size for the check below
    normalized = (noisy - uv) / (box[:, None, None] * 0.01 * severity)  # should be N(0, 1) per coordinate
    assert abs(normalized.mean()) < 0.02
    assert normalized.std() == pytest.approx(1.0, rel=0.03)
    # confidence falls with the error: mean ≈ 1 − 0.5 · E‖n‖ / 3σ = 1 − 0.5 · √(π/2) / 3 ≈ 0.79
    error = np.linalg.norm(normalized, axis=-1)
    assert conf.mean() == pytest.approx(1 - 0.5 * np.sqrt(np.pi / 2) / 3, abs=0.02)
    assert np.corrcoef(error.ravel(), conf.ravel())[0, 1] < -0.8
    assert conf.min() >= noise.min_confidence and conf.max() <= 1


def test_drop_rate_bursts_and_dropped_values():
    uv = person_uv(4000)
    noise = DetectorNoise(drop_rate=0.03, drop_burst=5.0, swap_rate=0.0)
    noisy, conf = simulate_detections(uv, SMPL_22, noise, np.random.default_rng(2))
    dropped = conf == 0
    assert dropped.mean() == pytest.approx(0.03, abs=0.004)
    assert np.isfinite(noisy).all()
    assert (conf[~dropped] >= noise.min_confidence).all()
    # drops come in runs of consecutive frames (mean run length ≈ drop_burst, a bit more where runs merge)
    runs = []
    for j in range(uv.shape[1]):
        edges = np.diff(np.concatenate([[0], dropped[:, j].astype(int), [0]]))
        runs += list(np.nonzero(edges == -1)[0] - np.nonzero(edges == 1)[0])
    assert 4.0 < np.mean(runs) < 6.5
    # dropped joints keep a position near the truth (jitter only), not NaN or a sentinel
    box = (uv.max(axis=1) - uv.min(axis=1)).max(axis=1)
    assert (np.linalg.norm(noisy - uv, axis=-1)[dropped] < 0.1 * box[:, None].repeat(22, 1)[dropped]).all()


def test_swap_rate_swaps_limbs_with_their_confidences():
    uv = person_uv(5000)
    base = DetectorNoise(drop_rate=0.05, swap_rate=0.0)
    swapped = DetectorNoise(drop_rate=0.05, swap_rate=0.02)
    # swaps are drawn last, so the same seed gives the same jitter, confidences and drops
    noisy0, conf0 = simulate_detections(uv, SMPL_22, base, np.random.default_rng(3))
    noisy1, conf1 = simulate_detections(uv, SMPL_22, swapped, np.random.default_rng(3))
    changed = (noisy1 != noisy0).any(axis=(1, 2))
    assert changed.mean() == pytest.approx(0.02, abs=0.006)
    mirror = SMPL_22.mirror_permutation
    for frame in np.nonzero(changed)[0]:
        joints = np.nonzero((noisy1[frame] != noisy0[frame]).any(-1))[0]
        assert len(joints) >= 2 and (mirror[joints] != joints).all()  # only left/right joints move
        np.testing.assert_array_equal(np.sort(mirror[joints]), joints)  # ... in complete pairs
        np.testing.assert_array_equal(noisy1[frame, joints], noisy0[frame, mirror[joints]])
        np.testing.assert_array_equal(conf1[frame, joints], conf0[frame, mirror[joints]])
    np.testing.assert_array_equal(noisy1[~changed], noisy0[~changed])


def test_swap_moves_a_whole_limb():
    uv = person_uv(2000)
    noisy, _ = simulate_detections(uv, SMPL_22, DetectorNoise(pixel_std=0.0, drop_rate=0.0, swap_rate=1.0),
                                   np.random.default_rng(4))
    moved = (noisy != uv.astype(np.float32)).any(-1)  # (T, J)
    hip, knee, ankle, foot = SMPL_22.indices(["left_hip", "left_knee", "left_ankle", "left_foot"])
    with_hip = moved[:, hip]
    assert with_hip.any()
    assert moved[with_hip][:, [knee, ankle, foot]].all()  # a swapped hip takes the leg below it along


def test_noise_works_for_detector_skeletons():
    uv = np.random.default_rng(0).uniform(100, 600, size=(50, COCO_17.num_joints, 2))
    noisy, conf = simulate_detections(uv, COCO_17, DetectorNoise(severity=3.0), np.random.default_rng(0))
    assert noisy.shape == uv.shape and np.isfinite(noisy).all() and ((conf >= 0) & (conf <= 1)).all()
    with pytest.raises(ValueError):
        simulate_detections(uv, SMPL_22, DetectorNoise(), np.random.default_rng(0))
    with pytest.raises(ValueError):
        DetectorNoise(pixel_std=-1.0)


# --- cameras ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_camera_keeps_subject_in_front_and_in_image(seed):
    gt = walk(60, seed=seed)
    image_size = (1280, 720)
    K, R, t = camera_for_clip(gt, np.random.default_rng(seed), image_size=image_size)
    assert K.shape == (3, 3) and R.shape == (3, 3) and t.shape == (3,)
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)
    uv, depth = project(gt, K, R, t)
    assert (depth > 0.5).all()
    assert ((uv >= 0) & (uv < np.array(image_size))).all()
    # it looks at the subject: the mean pelvis projects near the image centre, the head above the feet
    pelvis = project(gt[:, SMPL_22.index("pelvis")].mean(0, keepdims=True)[None], K, R, t)[0][0, 0]
    assert np.linalg.norm(pelvis - np.array(image_size) / 2) < 200
    assert (uv[:, SMPL_22.index("head"), 1] < uv[:, SMPL_22.index("left_foot"), 1]).all()


def test_camera_ranges_are_respected():
    gt = walk(40, seed=0)
    K, R, t = camera_for_clip(gt, np.random.default_rng(0), distance=(5.0, 5.5), focal_px=(900.0, 1000.0),
                              image_size=(640, 480))
    assert 900 <= K[0, 0] <= 1000 and K[0, 0] == K[1, 1]
    np.testing.assert_allclose(K[:2, 2], [320, 240])
    centre = -R.T @ t
    target = np.array([gt[:, 0, 0].mean(), gt[..., 1].mean(), gt[:, 0, 2].mean()])
    assert 4.5 < np.linalg.norm(centre - target) < 6.0


def test_camera_impossible_ranges_raise():
    gt = walk(200, seed=0)  # about 12 m of walking
    with pytest.raises(DataError, match="in front"):
        camera_for_clip(gt, np.random.default_rng(0), distance=1.0)


# --- observed clips ---------------------------------------------------------------------------------------------------


def test_observe_clip_records():
    clip = mocap_clip()
    views = observe_clip(clip, num_cameras=3, rng=np.random.default_rng(0), noise=DetectorNoise.clean())
    assert [v.name for v in views] == ["walk0_cam0", "walk0_cam1", "walk0_cam2"]
    for k, view in enumerate(views):
        view.validate()
        assert f"camera {k}" in view.source and clip.source in view.source
        assert view.fps == clip.fps and view.text == clip.text and view.skeleton == "smpl22"
        assert view.keypoint_skeleton == "smpl22" and view.teacher_3d is None
        np.testing.assert_array_equal(view.gt_3d, clip.gt_3d)
        assert view.K.shape == (1, 3, 3) and view.R.shape == (1, 3, 3) and view.t.shape == (1, 3)
        assert view.image_size == (1280, 720)
        assert view.keypoints_2d.dtype == np.float32 and view.confidence.dtype == np.float32
        uv, depth = project(clip.gt_3d, view.K[0], view.R[0], view.t[0])
        np.testing.assert_allclose(view.keypoints_2d[0], uv, atol=1e-4)
        assert (depth > 0).all() and (view.confidence == 1).all()
    centres = [tuple(-v.R[0].T @ v.t[0]) for v in views]
    assert len(set(centres)) == 3  # different cameras


def test_observe_clip_is_deterministic():
    clip = mocap_clip(seed=3)
    a = observe_clip(clip, num_cameras=2, rng=np.random.default_rng(7))
    b = observe_clip(clip, num_cameras=2, rng=np.random.default_rng(7))
    c = observe_clip(clip, num_cameras=2, rng=np.random.default_rng(8))
    for x, y in zip(a, b):
        for field in ("keypoints_2d", "confidence", "K", "R", "t"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
    assert not np.array_equal(a[0].keypoints_2d, c[0].keypoints_2d)


def test_observe_clip_zero_confidence_outside_image():
    clip = mocap_clip(num_frames=100)
    views = observe_clip(clip, num_cameras=1, rng=np.random.default_rng(0), noise=DetectorNoise.clean(),
                         distance=4.0, focal_px=2500.0, image_size=(320, 240))  # far too tight to fit
    view = views[0].view(0)
    uv, _ = project(clip.gt_3d, view.K[0], view.R[0], view.t[0])
    outside = ((uv < 0) | (uv >= np.array([320, 240]))).any(-1)
    confidence = view.confidence[0]
    assert outside.any() and (confidence[outside] == 0).all() and (confidence[~outside] == 1).all()
    np.testing.assert_allclose(view.keypoints_2d[0], uv, atol=1e-3)  # positions are kept


def test_observe_clip_needs_gt():
    clip = Clip(name="x", fps=20.0, skeleton="smpl22", source="s", teacher_3d=walk(10))
    with pytest.raises(DataError, match="x"):
        observe_clip(clip, num_cameras=1, rng=np.random.default_rng(0))
