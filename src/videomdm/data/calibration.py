"""Calibrated camera rigs: one :class:`Rig` of :class:`CameraCalibration` s, read from the files people have.

Formats (:func:`read_rig` picks one from the file name and content; every reader raises :class:`DataError` naming
the file and the problem):

- ``toml``: Pose2Sim / OpenCV TOML, one table per camera (``[cam_01]``) with ``size = [w, h]``, ``matrix`` (3×3),
  ``distortions`` (OpenCV order), ``rotation`` (Rodrigues vector, world→camera), ``translation``; tables without a
  ``matrix`` (``[metadata]``, ``[capture_volume]``, boards) are skipped; ``fisheye = true`` is refused.
- ``opencv``: OpenCV FileStorage YAML or XML (``cv2.FileStorage``, from ``videomdm[video]``), one camera per file
  (``camera_matrix`` or ``K``, ``dist_coeffs`` / ``distortion_coefficients`` / ``D``, ``R`` (3×3) or ``rvec``,
  ``T`` / ``tvec``, ``image_width`` + ``image_height`` or ``image_size``) or several: a ``names`` sequence and the
  same keys suffixed ``_<name>`` (``K_cam1``, ``dist_cam1``, ``R_cam1`` or ``Rot_cam1``, ``T_cam1``).
- ``qualisys``: a Qualisys ``.qca.txt`` export (XML). Per camera: ``transform`` holds the camera's position
  ``x, y, z`` (mm) and a rotation ``r11 … r33`` such that camera-frame points are ``M (X − C)`` in Qualisys' camera
  axes (x right, y up, z backward); ``intrinsic`` holds ``focalLengthU/V`` and ``centerPointU/V`` in sub-pixels
  (64 per pixel) on the full sensor, radial ``radialDistortion1..3`` and tangential ``tangentalDistortion1..2``
  coefficients of the OpenCV model; ``fov_video`` the image window on the sensor (pixels, inclusive). The world is
  z up, millimetres. Only cameras with ``active="1"`` are kept, in file order.
- ``json``: the project's own file (:func:`write_rig`), already in the project's frame.

**Project frame** (``DESIGN.md``): every rig this module returns is in metres, world y up, with OpenCV camera axes
(x right, y down, z forward) and ``X_c = R X_w + t``. A file's units and up axis are converted on reading
(:func:`to_project_frame`): the Qualisys format states them (mm, z up); for TOML and OpenCV files, whose world is
whatever the calibration board defined, ``unit="auto"`` reads millimetres when the cameras' median distance from the
world origin exceeds :data:`MM_THRESHOLD` and metres otherwise, and ``up="auto"`` takes the world axis closest to
the cameras' mean image-up direction (cameras are mounted upright) and refuses a rig where no axis is clearly
closest. What was assumed and converted is kept in :attr:`Rig.notes`.

Lens distortion is OpenCV's model (:func:`distort_normalized`); keypoints are undistorted before triangulation
(:func:`undistort_points`) and overlays are drawn distorted (:func:`distort_points`). Both are numpy, so a rig needs
no OpenCV except to read FileStorage files.
"""

from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from .errors import DataError

__all__ = ["CameraCalibration", "Rig", "RIG_FORMATS", "UP_AXES", "MM_THRESHOLD", "read_rig", "write_rig",
           "read_toml_rig", "read_opencv_rig", "read_qualisys_rig", "read_json_rig", "to_project_frame",
           "distort_normalized", "undistort_normalized", "distort_points", "undistort_points"]

RIG_FORMATS = ("toml", "opencv", "qualisys", "json")
UP_AXES = ("+x", "-x", "+y", "-y", "+z", "-z")
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
# unit="auto": a median camera distance from the world origin above this many file units means millimetres.
MM_THRESHOLD = 300.0
_JSON_FORMAT = "videomdm-rig"
_DISTORTION_SIZES = (0, 4, 5, 8)


@dataclass(frozen=True)
class CameraCalibration:
    """One calibrated camera in the project frame.

    Attributes:
        name: the camera's name in its file (``cam_01``, a serial number, ...).
        K: ``(3, 3)`` intrinsics, pixels.
        R: ``(3, 3)`` world→camera rotation, ``t``: ``(3,)`` metres; ``X_c = R X_w + t`` (OpenCV camera axes).
        distortion: ``(0 | 4 | 5 | 8,)`` OpenCV coefficients ``k1, k2, p1, p2[, k3[, k4, k5, k6]]`` (empty = none).
        image_size: ``(width, height)`` pixels.
    """

    name: str
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    distortion: np.ndarray
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        R = np.asarray(self.R, dtype=np.float64)
        t = np.asarray(self.t, dtype=np.float64).reshape(-1)
        dist = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
        where = f"camera {self.name!r}"
        if K.shape != (3, 3) or R.shape != (3, 3) or t.shape != (3,):
            raise ValueError(f"{where}: K and R must be (3, 3) and t (3,), got {K.shape}, {R.shape}, {t.shape}")
        if not (np.isfinite(K).all() and np.isfinite(R).all() and np.isfinite(t).all() and np.isfinite(dist).all()):
            raise ValueError(f"{where}: calibration values must be finite")
        if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(K[2, 2] - 1) > 1e-9 or np.any(K[2, :2] != 0) or K[1, 0] != 0:
            raise ValueError(f"{where}: K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got "
                             f"{K.tolist()}")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0:
            raise ValueError(f"{where}: R is not a rotation (R Rᵀ = I, det R = +1), got {R.tolist()}")
        if dist.size not in _DISTORTION_SIZES:
            raise ValueError(f"{where}: {dist.size} distortion coefficients; supported are OpenCV's k1, k2, p1, p2"
                             f"[, k3[, k4, k5, k6]] (4, 5 or 8; thin-prism and tilt terms are not)")
        width, height = (int(v) for v in self.image_size)
        if width <= 0 or height <= 0:
            raise ValueError(f"{where}: image size must be positive, got {self.image_size}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "distortion", dist)
        object.__setattr__(self, "image_size", (width, height))

    @property
    def center(self) -> np.ndarray:
        """``(3,)`` camera centre in the world, ``C = −Rᵀ t`` (metres)."""
        return -self.R.T @ self.t


@dataclass(frozen=True)
class Rig:
    """Synchronized calibrated cameras, in the project frame (module docstring).

    Attributes:
        cameras: the cameras, in the file's order (the order of the videos of a take).
        source: the file it was read from ('' when built in code).
        notes: what was assumed or converted on reading (units, up axis), for the dataset's provenance.
    """

    cameras: tuple[CameraCalibration, ...]
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        if not self.cameras:
            raise ValueError(f"{self.source or 'rig'}: no cameras")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.source or 'rig'}: camera names repeat: {names}")

    def __len__(self) -> int:
        return len(self.cameras)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def K(self) -> np.ndarray:
        """``(V, 3, 3)`` intrinsics, pixels."""
        return np.stack([c.K for c in self.cameras])

    @property
    def R(self) -> np.ndarray:
        """``(V, 3, 3)`` world→camera rotations."""
        return np.stack([c.R for c in self.cameras])

    @property
    def t(self) -> np.ndarray:
        """``(V, 3)`` world→camera translations, metres."""
        return np.stack([c.t for c in self.cameras])

    @property
    def centers(self) -> np.ndarray:
        """``(V, 3)`` camera centres in the world, metres."""
        return np.stack([c.center for c in self.cameras])

    def subset(self, indices: Sequence[int]) -> "Rig":
        """The rig of the cameras at ``indices`` (in that order)."""
        return replace(self, cameras=tuple(self.cameras[i] for i in indices))

    def to_dict(self) -> dict[str, Any]:
        """The project's JSON layout (:func:`write_rig`)."""
        return {
            "format": _JSON_FORMAT, "version": 1, "units": "m", "world_up": "+y",
            "camera_axes": "opencv (x right, y down, z forward); X_c = R X_w + t",
            "source": self.source, "notes": list(self.notes),
            "cameras": [{"name": c.name, "image_size": list(c.image_size), "K": c.K.tolist(), "R": c.R.tolist(),
                         "t": c.t.tolist(), "distortion": c.distortion.tolist()} for c in self.cameras],
        }


# --- the project frame ------------------------------------------------------------------------------------------------


def _up_rotation(up: str) -> np.ndarray:
    """``(3, 3)`` proper rotation A taking the world axis ``up`` to +y (``X' = A X``), the smallest such turn."""
    table = {
        "+y": np.eye(3),
        "-y": np.diag([1.0, -1.0, -1.0]),  # 180° about x
        "+z": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),  # −90° about x: (x, y, z) → (x, z, −y)
        "-z": np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),  # +90° about x: (x, y, z) → (x, −z, y)
        "+x": np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]),  # +90° about z: (x, y, z) → (−y, x, z)
        "-x": np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]),  # −90° about z: (x, y, z) → (y, −x, z)
    }
    return table[up]


def estimate_up_axis(R: np.ndarray, where: str = "rig") -> str:
    """The world axis (one of :data:`UP_AXES`) closest to the cameras' mean image-up direction.

    A camera's image-up direction in the world is ``−R[1]`` (its y axis points down in the image). Cameras of a rig
    are mounted roughly upright, so their mean points up; a rig whose mean is not within 45° of one axis raises
    DataError (pass ``up=`` explicitly).
    """
    up = -np.asarray(R)[:, 1, :].mean(axis=0)  # (3,)
    norm = np.linalg.norm(up)
    if norm < 1e-6:
        raise DataError(f"{where}: the cameras' image-up directions cancel out; give the world up axis (up=...)")
    up = up / norm
    axis = int(np.argmax(np.abs(up)))
    if abs(up[axis]) < np.cos(np.radians(45)):
        raise DataError(f"{where}: the cameras' mean up direction {np.round(up, 3).tolist()} is not within 45° of "
                        f"a world axis; give the world up axis (up=one of {list(UP_AXES)})")
    return f"{'+' if up[axis] > 0 else '-'}{'xyz'[axis]}"


def to_project_frame(cameras: Sequence[CameraCalibration], *, unit: str, up: str, source: str = "",
                     notes: Sequence[str] = ()) -> Rig:
    """Cameras in a file's frame (translations in ``unit``, world up axis ``up``) → a :class:`Rig` in the project's.

    Scaling the world by ``s`` (``unit`` → metres) scales ``t`` by ``s``; turning it by ``A`` (``up`` → +y,
    ``X' = A X``) gives ``R' = R Aᵀ``, ``t' = t`` (``camera.transform_camera`` with ``b = 0``, eq. 5), so every
    world point projects to the same pixels before and after. ``unit`` / ``up`` may be ``"auto"`` (module
    docstring); the decision is recorded in the rig's notes.
    """
    where = source or "rig"
    cameras = list(cameras)
    notes = list(notes)
    if unit == "auto":
        distance = float(np.median([np.linalg.norm(c.center) for c in cameras]))
        unit = "mm" if distance > MM_THRESHOLD else "m"
        notes.append(f"units: {unit} (assumed from the cameras' median distance {distance:.4g} from the world origin; "
                     f"pass unit= to override)")
    elif unit in UNITS:
        notes.append(f"units: {unit}")
    else:
        raise ValueError(f"{where}: unit must be 'auto' or one of {list(UNITS)}, got {unit!r}")
    if up == "auto":
        up = estimate_up_axis(np.stack([c.R for c in cameras]), where)
        notes.append(f"world up: {up} (estimated from the cameras' orientation; pass up= to override)")
    elif up in UP_AXES:
        notes.append(f"world up: {up}")
    else:
        raise ValueError(f"{where}: up must be 'auto' or one of {list(UP_AXES)}, got {up!r}")
    scale, A = UNITS[unit], _up_rotation(up)
    if up != "+y" or unit != "m":
        notes.append(f"converted to metres, y up (X_project = {scale:g} · A X_file, A = {A.astype(int).tolist()})")
    converted = [replace(c, R=c.R @ A.T, t=c.t * scale) for c in cameras]
    return Rig(tuple(converted), source=source, notes=tuple(notes))


# --- readers ----------------------------------------------------------------------------------------------------------


def _camera(path: Path, name: str, **values: Any) -> CameraCalibration:
    try:
        return CameraCalibration(name=name, **values)
    except (ValueError, TypeError) as err:
        raise DataError(f"{path}: {err}") from None


def _numbers(path: Path, where: str, value: Any, shape: tuple[int, ...] | None) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {where} must be numbers, got {value!r}") from None
    if shape is not None and array.shape != shape:
        if array.size == int(np.prod(shape)):
            return array.reshape(shape)
        raise DataError(f"{path}: {where} must have shape {shape}, got {array.shape}")
    return array


def read_toml_rig(path: Path, *, unit: str = "auto", up: str = "auto") -> Rig:
    """A Pose2Sim / OpenCV TOML rig (module docstring); ``unit`` and ``up`` as :func:`to_project_frame`."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise DataError(f"{path}: not valid TOML ({err})") from None
    cameras = []
    for key, table in data.items():
        if not isinstance(table, dict) or "matrix" not in table:
            continue
        where = f"[{key}]"
        missing = [k for k in ("size", "matrix", "distortions", "rotation", "translation") if k not in table]
        if missing:
            raise DataError(f"{path}: {where} lacks {', '.join(missing)}")
        if table.get("fisheye", False):
            raise DataError(f"{path}: {where} is a fisheye camera; only OpenCV's pinhole model is supported")
        size = _numbers(path, f"{where} size", table["size"], (2,))
        rotvec = _numbers(path, f"{where} rotation", table["rotation"], None)
        R = _rotation_from(path, f"{where} rotation", rotvec)
        cameras.append(_camera(path, str(table.get("name", key)), K=_numbers(path, f"{where} matrix", table["matrix"],
                                                                           (3, 3)),
                               R=R, t=_numbers(path, f"{where} translation", table["translation"], (3,)),
                               distortion=_numbers(path, f"{where} distortions", table["distortions"], None).ravel(),
                               image_size=(int(round(size[0])), int(round(size[1])))))
    if not cameras:
        raise DataError(f"{path}: no camera tables (a table with size, matrix, distortions, rotation, translation)")
    return _project_rig(path, cameras, unit=unit, up=up, notes=["format: toml"])


def _rotation_from(path: Path, where: str, value: np.ndarray) -> np.ndarray:
    """A Rodrigues vector ``(3,)`` (OpenCV's ``rvec``: axis × angle in radians) or a ``(3, 3)`` matrix → matrix."""
    value = np.asarray(value, dtype=np.float64)
    if value.size == 3:
        return Rotation.from_rotvec(value.reshape(3)).as_matrix()
    if value.size == 9:
        return value.reshape(3, 3)
    raise DataError(f"{path}: {where} must be a Rodrigues vector (3 numbers) or a 3×3 matrix, got shape {value.shape}")


def _project_rig(path: Path, cameras: list[CameraCalibration], *, unit: str, up: str, notes: list[str]) -> Rig:
    try:
        return to_project_frame(cameras, unit=unit, up=up, source=str(path), notes=notes)
    except ValueError as err:
        raise DataError(str(err) if str(path) in str(err) else f"{path}: {err}") from None


_OPENCV_KEYS = {
    "K": ("camera_matrix", "cameraMatrix", "K", "intrinsic_matrix"),
    "dist": ("dist_coeffs", "distortion_coefficients", "distCoeffs", "D", "dist"),
    "R": ("R", "Rot", "rotation_matrix"),
    "rvec": ("rvec", "rotation_vector", "r"),
    "T": ("T", "tvec", "t", "translation"),
}


def _fs_value(node: Any) -> Any:
    if node is None or node.empty():
        return None
    if node.isSeq():
        return [_fs_value(node.at(i)) for i in range(node.size())]
    if node.isString():
        return node.string()
    if node.isInt() or node.isReal():
        return node.real()
    return node.mat()


def read_opencv_rig(path: Path, *, unit: str = "auto", up: str = "auto") -> Rig:
    """An OpenCV FileStorage YAML / XML rig (module docstring); needs OpenCV (``videomdm[video]``)."""
    path = Path(path)
    try:
        import cv2
    except ImportError:
        raise DataError(f"{path}: reading OpenCV FileStorage files needs OpenCV: pip install 'videomdm[video]'") \
            from None
    if not path.is_file():
        raise DataError(f"{path}: does not exist")
    try:
        storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except cv2.error as err:
        raise DataError(f"{path}: not an OpenCV FileStorage file ({str(err).strip().splitlines()[-1]})") from None
    if not storage.isOpened():
        raise DataError(f"{path}: cannot open as an OpenCV FileStorage file")
    try:
        def get(key: str) -> Any:
            return _fs_value(storage.getNode(key))

        names = get("names")
        if names is None:
            cameras = [_opencv_camera(path, path.stem, get, "")]
        else:
            if not isinstance(names, list) or not names:
                raise DataError(f"{path}: 'names' must be a non-empty sequence of camera names")
            cameras = [_opencv_camera(path, str(name), get, f"_{name}") for name in names]
    finally:
        storage.release()
    return _project_rig(path, cameras, unit=unit, up=up, notes=["format: opencv"])


def _opencv_camera(path: Path, name: str, get: Any, suffix: str) -> CameraCalibration:
    def first(kind: str) -> Any:
        for key in _OPENCV_KEYS[kind]:
            value = get(key + suffix)
            if value is not None:
                return value
        return None

    where = f"camera {name!r}"
    K, dist, R, rvec, T = first("K"), first("dist"), first("R"), first("rvec"), first("T")
    if K is None:
        raise DataError(f"{path}: {where} has no intrinsics (one of {[k + suffix for k in _OPENCV_KEYS['K']]})")
    if R is None and rvec is None:
        raise DataError(f"{path}: {where} has no rotation (R{suffix} 3×3 or rvec{suffix})")
    if T is None:
        raise DataError(f"{path}: {where} has no translation (T{suffix} or tvec{suffix})")
    rotation = _rotation_from(path, f"{where} rotation", _numbers(path, f"{where} rotation",
                                                                  R if R is not None else rvec, None))
    size = get("image_size" + suffix)
    if size is None and get("image_width" + suffix) is not None:
        size = [get("image_width" + suffix), get("image_height" + suffix)]
    if size is None:
        raise DataError(f"{path}: {where} has no image size (image_width{suffix} and image_height{suffix}, or "
                        f"image_size{suffix})")
    size = _numbers(path, f"{where} image size", size, None).ravel()
    if size.size != 2:
        raise DataError(f"{path}: {where} image size must be (width, height), got {size.tolist()}")
    return _camera(path, name, K=_numbers(path, f"{where} K", K, (3, 3)), R=rotation,
                   t=_numbers(path, f"{where} T", T, (3,)),
                   distortion=(np.zeros(0) if dist is None
                               else _numbers(path, f"{where} distortion", dist, None).ravel()),
                   image_size=(int(round(size[0])), int(round(size[1]))))


# Qualisys camera axes (x right, y up, z backward) → OpenCV's (x right, y down, z forward): a 180° turn about x.
_QUALISYS_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
_SUBPIXELS = 64.0  # Qualisys intrinsics are in sub-pixels, 64 per pixel


def read_qualisys_rig(path: Path) -> Rig:
    """A Qualisys ``.qca.txt`` rig (module docstring): world z up, millimetres, converted to the project frame.

    Per camera, with ``M`` the file's ``r11 … r33`` (row-major) and ``C`` its ``x, y, z``::

        X_qualisys_camera = M (X_w − C)    →    R = F M,  t = −F M C,   F = diag(1, −1, −1)
        K = [[fU / 64, 0, cU / 64 − left], [0, fV / 64, cV / 64 − top], [0, 0, 1]],  size = (right − left + 1,
        bottom − top + 1) from ``fov_video``;  distortion = (k1, k2, p1, p2, k3)
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise DataError(f"{path}: not a readable Qualisys calibration (XML: {err})") from None
    cameras = []
    for index, tag in enumerate(root.findall("cameras/camera")):
        if tag.get("active", "1") != "1":
            continue
        name = tag.get("serial") or f"camera{index}"
        where = f"camera {name!r}"
        transform, intrinsic, fov = tag.find("transform"), tag.find("intrinsic"), tag.find("fov_video")
        if transform is None or intrinsic is None or fov is None:
            raise DataError(f"{path}: {where} lacks transform, intrinsic or fov_video")

        def number(element: ET.Element, key: str, where: str = where) -> float:
            try:
                return float(element.attrib[key])
            except KeyError:
                raise DataError(f"{path}: {where}: <{element.tag}> has no {key!r}") from None
            except ValueError:
                raise DataError(f"{path}: {where}: <{element.tag}> {key}={element.attrib[key]!r} is not a number") \
                    from None

        M = np.array([[number(transform, f"r{i}{j}") for j in (1, 2, 3)] for i in (1, 2, 3)])
        C = np.array([number(transform, axis) for axis in "xyz"])
        R = _QUALISYS_TO_OPENCV @ M
        left, top = number(fov, "left"), number(fov, "top")
        K = np.array([[number(intrinsic, "focalLengthU") / _SUBPIXELS, 0.0,
                       number(intrinsic, "centerPointU") / _SUBPIXELS - left],
                      [0.0, number(intrinsic, "focalLengthV") / _SUBPIXELS,
                       number(intrinsic, "centerPointV") / _SUBPIXELS - top],
                      [0.0, 0.0, 1.0]])
        distortion = [number(intrinsic, k) for k in ("radialDistortion1", "radialDistortion2", "tangentalDistortion1",
                                                      "tangentalDistortion2", "radialDistortion3")]
        size = (int(number(fov, "right") - left + 1), int(number(fov, "bottom") - top + 1))
        cameras.append(_camera(path, name, K=K, R=R, t=-R @ C, distortion=np.array(distortion), image_size=size))
    if not cameras:
        raise DataError(f"{path}: no active cameras (<calibration><cameras><camera active=\"1\">)")
    return _project_rig(path, cameras, unit="mm", up="+z", notes=["format: qualisys (world z up, millimetres)"])


def read_json_rig(path: Path) -> Rig:
    """The project's JSON rig (:func:`write_rig`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != _JSON_FORMAT:
        raise DataError(f"{path}: not a videomdm rig (expected \"format\": \"{_JSON_FORMAT}\")")
    if data.get("units") != "m" or data.get("world_up") != "+y":
        raise DataError(f"{path}: a videomdm rig is in metres with world up +y, got units {data.get('units')!r}, "
                        f"world_up {data.get('world_up')!r}")
    entries = data.get("cameras")
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: 'cameras' must be a non-empty list")
    cameras = []
    for k, entry in enumerate(entries):
        where = f"camera {k}"
        missing = [key for key in ("name", "K", "R", "t", "image_size")
                   if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise DataError(f"{path}: {where} lacks {', '.join(missing)}")
        size = _numbers(path, f"{where} image_size", entry["image_size"], (2,))
        cameras.append(_camera(path, str(entry["name"]), K=_numbers(path, f"{where} K", entry["K"], (3, 3)),
                               R=_numbers(path, f"{where} R", entry["R"], (3, 3)),
                               t=_numbers(path, f"{where} t", entry["t"], (3,)),
                               distortion=_numbers(path, f"{where} distortion", entry.get("distortion", []), None)
                               .ravel(), image_size=(int(size[0]), int(size[1]))))
    try:
        return Rig(tuple(cameras), source=str(path), notes=tuple(str(n) for n in data.get("notes", [])))
    except ValueError as err:
        raise DataError(f"{path}: {err}") from None


def write_rig(rig: Rig, path: Path) -> Path:
    """Write ``rig`` as the project's JSON (metres, y up, OpenCV camera axes), atomically. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(rig.to_dict(), f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def rig_format(path: Path) -> str:
    """The format of a rig file (one of :data:`RIG_FORMATS`) from its name and, for XML, its first bytes."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".qca.txt", ".qca")):
        return "qualisys"
    if name.endswith(".toml"):
        return "toml"
    if name.endswith(".json"):
        return "json"
    if name.endswith((".yml", ".yaml")):
        return "opencv"
    if name.endswith(".xml"):
        try:
            head = path.read_bytes()[:4096].decode("utf-8", "replace")
        except OSError as err:
            raise DataError(f"{path}: cannot read ({err})") from None
        return "qualisys" if "<calibration" in head else "opencv"
    raise DataError(f"{path}: unknown calibration file type; known: Pose2Sim/OpenCV .toml, OpenCV FileStorage "
                    f".yml/.yaml/.xml, Qualisys .qca.txt, videomdm .json")


def read_rig(path: Path, *, fmt: str | None = None, unit: str = "auto", up: str = "auto") -> Rig:
    """Read a calibrated rig from any supported file (module docstring) into the project frame.

    Args:
        path: the calibration file.
        fmt: one of :data:`RIG_FORMATS`, or None to tell from the file (:func:`rig_format`).
        unit, up: the file's length unit and world up axis, for formats that do not state them (``toml``,
            ``opencv``); ``"auto"`` decides as the module docstring says. Qualisys files are mm, z up; the
            project's JSON is m, y up; passing anything but ``"auto"`` for them is refused.

    Returns:
        A :class:`Rig` in metres, y up, OpenCV camera axes; its ``notes`` say what was assumed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: calibration file does not exist")
    fmt = fmt or rig_format(path)
    if fmt in ("qualisys", "json") and (unit, up) != ("auto", "auto"):
        raise DataError(f"{path}: a {fmt} rig states its units and up axis; unit= and up= apply to toml and opencv "
                        f"files only")
    if fmt == "toml":
        return read_toml_rig(path, unit=unit, up=up)
    if fmt == "opencv":
        return read_opencv_rig(path, unit=unit, up=up)
    if fmt == "qualisys":
        return read_qualisys_rig(path)
    if fmt == "json":
        return read_json_rig(path)
    raise DataError(f"{path}: unknown calibration format {fmt!r}; known: {list(RIG_FORMATS)}")


# --- lens distortion --------------------------------------------------------------------------------------------------


def _padded(distortion: np.ndarray) -> np.ndarray:
    dist = np.asarray(distortion, dtype=np.float64).reshape(-1)
    if dist.size not in _DISTORTION_SIZES:
        raise ValueError(f"{dist.size} distortion coefficients; supported: {_DISTORTION_SIZES}")
    return np.concatenate([dist, np.zeros(8 - dist.size)])


def distort_normalized(xy: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """OpenCV's lens model on normalized image coordinates ``(..., 2)`` → distorted normalized ``(..., 2)``.

    With ``r² = x² + y²`` and coefficients ``k1, k2, p1, p2, k3, k4, k5, k6`` (missing ones 0)::

        x_d = x · (1 + k1 r² + k2 r⁴ + k3 r⁶) / (1 + k4 r² + k5 r⁴ + k6 r⁶) + 2 p1 x y + p2 (r² + 2 x²)
        y_d = y · (1 + k1 r² + k2 r⁴ + k3 r⁶) / (1 + k4 r² + k5 r⁴ + k6 r⁶) + p1 (r² + 2 y²) + 2 p2 x y
    """
    k1, k2, p1, p2, k3, k4, k5, k6 = _padded(distortion)
    xy = np.asarray(xy, dtype=np.float64)
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=-1)


def undistort_normalized(xy_distorted: np.ndarray, distortion: np.ndarray, *, iterations: int = 50,
                         tolerance: float = 1e-12) -> np.ndarray:
    """Inverse of :func:`distort_normalized` by fixed-point iteration (as OpenCV's ``undistortPoints``)::

        x ← (x_d − Δx(x)) / radial(x),    y ← (y_d − Δy(x)) / radial(x)

    starting from ``x = x_d``, until the step is below ``tolerance`` or after ``iterations`` steps. Points where it
    does not converge (far outside the calibrated field of view of a strong lens) come back NaN.
    """
    k1, k2, p1, p2, k3, k4, k5, k6 = _padded(distortion)
    xd = np.asarray(xy_distorted, dtype=np.float64)
    if not np.any([k1, k2, p1, p2, k3, k4, k5, k6]):
        return xd.copy()
    xy = xd.copy()
    for _ in range(iterations):
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        new = np.stack([(xd[..., 0] - dx) / radial, (xd[..., 1] - dy) / radial], axis=-1)
        step = np.nanmax(np.abs(new - xy)) if new.size else 0.0
        xy = new
        if step < tolerance:
            break
    residual = np.linalg.norm(distort_normalized(xy, distortion) - xd, axis=-1)
    return np.where((residual < 1e-6)[..., None], xy, np.nan)


def _to_normalized(uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    uv = np.asarray(uv, dtype=np.float64)
    y = (uv[..., 1] - K[1, 2]) / K[1, 1]
    x = (uv[..., 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return np.stack([x, y], axis=-1)


def _to_pixels(xy: np.ndarray, K: np.ndarray) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    return np.stack([K[0, 0] * xy[..., 0] + K[0, 1] * xy[..., 1] + K[0, 2], K[1, 1] * xy[..., 1] + K[1, 2]], axis=-1)


def undistort_points(uv: np.ndarray, K: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """Distorted pixels ``(..., 2)`` (as a detector sees them) → the pixels of the ideal pinhole camera with the same
    ``K`` (``K · undistort(K⁻¹ uv)``; OpenCV's ``undistortPoints(uv, K, dist, P=K)``). NaN where the iteration does
    not converge."""
    return _to_pixels(undistort_normalized(_to_normalized(uv, K), distortion), K)


def distort_points(uv: np.ndarray, K: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """Ideal pinhole pixels ``(..., 2)`` → the pixels where the real lens puts them (for overlays on the video):
    ``K · distort(K⁻¹ uv)``."""
    return _to_pixels(distort_normalized(_to_normalized(uv, K), distortion), K)
