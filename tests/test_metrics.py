"""Metrics of videomdm.metrics on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.transform import Rotation
from synthetic import walk

from videomdm import metrics as ev
from videomdm.camera import look_at, project_to_pixels
from videomdm.skeleton import H36M_17, SMPL_22

FPS = 20.0


@pytest.fixture
def motion() -> np.ndarray:
    """(T, 22, 3) float64 walk, metres."""
    return walk(40, fps=FPS, seed=3).astype(np.float64)


def _similarity(x: np.ndarray, scale: float, rotation: np.ndarray, shift: np.ndarray) -> np.ndarray:
    return scale * x @ rotation.T + shift


# --- pose errors ----------------------------------------------------------------------------------------------------


def test_procrustes_removes_similarity_transform(motion):
    rotation = Rotation.from_euler("xyz", [0.3, -1.2, 0.7]).as_matrix()
    pred = _similarity(motion, 1.3, rotation, np.array([0.5, -0.2, 2.0]))
    assert ev.mpjpe(pred, motion) > 100.0
    assert ev.pa_mpjpe(pred, motion) < 1e-6
    assert ev.pa_mpjpe(torch.from_numpy(pred), torch.from_numpy(motion)) < 1e-6  # torch in
    np.testing.assert_allclose(ev.procrustes_align(pred, motion), motion, atol=1e-9)


def test_procrustes_rejects_reflection(motion):
    mirrored = motion * np.array([-1.0, 1.0, 1.0])  # a reflection, det −1; the walk is not mirror-symmetric
    assert ev.pa_mpjpe(mirrored, motion) > 5.0
    # The best orthogonal map (reflection allowed) would be exact: the alignment really is restricted.
    frame_p = mirrored[0] - mirrored[0].mean(0)
    frame_y = motion[0] - motion[0].mean(0)
    best_orthogonal, _ = scipy.linalg.orthogonal_procrustes(frame_p, frame_y)
    assert np.linalg.det(best_orthogonal) < 0
    np.testing.assert_allclose(frame_p @ best_orthogonal, frame_y, atol=1e-9)


def test_procrustes_rotation_part_is_optimal_on_noise():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(5, 17, 3))
    pred = target + 0.05 * rng.normal(size=target.shape)
    aligned = ev.procrustes_align(pred, target)
    base = np.linalg.norm(aligned - target, axis=-1).mean()
    assert base <= np.linalg.norm(pred - target, axis=-1).mean()
    # Perturbing the found transform slightly never lowers the squared error.
    small = Rotation.from_rotvec([0.01, 0.0, 0.0]).as_matrix()
    centre = aligned.mean(-2, keepdims=True)
    sq = ((aligned - target) ** 2).sum()
    assert sq <= (((aligned - centre) @ small.T + centre - target) ** 2).sum()
    assert sq <= ((1.01 * (aligned - centre) + centre - target) ** 2).sum()


def test_root_aligned_mpjpe_ignores_translation(motion):
    shift = np.array([0.3, 0.1, -0.4])  # |shift| = 0.5099 m
    pred = motion + shift
    assert ev.root_mpjpe(pred, motion) < 1e-9
    assert ev.mpjpe(pred, motion) == pytest.approx(np.linalg.norm(shift) * 1000.0)


def test_mpjpe_mask_and_batch(motion):
    pred = motion.copy()
    pred[10:] += np.array([0.0, 0.1, 0.0])  # 100 mm off from frame 10 on
    mask = np.zeros(len(motion), dtype=bool)
    mask[:10] = True
    assert ev.mpjpe(pred, motion, mask) == pytest.approx(0.0, abs=1e-9)
    assert ev.mpjpe(pred, motion, ~mask) == pytest.approx(100.0)
    batch_p, batch_y = np.stack([pred, motion]), np.stack([motion, motion])
    batch_mask = np.stack([~mask, np.ones_like(mask)])
    # Pooled over real frames: 30 frames at 100 mm, 40 at 0.
    assert ev.mpjpe(batch_p, batch_y, batch_mask) == pytest.approx(100.0 * 30 / 70)
    assert ev.mpjpe(batch_p, batch_y, torch.from_numpy(batch_mask)) == pytest.approx(100.0 * 30 / 70)


def test_pck_hand_computed():
    target = np.zeros((1, 4, 3))
    pred = np.zeros((1, 4, 3))
    pred[0, 1] = [0.03, 0.0, 0.0]  # 30 mm
    pred[0, 2] = [0.0, 0.08, 0.0]  # 80 mm
    pred[0, 3] = [0.0, 0.0, 0.2]  # 200 mm
    # Root (joint 0) has no error, so root alignment changes nothing; errors 0, 30, 80, 200 mm.
    assert ev.pck(pred, target, 50.0) == pytest.approx(2 / 4)
    assert ev.pck(pred, target, 100.0) == pytest.approx(3 / 4)
    assert ev.pck(pred, target, 100.0, alignment="none") == pytest.approx(3 / 4)
    # Root-aligned: moving every joint by the root's offset changes nothing.
    assert ev.pck(pred + 1.0, target, 50.0) == pytest.approx(2 / 4)
    assert ev.pck(pred + 1.0, target, 50.0, alignment="none") == 0.0
    with pytest.raises(ValueError, match="alignment"):
        ev.pck(pred, target, 50.0, alignment="bogus")


def test_pose_errors_table(motion):
    pose = ev.pose_errors(motion, motion, FPS, SMPL_22)
    assert set(pose) == {"mpjpe_mm", "root_mpjpe_mm", "pa_mpjpe_mm", "pck50", "pck100", "accel_error_ms2"}
    assert pose["mpjpe_mm"] == 0.0 and pose["pck50"] == 1.0 and pose["accel_error_ms2"] == 0.0
    noisy = motion + np.random.default_rng(0).normal(scale=0.02, size=motion.shape)
    pose = ev.pose_errors(noisy, motion, FPS, SMPL_22)
    assert pose["pa_mpjpe_mm"] < pose["root_mpjpe_mm"] and 0 < pose["pck50"] < 1
    assert pose["accel_error_ms2"] > 0
    with pytest.raises(ValueError, match="skeleton"):
        ev.pose_errors(motion[:, :17], motion[:, :17], FPS, SMPL_22)


# --- temporal -------------------------------------------------------------------------------------------------------


def _trajectory(times: np.ndarray, x0: np.ndarray, v: np.ndarray, a: np.ndarray | None = None) -> np.ndarray:
    """(T, J, 3): x0 (J, 3) + v t + a t² / 2."""
    t = times[:, None, None]
    out = x0[None] + v[None] * t
    return out if a is None else out + 0.5 * a[None] * t**2


def test_constant_velocity_has_no_acceleration_or_jitter():
    rng = np.random.default_rng(1)
    x = _trajectory(np.arange(30) / FPS, rng.normal(size=(5, 3)), rng.normal(size=(5, 3)))
    assert ev.acceleration(x, FPS) == pytest.approx(0.0, abs=1e-9)
    assert ev.jitter(x, FPS) == pytest.approx(0.0, abs=1e-6)


def test_quadratic_trajectory_gives_analytic_acceleration():
    rng = np.random.default_rng(2)
    accel = rng.normal(size=(5, 3))
    x = _trajectory(np.arange(30) / FPS, rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), accel)
    assert ev.acceleration(x, FPS) == pytest.approx(np.linalg.norm(accel, axis=-1).mean(), rel=1e-6)
    assert ev.jitter(x, FPS) == pytest.approx(0.0, abs=1e-4)
    # Same trajectory sampled at another fps: the answer is in m/s², not per frame.
    x60 = _trajectory(np.arange(90) / 60.0, x[0], np.zeros((5, 3)), accel)
    assert ev.acceleration(x60, 60.0) == pytest.approx(np.linalg.norm(accel, axis=-1).mean(), rel=1e-6)
    # The error against the zero-acceleration path is the analytic acceleration too.
    still = np.broadcast_to(x[:1], x.shape)
    assert ev.acceleration_error(x, still, FPS) == pytest.approx(np.linalg.norm(accel, axis=-1).mean(), rel=1e-6)


def test_cubic_trajectory_gives_analytic_jitter():
    jerk = np.array([[1.0, -2.0, 2.0]])  # |jerk| = 3 m/s³
    t = (np.arange(25) / FPS)[:, None, None]
    x = jerk[None] * t**3 / 6.0
    assert ev.jitter(x, FPS) == pytest.approx(3.0, rel=1e-6)


def test_acceleration_mask_uses_only_real_triples():
    x = np.zeros((10, 2, 3))
    x[5, :, 1] = 1.0  # a spike at frame 5
    mask = np.ones(10, dtype=bool)
    mask[5] = False
    assert ev.acceleration(x, FPS) > 0
    assert ev.acceleration(x, FPS, mask) == 0.0
    with pytest.raises(ValueError, match="consecutive"):
        ev.acceleration(x, FPS, np.arange(10) % 2 == 0)


# --- foot skating, penetration, bones ---------------------------------------------------------------------------------


def _stand(frames: int) -> np.ndarray:
    """(T, 22, 3) static pose with the feet on the floor: toes at 1 cm, ankles at 8 cm, body above."""
    pose = walk(1, fps=FPS, seed=0)[0].astype(np.float64)
    pose[:, 1] += 1.0 - pose[:, 1].min()  # everything ≥ 1 m
    left, right = SMPL_22.foot_indices  # (ankle, toe) each
    for ankle, toe in (left, right):
        pose[ankle, 1] = 0.08
        pose[toe, 1] = 0.01
    return np.repeat(pose[None], frames, axis=0)


def test_foot_skating_planted_and_sliding():
    still = _stand(20)
    planted = ev.foot_skating(still, FPS, SMPL_22)
    assert planted["foot_skating_ms"] == 0.0 and planted["skating_fraction"] == 0.0
    # With the default 5 cm contact height only the two toes are in contact.
    assert planted["contact_fraction"] == pytest.approx(0.5)

    sliding = still.copy()
    left, right = SMPL_22.foot_indices
    toe = left[1]
    speed = 0.8  # m/s along x and z
    direction = np.array([0.6, 0.0, 0.8])
    sliding[:, toe] += speed * (np.arange(20) / FPS)[:, None] * direction
    result = ev.foot_skating(sliding, FPS, SMPL_22)
    # Contact pairs: the left toe (sliding at 0.8 m/s) and the right toe (still), every step.
    assert result["foot_skating_ms"] == pytest.approx(speed / 2)
    assert result["skating_fraction"] == pytest.approx(1.0)
    assert ev.foot_skating(sliding, FPS, SMPL_22, skate_speed=1.0)["skating_fraction"] == 0.0
    # Vertical motion is not skating; a lifted foot is not in contact.
    lifted = still.copy()
    lifted[:, toe, 1] = 0.3
    lifted[:, toe] += speed * (np.arange(20) / FPS)[:, None] * direction
    assert ev.foot_skating(lifted, FPS, SMPL_22)["foot_skating_ms"] == 0.0


def test_foot_skating_one_foot_slides_known_speed_with_raised_threshold():
    still = _stand(20)
    left, _ = SMPL_22.foot_indices
    slide = still.copy()
    slide[:, left] += 1.5 * (np.arange(20) / FPS)[:, None, None] * np.array([1.0, 0.0, 0.0])
    result = ev.foot_skating(slide, FPS, SMPL_22, height_threshold=0.1)
    # All four foot joints in contact; the two left ones slide at 1.5 m/s, the right ones stand.
    assert result["contact_fraction"] == pytest.approx(1.0)
    assert result["foot_skating_ms"] == pytest.approx(1.5 / 2)


def test_ground_penetration_hand_computed():
    x = np.ones((4, 3, 3))
    x[0, 1, 1] = -0.10  # 10 cm below
    x[1, 2, 1] = -0.01  # 1 cm below (under the 2 cm threshold)
    x[2, 0, 1] = 0.0
    result = ev.ground_penetration(x)
    assert result["penetration_m"] == pytest.approx((0.10 + 0.01) / 4)
    assert result["penetration_fraction"] == pytest.approx(1 / 4)
    assert ev.ground_penetration(x, threshold=0.005)["penetration_fraction"] == pytest.approx(2 / 4)
    mask = np.array([False, True, True, True])
    assert ev.ground_penetration(x, mask)["penetration_m"] == pytest.approx(0.01 / 3)


def test_bone_length_variation(motion):
    rotation = Rotation.from_euler("y", np.linspace(0, 2, len(motion))[:, None]).as_matrix()  # (T, 3, 3)
    shift = np.linspace(0, 1, len(motion))[:, None, None]  # (T, 1, 1) metres
    rigid = np.einsum("tij,tkj->tki", rotation, motion[:1].repeat(len(motion), 0)) + shift  # first pose, moving
    assert ev.bone_length_variation(rigid, SMPL_22) == pytest.approx(0.0, abs=1e-9)
    # The walk itself is forward kinematics: rigid bones.
    assert ev.bone_length_variation(motion, SMPL_22) < 1e-3
    # Stretch one leaf bone (head) by ±d alternately: its std is d, the others 0.
    d = 0.01
    head, neck = SMPL_22.index("head"), SMPL_22.index("neck")
    stretched = rigid.copy()
    bone = stretched[:, head] - stretched[:, neck]
    unit = bone / np.linalg.norm(bone, axis=-1, keepdims=True)
    sign = np.where(np.arange(len(motion)) % 2 == 0, 1.0, -1.0)[:, None]
    stretched[:, head] += sign * d * unit
    assert ev.bone_length_variation(stretched, SMPL_22) == pytest.approx(d * 1000.0 / len(SMPL_22.bones))


def test_motion_quality_table(motion):
    quality = ev.motion_quality(motion, FPS, SMPL_22)
    assert set(quality) == {"accel_ms2", "jitter_ms3", "foot_skating_ms", "skating_fraction",
                            "foot_contact_fraction", "penetration_m", "penetration_fraction", "bone_length_std_mm"}
    assert all(np.isfinite(v) for v in quality.values())
    assert quality["bone_length_std_mm"] < 1e-3
    batch = ev.motion_quality(np.stack([motion, motion]), FPS, SMPL_22)
    for key in quality:
        assert batch[key] == pytest.approx(quality[key], abs=1e-9)
    with pytest.raises(ValueError, match="skeleton"):
        ev.motion_quality(motion[:, :17], FPS, SMPL_22)
    assert ev.bone_length_variation(motion[:, :17], H36M_17) >= 0  # any skeleton with matching joints


# --- reprojection -----------------------------------------------------------------------------------------------------


def _camera(frames: int, per_frame: bool):
    K = np.array([[1000.0, 0.0, 640.0], [0.0, 1000.0, 360.0], [0.0, 0.0, 1.0]])
    eye = torch.tensor([[0.5, 1.5, 5.0]], dtype=torch.float64)
    R, t = look_at(eye, torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))
    R, t = R[0].numpy(), t[0].numpy()
    if per_frame:
        R, t = np.repeat(R[None], frames, 0), np.repeat(t[None], frames, 0)
        t = t + np.linspace(0, 0.5, frames)[:, None] * np.array([1.0, 0.0, 0.0])
    return K, R, t


@pytest.mark.parametrize("per_frame", [False, True])
def test_reprojection_exact_and_offset(motion, per_frame):
    K, R, t = _camera(len(motion), per_frame)
    Rb, tb = torch.from_numpy(R)[None], torch.from_numpy(t)[None]
    uv = project_to_pixels(torch.from_numpy(motion)[None], torch.from_numpy(K), Rb, tb)[0].numpy()
    conf = np.ones(uv.shape[:-1])
    assert ev.reprojection_error(motion, uv, conf, K, R, t) == pytest.approx(0.0, abs=1e-9)
    offset = np.array([3.0, 4.0])  # 5 px
    assert ev.reprojection_error(motion, uv + offset, conf, K, R, t) == pytest.approx(5.0)
    # Confidence 0 ignores a joint however wrong it is; confidence weights the rest.
    wrong = uv + offset
    wrong[:, 0] += 500.0
    conf0 = conf.copy()
    conf0[:, 0] = 0.0
    assert ev.reprojection_error(motion, wrong, conf0, K, R, t) == pytest.approx(5.0)
    half = uv.copy()
    half[:, 0] += offset  # joint 0 at 5 px with weight 3, others exact with weight 1
    weights = np.ones(conf.shape)
    weights[:, 0] = 3.0
    expected = 5.0 * 3.0 / (3.0 + (motion.shape[1] - 1))
    assert ev.reprojection_error(motion, half, weights, K, R, t) == pytest.approx(expected)


def test_reprojection_bad_input(motion):
    K, R, t = _camera(len(motion), False)
    uv = np.zeros(motion.shape[:-1] + (2,))
    conf = np.ones(motion.shape[:-1])
    with pytest.raises(ValueError, match="confidence"):
        ev.reprojection_error(motion, uv, np.zeros_like(conf), K, R, t)
    with pytest.raises(ValueError, match="R, t"):
        ev.reprojection_error(motion, uv, conf, K, np.repeat(R[None], 3, 0), t)
    with pytest.raises(ValueError, match="keypoints_2d"):
        ev.reprojection_error(motion, uv[:-1], conf, K, R, t)
    with pytest.raises(ValueError, match="confidence"):
        ev.reprojection_error(motion, uv, -conf, K, R, t)


# --- distributions ----------------------------------------------------------------------------------------------------


def _with_moments(rng: np.random.Generator, n: int, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """n samples whose sample mean and (N − 1) covariance are exactly ``mean`` and ``cov``."""
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # whitened: identity sample covariance
    return z @ np.linalg.cholesky(cov).T + mean


def test_fid_self_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    assert ev.fid(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fid_matches_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([2.0, 0.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
    # Diagonal covariances: d² = ‖Δμ‖² + Σ (√σ1 − √σ2)².
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert ev.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)
    a = _with_moments(rng, 400, mu1, np.diag(var1))
    b = _with_moments(rng, 300, mu2, np.diag(var2))
    assert ev.fid(a, b) == pytest.approx(expected, rel=1e-8)
    # General covariances against tr((Σ1^½ Σ2 Σ1^½)^½), computed by symmetric eigendecompositions.
    m1, m2 = rng.normal(size=(2, 5, 5))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(5), m2 @ m2.T + 0.1 * np.eye(5)
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)).sum()
    expected = np.trace(s1) + np.trace(s2) - 2 * cross + 1.0
    assert ev.frechet_distance(np.zeros(5), s1, np.eye(5)[0], s2) == pytest.approx(expected, rel=1e-8)


def test_fid_singular_covariance_is_finite():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(10, 32))  # N < D: singular covariances
    assert np.isfinite(ev.fid(a, b))


def test_kid_same_and_shifted():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    same = ev.kid(a, b, num_subsets=20, subset_size=200)
    shifted = ev.kid(a, b + 1.0, num_subsets=20, subset_size=200)
    assert abs(same["kid"]) < 0.05
    assert shifted["kid"] > 1.0
    assert shifted["kid"] > 10 * shifted["kid_std_error"]
    assert ev.kid(a, b, num_subsets=20, subset_size=200) == same  # seeded


def test_diversity():
    assert ev.diversity(np.ones((400, 8))) == 0.0
    x = np.random.default_rng(4).normal(size=(400, 8))
    value = ev.diversity(x)
    assert value == ev.diversity(x)  # seeded
    assert value == pytest.approx(np.sqrt(2 * 8), rel=0.15)  # E‖x − y‖ ≈ √(2D) for standard normals
    with pytest.raises(ValueError, match="diversity_times"):
        ev.diversity(x[:100])


def test_precision_recall():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(200, 8))
    same = ev.precision_recall(real, real.copy())
    assert same == {"precision": 1.0, "recall": 1.0}
    far = ev.precision_recall(real, rng.normal(size=(200, 8)) + 50.0)
    assert far["precision"] < 0.05 and far["recall"] < 0.05
    # Mode collapse: generated samples all near one real point → precise, no recall.
    collapsed = real[:1] + 0.01 * rng.normal(size=(200, 8))
    result = ev.precision_recall(real, collapsed, chunk=17)
    assert result["precision"] == 1.0 and result["recall"] < 0.1


def test_r_precision_and_multimodal_distance():
    rng = np.random.default_rng(6)
    text = rng.normal(size=(96, 16))
    perfect = ev.r_precision(text, text.copy())
    assert perfect == {"top1": 1.0, "top2": 1.0, "top3": 1.0}
    assert ev.r_precision(text, text + 0.01, queries="text") == perfect
    assert ev.multimodal_distance(text, text + np.array([3.0, 4.0] + [0.0] * 14)) == pytest.approx(5.0)
    random = ev.r_precision(text, rng.normal(size=(96, 16)), top_k=5)
    assert random["top1"] < 0.2 and random["top1"] <= random["top3"] <= random["top5"]
    # A shuffled pairing scores near chance (1/32 at top-1).
    shuffled = ev.r_precision(text, text[rng.permutation(96)])
    assert shuffled["top1"] < 0.2


# --- bad input --------------------------------------------------------------------------------------------------------


def test_bad_input_raises_value_error(motion):
    nan = motion.copy()
    nan[3, 2, 1] = np.nan
    cases = [
        (lambda: ev.mpjpe(motion, motion[:-1]), "same shape"),
        (lambda: ev.mpjpe(motion[0], motion[0]), r"\(T, J, 3\)"),
        (lambda: ev.mpjpe(nan, motion), "NaN"),
        (lambda: ev.acceleration(np.inf * motion, FPS), "NaN or inf"),
        (lambda: ev.mpjpe(motion[:0], motion[:0]), "empty"),
        (lambda: ev.mpjpe(motion, motion, np.ones(5, dtype=bool)), "mask"),
        (lambda: ev.mpjpe(motion, motion, np.zeros(len(motion), dtype=bool)), "no real frame"),
        (lambda: ev.mpjpe(motion, motion, np.full(len(motion), 0.5)), "mask"),
        (lambda: ev.acceleration(motion, 0.0), "fps"),
        (lambda: ev.acceleration(motion[:2], FPS), "at least 3 frames"),
        (lambda: ev.jitter(motion[:3], FPS), "at least 4 frames"),
        (lambda: ev.pck(motion, motion, -1.0), "threshold_mm"),
        (lambda: ev.fid(np.zeros((0, 4)), np.zeros((5, 4))), "empty"),
        (lambda: ev.fid(np.ones((5, 4)), np.ones((5, 3))), "feature dimension"),
        (lambda: ev.fid(np.ones(5), np.ones(5)), r"\(N, D\)"),
        (lambda: ev.fid(np.ones((1, 4)), np.ones((5, 4))), "at least 2"),
        (lambda: ev.kid(np.ones((5, 4)), np.full((5, 4), np.nan)), "NaN"),
        (lambda: ev.precision_recall(np.ones((3, 4)), np.ones((10, 4))), "at least 4"),
        (lambda: ev.r_precision(np.ones((40, 4)), np.ones((41, 4))), "paired"),
        (lambda: ev.r_precision(np.ones((20, 4)), np.ones((20, 4))), "batch_size"),
        (lambda: ev.r_precision(np.ones((40, 4)), np.ones((40, 4)), queries="both"), "queries"),
        (lambda: ev.multimodal_distance(np.ones((4, 4)), np.ones((4, 5))), "paired"),
        (lambda: ev.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2)), "sigma"),
        (lambda: ev.bone_length_variation(motion[:, :5], SMPL_22), "skeleton"),
        (lambda: ev.ground_penetration(motion, threshold=-1.0), "threshold"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
