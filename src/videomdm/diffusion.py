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
:func:`classifier_free_guidance`). Samplers accept ``x0_transform(x0_hat, t) -> x0_hat``, applied to every x0
prediction before the update (a hook for guidance, e.g. 2D-guided lifting).

Noise conventions, shared by both samplers so that they can be compared step for step: ``noise`` is x at the
first timestep; ``step_noises[i]`` is the fresh Gaussian noise z added at the i-th update (index over the updates
taken, in order). The last update (to the clean sample) adds no noise, so its entry is never read.

This module imports nothing about skeletons, cameras or data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

try:  # tqdm is a core dependency; the guard keeps the samplers usable in stripped environments
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

__all__ = [
    "ModelFn",
    "X0Transform",
    "GaussianDiffusion",
    "classifier_free_guidance",
    "cosine_beta_schedule",
    "linear_beta_schedule",
    "make_beta_schedule",
]

ModelFn = Callable[[Tensor, Tensor], Tensor]
X0Transform = Callable[[Tensor, Tensor], Tensor]


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
    Sampler step coefficients are Python floats computed in float64 (every sample in a batch is at the same
    timestep during sampling), which keeps DDPM and DDIM(eta=1) numerically identical.

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

    # ----- samplers -------------------------------------------------------------------------------------------

    def ddpm_sample(
        self,
        model_fn: ModelFn,
        shape: Sequence[int],
        *,
        noise: Tensor | None = None,
        step_noises: Tensor | Sequence[Tensor] | None = None,
        generator: torch.Generator | None = None,
        x_init: Tensor | None = None,
        t_start: int | None = None,
        x0_transform: X0Transform | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> Tensor:
        """Ancestral sampling (DDPM Algorithm 2) with the posterior variance beta~_t and an x0-predicting model.

        For t = t_start, ..., 0:  x0_hat = model_fn(x_t, t);  x_{t-1} = mu~_t(x0_hat, x_t) + sqrt(beta~_t) z_t.

        Args:
            model_fn: ``(x_t (B, T, D), t (B,)) -> x0_hat (B, T, D)``.
            shape: (B, T, D) of the samples.
            noise: x at the first timestep (pure noise by default); exclusive with ``x_init``.
            step_noises: (S, B, T, D) tensor or S tensors, z for each update (S = number of updates).
            generator: RNG for the noises not given.
            x_init: start from this x_t (e.g. a noised teacher) instead of noise; requires ``t_start``.
            t_start: first timestep (N - 1 by default).
            x0_transform: optional ``(x0_hat, t) -> x0_hat`` applied before each update.
            device: where noise is drawn when neither ``noise`` nor ``x_init`` fixes it (default: the
                generator's device, else torch's default device).
            progress: show a tqdm bar.

        Returns:
            (B, T, D) samples x_{-1} (the clean end of the chain).
        """
        first = self.num_steps - 1 if t_start is None else t_start
        self._check_timestep(first)
        timesteps = list(range(first, -1, -1))
        return self._sample(
            self._ddpm_update, model_fn, shape, timesteps,
            noise=noise, step_noises=step_noises, generator=generator, x_init=x_init, t_start=t_start,
            x0_transform=x0_transform, device=device, progress=progress,
        )  # fmt: skip

    def ddim_sample(
        self,
        model_fn: ModelFn,
        shape: Sequence[int],
        *,
        steps: int | Sequence[int] | None = None,
        eta: float = 0.0,
        noise: Tensor | None = None,
        step_noises: Tensor | Sequence[Tensor] | None = None,
        generator: torch.Generator | None = None,
        x_init: Tensor | None = None,
        t_start: int | None = None,
        x0_transform: X0Transform | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> Tensor:
        """DDIM sampling (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12) over a timestep subset.

        For consecutive timesteps t > s of the subset (s = -1 after the last, abar_{-1} = 1):

            eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)
            sigma   = eta * sqrt((1 - abar_s) / (1 - abar_t)) * sqrt(1 - abar_t / abar_s)       (eq. 16)
            x_s     = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z

        ``eta = 0`` is deterministic DDIM; ``eta = 1`` over all steps is exactly DDPM ancestral sampling.

        Args:
            model_fn: ``(x_t (B, T, D), t (B,)) -> x0_hat (B, T, D)``.
            shape: (B, T, D) of the samples.
            steps: None = every timestep; an int n = n timesteps evenly spaced from the first timestep
                (N - 1, or ``t_start``) down to 0, both included; a sequence = these timesteps, strictly
                decreasing, in [0, first] (the initial x is taken to be at its first entry, which must equal
                ``t_start`` when ``x_init`` is given; after its last entry one step goes to the clean sample).
            eta: stochasticity, 0 (deterministic) .. 1 (DDPM-like).
            noise, step_noises, generator, x_init, t_start, x0_transform, device, progress: as in
                :meth:`ddpm_sample` (``step_noises`` is indexed by update, one per timestep of the subset).

        Returns:
            (B, T, D) samples.
        """
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        first = self.num_steps - 1 if t_start is None else t_start
        timesteps = self.ddim_timesteps(steps, first)
        if x_init is not None and timesteps[0] != first:
            raise ValueError(f"x_init is at t_start={first}, but the timestep list starts at {timesteps[0]}")

        def update(x_t: Tensor, x0_hat: Tensor, t: int, t_next: int, z: Callable[[], Tensor]) -> Tensor:
            return self._ddim_update(x_t, x0_hat, t, t_next, z, eta)

        return self._sample(
            update, model_fn, shape, timesteps,
            noise=noise, step_noises=step_noises, generator=generator, x_init=x_init, t_start=t_start,
            x0_transform=x0_transform, device=device, progress=progress,
        )  # fmt: skip

    def ddim_timesteps(self, steps: int | Sequence[int] | None, first: int | None = None) -> list[int]:
        """The decreasing timestep list a DDIM run visits.

        Args:
            steps: None (all of ``first .. 0``), an int n (n timesteps evenly spaced from ``first`` to 0, both
                included; n = 1 gives ``[first]``), or an explicit strictly decreasing sequence within [0, first].
            first: the first timestep, N - 1 by default.

        Returns:
            list of ints, strictly decreasing.
        """
        first = self.num_steps - 1 if first is None else first
        self._check_timestep(first)
        if steps is None:
            return list(range(first, -1, -1))
        if isinstance(steps, int):
            if not 1 <= steps <= first + 1:
                raise ValueError(f"steps must be in [1, {first + 1}] when starting at t={first}, got {steps}")
            if steps == 1:
                return [first]
            # Spacing >= 1, so rounding keeps the values distinct; the ends are exactly first and 0.
            return [round(first * (steps - 1 - i) / (steps - 1)) for i in range(steps)]
        timesteps = [int(s) for s in steps]
        if not timesteps:
            raise ValueError("an explicit timestep list must not be empty")
        if any(a <= b for a, b in zip(timesteps, timesteps[1:])):
            raise ValueError(f"timesteps must be strictly decreasing, got {timesteps}")
        if timesteps[0] > first or timesteps[-1] < 0:
            raise ValueError(f"timesteps must lie in [0, {first}], got {timesteps}")
        return timesteps

    # ----- sampler internals ----------------------------------------------------------------------------------

    def _check_timestep(self, t: int) -> None:
        if not 0 <= t < self.num_steps:
            raise ValueError(f"timestep {t} outside [0, {self.num_steps})")

    def _ddpm_update(self, x_t: Tensor, x0_hat: Tensor, t: int, t_next: int, z: Callable[[], Tensor]) -> Tensor:
        """One ancestral step x_t -> x_{t-1} (DDPM eqs. 6-7); ``t_next`` is always ``t - 1`` here."""
        t_batch = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
        mean, variance = self.posterior_mean_variance(x0_hat, x_t, t_batch)
        if t == 0:
            return mean  # beta~_0 = 0: the last step is the posterior mean, which equals x0_hat
        return mean + variance.sqrt() * z()

    def _ddim_update(
        self, x_t: Tensor, x0_hat: Tensor, t: int, t_next: int, z: Callable[[], Tensor], eta: float
    ) -> Tensor:
        """One DDIM step x_t -> x_{t_next} (Song et al. 2021, eq. 12), t_next = -1 meaning the clean sample."""
        abar_t = self._abar64[t]
        abar_next = self._abar64[t_next] if t_next >= 0 else 1.0
        sigma = eta * math.sqrt((1.0 - abar_next) / (1.0 - abar_t) * (1.0 - abar_t / abar_next))  # eq. 16
        eps_coef = math.sqrt(max(1.0 - abar_next - sigma**2, 0.0)) / math.sqrt(1.0 - abar_t)
        # x_s = sqrt(abar_s) x0 + c (x_t - sqrt(abar_t) x0) + sigma z,
        # with c = sqrt(1 - abar_s - sigma^2) / sqrt(1 - abar_t) (eq. 12 with eps_hat written out).
        x_next = (math.sqrt(abar_next) - eps_coef * math.sqrt(abar_t)) * x0_hat + eps_coef * x_t
        if sigma > 0.0:
            x_next = x_next + sigma * z()
        return x_next

    def _sample(
        self,
        update: Callable[[Tensor, Tensor, int, int, Callable[[], Tensor]], Tensor],
        model_fn: ModelFn,
        shape: Sequence[int],
        timesteps: list[int],
        *,
        noise: Tensor | None,
        step_noises: Tensor | Sequence[Tensor] | None,
        generator: torch.Generator | None,
        x_init: Tensor | None,
        t_start: int | None,
        x0_transform: X0Transform | None,
        device: torch.device | str | None,
        progress: bool,
    ) -> Tensor:
        """The loop shared by both samplers: predict x0 at each timestep, then ``update`` to the next one."""
        shape = tuple(shape)
        if x_init is not None and t_start is None:
            raise ValueError("x_init needs t_start, the timestep it was noised to")
        if x_init is not None and noise is not None:
            raise ValueError("give either noise or x_init, not both")
        if step_noises is not None and len(step_noises) != len(timesteps):
            raise ValueError(f"step_noises must hold one noise per update ({len(timesteps)}), got {len(step_noises)}")
        if device is None and generator is not None:
            device = generator.device

        x = x_init if x_init is not None else noise
        if x is None:
            x = torch.randn(shape, generator=generator, device=device)
        if tuple(x.shape) != shape:
            raise ValueError(f"initial x has shape {tuple(x.shape)}, expected {shape}")

        iterator = range(len(timesteps))
        if progress and tqdm is not None:
            iterator = tqdm(iterator, desc="sampling", leave=False)
        for i in iterator:
            t = timesteps[i]
            t_next = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            t_batch = torch.full((shape[0],), t, dtype=torch.long, device=x.device)
            x0_hat = model_fn(x, t_batch)  # (B, T, D)
            if x0_transform is not None:
                x0_hat = x0_transform(x0_hat, t_batch)

            def z(i: int = i) -> Tensor:
                if step_noises is not None:
                    return step_noises[i].to(x.device, x.dtype)
                return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)

            x = update(x, x0_hat, t, t_next, z)
        return x


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
