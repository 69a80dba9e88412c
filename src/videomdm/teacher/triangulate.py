"""The ``triangulate`` teacher: a calibrated rig's keypoints triangulated into 3D, mapped to SMPL-22 and grounded.

With two or more synchronized views the depth that one view leaves free is fixed by geometry, so no learned lifter is
needed: every detector joint is triangulated by the robust weighted DLT of :func:`videomdm.triangulation.triangulate`
(views that disagree with the others, such as a view that swapped left and right, are left out per joint and frame),
the detector skeleton is mapped to SMPL-22 (:func:`videomdm.skeleton.smpl22_derivation`: direct joints, means and
the documented proportion rules for joints a detector lacks), joints no two views agreed on are interpolated in
time from their neighbours (:func:`~videomdm.teacher.arrays.fill_gaps`), the detector's per-frame jitter is
smoothed by a Gaussian filter over time (``smooth_frames``: each frame is triangulated alone, so it carries that
frame's detector noise; on the LAFAN1 virtual rigs σ = 0.05 s removes about 40 % of the error), and optionally the
floor is levelled (``level_floor``, as :func:`~videomdm.teacher.grounding.ground_to_world`: for a rig whose world
origin is not on the floor). Its per-view reprojection error is reported.

:func:`triangulate_teacher` works on plain arrays; :class:`TriangulatingTeacher` is the :class:`~.factory.Teacher`
for multi-view clips (``DESIGN.md``, Views: ``keypoints_2d (V, T, J2, 2)``, ``confidence (V, T, J2)``,
``K (V, 3, 3)``, static ``R (V, 3, 3)``, ``t (V, 3)`` per view), whose keypoints are already undistorted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from ..data.calibration import undistort_points
from ..data.errors import DataError
from ..representation import floor_from_feet
from ..skeleton import SMPL_22, get_skeleton, smpl22_derivation
from ..triangulation import Triangulation, triangulate
from .arrays import fill_gaps

if TYPE_CHECKING:  # pragma: no cover
    from ..data.clip import Clip

__all__ = ["TriangulatedTeacher", "triangulate_teacher", "TriangulatingTeacher"]


@dataclass
class TriangulatedTeacher:
    """The result of :func:`triangulate_teacher`.

    Attributes:
        joints: ``(T, 22, 3)`` float32 SMPL-22 world joints, metres, y up.
        triangulation: the detector joints' :class:`~videomdm.triangulation.Triangulation` (points ``(T, J2, 3)``,
            views used ``(V, T, J2)``, reprojection errors ``(V, T, J2)`` px).
        filled: ``(T, 22)`` bool, joints interpolated in time (no two views agreed in that frame).
        floor_shift: metres added to y by ``level_floor`` (0 without it).
    """

    joints: np.ndarray
    triangulation: Triangulation
    filled: np.ndarray
    floor_shift: float = 0.0

    @property
    def per_view_median_px(self) -> np.ndarray:
        """``(V,)`` median reprojection error (pixels) of each view over the points it was used for."""
        return self.triangulation.per_view_median_px()

    @property
    def used_median_px(self) -> float:
        """Median reprojection error (pixels) over every (view, frame, joint) used."""
        errors = self.triangulation.used_errors()
        return float(np.nanmedian(errors)) if np.isfinite(errors).any() else float("nan")

    def report(self, names: Sequence[str] | None = None) -> dict[str, float]:
        """One line of numbers for logs and dataset provenance: median px per view, used fraction, filled fraction."""
        per_view = self.per_view_median_px
        names = list(names) if names is not None else [f"view{v}" for v in range(len(per_view))]
        out = {f"median_px_{n}": round(float(e), 3) for n, e in zip(names, per_view)}
        out["used_median_px"] = round(self.used_median_px, 3)
        out["views_used_mean"] = round(float(self.triangulation.used.sum(0).mean()), 3)
        out["filled_fraction"] = round(float(self.filled.mean()), 4)
        return out


def triangulate_teacher(keypoints: np.ndarray, confidence: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, *,
                        keypoint_skeleton: str, distortion: Sequence[np.ndarray] | None = None,
                        threshold_px: float = 20.0, min_confidence: float = 0.1, smooth_frames: float = 0.0,
                        level_floor: bool = False, where: str = "clip") -> TriangulatedTeacher:
    """SMPL-22 world joints from V synchronized calibrated views (module docstring).

    Args:
        keypoints: ``(V, T, J2, 2)`` pixels in ``keypoint_skeleton``'s order, as the detector saw them.
        confidence: ``(V, T, J2)`` in [0, 1]; 0 = missing.
        K: ``(V, 3, 3)``. R: ``(V, 3, 3)``. t: ``(V, 3)`` metres, world→camera, project frame (y up).
        keypoint_skeleton: the detector skeleton's name (``blazepose33``, ``body25``, ``smpl22``, ...); it must place
            every SMPL-22 joint (:func:`~videomdm.skeleton.smpl22_derivation`).
        distortion: per view, OpenCV coefficients (a :class:`~videomdm.data.calibration.Rig`'s); the keypoints are
            undistorted first. None when they are undistorted already.
        threshold_px, min_confidence: as :func:`videomdm.triangulation.triangulate`.
        smooth_frames: standard deviation, in frames, of the Gaussian filter over time applied to the SMPL-22 joints
            (``scipy.ndimage.gaussian_filter1d``, edges repeated); 0 = none.
        level_floor: shift y so that :func:`~videomdm.representation.floor_from_feet` is 0.
        where: the clip's name, for errors.

    Returns:
        :class:`TriangulatedTeacher`. DataError when there are fewer than two views, the skeleton cannot be mapped,
        or some SMPL-22 joint is never triangulated.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    skeleton = get_skeleton(keypoint_skeleton)
    if keypoints.ndim != 4 or keypoints.shape[2:] != (skeleton.num_joints, 2):
        raise DataError(f"{where}: the triangulating teacher needs keypoints (V, T, {skeleton.num_joints}, 2) of "
                        f"{skeleton.name}, got {keypoints.shape}")
    if len(keypoints) < 2:
        raise DataError(f"{where}: the triangulating teacher needs at least 2 views, got {len(keypoints)}")
    try:
        derivation = smpl22_derivation(skeleton)
    except (KeyError, ValueError) as err:
        raise DataError(f"{where}: {err}") from None
    if distortion is not None:
        if len(distortion) != len(keypoints):
            raise DataError(f"{where}: {len(distortion)} distortion vectors for {len(keypoints)} views")
        keypoints = np.stack([undistort_points(kp, k, d) for kp, k, d in zip(keypoints, np.asarray(K), distortion)])
        confidence = np.where(np.isfinite(keypoints).all(-1), confidence, 0.0)
    try:
        result = triangulate(keypoints, confidence, K, R, t, threshold_px=threshold_px, min_confidence=min_confidence)
    except ValueError as err:
        raise DataError(f"{where}: {err}") from None
    valid_src = result.valid  # (T, J2)
    points = np.nan_to_num(result.points)
    joints = derivation.apply(points)  # (T, 22, 3)
    needs = derivation.weights != 0  # (22, J2)
    valid = ~((~valid_src).astype(np.float64) @ needs.T.astype(np.float64) > 0)  # (T, 22): every source valid
    never = [SMPL_22.joint_names[j] for j in np.nonzero(~valid.any(axis=0))[0]]
    if never:
        raise DataError(f"{where}: no two views agreed on SMPL-22 joints {never} in any frame (threshold "
                        f"{threshold_px} px); check the calibration, the synchronization and the keypoints")
    by_joint = torch.from_numpy(joints.transpose(1, 0, 2).copy())  # (22, T, 3): joints as the batch
    filled_joints = fill_gaps(by_joint, torch.from_numpy(valid.T.copy())).numpy().transpose(1, 0, 2)
    if smooth_frames > 0:
        filled_joints = gaussian_filter1d(filled_joints, smooth_frames, axis=0, mode="nearest")
    shift = 0.0
    if level_floor:
        shift = -floor_from_feet(filled_joints, SMPL_22)
        filled_joints[..., 1] += shift
    return TriangulatedTeacher(joints=filled_joints.astype(np.float32), triangulation=result, filled=~valid,
                               floor_shift=float(shift))


class TriangulatingTeacher:
    """The ``triangulate`` :class:`~.factory.Teacher`: ``teacher(clip) → (T, 22, 3)`` from a multi-view clip.

    Reads ``keypoints_2d (V, T, J2, 2)`` (undistorted pixels), ``confidence (V, T, J2)``, ``keypoint_skeleton``,
    ``K (V, 3, 3)``, ``R (V, 3, 3)``, ``t (V, 3)``, ``fps`` and ``name``; never ``gt_3d``. ``smooth_seconds`` is the
    Gaussian filter's σ in seconds (``smooth_frames = smooth_seconds · fps``). Each clip's
    :meth:`TriangulatedTeacher.report` is kept in :attr:`reports` (clip name → numbers) for the dataset's provenance,
    and the views each keypoint was triangulated from in :attr:`views_used` (clip name → ``(V, T, J2)`` bool).
    """

    def __init__(self, *, threshold_px: float = 20.0, min_confidence: float = 0.1, smooth_seconds: float = 0.05,
                 level_floor: bool = False):
        self.threshold_px = threshold_px
        self.smooth_seconds = smooth_seconds
        self.min_confidence = min_confidence
        self.level_floor = level_floor
        self.reports: dict[str, dict[str, float]] = {}
        self.views_used: dict[str, np.ndarray] = {}

    def __call__(self, clip: "Clip", detector_3d: np.ndarray | None = None) -> np.ndarray:
        fields = (clip.keypoints_2d, clip.confidence, clip.K, clip.R, clip.t)
        if any(f is None for f in fields):
            raise DataError(f"clip {clip.name}: the triangulating teacher needs keypoints_2d, confidence, K, R and t")
        keypoints = np.asarray(clip.keypoints_2d)
        if keypoints.ndim != 4:
            raise DataError(f"clip {clip.name}: the triangulating teacher needs a multi-view clip (keypoints_2d "
                            f"(V, T, J, 2) with V >= 2), got keypoints of shape {keypoints.shape}")
        V = len(keypoints)
        K, R, t = (np.asarray(a, dtype=np.float64) for a in (clip.K, clip.R, clip.t))
        if K.shape != (V, 3, 3) or R.shape != (V, 3, 3) or t.shape != (V, 3):
            raise DataError(f"clip {clip.name}: {V} views need static cameras K ({V}, 3, 3), R ({V}, 3, 3), t ({V}, "
                            f"3); got {K.shape}, {R.shape}, {t.shape}")
        result = triangulate_teacher(keypoints, clip.confidence, K, R, t,
                                     keypoint_skeleton=clip.keypoint_skeleton or SMPL_22.name,
                                     threshold_px=self.threshold_px, min_confidence=self.min_confidence,
                                     smooth_frames=self.smooth_seconds * float(clip.fps),
                                     level_floor=self.level_floor, where=f"clip {clip.name}")
        self.reports[clip.name] = result.report()
        self.views_used[clip.name] = result.triangulation.used
        return result.joints
