"""The noisy teacher (``videomdm.teacher``): grounding, the learned lifter, the corrupt model and teacher files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import walk

from videomdm.camera import look_at
from videomdm.checkpoint import CheckpointError
from videomdm.data.clip import Clip, save_clip, write_dataset_index
from videomdm.data.errors import DataError
from videomdm.metrics import mpjpe
from videomdm.representation import floor_from_feet
from videomdm.skeleton import COCO_17, LAFAN_22, SMPL_22, joint_map
from videomdm.teacher import (CorruptionParams, LiftedData, LifterConfig, TemporalLifter, TrainingSplitError,
                              build_network, corrupt_teacher, ground_to_world, lift_clip, load_lifter,
                              load_teacher_file, make_teacher, normalize_keypoints, solve_root_translation,
                              train_lifter)

TINY = dict(channels=32, blocks=1, kernel=3, dropout=0.0, window=24, batch_size=8, lr=3e-3, val_views=1)


# --- helpers ---------------------------------------------------------------------------------------------------------


def _camera(eye=(4.0, 1.6, 3.0), target=(0.0, 0.9, 0.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A float64 pinhole camera ``K, R (3, 3), t (3,)`` looking at ``target`` from ``eye``."""
    R, t = look_at(torch.tensor([eye], dtype=torch.float64), torch.tensor([target], dtype=torch.float64))
    K = np.array([[1000.0, 0.0, 640.0], [0.0, 1000.0, 360.0], [0.0, 0.0, 1.0]])
    return K, R[0].numpy(), t[0].numpy()


def _to_camera(world: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.asarray(world, np.float64) @ R.T + t


def _project(cam: np.ndarray) -> np.ndarray:
    """Camera frame (..., 3) → normalized image coordinates (..., 2) (eq. 3)."""
    return cam[..., :2] / cam[..., 2:3]


def _pixels(cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    xy = _project(cam)
    return np.stack([K[0, 0] * xy[..., 0] + K[0, 2], K[1, 1] * xy[..., 1] + K[1, 2]], axis=-1)


def _observed_clip(name: str, gt: np.ndarray, K, R, t, *, with_gt: bool = False) -> Clip:
    cam = _to_camera(gt, R, t)
    return Clip(name=name, fps=20.0, skeleton="smpl22", source="test", gt_3d=gt if with_gt else None,
                keypoints_2d=_pixels(cam, K).astype(np.float32), confidence=np.ones(gt.shape[:2], np.float32),
                keypoint_skeleton="smpl22", K=K, R=R, t=t, image_size=(1280, 720))


def _dataset(root: Path, num_clips: int = 4, frames: int = 80) -> Path:
    rels = []
    for i in range(num_clips):
        rel = f"clips/lifter/walk_{i:02d}.npz"
        save_clip(root / rel, Clip(name=f"walk_{i:02d}", fps=20.0, skeleton="smpl22", source="synthetic",
                                   gt_3d=walk(frames, seed=10 + i, turn=0.3 * (i - 1.5))))
        rels.append(rel)
    write_dataset_index(root, name="synthetic", fps=20.0, skeleton="smpl22", splits={"lifter": rels}, license=None,
                        extra={})
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny lifter trained for a few steps on synthetic walks (shared by the tests below)."""
    root = tmp_path_factory.mktemp("lifter")
    data = _dataset(root / "data")
    return train_lifter(data, root / "lifter", split="lifter", config=LifterConfig(**TINY, steps=60),
                        progress=False)


# --- 2. world grounding ----------------------------------------------------------------------------------------------


def test_solve_root_translation_exact_from_clean_projections():
    K, R, t = _camera()
    cam = _to_camera(walk(40, seed=3), R, t)  # (T, J, 3)
    rel = cam - cam[:, :1]
    found = solve_root_translation(rel, _project(cam), np.ones(cam.shape[:2]))
    np.testing.assert_allclose(found, cam[:, 0], atol=1e-9)


def test_solve_root_translation_noise_and_confidence():
    K, R, t = _camera()
    cam = _to_camera(walk(40, seed=4), R, t)
    rel, xy = cam - cam[:, :1], _project(cam)
    conf = np.ones(cam.shape[:2])
    clean = solve_root_translation(rel, xy, conf)

    noisy = xy + np.random.default_rng(0).normal(scale=0.002, size=xy.shape)  # ≈ 2 px at f = 1000 px
    approx = solve_root_translation(rel, noisy, conf)
    assert np.abs(approx - cam[:, 0]).max() < 0.15  # depth is the weak direction
    assert np.abs(approx - cam[:, 0])[:, :2].max() < 0.02

    # A joint with confidence 0 and a huge keypoint error (even NaN) does not move the solution.
    wild, conf0 = xy.copy(), conf.copy()
    wild[:, 7] += 5.0
    wild[:, 8] = np.nan
    conf0[:, [7, 8]] = 0.0
    np.testing.assert_allclose(solve_root_translation(rel, wild, conf0), clean, atol=1e-9)

    # Confidence weights: down-weighting a corrupted joint pulls the solution back toward the clean one.
    bad = xy.copy()
    bad[:, 15] += 0.05
    full = solve_root_translation(rel, bad, conf)
    low = conf.copy()
    low[:, 15] = 0.01
    weighted = solve_root_translation(rel, bad, low)
    assert np.abs(weighted - clean).max() < np.abs(full - clean).max()


def test_solve_root_translation_interpolates_unsolvable_frames():
    K, R, t = _camera()
    cam = _to_camera(walk(30, seed=5), R, t)
    conf = np.ones(cam.shape[:2])
    conf[10] = 0.0  # no joint
    conf[11, 1:] = 0.0  # one joint only
    found = solve_root_translation(cam - cam[:, :1], _project(cam), conf)
    np.testing.assert_allclose(found[10], cam[9, 0] + (cam[12, 0] - cam[9, 0]) / 3, atol=1e-9)
    assert np.abs(found[[10, 11]] - cam[[10, 11], 0]).max() < 0.05  # smooth motion: close to the truth
    with pytest.raises(ValueError):
        solve_root_translation(cam - cam[:, :1], _project(cam), np.zeros(cam.shape[:2]))


def test_ground_to_world_reproduces_the_world_motion():
    gt = walk(50, seed=6).astype(np.float64)
    K, R, t = _camera()
    cam = _to_camera(gt, R, t)
    conf = np.ones(gt.shape[:2])
    world = ground_to_world(cam - cam[:, :1], _project(cam), conf, R, t, SMPL_22)
    np.testing.assert_allclose(world, gt, atol=1e-9)

    # Per-frame extrinsics (a panning camera).
    eyes = torch.tensor([[4.0 + 0.02 * i, 1.6, 3.0] for i in range(len(gt))], dtype=torch.float64)
    R_f, t_f = look_at(eyes, torch.from_numpy(gt[:, 0]))
    R_f, t_f = R_f.numpy(), t_f.numpy()
    cam_f = np.einsum("tij,tkj->tki", R_f, gt) + t_f[:, None]
    world_f = ground_to_world(cam_f - cam_f[:, :1], _project(cam_f), conf, R_f, t_f, SMPL_22)
    np.testing.assert_allclose(world_f, gt, atol=1e-9)

    # level_floor moves the floor (robust low percentile of the lowest foot joint) to y = 0.
    lifted = gt + np.array([0.0, 0.37, 0.0])
    cam_l = _to_camera(lifted, R, t)
    leveled = ground_to_world(cam_l - cam_l[:, :1], _project(cam_l), conf, R, t, SMPL_22, level_floor=True)
    assert abs(floor_from_feet(leveled, SMPL_22)) < 1e-9
    np.testing.assert_allclose(leveled, gt - np.array([0.0, floor_from_feet(gt), 0.0]), atol=1e-9)


def test_floor_from_feet_is_a_robust_low_foot_height():
    gt = walk(60, seed=7).astype(np.float64)
    left, right = SMPL_22.foot_indices
    feet_min = gt[:, left + right, 1].min()
    floor = floor_from_feet(gt, SMPL_22)
    assert feet_min - 1e-9 <= floor < feet_min + 0.03
    spiked = gt.copy()
    spiked[5, left[0], 1] -= 1.0  # one frame pushed through the floor
    assert abs(floor_from_feet(spiked, SMPL_22) - floor) < 0.01


# --- 1. the learned lifter -------------------------------------------------------------------------------------------


def test_network_keeps_length_and_puts_the_root_at_zero():
    net = TemporalLifter(22, channels=16, blocks=2, kernel=3).eval()
    for frames in (1, 5, 37):  # shorter and longer than the receptive field (27)
        kp = torch.randn(2, frames, 22, 2) * 0.05
        out = net(kp, torch.ones(2, frames, 22))
        assert out.shape == (2, frames, 22, 3)
        assert torch.equal(out[:, :, 0], torch.zeros(2, frames, 3))
        assert torch.isfinite(out).all()


def test_network_is_invariant_to_focal_length_and_distance():
    net = TemporalLifter(22, channels=16, blocks=2, kernel=3).eval()
    gt = walk(30, seed=8)
    K, R, t = _camera()
    cam = _to_camera(gt, R, t)
    conf = torch.ones(1, 30, 22)

    # Focal length: the same scene through two lenses gives other pixels but the same normalized coordinates.
    K2 = K.copy()
    K2[0, 0] = K2[1, 1] = 2300.0
    outs = []
    for k in (K, K2):
        uv = _pixels(cam, k)
        xy = np.stack([(uv[..., 0] - k[0, 2]) / k[0, 0], (uv[..., 1] - k[1, 2]) / k[1, 1]], -1)
        outs.append(net(torch.tensor(xy, dtype=torch.float32)[None], conf))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=0)

    # Distance / zoom: scaling the image about the root (here on the optical axis) changes nothing.
    rel = cam - cam[:, :1]
    centred = _project(rel + np.array([0.0, 0.0, 5.0]))  # root at the principal point in every frame
    a = net(torch.tensor(centred, dtype=torch.float32)[None], conf)
    b = net(torch.tensor(0.37 * centred, dtype=torch.float32)[None], conf)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)

    # The features themselves: ray-aligned, root at 0, divided by the per-clip torso length.
    features = normalize_keypoints(torch.tensor(centred)[None], conf.double()).features.reshape(1, 30, 22, 3)
    assert torch.allclose(features[..., 0, :2], torch.zeros(1, 30, 2, dtype=torch.float64), atol=1e-12)
    torso = features[..., SMPL_22.index("neck"), :2].norm(dim=-1)
    assert abs(float(torso.median()) - 1.0) < 1e-6


def test_missing_joints_are_ignored_by_the_input():
    kp = torch.randn(1, 12, 22, 2) * 0.05
    conf = torch.ones(1, 12, 22)
    conf[0, 3:6, 7] = 0.0
    other = kp.clone()
    other[0, 3:6, 7] = float("nan")  # whatever a missing joint carries
    a = normalize_keypoints(kp, conf).features
    b = normalize_keypoints(other, conf).features
    assert torch.equal(a, b)
    # Missing pelvis: the mid-hip stands in for the root.
    conf_p = conf.clone()
    conf_p[0, :, 0] = 0.0
    mid_hip = kp[0, :, [SMPL_22.index("left_hip"), SMPL_22.index("right_hip")]].mean(1)
    moved = kp.clone()
    moved[0, :, 0] = mid_hip
    rot_a = normalize_keypoints(kp, conf_p).rotation
    rot_b = normalize_keypoints(moved, conf).rotation
    torch.testing.assert_close(rot_a, rot_b)


def test_keypoint_skeleton_masks_the_joints_it_lacks():
    net = build_network(LifterConfig(channels=8, blocks=1, keypoint_skeleton="coco17"))
    expected = joint_map(COCO_17, SMPL_22).present
    assert np.array_equal(net.joint_mask.numpy(), expected) and not expected.all()
    kp = torch.randn(1, 10, 22, 2) * 0.05
    features = normalize_keypoints(kp, torch.ones(1, 10, 22), SMPL_22, net.joint_mask).features.reshape(1, 10, 22, 3)
    assert torch.equal(features[..., ~torch.from_numpy(expected), :], torch.zeros(1, 10, int((~expected).sum()), 3))


def test_tiny_training_reduces_the_error(trained: Path):
    info = json.loads((trained / "lifter.json").read_text())
    print(f"\ntiny lifter: val MPJPE {info['val_mpjpe_initial_m'] * 1000:.0f} mm → {info['val_mpjpe_m'] * 1000:.0f} "
          f"mm in {info['train_seconds']} s; final train loss {info['final_train_loss']:.3f}")
    assert info["val_mpjpe_m"] < 0.8 * info["val_mpjpe_initial_m"]
    assert info["dataset"]["split"] == "lifter" and info["dataset"]["name"] == "synthetic"
    assert info["config"]["steps"] == 60
    lifter = load_lifter(trained)
    assert lifter.trained_on == ("synthetic", "lifter")
    assert not lifter.network.training


def test_training_is_deterministic(tmp_path: Path):
    data = _dataset(tmp_path / "data", num_clips=2, frames=40)
    config = LifterConfig(**TINY, steps=3)
    a = load_lifter(train_lifter(data, tmp_path / "a", split="lifter", config=config, progress=False))
    b = load_lifter(train_lifter(data, tmp_path / "b", split="lifter", config=config, progress=False))
    for (name, x), (_, y) in zip(a.network.state_dict().items(), b.network.state_dict().items()):
        assert torch.equal(x, y), name


def test_load_lifter_errors_name_the_file(trained: Path, tmp_path: Path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    (broken / "lifter.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="lifter.safetensors"):
        load_lifter(broken)
    (broken / "lifter.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="lifter.json"):
        load_lifter(broken)
    with pytest.raises(CheckpointError, match="lifter.json"):
        load_lifter(tmp_path / "nowhere")
    # Weights of another architecture.
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    info = json.loads((other / "lifter.json").read_text())
    info["config"]["channels"] = 48
    (other / "lifter.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="lifter.safetensors"):
        load_lifter(other)


def test_lift_clip_gives_a_grounded_world_motion(trained: Path):
    lifter = load_lifter(trained)
    gt = walk(50, seed=11)
    K, R, t = _camera()
    cam = _to_camera(gt, R, t)
    uv = _pixels(cam, K)
    world = lift_clip(lifter, uv, np.ones(gt.shape[:2]), K, R, t)
    assert world.shape == gt.shape and world.dtype == np.float32 and np.isfinite(world).all()
    # Grounded: the result reprojects onto the keypoints up to the lifter's pose error (root within a few px).
    reproj = _pixels(_to_camera(world, R, t), K)
    assert np.median(np.linalg.norm(reproj - uv, axis=-1)) < 60.0


def test_lifter_teacher_never_reads_gt(trained: Path):
    lifter = load_lifter(trained)
    gt = walk(40, seed=12)
    K, R, t = _camera()
    clip = _observed_clip("observed", gt, K, R, t)  # gt_3d is None
    teacher = make_teacher("lifter", lifter=lifter, lifts=LiftedData("observed", ()))
    out = teacher(clip)
    assert out.shape == (40, 22, 3) and np.isfinite(out).all()

    class NoGroundTruth:
        """A clip whose gt_3d cannot be read."""

        def __init__(self, inner: Clip) -> None:
            self._inner = inner

        def __getattr__(self, name: str):
            if name in ("gt_3d", "teacher_3d"):
                raise AssertionError(f"the lifter teacher read {name}")
            return getattr(self._inner, name)

    np.testing.assert_array_equal(teacher(NoGroundTruth(dataclasses.replace(clip, gt_3d=gt))), out)

    # Keypoints of another detector skeleton are mapped to SMPL-22 (missing joints get confidence 0).
    to_coco = joint_map(SMPL_22, COCO_17)
    uv_coco, _ = to_coco.apply(clip.keypoints_2d)  # (V, T, 17, 2)
    coco_clip = dataclasses.replace(clip, keypoints_2d=uv_coco.astype(np.float32),
                                    confidence=np.ones(uv_coco.shape[:-1], np.float32), keypoint_skeleton="coco17")
    with pytest.warns(UserWarning, match="coco17"):  # the tiny lifter was trained for SMPL-22 keypoints
        out_coco = teacher(coco_clip)
    assert out_coco.shape == (40, 22, 3) and np.isfinite(out_coco).all()

    with pytest.raises(DataError, match="observed"):
        teacher(dataclasses.replace(clip, K=None))


def test_lifter_never_lifts_its_training_split(trained: Path):
    """The factory refuses a lifter asked to lift the split it was trained on, naming both; other splits are fine."""
    data = trained.parent / "data"
    with pytest.raises(TrainingSplitError, match=r"trained on split 'lifter' of dataset 'synthetic'.*"
                                                  r"dataset 'synthetic'.*splits \['train', 'lifter'\]"):
        make_teacher("lifter", lifter=trained, lifts=LiftedData("synthetic", ("train", "lifter"), data))
    with pytest.raises(TrainingSplitError):  # the same dataset found by its name, wherever its folder is now
        make_teacher("lifter", lifter=load_lifter(trained), lifts=LiftedData("synthetic", ("lifter",)))
    with pytest.raises(TrainingSplitError):  # ... or by its folder, whatever it is called
        make_teacher("lifter", lifter=trained, lifts=LiftedData("renamed", ("lifter",), data))
    with pytest.raises(ValueError, match="lifts="):  # what it will lift must be said
        make_teacher("lifter", lifter=trained)
    make_teacher("lifter", lifter=trained, lifts=LiftedData("synthetic", ("train", "test"), data))
    make_teacher("lifter", lifter=trained, lifts=LiftedData("other", ("lifter",), trained.parent / "other"))


# --- 3. the corrupt teacher ------------------------------------------------------------------------------------------


def test_corrupt_severity_zero_is_exact():
    gt = walk(40, seed=13)
    K, R, t = _camera()
    out = corrupt_teacher(gt, K, R, t, SMPL_22, severity=0.0, rng=np.random.default_rng(0))
    assert np.array_equal(out, gt)


def test_corrupt_depth_scale_keeps_the_projection():
    gt = walk(40, seed=14).astype(np.float64)
    K, R, t = _camera()
    out = corrupt_teacher(gt, K, R, t, SMPL_22, severity=3.0, rng=np.random.default_rng(1),
                          params=CorruptionParams().only("scale_sigma"))
    cam, cam_out = _to_camera(gt, R, t), _to_camera(out, R, t)
    np.testing.assert_allclose(_project(cam_out), _project(cam), atol=1e-5)
    assert np.abs(cam_out[..., 2] - cam[..., 2]).mean() > 0.05  # depth (and size) are wrong
    # The depth jitter moves each frame along the root's ray: the root still projects where it did.
    jitter = corrupt_teacher(gt, K, R, t, SMPL_22, severity=1.0, rng=np.random.default_rng(2),
                             params=CorruptionParams().only("depth_sigma"))
    np.testing.assert_allclose(_project(_to_camera(jitter, R, t))[:, 0], _project(cam)[:, 0], atol=1e-5)


def test_corrupt_error_grows_with_severity_and_is_deterministic():
    gt = walk(100, seed=15)
    K, R, t = _camera()

    def error(severity: float) -> float:
        return np.mean([mpjpe(corrupt_teacher(gt, K, R, t, SMPL_22, severity=severity,
                                              rng=np.random.default_rng(s)), gt) for s in range(4)])

    errors = [error(s) for s in (0.25, 0.5, 1.0, 2.0)]
    print(f"\ncorrupt teacher world MPJPE (mm) at severity 0.25/0.5/1/2: {[round(e) for e in errors]}")
    assert all(a < b for a, b in zip(errors, errors[1:]))
    a = corrupt_teacher(gt, K, R, t, SMPL_22, rng=np.random.default_rng(7))
    b = corrupt_teacher(gt, K, R, t, SMPL_22, rng=np.random.default_rng(7))
    c = corrupt_teacher(gt, K, R, t, SMPL_22, rng=np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_corrupt_components_do_what_they_say():
    gt = walk(200, seed=16).astype(np.float64)
    K, R, t = _camera()
    bones = corrupt_teacher(gt, K, R, t, SMPL_22, severity=1.0, rng=np.random.default_rng(3),
                            params=CorruptionParams().only("bone_sigma"))
    lengths = lambda x: np.stack([np.linalg.norm(x[:, j] - x[:, p], axis=-1)  # noqa: E731
                                  for p, j in SMPL_22.bones], 1)  # (T, bones)
    ratio = lengths(bones) / lengths(gt)
    assert np.allclose(ratio, ratio[:1], atol=1e-6) and np.abs(ratio - 1).max() > 0.01  # per clip, constant
    np.testing.assert_allclose(bones[:, 0], gt[:, 0], atol=1e-6)  # root untouched

    flips = corrupt_teacher(gt, K, R, t, SMPL_22, severity=1.0, rng=np.random.default_rng(4),
                            params=dataclasses.replace(CorruptionParams().only("flip_rate"), flip_rate=1.0))
    flipped = ~np.isclose(flips, gt, atol=1e-6).all(axis=(1, 2))
    assert flipped.any() and not flipped.all()
    np.testing.assert_allclose(flips[flipped], gt[flipped][:, SMPL_22.mirror_permutation], atol=1e-6)


def test_make_teacher_corrupt_matches_and_needs_gt():
    gt = walk(30, seed=17)
    K, R, t = _camera()
    clip = _observed_clip("clip_a", gt, K, R, t, with_gt=True)
    teacher = make_teacher("corrupt", severity=0.5, seed=3)
    np.testing.assert_array_equal(teacher(clip), teacher(clip))
    assert 0 < mpjpe(teacher(clip), gt) < 500  # millimetres
    np.testing.assert_array_equal(make_teacher("corrupt", severity=0.0)(clip), gt)
    with pytest.raises(DataError, match="clip_a"):
        teacher(dataclasses.replace(clip, gt_3d=None))
    with pytest.raises(ValueError, match="unknown teacher kind"):
        make_teacher("oracle")
    with pytest.raises(TypeError, match="severty"):
        make_teacher("corrupt", severty=1.0)


# --- 4. the file teacher ---------------------------------------------------------------------------------------------


def test_teacher_file_round_trip_world_and_camera(tmp_path: Path):
    gt = walk(30, seed=18)
    K, R, t = _camera()
    clip = _observed_clip("clip_b", gt, K, R, t)

    world_file = tmp_path / "world.npz"
    np.savez(world_file, clip_b=gt, other=gt[:5])
    np.testing.assert_allclose(load_teacher_file(world_file).for_clip(clip), gt, atol=1e-6)
    np.testing.assert_allclose(make_teacher("file", path=world_file)(clip), gt, atol=1e-6)

    camera_file = tmp_path / "camera.npz"
    np.savez(camera_file, clip_b=_to_camera(gt, R, t), __frame__=np.array("camera"))
    np.testing.assert_allclose(load_teacher_file(camera_file).for_clip(clip), gt, atol=1e-5)

    # Another skeleton, mapped to SMPL-22 by name.
    to_lafan = joint_map(SMPL_22, LAFAN_22)
    lafan, _ = to_lafan.apply(gt)
    lafan_file = tmp_path / "lafan.npz"
    np.savez(lafan_file, clip_b=lafan, __skeleton__=np.array("lafan22"))
    np.testing.assert_allclose(load_teacher_file(lafan_file).for_clip(clip), gt, atol=1e-6)


def test_teacher_file_errors_name_file_and_clip(tmp_path: Path):
    gt = walk(30, seed=19)
    K, R, t = _camera()
    clip = _observed_clip("clip_c", gt, K, R, t)
    nan = gt.copy()
    nan[3, 4, 1] = np.nan
    cases = {
        "missing": {"someone_else": gt},
        "joints": {"clip_c": gt[:, :17]},
        "nan": {"clip_c": nan},
        "frames": {"clip_c": gt[:25]},
    }
    for label, arrays in cases.items():
        path = tmp_path / f"{label}.npz"
        np.savez(path, **arrays)
        with pytest.raises(DataError) as err:
            load_teacher_file(path).for_clip(clip)
        assert str(path) in str(err.value) and "clip_c" in str(err.value), label

    camera_only = tmp_path / "camera_no_extrinsics.npz"
    np.savez(camera_only, clip_c=gt, __frame__=np.array("camera"))
    with pytest.raises(DataError, match="clip_c"):
        load_teacher_file(camera_only).for_clip(dataclasses.replace(clip, R=None, t=None))

    coco = tmp_path / "coco.npz"
    np.savez(coco, clip_c=np.zeros((30, 17, 3)), __skeleton__=np.array("coco17"))
    with pytest.raises(DataError, match="spine1"):
        load_teacher_file(coco)
    bad_frame = tmp_path / "frame.npz"
    np.savez(bad_frame, clip_c=gt, __frame__=np.array("image"))
    with pytest.raises(DataError, match="__frame__"):
        load_teacher_file(bad_frame)
    with pytest.raises(DataError, match="absent.npz"):
        load_teacher_file(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"garbage")
    with pytest.raises(DataError, match="garbage.npz"):
        load_teacher_file(garbage)
