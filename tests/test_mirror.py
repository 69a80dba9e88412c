"""Left/right mirroring (videomdm.data.mirror and MotionWindows(mirror=...)): the math, its consistency with the
projection and the 2D losses, and the mirrored training windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videomdm.camera import project_normalized, world_to_camera
from videomdm.data.dataset import MotionWindows, collate
from videomdm.data.mirror import MIRROR, mirror_camera, mirror_joints, mirror_keypoints
from videomdm.losses import reprojection_loss, velocity_2d_loss
from videomdm.placement import solve_placement
from videomdm.representation import decode, encode
from videomdm.skeleton import SKELETONS, SMPL_22, joint_map
from videomdm.views import views_as_frames, views_as_items

from synthetic import walk

PERM = SMPL_22.mirror_permutation


def random_rotations(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random proper rotations ``(*shape, 3, 3)`` (QR of Gaussian matrices, signs fixed so det = +1)."""
    q, r = np.linalg.qr(rng.normal(size=shape + (3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    return np.where(np.linalg.det(q)[..., None, None] < 0, -q, q)


def cameras_around_origin(rng: np.random.Generator, views: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame cameras ``R (V, T, 3, 3)``, ``t (V, T, 3)``: random orientations, each 4 m from the world origin
    and looking at it (``X_c = R X + (0, 0, 4)``), so points within 2 m of the origin are in front of every one."""
    return random_rotations(rng, (views, frames)), np.broadcast_to([0.0, 0.0, 4.0], (views, frames, 3)).copy()


def test_mirror_of_a_world_point_projects_on_the_mirrored_keypoint():
    rng = np.random.default_rng(0)
    views, frames, joints = 2, 5, SMPL_22.num_joints
    points = rng.normal(scale=0.5, size=(frames, joints, 3))  # world, metres
    R, t = cameras_around_origin(rng, views, frames)

    def project(P, R, t):  # (T, J, 3) world → (V, T, J, 2) normalized image coordinates
        cam = world_to_camera(torch.from_numpy(P)[None].expand(views, -1, -1, -1), torch.from_numpy(R),
                              torch.from_numpy(t))
        return project_normalized(cam).numpy()

    keypoints = project(points, R, t)  # (V, T, J, 2)
    confidence = rng.uniform(0.1, 1.0, size=keypoints.shape[:-1])
    kp_m, conf_m = mirror_keypoints(keypoints, confidence, PERM)
    R_m, t_m = mirror_camera(R, t)
    np.testing.assert_allclose(project(mirror_joints(points, PERM), R_m, t_m), kp_m, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(conf_m, confidence[..., PERM])
    # The mirrored camera is a rotation (not a reflection), and the math is what the docstring says.
    np.testing.assert_allclose(np.linalg.det(R_m), 1.0, atol=1e-12)
    np.testing.assert_allclose(R_m, MIRROR @ R @ MIRROR, rtol=0, atol=0)
    np.testing.assert_allclose(t_m, t @ MIRROR, rtol=0, atol=0)
    left, right = SMPL_22.index("left_wrist"), SMPL_22.index("right_wrist")
    np.testing.assert_array_equal(kp_m[..., left, :], keypoints[..., right, :] * [-1.0, 1.0])
    # An involution, dtypes kept.
    np.testing.assert_array_equal(mirror_joints(mirror_joints(points, PERM), PERM), points)
    np.testing.assert_array_equal(mirror_camera(R_m, t_m)[0], R)
    assert mirror_joints(points.astype(np.float32), PERM).dtype == np.float32


def test_2d_losses_of_a_mirrored_triple_equal_the_unmirrored_ones():
    """The 2D terms as the ``2d`` objective computes them (placement solved from the keypoints, views folded)."""
    rng = np.random.default_rng(1)
    views, frames, joints = 2, 12, SMPL_22.num_joints
    truth = rng.normal(scale=0.4, size=(1, joints, 3)) + rng.normal(scale=0.02, size=(frames, joints, 3)).cumsum(0)
    prediction = truth + rng.normal(scale=0.05, size=truth.shape)  # a 3D estimate, off the truth
    R, t = cameras_around_origin(rng, views, frames)
    cam = world_to_camera(torch.from_numpy(truth)[None].expand(views, -1, -1, -1), torch.from_numpy(R),
                          torch.from_numpy(t))
    keypoints = project_normalized(cam).numpy() + rng.normal(scale=0.01, size=(views, frames, joints, 2))
    confidence = rng.uniform(0.0, 1.0, size=(views, frames, joints)) * (rng.random((views, frames, joints)) > 0.1)

    def loss_2d(P, kp, conf, R, t):
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None]  # noqa: E731  (1, ...) float64
        pred, kp, weight, R, t = as_t(P), as_t(kp), as_t(conf), as_t(R), as_t(t)
        mask = torch.ones(1, frames, dtype=torch.bool)
        placement = solve_placement(*views_as_frames(pred, kp, weight, R, t), solve_yaw=True)
        placed = placement.apply(pred)
        observed = views_as_items(placed, kp, weight, mask, R, t)
        terms = (reprojection_loss(**observed), velocity_2d_loss(**observed))
        return torch.stack(terms).numpy(), placement

    plain, placement = loss_2d(prediction, keypoints, confidence, R, t)
    mirrored, placement_m = loss_2d(mirror_joints(prediction, PERM), *mirror_keypoints(keypoints, confidence, PERM),
                                    *mirror_camera(R, t))
    assert plain.min() > 1e-5  # an imperfect prediction: the loss is not trivially zero on both sides
    np.testing.assert_allclose(mirrored, plain, rtol=1e-9)
    # The solved placement is mirrored too: the turn reversed, the translation's x negated.
    assert abs(float(placement.yaw[0])) > 1e-4
    torch.testing.assert_close(placement_m.yaw, -placement.yaw, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(placement_m.translation, placement.translation * placement.translation.new_tensor(
        [-1.0, 1.0, 1.0]), rtol=1e-7, atol=1e-9)


def test_joint_maps_commute_with_mirroring():
    """Mirroring keypoints after mapping them to the motion skeleton (as the dataset does) equals mapping keypoints
    mirrored with the detector skeleton's own permutation, for every joint map there is."""
    checked = 0
    for source in SKELETONS.values():
        for target in SKELETONS.values():
            try:
                A = joint_map(source, target).matrix()  # (J_target, J_source): mapped = A @ keypoints
            except KeyError:
                continue
            np.testing.assert_array_equal(A[:, source.mirror_permutation], A[target.mirror_permutation],
                                          err_msg=f"{source.name} -> {target.name}")
            checked += 1
    assert checked >= len(SKELETONS) + 4  # the identities and the detector maps


def test_encoding_commutes_with_mirroring():
    """A mirrored clip, encoded and decoded, is the mirror of the clip encoded and decoded: the features of a mirrored
    clip describe the mirrored motion in the same canonical frame (origin, facing +z)."""
    joints = torch.from_numpy(walk(40, seed=3))  # (T, J, 3)
    decoded = decode(encode(joints, SMPL_22), 22).numpy()
    decoded_m = decode(encode(torch.from_numpy(mirror_joints(joints.numpy(), PERM)), SMPL_22), 22).numpy()
    np.testing.assert_allclose(decoded_m, mirror_joints(decoded, PERM), rtol=0, atol=1e-4)


def windows_2d(dataset_2d, mirror):
    return MotionWindows(dataset_2d, "train", motion_field="teacher_3d", num_frames=30, min_frames=20,
                         with_keypoints=True, mirror=mirror)


def test_mirrored_2d_windows_are_mirrored_clips_with_mirrored_cameras(dataset_2d):
    plain, mirrored = windows_2d(dataset_2d, 0.0), windows_2d(dataset_2d, 1.0)
    indices = [2, 7, 2, 0]  # one generator per item, as in training (ItemRandom)
    a = collate([plain.sample(i, np.random.default_rng([4, k])) for k, i in enumerate(indices)])
    b = collate([mirrored.sample(i, np.random.default_rng([4, k])) for k, i in enumerate(indices)])
    kp, conf = mirror_keypoints(a.keypoints.numpy(), a.confidence.numpy(), PERM)
    np.testing.assert_array_equal(b.keypoints.numpy(), kp)
    np.testing.assert_array_equal(b.confidence.numpy(), conf)
    assert not torch.equal(a.features, b.features)
    # Each window's decoded motion, projected with its camera, lands where the unmirrored one lands, mirrored:
    # features, canonical frames and cameras of the mirrored clip agree with each other.

    def project(batch):  # (B, V, T, J, 2)
        B, V, T = batch.R.shape[:3]
        joints = decode(batch.features, 22)[:, None].expand(B, V, T, -1, 3).reshape(B * V, T, -1, 3)
        cam = world_to_camera(joints, batch.R.reshape(B * V, T, 3, 3), batch.t.reshape(B * V, T, 3))
        return project_normalized(cam).reshape(B, V, T, -1, 2).numpy()

    expected, _ = mirror_keypoints(project(a), a.confidence.numpy(), PERM)
    np.testing.assert_allclose(project(b), expected, rtol=0, atol=1e-4)
    # The same window, mirrored in the window's frame.
    np.testing.assert_allclose(decode(b.features, 22).numpy(), mirror_joints(decode(a.features, 22).numpy(), PERM),
                               rtol=0, atol=1e-4)


def test_mirroring_draws_from_the_item_stream_after_the_window(text_dataset):
    """Mirroring keeps each item's window and caption (drawn first), is a function of the item's generator, and
    with ``mirror=0`` draws nothing (the windows of runs without it are unchanged)."""
    plain = MotionWindows(text_dataset, "train", motion_field="gt_3d", num_frames=30, min_frames=20)
    half = MotionWindows(text_dataset, "train", motion_field="gt_3d", num_frames=30, min_frames=20, mirror=0.5)
    mirrored = MotionWindows(text_dataset, "train", motion_field="gt_3d", num_frames=30, min_frames=20, mirror=1.0)
    flips = []
    for seed in range(60):
        index = seed % len(plain)
        rng_plain = np.random.default_rng(seed)
        a = plain.sample(index, rng_plain)
        after_plain = rng_plain.random()
        b = half.sample(index, np.random.default_rng(seed))
        c = mirrored.sample(index, np.random.default_rng(seed))
        assert a.texts == b.texts == c.texts
        assert torch.equal(half.sample(index, np.random.default_rng(seed)).features, b.features)  # reproducible
        if torch.equal(b.features, a.features):
            flips.append(False)
        else:
            assert torch.equal(b.features, c.features)  # the same window, mirrored
            flips.append(True)
        # mirror=0 leaves the generator where the window and caption alone leave it.
        rng_by_hand = np.random.default_rng(seed)
        rng_by_hand.integers(0, plain.lengths[index] - 30 + 1)
        rng_by_hand.integers(len(plain.texts[index]))
        assert rng_by_hand.random() == after_plain
        # mirror = 0.5: the flip is the item's next uniform draw after the window and caption.
        assert flips[-1] == (after_plain < 0.5)
    assert 15 <= sum(flips) <= 45  # 60 fair draws
    # Both versions of a clip are cached under one bound.
    assert {key[1] for key in half._cache} == {False, True}


def test_mirror_probability_is_checked(text_dataset):
    with pytest.raises(ValueError, match=r"mirror is a probability in \[0, 1\], got 1.5"):
        MotionWindows(text_dataset, "train", motion_field="gt_3d", num_frames=30, min_frames=20, mirror=1.5)


def test_training_reads_data_mirror_from_the_config(dataset_2d, tmp_path, monkeypatch):
    import json

    import videomdm.train as train_module
    from test_train_2d import tiny_2d_config

    made = []

    class Recording(MotionWindows):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(train_module, "MotionWindows", Recording)
    train_module.train(dataset_2d, tmp_path / "run", tiny_2d_config("train.steps=1", "data.mirror=0.25"),
                       progress=False)
    assert [windows.mirror for windows in made] == [0.25]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["mirror"] == 0.25
