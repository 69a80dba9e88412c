"""The ``mediapipe`` teacher: a 2D detector's own root-relative 3D (BlazePose's ``pose_world_landmarks``), grounded
on the detector's keypoints in the clip's camera and mapped to SMPL-22."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..camera import pixels_to_normalized
from ..data.errors import DataError
from ..skeleton import blazepose_to_smpl22
from .arrays import fill_gaps, on_arrays
from .grounding import ground_to_world

if TYPE_CHECKING:  # pragma: no cover
    from ..data.clip import Clip

__all__ = ["detector_teacher"]


def detector_teacher(clip: "Clip", detector_3d: np.ndarray | None = None) -> np.ndarray:
    """The teacher from a detector's own root-relative 3D (BlazePose's ``pose_world_landmarks``): ``(T, 22, 3)`` world.

    Frames without a detection (short gaps inside a clip) get the detector's 3D interpolated from their neighbours
    (:func:`~videomdm.teacher.arrays.fill_gaps`); :func:`ground_to_world` then puts the 33 joints on their own keypoint rays
    (confidence-weighted least squares) in the world of the clip's camera, and they are mapped to SMPL-22
    (:func:`videomdm.skeleton.blazepose_to_smpl22`; an affine combination, so mapping after grounding equals mapping
    before).

    Args:
        clip: its ``keypoints_2d (T, 33, 2)`` pixels (BlazePose-33), ``confidence (T, 33)``, ``K``, ``R``, ``t``.
        detector_3d: ``(T, 33, 3)`` root-relative metres, camera axes; NaN in frames without a detection.
    """
    derivation = blazepose_to_smpl22()
    if detector_3d is None or clip.keypoint_skeleton != derivation.source.name:
        raise DataError(f"clip {clip.name}: the detector teacher needs BlazePose-33 3D from the detector")
    rel_cam = np.asarray(detector_3d, dtype=np.float64)
    keypoints, confidence = clip.keypoints_2d[0], clip.confidence[0]  # the detector's view (T, 33, 2), (T, 33)
    valid = np.isfinite(rel_cam).all(axis=(1, 2)) & (confidence.sum(axis=1) > 0)  # (T,)
    if not valid.any():
        raise DataError(f"clip {clip.name}: no frame with the detector's 3D")
    flat = torch.from_numpy(rel_cam.reshape(1, len(rel_cam), -1))  # (1, T, 33·3)
    rel_cam = fill_gaps(flat, torch.from_numpy(valid)[None])[0].numpy().reshape(rel_cam.shape)
    xy = on_arrays(pixels_to_normalized, keypoints, clip.K[0])  # (T, 33, 2)
    world = ground_to_world(rel_cam, xy, confidence, clip.R[0], clip.t[0], derivation.source)  # (T, 33, 3)
    return derivation.apply(world)
