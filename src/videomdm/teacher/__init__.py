"""The noisy teacher: where a clip's ``teacher_3d`` comes from.

- :mod:`.factory`: the :class:`Teacher` protocol and :func:`make_teacher`, the one way to build a teacher of any kind
  (it refuses a lifter asked to lift the split it was trained on);
- :mod:`.lifter`: the built-in temporal lifter: network, input normalization, training, loading, lifting a clip;
- :mod:`.grounding`: root-relative camera-frame joints placed on their keypoint rays, in the world frame;
- :mod:`.corrupt`: the ground truth damaged by a parametric model of lifter errors (controlled experiments);
- :mod:`.file`: per-clip 3D arrays from an external lifter, in one ``.npz``;
- :mod:`.detector`: the 2D detector's own 3D (MediaPipe BlazePose), grounded and mapped to SMPL-22;
- :mod:`.triangulate`: a calibrated rig's views triangulated, mapped to SMPL-22 and grounded;
- :mod:`.arrays`: array helpers the modules above share.
"""

from .corrupt import CorruptionParams, corrupt_teacher
from .detector import detector_teacher
from .factory import TEACHER_KINDS, LiftedData, Teacher, TrainingSplitError, make_teacher
from .file import TeacherFile, load_teacher_file
from .grounding import ground_to_world, solve_root_translation
from .triangulate import TriangulatedTeacher, TriangulatingTeacher, triangulate_teacher
from .lifter import (LIFTER_INFO, LIFTER_WEIGHTS, Lifter, LifterConfig, NormalizedKeypoints, TemporalLifter,
                     build_network, evaluate_lifter, lift_clip, load_lifter, normalize_keypoints, train_lifter)

__all__ = [
    "TEACHER_KINDS",
    "Teacher",
    "LiftedData",
    "TrainingSplitError",
    "make_teacher",
    "LIFTER_WEIGHTS",
    "LIFTER_INFO",
    "LifterConfig",
    "TemporalLifter",
    "Lifter",
    "NormalizedKeypoints",
    "build_network",
    "normalize_keypoints",
    "train_lifter",
    "load_lifter",
    "lift_clip",
    "evaluate_lifter",
    "solve_root_translation",
    "ground_to_world",
    "detector_teacher",
    "CorruptionParams",
    "corrupt_teacher",
    "TeacherFile",
    "load_teacher_file",
    "TriangulatedTeacher",
    "TriangulatingTeacher",
    "triangulate_teacher",
]
