"""Skeletons as data, and explicit joint maps between them.

A :class:`Skeleton` names its joints, gives each joint's parent (``-1`` for the root) and pairs left with right.
Skeletons used as the 3D motion skeleton (SMPL-22, LAFAN-22) also carry what the HumanML3D representation needs:
the rest-pose bone directions (y up, facing +z, subject's left = +x), the kinematic chains used for inverse
kinematics, the foot joints (floor height and contacts) and the four joints whose across-vector gives the facing.
Detector skeletons (COCO-17, BlazePose-33, H36M-17, OpenPose BODY_25) only need names, a drawing tree and left/right pairs.

No joint index appears as a bare literal outside this module: code asks a skeleton by name
(``SMPL_22.index("left_ankle")``) or by role (``skeleton.feet_left``).

Joint maps (:func:`joint_map`) say, for every joint of a target skeleton, where it comes from in a source skeleton:

- ``direct``: one source joint at (approximately) the same anatomical place;
- ``derived``: the mean of several source joints (for example a pelvis from the two hips); flagged so that
  consumers can lower its confidence;
- ``missing``: the source has nothing there. Missing joints are marked, never guessed.

Where a teacher needs every joint, a :class:`JointDerivation` places the missing ones by documented body-proportion
rules (weighted combinations of source joints) and lowers their confidence: :func:`blazepose_to_smpl22`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "Skeleton",
    "JointMap",
    "SMPL_22",
    "LAFAN_22",
    "H36M_17",
    "COCO_17",
    "BLAZEPOSE_33",
    "OPENPOSE_25",
    "SKELETONS",
    "get_skeleton",
    "joint_map",
    "JointDerivation",
    "blazepose_to_smpl22",
    "smpl22_derivation",
]


@dataclass(frozen=True)
class Skeleton:
    """A named joint set with a tree (``parents``) and left/right symmetry.

    Attributes:
        name: identifier stored in clip records (``"smpl22"``, ...).
        joint_names: (J,) names.
        parents: (J,) parent index per joint, ``-1`` for the root; parents precede children.
        left_right: pairs of (left, right) joint names that mirror each other.
        rest_directions: (J, 3) unit bone directions parent→joint in the rest pose (root row is zero), in the
            canonical body frame (y up, facing +z, subject's left = +x). Only for 3D motion skeletons.
        chains: kinematic chains (lists of joint names, each starting at the root or at a branching joint) along which
            inverse kinematics accumulates rotations, as in HumanML3D. Only for 3D motion skeletons.
        feet_left / feet_right: names of the (ankle, toe) joints of each foot.
        facing: names of (right hip, left hip, right shoulder, left shoulder); the facing direction is
            ``up × ((r_hip − l_hip) + (r_shoulder − l_shoulder))``.
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    left_right: tuple[tuple[str, str], ...] = ()
    rest_directions: tuple[tuple[float, float, float], ...] | None = None
    chains: tuple[tuple[str, ...], ...] | None = None
    feet_left: tuple[str, ...] = ()
    feet_right: tuple[str, ...] = ()
    facing: tuple[str, str, str, str] | None = None
    _lookup: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.joint_names) != len(self.parents):
            raise ValueError(f"skeleton {self.name}: {len(self.joint_names)} names but {len(self.parents)} parents")
        if len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f"skeleton {self.name}: duplicate joint names")
        for j, p in enumerate(self.parents):
            if p >= j:
                raise ValueError(f"skeleton {self.name}: parent of joint {j} must precede it (got {p})")
        if self.parents[0] != -1 or any(p < 0 for p in self.parents[1:]):
            raise ValueError(f"skeleton {self.name}: joint 0 must be the only root")
        object.__setattr__(self, "_lookup", {n: i for i, n in enumerate(self.joint_names)})
        if self.rest_directions is not None and len(self.rest_directions) != self.num_joints:
            raise ValueError(f"skeleton {self.name}: rest_directions must have one row per joint")
        named = [n for pair in self.left_right for n in pair] + list(self.feet_left) + list(self.feet_right)
        named += list(self.facing or ()) + [n for chain in self.chains or () for n in chain]
        for n in named:
            self.index(n)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def index(self, joint: str) -> int:
        """Index of a joint by name; ``KeyError`` naming the skeleton if unknown."""
        try:
            return self._lookup[joint]
        except KeyError:
            raise KeyError(f"skeleton {self.name} has no joint {joint!r}") from None

    def indices(self, joints: Sequence[str]) -> list[int]:
        return [self.index(j) for j in joints]

    @property
    def bones(self) -> list[tuple[int, int]]:
        """(parent, child) index pairs, for drawing and bone lengths."""
        return [(p, j) for j, p in enumerate(self.parents) if p >= 0]

    @property
    def mirror_permutation(self) -> np.ndarray:
        """(J,) index permutation that swaps every left joint with its right partner."""
        perm = np.arange(self.num_joints)
        for left, right in self.left_right:
            i, k = self.index(left), self.index(right)
            perm[i], perm[k] = k, i
        return perm

    @property
    def foot_indices(self) -> tuple[list[int], list[int]]:
        """(left, right) lists of foot joint indices (ankle, toe)."""
        return self.indices(self.feet_left), self.indices(self.feet_right)

    @property
    def facing_indices(self) -> list[int]:
        """Indices of (right hip, left hip, right shoulder, left shoulder)."""
        if self.facing is None:
            raise ValueError(f"skeleton {self.name} defines no facing joints")
        return self.indices(self.facing)

    @property
    def chain_indices(self) -> list[list[int]]:
        if self.chains is None:
            raise ValueError(f"skeleton {self.name} defines no kinematic chains")
        return [self.indices(c) for c in self.chains]

    def rest_directions_array(self) -> np.ndarray:
        """(J, 3) float64 rest bone directions (see class docstring)."""
        if self.rest_directions is None:
            raise ValueError(f"skeleton {self.name} defines no rest directions")
        return np.asarray(self.rest_directions, dtype=np.float64)


def _parents(names: Sequence[str], parent_of: Mapping[str, str | None]) -> tuple[int, ...]:
    lookup = {n: i for i, n in enumerate(names)}
    return tuple(-1 if parent_of[n] is None else lookup[parent_of[n]] for n in names)


# --- SMPL-22, in HumanML3D's joint order -------------------------------------------------------------------------

_SMPL_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
_SMPL_PARENT = {
    "pelvis": None, "left_hip": "pelvis", "right_hip": "pelvis", "spine1": "pelvis", "left_knee": "left_hip",
    "right_knee": "right_hip", "spine2": "spine1", "left_ankle": "left_knee", "right_ankle": "right_knee",
    "spine3": "spine2", "left_foot": "left_ankle", "right_foot": "right_ankle", "neck": "spine3",
    "left_collar": "spine3", "right_collar": "spine3", "head": "neck", "left_shoulder": "left_collar",
    "right_shoulder": "right_collar", "left_elbow": "left_shoulder", "right_elbow": "right_shoulder",
    "left_wrist": "left_elbow", "right_wrist": "right_elbow",
}
# Rest bone directions parent→joint (HumanML3D's raw offsets for its 22-joint skeleton): legs down, feet forward,
# spine up, arms sideways (left = +x).
_SMPL_REST = {
    "pelvis": (0, 0, 0), "left_hip": (1, 0, 0), "right_hip": (-1, 0, 0), "spine1": (0, 1, 0),
    "left_knee": (0, -1, 0), "right_knee": (0, -1, 0), "spine2": (0, 1, 0), "left_ankle": (0, -1, 0),
    "right_ankle": (0, -1, 0), "spine3": (0, 1, 0), "left_foot": (0, 0, 1), "right_foot": (0, 0, 1),
    "neck": (0, 1, 0), "left_collar": (1, 0, 0), "right_collar": (-1, 0, 0), "head": (0, 0, 1),
    "left_shoulder": (0, -1, 0), "right_shoulder": (0, -1, 0), "left_elbow": (0, -1, 0),
    "right_elbow": (0, -1, 0), "left_wrist": (0, -1, 0), "right_wrist": (0, -1, 0),
}
_SMPL_LR = (
    ("left_hip", "right_hip"), ("left_knee", "right_knee"), ("left_ankle", "right_ankle"),
    ("left_foot", "right_foot"), ("left_collar", "right_collar"), ("left_shoulder", "right_shoulder"),
    ("left_elbow", "right_elbow"), ("left_wrist", "right_wrist"),
)

SMPL_22 = Skeleton(
    name="smpl22",
    joint_names=_SMPL_NAMES,
    parents=_parents(_SMPL_NAMES, _SMPL_PARENT),
    left_right=_SMPL_LR,
    rest_directions=tuple(_SMPL_REST[n] for n in _SMPL_NAMES),
    chains=(
        ("pelvis", "right_hip", "right_knee", "right_ankle", "right_foot"),
        ("pelvis", "left_hip", "left_knee", "left_ankle", "left_foot"),
        ("pelvis", "spine1", "spine2", "spine3", "neck", "head"),
        ("spine3", "right_collar", "right_shoulder", "right_elbow", "right_wrist"),
        ("spine3", "left_collar", "left_shoulder", "left_elbow", "left_wrist"),
    ),
    feet_left=("left_ankle", "left_foot"),
    feet_right=("right_ankle", "right_foot"),
    facing=("right_hip", "left_hip", "right_shoulder", "left_shoulder"),
)

# --- LAFAN-22 (Ubisoft LAFAN1 BVH joint names), same tree as SMPL-22 up to order --------------------------------

_LAFAN_TO_SMPL = {
    "Hips": "pelvis", "LeftUpLeg": "left_hip", "LeftLeg": "left_knee", "LeftFoot": "left_ankle",
    "LeftToe": "left_foot", "RightUpLeg": "right_hip", "RightLeg": "right_knee", "RightFoot": "right_ankle",
    "RightToe": "right_foot", "Spine": "spine1", "Spine1": "spine2", "Spine2": "spine3", "Neck": "neck",
    "Head": "head", "LeftShoulder": "left_collar", "LeftArm": "left_shoulder", "LeftForeArm": "left_elbow",
    "LeftHand": "left_wrist", "RightShoulder": "right_collar", "RightArm": "right_shoulder",
    "RightForeArm": "right_elbow", "RightHand": "right_wrist",
}
_LAFAN_NAMES = tuple(_LAFAN_TO_SMPL)
_SMPL_TO_LAFAN = {v: k for k, v in _LAFAN_TO_SMPL.items()}
_LAFAN_PARENT = {
    n: None if _SMPL_PARENT[_LAFAN_TO_SMPL[n]] is None else _SMPL_TO_LAFAN[_SMPL_PARENT[_LAFAN_TO_SMPL[n]]]
    for n in _LAFAN_NAMES
}

LAFAN_22 = Skeleton(
    name="lafan22",
    joint_names=_LAFAN_NAMES,
    parents=_parents(_LAFAN_NAMES, _LAFAN_PARENT),
    left_right=tuple((_SMPL_TO_LAFAN[a], _SMPL_TO_LAFAN[b]) for a, b in _SMPL_LR),
    rest_directions=tuple(_SMPL_REST[_LAFAN_TO_SMPL[n]] for n in _LAFAN_NAMES),
    chains=tuple(tuple(_SMPL_TO_LAFAN[n] for n in chain) for chain in SMPL_22.chains or ()),
    feet_left=("LeftFoot", "LeftToe"),
    feet_right=("RightFoot", "RightToe"),
    facing=("RightUpLeg", "LeftUpLeg", "RightArm", "LeftArm"),
)

# --- Human3.6M 17 joints (the order used by common 3D pose benchmarks) ---------------------------------------------

_H36M_NAMES = (
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "spine", "thorax",
    "neck_nose", "head_top", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
    "right_wrist",
)
H36M_17 = Skeleton(
    name="h36m17",
    joint_names=_H36M_NAMES,
    parents=_parents(_H36M_NAMES, {
        "pelvis": None, "right_hip": "pelvis", "right_knee": "right_hip", "right_ankle": "right_knee",
        "left_hip": "pelvis", "left_knee": "left_hip", "left_ankle": "left_knee", "spine": "pelvis",
        "thorax": "spine", "neck_nose": "thorax", "head_top": "neck_nose", "left_shoulder": "thorax",
        "left_elbow": "left_shoulder", "left_wrist": "left_elbow", "right_shoulder": "thorax",
        "right_elbow": "right_shoulder", "right_wrist": "right_elbow",
    }),
    left_right=(
        ("left_hip", "right_hip"), ("left_knee", "right_knee"), ("left_ankle", "right_ankle"),
        ("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"), ("left_wrist", "right_wrist"),
    ),
)

# --- COCO-17 (MS COCO keypoints); the tree is a drawing tree rooted at the nose -------------------------------------

_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)
COCO_17 = Skeleton(
    name="coco17",
    joint_names=_COCO_NAMES,
    parents=_parents(_COCO_NAMES, {
        "nose": None, "left_eye": "nose", "right_eye": "nose", "left_ear": "left_eye", "right_ear": "right_eye",
        "left_shoulder": "nose", "right_shoulder": "nose", "left_elbow": "left_shoulder",
        "right_elbow": "right_shoulder", "left_wrist": "left_elbow", "right_wrist": "right_elbow",
        "left_hip": "left_shoulder", "right_hip": "right_shoulder", "left_knee": "left_hip",
        "right_knee": "right_hip", "left_ankle": "left_knee", "right_ankle": "right_knee",
    }),
    left_right=(
        ("left_eye", "right_eye"), ("left_ear", "right_ear"), ("left_shoulder", "right_shoulder"),
        ("left_elbow", "right_elbow"), ("left_wrist", "right_wrist"), ("left_hip", "right_hip"),
        ("left_knee", "right_knee"), ("left_ankle", "right_ankle"),
    ),
)

# --- MediaPipe BlazePose 33 landmarks; drawing tree rooted at the nose -----------------------------------------------

_BLAZE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
_BLAZE_PARENT: dict[str, str | None] = {"nose": None}
for _side in ("left", "right"):
    _BLAZE_PARENT.update({
        f"{_side}_eye_inner": "nose", f"{_side}_eye": f"{_side}_eye_inner", f"{_side}_eye_outer": f"{_side}_eye",
        f"{_side}_ear": f"{_side}_eye_outer", f"mouth_{_side}": "nose", f"{_side}_shoulder": "nose",
        f"{_side}_elbow": f"{_side}_shoulder", f"{_side}_wrist": f"{_side}_elbow", f"{_side}_pinky": f"{_side}_wrist",
        f"{_side}_index": f"{_side}_wrist", f"{_side}_thumb": f"{_side}_wrist", f"{_side}_hip": f"{_side}_shoulder",
        f"{_side}_knee": f"{_side}_hip", f"{_side}_ankle": f"{_side}_knee", f"{_side}_heel": f"{_side}_ankle",
        f"{_side}_foot_index": f"{_side}_ankle",
    })
BLAZEPOSE_33 = Skeleton(
    name="blazepose33",
    joint_names=_BLAZE_NAMES,
    parents=_parents(_BLAZE_NAMES, _BLAZE_PARENT),
    left_right=tuple(
        (n, n.replace("left", "right")) for n in _BLAZE_NAMES if n.startswith("left") or n == "mouth_left"
    ),
)

# --- OpenPose BODY_25 (its output order); drawing tree rooted at the nose -------------------------------------------

_BODY25_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye",
    "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe",
    "right_small_toe", "right_heel",
)
_BODY25_PARENT: dict[str, str | None] = {"nose": None, "neck": "nose", "mid_hip": "neck"}
for _side in ("left", "right"):
    _BODY25_PARENT.update({
        f"{_side}_shoulder": "neck", f"{_side}_elbow": f"{_side}_shoulder", f"{_side}_wrist": f"{_side}_elbow",
        f"{_side}_hip": "mid_hip", f"{_side}_knee": f"{_side}_hip", f"{_side}_ankle": f"{_side}_knee",
        f"{_side}_eye": "nose", f"{_side}_ear": f"{_side}_eye", f"{_side}_big_toe": f"{_side}_ankle",
        f"{_side}_small_toe": f"{_side}_ankle", f"{_side}_heel": f"{_side}_ankle",
    })
OPENPOSE_25 = Skeleton(
    name="body25",
    joint_names=_BODY25_NAMES,
    parents=_parents(_BODY25_NAMES, _BODY25_PARENT),
    left_right=tuple((n, n.replace("left", "right")) for n in _BODY25_NAMES if n.startswith("left")),
)

SKELETONS: dict[str, Skeleton] = {
    s.name: s for s in (SMPL_22, LAFAN_22, H36M_17, COCO_17, BLAZEPOSE_33, OPENPOSE_25)
}


def get_skeleton(name: str) -> Skeleton:
    """Skeleton by its stored name; ``KeyError`` listing the known names otherwise."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; known: {sorted(SKELETONS)}") from None


# --- joint maps ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JointMap:
    """Where each joint of ``target`` comes from in ``source``.

    Attributes:
        sources: one tuple of source joint indices per target joint: one index = direct, several = their mean
            (derived), none = missing.
    """

    source: Skeleton
    target: Skeleton
    sources: tuple[tuple[int, ...], ...]

    @property
    def present(self) -> np.ndarray:
        """(J_target,) bool: the source provides this joint (directly or derived)."""
        return np.array([len(s) > 0 for s in self.sources])

    @property
    def derived(self) -> np.ndarray:
        """(J_target,) bool: the joint is the mean of several source joints."""
        return np.array([len(s) > 1 for s in self.sources])

    def matrix(self) -> np.ndarray:
        """(J_target, J_source) float64 averaging matrix; rows of missing joints are zero."""
        m = np.zeros((self.target.num_joints, self.source.num_joints))
        for j, src in enumerate(self.sources):
            for i in src:
                m[j, i] = 1.0 / len(src)
        return m

    def apply(self, values: np.ndarray, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Map joint values ``(..., J_source, C)`` to ``(..., J_target, C)``.

        Returns the mapped values (missing joints set to ``fill``) and the ``(J_target,)`` present mask.
        """
        values = np.asarray(values)
        if values.shape[-2] != self.source.num_joints:
            raise ValueError(
                f"expected {self.source.num_joints} joints of skeleton {self.source.name}, got shape {values.shape}"
            )
        out = np.einsum("ts,...sc->...tc", self.matrix(), values.astype(np.float64)).astype(values.dtype)
        out[..., ~self.present, :] = fill
        return out, self.present


_Entry = str | tuple[str, ...] | None

# Each table: target joint name -> source joint name (direct), tuple of names (mean, derived) or None (missing).
# Approximate anatomical correspondences are direct only where the joints sit at the same place on the body.
_MAP_TABLES: dict[tuple[str, str], dict[str, _Entry]] = {
    ("lafan22", "smpl22"): {v: k for k, v in _LAFAN_TO_SMPL.items()},
    ("smpl22", "lafan22"): dict(_LAFAN_TO_SMPL),
    ("h36m17", "smpl22"): {
        "pelvis": "pelvis", "left_hip": "left_hip", "right_hip": "right_hip", "left_knee": "left_knee",
        "right_knee": "right_knee", "left_ankle": "left_ankle", "right_ankle": "right_ankle", "spine1": None,
        "spine2": "spine", "spine3": None, "left_foot": None, "right_foot": None, "neck": "thorax",
        "left_collar": None, "right_collar": None, "head": None, "left_shoulder": "left_shoulder",
        "right_shoulder": "right_shoulder", "left_elbow": "left_elbow", "right_elbow": "right_elbow",
        "left_wrist": "left_wrist", "right_wrist": "right_wrist",
    },
    ("smpl22", "h36m17"): {
        "pelvis": "pelvis", "right_hip": "right_hip", "right_knee": "right_knee", "right_ankle": "right_ankle",
        "left_hip": "left_hip", "left_knee": "left_knee", "left_ankle": "left_ankle", "spine": "spine2",
        "thorax": "neck", "neck_nose": None, "head_top": None, "left_shoulder": "left_shoulder",
        "left_elbow": "left_elbow", "left_wrist": "left_wrist", "right_shoulder": "right_shoulder",
        "right_elbow": "right_elbow", "right_wrist": "right_wrist",
    },
    ("coco17", "smpl22"): {
        "pelvis": ("left_hip", "right_hip"), "left_hip": "left_hip", "right_hip": "right_hip", "spine1": None,
        "left_knee": "left_knee", "right_knee": "right_knee", "spine2": None, "left_ankle": "left_ankle",
        "right_ankle": "right_ankle", "spine3": None, "left_foot": None, "right_foot": None,
        "neck": ("left_shoulder", "right_shoulder"), "left_collar": None, "right_collar": None,
        "head": ("left_ear", "right_ear"), "left_shoulder": "left_shoulder", "right_shoulder": "right_shoulder",
        "left_elbow": "left_elbow", "right_elbow": "right_elbow", "left_wrist": "left_wrist",
        "right_wrist": "right_wrist",
    },
    ("smpl22", "coco17"): {
        "nose": None, "left_eye": None, "right_eye": None, "left_ear": None, "right_ear": None,
        "left_shoulder": "left_shoulder", "right_shoulder": "right_shoulder", "left_elbow": "left_elbow",
        "right_elbow": "right_elbow", "left_wrist": "left_wrist", "right_wrist": "right_wrist",
        "left_hip": "left_hip", "right_hip": "right_hip", "left_knee": "left_knee", "right_knee": "right_knee",
        "left_ankle": "left_ankle", "right_ankle": "right_ankle",
    },
    ("blazepose33", "smpl22"): {
        "pelvis": ("left_hip", "right_hip"), "left_hip": "left_hip", "right_hip": "right_hip", "spine1": None,
        "left_knee": "left_knee", "right_knee": "right_knee", "spine2": None, "left_ankle": "left_ankle",
        "right_ankle": "right_ankle", "spine3": None, "left_foot": "left_foot_index",
        "right_foot": "right_foot_index", "neck": ("left_shoulder", "right_shoulder"), "left_collar": None,
        "right_collar": None, "head": ("left_ear", "right_ear"), "left_shoulder": "left_shoulder",
        "right_shoulder": "right_shoulder", "left_elbow": "left_elbow", "right_elbow": "right_elbow",
        "left_wrist": "left_wrist", "right_wrist": "right_wrist",
    },
    ("blazepose33", "coco17"): {n: n for n in _COCO_NAMES},
    ("body25", "smpl22"): {
        "pelvis": "mid_hip", "left_hip": "left_hip", "right_hip": "right_hip", "spine1": None,
        "left_knee": "left_knee", "right_knee": "right_knee", "spine2": None, "left_ankle": "left_ankle",
        "right_ankle": "right_ankle", "spine3": None, "left_foot": "left_big_toe", "right_foot": "right_big_toe",
        "neck": "neck", "left_collar": None, "right_collar": None, "head": ("left_ear", "right_ear"),
        "left_shoulder": "left_shoulder", "right_shoulder": "right_shoulder", "left_elbow": "left_elbow",
        "right_elbow": "right_elbow", "left_wrist": "left_wrist", "right_wrist": "right_wrist",
    },
    ("body25", "coco17"): {n: n for n in _COCO_NAMES},
    ("smpl22", "body25"): {
        n: {"mid_hip": "pelvis", "neck": "neck", "left_big_toe": "left_foot", "right_big_toe": "right_foot"}.get(
            n, n if n in _SMPL_NAMES else None) for n in _BODY25_NAMES
    },
    ("h36m17", "coco17"): {
        n: (n if n in _H36M_NAMES else None) for n in _COCO_NAMES
    },
}


def joint_map(source: Skeleton, target: Skeleton) -> JointMap:
    """The explicit map from ``source`` to ``target`` (identity when they are the same skeleton).

    Raises ``KeyError`` when no table exists for the pair: maps are written down, never inferred.
    """
    if source.name == target.name:
        return JointMap(source, target, tuple((j,) for j in range(source.num_joints)))
    try:
        table = _MAP_TABLES[(source.name, target.name)]
    except KeyError:
        known = sorted(f"{a}->{b}" for a, b in _MAP_TABLES)
        raise KeyError(f"no joint map from {source.name} to {target.name}; known: {known}") from None
    sources = []
    for name in target.joint_names:
        entry = table[name]
        names = () if entry is None else (entry,) if isinstance(entry, str) else entry
        sources.append(tuple(source.index(n) for n in names))
    return JointMap(source, target, tuple(sources))


# --- derived joints: weighted combinations with lowered confidence ---------------------------------------------------


@dataclass(frozen=True)
class JointDerivation:
    """Every ``target`` joint as a weighted sum of ``source`` joints, with a confidence factor per target joint.

    Unlike :class:`JointMap` (direct, mean or missing), a derivation may place a joint the source lacks by a documented
    rule (for example a spine joint a fixed fraction of the way from the pelvis to the neck). Such joints are guesses
    from the body's proportions, so their ``confidence_scale`` is below 1.

    Attributes:
        weights: ``(J_target, J_source)``; each row sums to 1 (an affine combination, so it commutes with any rigid
            transform of the source points).
        confidence_scale: ``(J_target,)`` in (0, 1]; a target joint's confidence is the least confidence among its
            sources times this factor.
    """

    source: Skeleton
    target: Skeleton
    weights: np.ndarray
    confidence_scale: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """``(..., J_source, C)`` → ``(..., J_target, C)`` float64."""
        points = np.asarray(points, dtype=np.float64)
        if points.shape[-2] != self.source.num_joints:
            raise ValueError(f"expected {self.source.num_joints} joints of skeleton {self.source.name}, "
                             f"got shape {points.shape}")
        return np.einsum("ts,...sc->...tc", self.weights, points)

    def confidence(self, confidence: np.ndarray) -> np.ndarray:
        """``(..., J_source)`` → ``(..., J_target)``: least source confidence times ``confidence_scale``."""
        confidence = np.asarray(confidence, dtype=np.float64)
        used = self.weights != 0  # (J_target, J_source)
        masked = np.where(used, confidence[..., None, :], np.inf)  # (..., J_target, J_source)
        return masked.min(axis=-1) * self.confidence_scale


# Fractions of the pelvis→neck segment at which SMPL's spine joints sit in its rest pose (pelvis→spine1 ≈ 0.11 m,
# →spine2 ≈ 0.25 m, →spine3 ≈ 0.30 m, →neck ≈ 0.51 m for an average body), rounded.
_SPINE_FRACTIONS = {"spine1": 0.2, "spine2": 0.45, "spine3": 0.6}
# A collar joint (SMPL's clavicle root) sits about halfway between the neck and its shoulder.
_COLLAR_FRACTION = 0.5
# Confidence factor of joints placed by these proportion rules (not seen by the detector).
DERIVED_CONFIDENCE = 0.5


def blazepose_to_smpl22() -> JointDerivation:
    """The documented BlazePose-33 → SMPL-22 derivation (used for the detector's own 3D and its keypoints).

    Rules, with ``mid(a, b)`` the midpoint:

    - direct: hips, knees, ankles, shoulders, elbows, wrists (same names); ``left/right_foot`` (SMPL's toe joint) =
      BlazePose's ``left/right_foot_index``;
    - means, confidence kept: ``pelvis = mid(left_hip, right_hip)``; ``neck = mid(left_shoulder, right_shoulder)``;
      ``head = mid(left_ear, right_ear)`` (as in the ``blazepose33 → smpl22`` :func:`joint_map`);
    - proportion rules, confidence × :data:`DERIVED_CONFIDENCE`: ``spine1/2/3 = pelvis + f (neck − pelvis)`` with
      ``f = 0.2 / 0.45 / 0.6``; ``left/right_collar = mid(neck, left/right_shoulder)``.
    """
    return smpl22_derivation(BLAZEPOSE_33)


def smpl22_derivation(source: Skeleton) -> JointDerivation:
    """Every SMPL-22 joint from ``source`` joints: its :func:`joint_map` to SMPL-22 (direct and mean joints, confidence
    kept), plus, for the spine and collar joints the map lacks, the proportion rules of :func:`blazepose_to_smpl22`
    (confidence × :data:`DERIVED_CONFIDENCE`). ``ValueError`` naming the joints when ``source`` cannot place every
    SMPL-22 joint (e.g. COCO-17 has no toes)."""
    target = SMPL_22
    mean_map = joint_map(source, target)
    weights = mean_map.matrix()  # direct and mean joints
    scale = np.ones(target.num_joints)
    pelvis, neck = weights[target.index("pelvis")], weights[target.index("neck")]
    for name, fraction in _SPINE_FRACTIONS.items():
        if not mean_map.present[target.index(name)]:
            weights[target.index(name)] = (1 - fraction) * pelvis + fraction * neck
            scale[target.index(name)] = DERIVED_CONFIDENCE
    for side in ("left", "right"):
        if not mean_map.present[target.index(f"{side}_collar")]:
            shoulder = weights[target.index(f"{side}_shoulder")]
            weights[target.index(f"{side}_collar")] = (1 - _COLLAR_FRACTION) * neck + _COLLAR_FRACTION * shoulder
            scale[target.index(f"{side}_collar")] = DERIVED_CONFIDENCE
    missing = [name for name, row in zip(target.joint_names, weights) if not np.isclose(row.sum(), 1.0)]
    if missing:
        raise ValueError(f"{source.name} keypoints cannot place SMPL-22 joints {missing}")
    return JointDerivation(source, target, weights, scale)
