"""Fast sampling switches of videomdm.sample.generate: one batched guided forward per step, the captions embedded
once per call, bf16 autocast, torch.compile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from videomdm.config import load_config
from videomdm.factory import build_denoiser, build_diffusion, build_model
from videomdm.representation import Normalizer
from videomdm.sample import LoadedRun, generate
from videomdm.skeleton import get_skeleton

FEATURES = 263


class CountingTextEncoder:
    """A deterministic stand-in text encoder that records what it was asked to embed."""

    dim = 8

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, captions: list[str]) -> torch.Tensor:
        self.calls.append(list(captions))
        return torch.stack([torch.full((self.dim,), float(len(c))) / 10 for c in captions])


def tiny_run(*overrides: str) -> LoadedRun:
    config = load_config("small", ["model.width=32", "model.layers=2", "model.ff_size=64", "data.num_frames=24",
                                   "data.min_frames=10", "data.text_encoder=minilm", "model.prediction=x0",
                                   "model.zero_init_output=false", *overrides])
    torch.manual_seed(0)
    encoder = CountingTextEncoder()
    model = build_denoiser(config, build_model(config, FEATURES, encoder.dim)).eval()
    normalizer = Normalizer(torch.zeros(FEATURES), torch.ones(FEATURES))
    return LoadedRun(config=config, model=model, diffusion=build_diffusion(config), normalizer=normalizer,
                     text_encoder=encoder, skeleton=get_skeleton("smpl22"), device=torch.device("cpu"), step=0,
                     checkpoint=Path("none"))


def record_forwards(run: LoadedRun) -> list[dict]:
    seen: list[dict] = []

    def hook(module, args, kwargs, output):
        seen.append({"batch": args[0].shape[0], "uncond": kwargs.get("uncond"), "dtype": output.dtype,
                     "autocast": torch.is_autocast_enabled("cpu")})

    run.model.register_forward_hook(hook, with_kwargs=True)
    return seen


def test_guided_sampling_is_one_doubled_forward_per_step_and_one_embedding_per_caption():
    run = tiny_run()
    seen = record_forwards(run)
    captions = ["walk", "run in a circle", "walk"]
    joints = generate(run, 3, texts=captions, steps=7)
    assert joints.shape == (3, 24, 22, 3) and np.isfinite(joints).all()
    assert len(seen) == 7 and all(f["batch"] == 6 for f in seen)
    assert seen[0]["uncond"].tolist() == [False] * 3 + [True] * 3
    assert run.text_encoder.calls == [captions]  # one embedding call for all steps (MiniLM de-duplicates, test_text)
    generate(run, 4, texts=["jump"], steps=2)
    assert run.text_encoder.calls[-1] == ["jump"] * 4


def native_bf16(monkeypatch, supported: bool) -> None:
    """Make the CPU report (or deny) bf16 matrix units; CPU autocast runs either way (emulated without them)."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: supported)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


def test_bf16_sampling_runs_the_denoiser_under_autocast_and_stays_close(monkeypatch):
    native_bf16(monkeypatch, True)
    run = tiny_run()
    seen = record_forwards(run)
    full = generate(run, 2, texts=["walk"], steps=5, precision="fp32")
    assert all(not f["autocast"] and f["dtype"] == torch.float32 for f in seen)
    seen.clear()
    half = generate(run, 2, texts=["walk"], steps=5, precision="bf16")
    assert seen and all(f["autocast"] and f["dtype"] == torch.bfloat16 for f in seen)
    assert half.dtype == np.float32 and np.isfinite(half).all()
    assert not np.array_equal(full, half)
    # bf16 keeps ~3 significant digits per product. The root trajectory integrates the per-frame velocity features
    # and so accumulates their rounding (how much depends on the CPU's bf16 kernels); the root-relative pose does not.
    pose_full, pose_half = full - full[:, :, :1], half - half[:, :, :1]
    assert np.linalg.norm(pose_full - pose_half) < 0.1 * np.linalg.norm(pose_full)
    bf16_config = tiny_run("diffusion.sample_precision=bf16")
    seen = record_forwards(bf16_config)
    generate(bf16_config, 1, steps=2)
    assert all(f["autocast"] for f in seen)  # the config switch alone selects bf16


def test_bf16_sampling_falls_back_to_fp32_without_native_bf16(monkeypatch):
    native_bf16(monkeypatch, False)
    run = tiny_run()
    seen = record_forwards(run)
    full = generate(run, 1, steps=2, precision="fp32")
    with pytest.warns(UserWarning, match="no native bf16 support; sampling in fp32"):
        fallback = generate(run, 1, steps=2, precision="bf16")
    assert not any(f["autocast"] for f in seen)
    np.testing.assert_array_equal(full, fallback)


def test_precision_is_checked():
    with pytest.raises(ValueError, match="precision"):
        generate(tiny_run(), 1, steps=2, precision="fp16")


@pytest.mark.integration
def test_compiled_sampling_matches_eager():
    run = tiny_run()
    eager = generate(run, 2, texts=["walk"], steps=3)
    compiled = generate(run, 2, texts=["walk"], steps=3, compile=True)
    assert run.compiled is not None
    np.testing.assert_allclose(compiled, eager, atol=1e-4, rtol=1e-4)


def test_denoising_errors_of_a_model_that_predicts_the_mean_are_the_motions_distance_from_it():
    """x0 prediction with a zeroed output layer returns x̂0 = 0 (the mean features): its joint error is the same at
    every level, the distance of the motions' joints from the mean motion's."""
    from synthetic import walk

    from videomdm.representation import decode, encode
    from videomdm.sample import align_on_ground, denoising_errors

    run = tiny_run()
    torch.nn.init.zeros_(run.model.net.output_proj.weight)
    torch.nn.init.zeros_(run.model.net.output_proj.bias)
    motions = np.stack([walk(24, seed=s) for s in range(3)])  # (3, 24, 22, 3)
    x0 = encode(torch.as_tensor(motions, dtype=torch.float32), run.skeleton,
                contact_threshold=run.config.data.contact_threshold, facing_sigma=run.config.data.facing_sigma)
    mean_motion = decode(torch.zeros_like(x0), 22)  # the normalizer is the identity here
    reference = decode(x0, 22)
    expected_mm = 1000 * float((align_on_ground(mean_motion, reference) - reference).norm(dim=-1).mean())
    errors = denoising_errors(run, motions)
    levels = [0, 2, 6, 12, 24, 39]  # the default fractions of the last level (49)
    assert sorted(int(k.removeprefix("denoise_mm_t")) for k in errors if k.startswith("denoise_mm_t")) == levels
    for t in levels:
        assert errors[f"denoise_mm_t{t}"] == pytest.approx(expected_mm, rel=1e-4)
        assert errors[f"denoise_ratio_t{t}"] == pytest.approx(expected_mm / errors[f"input_mm_t{t}"], rel=1e-6)
    inputs = [errors[f"input_mm_t{t}"] for t in levels]
    assert inputs == sorted(inputs) and inputs[0] > 0  # the input as given gets worse with the level


def test_align_on_ground_undoes_a_turn_about_the_vertical_and_a_ground_translation():
    from videomdm.representation import yaw_matrix
    from videomdm.sample import align_on_ground

    reference = torch.randn(3, 10, 22, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    turned = torch.einsum("nij,ntkj->ntki", yaw_matrix(torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)), reference)
    moved = turned + torch.tensor([1.0, 0.0, -2.0], dtype=torch.float64)
    torch.testing.assert_close(align_on_ground(moved, reference), reference)
    lifted = moved + torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64)  # a height error is not aligned away
    assert float((align_on_ground(lifted, reference) - reference)[..., 1].mean()) == pytest.approx(0.5)


def test_denoising_errors_of_a_v_model_with_a_zero_head_track_the_input():
    """v prediction with a zeroed head returns sqrt(abar) x_t, i.e. the input as given scaled by abar: at level 0
    (abar = 0.998) its error is that of the input, and it grows with the level."""
    from synthetic import walk

    from videomdm.sample import denoising_errors

    run = tiny_run("model.prediction=v", "model.max_frequency_hz=0")
    torch.nn.init.zeros_(run.model.net.output_proj.weight)
    torch.nn.init.zeros_(run.model.net.output_proj.bias)
    errors = denoising_errors(run, np.stack([walk(24, seed=s) for s in range(4)]), levels=[0, 6, 12])
    assert errors["denoise_mm_t0"] < errors["denoise_mm_t6"] < errors["denoise_mm_t12"]
    assert errors["denoise_ratio_t0"] == pytest.approx(1.0, abs=0.05)


def test_a_band_limited_prediction_removes_noise_that_the_network_passes_through():
    """The same zero-head v model with its predictions band-limited to 4 Hz (the ``small`` default): the white
    noise above the cut-off is projected out, so even this untrained network returns less noise than it is given."""
    from synthetic import walk

    from videomdm.sample import denoising_errors

    run = tiny_run("model.prediction=v", "model.max_frequency_hz=4")
    torch.nn.init.zeros_(run.model.net.output_proj.weight)
    torch.nn.init.zeros_(run.model.net.output_proj.bias)
    errors = denoising_errors(run, np.stack([walk(24, seed=s) for s in range(4)]), levels=[0, 6, 12])
    # Not far below 1 here: with unit feature scales the error is dominated by the integrated root velocity, a
    # random walk whose energy sits at the lowest frequencies, which the band limit keeps.
    assert all(errors[f"denoise_ratio_t{t}"] < 0.95 for t in (0, 6, 12)), errors


@pytest.mark.parametrize("motions, levels, match", [
    (np.zeros((0, 24, 22, 3)), None, "N ≥ 1"),
    (np.full((1, 24, 22, 3), np.nan), None, "finite"),
    (np.zeros((24, 22, 3)), None, r"\(N, T, J, 3\)"),
    (None, [50], r"levels must lie in \[0, 49\]"),
    (None, [49], "abar_t"),
])
def test_denoising_errors_refuse_bad_input(motions, levels, match):
    from synthetic import walk

    from videomdm.sample import denoising_errors

    motions = walk(24)[None] if motions is None else motions
    with pytest.raises(ValueError, match=match):
        denoising_errors(tiny_run(), motions, levels=levels)
