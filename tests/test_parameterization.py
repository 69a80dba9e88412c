"""The parameterization wrapper (videomdm.parameterization.Parameterized): x0 and v predictions from the network's
raw output, and checkpoints saved before the conversion left the network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_model import inputs, small_model

from videomdm.config import load_config
from videomdm.diffusion import GaussianDiffusion
from videomdm.factory import build_denoiser, build_model
from videomdm.parameterization import Parameterized

# Written by the code of commit 7c14520, where MotionDenoiser converted v to x0 itself (a ``v_schedule`` buffer):
# ``weights.*`` the state dict of ``build_model(load_config("small", OLD_SETTINGS), 7, 0)`` (seed 0), and its eval-mode
# output ``x0`` on ``x``, ``t``, ``mask``.
OLD_CHECKPOINT = Path(__file__).parent / "data" / "v_prediction_checkpoint.safetensors"
OLD_SETTINGS = ["model.width=16", "model.layers=1", "model.heads=2", "model.ff_size=32", "model.prediction=v",
                "diffusion.steps=10", "diffusion.sample_steps=10", "two_d.teacher_min_t=3",
                "model.max_frequency_hz=0"]  # a key that run's config.json lacks: it loads with the default, 0


def zero_head(model: torch.nn.Module) -> None:
    torch.nn.init.zeros_(model.output_proj.weight)
    torch.nn.init.zeros_(model.output_proj.bias)


def test_v_prediction_returns_x0_from_the_v_output():
    """x0 = sqrt(abar_t) x_t − sqrt(1 − abar_t) v: with a zero v head the denoiser returns sqrt(abar_t) x_t."""
    diffusion = GaussianDiffusion(50)
    net = small_model(0)
    zero_head(net)
    denoiser = Parameterized(net, "v", diffusion.alphas_cumprod).eval()
    x, t, mask, _ = inputs()
    expected = diffusion.alphas_cumprod[t].sqrt()[:, None, None] * x
    torch.testing.assert_close(denoiser(x, t, mask), expected)


def test_patched_v_prediction_is_per_frame():
    """x0 = sqrt(abar_t) x_t − sqrt(1 − abar_t) v holds frame by frame with k = 2 (zero v head → sqrt(abar_t) x_t),
    and padded frames (NaN in the input) come out as 0."""
    diffusion = GaussianDiffusion(50)
    net = small_model(0, frames_per_token=2)
    zero_head(net)
    denoiser = Parameterized(net, "v", diffusion.alphas_cumprod).eval()
    x, t, mask, _ = inputs(frames=7)
    mask[2, 4:] = False
    expected = (diffusion.alphas_cumprod[t].sqrt()[:, None, None] * x).masked_fill(~mask[..., None], 0.0)
    x[~mask] = float("nan")
    torch.testing.assert_close(denoiser(x, t, mask), expected)


class ConstantOutput(torch.nn.Module):
    """A stand-in network whose raw output is 1 everywhere, in the dtype autocast gives its matrix products."""

    def forward(self, x, t, mask, cond=None, uncond=None):
        return torch.nn.functional.linear(x, torch.eye(x.shape[-1])) * 0 + 1


def test_v_prediction_under_bf16_autocast_keeps_the_schedule_in_float32():
    """Under bf16 autocast x0 = sqrt(abar_t) x_t − sqrt(1 − abar_t) v uses the float32 schedule: in bf16, abar_0
    rounds to 1 and the lowest level would ignore the network (x0 = x_t), unlike float32 sampling."""
    diffusion = GaussianDiffusion(50)
    denoiser = Parameterized(ConstantOutput(), "v", diffusion.alphas_cumprod)
    x = torch.randn(3, 5, 4)
    t = torch.tensor([0, 1, 2])
    mask = torch.ones(3, 5, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x0 = denoiser(x, t, mask)
    abar = diffusion.alphas_cumprod[t].float()[:, None, None]
    assert x0.dtype == torch.float32
    torch.testing.assert_close(x0, abar.sqrt() * x - (1 - abar).sqrt())
    assert (x0[0] - x[0]).abs().min() > 0.04  # sqrt(1 − abar_0) = 0.042: the network's output counts at t = 0


def test_edm_with_unit_data_std_is_v_prediction():
    diffusion = GaussianDiffusion(50)
    net = small_model(0).eval()
    x, t, mask, _ = inputs()
    v = Parameterized(net, "v", diffusion.alphas_cumprod)
    edm = Parameterized(net, "edm", diffusion.alphas_cumprod, data_std=torch.ones(x.shape[-1]))
    with torch.no_grad():
        torch.testing.assert_close(edm(x, t, mask), v(x, t, mask))


def test_edm_with_a_zero_network_is_the_wiener_filter_of_each_feature():
    """x0_hat = s² sqrt(abar) / (s² abar + 1 − abar) x_t: the posterior mean of zero-mean Gaussian data of std s."""
    diffusion = GaussianDiffusion(50)
    net = small_model(0)
    zero_head(net)
    x, t, mask, _ = inputs()
    data_std = torch.ones(x.shape[-1])
    data_std[:3] = 5.0
    denoiser = Parameterized(net, "edm", diffusion.alphas_cumprod, data_std=data_std).eval()
    abar = diffusion.alphas_cumprod[t].float()[:, None, None]
    expected = data_std**2 * abar.sqrt() / (data_std**2 * abar + 1 - abar) * x
    torch.testing.assert_close(denoiser(x, t, mask), expected)
    with pytest.raises(ValueError, match="data_std"):
        Parameterized(net, "edm", diffusion.alphas_cumprod)


def test_edm_takes_the_root_emphasis_as_the_root_features_data_std():
    for settings, root_std in ((["model.prediction=edm"], 5.0),
                               (["model.prediction=edm", "data.root_emphasis=2"], 2.0),
                               (["model.prediction=edm", "data.normalization=dimension"], 1.0)):
        config = load_config("small", settings)
        data_std = build_denoiser(config, build_model(config, 263, 0)).data_std
        assert data_std[:4].tolist() == [root_std] * 4  # angular velocity, linear velocity (2), height
        assert torch.all(data_std[4:] == 1.0)


def test_x0_prediction_is_the_network_output():
    net = small_model().eval()
    x, t, mask, cond = inputs()
    with torch.no_grad():
        assert torch.equal(Parameterized(net, "x0")(x, t, mask, cond), net(x, t, mask, cond))


def test_the_wrapper_holds_no_parameters_and_saves_nothing_of_its_own():
    net = small_model()
    denoiser = Parameterized(net, "v", GaussianDiffusion(50).alphas_cumprod)
    assert [p for p in denoiser.parameters()] == [p for p in net.parameters()]
    assert set(denoiser.state_dict()) == {f"net.{name}" for name in net.state_dict()}  # no schedule saved


def test_unknown_or_incomplete_parameterizations_are_refused():
    with pytest.raises(ValueError, match="unknown prediction 'eps'"):
        Parameterized(small_model(), "eps")
    with pytest.raises(ValueError, match="alphas_cumprod"):
        Parameterized(small_model(), "v")


def test_a_checkpoint_saved_before_the_wrapper_loads_and_predicts_the_same():
    """State-dict keys are unchanged: the network saved by the old code loads strictly and, wrapped, gives the old
    x0 prediction."""
    saved = load_file(OLD_CHECKPOINT)
    weights = {name.removeprefix("weights."): value for name, value in saved.items() if name.startswith("weights.")}
    config = load_config("small", OLD_SETTINGS)
    network = build_model(config, 7, 0)
    network.load_state_dict(weights)  # strict: same keys, same shapes
    denoiser = build_denoiser(config, network).eval()
    with torch.no_grad():
        x0 = denoiser(saved["x"], saved["t"], saved["mask"])
    torch.testing.assert_close(x0, saved["x0"], rtol=0, atol=1e-6)
