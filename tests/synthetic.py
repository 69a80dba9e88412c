"""Small synthetic motions for tests: a walking-like SMPL-22 motion made by forward kinematics."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from videomdm.skeleton import SMPL_22

# Bone lengths (m) of an adult, parent→joint, in SMPL-22 order (pelvis has none).
BONE_LENGTHS = np.array([0.0, 0.10, 0.10, 0.11, 0.40, 0.40, 0.13, 0.42, 0.42, 0.06, 0.14, 0.14, 0.21, 0.13, 0.13,
                         0.10, 0.10, 0.10, 0.27, 0.27, 0.25, 0.25])


def walk(num_frames: int = 60, fps: float = 20.0, seed: int = 0, speed: float = 1.2, turn: float = 0.3) -> np.ndarray:
    """(T, 22, 3) float32 metres, y up: legs and arms swing, the root moves forward and turns slowly."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / fps
    freq = 1.0 + 0.2 * rng.random()
    phase = 2 * np.pi * freq * t + rng.random() * 2 * np.pi
    offsets = SMPL_22.rest_directions_array() * BONE_LENGTHS[:, None]  # (J, 3)
    swing = {  # joint → (amplitude rad, phase shift) of a rotation about x
        "left_hip": (0.5, 0.0), "right_hip": (0.5, np.pi), "left_knee": (0.6, 0.5), "right_knee": (0.6, np.pi + 0.5),
        "left_shoulder": (0.4, np.pi), "right_shoulder": (0.4, 0.0), "left_elbow": (0.3, np.pi),
        "right_elbow": (0.3, 0.0), "spine1": (0.05, 0.0),
    }
    local = np.tile(np.eye(3), (num_frames, SMPL_22.num_joints, 1, 1))
    for name, (amp, shift) in swing.items():
        angle = amp * np.sin(phase + shift) + 0.05 * rng.standard_normal()
        local[:, SMPL_22.index(name)] = Rotation.from_euler("x", angle[:, None]).as_matrix()
    heading = turn * t + rng.random() * 2 * np.pi
    root_rot = Rotation.from_euler("y", heading[:, None]).as_matrix()  # (T, 3, 3)
    forward = np.stack([np.sin(heading), np.zeros_like(t), np.cos(heading)], -1)
    root_pos = np.cumsum(forward * speed / fps, axis=0) + np.array([rng.normal(), 0.95, rng.normal()])
    root_pos[:, 1] += 0.02 * np.sin(2 * phase)
    glob = np.zeros_like(local)
    pos = np.zeros((num_frames, SMPL_22.num_joints, 3))
    for j, p in enumerate(SMPL_22.parents):
        if p < 0:
            glob[:, j] = root_rot @ local[:, j]
            pos[:, j] = root_pos
        else:
            glob[:, j] = glob[:, p] @ local[:, j]
            pos[:, j] = pos[:, p] + np.einsum("tij,j->ti", glob[:, p], offsets[j])
    return pos.astype(np.float32)
