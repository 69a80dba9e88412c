"""Training windows: random crops of a split's clips, encoded as HumanML3D-style features.

For ``2d`` supervision a window also carries its 2D keypoints (normalized image coordinates, in the motion
skeleton's joint order, confidence 0 where the detector's skeleton has no such joint) and its camera, moved into the
teacher window's canonical frame together with the joints (DESIGN.md, "Canonicalization moves the camera too").

Randomness is explicit: :meth:`MotionWindows.sample` takes a ``numpy.random.Generator``, so the training loop can
derive every batch from ``(seed, step)`` and a resumed run sees exactly the batches an uninterrupted run would.

Every clip is encoded once, whole (:func:`videomdm.representation.encode`); a window is a slice of its features, which
decodes starting at the origin facing +z at its first frame (the floor stays the clip's lowest foot), as HumanML3D
crops its training windows. For ``2d`` the camera is carried into that window's frame
(:meth:`videomdm.representation.CanonicalFrames.window`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..camera import pixels_to_normalized, transform_camera
from ..representation import CanonicalFrames, FeatureLayout, Normalizer, canonical_frames, encode
from ..skeleton import get_skeleton, joint_map
from .clip import load_clip, read_dataset_index
from .errors import DataError

__all__ = ["MotionWindows", "Batch", "MOTION_SOURCES", "Observations", "clip_observations"]

# Which clip field each supervision mode reads its 3D motion from (``2d`` reads the teacher and the keypoints).
MOTION_SOURCES = {"3d": "gt_3d", "teacher": "teacher_3d", "2d": "teacher_3d"}


@dataclass
class Batch:
    """A padded batch. ``features (B, T, D)`` unnormalized, ``mask (B, T)`` True = real frame, one caption per item
    (``""`` when the clip has none). With keypoints: ``keypoints (B, T, J, 2)`` normalized image coordinates,
    ``confidence (B, T, J)`` (0 on padding), per-frame camera ``R (B, T, 3, 3)``, ``t (B, T, 3)`` mapping the
    canonical frame of ``features`` to the camera."""

    features: Tensor
    mask: Tensor
    texts: list[str]
    keypoints: Tensor | None = None
    confidence: Tensor | None = None
    R: Tensor | None = None
    t: Tensor | None = None

    def to(self, device: torch.device) -> "Batch":
        def move(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.to(device)

        return Batch(self.features.to(device), self.mask.to(device), self.texts, move(self.keypoints),
                     move(self.confidence), move(self.R), move(self.t))


@dataclass
class Observations:
    """One clip's 2D observations in the motion skeleton's joint order, with a per-frame world→camera transform."""

    keypoints: np.ndarray  # (T, J, 2) normalized image coordinates
    confidence: np.ndarray  # (T, J)
    R: np.ndarray  # (T, 3, 3)
    t: np.ndarray  # (T, 3)


def clip_observations(clip, skeleton, where: str | Path = "") -> Observations:
    """Map a clip's keypoints to the motion skeleton and normalize them with its intrinsics (``where`` names the
    clip's file in errors)."""
    if clip.keypoints_2d is None or clip.K is None or clip.R is None or clip.t is None:
        raise DataError(f"{where or 'clip'}: clip {clip.name} has no keypoints_2d/K/R/t")
    mapping = joint_map(get_skeleton(clip.keypoint_skeleton or skeleton.name), skeleton)
    uv, present = mapping.apply(clip.keypoints_2d.astype(np.float64))  # (T, J, 2)
    conf_src = clip.confidence.astype(np.float64)[..., None]  # (T, J2, 1)
    # A derived joint is as confident as its least confident source; missing joints get 0.
    conf = np.stack([conf_src[:, list(src), 0].min(axis=1) if src else np.zeros(len(uv)) for src in mapping.sources],
                    axis=1)
    conf[:, ~present] = 0.0
    num_frames = len(uv)
    R = np.broadcast_to(clip.R, (num_frames, 3, 3)) if clip.R.ndim == 2 else clip.R
    t = np.broadcast_to(clip.t, (num_frames, 3)) if clip.t.ndim == 1 else clip.t
    xy = pixels_to_normalized(torch.from_numpy(uv), torch.as_tensor(clip.K, dtype=torch.float64)).numpy()
    return Observations(xy.astype(np.float32), conf.astype(np.float32), np.asarray(R, np.float32),
                      np.asarray(t, np.float32))


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
                 facing_sigma: float = 20.0, with_keypoints: bool = False) -> None:
        index = read_dataset_index(Path(root))
        if abs(index.fps - fps) > 1e-6:
            raise DataError(f"{root}: dataset is at {index.fps} fps but the config expects {fps} fps")
        if index.skeleton != skeleton:
            raise DataError(f"{root}: dataset skeleton is {index.skeleton} but the config expects {skeleton}")
        self.skeleton = get_skeleton(skeleton)
        self.layout = FeatureLayout(self.skeleton.num_joints)
        self.num_frames = num_frames
        self.encode_kwargs = {"contact_threshold": contact_threshold, "facing_sigma": facing_sigma}
        self.features: list[Tensor] = []  # (T_i, D) float32 features of each whole clip
        self.frames: list[CanonicalFrames] = []  # with keypoints: where each clip's windows decode
        self.texts: list[list[str]] = []
        self.names: list[str] = []
        self.observations: list[Observations] = []
        self.with_keypoints = with_keypoints
        self.skipped = 0
        # Ground truth is read only when it is the training target: other modes never load it.
        skip = () if motion_field == "gt_3d" else ("gt_3d",)
        for path in index.clip_paths(split):
            clip = load_clip(path, skip=skip)
            motion = getattr(clip, motion_field)
            if motion is None:
                raise DataError(f"{path}: clip {clip.name} has no {motion_field}, needed by this supervision mode")
            if motion.shape[0] < min_frames:
                self.skipped += 1
                continue
            if with_keypoints:
                observed = clip_observations(clip, self.skeleton, path)
                if len(observed.keypoints) != len(motion):
                    raise DataError(f"{path}: clip {clip.name} has {len(observed.keypoints)} keypoint frames but "
                                    f"{len(motion)} frames of {motion_field}")
                self.observations.append(observed)
            motion = torch.as_tensor(np.asarray(motion, dtype=np.float32))
            self.features.append(self.encode(motion))  # (T, D)
            if with_keypoints:
                self.frames.append(canonical_frames(motion, self.skeleton, facing_sigma=facing_sigma))
            self.texts.append(list(clip.text))
            self.names.append(clip.name)
        if not self.features:
            raise DataError(f"{root}: split {split!r} has no clip with at least {min_frames} frames of {motion_field}")

    def __len__(self) -> int:
        return len(self.features)

    @property
    def has_text(self) -> bool:
        return any(self.texts)

    def encode(self, joints: np.ndarray | Tensor) -> Tensor:
        """(T, J, 3) joints → (T, D) float32 features."""
        joints = torch.as_tensor(joints, dtype=torch.float32)
        return encode(joints, self.skeleton, **self.encode_kwargs)

    def sample(self, index: int, rng: np.random.Generator) -> Batch:
        """A random window of clip ``index`` as a batch of one: features ``(1, T_w, D)``, a random caption, and
        (with keypoints) its observations with the camera carried into the window's frame."""
        clip_features = self.features[index]
        length = min(len(clip_features), self.num_frames)
        start = int(rng.integers(0, len(clip_features) - length + 1))
        captions = self.texts[index]
        text = captions[int(rng.integers(len(captions)))] if captions else ""
        features = clip_features[start:start + length][None]  # (1, T_w, D)
        mask = torch.ones(1, length, dtype=torch.bool)
        if not self.with_keypoints:
            return Batch(features, mask, [text])
        obs = self.observations[index]
        window = self.frames[index].window(start)
        R, t = transform_camera(torch.from_numpy(obs.R[start:start + length])[None],  # (1, T_w, 3, 3)
                                torch.from_numpy(obs.t[start:start + length])[None],  # (1, T_w, 3)
                                window.rotation[None], window.translation[None])
        return Batch(features, mask, [text], torch.from_numpy(obs.keypoints[start:start + length])[None],
                     torch.from_numpy(obs.confidence[start:start + length])[None], R, t)

    def batch(self, indices: list[int], rng: np.random.Generator) -> Batch:
        """Windows of the given clips, padded to the longest (features and keypoints with zeros, confidence 0,
        the camera of the last real frame repeated)."""
        items = [self.sample(i, rng) for i in indices]
        length = max(item.features.shape[1] for item in items)

        def pad(x: Tensor, mode: str = "zeros") -> Tensor:  # (1, T_w, ...) -> (1, length, ...)
            extra = length - x.shape[1]
            if extra == 0:
                return x
            fill = x[:, -1:].expand(1, extra, *x.shape[2:]) if mode == "edge" else x.new_zeros(1, extra, *x.shape[2:])
            return torch.cat([x, fill], dim=1)

        def stack(name: str, mode: str = "zeros") -> Tensor | None:
            if getattr(items[0], name) is None:
                return None
            return torch.cat([pad(getattr(item, name), mode) for item in items])

        return Batch(stack("features"), stack("mask"), [item.texts[0] for item in items], stack("keypoints"),
                     stack("confidence"), stack("R", "edge"), stack("t", "edge"))

    def normalizer(self) -> Normalizer:
        """Feature mean/std over every whole clip of the split."""
        return Normalizer.from_features(torch.cat(self.features, dim=0))
