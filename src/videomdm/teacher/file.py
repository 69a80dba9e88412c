"""The ``file`` teacher: per-clip 3D arrays made by any external lifter, stored in one ``.npz``
(:class:`TeacherFile`, :func:`load_teacher_file`)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..camera import camera_to_world
from ..data.errors import DataError
from ..skeleton import SMPL_22, Skeleton, get_skeleton, joint_map
from .arrays import on_arrays, per_frame_extrinsics

if TYPE_CHECKING:  # pragma: no cover
    from ..data.clip import Clip

__all__ = ["TeacherFile", "load_teacher_file"]


class TeacherFile:
    """Per-clip 3D arrays from an external lifter, stored in one ``.npz``.

    The file holds one array per clip name, ``(T, J_s, 3)`` metres, and optionally ``__frame__`` (``"world"``,
    the default, or ``"camera"``: OpenCV camera frame of the clip's camera) and ``__skeleton__`` (the arrays'
    skeleton name, default ``smpl22``; mapped to SMPL-22 with :func:`videomdm.skeleton.joint_map`, which must
    provide every SMPL-22 joint). Use :func:`load_teacher_file`.
    """

    def __init__(self, path: Path, arrays: dict[str, np.ndarray], frame: str, skeleton: Skeleton,
                 target: Skeleton = SMPL_22) -> None:
        self.path, self.arrays, self.frame, self.skeleton, self.target = Path(path), arrays, frame, skeleton, target
        self._map = joint_map(skeleton, target)

    @property
    def names(self) -> list[str]:
        return sorted(self.arrays)

    def for_clip(self, clip: "Clip") -> np.ndarray:
        """The clip's teacher, ``(T, J, 3)`` float32 world metres in SMPL-22 order; ``DataError`` naming the file
        and the clip for a missing name, a wrong shape or joint count, non-finite values, a frame-count mismatch
        with the clip's keypoints (or ``gt_3d``), or camera-frame data for a clip without ``R, t``."""
        where = f"{self.path}: clip {clip.name}"
        if clip.name not in self.arrays:
            raise DataError(f"{where}: not in the teacher file")
        data = np.asarray(self.arrays[clip.name])
        if data.ndim != 3 or data.shape[-1] != 3 or data.shape[1] != self.skeleton.num_joints:
            raise DataError(f"{where}: expected (T, {self.skeleton.num_joints}, 3) joints of {self.skeleton.name}, "
                            f"got shape {data.shape}")
        if not np.issubdtype(data.dtype, np.number) or not np.isfinite(data).all():
            raise DataError(f"{where}: teacher has NaN or non-finite values")
        reference = clip.keypoints_2d[0] if clip.keypoints_2d is not None else clip.gt_3d  # (T, ...)
        if reference is not None and len(reference) != len(data):
            raise DataError(f"{where}: teacher has {len(data)} frames but the clip has {len(reference)}")
        joints, _ = self._map.apply(data.astype(np.float64))  # (T, J, 3) SMPL-22
        if self.frame == "camera":
            if clip.R is None or clip.t is None:
                raise DataError(f"{where}: camera-frame teacher but the clip has no extrinsics R, t")
            try:
                R_f, t_f = per_frame_extrinsics(clip.R[0], clip.t[0], len(joints))  # the first view's camera
            except ValueError as err:
                raise DataError(f"{where}: {err}") from None
            joints = on_arrays(camera_to_world, joints, R_f, t_f)
        return joints.astype(np.float32)


def load_teacher_file(path: Path) -> TeacherFile:
    """Open a teacher ``.npz`` (see :class:`TeacherFile`); an unreadable file, an unknown ``__frame__`` or
    ``__skeleton__``, or a skeleton whose map to SMPL-22 misses joints raises ``DataError`` naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise DataError(f"{path}: teacher file not found") from None
    except (OSError, ValueError, zlib.error) as err:
        raise DataError(f"{path}: not a readable .npz teacher file ({err})") from None
    frame = str(arrays.pop("__frame__", np.array("world")))
    skeleton_name = str(arrays.pop("__skeleton__", np.array(SMPL_22.name)))
    if frame not in ("world", "camera"):
        raise DataError(f"{path}: __frame__ must be 'world' or 'camera', got {frame!r}")
    try:
        skeleton = get_skeleton(skeleton_name)
        mapping = joint_map(skeleton, SMPL_22)
    except KeyError as err:
        raise DataError(f"{path}: {err.args[0]}") from None
    if not mapping.present.all():
        missing = [SMPL_22.joint_names[j] for j in np.flatnonzero(~mapping.present)]
        raise DataError(f"{path}: skeleton {skeleton_name} cannot provide SMPL-22 joints {missing}")
    return TeacherFile(path, arrays, frame, skeleton)
