"""BVH reader: hierarchy, motion and forward kinematics to world joint positions in metres.

Conventions this reader follows (the common ones; each is a choice other readers also make):

- **Joints** are the ``ROOT`` and every ``JOINT``. ``End Site`` blocks are parsed and dropped (they are not joints).
- **Channels** may come in any order per joint. Rotation channels are applied in the order they are listed, with
  intrinsic axes: ``CHANNELS 3 Zrotation Xrotation Yrotation`` gives ``R = Rz(a) · Rx(b) · Ry(c)`` (angles in degrees).
  A joint may have 0–3 rotation channels and 0–3 position channels.
- **Position channels replace the OFFSET** on the axes they cover (as the LAFAN1 / Holden loaders and Blender do:
  the root's position channels hold its absolute position); axes without a position channel keep the OFFSET value.
  Translation is expressed in the parent's frame and applied before the joint's rotation:
  ``x_joint = G_parent · t_joint``, ``G_joint = G_parent · [R_joint | t_joint]``.
- **Units** (``unit="auto"``): the skeleton's *height* in file units is ``h = max(h_rest, h_pose)`` where ``h_rest`` is
  the extent along y (max − min) of the joints in the rest pose (OFFSETs only, no rotations) and ``h_pose`` the median
  over frames of the same extent in the animated frames. Both under-estimate a person's height when the pose is not
  upright (LAFAN1's rest pose lies along x, so ``h_rest`` is a few centimetres there), so the larger one is used.
  Of the candidate scales m (1), cm (0.01), mm (0.001) and inch (0.0254), the one that makes ``h`` a plausible human
  height, 1.0–2.5 m, is picked; the four ranges are disjoint, so at most one fits. If none fits, a :class:`DataError`
  asks for an explicit ``unit``.
- **fps** is ``1 / Frame Time``, snapped to the nearest integer when within 0.01 of it (``Frame Time: 0.033333`` is
  30 fps; the file's six decimals would otherwise give 30.0003).

Every problem raises :class:`DataError` naming the file and, where there is one, the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from .errors import DataError

__all__ = ["BvhMotion", "read_bvh", "UNIT_SCALES", "PLAUSIBLE_HEIGHT_M"]

UNIT_SCALES = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254}  # file unit → metres
PLAUSIBLE_HEIGHT_M = (1.0, 2.5)  # joint-to-joint height of a person, metres (see module docstring)

_CHANNELS = {
    "xposition": "Xposition", "yposition": "Yposition", "zposition": "Zposition",
    "xrotation": "Xrotation", "yrotation": "Yrotation", "zrotation": "Zrotation",
}


@dataclass
class BvhMotion:
    """A BVH file read into arrays.

    Attributes:
        joint_names: (J,) joint names in file order (End Sites excluded).
        parents: (J,) int64 parent index per joint, ``-1`` for the root; parents precede children.
        offsets: (J, 3) float64 OFFSETs in metres.
        positions: (T, J, 3) float64 world joint positions in metres (forward kinematics), the file's axes (y up).
        fps: frames per second.
        scale_to_metres: factor applied to the file's lengths (1, 0.01, 0.001 or 0.0254).
        unit: the file unit that factor stands for (``"m"``, ``"cm"``, ``"mm"`` or ``"inch"``).
        height: skeleton height in metres as measured for unit detection (see module docstring).
    """

    joint_names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    positions: np.ndarray
    fps: float
    scale_to_metres: float
    unit: str
    height: float

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)


@dataclass
class _Joint:
    name: str
    parent: int
    offset: np.ndarray  # (3,) file units
    channels: list[str]
    line: int


class _Tokens:
    """Hierarchy tokens with their 1-based line numbers."""

    def __init__(self, path: Path, lines: list[str]) -> None:
        self.path = path
        self.items: list[tuple[str, int]] = []
        for number, line in enumerate(lines, start=1):
            for token in line.replace("{", " { ").replace("}", " } ").split():
                self.items.append((token, number))
        self.pos = 0

    def error(self, message: str, line: int | None = None) -> DataError:
        if line is None:
            line = self.items[min(self.pos, len(self.items) - 1)][1] if self.items else 1
        return DataError(f"{self.path}: line {line}: {message}")

    def peek(self) -> tuple[str, int] | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def next(self, what: str) -> tuple[str, int]:
        if self.pos >= len(self.items):
            last = self.items[-1][1] if self.items else 1
            raise self.error(f"unexpected end of HIERARCHY, expected {what}", last)
        item = self.items[self.pos]
        self.pos += 1
        return item

    def expect(self, word: str) -> int:
        token, line = self.next(repr(word))
        if token.upper() != word.upper():
            raise self.error(f"expected {word!r}, found {token!r}", line)
        return line

    def number(self, what: str) -> float:
        token, line = self.next(what)
        try:
            value = float(token)
        except ValueError:
            raise self.error(f"expected a number for {what}, found {token!r}", line) from None
        if not np.isfinite(value):
            raise self.error(f"{what} is {token}", line)
        return value

    def rest_of_line(self, line: int) -> list[str]:
        """Tokens left on ``line`` (stops before a ``{``)."""
        out = []
        while self.pos < len(self.items) and self.items[self.pos][1] == line and self.items[self.pos][0] != "{":
            out.append(self.items[self.pos][0])
            self.pos += 1
        return out


def _parse_joint(tokens: _Tokens, joints: list[_Joint], parent: int, keyword_line: int) -> None:
    """Parse ``<name> { OFFSET .. CHANNELS .. children }`` after a ROOT/JOINT keyword."""
    name_parts = tokens.rest_of_line(keyword_line)
    if not name_parts:
        raise tokens.error("joint without a name", keyword_line)
    name = " ".join(name_parts)
    if any(j.name == name for j in joints):
        raise tokens.error(f"duplicate joint name {name!r}", keyword_line)
    tokens.expect("{")
    index = len(joints)
    joint = _Joint(name, parent, np.zeros(3), [], keyword_line)
    joints.append(joint)
    seen_offset = False
    while True:
        token, line = tokens.next(f"'}}' closing joint {name!r}")
        key = token.upper()
        if key == "OFFSET":
            joint.offset = np.array([tokens.number(f"OFFSET of {name!r}") for _ in range(3)])
            seen_offset = True
        elif key == "CHANNELS":
            count_token, _ = tokens.next("channel count")
            try:
                count = int(count_token)
            except ValueError:
                raise tokens.error(f"CHANNELS count must be an integer, found {count_token!r}", line) from None
            names = tokens.rest_of_line(line)
            if len(names) != count:
                raise tokens.error(f"CHANNELS of joint {name!r} declares {count} channels but lists {len(names)}",
                                   line)
            for channel in names:
                if channel.lower() not in _CHANNELS:
                    raise tokens.error(f"unknown channel name {channel!r} in joint {name!r} "
                                       f"(known: {', '.join(_CHANNELS.values())})", line)
            channels = [_CHANNELS[c.lower()] for c in names]
            if len(set(channels)) != len(channels):
                raise tokens.error(f"joint {name!r} lists a channel twice: {names}", line)
            joint.channels = channels
        elif key == "JOINT":
            _parse_joint(tokens, joints, index, line)
        elif key == "END":
            tokens.expect("Site")
            tokens.expect("{")
            tokens.expect("OFFSET")
            for _ in range(3):
                tokens.number(f"End Site OFFSET of {name!r}")
            tokens.expect("}")
        elif key == "}":
            break
        else:
            raise tokens.error(f"unexpected {token!r} in joint {name!r}", line)
    if not seen_offset:
        raise tokens.error(f"joint {name!r} has no OFFSET", keyword_line)


def _parse_hierarchy(path: Path, lines: list[str]) -> list[_Joint]:
    tokens = _Tokens(path, lines)
    tokens.expect("HIERARCHY")
    line = tokens.expect("ROOT")
    joints: list[_Joint] = []
    _parse_joint(tokens, joints, -1, line)
    extra = tokens.peek()
    if extra is not None:
        if extra[0].upper() == "ROOT":
            raise tokens.error("more than one ROOT is not supported", extra[1])
        raise tokens.error(f"unexpected {extra[0]!r} after the ROOT joint", extra[1])
    return joints


def _next_content_line(lines: list[str], start: int) -> int:
    """0-based index of the first non-blank line at or after ``start`` (``len(lines)`` if none)."""
    while start < len(lines) and not lines[start].strip():
        start += 1
    return start


def _parse_header_value(path: Path, lines: list[str], index: int, label: str) -> str:
    """The value after ``label`` (e.g. ``Frames:``) on line ``index`` (0-based)."""
    if index >= len(lines):
        raise DataError(f"{path}: line {index + 1}: file ends before '{label}'")
    text = lines[index].strip()
    if not text.lower().startswith(label.lower()):
        raise DataError(f"{path}: line {index + 1}: expected '{label}', found {text[:60]!r}")
    return text[len(label):].strip()


def _parse_motion(path: Path, lines: list[str], motion_index: int, num_channels: int) -> tuple[np.ndarray, float]:
    """Frame values (T, C) float64 and the frame time in seconds. ``motion_index`` is the 0-based MOTION line."""
    frames_index = _next_content_line(lines, motion_index + 1)
    value = _parse_header_value(path, lines, frames_index, "Frames:")
    try:
        num_frames = int(value)
    except ValueError:
        raise DataError(f"{path}: line {frames_index + 1}: 'Frames:' must be an integer, found {value!r}") from None
    if num_frames <= 0:
        raise DataError(f"{path}: line {frames_index + 1}: the file declares {num_frames} frames")
    time_index = _next_content_line(lines, frames_index + 1)
    value = _parse_header_value(path, lines, time_index, "Frame Time:")
    try:
        frame_time = float(value)
    except ValueError:
        raise DataError(f"{path}: line {time_index + 1}: 'Frame Time:' must be a number, found {value!r}") from None
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise DataError(f"{path}: line {time_index + 1}: 'Frame Time:' must be positive, found {value!r}")

    first = time_index + 1  # 0-based index of the first frame line
    rows, numbers = [], []
    for i in range(first, len(lines)):
        fields = lines[i].split()
        if fields:
            rows.append(fields)
            numbers.append(i + 1)
    if len(rows) < num_frames:
        raise DataError(f"{path}: 'Frames: {num_frames}' but the file has only {len(rows)} frame lines "
                        f"(it ends at line {len(lines)}); the file is truncated")
    if len(rows) > num_frames:
        raise DataError(f"{path}: line {numbers[num_frames]}: 'Frames: {num_frames}' but the file has {len(rows)} "
                        f"frame lines")
    for fields, number in zip(rows, numbers):
        if len(fields) != num_channels:
            raise DataError(f"{path}: line {number}: frame line has {len(fields)} values but the HIERARCHY declares "
                            f"{num_channels} channels (missing channel or truncated line)")
    try:
        values = np.array(rows, dtype=np.float64)  # (T, C)
    except ValueError:
        for fields, number in zip(rows, numbers):
            for field in fields:
                try:
                    float(field)
                except ValueError:
                    raise DataError(f"{path}: line {number}: {field!r} is not a number") from None
        raise  # pragma: no cover - numpy refused something float() accepts
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise DataError(f"{path}: line {numbers[bad]}: frame {bad} contains NaN or infinite values")
    return values, frame_time


def _forward_kinematics(joints: list[_Joint], values: np.ndarray) -> np.ndarray:
    """World positions (T, J, 3) in file units from frame values (T, C); vectorised over frames."""
    num_frames = values.shape[0]
    positions = np.zeros((num_frames, len(joints), 3))
    rotations = np.zeros((num_frames, len(joints), 3, 3))
    column = 0
    for j, joint in enumerate(joints):
        translation = np.broadcast_to(joint.offset, (num_frames, 3)).copy()  # (T, 3) in the parent's frame
        rot_axes, rot_cols = "", []
        for channel in joint.channels:
            axis = "XYZ".index(channel[0])
            if channel.endswith("position"):
                translation[:, axis] = values[:, column]
            else:
                rot_axes += channel[0]
                rot_cols.append(column)
            column += 1
        if rot_axes:
            # Upper-case sequence = intrinsic rotations: R = R_ch1 · R_ch2 · R_ch3.
            local = Rotation.from_euler(rot_axes, values[:, rot_cols], degrees=True).as_matrix()  # (T, 3, 3)
        else:
            local = np.broadcast_to(np.eye(3), (num_frames, 3, 3))
        if joint.parent < 0:
            positions[:, j] = translation
            rotations[:, j] = local
        else:
            parent_rot = rotations[:, joint.parent]  # (T, 3, 3)
            positions[:, j] = np.einsum("tij,tj->ti", parent_rot, translation) + positions[:, joint.parent]
            rotations[:, j] = parent_rot @ local
    return positions


def _rest_positions(joints: list[_Joint]) -> np.ndarray:
    """(J, 3) joint positions of the rest pose (OFFSETs chained, no rotations), file units."""
    rest = np.zeros((len(joints), 3))
    for j, joint in enumerate(joints):
        rest[j] = joint.offset + (rest[joint.parent] if joint.parent >= 0 else 0.0)
    return rest


def _detect_unit(path: Path, rest: np.ndarray, positions: np.ndarray) -> tuple[str, float]:
    """Pick the unit that makes the skeleton's height plausible (module docstring). Returns (unit, height in file
    units)."""
    h_rest = float(np.ptp(rest[:, 1]))
    h_pose = float(np.median(np.ptp(positions[:, :, 1], axis=1)))
    height = max(h_rest, h_pose)
    low, high = PLAUSIBLE_HEIGHT_M
    fits = [unit for unit, scale in UNIT_SCALES.items() if low <= height * scale <= high]
    if not fits:
        raise DataError(
            f"{path}: cannot detect the length unit: the skeleton is {height:.4g} file units high along y (rest pose "
            f"{h_rest:.4g}, median of the frames {h_pose:.4g}) and none of {sorted(UNIT_SCALES)} makes that "
            f"{low}-{high} m; pass the unit explicitly (unit='cm', ...)"
        )
    return fits[0], height


def _snap_fps(frame_time: float) -> float:
    fps = 1.0 / frame_time
    return float(round(fps)) if abs(fps - round(fps)) < 0.01 else fps


def read_bvh(path: str | Path, *, unit: str = "auto") -> BvhMotion:
    """Read a BVH file and compute world joint positions.

    Args:
        path: ``.bvh`` file.
        unit: ``"auto"`` (detect, see module docstring) or the file's length unit: ``"m"``, ``"cm"``, ``"mm"``,
            ``"inch"``.

    Returns:
        :class:`BvhMotion` with ``positions`` (T, J, 3) metres.

    Raises:
        DataError: unreadable or malformed file, naming the file and line.
    """
    if unit != "auto" and unit not in UNIT_SCALES:
        raise ValueError(f"unit must be 'auto' or one of {sorted(UNIT_SCALES)}, got {unit!r}")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise DataError(f"{path}: cannot read BVH file: {err.strerror or err}") from None
    if not text.strip():
        raise DataError(f"{path}: the BVH file is empty")
    lines = text.splitlines()
    motion_index = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    if motion_index is None:
        raise DataError(f"{path}: no MOTION section (a BVH file has HIERARCHY, then MOTION with the frames)")
    joints = _parse_hierarchy(path, lines[:motion_index])
    num_channels = sum(len(j.channels) for j in joints)
    if num_channels == 0:
        raise DataError(f"{path}: the HIERARCHY declares no CHANNELS")
    values, frame_time = _parse_motion(path, lines, motion_index, num_channels)
    try:
        positions = _forward_kinematics(joints, values)
    except ValueError as err:  # e.g. an Euler sequence scipy refuses
        raise DataError(f"{path}: cannot build rotations from the channels: {err}") from None
    rest = _rest_positions(joints)
    if unit == "auto":
        unit, height = _detect_unit(path, rest, positions)
    else:
        height = max(float(np.ptp(rest[:, 1])), float(np.median(np.ptp(positions[:, :, 1], axis=1))))
    scale = UNIT_SCALES[unit]
    return BvhMotion(
        joint_names=[j.name for j in joints],
        parents=np.array([j.parent for j in joints], dtype=np.int64),
        offsets=np.stack([j.offset for j in joints]) * scale,
        positions=positions * scale,
        fps=_snap_fps(frame_time),
        scale_to_metres=scale,
        unit=unit,
        height=height * scale,
    )
