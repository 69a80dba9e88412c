"""Training windows: random crops of a split's clips, encoded as HumanML3D-style features.

For ``2d`` supervision a window also carries its 2D keypoints (normalized image coordinates, in the motion
skeleton's joint order, confidence 0 where the detector's skeleton has no such joint) and its camera, moved into the
teacher window's canonical frame together with the joints (DESIGN.md, "Canonicalization moves the camera too").
A clip's V views keep their own axis (``(B, V, T, ...)``); a batch of clips with different view counts is padded to
the most views, the padding views masked (``view_mask``) with confidence 0.

Randomness is explicit: :meth:`MotionWindows.sample` takes a ``numpy.random.Generator``, so the training loop can
derive every batch from ``(seed, step)`` and a resumed run sees exactly the batches an uninterrupted run would.

Clips are read lazily and cached within a memory bound (:class:`MotionWindows`). Every clip is encoded whole
(:func:`videomdm.representation.encode`); a window is a slice of its features, which decodes starting at the origin
facing +z at its first frame (the floor stays the clip's lowest foot), as HumanML3D crops its training windows. For
``2d`` the camera is carried into that window's frame (:meth:`videomdm.representation.CanonicalFrames.window`).

Mirroring (``mirror`` > 0, training augmentation): a window is cut, with that probability, from the clip mirrored
left/right (:mod:`videomdm.data.mirror`: joints x → −x with left and right swapped, cameras ``M R M, M t``,
keypoints ``x → −x`` swapped alike). The mirrored clip is encoded exactly as the clip itself (its own
canonicalization and frames) and cached beside it under the same memory bound.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from torch import Tensor

from ..camera import pixels_to_normalized
from ..representation import FeatureLayout, Normalizer, RigidTransform, encode, encode_with_frames
from ..skeleton import Skeleton, get_skeleton, joint_map
from .clip import Clip, load_clip, read_clip_summary, read_dataset_index
from .errors import DataError
from .mirror import mirror_camera, mirror_joints, mirror_keypoints

__all__ = ["MotionWindows", "EncodedClip", "Batch", "collate", "MOTION_SOURCES", "Observations", "observed_keypoints", "clip_observations",
           "merge_moments", "mirror_observations"]

# Which clip field each supervision mode reads its 3D motion from (``2d`` reads the teacher and the keypoints).
MOTION_SOURCES = {"3d": "gt_3d", "teacher": "teacher_3d", "2d": "teacher_3d"}


@dataclass
class Batch:
    """A padded batch. ``features (B, T, D)`` unnormalized, ``mask (B, T)`` True = real frame, one caption per item
    (``""`` when the clip has none). With keypoints, per view: ``keypoints (B, V, T, J, 2)`` normalized image
    coordinates, ``confidence (B, V, T, J)`` (0 on padding frames and views), per-frame cameras ``R (B, V, T, 3, 3)``,
    ``t (B, V, T, 3)`` mapping the canonical frame of ``features`` to each view's camera, and ``view_mask (B, V)``
    True = a real view (a clip with fewer views than the batch's most is padded)."""

    features: Tensor
    mask: Tensor
    texts: list[str]
    keypoints: Tensor | None = None
    confidence: Tensor | None = None
    R: Tensor | None = None
    t: Tensor | None = None
    view_mask: Tensor | None = None

    def to(self, device: torch.device) -> "Batch":
        def move(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.to(device)

        return Batch(self.features.to(device), self.mask.to(device), self.texts, move(self.keypoints),
                     move(self.confidence), move(self.R), move(self.t), move(self.view_mask))


@dataclass
class Observations:
    """One clip's 2D observations in the motion skeleton's joint order, with a per-frame world→camera transform per
    view (V views; V = 1 for a monocular clip)."""

    keypoints: np.ndarray  # (V, T, J, 2) normalized image coordinates
    confidence: np.ndarray  # (V, T, J)
    R: np.ndarray  # (V, T, 3, 3)
    t: np.ndarray  # (V, T, 3)


def observed_keypoints(clip: Clip, skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """The clip's keypoints mapped to the motion skeleton: pixels ``(V, T, J, 2)`` and confidence ``(V, T, J)``.

    A derived joint (mean of several detector joints) is as confident as its least confident source; a joint the
    detector skeleton lacks gets confidence 0.
    """
    mapping = joint_map(get_skeleton(clip.keypoint_skeleton or skeleton.name), skeleton)
    uv = np.asarray(clip.keypoints_2d, dtype=np.float64)
    conf_src = np.asarray(clip.confidence, dtype=np.float64)
    conf_src = np.where(np.isfinite(uv).all(-1), conf_src, 0.0)
    uv_mapped, present = mapping.apply(np.nan_to_num(uv))
    conf = np.zeros(uv_mapped.shape[:-1])  # (V, T, J)
    for j, sources in enumerate(mapping.sources):
        if sources:
            conf[..., j] = conf_src[..., list(sources)].min(axis=-1)
    conf[..., ~present] = 0.0
    return uv_mapped, conf


def clip_observations(clip, skeleton, where: str | Path = "") -> Observations:
    """Map a clip's keypoints to the motion skeleton (:func:`observed_keypoints`) and normalize them with its
    intrinsics (``where`` names the clip's file in errors)."""
    if clip.keypoints_2d is None or clip.K is None or clip.R is None or clip.t is None:
        raise DataError(f"{where or 'clip'}: clip {clip.name} has no keypoints_2d/K/R/t")
    uv, conf = observed_keypoints(clip, skeleton)  # (V, T, J, 2), (V, T, J)
    views, num_frames = uv.shape[:2]
    R = np.broadcast_to(clip.R[:, None], (views, num_frames, 3, 3)) if clip.R.ndim == 3 else clip.R
    t = np.broadcast_to(clip.t[:, None], (views, num_frames, 3)) if clip.t.ndim == 2 else clip.t
    xy = pixels_to_normalized(torch.from_numpy(uv), torch.as_tensor(clip.K, dtype=torch.float64)).numpy()
    return Observations(xy.astype(np.float32), conf.astype(np.float32), np.asarray(R, np.float32),
                        np.asarray(t, np.float32))


@dataclass
class EncodedClip:
    """One clip as windows are cut from it: whole-clip features, and with keypoints the world → window-frame
    transform of the window starting at each frame (:meth:`CanonicalFrames.window`, ``rotation (T, 3, 3)``,
    ``translation (T, 3)``) and its observations."""

    features: Tensor  # (T, D) float32
    windows: RigidTransform | None = None
    observations: Observations | None = None

    @property
    def nbytes(self) -> int:
        """Approximate memory held (the arrays that grow with T)."""
        size = self.features.numel() * self.features.element_size()
        if self.observations is not None:
            size += sum(a.nbytes for a in (self.observations.keypoints, self.observations.confidence,
                                           self.observations.R, self.observations.t))
        if self.windows is not None:
            size += sum(x.numel() * x.element_size() for x in (self.windows.rotation, self.windows.translation))
        return size


def collate(items: list[Batch]) -> Batch:
    """One-item batches ``(1, T_i, ...)`` (views ``(1, V_i, T_i, ...)``) → one batch padded to the longest window and
    the most views: features and keypoints with zeros, mask False and confidence 0, the camera of the last real
    frame repeated; a padding view repeats the item's first view's camera (any valid camera: its confidence is 0 and
    ``view_mask`` False)."""
    length = max(item.features.shape[1] for item in items)
    views = max(item.keypoints.shape[1] for item in items) if items[0].keypoints is not None else 0

    def pad(x: Tensor, dim: int, size: int, edge: bool) -> Tensor:
        extra = size - x.shape[dim]
        if extra == 0:
            return x
        shape = x.shape[:dim] + (extra,) + x.shape[dim + 1:]
        fill = x.narrow(dim, x.shape[dim] - 1 if dim == 2 else 0, 1).expand(shape) if edge else x.new_zeros(shape)
        return torch.cat([x, fill], dim=dim)

    def stack(name: str, edge: bool = False, viewed: bool = False) -> Tensor | None:
        if getattr(items[0], name) is None:
            return None
        padded = []
        for item in items:
            x = getattr(item, name)
            if viewed:  # (1, V_i, T_i, ...): frames, then views
                x = pad(pad(x, 2, length, edge), 1, views, edge)
            else:  # (1, T_i, ...), or the view mask (1, V_i)
                x = pad(x, 1, views if name == "view_mask" else length, edge)
            padded.append(x)
        return torch.cat(padded)

    return Batch(stack("features"), stack("mask"), [item.texts[0] for item in items], stack("keypoints", viewed=True),
                 stack("confidence", viewed=True), stack("R", edge=True, viewed=True),
                 stack("t", edge=True, viewed=True), stack("view_mask"))


class MotionWindows:
    """The 3D motions of one split of a prepared dataset, served as random windows.

    Clips are read lazily: the constructor reads only each file's name, captions and frame count (array headers,
    :func:`~videomdm.data.clip.read_clip_summary`); a clip is loaded and encoded when a window of it is asked for and
    kept in a least-recently-used cache of at most ``cache_mb`` megabytes, so memory is bounded by the cache, not by
    the dataset. A split smaller than the cache is encoded once and then served from memory.

    Args:
        root: dataset folder (with ``dataset.json``).
        split: split name (``train``, ``test``, ...).
        motion_field: ``gt_3d`` or ``teacher_3d``.
        num_frames: window length (longer clips are cropped at random, shorter ones padded).
        min_frames: clips shorter than this are skipped (and counted in ``skipped``).
        cache_mb: bound of the encoded-clip cache, megabytes (0 = no cache: every window reads its clip).
        mirror: probability that a window is cut from the clip mirrored left/right (module docstring); 0 = never
            (and no random number is drawn for it, so the windows of existing runs are unchanged).
    """

    def __init__(self, root: Path, split: str, *, motion_field: str, num_frames: int, min_frames: int,
                 skeleton: str = "smpl22", fps: float = 20.0, contact_threshold: float = 0.002,
                 facing_sigma: float = 20.0, with_keypoints: bool = False, cache_mb: float = 1024.0,
                 mirror: float = 0.0) -> None:
        index = read_dataset_index(Path(root))
        if abs(index.fps - fps) > 1e-6:
            raise DataError(f"{root}: dataset is at {index.fps} fps but the config expects {fps} fps")
        if index.skeleton != skeleton:
            raise DataError(f"{root}: dataset skeleton is {index.skeleton} but the config expects {skeleton}")
        if motion_field not in ("gt_3d", "teacher_3d"):
            raise ValueError(f"motion_field must be gt_3d or teacher_3d, got {motion_field!r}")
        if not 0.0 <= mirror <= 1.0:
            raise ValueError(f"mirror is a probability in [0, 1], got {mirror}")
        self.skeleton = get_skeleton(skeleton)
        self.layout = FeatureLayout(self.skeleton.num_joints)
        self.num_frames = num_frames
        self.motion_field = motion_field
        self.encode_kwargs = {"contact_threshold": contact_threshold, "facing_sigma": facing_sigma}
        self.with_keypoints = with_keypoints
        self.mirror = mirror
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: OrderedDict[tuple[int, bool], EncodedClip] = OrderedDict()  # (clip index, mirrored)
        self._cached_bytes = 0
        # Only the fields this mode reads are loaded; ground truth in particular never reaches other modes.
        needed = {motion_field, *(("keypoints_2d", "confidence", "K", "R", "t") if with_keypoints else ())}
        self._skip = tuple(f for f in ("gt_3d", "teacher_3d", "keypoints_2d", "confidence", "K", "R", "t")
                           if f not in needed)
        self.paths: list[Path] = []
        self.lengths: list[int] = []  # frames of each clip's motion
        self.texts: list[list[str]] = []
        self.names: list[str] = []
        self.skipped = 0
        for path in index.clip_paths(split):
            summary = read_clip_summary(path)
            length = summary.frames.get(motion_field)
            if length is None:
                raise DataError(f"{path}: clip {summary.name} has no {motion_field}, needed by this supervision mode")
            if length < min_frames:
                self.skipped += 1
                continue
            self.paths.append(path)
            self.lengths.append(length)
            self.texts.append(summary.text)
            self.names.append(summary.name)
        if not self.paths:
            raise DataError(f"{root}: split {split!r} has no clip with at least {min_frames} frames of {motion_field}")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def has_text(self) -> bool:
        return any(self.texts)

    def encode(self, joints: np.ndarray | Tensor) -> Tensor:
        """(T, J, 3) joints → (T, D) float32 features."""
        joints = torch.as_tensor(joints, dtype=torch.float32)
        return encode(joints, self.skeleton, **self.encode_kwargs)

    def clip(self, index: int, mirrored: bool = False) -> EncodedClip:
        """Clip ``index`` encoded (``mirrored``: the clip mirrored left/right, then encoded), from the cache or read
        from its file (then cached, evicting the least recently used clips beyond ``cache_mb``)."""
        key = (index, mirrored)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        encoded = self._load(index, mirrored)
        size = encoded.nbytes
        if size <= self.cache_bytes:
            self._cache[key] = encoded
            self._cached_bytes += size
            while self._cached_bytes > self.cache_bytes:
                _, evicted = self._cache.popitem(last=False)
                self._cached_bytes -= evicted.nbytes
        return encoded

    def _load(self, index: int, mirrored: bool = False) -> EncodedClip:
        path = self.paths[index]
        clip = load_clip(path, skip=self._skip)
        motion = getattr(clip, self.motion_field)
        if motion is None or len(motion) != self.lengths[index]:
            raise DataError(f"{path}: clip {clip.name} changed since the dataset was indexed (expected "
                            f"{self.lengths[index]} frames of {self.motion_field})")
        motion = np.asarray(motion, dtype=np.float32)  # (T, J, 3)
        if mirrored:
            motion = mirror_joints(motion, self.skeleton.mirror_permutation)
        joints = torch.as_tensor(motion)
        if not self.with_keypoints:
            return EncodedClip(self.encode(joints))  # (T, D)
        observed = clip_observations(clip, self.skeleton, path)
        if observed.keypoints.shape[1] != len(motion):
            raise DataError(f"{path}: clip {clip.name} has {observed.keypoints.shape[1]} keypoint frames but "
                            f"{len(motion)} frames of {self.motion_field}")
        if mirrored:
            observed = mirror_observations(observed, self.skeleton.mirror_permutation)
        # Features and the windows' frames from one canonicalization of the clip.
        features, frames = encode_with_frames(joints, self.skeleton, **self.encode_kwargs)
        return EncodedClip(features, frames.window(torch.arange(len(features))), observed)

    def sample(self, index: int, rng: np.random.Generator) -> Batch:
        """A random window of clip ``index`` as a batch of one: features ``(1, T_w, D)``, a random caption, and
        (with keypoints) its observations with the camera carried into the window's frame.

        Draws from ``rng``, in order: the window's start, the caption, and (only when ``mirror`` > 0) whether the
        window is mirrored, so a run with mirroring sees the windows and captions of the same run without it."""
        clip_frames = self.lengths[index]  # == len(self.clip(index).features), checked when a clip is loaded
        length = min(clip_frames, self.num_frames)
        start = int(rng.integers(0, clip_frames - length + 1))
        captions = self.texts[index]
        text = captions[int(rng.integers(len(captions)))] if captions else ""
        mirrored = self.mirror > 0 and bool(rng.random() < self.mirror)
        clip = self.clip(index, mirrored)
        features = clip.features[start:start + length][None]  # (1, T_w, D)
        mask = torch.ones(1, length, dtype=torch.bool)
        if not self.with_keypoints:
            return Batch(features, mask, [text])
        obs = clip.observations
        views = len(obs.keypoints)
        # The cameras carried into the window's frame x' = A x + b (eq. 5 of camera.transform_camera): R' = R Aᵀ,
        # t' = t − R' b; in numpy, whose calls on arrays this small cost a fraction of torch's.
        rotation, translation = clip.windows.rotation[start].numpy(), clip.windows.translation[start].numpy()
        R = obs.R[:, start:start + length] @ rotation.T  # (V, T_w, 3, 3)
        t = obs.t[:, start:start + length] - R @ translation  # (V, T_w, 3)
        return Batch(features, mask, [text], torch.from_numpy(obs.keypoints[:, start:start + length])[None],
                     torch.from_numpy(obs.confidence[:, start:start + length])[None], torch.from_numpy(R)[None],
                     torch.from_numpy(t)[None], torch.ones(1, views, dtype=torch.bool))

    def batch(self, indices: list[int], rng: np.random.Generator) -> Batch:
        """Windows of the given clips, drawn in order from ``rng`` and padded together (:func:`collate`)."""
        return collate([self.sample(i, rng) for i in indices])

    def normalizer(self, *, smoothing: float = 0.0) -> Normalizer:
        """Feature mean/std over every frame of every whole clip of the split, streamed clip by clip (float64 sums
        merged with Chan et al.'s pairwise update), so memory does not grow with the split: equal, within float
        rounding, to :meth:`Normalizer.from_features` of all clips' features concatenated.

        ``smoothing`` > 0: the statistics are taken of each clip's joints smoothed over time by a Gaussian of that
        std (frames), so that a lifter's per-frame jitter does not inflate them (its root velocity std is several
        times that of real motion: every diffusion level would then add that much more noise to the root).
        """
        count, mean, sum_squares = 0, None, None
        for index in range(len(self)):
            if smoothing > 0:
                motion = getattr(load_clip(self.paths[index], skip=self._skip), self.motion_field)
                rows = self.encode(gaussian_filter1d(np.asarray(motion, np.float64), smoothing, axis=0,
                                                     mode="nearest")).to(torch.float64)  # (T, D)
            else:
                rows = self.clip(index).features.to(torch.float64)  # (T, D)
            moments = (rows.shape[0], rows.mean(0), ((rows - rows.mean(0)) ** 2).sum(0))
            count, mean, sum_squares = moments if mean is None else merge_moments((count, mean, sum_squares), moments)
        return Normalizer.from_moments(count, mean, sum_squares)


def mirror_observations(observations: Observations, permutation: np.ndarray) -> Observations:
    """A clip's observations (V views, T frames, J joints of the skeleton ``permutation (J,)`` belongs to) as seen
    in the mirrored world: keypoints and confidence (Mi-3) and every view's per-frame camera (Mi-2) of
    :mod:`videomdm.data.mirror`."""
    keypoints, confidence = mirror_keypoints(observations.keypoints, observations.confidence, permutation)
    R, t = mirror_camera(observations.R, observations.t)
    return Observations(keypoints, confidence, R, t)


def merge_moments(a: tuple[int, Tensor, Tensor], b: tuple[int, Tensor, Tensor]) -> tuple[int, Tensor, Tensor]:
    """Count, ``(D,)`` mean and ``(D,)`` summed squared deviations of two row sets joined (Chan, Golub & LeVeque
    1979): ``δ = m_b − m_a``, ``m = m_a + δ n_b / n``, ``M2 = M2_a + M2_b + δ² n_a n_b / n``."""
    (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) = a, b
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta**2 * (n_a * n_b / n)
