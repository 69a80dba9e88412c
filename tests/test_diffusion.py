"""Tests for videomdm.diffusion: schedules, forward process, posterior, DDPM/DDIM samplers, CFG."""

from __future__ import annotations

import math

import pytest
import torch

from videomdm.diffusion import (
    GaussianDiffusion,
    classifier_free_guidance,
    cosine_beta_schedule,
    level_sequence,
    linear_beta_schedule,
    make_beta_schedule,
    sample_ddim,
    sample_ddpm,
)
from videomdm.model import MotionDenoiser

SHAPE = (2, 9, 5)  # (B, T, D)


def gaussian_data_denoiser(diffusion: GaussianDiffusion, data_std: float):
    """The exact E[x0 | x_t] when x0 ~ N(0, data_std^2 I): a linear shrinkage of x_t."""

    def model_fn(x_t, t):
        abar = diffusion.alphas_cumprod[t].view(-1, 1, 1)
        var = data_std**2
        return abar.sqrt() * var / (abar * var + 1.0 - abar) * x_t

    return model_fn


def smooth_model_fn(x_t, t):
    """A cheap non-linear x0 predictor that depends on x_t and t."""
    return torch.tanh(x_t) * (1.0 + t.view(-1, 1, 1).float() / 100.0)


def start_noise(seed: int, shape=SHAPE):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def noises(num_updates: int, shape=SHAPE, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(num_updates, *shape, generator=g)


# ----- schedules -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_steps", [50, 1000])
def test_cosine_schedule_properties(num_steps):
    betas = cosine_beta_schedule(num_steps)
    assert betas.shape == (num_steps,) and betas.dtype == torch.float64
    assert (betas > 0).all() and (betas <= 0.999).all()
    abar = torch.cumprod(1 - betas, dim=0)
    assert (abar > 0).all() and (abar < 1).all()
    assert (abar[1:] < abar[:-1]).all()  # strictly decreasing
    assert abar[0] > 0.99  # almost no noise at the first step
    assert abar[-1] < 1e-3  # almost pure noise at the last step


@pytest.mark.parametrize("num_steps", [50, 1000])
def test_cosine_schedule_matches_eq17(num_steps):
    s = 0.008

    def f(t):
        return math.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2

    abar = torch.cumprod(1 - cosine_beta_schedule(num_steps), dim=0)
    expected = torch.tensor([f(t + 1) / f(0) for t in range(num_steps)], dtype=torch.float64)
    # The final beta is clipped at 0.999, so only the unclipped prefix follows eq. 17 exactly.
    assert torch.allclose(abar[:-1], expected[:-1], rtol=1e-10, atol=1e-12)


def test_linear_schedule():
    betas = linear_beta_schedule(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert (betas[1:] > betas[:-1]).all()
    short = torch.cumprod(1 - linear_beta_schedule(50), dim=0)
    assert short[-1] < 1e-3  # rescaled so that 50 steps still reach noise
    assert torch.equal(make_beta_schedule("linear", 1000), betas)
    with pytest.raises(ValueError):
        make_beta_schedule("quadratic", 10)


def test_diffusion_tensors_are_float32_and_consistent():
    diffusion = GaussianDiffusion(50)
    assert diffusion.num_steps == 50
    for name in GaussianDiffusion._TENSOR_NAMES:
        tensor = getattr(diffusion, name)
        assert tensor.dtype == torch.float32 and tensor.shape == (50,), name
    assert diffusion.alphas_cumprod_prev[0] == 1.0
    assert torch.allclose(diffusion.alphas_cumprod_prev[1:], diffusion.alphas_cumprod[:-1])
    assert torch.allclose(diffusion.sqrt_alphas_cumprod**2 + diffusion.sqrt_one_minus_alphas_cumprod**2, torch.ones(50))
    assert diffusion.to("cpu") is diffusion
    with pytest.raises(ValueError):
        GaussianDiffusion(betas=torch.tensor([0.1, 1.5]))


# ----- forward process and posterior -------------------------------------------------------------------------


def test_q_sample_formula_and_statistics():
    diffusion = GaussianDiffusion(50)
    t = torch.tensor([0, 10, 25, 49])
    x0 = torch.full((4, 50_000, 1), 2.0)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=g)
    x_t = diffusion.q_sample(x0, t, noise)
    abar = diffusion.alphas_cumprod[t].double()
    expected = abar.sqrt().view(-1, 1, 1) * 2.0 + (1 - abar).sqrt().view(-1, 1, 1) * noise.double()
    assert torch.allclose(x_t.double(), expected, atol=1e-5)
    # Moments of q(x_t | x_0) = N(sqrt(abar) x0, (1 - abar) I).
    assert torch.allclose(x_t.mean(dim=(1, 2)).double(), 2.0 * abar.sqrt(), atol=0.02)
    assert torch.allclose(x_t.std(dim=(1, 2)).double(), (1 - abar).sqrt(), rtol=0.02, atol=1e-3)
    assert diffusion.q_sample(x0[:, :3], t).shape == (4, 3, 1)  # draws its own noise


def test_posterior_matches_bayes_closed_form():
    """q(x_{t-1} | x_t, x_0) from the product of q(x_{t-1} | x_0) and q(x_t | x_{t-1})."""
    diffusion = GaussianDiffusion(50)
    betas = cosine_beta_schedule(50)
    abar = torch.cumprod(1 - betas, dim=0)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([1, 5, 20, 49])
    x0 = torch.randn(4, 3, 2, generator=g)
    x_t = torch.randn(4, 3, 2, generator=g)
    mean, variance = diffusion.posterior_mean_variance(x0, x_t, t)
    for i, step in enumerate(t.tolist()):
        prior_var = 1 - abar[step - 1]  # x_{t-1} | x_0
        alpha, beta = 1 - betas[step], betas[step]  # x_t | x_{t-1}
        post_var = 1.0 / (1.0 / prior_var + alpha / beta)
        precision_weighted = abar[step - 1].sqrt() * x0[i].double() / prior_var + alpha.sqrt() * x_t[i].double() / beta
        post_mean = post_var * precision_weighted
        assert variance[i].item() == pytest.approx(post_var.item(), rel=1e-5)
        assert torch.allclose(mean[i].double(), post_mean, atol=1e-5)
    # At t = 0 the posterior collapses on x0.
    zero = torch.zeros(4, dtype=torch.long)
    mean0, variance0 = diffusion.posterior_mean_variance(x0, x_t, zero)
    assert torch.allclose(mean0, x0, atol=1e-6) and (variance0 == 0).all()


def test_predict_noise_inverts_q_sample():
    diffusion = GaussianDiffusion(50)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 2, 3, 3, generator=g)  # two (B=2, T=3, D=3) tensors
    t = torch.tensor([3, 40])
    x_t = diffusion.q_sample(x0, t, noise)
    assert torch.allclose(diffusion.predict_noise_from_x0(x_t, t, x0), noise, atol=1e-4)


# ----- samplers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_steps,schedule", [(50, "cosine"), (1000, "cosine"), (1000, "linear")])
def test_ddim_eta1_all_steps_equals_ddpm(num_steps, schedule):
    diffusion = GaussianDiffusion(num_steps, schedule)
    noise, step_noises = noises(num_steps)
    levels = level_sequence(num_steps - 1)
    ddpm, _ = sample_ddpm(diffusion, smooth_model_fn, noise, levels, step_noises=step_noises)
    ddim, _ = sample_ddim(diffusion, smooth_model_fn, noise, levels, eta=1.0, step_noises=step_noises)
    assert torch.allclose(ddpm, ddim, atol=1e-5)
    # Not trivially equal: the noise matters.
    other, _ = sample_ddpm(diffusion, smooth_model_fn, noise, levels, step_noises=noises(num_steps, seed=1)[1])
    assert not torch.allclose(ddpm, other, atol=1e-3)


def test_ddim_eta1_equals_ddpm_with_real_denoiser_and_generators():
    torch.manual_seed(0)
    model = MotionDenoiser(SHAPE[2], width=32, layers=2, heads=4, ff_size=64).eval()
    mask = torch.ones(SHAPE[:2], dtype=torch.bool)
    mask[1, 6:] = False

    def model_fn(x_t, t):
        return model(x_t, t, mask)

    diffusion = GaussianDiffusion(50)
    with torch.no_grad():
        g_ddpm, g_ddim = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        levels = level_sequence(49)
        ddpm, _ = sample_ddpm(diffusion, model_fn, torch.randn(SHAPE, generator=g_ddpm), levels, generator=g_ddpm)
        ddim, _ = sample_ddim(diffusion, model_fn, torch.randn(SHAPE, generator=g_ddim), levels, eta=1.0,
                              generator=g_ddim)
    assert torch.allclose(ddpm, ddim, atol=1e-5)


@pytest.mark.parametrize("steps", [None, 10, 20, [49, 30, 12, 3, 0], [40, 7]])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_lands_on_fixed_point(steps, eta):
    target = torch.linspace(-1, 1, math.prod(SHAPE)).view(SHAPE)
    calls = []

    def constant_fn(x_t, t):
        calls.append(t)
        return target.expand_as(x_t)

    diffusion = GaussianDiffusion(50)
    levels = steps if isinstance(steps, list) else level_sequence(49, steps)
    g = torch.Generator().manual_seed(0)
    out, _ = sample_ddim(diffusion, constant_fn, torch.randn(SHAPE, generator=g), levels, eta=eta, generator=g)
    assert torch.allclose(out, target, atol=1e-5)
    assert [c[0].item() for c in calls] == levels
    assert all(c.shape == (SHAPE[0],) and c.dtype == torch.long for c in calls)


def test_level_sequence():
    diffusion = GaussianDiffusion(50)
    for n in (1, 2, 10, 20, 50):
        ts = level_sequence(49, n)
        assert len(ts) == n and ts[0] == 49
        assert n == 1 or ts[-1] == 0
        assert all(a > b for a, b in zip(ts, ts[1:]))
    assert level_sequence(49) == list(range(49, -1, -1))
    assert level_sequence(20, 5) == [20, 15, 10, 5, 0]
    assert level_sequence(20, 21) == level_sequence(20)
    big = level_sequence(999, 50)
    assert len(big) == 50 and big[0] == 999 and big[-1] == 0 and len(set(big)) == 50
    for bad in (0, 51):
        with pytest.raises(ValueError):
            level_sequence(49, bad)
    for bad in ([10, 10, 0], [0, 10], [60, 0], []):
        with pytest.raises(ValueError):
            sample_ddim(diffusion, smooth_model_fn, torch.zeros(SHAPE), bad)
    with pytest.raises(ValueError):  # DDPM steps one level at a time
        sample_ddpm(diffusion, smooth_model_fn, torch.zeros(SHAPE), [20, 10, 0])


def test_ddim_eta0_is_deterministic_given_noise():
    diffusion = GaussianDiffusion(50)
    noise, _ = noises(1)
    levels = level_sequence(49, 10)
    a, _ = sample_ddim(diffusion, smooth_model_fn, noise, levels, generator=torch.Generator().manual_seed(1))
    b, _ = sample_ddim(diffusion, smooth_model_fn, noise, levels, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


def test_samplers_recover_gaussian_data_distribution():
    """With the exact denoiser for x0 ~ N(0, 0.5^2), samples have std ~0.5 (an end-to-end sampler check)."""
    data_std = 0.5
    shape = (4000, 1, 8)
    small = GaussianDiffusion(50)
    g = torch.Generator().manual_seed(0)
    out, _ = sample_ddim(small, gaussian_data_denoiser(small, data_std), torch.randn(shape, generator=g),
                         level_sequence(49), generator=g)
    assert out.std().item() == pytest.approx(data_std, rel=0.05)
    assert abs(out.mean().item()) < 0.02
    big = GaussianDiffusion(1000)
    g = torch.Generator().manual_seed(0)
    out, _ = sample_ddpm(big, gaussian_data_denoiser(big, data_std), torch.randn(shape, generator=g),
                         level_sequence(999), generator=g)
    assert out.std().item() == pytest.approx(data_std, rel=0.02)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_start_from_noised_x_init(sampler):
    diffusion = GaussianDiffusion(50)
    seen = []

    def model_fn(x_t, t):
        seen.append(t[0].item())
        return smooth_model_fn(x_t, t)

    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    t_start = 20
    x_init = diffusion.q_sample(x0, torch.full((SHAPE[0],), t_start), torch.randn(SHAPE))
    if sampler == "ddpm":
        out, _ = sample_ddpm(diffusion, model_fn, x_init, level_sequence(t_start))
        assert seen == list(range(20, -1, -1))
    else:
        out, _ = sample_ddim(diffusion, model_fn, x_init, level_sequence(t_start, 5))
        assert seen == [20, 15, 10, 5, 0]
    assert out.shape == SHAPE and torch.isfinite(out).all()


def test_x_init_at_t_start_one_deterministic_step_returns_prediction():
    diffusion = GaussianDiffusion(50)
    x_init = torch.randn(SHAPE)
    out, _ = sample_ddim(diffusion, smooth_model_fn, x_init, level_sequence(0, 1))
    assert torch.allclose(out, smooth_model_fn(x_init, torch.zeros(SHAPE[0], dtype=torch.long)), atol=1e-6)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_callback_replaces_x0_and_threads_its_state(sampler):
    """The callback's x0 is what the sampler steps with, it sees every level in order, and the state it returns at
    one step is the state it gets at the next; the last one comes back."""
    diffusion = GaussianDiffusion(50)
    target = torch.full(SHAPE, 0.25)

    def counting(x0_hat, level, seen):
        assert isinstance(level, int)
        return target, seen + (level,)

    sample = {"ddpm": sample_ddpm, "ddim": sample_ddim}[sampler]
    g = torch.Generator().manual_seed(0)
    out, seen = sample(diffusion, smooth_model_fn, torch.randn(SHAPE, generator=g), level_sequence(49),
                       generator=g, callback=counting, state=())
    assert torch.allclose(out, target, atol=1e-5)  # the last step returns the (replaced) x0
    assert seen == tuple(range(49, -1, -1))
    _, untouched = sample(diffusion, smooth_model_fn, torch.zeros(SHAPE), [0], state="kept")
    assert untouched == "kept"  # no callback: the state comes back as given


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_starting_mid_chain_is_slicing_the_levels(eta):
    """From the x a whole run holds at ``levels[k]``, the run over ``levels[k:]`` (with the same later noises) ends
    where the whole run ends."""
    diffusion = GaussianDiffusion(50)
    levels = level_sequence(49, 12)
    noise, step_noises = noises(len(levels))
    k = 5
    inputs = {}

    def recording_fn(x_t, t):
        inputs[int(t[0])] = x_t
        return smooth_model_fn(x_t, t)

    whole, _ = sample_ddim(diffusion, recording_fn, noise, levels, eta=eta, step_noises=step_noises)
    tail, _ = sample_ddim(diffusion, smooth_model_fn, inputs[levels[k]], levels[k:], eta=eta,
                          step_noises=step_noises[k:])
    assert torch.allclose(tail, whole, atol=1e-6)


def test_ddim_eta0_with_the_true_x0_returns_it_from_mid_chain():
    diffusion = GaussianDiffusion(50)
    x0 = start_noise(0)
    levels = level_sequence(49, 10)[4:]
    x_t = diffusion.q_sample(x0, torch.full((SHAPE[0],), levels[0]), start_noise(1))
    out, _ = sample_ddim(diffusion, lambda x, t: x0, x_t, levels)
    assert torch.allclose(out, x0, atol=1e-5)


def test_step_noises_length_is_checked():
    diffusion = GaussianDiffusion(50)
    noise, step_noises = noises(10)
    with pytest.raises(ValueError):
        sample_ddpm(diffusion, smooth_model_fn, noise, level_sequence(49), step_noises=step_noises)
    out, _ = sample_ddim(diffusion, smooth_model_fn, noise, level_sequence(49, 10), eta=1.0, step_noises=step_noises)
    assert out.shape == SHAPE


# ----- classifier-free guidance ------------------------------------------------------------------------------


class CountingModel(torch.nn.Module):
    """Wraps a MotionDenoiser and records the batch size of every forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.batch_sizes = []

    def forward(self, x, t, mask, cond=None, uncond=None):
        self.batch_sizes.append(x.shape[0])
        return self.model(x, t, mask, cond, uncond=uncond)


def guided_setup():
    torch.manual_seed(0)
    model = MotionDenoiser(SHAPE[2], cond_dim=4, width=32, layers=2, heads=4, ff_size=64).eval()
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(SHAPE, generator=g)
    t = torch.tensor([5, 30])
    mask = torch.ones(SHAPE[:2], dtype=torch.bool)
    mask[0, 7:] = False
    cond = torch.randn(SHAPE[0], 4, generator=g)
    return model, x_t, t, mask, cond


def test_cfg_one_batched_forward_and_scale_one_is_conditional():
    model, x_t, t, mask, cond = guided_setup()
    counting = CountingModel(model)
    with torch.no_grad():
        guided = classifier_free_guidance(counting, 1.0, mask=mask, cond=cond)(x_t, t)
        conditional = model(x_t, t, mask, cond)
    assert counting.batch_sizes == [2 * SHAPE[0]]  # one forward on the doubled batch
    assert torch.allclose(guided, conditional, atol=1e-5)


def test_cfg_formula():
    model, x_t, t, mask, cond = guided_setup()
    scale = 2.5
    uncond = torch.ones(SHAPE[0], dtype=torch.bool)
    with torch.no_grad():
        guided = classifier_free_guidance(model, scale, mask=mask, cond=cond)(x_t, t)
        unguided = classifier_free_guidance(model, 0.0, mask=mask, cond=cond)(x_t, t)
        c = model(x_t, t, mask, cond)
        u = model(x_t, t, mask, cond, uncond=uncond)
    assert torch.allclose(unguided, u, atol=1e-5)
    assert torch.allclose(guided, u + scale * (c - u), atol=1e-5)
    assert not torch.allclose(guided, c, atol=1e-4)


def test_cfg_drives_a_sampler():
    model, _, _, mask, cond = guided_setup()
    counting = CountingModel(model)
    diffusion = GaussianDiffusion(50)
    with torch.no_grad():
        out, _ = sample_ddim(diffusion, classifier_free_guidance(counting, 2.5, mask=mask, cond=cond),
                             start_noise(0), level_sequence(49, 10))
    assert out.shape == SHAPE and torch.isfinite(out).all()
    assert counting.batch_sizes == [2 * SHAPE[0]] * 10


def test_loss_weights_per_level():
    diffusion = GaussianDiffusion(50)
    t = torch.tensor([0, 12, 49])
    abar = diffusion.alphas_cumprod[t]
    snr = abar / (1 - abar)
    torch.testing.assert_close(diffusion.loss_weights(t, "x0"), torch.ones(3))
    torch.testing.assert_close(diffusion.loss_weights(t, "v"), 1 / (1 - abar))
    torch.testing.assert_close(diffusion.loss_weights(t, "min_snr", gamma=5.0), snr.clamp_max(5.0))
    # The v weighting is the v-space loss: (SNR + 1)·‖x̂0 − x0‖² = ‖v̂ − v‖² for x̂0 = √ᾱ x_t − √(1 − ᾱ) v̂.
    x0, noise, v_hat = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    x_t = diffusion.q_sample(x0, t, noise)
    v = abar.sqrt()[:, None] * noise - (1 - abar).sqrt()[:, None] * x0
    x0_hat = abar.sqrt()[:, None] * x_t - (1 - abar).sqrt()[:, None] * v_hat
    weighted = diffusion.loss_weights(t, "v")[:, None] * (x0_hat - x0).square()
    torch.testing.assert_close(weighted, (v_hat - v).square(), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="weighting"):
        diffusion.loss_weights(t, "eps")
