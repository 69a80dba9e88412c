"""2D observations of mocap through virtual cameras: what a good 2D detector would report for a filmed motion.

A mocap clip (``gt_3d (T, J, 3)``, metres, world frame y up) is filmed by random static pinhole cameras
(:func:`camera_for_clip`), projected to pixels (``camera.project_to_pixels``) and corrupted by a detector-like noise
model (:class:`DetectorNoise`, :func:`simulate_detections`). :func:`observe_clip` does all three and returns one
observed :class:`~videomdm.data.clip.Clip` per camera, in the record format of ``DESIGN.md``.

Randomness is explicit: every function takes a ``numpy.random.Generator`` and draws from nothing else, so the same
generator state gives the same cameras and the same noise.

:func:`observe_rig` films a clip with the same cameras but returns one multi-view clip (a virtual calibrated rig of
synchronized cameras, DESIGN.md "Views") instead of one monocular clip per camera.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..camera import DEFAULT_MIN_DEPTH, in_front, project_to_pixels, sample_cameras, world_to_camera
from ..skeleton import Skeleton, get_skeleton
from .clip import Clip
from .errors import DataError

__all__ = [
    "DetectorNoise",
    "simulate_detections",
    "camera_for_clip",
    "observe_clip",
    "observe_rig",
    "DEFAULT_DISTANCE",
    "DEFAULT_ELEVATION_DEG",
    "DEFAULT_AZIMUTH_DEG",
    "DEFAULT_FOCAL_PX",
    "DEFAULT_IMAGE_SIZE",
]

# Default virtual camera ranges: a person filmed from 4 to 7 m by a 720p camera with a normal lens
# (focal 800..1400 px ≈ 50..77° horizontal field of view), from slightly below to well above the hips, all around.
DEFAULT_DISTANCE = (4.0, 7.0)  # metres, camera centre to look-at point
DEFAULT_ELEVATION_DEG = (-5.0, 25.0)  # degrees, positive = camera above the look-at point
DEFAULT_AZIMUTH_DEG = (-180.0, 180.0)  # degrees, 0 = on the +z side of the subject
DEFAULT_FOCAL_PX = (800.0, 1400.0)  # pixels, fx = fy
DEFAULT_IMAGE_SIZE = (1280, 720)  # (width, height) pixels


@dataclass
class DetectorNoise:
    """A detector-like corruption of exact 2D keypoints; the defaults resemble a good modern 2D detector.

    Applied per frame ``t`` and joint ``j`` by :func:`simulate_detections`, in this order:

    1. **Jitter**: ``uv += n``, ``n ~ N(0, σ_t² I₂)`` with ``σ_t = severity · pixel_std · s_t`` pixels, where
       ``s_t`` is the size of the person's 2D bounding box in frame t: the larger of its height and width (its height for an
       upright person), over all joints of the clean keypoints. Independent across frames and joints.
    2. **Confidence** (lower where the error is larger, like a heatmap peak)::

           conf = clip(1 − 0.5 · ‖n‖ / (3 σ_t) + ε,  min_confidence, 1),    ε ~ N(0, confidence_noise²)

       ``‖n‖`` is the 2D error in pixels, so an error of 3σ halves the confidence; with σ > 0 the mean
       confidence of a jittered joint is about 0.79 (``E‖n‖ = σ √(π/2)``). Without jitter it is ``1 + ε``.
    3. **Drops** (occlusions): runs of consecutive frames where a joint is missing; confidence 0, the pixel value
       stays the (finite) jittered one. Run starts are a Bernoulli process per joint with rate
       ``−log(1 − r) / drop_burst`` (``r = min(severity · drop_rate, 0.95)``) and geometric lengths of mean
       ``drop_burst`` frames, so about a fraction ``r`` of all (frame, joint) entries is dropped.
    4. **Left/right swaps**: in a fraction ``min(severity · swap_rate, 1)`` of frames (independently per frame), one
       limb is mirrored: a random ``skeleton.left_right`` pair and every pair below it in the tree (e.g. the
       left and right knee, ankle and foot) exchange their pixels *and* confidences.

    ``severity`` scales the jitter, drop and swap rates together (0 = clean). :meth:`clean` gives exact keypoints
    with confidence 1.

    Attributes:
        pixel_std: jitter std as a fraction of the bounding-box size per frame (0.01 ≈ 7 px for a 700 px person).
        drop_rate: fraction of (frame, joint) entries dropped (confidence 0).
        drop_burst: mean length, in frames, of a drop run.
        swap_rate: fraction of frames in which one left/right limb pair is swapped.
        confidence_noise: std of the additive confidence noise ε.
        min_confidence: lower clip of the confidence of a detected (not dropped) joint.
        severity: multiplier of ``pixel_std``, ``drop_rate`` and ``swap_rate``.
    """

    pixel_std: float = 0.01
    drop_rate: float = 0.03
    drop_burst: float = 5.0
    swap_rate: float = 0.01
    confidence_noise: float = 0.05
    min_confidence: float = 0.05
    severity: float = 1.0

    def __post_init__(self) -> None:
        for name in ("pixel_std", "drop_rate", "swap_rate", "confidence_noise", "min_confidence", "severity"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"DetectorNoise.{name} must be a finite number >= 0, got {value}")
        if not self.drop_burst >= 1:
            raise ValueError(f"DetectorNoise.drop_burst must be >= 1 frame, got {self.drop_burst}")
        if self.min_confidence > 1:
            raise ValueError(f"DetectorNoise.min_confidence must be <= 1, got {self.min_confidence}")

    @classmethod
    def clean(cls) -> "DetectorNoise":
        """No noise: keypoints are the exact projections, every confidence is 1."""
        return cls(pixel_std=0.0, drop_rate=0.0, swap_rate=0.0, confidence_noise=0.0)


def _limb_swaps(skeleton: Skeleton) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each ``left_right`` pair, the (left indices, right indices) of that pair and of every pair below it."""
    pairs = [(skeleton.index(a), skeleton.index(b)) for a, b in skeleton.left_right]

    def below(ancestor: int, joint: int) -> bool:  # True if joint == ancestor or descends from it
        while joint >= 0:
            if joint == ancestor:
                return True
            joint = skeleton.parents[joint]
        return False

    limbs = []
    for left, right in pairs:
        members = [(a, b) for a, b in pairs if below(left, a) and below(right, b)]
        limbs.append((np.array([a for a, _ in members]), np.array([b for _, b in members])))
    return limbs


def _drop_mask(num_frames: int, num_joints: int, rate: float, burst: float, rng: np.random.Generator) -> np.ndarray:
    """(T, J) bool, True = dropped: runs of mean length ``burst`` covering about a fraction ``rate`` of entries."""
    if rate <= 0 or num_frames == 0:
        return np.zeros((num_frames, num_joints), dtype=bool)
    start_prob = -np.log1p(-rate) / burst  # Poisson approximation: P(not covered) = exp(−start_prob · burst)
    starts = rng.random((num_frames, num_joints)) < start_prob  # (T, J)
    lengths = rng.geometric(1.0 / burst, size=(num_frames, num_joints))  # (T, J), mean = burst, >= 1
    t_idx, j_idx = np.nonzero(starts)
    ends = np.minimum(t_idx + lengths[t_idx, j_idx], num_frames)
    coverage = np.zeros((num_frames + 1, num_joints), dtype=np.int64)  # difference array over frames
    np.add.at(coverage, (t_idx, j_idx), 1)
    np.add.at(coverage, (ends, j_idx), -1)
    return np.cumsum(coverage[:-1], axis=0) > 0


def simulate_detections(uv: np.ndarray, skeleton: Skeleton, noise: DetectorNoise,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt exact keypoints like a 2D detector would (see :class:`DetectorNoise` for the model).

    Args:
        uv: ``(T, J, 2)`` exact keypoints in pixels, in ``skeleton``'s joint order; must be finite.
        skeleton: the keypoints' skeleton (its ``left_right`` pairs define the swaps).
        noise: the noise model.
        rng: the only source of randomness.

    Returns:
        ``uv_noisy (T, J, 2)`` float32 pixels (finite everywhere, dropped joints included) and
        ``confidence (T, J)`` float32 in [0, 1], 0 exactly where a joint was dropped.
    """
    uv = np.asarray(uv, dtype=np.float64)
    if uv.ndim != 3 or uv.shape[-1] != 2 or uv.shape[1] != skeleton.num_joints:
        raise ValueError(f"uv must be (T, {skeleton.num_joints}, 2) for skeleton {skeleton.name}, got {uv.shape}")
    if not np.isfinite(uv).all():
        raise ValueError("uv must be finite")
    num_frames, num_joints, _ = uv.shape

    # 1. jitter, scaled by the person's size in each frame
    if num_frames:
        extent = uv.max(axis=1) - uv.min(axis=1)  # (T, 2) bounding box width, height
        size = extent.max(axis=1)  # (T,)
    else:
        size = np.zeros(0)
    sigma = noise.severity * noise.pixel_std * size  # (T,) pixels
    offset = rng.standard_normal(uv.shape) * sigma[:, None, None]  # (T, J, 2)
    noisy = uv + offset

    # 2. confidence from the error size
    error = np.linalg.norm(offset, axis=-1)  # (T, J) pixels
    ratio = np.where(sigma[:, None] > 0, error / (3 * np.maximum(sigma[:, None], 1e-12)), 0.0)
    eps = rng.standard_normal((num_frames, num_joints)) * noise.confidence_noise
    confidence = np.clip(1.0 - 0.5 * ratio + eps, noise.min_confidence, 1.0)

    # 3. drops in bursts
    drop_rate = min(noise.severity * noise.drop_rate, 0.95)
    dropped = _drop_mask(num_frames, num_joints, drop_rate, noise.drop_burst, rng)
    confidence[dropped] = 0.0

    # 4. left/right limb swaps
    swap_rate = min(noise.severity * noise.swap_rate, 1.0)
    limbs = _limb_swaps(skeleton)
    if swap_rate > 0 and limbs:
        swapped_frames = np.nonzero(rng.random(num_frames) < swap_rate)[0]
        choice = rng.integers(len(limbs), size=len(swapped_frames))
        for frame, k in zip(swapped_frames, choice):
            left, right = limbs[k]
            both, mirrored = np.concatenate([left, right]), np.concatenate([right, left])
            noisy[frame, both] = noisy[frame, mirrored]
            confidence[frame, both] = confidence[frame, mirrored]

    return noisy.astype(np.float32), confidence.astype(np.float32)


def _torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A CPU torch generator seeded from (and advancing) the numpy generator."""
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def camera_for_clip(joints: np.ndarray, rng: np.random.Generator, *,
                    distance: float | tuple[float, float] = DEFAULT_DISTANCE,
                    elevation_deg: float | tuple[float, float] = DEFAULT_ELEVATION_DEG,
                    azimuth_deg: float | tuple[float, float] = DEFAULT_AZIMUTH_DEG,
                    focal_px: float | tuple[float, float] = DEFAULT_FOCAL_PX,
                    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
                    root: int = 0, min_depth: float = 0.5, num_tries: int = 16,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One static camera filming a whole clip.

    The look-at target is the clip's mean root position (the pelvis for SMPL-22) in x, z and the mean mid-body height
    ``(min_j y + max_j y) / 2`` in y, jittered by up to 0.1 m (``camera.sample_cameras``). ``num_tries`` cameras are
    drawn from the ranges (a range is ``(low, high)``, sampled uniformly, or one number); the first one that sees
    every joint of every frame in front of it (depth > ``min_depth``) and inside the image is returned. If none
    does, the in-front camera that keeps the largest fraction of (frame, joint) entries inside the image is
    returned; if no camera has the whole motion in front of it, :class:`DataError` is raised.

    Args:
        joints: ``(T, J, 3)`` world positions, metres, y up.
        rng: the only source of randomness.
        distance: metres from the look-at target to the camera centre.
        elevation_deg, azimuth_deg: degrees (see ``camera.sample_cameras``).
        focal_px: focal length in pixels.
        image_size: ``(width, height)`` pixels.
        root: index of the root joint whose mean position the camera looks at (joint 0 is every skeleton's root).
        min_depth: metres; every joint must be at least this far in front of the camera.
        num_tries: number of candidate cameras.

    Returns:
        ``K (3, 3)`` pixels, ``R (3, 3)``, ``t (3,)`` metres (world→camera, ``X_c = R X_w + t``), float64.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[-1] != 3 or joints.shape[0] == 0:
        raise ValueError(f"joints must be (T, J, 3) with T > 0, got {joints.shape}")
    if not np.isfinite(joints).all():
        raise DataError("joints must be finite to place a camera")
    height = joints[..., 1]  # (T, J)
    target = np.array([joints[:, root, 0].mean(), ((height.min(1) + height.max(1)) / 2).mean(),
                       joints[:, root, 2].mean()])
    cams = sample_cameras(num_tries, torch.from_numpy(np.tile(target, (num_tries, 1))), distance=distance,
                          elevation_deg=elevation_deg, azimuth_deg=azimuth_deg, focal_px=focal_px,
                          image_size=image_size, generator=_torch_generator(rng))
    points = torch.from_numpy(joints).expand(num_tries, *joints.shape)  # (N, T, J, 3)
    points_cam = world_to_camera(points, cams.R, cams.t)  # (N, T, J, 3)
    front = in_front(points_cam, min_depth).flatten(1).all(dim=1)  # (N,)
    uv = project_to_pixels(points, cams.K, cams.R, cams.t, min_depth=min(min_depth, DEFAULT_MIN_DEPTH))
    width, img_height = image_size
    inside = ((uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < img_height))
    inside_fraction = inside.flatten(1).double().mean(dim=1)  # (N,)
    if not front.any():
        raise DataError(f"no camera among {num_tries} tries has the whole motion more than {min_depth} m in front "
                        f"of it (distance {distance}, the motion may span too large an area)")
    score = torch.where(front, inside_fraction, torch.full_like(inside_fraction, -1.0))
    full = (score >= 1.0).nonzero()
    best = int(full[0, 0]) if len(full) else int(score.argmax())  # first full fit, else the best fit
    return cams.K[best].numpy(), cams.R[best].numpy(), cams.t[best].numpy()


def observe_clip(clip: Clip, *, num_cameras: int, rng: np.random.Generator,
                 noise: DetectorNoise | None = None,
                 distance: float | tuple[float, float] = DEFAULT_DISTANCE,
                 elevation_deg: float | tuple[float, float] = DEFAULT_ELEVATION_DEG,
                 azimuth_deg: float | tuple[float, float] = DEFAULT_AZIMUTH_DEG,
                 focal_px: float | tuple[float, float] = DEFAULT_FOCAL_PX,
                 image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
                 outside_confidence_zero: bool = True) -> list[Clip]:
    """Film a mocap clip with ``num_cameras`` random static cameras and detect its keypoints in each view.

    For camera ``k`` (drawn by :func:`camera_for_clip`): ``keypoints_2d (T, J, 2)`` float32 pixels are the projection
    of ``gt_3d`` corrupted by ``noise`` (:func:`simulate_detections`), in the clip's own skeleton
    (``keypoint_skeleton = clip.skeleton``); ``confidence (T, J)`` float32; ``K (3, 3)``, per-clip ``R (3, 3)``,
    ``t (3,)``; ``image_size``. With ``outside_confidence_zero`` a keypoint whose exact projection falls outside
    the image gets confidence 0 (a detector does not see it); its pixel value is kept. ``gt_3d`` is kept (for
    evaluation only), ``teacher_3d`` is None (a lifter fills it later), ``text`` and ``fps`` are copied, the name
    is ``<clip name>_cam<k>`` and ``source`` notes the camera index.

    Args:
        clip: a clip with ``gt_3d (T, J, 3)`` metres in the world frame.
        num_cameras: number of views (>= 1).
        rng: the only source of randomness (cameras first, then noise, camera after camera).
        noise: detector noise model; default ``DetectorNoise()``.
        distance, elevation_deg, azimuth_deg, focal_px, image_size: camera ranges, see :func:`camera_for_clip`.

    Returns:
        ``num_cameras`` observed clips.
    """
    if clip.gt_3d is None:
        raise DataError(f"clip {clip.name}: observe_clip needs gt_3d")
    if num_cameras < 1:
        raise ValueError(f"num_cameras must be >= 1, got {num_cameras}")
    noise = DetectorNoise() if noise is None else noise
    skeleton = get_skeleton(clip.skeleton)
    joints = np.asarray(clip.gt_3d, dtype=np.float64)  # (T, J, 3)
    if joints.ndim != 3 or joints.shape[1:] != (skeleton.num_joints, 3):
        raise DataError(f"clip {clip.name}: gt_3d must be (T, {skeleton.num_joints}, 3), got {joints.shape}")
    width, height = int(image_size[0]), int(image_size[1])
    observed = []
    for k in range(num_cameras):
        try:
            K, R, t = camera_for_clip(joints, rng, distance=distance, elevation_deg=elevation_deg,
                                      azimuth_deg=azimuth_deg, focal_px=focal_px, image_size=(width, height))
        except DataError as error:
            raise DataError(f"clip {clip.name}, camera {k}: {error}") from None
        uv = project_to_pixels(torch.from_numpy(joints)[None], torch.from_numpy(K),
                               torch.from_numpy(R)[None], torch.from_numpy(t)[None])[0].numpy()  # (T, J, 2)
        uv_noisy, confidence = simulate_detections(uv, skeleton, noise, rng)
        if outside_confidence_zero:
            outside = (uv[..., 0] < 0) | (uv[..., 0] >= width) | (uv[..., 1] < 0) | (uv[..., 1] >= height)
            confidence[outside] = 0.0
        observed.append(replace(
            clip,
            name=f"{clip.name}_cam{k}",
            source=f"{clip.source}; virtual camera {k} of {num_cameras}",
            gt_3d=np.asarray(clip.gt_3d, dtype=np.float32),
            teacher_3d=None,
            keypoints_2d=uv_noisy,
            confidence=confidence,
            keypoint_skeleton=clip.skeleton,
            K=K, R=R, t=t,
            text=list(clip.text),
            image_size=(width, height),
        ))
    return observed


def observe_rig(clip: Clip, *, num_cameras: int, rng: np.random.Generator, **options) -> Clip:
    """Film a mocap clip with a virtual rig of ``num_cameras`` synchronized, calibrated cameras: one clip with
    ``num_cameras`` views.

    View k is camera k of :func:`observe_clip` with the same arguments and generator state (the same cameras and
    detector noise), so the first v views of a rig are exactly the monocular clips ``<name>_cam0 ... cam<v-1>``:
    ``keypoints_2d (V, T, J, 2)``, ``confidence (V, T, J)``, ``K (V, 3, 3)``, ``R (V, 3, 3)``, ``t (V, 3)``. The name is
    ``<clip name>_rig`` and ``source`` notes the camera count. ``options`` are those of :func:`observe_clip`.
    """
    views = observe_clip(clip, num_cameras=num_cameras, rng=rng, **options)

    def stacked(name: str) -> np.ndarray:
        return np.concatenate([getattr(view, name) for view in views])  # each view's (1, ...)

    return replace(views[0], name=f"{clip.name}_rig", source=f"{clip.source}; virtual rig of {num_cameras} cameras",
                   **{name: stacked(name) for name in ("keypoints_2d", "confidence", "K", "R", "t")})
