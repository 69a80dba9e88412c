"""The evaluator networks behind the distribution metrics of :mod:`videomdm.metrics` (FID, KID, diversity,
precision/recall, R-precision): each maps motions (and captions) to the feature vectors those metrics compare.

- :mod:`.contrastive`: the project's own evaluator, a contrastive motion encoder trained once per dataset on the
  ``gt_3d`` of its train split (:func:`train_evaluator`, :func:`load_evaluator`, :func:`sanity_table`);
- :mod:`.guo`: the HumanML3D standard evaluator of Guo et al. (CVPR 2022), loaded from the user's files
  (:func:`load_guo_evaluator`);
- :mod:`.common`: what both share (:class:`EvaluatorError`, batched feature encoding).
"""

from .common import EvaluatorError
from .contrastive import (DEGRADATIONS, EVALUATOR_VERSION, META_NAME, WEIGHTS_NAME, Evaluator, EvaluatorConfig,
                          EvaluatorNetworks, MotionEncoder, RealismProbe, TextHead, dataset_identity, jitter_joints,
                          load_evaluator, reverse_joints, sanity_table, slide_joints, train_evaluator)
from .guo import GuoEvaluator, MotionEncoderBiGRUCo, MovementConvEncoder, TextEncoderBiGRUCo, load_guo_evaluator

__all__ = [
    "EVALUATOR_VERSION",
    "WEIGHTS_NAME",
    "META_NAME",
    "EvaluatorError",
    "EvaluatorConfig",
    "DEGRADATIONS",
    "MotionEncoder",
    "RealismProbe",
    "TextHead",
    "EvaluatorNetworks",
    "Evaluator",
    "train_evaluator",
    "load_evaluator",
    "dataset_identity",
    "jitter_joints",
    "slide_joints",
    "reverse_joints",
    "sanity_table",
    "MovementConvEncoder",
    "MotionEncoderBiGRUCo",
    "TextEncoderBiGRUCo",
    "GuoEvaluator",
    "load_guo_evaluator",
]
