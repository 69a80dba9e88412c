"""BVH reader: forward kinematics against hand computation, channel orders, units, and every kind of bad input."""

from pathlib import Path

import numpy as np
import pytest

from videomdm.data.bvh import read_bvh
from videomdm.data.errors import DataError

# Root with position channels; Spine rotates Z·X·Y; Head is a child of Spine. One End Site (not a joint).
ZXY = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT Head
    {
      OFFSET 0 10 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 0 5 0
      }
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.033333
1 2 3 0 0 0 0 0 0 0 0 0
1 2 3 90 0 0 0 90 0 0 0 0
"""


def write(tmp_path: Path, text: str, name: str = "clip.bvh") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_zxy_forward_kinematics_matches_hand_computation(tmp_path):
    m = read_bvh(write(tmp_path, ZXY), unit="m")
    assert m.joint_names == ["Hips", "Spine", "Head"]  # the End Site is not a joint
    assert m.parents.tolist() == [-1, 0, 1]
    assert m.fps == 30.0  # 1 / 0.033333 snapped
    assert m.positions.shape == (2, 3, 3)
    # Frame 0: rest pose translated to the root position.
    np.testing.assert_allclose(m.positions[0], [[1, 2, 3], [1, 12, 3], [1, 22, 3]], atol=1e-9)
    # Frame 1: root Rz(90) sends the Spine offset (0,10,0) to (-10,0,0). Spine's R = Rz(0)·Rx(90)·Ry(0) sends the Head
    # offset (0,10,0) to (0,0,10), and Rz(90) of the root leaves it there.
    np.testing.assert_allclose(m.positions[1], [[1, 2, 3], [-9, 2, 3], [-9, 2, 13]], atol=1e-9)


def test_rotation_channels_apply_in_listed_order(tmp_path):
    """``Zrotation Xrotation`` is Rz·Rx (intrinsic), not Rx·Rz: the two differ for the same angles."""
    text = ZXY.replace("1 2 3 90 0 0 0 90 0 0 0 0", "0 0 0 90 90 0 0 0 0 0 0 0")
    m = read_bvh(write(tmp_path, text), unit="m")
    # Root R = Rz(90)·Rx(90): Rx(90)(0,10,0) = (0,0,10); Rz(90)(0,0,10) = (0,0,10).
    np.testing.assert_allclose(m.positions[1, 1], [0, 0, 10], atol=1e-9)
    # (Rx(90)·Rz(90) would give (-10, 0, 0).)


def test_xyz_order_and_rotation_channels_before_position_channels(tmp_path):
    text = """HIERARCHY
ROOT Root
{
  OFFSET 5 5 5
  CHANNELS 6 Xrotation Yrotation Zrotation Xposition Yposition Zposition
  JOINT Tip
  {
    OFFSET 0 0 10
    CHANNELS 3 Xrotation Yrotation Zrotation
  }
}
MOTION
Frames: 1
Frame Time: 0.05
90 90 0 7 8 9 0 0 0
"""
    m = read_bvh(write(tmp_path, text), unit="m")
    assert m.fps == 20.0
    # Position channels replace the root OFFSET; R = Rx(90)·Ry(90): Ry(90)(0,0,10) = (10,0,0), Rx(90) keeps it.
    np.testing.assert_allclose(m.positions[0], [[7, 8, 9], [17, 8, 9]], atol=1e-9)


def test_position_channels_on_a_child_joint(tmp_path):
    text = """HIERARCHY
ROOT Root
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Mid
  {
    OFFSET 1 10 1
    CHANNELS 4 Yposition Zrotation Xrotation Yrotation
    JOINT Tip
    {
      OFFSET 0 10 0
      CHANNELS 3 Zrotation Xrotation Yrotation
    }
  }
}
MOTION
Frames: 1
Frame Time: 0.1
0 0 0 90 0 0 20 0 0 0 0 0 0
"""
    m = read_bvh(write(tmp_path, text), unit="m")
    # Mid's Yposition 20 replaces the OFFSET's y (x, z keep 1, 1); the root's Rz(90) maps (1,20,1) to (-20,1,1).
    np.testing.assert_allclose(m.positions[0, 1], [-20, 1, 1], atol=1e-9)
    # Tip: Rz(90)·(0,10,0) = (-10,0,0) added to Mid.
    np.testing.assert_allclose(m.positions[0, 2], [-30, 1, 1], atol=1e-9)


def _human(scale: float) -> str:
    """A 1.7 m tall stick figure (pelvis → head 0.8 m, pelvis → foot 0.9 m) written in a unit of ``scale`` metres."""
    s = lambda v: f"{v / scale:.6f}"  # noqa: E731
    return f"""HIERARCHY
ROOT Hips
{{
  OFFSET 0 {s(0.95)} 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {{
    OFFSET 0 {s(0.5)} 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT Head
    {{
      OFFSET 0 {s(0.3)} 0
      CHANNELS 3 Zrotation Xrotation Yrotation
    }}
  }}
  JOINT Leg
  {{
    OFFSET {s(0.1)} {s(-0.9)} 0
    CHANNELS 3 Zrotation Xrotation Yrotation
  }}
}}
MOTION
Frames: 2
Frame Time: 0.033333
0 {s(0.95)} 0 0 0 0 0 0 0 0 0 0 0 0 0
{s(0.2)} {s(0.95)} {s(0.1)} 0 0 30 0 20 0 0 0 0 10 0 0
"""


@pytest.mark.parametrize("unit,scale", [("m", 1.0), ("cm", 0.01), ("mm", 0.001), ("inch", 0.0254)])
def test_unit_detection_gives_the_same_metres(tmp_path, unit, scale):
    reference = read_bvh(write(tmp_path, _human(1.0), "m.bvh"), unit="m")
    m = read_bvh(write(tmp_path, _human(scale), f"{unit}.bvh"))
    assert m.unit == unit
    assert m.scale_to_metres == scale
    assert m.height == pytest.approx(1.7, abs=1e-4)
    np.testing.assert_allclose(m.positions, reference.positions, atol=1e-5)
    np.testing.assert_allclose(m.offsets[1], [0, 0.5, 0], atol=1e-5)
    # An explicit unit gives the same result.
    np.testing.assert_allclose(read_bvh(tmp_path / f"{unit}.bvh", unit=unit).positions, m.positions)


def test_unit_detection_fails_clearly_when_nothing_fits(tmp_path):
    path = write(tmp_path, _human(1.0 / 300.0), "giant.bvh")  # 510 file units: no unit makes that 1-2.5 m
    with pytest.raises(DataError, match="giant.bvh.*unit"):
        read_bvh(path)
    with pytest.raises(ValueError, match="unit"):
        read_bvh(path, unit="furlong")


BAD_INPUTS = {
    "channel_declared_but_not_listed": (
        ZXY.replace("CHANNELS 3 Zrotation Xrotation Yrotation\n    JOINT Head",
                    "CHANNELS 3 Zrotation Xrotation\n    JOINT Head"), r"line 9: .*declares 3 channels but lists 2"),
    "missing_channel_value": (ZXY.replace("1 2 3 90 0 0 0 90 0 0 0 0", "1 2 3 90 0 0 0 90 0 0 0"),
                              r"line 25: frame line has 11 values .* 12 channels"),
    "truncated_frame_line": (ZXY.replace("1 2 3 90 0 0 0 90 0 0 0 0", "1 2 3 90"),
                             r"line 25: frame line has 4 values"),
    "nan_value": (ZXY.replace("1 2 3 90 0 0 0 90", "1 2 3 nan 0 0 0 90"), r"line 25: .*NaN"),
    "inf_value": (ZXY.replace("1 2 3 0 0 0", "1 2 inf 0 0 0"), r"line 24: .*NaN or infinite"),
    "not_a_number": (ZXY.replace("1 2 3 90", "1 2 x3 90"), r"line 25: 'x3' is not a number"),
    "fewer_frames_than_declared": (ZXY.replace("Frames: 2", "Frames: 5"), r"Frames: 5.*only 2 frame lines"),
    "more_frames_than_declared": (ZXY.replace("Frames: 2", "Frames: 1"), r"line 25: 'Frames: 1' but .* 2"),
    "unknown_channel": (ZXY.replace("CHANNELS 3 Zrotation Xrotation Yrotation\n    JOINT Head",
                                    "CHANNELS 3 Zrotation Wrotation Yrotation\n    JOINT Head"),
                        r"line 9: unknown channel name 'Wrotation'"),
    "missing_frames_header": (ZXY.replace("Frames: 2\n", ""), r"line 22: expected 'Frames:'"),
    "empty": ("", r"empty"),
    "whitespace_only": ("\n  \n", r"empty"),
    "no_motion_section": (ZXY.split("MOTION")[0], r"no MOTION section"),
    "bad_frame_time": (ZXY.replace("Frame Time: 0.033333", "Frame Time: 0"), r"line 23: 'Frame Time:' must be "
                                                                             r"positive"),
    "unclosed_joint": (ZXY.replace("  }\n}\nMOTION", "MOTION"), r"unexpected end of HIERARCHY"),
    "duplicate_joint": (ZXY.replace("JOINT Head", "JOINT Spine"), r"duplicate joint name 'Spine'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_data_error_naming_the_file(tmp_path, case):
    text, pattern = BAD_INPUTS[case]
    path = write(tmp_path, text, f"bad_{case}.bvh")
    with pytest.raises(DataError, match=pattern) as info:
        read_bvh(path, unit="m")
    assert str(path) in str(info.value)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nope.bvh"):
        read_bvh(tmp_path / "nope.bvh")


def test_many_frames_are_parsed_vectorised(tmp_path):
    """A long file: every frame goes through FK (checked by a rotation that changes each frame)."""
    header = ZXY.split("MOTION")[0]
    angles = np.linspace(0, 90, 500)
    lines = [f"0 0 0 {a:.6f} 0 0 0 0 0 0 0 0" for a in angles]
    text = header + f"MOTION\nFrames: {len(lines)}\nFrame Time: 0.01\n" + "\n".join(lines) + "\n"
    m = read_bvh(write(tmp_path, text), unit="m")
    assert m.fps == 100.0
    expected = np.stack([-10 * np.sin(np.radians(angles)), 10 * np.cos(np.radians(angles))], -1)
    np.testing.assert_allclose(m.positions[:, 1, :2], expected, atol=1e-5)
