"""Generation from a trained run: rebuild the model from the run's config, sample features, decode to joints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .checkpoint import CheckpointError, check_compatible, latest_checkpoint, load_checkpoint, load_run_config, \
    load_tensors
from .config import Config
from .diffusion import GaussianDiffusion, classifier_free_guidance, level_sequence, sample_ddim, sample_ddpm
from .factory import autocast_dtype, build_denoiser, build_diffusion, build_model, resolve_device
from .parameterization import Parameterized
from .bandlimit import bandlimit
from .camera import transform_camera
from .data.dataset import Observations
from .placement import solve_placement
from .representation import Normalizer, RigidTransform, canonicalize, decode, encode, encode_with_frames
from .skeleton import Skeleton, get_skeleton
from .text import TextEncoder, build_text_encoder
from .views import nearest_point_to_rays, views_as_frames

__all__ = ["LoadedRun", "load_run", "generate", "inference_precision", "window_starts", "blend_windows",
           "align_on_ground", "Observations", "lift", "DENOISING_LEVEL_FRACTIONS", "denoising_errors"]


@dataclass
class LoadedRun:
    """A trained run ready to sample: the EMA denoiser (``model``: the x0 denoiser, the network under its
    parameterization, eval mode) and everything needed around it (``compiled``: the denoiser through
    ``torch.compile``, made on first use by :func:`generate`)."""

    config: Config
    model: Parameterized
    diffusion: GaussianDiffusion
    normalizer: Normalizer
    text_encoder: TextEncoder | None
    skeleton: Skeleton
    device: torch.device
    step: int
    checkpoint: Path
    compiled: Callable[..., Tensor] | None = None


def load_run(run_dir: Path, *, checkpoint: Path | None = None, device: str = "auto", use_ema: bool = True) -> LoadedRun:
    """Load a run folder (its config, normalizer and latest or given checkpoint).

    A checkpoint trained with other model settings than the run's ``config.json`` is refused.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    path = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"{run_dir}: no checkpoint found under checkpoints/")
    ckpt = load_checkpoint(path)
    check_compatible(config, ckpt.config, f"checkpoint {path}")
    dev = resolve_device(device)
    text_encoder = build_text_encoder(config.data.text_encoder, device=str(dev))
    normalizer = Normalizer.from_state_dict(load_tensors(run_dir / "normalizer.safetensors")).to(dev)
    feature_dim = int(normalizer.mean.shape[-1])
    network = build_model(config, feature_dim, text_encoder.dim if text_encoder is not None else 0)
    weights = ckpt.ema if use_ema else ckpt.model
    try:
        network.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model of {run_dir / 'config.json'} ({err})") from None
    model = build_denoiser(config, network).to(dev).eval()
    return LoadedRun(config=config, model=model, diffusion=build_diffusion(config).to(dev), normalizer=normalizer,
                     text_encoder=text_encoder, skeleton=get_skeleton(config.data.skeleton), device=dev,
                     step=ckpt.step, checkpoint=path)


def inference_precision(model: Callable[..., Tensor], device: torch.device, precision: str) -> Callable[..., Tensor]:
    """``model`` run under the autocast of ``precision`` (``"fp32"``: as is; ``"bf16"``: bf16 autocast where the
    device computes bf16 natively, else fp32 with a warning: :func:`~videomdm.factory.autocast_dtype`); outputs are
    always float32, so the sampler's arithmetic stays in full precision."""
    if autocast_dtype(precision, device, use="sampling") is None:
        return model

    def run_bf16(*args, **kwargs) -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return model(*args, **kwargs).float()

    return run_bf16


def _dropped_condition(run: LoadedRun, batch: int) -> tuple[Tensor | None, Tensor | None]:
    """``(cond (B, C), uncond (B,))`` selecting the dropped-condition (unconditional) branch of a text model for every
    item; ``(None, None)`` for a model without text."""
    if run.text_encoder is None:
        return None, None
    uncond = torch.ones(batch, dtype=torch.bool, device=run.device)
    return torch.zeros(batch, run.text_encoder.dim, device=run.device), uncond


@torch.no_grad()
def generate(run: LoadedRun, num: int, *, texts: Sequence[str] | None = None, num_frames: int | None = None,
             steps: int | None = None, guidance_scale: float | None = None, eta: float | None = None,
             sampler: str | None = None, seed: int = 0, progress: bool = False, precision: str | None = None,
             compile: bool | None = None) -> np.ndarray:
    """Sample ``num`` motions; returns joints ``(num, T, J, 3)`` float32 in metres (canonical frame, y up).

    With captions, every sampling step is one denoiser forward on a doubled batch (conditional and unconditional
    halves, :func:`~videomdm.diffusion.classifier_free_guidance`); the captions are embedded once per call (each
    distinct one once: the text encoder's cache).

    Args:
        texts: one caption per motion (or one caption for all); ``None`` for unconditional sampling.
        num_frames: motion length (default: the training window length).
        steps: sampling steps (default: ``diffusion.sample_steps``); DDIM uses any subset of the training steps.
        guidance_scale: classifier-free guidance scale for text (default: ``diffusion.guidance_scale``).
        precision: ``fp32`` or ``bf16`` denoiser autocast (default: ``diffusion.sample_precision``).
        compile: run the denoiser through ``torch.compile`` (default: ``diffusion.compile``); compiled once per
            loaded run, recompiled by torch for new shapes.
    """
    cfg = run.config.diffusion
    num_frames = num_frames or run.config.data.num_frames
    steps = steps or cfg.sample_steps
    guidance_scale = cfg.guidance_scale if guidance_scale is None else guidance_scale
    sampler = sampler or cfg.sampler
    if texts is not None and run.text_encoder is None:
        raise ValueError("this run was trained without a text encoder (data.text_encoder=none); omit --text")
    if texts is not None and len(texts) not in (1, num):
        raise ValueError(f"give one caption or {num} captions, not {len(texts)}")

    denoiser: Callable[..., Tensor] = run.model
    if cfg.compile if compile is None else compile:
        if run.compiled is None:
            run.compiled = torch.compile(run.model)
        denoiser = run.compiled
    denoiser = inference_precision(denoiser, run.device, cfg.sample_precision if precision is None else precision)
    shape = (num, num_frames, int(run.normalizer.mean.shape[-1]))
    mask = torch.ones(num, num_frames, dtype=torch.bool, device=run.device)
    if texts is not None:
        captions = list(texts) * num if len(texts) == 1 else list(texts)
        cond = run.text_encoder.encode(captions).to(run.device)  # (num, C); each distinct caption embedded once
        model_fn = classifier_free_guidance(denoiser, guidance_scale, mask=mask, cond=cond)
    elif run.text_encoder is not None:  # a text model sampled unconditionally: the dropped-condition branch
        cond, uncond = _dropped_condition(run, num)

        def model_fn(x, t):
            return denoiser(x, t, mask, cond=cond, uncond=uncond)
    else:
        def model_fn(x, t):
            return denoiser(x, t, mask)

    generator = torch.Generator(device=run.device).manual_seed(seed)
    noise = torch.randn(shape, generator=generator, device=run.device)
    last_level = run.diffusion.num_steps - 1
    if sampler == "ddpm":
        x0, _ = sample_ddpm(run.diffusion, model_fn, noise, level_sequence(last_level), generator=generator,
                            progress=progress)
    else:
        x0, _ = sample_ddim(run.diffusion, model_fn, noise, level_sequence(last_level, steps),
                            eta=cfg.eta if eta is None else eta, generator=generator, progress=progress)
    joints = decode(run.normalizer.denormalize(x0), run.skeleton.num_joints)
    return joints.float().cpu().numpy()


def window_starts(num_frames: int, window: int, stride: int | None = None) -> list[int]:
    """Starts of windows of ``min(window, num_frames)`` frames that cover ``[0, num_frames)``: every ``stride`` frames
    (default: the window length, i.e. consecutive), the last one moved back to end exactly at the last frame (so it
    may overlap its predecessor)."""
    length = min(window, num_frames)
    stride = length if stride is None else stride
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    starts = list(range(0, num_frames - length + 1, stride))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return starts


def blend_windows(windows: Tensor, starts: Sequence[int], num_frames: int) -> Tensor:
    """Overlapping windows ``(W, L, ...)`` → one sequence ``(num_frames, ...)``, each frame the weighted mean of the
    windows holding it with tent weights ``min(i + 1, L − i)`` (i = frame within its window): a window hands over to
    the next gradually across their overlap instead of jumping at a border."""
    length = windows.shape[1]
    position = torch.arange(length, dtype=windows.dtype, device=windows.device)
    tent = torch.minimum(position + 1, length - position).reshape((length,) + (1,) * (windows.ndim - 2))
    total = windows.new_zeros((num_frames,) + windows.shape[2:])
    weight = windows.new_zeros((num_frames,) + (1,) * (windows.ndim - 2))
    for start, window in zip(starts, windows):
        total[start:start + length] += tent * window
        weight[start:start + length] += tent
    return total / weight


@dataclass(frozen=True)
class GuidanceState:
    """What 2D guidance changes while lifting, threaded through the sampler's steps (:func:`lift`).

    Each guided step re-canonicalizes the moved prediction, so the cameras and the world → canonical transform
    follow it. W windows of L frames.

    Attributes:
        R: (W, V, L, 3, 3) world-to-camera rotations of the V views expressed in each window's current canonical frame.
        t: (W, V, L, 3) the matching translations.
        to_canonical: world → each window's current canonical frame (rotation (W, 3, 3), translation (W, 3)).
    """

    R: Tensor
    t: Tensor
    to_canonical: RigidTransform


def _compose(outer: RigidTransform, inner: RigidTransform) -> RigidTransform:
    """``outer ∘ inner``: ``x ↦ R_o (R_i x + t_i) + t_o``."""
    rotation = outer.rotation @ inner.rotation
    return RigidTransform(rotation, (outer.rotation @ inner.translation.unsqueeze(-1)).squeeze(-1) + outer.translation)


def _carry_views(R: Tensor, t: Tensor, transform: RigidTransform) -> tuple[Tensor, Tensor]:
    """Cameras ``R (W, V, L, 3, 3)``, ``t (W, V, L, 3)`` carried through one rigid transform per window (rotation
    ``(W, 3, 3)``, translation ``(W, 3)``; :func:`~videomdm.camera.transform_camera`)."""
    views = R.shape[1]
    new_R, new_t = transform_camera(R.flatten(0, 1), t.flatten(0, 1), transform.rotation.repeat_interleave(views, 0),
                                    transform.translation.repeat_interleave(views, 0))  # (W·V, L, ...)
    return new_R.unflatten(0, R.shape[:2]), new_t.unflatten(0, t.shape[:2])


@torch.no_grad()
def lift(run: LoadedRun, teacher_3d: np.ndarray, observations: Observations | None = None, *,
         init: str = "teacher", t_start: int | None = None, steps: int | None = None, guidance: float = 1.0,
         guidance_min_t: int = 1, stride: int | None = None, seed: int = 0, samples: int = 1,
         final_fit_hz: float | None = None, max_windows: int = 256) -> np.ndarray:
    """Clean 3D for one clip from the trained prior, optionally guided by its 2D keypoints.

    Windows are made as in training: the whole clip is encoded once (:func:`encode_with_frames`: the floor is the
    clip's lowest foot) and windows of the training length, every ``stride`` frames (default half a window), are
    slices of its features, each decoding at its first frame's root position and facing (:class:`CanonicalFrames`;
    cameras move with it). ``init="teacher"``: the teacher's windows are noised to ``t_start`` (default
    ``two_d.teacher_min_t``, the lowest level ``2d`` training ever fed the teacher at) and denoised with DDIM (eta 0)
    in ``steps`` steps (default: every level). ``init="noise"``: sampling starts from pure noise at the last level.

    With ``observations`` (V views; V = 1 for a monocular clip) the keypoints of every view place every window (:func:`videomdm.placement.solve_placement`: the turn and
    translation that best fit them under the depth-weighted reprojection residual), so the result never inherits the
    teacher's anchor, and the prior's last prediction is placed the same way: the output is as consistent with the
    keypoints as the prior's shape allows. 2D guidance: at every step whose level is ≥ ``guidance_min_t``, the placed
    prediction's joints are moved towards the nearest points on their keypoint rays by ``guidance × confidence``
    (1 = onto the ray; with several views the point nearest to all of a joint's rays,
    :func:`~videomdm.views.nearest_point_to_rays`, by the largest of its confidences) and re-encoded (the clip's floor kept; the cameras follow the new canonical frame) as the
    sampler's x0 estimate: a step callback of :func:`~videomdm.diffusion.sample_ddim` whose explicit state
    (:class:`GuidanceState`: the cameras and each window's frame) the sampler threads and returns. Placing before
    moving keeps the body's size: rays are reached by a pose change, not by shrinking the body towards the camera.
    The last levels are left to the prior to smooth the detector's noise.

    *Final fit* (with guidance): after the last step the placed result is moved by the part of its remaining offset
    to the keypoint rays (the offset the guidance would apply) that lies at or below ``final_fit_hz`` (default: the
    run's ``model.max_frequency_hz``, the band every prediction of the prior lies in; 0 = no final fit;
    :func:`~videomdm.bandlimit.bandlimit`): what a smooth motion can fit is fitted, the detector's frame-to-frame
    jitter is not followed. A higher band follows fast footage more closely, and more of the detector's noise.

    *Posterior mean* (``samples`` = K > 1): K lifts from independent noise (the teacher noised K times to
    ``t_start``) are averaged joint by joint: an estimate of the posterior mean E[x | teacher, keypoints], the
    estimate of least squared error. What the noise put into one sample and the prior could not remove averages out
    (≈ 1/√K). Costs K times the model calls of one lift, in one batch.

    Overlapping windows are blended (:func:`blend_windows`).

    Args:
        teacher_3d: ``(T, J, 3)`` world joints in metres at the run's fps.
        max_windows: at most this many windows (counting each sample's) go through the sampler at once, so that
            memory stays bounded on long clips; the result does not depend on it (the noise is drawn for all first).
    Returns:
        ``(T, J, 3)`` float32 world joints in metres.
    """
    config = run.config
    last_level = run.diffusion.num_steps - 1
    if init not in ("teacher", "noise"):
        raise ValueError(f"init must be 'teacher' or 'noise', got {init!r}")
    t_start = (config.two_d.teacher_min_t if init == "teacher" else last_level) if t_start is None else t_start
    if not 0 <= t_start <= last_level:
        raise ValueError(f"t_start must be in [0, {last_level}], got {t_start}")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if max_windows < 1:
        raise ValueError(f"max_windows must be at least 1, got {max_windows}")
    final_fit_hz = config.model.max_frequency_hz if final_fit_hz is None else final_fit_hz
    if final_fit_hz < 0:
        raise ValueError(f"final_fit_hz must be ≥ 0 (0 = no final fit), got {final_fit_hz}")
    joints = torch.as_tensor(np.asarray(teacher_3d), dtype=torch.float32, device=run.device)  # (T, J, 3)
    num_frames = joints.shape[0]
    if num_frames < 2 or not torch.isfinite(joints).all():
        raise ValueError(f"teacher_3d must be finite with at least 2 frames, got shape {tuple(joints.shape)}")
    encode_kw = {"contact_threshold": config.data.contact_threshold, "facing_sigma": config.data.facing_sigma}
    length = min(config.data.num_frames, num_frames)
    starts = window_starts(num_frames, length, max(1, length // 2) if stride is None else stride)

    def windows_of(values: np.ndarray | Tensor, axis: int = 0) -> Tensor:
        """(T, ...) → (W·K, L, ...) at ``axis``: each window K times in a row, once per sample."""
        values = torch.as_tensor(np.asarray(values), dtype=torch.float32, device=run.device)
        if values.shape[axis] != num_frames:
            raise ValueError(f"observations have {values.shape[axis]} frames, the teacher has {num_frames}")
        return torch.stack([values.narrow(axis, s, length) for s in starts]).repeat_interleave(samples, 0)

    features, frames = encode_with_frames(joints, run.skeleton, **encode_kw)  # (T, D): one clip, as in training
    x0 = run.normalizer.normalize(windows_of(features))  # (W·K, L, D)
    row_starts = torch.tensor(starts, device=run.device).repeat_interleave(samples)  # (W·K,) each row's start
    to_canonical = frames.window(row_starts)  # world → each window's frame

    def to_joints(features: Tensor) -> Tensor:  # (N, L, D) normalized → (N, L, J, 3) in the current frames
        return decode(run.normalizer.denormalize(features), run.skeleton.num_joints)

    if observations is not None:
        all_keypoints = windows_of(observations.keypoints, axis=1)  # (W·K, V, L, J, 2)
        all_confidence = windows_of(observations.confidence, axis=1)  # (W·K, V, L, J)
        all_R, all_t = _carry_views(windows_of(observations.R, axis=1), windows_of(observations.t, axis=1),
                                    to_canonical)
    generator = torch.Generator(device=run.device).manual_seed(seed)
    noise = torch.randn(x0.shape, generator=generator, device=run.device)  # drawn once: chunking changes nothing
    if init == "teacher":
        level = torch.full((len(x0),), t_start, dtype=torch.long, device=run.device)
        x_start = run.diffusion.q_sample(x0, level, noise)
    else:
        x_start = noise

    def denoise(rows: slice) -> Tensor:
        """Sample, guide, place and fit the windows ``rows`` of the W·K: their world joints (N, L, J, 3)."""
        mask = torch.ones(x_start[rows].shape[:2], dtype=torch.bool, device=run.device)
        cond, uncond = _dropped_condition(run, len(mask))  # a text model used without a caption
        frames_of_rows = RigidTransform(to_canonical.rotation[rows], to_canonical.translation[rows])

        def model_fn(x, t):
            return run.model(x, t, mask, cond=cond, uncond=uncond)

        guide, state = None, None
        if observations is not None:
            keypoints, confidence = all_keypoints[rows], all_confidence[rows]
            state = GuidanceState(all_R[rows], all_t[rows], frames_of_rows)
            weight = (guidance * confidence.amax(1)).clamp(0.0, 1.0)[..., None]  # (N, L, J, 1)

            def placed(predicted: Tensor, cameras: GuidanceState) -> Tensor:
                placement = solve_placement(*views_as_frames(predicted, keypoints, confidence, cameras.R, cameras.t),
                                            solve_yaw=config.two_d.solve_yaw)
                return placement.apply(predicted)

            def on_rays_of(predicted: Tensor, cameras: GuidanceState) -> Tensor:
                return nearest_point_to_rays(predicted, keypoints, confidence, cameras.R, cameras.t,
                                             min_depth=config.two_d.min_depth)

            if guidance > 0:
                def guide(x0_hat: Tensor, level: int, cameras: GuidanceState) -> tuple[Tensor, GuidanceState]:
                    if level < guidance_min_t:
                        return x0_hat, cameras
                    predicted = placed(to_joints(x0_hat), cameras)
                    moved = predicted + weight * (on_rays_of(predicted, cameras) - predicted)
                    _, step = canonicalize(moved, run.skeleton, facing_sigma=config.data.facing_sigma, floor=0.0)
                    R, t = _carry_views(cameras.R, cameras.t, step)
                    moved_x0 = run.normalizer.normalize(encode(moved, run.skeleton, floor=0.0, **encode_kw))
                    return moved_x0, GuidanceState(R, t, _compose(step, cameras.to_canonical))

        denoised, state = sample_ddim(run.diffusion, model_fn, x_start[rows], level_sequence(t_start, steps),
                                      eta=0.0, callback=guide, state=state)
        canonical = to_joints(denoised)  # (N, L, J, 3)
        if state is None:
            return frames_of_rows.inverse().apply(canonical)
        canonical = placed(canonical, state)
        if final_fit_hz > 0 and guidance > 0:
            residual = (weight * (on_rays_of(canonical, state) - canonical)).flatten(2)  # (N, L, J·3)
            fitted = bandlimit(residual, mask, min(final_fit_hz / config.data.fps, 0.5))
            canonical = canonical + fitted.unflatten(2, canonical.shape[2:])
        return state.to_canonical.inverse().apply(canonical)

    world = torch.cat([denoise(slice(first, first + max_windows))
                       for first in range(0, len(x0), max_windows)])  # (W·K, L, J, 3)
    world = world.unflatten(0, (len(starts), samples)).mean(1)  # the posterior mean of each window
    return blend_windows(world, starts, num_frames).float().cpu().numpy()


def align_on_ground(points: Tensor, reference: Tensor) -> Tensor:
    """``points (N, T, J, 3)`` turned about +y and moved in x, z to fit ``reference`` best (least squares over every
    frame and joint of each motion: the 2D Procrustes problem on the ground plane, closed form)."""
    xz = [0, 2]
    p, r = points[..., xz].flatten(1, 2), reference[..., xz].flatten(1, 2)  # (N, T·J, 2)
    p_mean, r_mean = p.mean(1, keepdim=True), r.mean(1, keepdim=True)
    pc, rc = p - p_mean, r - r_mean
    # The turn by θ about +y maps (x, z) to (x cos θ + z sin θ, −x sin θ + z cos θ); the best θ is atan2 of the
    # summed cross and dot products of the centred point pairs.
    sin = (pc[..., 1] * rc[..., 0] - pc[..., 0] * rc[..., 1]).sum(1)
    cos = (pc[..., 0] * rc[..., 0] + pc[..., 1] * rc[..., 1]).sum(1)
    theta = torch.atan2(sin, cos)[:, None]  # (N, 1)
    c, s_ = torch.cos(theta), torch.sin(theta)
    x, z = pc[..., 0], pc[..., 1]
    turned = torch.stack([x * c + z * s_, -x * s_ + z * c], -1) + r_mean  # (N, T·J, 2)
    out = points.clone()
    out[..., xz] = turned.unflatten(1, points.shape[1:3])
    return out


DENOISING_LEVEL_FRACTIONS = (0.0, 0.05, 0.12, 0.25, 0.5, 0.8)  # of the last level: 0, 2, 6, 12, 24, 39 of 50 levels


@torch.no_grad()
def denoising_errors(run: LoadedRun, motions: np.ndarray, *, levels: Sequence[int] | None = None,
                     floor: float | None = None, seed: int = 0) -> dict[str, float]:
    """How well the prior removes noise at each level, in joint positions: clean motions noised to level t and
    denoised by ONE model call (the unconditional branch), against the noised input taken as it is.

    Each motion is canonicalized, encoded and normalized as in training and noised with ``q_sample`` to level t.
    ``denoise_mm`` is the mean per-joint distance between the joints decoded from the prediction x̂0 and those
    decoded from x0, after the one turn about +y and ground-plane translation per motion that fit it best
    (:func:`align_on_ground`: where a window stands and which way it faces is what lifting solves from the keypoints,
    and what ``2d`` training leaves free); ``input_mm`` the same for ``x_t / sqrt(abar_t)``, the input without its
    scale, i.e. what a prior that removes nothing returns. A prior that can help lifting has ``denoise_ratio_t = denoise_mm / input_mm < 1``
    at the levels lifting starts from (``two_d.teacher_min_t`` and below). Joints, not features, so that the figure
    means the same for every supervision (``2d`` supervises only what the joints decode from). See the README's
    recovery section.

    Args:
        motions: ``(N, T, J, 3)`` world joints in metres at the run's fps (T ≤ ``data.num_frames``).
        levels: diffusion levels with ``abar_t ≥ 1e-3``; default :data:`DENOISING_LEVEL_FRACTIONS` of the last level.
        floor: the floor height (world y, metres) the motions are encoded with; windows cut from longer clips
            should pass their clip's floor (and be shifted to it), as training windows keep it. Default: each
            motion's lowest foot joint.
    Returns:
        ``denoise_mm_t{t}``, ``input_mm_t{t}`` (millimetres, canonical frame of each motion) and ``denoise_ratio_t{t}``
        for each level t.
    """
    joints = torch.as_tensor(np.asarray(motions), dtype=torch.float32, device=run.device)
    if joints.dim() != 4 or len(joints) == 0 or not torch.isfinite(joints).all():
        raise ValueError(f"motions must be a finite (N, T, J, 3) array with N ≥ 1, got shape {tuple(joints.shape)}")
    last_level = run.diffusion.num_steps - 1
    if levels is None:
        levels = sorted({round(f * last_level) for f in DENOISING_LEVEL_FRACTIONS})
    abar = run.diffusion.alphas_cumprod
    if any(not (0 <= t <= last_level and float(abar[t]) >= 1e-3) for t in levels):
        raise ValueError(f"levels must lie in [0, {last_level}] with abar_t ≥ 1e-3, got {list(levels)}")
    config = run.config
    x0 = run.normalizer.normalize(encode(joints, run.skeleton, contact_threshold=config.data.contact_threshold,
                                         facing_sigma=config.data.facing_sigma, floor=floor))  # (N, T, D)

    def to_joints(features: Tensor) -> Tensor:  # (N, T, D) normalized → (N, T, J, 3) metres
        return decode(run.normalizer.denormalize(features), run.skeleton.num_joints)

    def mean_distance_mm(features: Tensor) -> float:
        return 1000.0 * float((align_on_ground(to_joints(features), reference) - reference).norm(dim=-1).mean())

    reference = to_joints(x0)
    mask = torch.ones(x0.shape[:2], dtype=torch.bool, device=run.device)
    cond, uncond = _dropped_condition(run, len(x0))
    generator = torch.Generator(device=run.device).manual_seed(seed)
    result = {}
    for t in levels:
        level = torch.full((len(x0),), int(t), dtype=torch.long, device=run.device)
        x_t = run.diffusion.q_sample(x0, level, torch.randn(x0.shape, generator=generator, device=run.device))
        denoised = mean_distance_mm(run.model(x_t, level, mask, cond=cond, uncond=uncond))
        as_given = mean_distance_mm(x_t / float(abar[t]) ** 0.5)
        result.update({f"denoise_mm_t{t}": denoised, f"input_mm_t{t}": as_given,
                       f"denoise_ratio_t{t}": denoised / max(as_given, 1e-9)})
    return result
