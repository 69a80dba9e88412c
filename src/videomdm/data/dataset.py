"""Training windows: random crops of a split's clips, encoded as HumanML3D-style features.

Randomness is explicit: :meth:`MotionWindows.sample` takes a ``numpy.random.Generator``, so the training loop can
derive every batch from ``(seed, step)`` and a resumed run sees exactly the batches an uninterrupted run would.
Each window is canonicalized at its own first frame by :func:`videomdm.representation.encode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..representation import FeatureLayout, Normalizer, encode
from ..skeleton import get_skeleton
from .clip import load_clip, read_dataset_index
from .errors import DataError

__all__ = ["MotionWindows", "Batch", "MOTION_SOURCES"]

# Which clip field supervision reads its 3D motion from.
MOTION_SOURCES = {"3d": "gt_3d", "teacher": "teacher_3d"}


@dataclass
class Batch:
    """A padded batch. ``features (B, T, D)`` unnormalized, ``mask (B, T)`` True = real frame, one caption per item
    (``""`` when the clip has none)."""

    features: Tensor
    mask: Tensor
    texts: list[str]

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.features.to(device), self.mask.to(device), self.texts)


class MotionWindows:
    """The 3D motions of one split of a prepared dataset, served as random windows.

    Args:
        root: dataset folder (with ``dataset.json``).
        split: split name (``train``, ``test``, ...).
        motion_field: ``gt_3d`` or ``teacher_3d``.
        num_frames: window length (longer clips are cropped at random, shorter ones padded).
        min_frames: clips shorter than this are skipped (and counted in ``skipped``).
    """

    def __init__(self, root: Path, split: str, *, motion_field: str, num_frames: int, min_frames: int,
                 skeleton: str = "smpl22", fps: float = 20.0, contact_threshold: float = 0.002,
                 facing_sigma: float = 20.0) -> None:
        index = read_dataset_index(Path(root))
        if abs(index.fps - fps) > 1e-6:
            raise DataError(f"{root}: dataset is at {index.fps} fps but the config expects {fps} fps")
        if index.skeleton != skeleton:
            raise DataError(f"{root}: dataset skeleton is {index.skeleton} but the config expects {skeleton}")
        self.skeleton = get_skeleton(skeleton)
        self.layout = FeatureLayout(self.skeleton.num_joints)
        self.num_frames = num_frames
        self.encode_kwargs = {"contact_threshold": contact_threshold, "facing_sigma": facing_sigma}
        self.motions: list[np.ndarray] = []  # (T_i, J, 3) float32 metres
        self.texts: list[list[str]] = []
        self.names: list[str] = []
        self.skipped = 0
        for path in index.clip_paths(split):
            clip = load_clip(path)
            motion = getattr(clip, motion_field)
            if motion is None:
                raise DataError(f"{path}: clip {clip.name} has no {motion_field}, needed by this supervision mode")
            if motion.shape[0] < min_frames:
                self.skipped += 1
                continue
            self.motions.append(np.asarray(motion, dtype=np.float32))
            self.texts.append(list(clip.text))
            self.names.append(clip.name)
        if not self.motions:
            raise DataError(f"{root}: split {split!r} has no clip with at least {min_frames} frames of {motion_field}")

    def __len__(self) -> int:
        return len(self.motions)

    @property
    def has_text(self) -> bool:
        return any(self.texts)

    def encode(self, joints: np.ndarray | Tensor) -> Tensor:
        """(T, J, 3) joints → (T, D) float32 features."""
        joints = torch.as_tensor(joints, dtype=torch.float32)
        return encode(joints, self.skeleton, **self.encode_kwargs)

    def sample(self, index: int, rng: np.random.Generator) -> tuple[Tensor, str]:
        """A random window of clip ``index`` as features ``(T_w, D)`` and a random caption of it."""
        motion = self.motions[index]
        length = min(len(motion), self.num_frames)
        start = int(rng.integers(0, len(motion) - length + 1))
        captions = self.texts[index]
        text = captions[int(rng.integers(len(captions)))] if captions else ""
        return self.encode(motion[start:start + length]), text

    def batch(self, indices: list[int], rng: np.random.Generator) -> Batch:
        """Windows of the given clips, padded to the longest with zeros."""
        items = [self.sample(i, rng) for i in indices]
        length = max(f.shape[0] for f, _ in items)
        features = torch.zeros(len(items), length, self.layout.dim)
        mask = torch.zeros(len(items), length, dtype=torch.bool)
        for b, (f, _) in enumerate(items):
            features[b, : f.shape[0]] = f
            mask[b, : f.shape[0]] = True
        return Batch(features, mask, [text for _, text in items])

    def normalizer(self) -> Normalizer:
        """Feature mean/std over every whole clip of the split (each encoded from its own first frame)."""
        features = [self.encode(m) for m in self.motions]
        return Normalizer.from_features(torch.cat(features, dim=0))
