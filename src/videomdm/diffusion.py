"""Gaussian diffusion for x0-predicting models: schedules, forward noising, DDPM and DDIM samplers, CFG.

Notation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", "DDPM" below):

    beta_t,  alpha_t = 1 - beta_t,  abar_t = prod_{s<=t} alpha_s          t = 0 .. N-1 (0-based)
    q(x_t | x_0)       = N(sqrt(abar_t) x_0, (1 - abar_t) I)                          DDPM eq. 4
    q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)                                      DDPM eqs. 6-7
        mu~_t   = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
        beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t,        with abar_{-1} = 1.

Timesteps are 0-based: x_t for t = N-1 is (almost) pure noise, and one step from t = 0 gives the clean sample.

Model-function contract (k-diffusion style): ``model_fn(x_t: (B, T, D), t: LongTensor (B,)) -> x0_hat (B, T, D)``.
The diffusion never sees masks or conditions; callers bind them in a closure (see
:func:`classifier_free_guidance`).

:class:`GaussianDiffusion` holds the schedule (forward process, posterior). The samplers are plain functions of
an explicit decreasing level sequence, ``sampler(diffusion, model_fn, x, levels, ...) -> (x0, state)``
(:func:`sample_ddpm`, :func:`sample_ddim`; :func:`level_sequence` builds the usual sequences); starting mid-chain is
slicing the sequence. Guidance is a step callback with explicit state,
``callback(x0_hat, level, state) -> (x0_hat, state)``, threaded through the steps and returned.

This module imports nothing about skeletons, cameras or data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

try:  # tqdm is a core dependency; the guard keeps the samplers usable in stripped environments
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

__all__ = [
    "ModelFn",
    "StepCallback",
    "GaussianDiffusion",
    "classifier_free_guidance",
    "cosine_beta_schedule",
    "level_sequence",
    "linear_beta_schedule",
    "make_beta_schedule",
    "sample_ddim",
    "sample_ddpm",
]

ModelFn = Callable[[Tensor, Tensor], Tensor]
# ``callback(x0_hat (B, T, D), level, state) -> (x0_hat, state)``: guidance as a step with explicit state.
StepCallback = Callable[[Tensor, int, Any], tuple[Tensor, Any]]


# ---------------------------------------------------------------------------------------------------------------
# Schedules (float64)
# ---------------------------------------------------------------------------------------------------------------


def cosine_beta_schedule(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, "Improved DDPM", eq. 17).

    ``abar(t) = f(t) / f(0)``, ``f(t) = cos(((t / N + s) / (1 + s)) * pi / 2) ** 2``, and
    ``beta_t = 1 - abar(t + 1) / abar(t)`` clipped to ``max_beta`` (the paper's 0.999, avoiding a singularity
    at the end of the chain).

    Args:
        num_steps: N, number of diffusion steps (any N >= 1).
        s: small offset keeping beta_0 from being vanishingly small.
        max_beta: upper clip on beta.

    Returns:
        (N,) float64 betas in (0, max_beta].
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps  # (N + 1,) in [0, 1]
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]  # (N + 1,) abar(0) = 1 .. abar(N) ~ 0
    betas = 1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1]  # (N,)
    return betas.clamp(max=max_beta)


def linear_beta_schedule(num_steps: int) -> Tensor:
    """Linear schedule of DDPM (Ho et al. 2020, Sec. 4): beta from 1e-4 to 0.02 over 1000 steps.

    For other step counts the end points are scaled by ``1000 / N`` (as in Improved DDPM's code) so that the
    chain still ends near pure noise.

    Returns:
        (N,) float64 betas.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    scale = 1000.0 / num_steps
    return torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), num_steps, dtype=torch.float64)


def make_beta_schedule(name: str, num_steps: int) -> Tensor:
    """Betas (float64, (N,)) for the schedule called ``name``: "cosine" or "linear"."""
    if name == "cosine":
        return cosine_beta_schedule(num_steps)
    if name == "linear":
        return linear_beta_schedule(num_steps)
    raise ValueError(f"unknown beta schedule {name!r}; expected 'cosine' or 'linear'")


# ---------------------------------------------------------------------------------------------------------------
# Diffusion
# ---------------------------------------------------------------------------------------------------------------


def _gather(coefficients: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """Per-sample coefficients ``coefficients[t]`` shaped to broadcast against ``like``.

    Args:
        coefficients: (N,) schedule tensor, on any device.
        t: (B,) integer timesteps.
        like: (B, ...) tensor whose device, dtype and rank the result follows.

    Returns:
        (B, 1, ..., 1) tensor with ``like.ndim`` dims.
    """
    values = coefficients.to(device=t.device)[t.long()]  # (B,)
    return values.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))  # (B, 1, ..., 1)


class GaussianDiffusion:
    """A discrete Gaussian diffusion with N steps, for x0-predicting models.

    All schedule tensors are computed in float64 and stored as float32 (B,)-gatherable 1-D tensors on CPU;
    :meth:`to` moves them to a device once, and gathers also work from any device (the tensors follow ``t``).
    The DDIM step coefficients (:func:`sample_ddim`) are Python floats computed in float64 from ``_abar64``.

    Args:
        num_steps: N (50 by default; 1000 is supported).
        schedule: "cosine" (default) or "linear"; ignored when ``betas`` is given.
        betas: optional explicit (N,) betas.
    """

    _TENSOR_NAMES = (
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "posterior_variance",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    )

    def __init__(self, num_steps: int = 50, schedule: str = "cosine", betas: Tensor | None = None) -> None:
        betas64 = make_beta_schedule(schedule, num_steps) if betas is None else betas.detach().to("cpu", torch.float64)
        if betas64.ndim != 1 or not bool(((betas64 > 0) & (betas64 < 1)).all()):
            raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
        self.num_steps = int(betas64.shape[0])
        alphas = 1.0 - betas64
        abar = torch.cumprod(alphas, dim=0)  # (N,)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])  # (N,) abar_{t-1}, abar_{-1} = 1
        # Float64 copies drive the samplers' scalar coefficients; the float32 tensors serve batched gathers.
        self._abar64 = abar.tolist()

        self.betas = betas64.float()
        self.alphas_cumprod = abar.float()
        self.alphas_cumprod_prev = abar_prev.float()
        self.sqrt_alphas_cumprod = abar.sqrt().float()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - abar).sqrt().float()
        # DDPM eq. 7.
        self.posterior_variance = (betas64 * (1.0 - abar_prev) / (1.0 - abar)).float()
        self.posterior_mean_coef1 = (betas64 * abar_prev.sqrt() / (1.0 - abar)).float()
        self.posterior_mean_coef2 = ((1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar)).float()

    def to(self, device: torch.device | str) -> GaussianDiffusion:
        """Move the schedule tensors to ``device`` (in place); returns self for chaining."""
        for name in self._TENSOR_NAMES:
            setattr(self, name, getattr(self, name).to(device))
        return self

    # ----- forward process and posterior ----------------------------------------------------------------------

    def sample_timesteps(
        self, batch_size: int, *, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Uniform training timesteps, (B,) int64 in [0, N)."""
        return torch.randint(0, self.num_steps, (batch_size,), device=device, generator=generator)

    def loss_weights(self, t: Tensor, scheme: str, gamma: float = 5.0) -> Tensor:
        """Per-item weights ``(B,)`` of an x0-space loss ``‖x̂0 − x0‖²`` at levels ``t (B,)``, with
        ``SNR_t = abar_t / (1 − abar_t)``:

        - ``"x0"``: 1 (MDM's simple x0 objective). A v-predicting network then learns from ``(1 − abar_t) ‖v̂ − v‖²``
          (since ``x̂0 − x0 = −sqrt(1 − abar_t) (v̂ − v)``): almost no gradient at low noise.
        - ``"v"``: ``SNR_t + 1 = 1 / (1 − abar_t)``, the v-space loss ``‖v̂ − v‖²`` (EDM's weighting for unit-variance
          data): every level counts alike for a v network.
        - ``"min_snr"``: ``min(SNR_t, γ)`` (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting",
          x0 form): high-SNR levels capped at γ so they do not dominate.
        """
        abar = self.alphas_cumprod.to(t.device)[t]
        snr = abar / (1.0 - abar)
        if scheme == "x0":
            return torch.ones_like(snr)
        if scheme == "v":
            return snr + 1.0
        if scheme == "min_snr":
            return snr.clamp_max(gamma)
        raise ValueError(f"unknown loss weighting {scheme!r}; expected x0, v or min_snr")

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """Sample x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x0, (1 - abar_t) I) (DDPM eq. 4).

        Args:
            x0: (B, ...) clean data.
            t: (B,) integer timesteps.
            noise: (B, ...) standard Gaussian noise; drawn with ``torch.randn_like`` when None.

        Returns:
            (B, ...) noised data x_t.
        """
        if noise is None:
            noise = torch.randn_like(x0)
        signal = _gather(self.sqrt_alphas_cumprod, t, x0)  # (B, 1, ..., 1)
        sigma = _gather(self.sqrt_one_minus_alphas_cumprod, t, x0)  # (B, 1, ..., 1)
        return signal * x0 + sigma * noise

    def posterior_mean_variance(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0) (DDPM eqs. 6-7).

        Args:
            x0: (B, ...) clean data (or its prediction).
            x_t: (B, ...) noised data at timestep t.
            t: (B,) integer timesteps.

        Returns:
            mean (B, ...) and variance (B, 1, ..., 1) (beta~_t, 0 at t = 0).
        """
        mean = _gather(self.posterior_mean_coef1, t, x_t) * x0 + _gather(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, _gather(self.posterior_variance, t, x_t)

    def predict_noise_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """The noise implied by x_t and x0: ``eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)`` (DDPM eq. 4)."""
        return (x_t - _gather(self.sqrt_alphas_cumprod, t, x_t) * x0) / _gather(
            self.sqrt_one_minus_alphas_cumprod, t, x_t
        )

    def check_levels(self, levels: Sequence[int]) -> list[int]:
        """``levels`` as a list of ints, checked: not empty, strictly decreasing, within [0, N)."""
        levels = [int(t) for t in levels]
        if not levels:
            raise ValueError("a level sequence must not be empty")
        if any(a <= b for a, b in zip(levels, levels[1:])):
            raise ValueError(f"levels must be strictly decreasing, got {levels}")
        if levels[0] >= self.num_steps or levels[-1] < 0:
            raise ValueError(f"levels must lie in [0, {self.num_steps}), got {levels}")
        return levels


# ---------------------------------------------------------------------------------------------------------------
# Sampling: plain functions of a level sequence (k-diffusion style)
# ---------------------------------------------------------------------------------------------------------------
#
# Every sampler is called as ``sampler(diffusion, model_fn, x, levels, ...) -> (x0, state)``: ``x`` (B, T, D) is the
# state of the chain at ``levels[0]``, the sampler takes one update per entry of ``levels`` (strictly decreasing),
# and the update from the last entry goes to the clean sample. Starting mid-chain is slicing: ``levels[k:]`` with
# ``x`` at ``levels[k]`` (e.g. a teacher noised with ``q_sample``) continues the chain from there.
#
# Guidance is a step callback with explicit state, ``callback(x0_hat, level, state) -> (x0_hat, state)``, applied to
# every x0 prediction before the update; the sampler threads ``state`` from one call to the next and returns the
# last one (``state`` itself when there is no callback).
#
# Noise: ``step_noises[i]`` is the fresh Gaussian noise z of the i-th update (one per level; the update to the clean
# sample adds none, so its entry is never read); noises not given are drawn from ``generator`` on x's device, in
# update order, so that samplers can be compared step for step.


def level_sequence(first: int, n: int | None = None) -> list[int]:
    """The usual decreasing level sequences starting at ``first``.

    Args:
        first: the first level (N - 1 for sampling from pure noise).
        n: None = every level ``first, first - 1, ..., 0``; an int = n levels evenly spaced from ``first`` to 0, both
            included (rounded; n = 1 gives ``[first]``, n = first + 1 every level).

    Returns:
        list of ints, strictly decreasing.
    """
    if first < 0:
        raise ValueError(f"the first level must be >= 0, got {first}")
    if n is None:
        return list(range(first, -1, -1))
    if not 1 <= n <= first + 1:
        raise ValueError(f"n must be in [1, {first + 1}] when starting at level {first}, got {n}")
    if n == 1:
        return [first]
    # Spacing >= 1, so rounding keeps the values distinct; the ends are exactly first and 0.
    return [round(first * (n - 1 - i) / (n - 1)) for i in range(n)]


def sample_ddpm(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    x: Tensor,
    levels: Sequence[int],
    *,
    step_noises: Tensor | Sequence[Tensor] | None = None,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    state: Any = None,
    progress: bool = False,
) -> tuple[Tensor, Any]:
    """Ancestral sampling (DDPM Algorithm 2) with the posterior variance beta~_t and an x0-predicting model.

    For t in ``levels``:  x0_hat = model_fn(x_t, t);  x_{t-1} = mu~_t(x0_hat, x_t) + sqrt(beta~_t) z  (DDPM eq. 7;
    no noise at t = 0, where beta~_0 = 0). Each update goes one level down, so ``levels`` must be every level from
    its first down to 0 (``level_sequence(first)`` or a slice of it); for a subset use :func:`sample_ddim` with
    ``eta=1``.

    Args:
        diffusion: the schedule.
        model_fn: ``(x_t (B, T, D), t (B,)) -> x0_hat (B, T, D)``.
        x: (B, T, D) x at ``levels[0]``.
        levels: ``first, first - 1, ..., 0``.
        step_noises, generator, callback, state, progress: see the section comment above.

    Returns:
        (B, T, D) clean samples and the callback's last state.
    """
    levels = diffusion.check_levels(levels)
    if levels != list(range(levels[0], -1, -1)):
        raise ValueError(f"DDPM steps one level at a time down to 0; got {levels} (use sample_ddim with eta=1)")

    def update(x_t: Tensor, x0_hat: Tensor, t: int, t_next: int, z: Callable[[], Tensor]) -> Tensor:
        t_batch = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
        mean, variance = diffusion.posterior_mean_variance(x0_hat, x_t, t_batch)
        if t == 0:
            return mean  # beta~_0 = 0: the last step is the posterior mean, which equals x0_hat
        return mean + variance.sqrt() * z()

    return _sample_loop(update, model_fn, x, levels, step_noises, generator, callback, state, progress)


def sample_ddim(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    x: Tensor,
    levels: Sequence[int],
    *,
    eta: float = 0.0,
    step_noises: Tensor | Sequence[Tensor] | None = None,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    state: Any = None,
    progress: bool = False,
) -> tuple[Tensor, Any]:
    """DDIM sampling (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12) over any level sequence.

    For consecutive levels t > s of ``levels`` (s = -1 after the last, abar_{-1} = 1):

        eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)
        sigma   = eta * sqrt((1 - abar_s) / (1 - abar_t)) * sqrt(1 - abar_t / abar_s)       (eq. 16)
        x_s     = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z          (eq. 12)

    ``eta = 0`` is deterministic DDIM; ``eta = 1`` over every level is DDPM ancestral sampling. Step coefficients
    are Python floats computed in float64 (every sample of the batch is at the same level).

    Args:
        diffusion: the schedule.
        model_fn: ``(x_t (B, T, D), t (B,)) -> x0_hat (B, T, D)``.
        x: (B, T, D) x at ``levels[0]``.
        levels: strictly decreasing levels in [0, N), e.g. ``level_sequence(N - 1, n)`` or a slice of it.
        eta: stochasticity, 0 (deterministic) .. 1 (DDPM-like).
        step_noises, generator, callback, state, progress: see the section comment above.

    Returns:
        (B, T, D) clean samples and the callback's last state.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    levels = diffusion.check_levels(levels)
    abar = diffusion._abar64

    def update(x_t: Tensor, x0_hat: Tensor, t: int, t_next: int, z: Callable[[], Tensor]) -> Tensor:
        abar_t = abar[t]
        abar_next = abar[t_next] if t_next >= 0 else 1.0
        sigma = eta * math.sqrt((1.0 - abar_next) / (1.0 - abar_t) * (1.0 - abar_t / abar_next))  # eq. 16
        eps_coef = math.sqrt(max(1.0 - abar_next - sigma**2, 0.0)) / math.sqrt(1.0 - abar_t)
        # x_s = sqrt(abar_s) x0 + c (x_t - sqrt(abar_t) x0) + sigma z,
        # with c = sqrt(1 - abar_s - sigma^2) / sqrt(1 - abar_t) (eq. 12 with eps_hat written out).
        x_next = (math.sqrt(abar_next) - eps_coef * math.sqrt(abar_t)) * x0_hat + eps_coef * x_t
        if sigma > 0.0:
            x_next = x_next + sigma * z()
        return x_next

    return _sample_loop(update, model_fn, x, levels, step_noises, generator, callback, state, progress)


def _sample_loop(
    update: Callable[[Tensor, Tensor, int, int, Callable[[], Tensor]], Tensor],
    model_fn: ModelFn,
    x: Tensor,
    levels: list[int],
    step_noises: Tensor | Sequence[Tensor] | None,
    generator: torch.Generator | None,
    callback: StepCallback | None,
    state: Any,
    progress: bool,
) -> tuple[Tensor, Any]:
    """The loop both samplers share: predict x0 at each level, let the callback adjust it, ``update`` to the next."""
    if step_noises is not None and len(step_noises) != len(levels):
        raise ValueError(f"step_noises must hold one noise per update ({len(levels)}), got {len(step_noises)}")
    iterator = range(len(levels))
    if progress and tqdm is not None:
        iterator = tqdm(iterator, desc="sampling", leave=False)
    for i in iterator:
        t = levels[i]
        t_next = levels[i + 1] if i + 1 < len(levels) else -1
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0_hat = model_fn(x, t_batch)  # (B, T, D)
        if callback is not None:
            x0_hat, state = callback(x0_hat, t, state)

        def z(i: int = i, like: Tensor = x) -> Tensor:
            if step_noises is not None:
                return step_noises[i].to(like.device, like.dtype)
            return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)

        x = update(x, x0_hat, t, t_next, z)
    return x, state


# ---------------------------------------------------------------------------------------------------------------
# Classifier-free guidance
# ---------------------------------------------------------------------------------------------------------------


def classifier_free_guidance(model: Callable[..., Tensor], scale: float, *, mask: Tensor, cond: Tensor) -> ModelFn:
    """Wrap a conditional denoiser into a guided ``model_fn`` (Ho & Salimans 2022, eq. 6, applied to x0).

    ``x0_guided = x0_uncond + scale * (x0_cond - x0_uncond)``; scale 1 is the conditional prediction, 0 the
    unconditional one. Both branches run in ONE forward on a doubled batch: the first half conditional, the second
    half with ``uncond=True``.

    Args:
        model: a denoiser called as ``model(x (2B, T, D), t (2B,), mask (2B, T), cond=(2B, C), uncond=(2B,))``,
            e.g. :class:`videomdm.parameterization.Parameterized` in eval mode.
        scale: guidance scale (the default lives in the config).
        mask: (B, T) bool, True = real frame.
        cond: (B, C) condition vectors.

    Returns:
        ``model_fn(x_t (B, T, D), t (B,)) -> x0_hat (B, T, D)``.
    """
    batch = cond.shape[0]
    mask2 = torch.cat([mask, mask], dim=0)  # (2B, T)
    cond2 = torch.cat([cond, cond], dim=0)  # (2B, C)
    uncond = torch.arange(2 * batch, device=cond.device) >= batch  # (2B,) False for the first half

    def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
        x2 = torch.cat([x_t, x_t], dim=0)  # (2B, T, D)
        t2 = torch.cat([t, t], dim=0)  # (2B,)
        out = model(x2, t2, mask2, cond=cond2, uncond=uncond)  # (2B, T, D)
        x0_cond, x0_uncond = out.chunk(2, dim=0)  # 2 x (B, T, D)
        return x0_uncond + scale * (x0_cond - x0_uncond)

    return model_fn
