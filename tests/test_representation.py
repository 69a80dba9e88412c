"""Tests of the HumanML3D-style representation (``videomdm.representation``).

Motions are synthetic: the SMPL-22 rest pose (the skeleton's rest directions with human bone lengths) driven by
random smooth local rotations, a smooth root trajectory and a yaw curve. A small NumPy reference of HumanML3D's own
feature definition (written from its description: raw-facing canonicalization, Gaussian-smoothed root rotations
with the frame-0 root forced to the identity, T−1 output frames) checks compatibility.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch
from scipy.ndimage import gaussian_filter1d

from videomdm.camera import transform_camera
from videomdm.representation import (
    FeatureLayout,
    Normalizer,
    RigidTransform,
    canonical_frames,
    canonicalize,
    decode,
    encode,
    encode_with_frames,
    facing_directions,
    inverse_kinematics,
    root_rotation,
    yaw_matrix,
)
from videomdm.skeleton import LAFAN_22, SMPL_22, Skeleton, joint_map

SK = SMPL_22
J = SK.num_joints

# Parent→joint bone lengths (metres) of an adult, by SMPL joint name.
BONE_LENGTHS = {
    "left_hip": 0.10, "right_hip": 0.10, "spine1": 0.11, "left_knee": 0.38, "right_knee": 0.38, "spine2": 0.13,
    "left_ankle": 0.40, "right_ankle": 0.40, "spine3": 0.06, "left_foot": 0.13, "right_foot": 0.13, "neck": 0.21,
    "left_collar": 0.08, "right_collar": 0.08, "head": 0.10, "left_shoulder": 0.11, "right_shoulder": 0.11,
    "left_elbow": 0.27, "right_elbow": 0.27, "left_wrist": 0.25, "right_wrist": 0.25,
}
# Joints whose local rotation moves a facing joint (hips, shoulders): frozen for constant-facing motions.
TORSO = ("pelvis", "left_hip", "right_hip", "spine1", "spine2", "spine3", "left_collar", "right_collar",
         "left_shoulder", "right_shoulder")


def _smooth_curve(rng: np.random.Generator, num_frames: int, size: tuple[int, ...], amplitude: float) -> np.ndarray:
    """(T, *size) sum of three random low-frequency sinusoids per entry."""
    t = np.arange(num_frames)[:, None] / num_frames
    out = np.zeros((num_frames, int(np.prod(size))))
    for _ in range(3):
        freq = rng.uniform(0.3, 2.0, size=out.shape[1])
        phase = rng.uniform(0, 2 * np.pi, size=out.shape[1])
        amp = rng.uniform(-amplitude, amplitude, size=out.shape[1]) / 3
        out += amp * np.sin(2 * np.pi * freq * t + phase)
    return out.reshape((num_frames,) + size)


def make_motion(
    seed: int, num_frames: int = 60, *, turn: float | None = None, constant_facing: bool = False
) -> torch.Tensor:
    """(T, 22, 3) float64 SMPL-22 joints in metres.

    ``turn``: total yaw change over the clip (rad, linear); None = a random smooth yaw. ``constant_facing``: no yaw
    change and frozen torso rotations, so the facing is the same in every frame.
    """
    rng = np.random.default_rng(seed)
    rest = SK.rest_directions_array()
    lengths = np.array([0.0] + [BONE_LENGTHS[n] for n in SK.joint_names[1:]])
    rotvecs = _smooth_curve(rng, num_frames, (J, 3), 0.6)  # (T, J, 3) rad
    rotvecs[:, 0] *= 0.3  # mild pelvis tilt
    if constant_facing:
        for name in TORSO:
            rotvecs[:, SK.index(name)] = rotvecs[0, SK.index(name)]
    yaw0 = rng.uniform(-np.pi, np.pi)
    if constant_facing:
        yaw = np.full(num_frames, yaw0)
    elif turn is not None:
        yaw = yaw0 + np.linspace(0.0, turn, num_frames)
    else:
        yaw = yaw0 + _smooth_curve(rng, num_frames, (), 1.5)
    local = roma.rotvec_to_rotmat(torch.from_numpy(rotvecs))  # (T, J, 3, 3)
    root_yaw = yaw_matrix(torch.from_numpy(yaw))  # (T, 3, 3)

    root = np.zeros((num_frames, 3))
    root[:, [0, 2]] = rng.uniform(-3, 3, size=2) + np.cumsum(_smooth_curve(rng, num_frames, (2,), 0.08), axis=0)
    root[:, 1] = 0.85 + _smooth_curve(rng, num_frames, (), 0.05)

    glob = [root_yaw @ local[:, 0]]
    pos = [torch.from_numpy(root)]
    for j in range(1, J):
        p = SK.parents[j]
        glob.append(glob[p] @ local[:, j])
        bone = torch.from_numpy(lengths[j] * rest[j])  # (3,)
        pos.append(pos[p] + glob[j] @ bone)
    return torch.stack(pos, dim=1)


def make_batch(seeds: list[int], num_frames: int = 60, **kwargs) -> torch.Tensor:
    return torch.stack([make_motion(s, num_frames, **kwargs) for s in seeds])


def yaw_np(theta: float) -> np.ndarray:
    return yaw_matrix(torch.tensor(theta, dtype=torch.float64)).numpy()


# --- a NumPy reference of HumanML3D's definition (quaternions WXYZ, as HumanML3D) --------------------------------


def q_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def q_inv(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def q_rot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate v (..., 3) by unit q (..., 4): v + 2w (u × v) + 2 u × (u × v)."""
    q, v = np.broadcast_arrays(q, np.concatenate([np.zeros(v.shape[:-1] + (1,)), v], axis=-1))
    w, u, v = q[..., :1], q[..., 1:], v[..., 1:]
    uv = np.cross(u, v)
    return v + 2 * w * uv + 2 * np.cross(u, uv)


def q_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smallest rotation taking u to v: (|u||v| + u·v, u × v), normalized."""
    w = np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1) + (u * v).sum(-1)
    q = np.concatenate([w[..., None], np.cross(u, v)], axis=-1)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def q_to_mat(q: np.ndarray) -> np.ndarray:
    cols = [q_rot(q, np.broadcast_to(e, q.shape[:-1] + (3,))) for e in np.eye(3)]
    return np.stack(cols, axis=-1)


def humanml3d_reference(
    positions: np.ndarray, skeleton: Skeleton, *, threshold: float = 0.002, sigma: float = 20.0,
    identity_first: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """HumanML3D's features of (T, J, 3) joints: ((T−1, D) features, (T, J, 3) its canonical joints).

    ``identity_first``: HumanML3D's IK overwrites the root rotation of frame 0 with the identity; False computes it
    from the smoothed facing like every other frame.
    """
    pos = positions.astype(np.float64).copy()
    pos[..., 1] -= pos[..., 1].min()  # floor: lowest of all joints
    pos = pos - pos[0, 0] * np.array([1.0, 0.0, 1.0])
    r_hip, l_hip, r_sh, l_sh = skeleton.facing_indices

    def forward(p: np.ndarray) -> np.ndarray:  # (T, J, 3) → (T, 3), not normalized
        across = (p[:, r_hip] - p[:, l_hip]) + (p[:, r_sh] - p[:, l_sh])
        across = across / np.linalg.norm(across, axis=-1, keepdims=True)
        return np.cross(np.array([0.0, 1.0, 0.0]), across)

    z = np.array([0.0, 0.0, 1.0])
    raw0 = forward(pos[:1])[0]
    pos = q_rot(q_between(raw0 / np.linalg.norm(raw0), z), pos)  # raw facing of frame 0 → +z
    glob = pos.copy()

    left, right = skeleton.foot_indices
    disp2 = ((glob[1:] - glob[:-1]) ** 2).sum(-1)  # (T-1, J)
    contacts = (disp2[:, left + right] < threshold).astype(np.float64)

    fwd = gaussian_filter1d(forward(pos), sigma, axis=0, mode="nearest")
    fwd = fwd / np.linalg.norm(fwd, axis=-1, keepdims=True)
    r_rot = q_between(fwd, np.broadcast_to(z, fwd.shape))  # (T, 4)
    if identity_first:
        r_rot[0] = np.array([1.0, 0.0, 0.0, 0.0])

    rest = skeleton.rest_directions_array()
    quats = np.zeros(pos.shape[:-1] + (4,))
    quats[..., 0] = 1.0
    quats[:, 0] = r_rot
    for chain in skeleton.chain_indices:
        rot = r_rot
        for a, b in zip(chain[:-1], chain[1:]):
            v = pos[:, b] - pos[:, a]
            g = q_between(np.broadcast_to(rest[b], v.shape), v / np.linalg.norm(v, axis=-1, keepdims=True))
            quats[:, b] = q_mul(q_inv(rot), g)
            rot = q_mul(rot, quats[:, b])
    mats = q_to_mat(quats)
    cont6d = np.concatenate([mats[..., 0], mats[..., 1]], axis=-1)  # (T, J, 6)

    lin_vel = q_rot(r_rot[1:], pos[1:, 0] - pos[:-1, 0])[:, [0, 2]]
    rot_vel = np.arcsin(q_mul(r_rot[1:], q_inv(r_rot[:-1]))[:, 2:3])
    rel = pos.copy()
    rel[..., 0] -= pos[:, 0:1, 0]
    rel[..., 2] -= pos[:, 0:1, 2]
    rel = q_rot(r_rot[:, None], rel)
    local_vel = q_rot(r_rot[:-1, None], glob[1:] - glob[:-1])
    n = len(pos) - 1
    data = np.concatenate([
        rot_vel, lin_vel, rel[:-1, 0, 1:2], rel[:-1, 1:].reshape(n, -1), cont6d[:-1, 1:].reshape(n, -1),
        local_vel.reshape(n, -1), contacts,
    ], axis=-1)
    return data, glob


def facing_angle_of(joints: np.ndarray, sigma: float = 20.0) -> float:
    """Yaw φ with yaw(φ) @ smoothed facing of frame 0 = +z (NumPy, independent of the module)."""
    r_hip, l_hip, r_sh, l_sh = SK.facing_indices
    across = (joints[:, r_hip] - joints[:, l_hip]) + (joints[:, r_sh] - joints[:, l_sh])
    across = across / np.linalg.norm(across, axis=-1, keepdims=True)
    fwd = gaussian_filter1d(np.cross([0.0, 1.0, 0.0], across), sigma, axis=0, mode="nearest")[0]
    return math.atan2(-fwd[0], fwd[2])


# --- tests ------------------------------------------------------------------------------------------------------------


def test_layout_dimensions_and_tiling():
    assert FeatureLayout(22).dim == 263
    for num_joints in (2, 5, 17, 22, 33):
        layout = FeatureLayout(num_joints)
        assert layout.dim == 12 * num_joints - 1
        assert FeatureLayout.from_dim(layout.dim) == layout
        slices = list(layout.slices().values())
        assert slices[0].start == 0 and slices[-1].stop == layout.dim
        assert all(a.stop == b.start for a, b in zip(slices[:-1], slices[1:]))
        assert tuple(layout.slices()) == FeatureLayout.names
    layout = FeatureLayout(22)
    assert (layout.ric, layout.rot6d, layout.local_velocity, layout.foot_contacts) == (
        slice(4, 67), slice(67, 193), slice(193, 259), slice(259, 263))
    with pytest.raises(ValueError):
        FeatureLayout.from_dim(264)


def test_encode_shape_dtype_and_other_skeleton():
    x = make_batch([0, 1])
    feats = encode(x, SK)
    assert feats.shape == (2, 60, 263) and feats.dtype == torch.float64
    assert encode(x.float(), SK).dtype == torch.float32
    torch.testing.assert_close(encode(x[None], SK)[0], feats)  # any number of leading dims
    assert encode(x[:, :2], SK).shape == (2, 2, 263)  # two frames are enough
    # LAFAN-22 is SMPL-22 reordered: same dimension, and it decodes to the same joints (reordered).
    perm = [src[0] for src in joint_map(SMPL_22, LAFAN_22).sources]  # LAFAN joint i = SMPL joint perm[i]
    feats_lafan = encode(x[:, :, perm], LAFAN_22)
    assert feats_lafan.shape == (2, 60, 263)
    torch.testing.assert_close(decode(feats_lafan, 22), canonicalize(x, SK)[0][:, :, perm], atol=1e-9, rtol=0)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_decode_encode_round_trip(dtype, tol):
    x = torch.cat([make_batch([0, 1, 2]), make_motion(3, turn=2.5 * math.pi)[None]]).to(dtype)  # (4, 60, 22, 3)
    joints_c, _ = canonicalize(x, SK)
    err = (decode(encode(x, SK), J) - joints_c).abs().max()
    assert err < tol  # 1 mm in float32


def test_features_invariant_to_yaw_and_translation():
    x = make_batch([4, 5])
    for angle, shift in ((0.7, (1.0, 0.3, -2.0)), (-2.9, (-5.0, -0.2, 4.0))):
        moved = x @ yaw_matrix(torch.tensor(angle, dtype=x.dtype)).T + torch.tensor(shift, dtype=x.dtype)
        torch.testing.assert_close(encode(moved, SK), encode(x, SK), atol=1e-9, rtol=0)
        moved32 = moved.float()
        torch.testing.assert_close(encode(moved32, SK), encode(x.float(), SK), atol=1e-4, rtol=0)


def test_canonical_frame():
    x = make_batch([6, 7], turn=1.0)
    joints_c, transform = canonicalize(x, SK)
    assert isinstance(transform, RigidTransform)
    torch.testing.assert_close(transform.apply(x), joints_c, atol=1e-12, rtol=0)
    torch.testing.assert_close(transform.inverse().apply(joints_c), x, atol=1e-12, rtol=0)
    eye = torch.eye(3, dtype=x.dtype).expand(2, 3, 3)
    torch.testing.assert_close(root_rotation(joints_c, SK)[:, 0], eye, atol=1e-12, rtol=0)
    facing0 = facing_directions(joints_c, SK)[:, 0]
    torch.testing.assert_close(facing0, torch.tensor([0.0, 0.0, 1.0], dtype=x.dtype).expand(2, 3), atol=1e-12, rtol=0)
    left, right = SK.foot_indices
    torch.testing.assert_close(joints_c[:, :, left + right, 1].amin(dim=(1, 2)), torch.zeros(2, dtype=x.dtype))
    torch.testing.assert_close(joints_c[:, 0, 0, [0, 2]], torch.zeros(2, 2, dtype=x.dtype))
    # The raw (unsmoothed) facing of a turning clip is not +z at frame 0: we turn the smoothed one.
    raw0 = facing_directions(joints_c, SK, sigma=0)[:, 0]
    assert (raw0[:, 0].abs() > 1e-3).all()


def test_transform_moves_cameras_with_joints():
    x = make_batch([8])
    joints_c, transform = canonicalize(x, SK)
    cam_r = roma.random_rotmat(60, dtype=x.dtype)[None]  # (1, T, 3, 3) per-frame camera
    cam_t = torch.randn(1, 60, 3, dtype=x.dtype) + torch.tensor([0.0, 0.0, 5.0], dtype=x.dtype)
    new_r, new_t = transform_camera(cam_r, cam_t, transform.rotation, transform.translation)
    before = (cam_r[:, :, None] @ x[..., None]).squeeze(-1) + cam_t[:, :, None]
    after = (new_r[:, :, None] @ joints_c[..., None]).squeeze(-1) + new_t[:, :, None]
    torch.testing.assert_close(after, before, atol=1e-10, rtol=0)


def test_gaussian_facing_smoothing_matches_scipy():
    x = make_motion(9, num_frames=45, turn=2.0)  # shorter than the 161-tap kernel
    r_hip, l_hip, r_sh, l_sh = SK.facing_indices
    xn = x.numpy()
    across = (xn[:, r_hip] - xn[:, l_hip]) + (xn[:, r_sh] - xn[:, l_sh])
    across /= np.linalg.norm(across, axis=-1, keepdims=True)
    for sigma in (20.0, 3.0):
        expected = gaussian_filter1d(np.cross([0.0, 1.0, 0.0], across), sigma, axis=0, mode="nearest")
        expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
        np.testing.assert_allclose(facing_directions(x, SK, sigma=sigma).numpy(), expected, atol=1e-12)


def test_foot_contacts():
    x = make_motion(10).clone()
    left, right = SK.foot_indices
    x[:, left] = x[0, left]  # planted left foot
    x[:, right] = x[0, right] + 0.1 * torch.arange(60, dtype=x.dtype)[:, None, None] * torch.tensor(
        [0.0, 0.0, 1.0], dtype=x.dtype)  # right foot slides 10 cm per frame
    contacts = encode(x, SK)[:, FeatureLayout(J).foot_contacts]
    expected = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=x.dtype).expand(60, 4)
    torch.testing.assert_close(contacts, expected)


def test_inverse_kinematics_reproduces_bone_directions():
    x = make_batch([11, 12], turn=1.5)
    joints_c, _ = canonicalize(x, SK)
    r_rot = root_rotation(joints_c, SK)
    local = inverse_kinematics(joints_c, SK, r_rot)  # (B, T, J, 3, 3)
    assert local.shape == (2, 60, J, 3, 3)
    torch.testing.assert_close(local.transpose(-1, -2) @ local, torch.eye(3, dtype=x.dtype).expand_as(local))
    rest = torch.from_numpy(SK.rest_directions_array())
    for chain in SK.chain_indices:
        rot = local[:, :, 0]
        for a, b in zip(chain[:-1], chain[1:]):
            rot = rot @ local[:, :, b]
            bone = joints_c[:, :, b] - joints_c[:, :, a]
            torch.testing.assert_close(rot @ rest[b], bone / bone.norm(dim=-1, keepdim=True), atol=1e-10, rtol=0)


def test_humanml3d_constant_facing_features_match():
    x = make_motion(13, constant_facing=True)
    left, right = SK.foot_indices
    assert int(x[..., 1].argmin()) % J in left + right  # so that both floor definitions agree
    ref, ref_joints = humanml3d_reference(x.numpy(), SK)
    decoded = decode(torch.from_numpy(ref), J).numpy()
    assert np.abs(decoded - ref_joints[:-1]).max() < 1e-3
    ours = encode(x, SK).numpy()
    np.testing.assert_allclose(ours[:-1], ref, atol=1e-9)


def test_humanml3d_turning_motion():
    x = make_motion(14, turn=2.0)
    ref_joints = humanml3d_reference(x.numpy(), SK)[1]
    phi = facing_angle_of(ref_joints)  # smoothed-vs-raw facing at frame 0, in HumanML3D's canonical frame
    assert abs(phi) > math.radians(1.0)
    rotated = ref_joints @ yaw_np(phi).T

    # HumanML3D as published (frame-0 root forced to the identity): decode reads its features exactly.
    ref = humanml3d_reference(x.numpy(), SK, identity_first=True)[0]
    assert np.abs(decode(torch.from_numpy(ref), J).numpy() - ref_joints[:-1]).max() < 1e-3
    # ... but its first angular velocity holds the frame-0 smoothed-vs-raw jump (≈ φ/2) as a spurious turn.
    assert abs(ref[0, 0] - phi / 2) < abs(phi) / 4

    # Without that override, decoding is off by exactly one constant yaw φ about the origin.
    ref_free = humanml3d_reference(x.numpy(), SK, identity_first=False)[0]
    decoded_free = decode(torch.from_numpy(ref_free), J).numpy()
    assert np.abs(decoded_free - rotated[:-1]).max() < 1e-3
    assert np.abs(decoded_free - ref_joints[:-1]).max() > 1e-2

    # Our canonical frame is HumanML3D's turned by the same φ.
    joints_c = canonicalize(x, SK)[0].numpy()
    assert np.abs(joints_c - rotated).max() < 1e-9


def test_angular_velocity_wraps_where_humanml3d_arcsin_flips():
    x = make_motion(15, num_frames=120, turn=1.5 * math.pi)  # a slow 270° turn: the facing crosses −z once
    ours = encode(x, SK)
    ref, ref_joints = humanml3d_reference(x.numpy(), SK)
    differ = np.abs(ours[:-1, 0].numpy() - ref[:, 0]) > 1e-6
    differ[0] = False  # frame 0 differs by the canonical-facing choice (see test_humanml3d_turning_motion)
    assert differ.sum() == 1
    np.testing.assert_allclose(ours[:-1, 0].numpy()[differ], -ref[differ, 0], atol=1e-9)  # sign flipped there
    # HumanML3D's features then do not decode to its own joints; ours round-trip.
    assert np.abs(decode(torch.from_numpy(ref), J).numpy() - ref_joints[:-1]).max() > 0.05
    assert (decode(ours, J) - canonicalize(x, SK)[0]).abs().max() < 1e-9


def test_decode_gradcheck():
    num_joints = 3
    feats = torch.randn(2, 4, FeatureLayout(num_joints).dim, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: decode(f, num_joints), (feats,))


def test_encode_is_differentiable():
    x = make_batch([16]).requires_grad_(True)
    encode(x, SK).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_normalizer_round_trip_and_state_dict():
    feats = torch.randn(5, 30, 263) * torch.rand(263) * 3 + torch.randn(263)
    feats[..., 7] = 2.0  # constant dim: std floored
    norm = Normalizer.from_features(feats)
    assert norm.std[7] == pytest.approx(1e-2)
    torch.testing.assert_close(norm.denormalize(norm.normalize(feats)), feats, atol=1e-5, rtol=1e-5)
    z = norm.normalize(feats)
    informative = norm.std > 1e-2
    torch.testing.assert_close(z.mean(dim=(0, 1))[informative], torch.zeros(int(informative.sum())), atol=1e-4,
                               rtol=0)
    state = norm.state_dict()
    assert set(state) == {"mean", "std"} and all(isinstance(v, torch.Tensor) for v in state.values())
    again = Normalizer.from_state_dict(state).to("cpu")
    torch.testing.assert_close(again.normalize(feats), z)
    flat = Normalizer.from_features(feats.reshape(-1, 263))
    torch.testing.assert_close(flat.mean, norm.mean)


def test_normalizer_ignores_padded_frames():
    feats = torch.randn(3, 20, 11)
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[1, 12:] = False
    mask[2, 5:] = False
    padded = feats.clone()
    padded[~mask] = 1e6
    norm = Normalizer.from_features(padded, mask)
    ref = Normalizer.from_features(feats[mask])
    torch.testing.assert_close(norm.mean, ref.mean)
    torch.testing.assert_close(norm.std, ref.std)


@pytest.mark.parametrize("start", [0, 1, 17, 50])
def test_windows_of_clip_features_decode_in_their_canonical_frames(start):
    x = make_motion(4, num_frames=80, turn=1.5)  # (T, J, 3)
    features = encode(x, SK)
    frames = canonical_frames(x, SK)
    window = decode(features[start:start + 30], SK.num_joints)
    expected = frames.window(start).apply(x[start:start + 30])
    torch.testing.assert_close(window, expected, atol=1e-6, rtol=0)
    assert frames.window(0).apply(x).allclose(canonicalize(x, SK)[0], atol=1e-9)
    both, once = encode_with_frames(x, SK)  # one canonicalization gives exactly the same
    assert torch.equal(both, features)
    assert all(torch.equal(a, b) for a, b in [(once.yaw, frames.yaw), (once.root, frames.root),
                                              (once.to_canonical.rotation, frames.to_canonical.rotation),
                                              (once.to_canonical.translation, frames.to_canonical.translation)])


def test_grouped_normalizer_has_one_std_per_group_and_emphasizes_the_root():
    from videomdm.representation import FeatureLayout

    layout = FeatureLayout(22)
    std = torch.rand(263) + 0.1
    grouped = Normalizer(torch.zeros(263), std).grouped(layout, root_emphasis=5.0)
    for name, part in layout.slices().items():
        expected = std[part].mean() / (5.0 if name.startswith("root") else 1.0)
        torch.testing.assert_close(grouped.std[part], expected.expand(part.stop - part.start))
    with pytest.raises(ValueError, match="layout"):
        Normalizer(torch.zeros(10), torch.ones(10)).grouped(layout)


def test_a_window_encoded_with_its_clips_floor_equals_the_slice_of_the_clip_encoding():
    from synthetic import walk

    from videomdm.representation import FeatureLayout, encode
    from videomdm.skeleton import SMPL_22

    clip = torch.from_numpy(walk(50, seed=2)).double()
    clip[:, :, 1] += 0.3  # the floor is not at y = 0
    clip[:10, :, 1] -= 0.05  # and the clip reaches lower than the window does
    left, right = SMPL_22.foot_indices
    floor = float(clip[:, left + right, 1].min())
    whole = encode(clip, SMPL_22)
    window = encode(clip[20:45], SMPL_22, floor=floor)
    layout = FeatureLayout(22)
    # Heights (the root's and every joint's y in ric) depend on the floor only; the rest also on the facing, which
    # is smoothed over the window instead of the clip.
    heights = [layout.root_height.start] + list(range(layout.ric.start + 1, layout.ric.stop, 3))
    torch.testing.assert_close(window[:, heights], whole[20:45, heights])
    own_floor = encode(clip[20:45], SMPL_22)
    assert float((whole[20:45, heights] - own_floor[:, heights]).min()) > 0.04  # its own lowest foot is higher
