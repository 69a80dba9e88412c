"""HumanML3D's redundant motion features for any kinematic tree: ``encode`` / ``decode`` / ``Normalizer``.

This implements the motion representation of Guo et al., "Generating Diverse and Natural 3D Human Motions from
Text" (CVPR 2022; HumanML3D's ``motion_representation`` notebook), for a skeleton of J joints, in pure torch,
batched over any leading dimensions, in the dtype and on the device of the input.

Slice table (per frame; J joints; D = 12·J − 1; SMPL-22: D = 263). Use :class:`FeatureLayout`, never offsets.

=====================  ============  ===========  ==============================================================
name                   size          SMPL-22      meaning
=====================  ============  ===========  ==============================================================
root_angular_velocity  1             0:1          HALF the yaw change of the root frame from frame i to i+1, rad
                                                  (HumanML3D stores arcsin of the y component of the relative
                                                  quaternion r_rot[i+1]·r_rot[i]⁻¹, which is half the angle)
root_linear_velocity   2             1:3          root displacement i→i+1 (x, z) in the root frame of frame i+1, m
root_height            1             3:4          root y (height above the floor), m
ric                    3·(J−1)       4:67         joints 1..J−1 relative to the root: root x,z removed, rotated
                                                  into the root frame of frame i, y kept absolute, m
rot6d                  6·(J−1)       67:193       joints 1..J−1 local rotations (see :func:`inverse_kinematics`)
                                                  as the first two columns of the matrix (col 0, then col 1)
local_velocity         3·J           193:259      displacement of every joint i→i+1, rotated into the root frame
                                                  of frame i, m per frame
foot_contacts          4             259:263      1.0 where a foot joint's squared displacement i→i+1 is below the
                                                  threshold, else 0.0: (left ankle, left toe, right ankle, right
                                                  toe) = the skeleton's ``feet_left`` then ``feet_right``
=====================  ============  ===========  ==============================================================

Root frame. The facing of a frame is ``up × across`` with ``across = (r_hip − l_hip) + (r_shoulder − l_shoulder)``
(normalized first, as HumanML3D does), smoothed over time by a Gaussian of std ``facing_sigma`` frames (edge mode
"nearest", truncated at 4σ, as ``scipy.ndimage.gaussian_filter1d``) and renormalized. The root rotation ``r_rot`` of
a frame is the yaw (rotation about +y) that takes the smoothed facing to +z; velocities in "the root frame" are
rotated by it.

Canonical frame (:func:`canonicalize`): floor = lowest foot joint over the clip at y = 0; root x,z of frame 0 at the
origin; the smoothed facing of frame 0 along +z. :func:`encode` always canonicalizes first.

Differences from HumanML3D's own script, all deliberate:

- **Canonical facing.** HumanML3D rotates the clip so that the RAW facing of frame 0 points to +z but computes the
  root rotations from the SMOOTHED facing, then forces the root rotation of frame 0 to the identity. Its decode
  still reproduces its own joints, but its first root-angular-velocity value holds the smoothed-vs-raw facing
  difference at frame 0 as a spurious turn (and its frame-0 ric/rot6d use the raw facing, the rest the smoothed). We
  canonicalize with the SMOOTHED facing of frame 0, so the root rotation of frame 0 is exactly the identity without
  forcing it, and ``decode(encode(x)) == canonicalize(x)`` up to float rounding. The clip's canonical frame differs
  from HumanML3D's by that constant yaw only.
- **Frame count.** HumanML3D outputs T−1 feature frames for T joint frames. We output T: the velocity-type features
  (root angular and linear velocity, local velocities, foot contacts) of the last frame repeat those of frame T−2.
  ``decode`` never reads the velocities of the last frame, so this changes no decoded position.
- **Floor.** HumanML3D puts the lowest of ALL joints on the floor; we use the lowest foot joint (they coincide
  except when, say, a hand touches the ground below the feet).
- **Angular velocity across −z.** HumanML3D's ``arcsin(q.y)`` has the wrong sign when the relative quaternion has a
  negative w, which happens when the facing crosses −z between two frames (the per-frame half angles jump from
  +π/2 to −π/2); its decode then turns the rest of the clip by twice that frame's yaw change. We store
  ``wrap(θ[i+1] − θ[i]) / 2``: the same number everywhere else, and correct there.
- **Facing joints.** HumanML3D's inverse kinematics unpacks its facing joints as (l_hip, r_hip, …), i.e. its root
  rotation uses ``(l_hip − r_hip) + (r_shoulder − l_shoulder)`` (HumanML3D issues #55, #107, #112, #131). We use the
  documented ``(r_hip − l_hip) + (r_shoulder − l_shoulder)`` everywhere.

Kept as HumanML3D defines them: every kinematic chain's IK starts from the root rotation, including chains that
start at a branching joint such as spine3 (HumanML3D issue #119); local velocities are rotated by the root rotation
of frame i while the root linear velocity is rotated by that of frame i+1; the root angular velocity is a half angle
that ``decode`` integrates into the quaternion (cos a, 0, sin a, 0). ``decode`` therefore also reads HumanML3D's own
features (``recover_from_ric``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import roma
import torch
from torch import Tensor

from .skeleton import SMPL_22, Skeleton

__all__ = [
    "FeatureLayout",
    "RigidTransform",
    "Normalizer",
    "yaw_matrix",
    "facing_directions",
    "facing_yaw",
    "root_rotation",
    "canonicalize",
    "floor_from_feet",
    "CanonicalFrames",
    "canonical_frames",
    "minimal_rotation",
    "inverse_kinematics",
    "encode",
    "encode_with_frames",
    "decode",
]

_NUM_CONTACTS = 4


# --- layout ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureLayout:
    """Named slices of the D = 12·J − 1 feature vector of a J-joint skeleton (see the module's slice table)."""

    num_joints: int

    def __post_init__(self) -> None:
        if self.num_joints < 2:
            raise ValueError(f"the representation needs at least 2 joints, got {self.num_joints}")

    @classmethod
    def from_dim(cls, dim: int) -> FeatureLayout:
        """The layout whose feature size is ``dim``; ``ValueError`` if ``dim`` is not 12·J − 1."""
        if (dim + 1) % 12 != 0:
            raise ValueError(f"feature size {dim} is not 12·J − 1 for any joint count J")
        return cls((dim + 1) // 12)

    names = (
        "root_angular_velocity", "root_linear_velocity", "root_height", "ric", "rot6d", "local_velocity",
        "foot_contacts",
    )
    """Slice names in feature order."""

    velocity_names = ("root_angular_velocity", "root_linear_velocity", "local_velocity", "foot_contacts")
    """Slices computed from frame i → i+1 (the last frame repeats frame T−2)."""

    root_names = ("root_angular_velocity", "root_linear_velocity", "root_height")
    """Slices of the root: where every joint is (an error in them moves the whole body)."""

    def sizes(self) -> dict[str, int]:
        j = self.num_joints
        return {
            "root_angular_velocity": 1, "root_linear_velocity": 2, "root_height": 1, "ric": 3 * (j - 1),
            "rot6d": 6 * (j - 1), "local_velocity": 3 * j, "foot_contacts": _NUM_CONTACTS,
        }

    def slices(self) -> dict[str, slice]:
        """Every slice by name, in feature order; together they tile ``[0, dim)``."""
        out, start = {}, 0
        for name, size in self.sizes().items():
            out[name] = slice(start, start + size)
            start += size
        return out

    @property
    def dim(self) -> int:
        return 12 * self.num_joints - 1

    @property
    def root_angular_velocity(self) -> slice:
        return self.slices()["root_angular_velocity"]

    @property
    def root_linear_velocity(self) -> slice:
        return self.slices()["root_linear_velocity"]

    @property
    def root_height(self) -> slice:
        return self.slices()["root_height"]

    @property
    def ric(self) -> slice:
        return self.slices()["ric"]

    @property
    def rot6d(self) -> slice:
        return self.slices()["rot6d"]

    @property
    def local_velocity(self) -> slice:
        return self.slices()["local_velocity"]

    @property
    def foot_contacts(self) -> slice:
        return self.slices()["foot_contacts"]


# --- rigid transform ------------------------------------------------------------------------------------------------


def _batch_expand(tensor: Tensor, batch_ndim: int, target_ndim: int, trailing: int) -> Tensor:
    """Insert singleton dims after the first ``batch_ndim`` dims so that ``tensor`` has ``target_ndim`` dims.

    ``trailing`` is the number of dims after the batch dims (2 for a (3, 3) matrix, 1 for a (3,) vector).
    """
    missing = target_ndim - tensor.ndim
    if missing < 0:
        raise ValueError(f"cannot broadcast shape {tuple(tensor.shape)} to {target_ndim} dims")
    return tensor.reshape(tensor.shape[:batch_ndim] + (1,) * missing + tensor.shape[batch_ndim:batch_ndim + trailing])


@dataclass
class RigidTransform:
    """``x' = R x + t``, batched: ``rotation (..., 3, 3)``, ``translation (..., 3)``.

    The batch dims ``...`` are a prefix of the shape of whatever it is applied to: a transform returned by
    :func:`canonicalize` for joints ``(B, T, J, 3)`` has ``rotation (B, 3, 3)`` and applies to ``(B, *S, 3)``.
    """

    rotation: Tensor
    translation: Tensor

    @property
    def batch_ndim(self) -> int:
        return self.rotation.ndim - 2

    def apply(self, points: Tensor) -> Tensor:
        """Transform points ``(..., *S, 3)`` (metres) whose leading dims are the transform's batch dims."""
        r = _batch_expand(self.rotation, self.batch_ndim, points.ndim + 1, 2)  # (..., 1.., 3, 3)
        t = _batch_expand(self.translation, self.batch_ndim, points.ndim, 1)  # (..., 1.., 3)
        return (r @ points.unsqueeze(-1)).squeeze(-1) + t

    def inverse(self) -> RigidTransform:
        """``x = Rᵀ x' − Rᵀ t``."""
        rt = self.rotation.transpose(-1, -2)
        return RigidTransform(rt, -(rt @ self.translation.unsqueeze(-1)).squeeze(-1))


# --- yaw helpers and facing -----------------------------------------------------------------------------------------


def yaw_matrix(theta: Tensor) -> Tensor:
    """Rotation by ``theta`` (rad, right-handed) about +y: ``(...,) → (..., 3, 3)``; +z ↦ (sin θ, 0, cos θ)."""
    c, s = torch.cos(theta), torch.sin(theta)
    zero, one = torch.zeros_like(theta), torch.ones_like(theta)
    rows = (torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1), torch.stack([-s, zero, c], -1))
    return torch.stack(rows, dim=-2)


def _rotate_yaw(v: Tensor, theta: Tensor) -> Tensor:
    """``yaw_matrix(theta) @ v`` for ``v (..., 3)`` and ``theta`` broadcastable to ``v.shape[:-1]``."""
    c, s = torch.cos(theta), torch.sin(theta)
    x, y, z = v.unbind(-1)
    return torch.stack([c * x + s * z, y.expand_as(c * x), -s * x + c * z], dim=-1)


def _normalize(v: Tensor, eps: float = 1e-12) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def _gaussian_smoothing_matrix(num_frames: int, sigma: float, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(T, T)`` matrix W with ``W @ x`` = ``scipy.ndimage.gaussian_filter1d(x, sigma, mode="nearest")`` along T.

    Kernel ``exp(−k² / 2σ²)`` for ``|k| ≤ int(4σ + 0.5)``, normalized; samples past the ends clamp to the edge.
    """
    if sigma <= 0:
        return torch.eye(num_frames, dtype=dtype, device=device)
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=device)
    kernel = torch.exp(-0.5 * (offsets.to(torch.float64) / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(dtype)
    frames = torch.arange(num_frames, device=device)
    source = (frames[:, None] + offsets[None, :]).clamp(0, num_frames - 1)  # (T, K)
    weights = torch.zeros(num_frames, num_frames, dtype=dtype, device=device)
    weights.scatter_add_(1, source, kernel.expand(num_frames, -1).contiguous())
    return weights


def facing_directions(joints: Tensor, skeleton: Skeleton, *, sigma: float = 20.0) -> Tensor:
    """Unit facing direction per frame on the ground plane: ``(..., T, J, 3) → (..., T, 3)``.

    ``across = normalize((r_hip − l_hip) + (r_shoulder − l_shoulder))``, ``forward = up × across`` (y = 0 by
    construction), smoothed over T with a Gaussian of std ``sigma`` frames (``sigma = 0``: raw), then normalized.
    This follows HumanML3D's ``inverse_kinematics_np(smooth_forward=True)`` with the documented joint order.
    """
    r_hip, l_hip, r_shoulder, l_shoulder = skeleton.facing_indices
    across = (joints[..., r_hip, :] - joints[..., l_hip, :]) + (joints[..., r_shoulder, :] - joints[..., l_shoulder, :])
    across = _normalize(across)  # (..., T, 3)
    up = torch.zeros_like(across)
    up[..., 1] = 1.0
    forward = torch.linalg.cross(up, across, dim=-1)  # (az, 0, −ax)
    w = _gaussian_smoothing_matrix(joints.shape[-3], sigma, dtype=joints.dtype, device=joints.device)
    forward = torch.einsum("ts,...sc->...tc", w, forward)
    return _normalize(forward)


def facing_yaw(facing: Tensor) -> Tensor:
    """Yaw θ (rad) with ``yaw_matrix(θ) @ facing = +z``: ``(..., 3) → (...)``."""
    return torch.atan2(-facing[..., 0], facing[..., 2])


def root_rotation(joints: Tensor, skeleton: Skeleton, *, facing_sigma: float = 20.0) -> Tensor:
    """HumanML3D's ``r_rot`` as matrices ``(..., T, 3, 3)``: the yaw taking each frame's smoothed facing to +z.

    It maps world vectors into the root frame (``r_rot @ facing = +z``).
    """
    return yaw_matrix(facing_yaw(facing_directions(joints, skeleton, sigma=facing_sigma)))


# --- canonicalization -----------------------------------------------------------------------------------------------


def _check_joints(joints: Tensor, skeleton: Skeleton, min_frames: int = 1) -> None:
    if joints.ndim < 3 or joints.shape[-1] != 3 or joints.shape[-2] != skeleton.num_joints:
        raise ValueError(
            f"expected joints (..., T, {skeleton.num_joints}, 3) for skeleton {skeleton.name}, "
            f"got {tuple(joints.shape)}"
        )
    if joints.shape[-3] < min_frames:
        raise ValueError(f"need at least {min_frames} frames, got {joints.shape[-3]}")
    if not joints.is_floating_point():
        raise TypeError(f"joints must be floating point, got {joints.dtype}")


def _canonicalize(joints: Tensor, skeleton: Skeleton, facing_sigma: float,
                  floor: float | Tensor | None = None) -> tuple[Tensor, RigidTransform, Tensor]:
    """:func:`canonicalize` plus the canonical yaw ``(..., T)`` of every frame's smoothed facing (exactly 0 at frame 0).

    The facing is smoothed once, on the input: rotating the clip by a constant yaw rotates every smoothed facing by
    it, so the canonical yaw is ``θ_in[t] − θ_in[0]``.
    """
    if floor is None:
        left, right = skeleton.foot_indices
        floor = joints[..., :, left + right, 1].amin(dim=(-1, -2))  # (...,)
    else:
        floor = torch.as_tensor(floor, dtype=joints.dtype, device=joints.device).expand(joints.shape[:-3])
    root0 = joints[..., 0, 0, :]  # (..., 3)
    origin = torch.stack([root0[..., 0], floor, root0[..., 2]], dim=-1)  # (..., 3): point that goes to 0
    theta_in = facing_yaw(facing_directions(joints, skeleton, sigma=facing_sigma))  # (..., T)
    theta0 = theta_in[..., 0]  # (...,)
    rotation = yaw_matrix(theta0)  # (..., 3, 3)
    translation = -_rotate_yaw(origin, theta0)  # (..., 3)
    moved = joints - origin[..., None, None, :]
    joints_c = _rotate_yaw(moved, theta0[..., None, None])  # (..., T, J, 3)
    return joints_c, RigidTransform(rotation, translation), theta_in - theta0[..., None]


def canonicalize(joints: Tensor, skeleton: Skeleton, *, facing_sigma: float = 20.0,
                 floor: float | Tensor | None = None) -> tuple[Tensor, RigidTransform]:
    """Put a clip in the canonical frame: floor at y = 0, root x,z of frame 0 at the origin, facing +z.

    Args:
        joints: ``(..., T, J, 3)`` metres, y up.
        skeleton: provides ``foot_indices`` (floor = the lowest foot joint over all frames) and ``facing_indices``.
        facing_sigma: Gaussian std (frames) of the facing smoothing; the SMOOTHED facing of frame 0 is turned to +z.
        floor: the floor height (world y, metres; scalar or ``(...,)``) instead of the lowest foot joint: a window
            of a clip keeps the clip's floor, as training windows cut from whole-clip features do.

    Returns:
        ``joints_c (..., T, J, 3)`` and the :class:`RigidTransform` (batch dims ``...``) with
        ``joints_c = transform.apply(joints)``; move cameras with :func:`videomdm.camera.transform_camera`.
    """
    joints = torch.as_tensor(joints)
    _check_joints(joints, skeleton)
    joints_c, transform, _ = _canonicalize(joints, skeleton, facing_sigma, floor)
    return joints_c, transform


def floor_from_feet(world: np.ndarray, skeleton: Skeleton = SMPL_22, *, percentile: float = 5.0) -> float:
    """Floor height (world y, metres) from the feet: the ``percentile``-th percentile over frames of the lowest
    foot joint (ankles and toes) of each frame.

    On clean data the lowest foot joint touches the floor whenever a foot is planted, so this is HumanML3D's
    "lowest foot joint over the clip" (used by :func:`canonicalize`) made robust: a low percentile
    instead of the minimum ignores the few frames where a lifter pushes a foot through the floor. ``world`` is
    ``(T, J, 3)``.
    """
    world = np.asarray(world, dtype=np.float64)
    left, right = skeleton.foot_indices
    feet = left + right
    if not feet:
        raise ValueError(f"skeleton {skeleton.name} defines no foot joints")
    lowest = world[:, feet, 1].min(axis=1)  # (T,)
    return float(np.percentile(lowest, percentile))


@dataclass
class CanonicalFrames:
    """The frames in which windows of one clip's features decode, so windows can be cut from features encoded once.

    ``decode(encode(joints)[s:s + L])`` starts at the origin facing +z at frame ``s``: it equals
    ``frames.window(s).apply(joints[s:s + L])`` (the floor stays the whole clip's lowest foot, as when HumanML3D
    crops its training windows from per-motion features).

    Attributes:
        to_canonical: world → the clip's canonical frame (:func:`canonicalize`).
        yaw: ``(T,)`` canonical yaw (rad) of every frame's smoothed facing (0 at frame 0), as :func:`decode`
            integrates it.
        root: ``(T, 3)`` canonical root positions, metres.
    """

    to_canonical: RigidTransform
    yaw: Tensor
    root: Tensor

    def window(self, start: int | Tensor) -> RigidTransform:
        """World → the frame of the window starting at ``start``: ``x ↦ Y(θ_s)(C(x) − o_s)`` with ``C`` the clip's
        canonicalization, ``θ_s = yaw[start]`` and ``o_s`` the root's ground point at ``start``. ``start`` an int:
        ``rotation (3, 3)``, ``translation (3,)``; a tensor of N starts: ``(N, 3, 3)``, ``(N, 3)``."""
        origin = self.root[start] * self.root.new_tensor([1.0, 0.0, 1.0])  # (..., 3)
        rotation = yaw_matrix(self.yaw[start])  # (..., 3, 3)
        offset = (self.to_canonical.translation - origin)[..., None]  # (..., 3, 1)
        return RigidTransform(rotation @ self.to_canonical.rotation, (rotation @ offset)[..., 0])


def canonical_frames(joints: Tensor, skeleton: Skeleton, *, facing_sigma: float = 20.0) -> CanonicalFrames:
    """:class:`CanonicalFrames` of one clip ``(T, J, 3)`` (metres, y up); use the ``facing_sigma`` of :func:`encode`."""
    joints = torch.as_tensor(joints)
    _check_joints(joints, skeleton)
    if joints.ndim != 3:
        raise ValueError(f"expected one clip (T, J, 3), got {tuple(joints.shape)}")
    joints_c, transform, yaw = _canonicalize(joints, skeleton, facing_sigma)
    return CanonicalFrames(transform, yaw, joints_c[:, 0])


# --- inverse kinematics ---------------------------------------------------------------------------------------------


def minimal_rotation(u: Tensor, v: Tensor) -> Tensor:
    """Smallest rotation taking unit ``u`` to unit ``v`` (HumanML3D's ``qbetween``): ``(..., 3) → (..., 3, 3)``.

    Quaternion (XYZW, as roma) ``(u × v, 1 + u·v)`` normalized; for antiparallel vectors, a half turn about an axis
    perpendicular to ``u``.
    """
    q = torch.cat([torch.linalg.cross(u, v, dim=-1), 1.0 + (u * v).sum(-1, keepdim=True)], dim=-1)  # (..., 4)
    norm = q.norm(dim=-1, keepdim=True)
    ex = torch.zeros_like(u)
    ex[..., 0] = 1.0
    ez = torch.zeros_like(u)
    ez[..., 2] = 1.0
    axis = torch.linalg.cross(u, ex, dim=-1)
    axis = torch.where(axis.norm(dim=-1, keepdim=True) > 1e-3, axis, torch.linalg.cross(u, ez, dim=-1))
    half_turn = torch.cat([_normalize(axis), torch.zeros_like(norm)], dim=-1)
    q = torch.where(norm > 1e-6, q / norm.clamp_min(1e-6), half_turn)
    return roma.unitquat_to_rotmat(q)


def inverse_kinematics(joints: Tensor, skeleton: Skeleton, root_rotation: Tensor) -> Tensor:
    """Local joint rotations from positions, as HumanML3D's ``Skeleton.inverse_kinematics_np``.

    For each chain of ``skeleton.chain_indices``: ``R = root_rotation`` (for every chain, also those starting at a
    branching joint, as HumanML3D does); for each consecutive pair (a, b): ``G = minimal rotation taking
    rest_directions[b] to normalize(x[b] − x[a])``, ``local[b] = R⁻¹ G``, ``R = R local[b] (= G)``.

    Args:
        joints: ``(..., T, J, 3)``.
        root_rotation: ``(..., T, 3, 3)``, HumanML3D's ``r_rot`` (see :func:`root_rotation`).

    Returns:
        ``(..., T, J, 3, 3)`` local rotation matrices; index 0 holds ``root_rotation`` (as HumanML3D's
        ``quat_params[:, 0]``), joints no chain reaches hold the identity. Forward kinematics: along a chain,
        ``R = local[0]; R = R @ local[b]; direction[b] = R @ rest_directions[b]``.
    """
    rest = _normalize(torch.as_tensor(skeleton.rest_directions_array(), dtype=joints.dtype, device=joints.device))
    eye = torch.eye(3, dtype=joints.dtype, device=joints.device).expand(joints.shape[:-2] + (3, 3))  # (..., T, 3, 3)
    local = [eye] * skeleton.num_joints
    local[0] = root_rotation.expand(joints.shape[:-2] + (3, 3))
    for chain in skeleton.chain_indices:
        rot = local[0]
        for a, b in zip(chain[:-1], chain[1:]):
            direction = _normalize(joints[..., b, :] - joints[..., a, :])  # (..., T, 3)
            glob = minimal_rotation(rest[b].expand_as(direction), direction)  # (..., T, 3, 3)
            local[b] = rot.transpose(-1, -2) @ glob
            rot = glob
    return torch.stack(local, dim=-3)


# --- encode / decode ------------------------------------------------------------------------------------------------


def _repeat_last(x: Tensor, dim: int) -> Tensor:
    """Append a copy of the last entry along ``dim`` (T−1 velocity frames → T)."""
    return torch.cat([x, x.narrow(dim, x.shape[dim] - 1, 1)], dim=dim)


def encode(
    joints: Tensor, skeleton: Skeleton, *, contact_threshold: float = 0.002, facing_sigma: float = 20.0,
    floor: float | Tensor | None = None,
) -> Tensor:
    """Joint positions → HumanML3D features (module docstring), after :func:`canonicalize`.

    Args:
        joints: ``(..., T, J, 3)`` metres, y up, T ≥ 2, at the model fps.
        skeleton: the motion skeleton (facing joints, feet, chains, rest directions).
        contact_threshold: a foot joint is in contact when its squared displacement to the next frame is below
            this (m² per frame; HumanML3D's 0.002 at 20 fps).
        facing_sigma: Gaussian std (frames) of the facing smoothing (HumanML3D: 20).
        floor: floor height (world y, metres) instead of the lowest foot joint (see :func:`canonicalize`).

    Returns:
        ``(..., T, 12·J − 1)`` features in the dtype and on the device of ``joints``; the velocity-type features of
        frame T−1 repeat those of frame T−2.
    """
    joints = torch.as_tensor(joints)
    _check_joints(joints, skeleton, min_frames=2)
    x, _, theta = _canonicalize(joints, skeleton, facing_sigma, floor)  # (..., T, J, 3), (..., T)
    return _features(x, theta, skeleton, contact_threshold)


def encode_with_frames(joints: Tensor, skeleton: Skeleton, *, contact_threshold: float = 0.002,
                       facing_sigma: float = 20.0) -> tuple[Tensor, CanonicalFrames]:
    """``(encode(joints), canonical_frames(joints))`` of one clip ``(T, J, 3)``, canonicalizing it once."""
    joints = torch.as_tensor(joints)
    _check_joints(joints, skeleton, min_frames=2)
    if joints.ndim != 3:
        raise ValueError(f"expected one clip (T, J, 3), got {tuple(joints.shape)}")
    x, transform, theta = _canonicalize(joints, skeleton, facing_sigma)
    return _features(x, theta, skeleton, contact_threshold), CanonicalFrames(transform, theta, x[:, 0])


def _features(x: Tensor, theta: Tensor, skeleton: Skeleton, contact_threshold: float) -> Tensor:
    """:func:`encode` of canonical joints ``x (..., T, J, 3)`` with canonical yaws ``theta (..., T)``."""
    left, right = skeleton.foot_indices
    if len(left) + len(right) != _NUM_CONTACTS:
        raise ValueError(f"skeleton {skeleton.name} must name 2 foot joints per side, got {left} and {right}")
    root = x[..., 0, :]  # (..., T, 3)

    # Root angular velocity: half the wrapped yaw change (HumanML3D's arcsin of the relative quaternion's y).
    dtheta = theta[..., 1:] - theta[..., :-1]  # (..., T-1)
    rot_velocity = 0.5 * torch.atan2(torch.sin(dtheta), torch.cos(dtheta))
    # Root linear velocity: displacement i→i+1 in the root frame of frame i+1; x and z.
    lin_velocity = _rotate_yaw(root[..., 1:, :] - root[..., :-1, :], theta[..., 1:])[..., [0, 2]]  # (..., T-1, 2)
    height = root[..., 1:2]  # (..., T, 1)

    # Root-relative positions: remove root x,z, rotate into the root frame of the same frame; y stays absolute.
    relative = x[..., 1:, :] - root[..., None, :] * x.new_tensor([1.0, 0.0, 1.0])  # (..., T, J-1, 3)
    ric = _rotate_yaw(relative, theta[..., None]).flatten(-2)  # (..., T, 3(J-1))

    # Local rotations as cont6d: first two columns of each matrix.
    local = inverse_kinematics(x, skeleton, yaw_matrix(theta))  # (..., T, J, 3, 3)
    rot6d = torch.cat([local[..., 1:, :, 0], local[..., 1:, :, 1]], dim=-1).flatten(-2)  # (..., T, 6(J-1))

    # Local velocities: displacement i→i+1 of every joint in the root frame of frame i.
    displacement = x[..., 1:, :, :] - x[..., :-1, :, :]  # (..., T-1, J, 3)
    local_velocity = _rotate_yaw(displacement, theta[..., :-1, None]).flatten(-2)  # (..., T-1, 3J)

    # Foot contacts: squared displacement below the threshold.
    feet = displacement[..., left + right, :]  # (..., T-1, 4, 3)
    contacts = ((feet**2).sum(-1) < contact_threshold).to(x.dtype)  # (..., T-1, 4)

    t = -2  # the time dim of (..., T, C) tensors
    return torch.cat(
        [
            _repeat_last(rot_velocity[..., None], t),
            _repeat_last(lin_velocity, t),
            height,
            ric,
            rot6d,
            _repeat_last(local_velocity, t),
            _repeat_last(contacts, t),
        ],
        dim=-1,
    )


def decode(features: Tensor, num_joints: int) -> Tensor:
    """HumanML3D features → joint positions, as HumanML3D's ``recover_from_ric``; differentiable.

    Integrates the root yaw (``a[0] = 0``, ``a[i] = Σ_{k<i} rot_velocity[k]``; root rotation = quaternion
    (cos a, 0, sin a, 0), i.e. ``yaw_matrix(2a)``), the root x,z (``xz[0] = 0``, ``xz[i] = Σ_{k<i}`` velocity k
    rotated back by the root rotation of frame k+1), takes y from the height slot, and rotates the root-relative
    positions back, adding the root x,z. Reads only the ric and root slots; the velocity slots of the last frame
    are ignored.

    Args:
        features: ``(..., T, 12·num_joints − 1)``.

    Returns:
        ``(..., T, num_joints, 3)`` metres in the canonical frame.
    """
    layout = FeatureLayout(num_joints)
    if features.shape[-1] != layout.dim:
        raise ValueError(f"expected {layout.dim} features for {num_joints} joints, got shape {tuple(features.shape)}")
    rot_velocity = features[..., layout.root_angular_velocity][..., 0]  # (..., T)
    half_angle = torch.cat([torch.zeros_like(rot_velocity[..., :1]), torch.cumsum(rot_velocity[..., :-1], -1)], -1)
    theta = 2.0 * half_angle  # (..., T) yaw of the root frame

    velocity = features[..., layout.root_linear_velocity]  # (..., T, 2): x, z in the root frame of frame i+1
    velocity3 = torch.stack([velocity[..., 0], torch.zeros_like(velocity[..., 0]), velocity[..., 1]], -1)
    steps = _rotate_yaw(velocity3[..., :-1, :], -theta[..., 1:])  # (..., T-1, 3) world displacement i→i+1
    root_xz = torch.cat([torch.zeros_like(steps[..., :1, :]), torch.cumsum(steps, dim=-2)], dim=-2)  # (..., T, 3)
    height = features[..., layout.root_height]  # (..., T, 1)
    root = torch.cat([root_xz[..., 0:1], height, root_xz[..., 2:3]], dim=-1)  # (..., T, 3)

    ric = features[..., layout.ric].unflatten(-1, (num_joints - 1, 3))  # (..., T, J-1, 3)
    others = _rotate_yaw(ric, -theta[..., None]) + root_xz[..., None, :]  # root_xz has y = 0
    return torch.cat([root[..., None, :], others], dim=-2)


# --- normalization --------------------------------------------------------------------------------------------------


class Normalizer:
    """Per-dimension feature standardization ``(x − mean) / std`` with statistics from the training set.

    Attributes:
        mean: ``(D,)``.
        std: ``(D,)``, floored (see :meth:`from_features`).
    """

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ValueError(f"mean and std must both be (D,), got {tuple(mean.shape)} and {tuple(std.shape)}")
        if not bool((std > 0).all()):
            raise ValueError("std must be positive")
        self.mean = mean
        self.std = std

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def from_features(cls, features: Tensor, mask: Tensor | None = None, *, min_std: float = 1e-2) -> Normalizer:
        """Mean and (population) std over all real frames.

        Args:
            features: ``(N, T, D)`` or ``(M, D)``.
            mask: bool, ``features.shape[:-1]``, True = real frame; padded frames are ignored. None = all real.
            min_std: floor of the std. Near-constant dimensions (a contact that never fires in a small set, a
                joint that barely moves) would otherwise blow up to huge normalized values; 1e-2 is below the
                spread of every informative HumanML3D dimension at 20 fps (metres, radians, per-frame velocities)
                and keeps any normalized value within ~100× of its raw deviation.
        """
        features = torch.as_tensor(features)
        rows = features.reshape(-1, features.shape[-1])  # (N·T, D)
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.bool, device=features.device)
            if mask.shape != features.shape[:-1]:
                raise ValueError(f"mask shape {tuple(mask.shape)} must be {tuple(features.shape[:-1])}")
            rows = rows[mask.reshape(-1)]
        if rows.shape[0] == 0:
            raise ValueError("no real frames to compute statistics from")
        rows64 = rows.to(torch.float64)
        mean = rows64.mean(0)
        std = rows64.std(0, correction=0).clamp_min(min_std)
        return cls(mean.to(features.dtype), std.to(features.dtype))

    @classmethod
    def from_moments(cls, count: int, mean: Tensor, sum_squares: Tensor, *, min_std: float = 1e-2,
                     dtype: torch.dtype = torch.float32) -> Normalizer:
        """The normalizer of ``count`` rows whose ``(D,)`` mean and summed squared deviations from it are given
        (float64, e.g. accumulated clip by clip); the same statistics and floor as :meth:`from_features`."""
        if count <= 0:
            raise ValueError("no real frames to compute statistics from")
        std = (sum_squares.to(torch.float64) / count).sqrt().clamp_min(min_std)
        return cls(mean.to(dtype), std.to(dtype))

    def grouped(self, layout: FeatureLayout, *, root_emphasis: float = 1.0) -> Normalizer:
        """One std per feature group, as HumanML3D normalizes: each slice of ``layout`` takes the mean of its
        dimensions' stds, and the root slices (angular velocity, linear velocity, height) are divided by
        ``root_emphasis`` (HumanML3D's ``feat_bias`` = 5).

        Per-dimension stds weigh a near-constant coordinate (floored at ``min_std``) hundreds of times more than a
        moving one in any loss or noise level on normalized features; one std per group keeps each group's
        dimensions in their physical proportions. The root slices decide where every joint is (an error in the root
        velocity integrates over the window), so they get ``root_emphasis`` times more weight in the normalized
        space and ``root_emphasis`` times less noise (metres) at every diffusion level.
        """
        if layout.dim != self.dim:
            raise ValueError(f"layout of {layout.dim} features does not fit a normalizer of {self.dim}")
        std = self.std.clone()
        for name, part in layout.slices().items():
            std[part] = self.std[part].mean() / (root_emphasis if name in layout.root_names else 1.0)
        return Normalizer(self.mean, std)

    def normalize(self, x: Tensor) -> Tensor:
        """``(..., D) → (..., D)``."""
        return (x - self.mean.to(x)) / self.std.to(x)

    def denormalize(self, x: Tensor) -> Tensor:
        """``(..., D) → (..., D)``, the inverse of :meth:`normalize`."""
        return x * self.std.to(x) + self.mean.to(x)

    def state_dict(self) -> dict[str, Tensor]:
        """Plain contiguous tensors ``{"mean", "std"}`` (safetensors-ready)."""
        return {"mean": self.mean.detach().contiguous().clone(), "std": self.std.detach().contiguous().clone()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> Normalizer:
        return cls(state["mean"], state["std"])

    def to(self, device: torch.device | str) -> Normalizer:
        return Normalizer(self.mean.to(device), self.std.to(device))
