"""Band-limited motion (videomdm.bandlimit) and the band-limited x0 prediction of the parameterization wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from test_model import inputs, small_model

from videomdm.bandlimit import bandlimit, kept_coefficients, lowpass_projector
from videomdm.config import ConfigError, load_config
from videomdm.diffusion import GaussianDiffusion
from videomdm.factory import build_denoiser, build_model
from videomdm.parameterization import Parameterized


def test_kept_coefficients_follow_the_cut_off():
    # coefficient k of a T-frame window oscillates at k / (2T) cycles per frame
    assert kept_coefficients(60, 0.2) == 25  # 4 Hz at 20 fps: k ≤ 24
    assert kept_coefficients(60, 0.5) == 60  # Nyquist: everything is kept
    assert kept_coefficients(1, 0.01) == 1
    with pytest.raises(ValueError, match="positive frequency"):
        kept_coefficients(60, 0.0)


def test_the_projector_keeps_slow_motion_and_removes_fast_motion():
    frames = np.arange(60)
    projector = lowpass_projector(60, 0.2)
    np.testing.assert_allclose(projector @ projector, projector, atol=1e-12)  # a projection
    np.testing.assert_allclose(projector, projector.T, atol=1e-12)  # orthogonal
    slow = scipy.fft.idct(np.eye(60)[10], norm="ortho")  # DCT frequency 10 / 120 cycles per frame, below 0.2
    fast = scipy.fft.idct(np.eye(60)[40], norm="ortho")  # 40 / 120, above
    np.testing.assert_allclose(projector @ slow, slow, atol=1e-12)
    np.testing.assert_allclose(projector @ fast, 0.0, atol=1e-12)
    alternating = (-1.0) ** frames  # per-frame jitter at the Nyquist frequency: < 1 % of its energy is left
    assert np.sum((projector @ alternating) ** 2) < 0.01 * np.sum(alternating**2)
    white = np.random.default_rng(0).standard_normal((60, 1000))  # white noise keeps about K / T of its energy
    assert np.sum((projector @ white) ** 2) / np.sum(white**2) == pytest.approx(25 / 60, rel=0.05)
    ramp = 0.05 * frames  # a steady walk is kept up to the ends (no end effects of a causal filter)
    assert np.abs(projector @ ramp - ramp).max() < 0.02 * ramp.max()


def test_each_window_is_projected_over_its_own_real_frames():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 30, 4, generator=g)
    mask = torch.ones(3, 30, dtype=torch.bool)
    mask[1, 20:] = False
    x[1, 20:] = float("nan")  # padding may be anything
    out = bandlimit(x, mask, 0.15)
    assert (out[1, 20:] == 0).all()
    for i, n in enumerate([30, 20, 30]):
        single = bandlimit(x[i : i + 1, :n], mask[i : i + 1, :n], 0.15)
        torch.testing.assert_close(out[i : i + 1, :n], single)
        expected = torch.as_tensor(lowpass_projector(n, 0.15), dtype=torch.float32) @ x[i, :n]
        torch.testing.assert_close(out[i, :n], expected)


def test_padding_before_real_frames_is_refused():
    mask = torch.ones(1, 10, dtype=torch.bool)
    mask[0, 0] = False
    with pytest.raises(ValueError, match="real frames of each window first"):
        bandlimit(torch.zeros(1, 10, 3), mask, 0.2)


def test_band_limited_predictions_have_no_energy_above_the_cut_off():
    diffusion = GaussianDiffusion(50)
    denoiser = Parameterized(small_model(0), "v", diffusion.alphas_cumprod, max_cycles_per_frame=0.1).eval()
    x, t, mask, _ = inputs(frames=40)
    with torch.no_grad():
        x0 = denoiser(x, t, mask).numpy()
    spectrum = scipy.fft.dct(x0, norm="ortho", axis=1)  # (B, T, D) frequencies along time
    kept = kept_coefficients(40, 0.1)
    assert np.abs(spectrum[:, kept:]).max() < 1e-5 < np.abs(spectrum[:, :kept]).max()


def test_the_config_sets_the_cut_off_in_hertz():
    config = load_config("small", ["model.max_frequency_hz=5", "data.fps=25"])
    denoiser = build_denoiser(config, build_model(config, 263, 0))
    assert denoiser.max_cycles_per_frame == pytest.approx(0.2)
    assert load_config("small").model.max_frequency_hz == 4.0  # the measured recipe
    assert load_config("default").model.max_frequency_hz == 0.0  # MDM, and every run saved before the option
    with pytest.raises(ConfigError, match="max_frequency_hz"):
        load_config("small", ["model.max_frequency_hz=-1"])


def test_bf16_inputs_and_autocast_keep_their_dtype():
    x = torch.randn(2, 30, 5)
    mask = torch.ones(2, 30, dtype=torch.bool)
    reference = bandlimit(x, mask, 0.2)
    assert bandlimit(x.bfloat16(), mask, 0.2).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = bandlimit(x * 1.0, mask, 0.2)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, reference)  # projected in float32 even under autocast
