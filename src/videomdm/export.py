"""Motion export: BVH for animation tools, HumanML3D feature vectors, plain joints.

BVH (:func:`write_bvh`). Joint positions ``(T, J, 3)`` (metres, y up) become a rigid skeleton with rotations:

- **Skeleton.** The hierarchy, joint names and order are the motion skeleton's (SMPL-22 by default). Each bone's
  length is the median over frames of the motion's parent→joint distance. Its rest direction is the skeleton's
  ``rest_directions`` entry, except that the bones leaving a joint with several children (pelvis → hips and spine;
  spine3 → neck and collars) keep the angles between them that the motion has: they are the canonical rest
  directions turned, as a rigid set, by the one rotation that best maps them onto the motion's own bone vectors
  (least squares over frames). The rest pose is therefore a T-pose-like standing pose of the motion's body.
- **Rotations (inverse kinematics).** A joint with several children gets the rotation that best aligns its rest
  bone set with the frame's bone vectors (Wahba's problem, solved by the SVD: :func:`best_rotations`); a joint with
  one child gets the smallest rotation, relative to its parent's, that turns its rest bone onto the frame's bone (no
  twist, :func:`videomdm.representation.minimal_rotation`); a leaf keeps its parent's orientation. The root carries
  the translation.
- **Channels.** Root: ``Xposition Yposition Zposition Zrotation Yrotation Xrotation``; other joints:
  ``Zrotation Yrotation Xrotation`` (intrinsic Z·Y·X, degrees, each channel unwrapped over time so angles do not
  jump by 360°). Lengths in metres (Blender's importer reads metres at scale 1); ``Frame Time`` is ``1 / fps``.

For a motion whose skeleton is rigid (mocap, forward kinematics of fixed bones) the file reproduces the joint
positions to float printing precision. A motion whose bone lengths or branch angles change from frame to frame
(generated or lifted motion) cannot be represented exactly by a rigid skeleton; :func:`write_bvh` returns the
largest position error of the written file, read back with :func:`videomdm.data.bvh.read_bvh`, so callers can report
it.

HumanML3D features (:func:`write_humanml3d`): the 263-d vectors of :func:`videomdm.representation.encode` at
HumanML3D's 20 fps (resampled when the motion has another rate), unnormalized, ``(T, 263)`` float32.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
import roma
import torch
from scipy.spatial.transform import Rotation

from .data.bvh import read_bvh
from .data.mocap import check_joints, resample
from .representation import encode, minimal_rotation
from .skeleton import SMPL_22, Skeleton

__all__ = [
    "ExportError",
    "EXPORT_FORMATS",
    "HUMANML3D_FPS",
    "BvhSkeleton",
    "best_rotations",
    "fit_bvh_skeleton",
    "bvh_rotations",
    "write_bvh",
    "write_joints",
    "write_humanml3d",
    "export_motion",
]

EXPORT_FORMATS = ("bvh", "npy", "humanml3d")
HUMANML3D_FPS = 20.0
_DECIMALS = 6  # metres and degrees: micrometre / micro-degree precision in the text


class ExportError(ValueError):
    """A motion that cannot be written in the asked format (unknown format, non-positive fps, a skeleton without rest
    directions, too few frames) or an output path that cannot be written. Bad joints raise
    :class:`videomdm.data.errors.DataError` (:func:`videomdm.data.mocap.check_joints`)."""


def _check_fps(fps: float, where: str) -> float:
    if not np.isfinite(fps) or fps <= 0:
        raise ExportError(f"{where}: fps must be a positive number, got {fps!r}")
    return float(fps)


def _write_file(path: Path, write: Callable[[io.BufferedWriter], object]) -> Path:
    """:func:`videomdm.data.clip.atomic_write_bytes` (temporary file, then rename: nothing is left under ``path`` on
    failure), with an unwritable path reported as :class:`ExportError` naming it."""
    from .data.clip import atomic_write_bytes

    path = Path(path)
    try:
        atomic_write_bytes(path, write)
    except OSError as err:
        raise ExportError(f"{path}: cannot write ({err.strerror or err})") from None
    return path


# --- skeleton fit and inverse kinematics ----------------------------------------------------------------------------


def _children(skeleton: Skeleton) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(skeleton.num_joints)]
    for parent, child in skeleton.bones:
        out[parent].append(child)
    return out


class BvhSkeleton:
    """The rigid skeleton written to a BVH file.

    Attributes:
        skeleton: the motion skeleton (names, parents).
        offsets: (J, 3) rest offsets parent→joint in metres (root row: zero).
        children: per joint, the indices of its children.
    """

    def __init__(self, skeleton: Skeleton, offsets: np.ndarray) -> None:
        self.skeleton = skeleton
        self.offsets = offsets
        self.children = _children(skeleton)


def _bone_vectors(joints: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """(T, J, 3) vectors parent→joint (root row zero)."""
    parents = np.array(skeleton.parents)
    vectors = joints - joints[:, np.maximum(parents, 0)]
    vectors[:, 0] = 0.0
    return vectors


def _unit(v: np.ndarray) -> np.ndarray:
    """``v (..., 3)`` scaled to length 1 (a zero vector stays zero)."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def best_rotations(rest: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per frame, the rotation R minimizing ``Σ_k ‖R rest_k − observed_k‖²`` (Wahba's problem): the rotation nearest
    to ``Σ_k observed_k rest_kᵀ`` (:func:`roma.special_procrustes`, by the SVD as in the Kabsch algorithm).
    ``rest (K, 3)``, ``observed (T, K, 3)`` → ``(T, 3, 3)``."""
    M = np.einsum("tkj,ki->tji", observed, rest)  # (T, 3, 3) Σ_k observed_k rest_kᵀ
    return roma.special_procrustes(torch.from_numpy(M), method="svd").numpy()


def fit_bvh_skeleton(joints: np.ndarray, skeleton: Skeleton = SMPL_22) -> BvhSkeleton:
    """The rigid skeleton of a motion (module docstring): median bone lengths, rest directions from ``skeleton``,
    branch angles from the motion. ``joints``: (T, J, 3) metres."""
    joints = check_joints(joints, skeleton, "joints")
    vectors = _bone_vectors(joints, skeleton)  # (T, J, 3)
    lengths = np.median(np.linalg.norm(vectors, axis=-1), axis=0)  # (J,)
    offsets = _unit(skeleton.rest_directions_array()) * lengths[:, None]  # (J, 3)
    for parent, kids in enumerate(_children(skeleton)):
        if len(kids) < 2:
            continue
        # Per frame: the rotation taking the canonical bone set onto the motion's; the bones rotated back by it,
        # averaged over frames, are the motion's own rigid bone set in a pose closest to the canonical one.
        rotations = best_rotations(offsets[kids], vectors[:, kids])  # (T, 3, 3)
        back = np.einsum("tji,tkj->ki", rotations, vectors[:, kids]) / len(vectors)  # mean of Rᵀ b, (K, 3)
        offsets[kids] = _unit(back) * lengths[kids, None]
    offsets[0] = 0.0
    return BvhSkeleton(skeleton, offsets)


def bvh_rotations(joints: np.ndarray, rig: BvhSkeleton) -> np.ndarray:
    """Inverse kinematics (module docstring): local rotation matrices ``(T, J, 3, 3)``; index 0 is the root's global
    rotation, every other row is relative to its parent."""
    joints = check_joints(joints, rig.skeleton, "joints")
    vectors = _bone_vectors(joints, rig.skeleton)
    num_frames, num_joints = joints.shape[:2]
    glob = np.zeros((num_frames, num_joints, 3, 3))
    local = np.zeros_like(glob)
    for j, parent in enumerate(rig.skeleton.parents):
        parent_rot = np.broadcast_to(np.eye(3), (num_frames, 3, 3)) if parent < 0 else glob[:, parent]
        kids = rig.children[j]
        if len(kids) >= 2:
            glob[:, j] = best_rotations(rig.offsets[kids], vectors[:, kids])
            local[:, j] = np.swapaxes(parent_rot, -1, -2) @ glob[:, j]
        elif len(kids) == 1:
            child = kids[0]
            in_parent = np.einsum("tji,tj->ti", parent_rot, vectors[:, child])  # parent_rotᵀ · bone
            rest = torch.from_numpy(_unit(rig.offsets[child])).expand(num_frames, 3)
            local[:, j] = minimal_rotation(rest, torch.from_numpy(_unit(in_parent))).numpy()
            glob[:, j] = parent_rot @ local[:, j]
        else:
            local[:, j] = np.eye(3)
            glob[:, j] = parent_rot
    return local


# --- writers --------------------------------------------------------------------------------------------------------


def _file_order(rig: BvhSkeleton) -> list[int]:
    """Joint indices in the order the hierarchy lists them (depth first), which is the order of the channels."""
    order: list[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for child in rig.children[j]:
            visit(child)

    visit(0)
    return order


def _hierarchy(rig: BvhSkeleton) -> str:
    """The HIERARCHY section, joints depth first (:func:`_file_order`)."""
    names = rig.skeleton.joint_names
    lines: list[str] = ["HIERARCHY"]

    def number(v: float) -> str:
        return f"{v:.{_DECIMALS}f}"

    def joint(j: int, depth: int) -> None:
        pad = "  " * depth
        keyword = "ROOT" if rig.skeleton.parents[j] < 0 else "JOINT"
        lines.append(f"{pad}{keyword} {names[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {' '.join(number(v) for v in rig.offsets[j])}")
        if keyword == "ROOT":
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation")
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Yrotation Xrotation")
        for child in rig.children[j]:
            joint(child, depth + 1)
        if not rig.children[j]:  # a leaf ends in an End Site one tenth of its bone further along the bone
            end = rig.offsets[j] * 0.1
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {' '.join(number(v) for v in end)}",
                          f"{pad}  }}"])
        lines.append(f"{pad}}}")

    joint(0, 0)
    return "\n".join(lines) + "\n"


def _euler_zyx(local: np.ndarray) -> np.ndarray:
    """(T, J, 3, 3) → (T, J, 3) intrinsic Z·Y·X angles in degrees, unwrapped over time."""
    num_frames, num_joints = local.shape[:2]
    angles = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("ZYX", degrees=True)
    angles = angles.reshape(num_frames, num_joints, 3)
    return np.rad2deg(np.unwrap(np.deg2rad(angles), axis=0))


def write_bvh(path: str | Path, joints: np.ndarray, fps: float, skeleton: Skeleton = SMPL_22) -> float:
    """Write joints ``(T, J, 3)`` (metres, y up, ``skeleton``'s joint order) as a BVH file (module docstring).

    The file is written atomically (temporary file, then rename).

    Returns:
        The largest distance in metres between the input joints and the joints of the written file as
        :func:`videomdm.data.bvh.read_bvh` reads them back: float rounding for a rigid skeleton, the non-rigidity of
        the motion otherwise.

    Raises:
        DataError: wrong shape or NaN (:func:`videomdm.data.mocap.check_joints`).
        ExportError: non-positive fps, or an unwritable path (naming it).
    """
    path = Path(path)
    joints = check_joints(joints, skeleton, str(path))
    fps = _check_fps(fps, str(path))
    if skeleton.rest_directions is None:
        raise ExportError(f"{path}: skeleton {skeleton.name} has no rest directions; BVH export needs a 3D motion "
                          f"skeleton")
    rig = fit_bvh_skeleton(joints, skeleton)
    local = bvh_rotations(joints, rig)
    angles = _euler_zyx(local)  # (T, J, 3)
    root = np.round(joints[:, 0], _DECIMALS)
    angles = np.round(angles, _DECIMALS)
    rig.offsets = np.round(rig.offsets, _DECIMALS)
    values = np.concatenate([root, angles[:, _file_order(rig)].reshape(len(joints), -1)], axis=1)  # (T, 3 + 3J)

    text = io.StringIO()
    text.write(_hierarchy(rig))
    text.write(f"MOTION\nFrames: {len(joints)}\nFrame Time: {1.0 / fps:.8f}\n")
    np.savetxt(text, values, fmt=f"%.{_DECIMALS}f")
    _write_file(path, lambda f: f.write(text.getvalue().encode("ascii")))
    written = read_bvh(path, unit="m")  # what a user opens: the project's reader, joints in file order
    order = [written.joint_names.index(name) for name in skeleton.joint_names]
    return float(np.linalg.norm(written.positions[:, order] - joints, axis=-1).max())


def write_joints(path: str | Path, joints: np.ndarray, skeleton: Skeleton = SMPL_22) -> Path:
    """Joints ``(T, J, 3)`` as float32 ``.npy``, written atomically."""
    path = Path(path)
    joints = check_joints(joints, skeleton, str(path)).astype(np.float32)
    return _write_file(path, lambda f: np.save(f, joints))


def write_humanml3d(path: str | Path, joints: np.ndarray, fps: float, skeleton: Skeleton = SMPL_22) -> Path:
    """HumanML3D feature vectors ``(T', 12·J − 1)`` float32 at 20 fps (module docstring) as ``.npy``."""
    path = Path(path)
    joints = check_joints(joints, skeleton, str(path))
    fps = _check_fps(fps, str(path))
    if fps != HUMANML3D_FPS:
        joints = resample(joints, fps, HUMANML3D_FPS)
    if len(joints) < 2:
        raise ExportError(f"{path}: HumanML3D features need at least 2 frames at {HUMANML3D_FPS:g} fps")
    features = encode(torch.as_tensor(joints), skeleton).numpy().astype(np.float32)
    return _write_file(path, lambda f: np.save(f, features))


def export_motion(path: str | Path, joints: np.ndarray, fps: float, fmt: str, skeleton: Skeleton = SMPL_22) -> str:
    """Write ``joints`` in format ``fmt`` (one of :data:`EXPORT_FORMATS`); returns a one-line description."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"{path}: unknown export format {fmt!r} (known: {', '.join(EXPORT_FORMATS)})")
    if fmt == "bvh":
        error = write_bvh(path, joints, fps, skeleton)
        return (f"BVH, {len(joints)} frames at {fps:g} fps; largest joint error of the rigid skeleton "
                f"{1000 * error:.2f} mm")
    if fmt == "npy":
        write_joints(path, joints, skeleton)
        return f"joints (T, {skeleton.num_joints}, 3) float32 metres, {len(joints)} frames"
    write_humanml3d(path, joints, fps, skeleton)
    return f"HumanML3D features (T, {12 * skeleton.num_joints - 1}) at {HUMANML3D_FPS:g} fps"
