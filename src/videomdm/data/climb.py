"""Climbing motion capture shipped in the wheel of ``holosoma-retargeting==0.1.0``, fetched at run time and built
into a mocap dataset (:func:`videomdm.data.mocap.build_mocap_dataset`): a second source of real human mocap beside
LAFAN1, used to train a lifter on other data than it will lift (a cross-domain teacher).

**What the files are.** Five takes of climbing onto and off boxes, recorded with optical motion capture
(``demo_data/climb/mocap_climb_seq_{0..4}/*_joint_positions_f<first>-<last>.npy`` in the wheel, 12 939 frames in
all): float32 ``(T, 53, 3)`` world joint positions in metres, z up, on a constant-bone-length skeleton whose joints
are named in :data:`CLIMB_JOINTS` (body joints ``Hips``, ``Spine``, ``Spine1``, ``Neck``, ``Head``,
``Left/RightShoulder``, ``…Arm``, ``…ForeArm``, ``…Hand``, ``…UpLeg``, ``…Leg``, ``…Foot``, ``…ToeBase``, plus
15 finger joints per hand and two foot markers ``Left/RightFootMod``; the limbs of takes 0–3 have identical lengths, take
4's differ by up to 1.2 cm, and the spine and neck segments vary by up to 1.9 cm between takes). The order of :data:`CLIMB_JOINTS` is the one
the package documents for its ``mocap`` format.

**Frame rate: not recorded in the files; 120 fps (:data:`CLIMB_FPS`) is inferred** from the motion itself, and
is the usual rate of optical capture. The 77 foot swings of the five takes (a toe moving faster than 2 mm per frame
and ending at least 10 cm from where it left) last 45 / 67 / 85 frames (quartiles): 0.38 / 0.56 / 0.71 s at 120 fps,
as people step and step up; 1.1 s (median) at 60 fps and 2.2 s at 30 fps. The hips then move at 0.25 m/s (median)
and 1.1 m/s (99th percentile) at 120 fps, 0.06 and 0.29 m/s at 30 fps. If the true rate were 60 fps, every motion
of the resulting dataset would be twice as fast as it was performed.

**Mapping to SMPL-22** (:func:`climb_to_smpl22`): every SMPL-22 joint but one has a joint of this skeleton at the same
place (:data:`SMPL22_FROM_CLIMB`: ``Spine`` → ``spine1``, ``Spine1`` (the chest) → ``spine3``, ``…Shoulder`` (the
clavicle root) → ``…collar``, ``…Arm`` → ``…shoulder``, ``…ForeArm`` → ``…elbow``, ``…Hand`` → ``…wrist``,
``…UpLeg`` → ``…hip``, ``…Leg`` → ``…knee``, ``…Foot`` → ``…ankle``, ``…ToeBase`` → ``…foot``). The skeleton has
two spine joints where SMPL has three: ``spine2`` is placed by the body-proportion rule the project uses for every
skeleton without it (:func:`videomdm.skeleton.blazepose_to_smpl22`), ``pelvis + 0.45 (neck − pelvis)``
(:data:`SPINE2_FRACTION`). It is the only placed joint; nothing else is guessed. Axes: ``(x, y, z)`` z up becomes
``(x, z, −y)`` y up, a proper rotation (the left joints stay on the subject's left).

:func:`fetch_climb_joints` downloads the wheel with pip (about 100 MB, once), extracts the five files into the cache,
checks their SHA-256 and deletes the wheel. The package is licensed Apache-2.0 (:data:`CLIMB_LICENSE`); the data is
still fetched at run time and never committed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..skeleton import SMPL_22
from .clip import atomic_write_bytes
from .errors import DataError
from .mocap import build_mocap_dataset
from .package_files import fetch_package_files
from .writer import check_destination

__all__ = [
    "CLIMB_LICENSE",
    "CLIMB_FILES",
    "CLIMB_FPS",
    "CLIMB_JOINTS",
    "SMPL22_FROM_CLIMB",
    "SPINE2_FRACTION",
    "fetch_climb_joints",
    "climb_to_smpl22",
    "load_climb_take",
    "convert_climb_takes",
    "build_climb_dataset",
]

CLIMB_LICENSE = (
    "Apache-2.0 (the license of the holosoma-retargeting 0.1.0 package, Amazon FAR, which ships these takes as "
    "demo data for its retargeting examples). Fetched from PyPI at run time; do not commit the data."
)

_PACKAGE = "holosoma-retargeting==0.1.0"
_WHEEL = "holosoma_retargeting-0.1.0-py3-none-any.whl"
_PREFIX = "holosoma_retargeting/demo_data/climb"
# file name in the cache → (member of the wheel, SHA-256 of its bytes)
CLIMB_FILES = {
    "climb_seq_0.npy": (f"{_PREFIX}/mocap_climb_seq_0/mocap_climb_seq_0_joint_positions_f900-3700.npy",
                        "0d10253c34f26148c40e96261033b7e5955bcd5d784b76a02be8847aa2b75d8d"),
    "climb_seq_1.npy": (f"{_PREFIX}/mocap_climb_seq_1/mocap_climb_seq_1_joint_positions_f0-2422.npy",
                        "5ad287c1a0f288c615bc56032887fa8f21cf5d027d4d906001387db862750a7f"),
    "climb_seq_2.npy": (f"{_PREFIX}/mocap_climb_seq_2/mocap_climb_seq_2_joint_positions_f100-3110.npy",
                        "fb33fb51393fc1408876f91ef2dfd2a0e1944b148c54a275f9a5a0965dca253a"),
    "climb_seq_3.npy": (f"{_PREFIX}/mocap_climb_seq_3/mocap_climb_seq_3_joint_positions_f200-2600.npy",
                        "6c9f16cd72bd8e87b8b4d69b3d11370d56f5160af2882215baf45464d6bd0843"),
    "climb_seq_4.npy": (f"{_PREFIX}/mocap_climb_seq_4/mocap_climb_seq_4_joint_positions_f0-2303.npy",
                        "503c423d5aeaff9805316a62c47ec1dd99f8cb5668fdc041510398e29d846984"),
}

CLIMB_FPS = 120.0  # inferred, not recorded (module docstring)

_FINGERS = tuple(f"{finger}{k}" for finger in ("Thumb", "Index", "Middle", "Ring", "Pinky") for k in (1, 2, 3))
CLIMB_JOINTS = (
    "Hips", "Spine", "Spine1", "Neck", "Head",
    "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", *(f"LeftHand{f}" for f in _FINGERS),
    "RightShoulder", "RightArm", "RightForeArm", "RightHand", *(f"RightHand{f}" for f in _FINGERS),
    "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase",
    "LeftFootMod", "RightFootMod",
)

# SMPL-22 joint → the joint of CLIMB_JOINTS at the same place; None: placed by the proportion rule (spine2 only).
SMPL22_FROM_CLIMB: dict[str, str | None] = {
    "pelvis": "Hips", "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg", "spine1": "Spine",
    "left_knee": "LeftLeg", "right_knee": "RightLeg", "spine2": None, "left_ankle": "LeftFoot",
    "right_ankle": "RightFoot", "spine3": "Spine1", "left_foot": "LeftToeBase", "right_foot": "RightToeBase",
    "neck": "Neck", "left_collar": "LeftShoulder", "right_collar": "RightShoulder", "head": "Head",
    "left_shoulder": "LeftArm", "right_shoulder": "RightArm", "left_elbow": "LeftForeArm",
    "right_elbow": "RightForeArm", "left_wrist": "LeftHand", "right_wrist": "RightHand",
}
# Where SMPL's spine2 sits on the pelvis → neck segment (rest pose, average body): videomdm.skeleton's rule.
SPINE2_FRACTION = 0.45


def climb_to_smpl22(joints: np.ndarray) -> np.ndarray:
    """SMPL-22 joints from the climbing skeleton's joints (module docstring: mapping and axes).

    Args:
        joints: ``(T, 53, 3)`` world positions in :data:`CLIMB_JOINTS` order, metres, z up.

    Returns:
        ``(T, 22, 3)`` float64 in SMPL-22 order, metres, y up: ``(x, y, z) → (x, z, −y)``; ``spine2 = pelvis +``
        :data:`SPINE2_FRACTION` ``· (neck − pelvis)``.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (len(CLIMB_JOINTS), 3):
        raise ValueError(f"expected (T, {len(CLIMB_JOINTS)}, 3) climbing joints, got {joints.shape}")
    y_up = np.stack([joints[..., 0], joints[..., 2], -joints[..., 1]], axis=-1)  # (T, 53, 3)
    out = np.zeros((len(joints), SMPL_22.num_joints, 3))
    for name, source in SMPL22_FROM_CLIMB.items():
        if source is not None:
            out[:, SMPL_22.index(name)] = y_up[:, CLIMB_JOINTS.index(source)]
    pelvis, neck = out[:, SMPL_22.index("pelvis")], out[:, SMPL_22.index("neck")]
    out[:, SMPL_22.index("spine2")] = pelvis + SPINE2_FRACTION * (neck - pelvis)
    return out


def load_climb_take(path: str | Path) -> np.ndarray:
    """One take's ``(T, 53, 3)`` joints file as SMPL-22 ``(T, 22, 3)`` float32 metres, y up
    (:func:`climb_to_smpl22`). :class:`DataError` naming the file for an unreadable file, a wrong shape or non-finite
    values."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot read as a .npy array ({err})") from None
    if array.ndim != 3 or array.shape[1:] != (len(CLIMB_JOINTS), 3) or len(array) < 2:
        raise DataError(f"{path}: expected climbing joints of shape (T >= 2, {len(CLIMB_JOINTS)}, 3), "
                        f"got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: expected floating-point joint positions, got dtype {array.dtype}")
    finite = np.isfinite(array).all(axis=(1, 2))
    if not finite.all():
        raise DataError(f"{path}: joint positions contain NaN or infinite values (first at frame "
                        f"{int(np.argmin(finite))})")
    return climb_to_smpl22(array).astype(np.float32)


def fetch_climb_joints(cache_dir: str | Path) -> list[Path]:
    """The five climbing takes, downloaded once into ``cache_dir/climb-holosoma-retargeting-0.1.0/``.

    Runs ``python -m pip download --no-deps --only-binary :all: holosoma-retargeting==0.1.0`` into a temporary
    folder in the cache, extracts the files of :data:`CLIMB_FILES` from the wheel under their short names, checks
    their SHA-256 and deletes the wheel (:func:`~videomdm.data.package_files.fetch_package_files`). Files already in
    the cache with the right hash are reused without network access.

    Returns:
        ``[.../climb_seq_0.npy, ..., .../climb_seq_4.npy]`` (raw ``(T, 53, 3)`` z-up joints).

    Raises:
        DataError: pip failed (with the tail of its stderr), or the wheel lacks the files or has other contents.
    """
    return fetch_package_files(Path(cache_dir) / "climb-holosoma-retargeting-0.1.0", _PACKAGE,
                               ("--only-binary", ":all:"), _WHEEL, CLIMB_FILES, "the climbing takes")


def convert_climb_takes(paths: list[Path], out_dir: str | Path, *, fps: float = CLIMB_FPS) -> list[Path]:
    """Write each raw take as an SMPL-22 joints ``.npy`` (:func:`load_climb_take`) with its ``<name>.json`` holding
    ``{"fps": fps}`` into ``out_dir``, the format :func:`videomdm.data.mocap.load_mocap` reads. Returns the ``.npy``
    paths, in the order of ``paths``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        joints = load_climb_take(path)
        target = out_dir / Path(path).name
        atomic_write_bytes(target, lambda f, joints=joints: np.save(f, joints))
        sidecar = json.dumps({"fps": float(fps), "source": f"{Path(path).name} ({_PACKAGE}), fps inferred"})
        atomic_write_bytes(target.with_suffix(".json"), lambda f, text=sidecar: f.write(text.encode() + b"\n"))
        written.append(target)
    return written


def build_climb_dataset(out_dir: str | Path, cache_dir: str | Path, **kw: Any) -> dict[str, Any]:
    """Fetch the climbing takes (:func:`fetch_climb_joints`), convert them to SMPL-22 in the cache
    (:func:`convert_climb_takes`, ``cache_dir/climb-holosoma-retargeting-0.1.0/smpl22/``) and build a dataset named
    ``climb`` from them (:func:`build_mocap_dataset`; ``kw``: ``fps``, ``window_frames``, ``test_fraction``,
    ``lifter_fraction``, ``overwrite``). Prints nothing: the caller shows :data:`CLIMB_LICENSE`."""
    check_destination(out_dir, replace=kw.get("overwrite", False))  # fail before downloading
    raw = fetch_climb_joints(cache_dir)
    files = convert_climb_takes(raw, raw[0].parent / "smpl22")
    return build_mocap_dataset(files, out_dir, name="climb", license=CLIMB_LICENSE, **kw)
