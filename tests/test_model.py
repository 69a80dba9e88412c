"""Tests for videomdm.model.MotionDenoiser (small models, CPU)."""

from __future__ import annotations

import pytest
import torch

from videomdm.model import MotionDenoiser, sinusoidal_embedding

FEATURES = 11
COND = 6


def small_model(cond_dim: int = COND, **overrides) -> MotionDenoiser:
    kwargs = dict(feature_dim=FEATURES, cond_dim=cond_dim, width=32, layers=2, heads=4, ff_size=64, max_frames=64)
    kwargs.update(overrides)
    torch.manual_seed(0)
    return MotionDenoiser(**kwargs)


def inputs(batch: int = 3, frames: int = 20, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, FEATURES, generator=g)
    t = torch.randint(0, 50, (batch,), generator=g)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    cond = torch.randn(batch, COND, generator=g)
    return x, t, mask, cond


def test_sinusoidal_embedding_shape_and_values():
    emb = sinusoidal_embedding(torch.arange(5), 8)
    assert emb.shape == (5, 8)
    assert torch.allclose(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))  # sin(0) = 0, cos(0) = 1
    assert torch.allclose(emb[:, :4] ** 2 + emb[:, 4:] ** 2, torch.ones(5, 4))
    with pytest.raises(ValueError):
        sinusoidal_embedding(torch.arange(3), 7)


@pytest.mark.parametrize("cond_dim", [0, COND])
def test_output_shape(cond_dim):
    model = small_model(cond_dim).eval()
    x, t, mask, cond = inputs()
    out = model(x, t, mask, cond if cond_dim else None)
    assert out.shape == x.shape
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_unconditional_model_rejects_cond():
    model = small_model(0).eval()
    x, t, mask, cond = inputs()
    with pytest.raises(ValueError):
        model(x, t, mask, cond)


def test_bad_shapes_rejected():
    model = small_model().eval()
    x, t, mask, cond = inputs()
    with pytest.raises(ValueError):
        model(x, t, mask[:, :-1], cond)  # mask of the wrong length
    with pytest.raises(ValueError):
        model(x, t, mask.long(), cond)  # mask must be bool
    with pytest.raises(ValueError):
        model(x[..., :-1], t, mask, cond)  # wrong feature size
    with pytest.raises(ValueError):
        model(x, t, mask, cond[:, :-1])  # wrong condition size
    long_x = torch.randn(1, 65, FEATURES)
    with pytest.raises(ValueError):
        model(long_x, t[:1], torch.ones(1, 65, dtype=torch.bool), cond[:1])  # beyond max_frames


@pytest.mark.parametrize("temporal_kernel", [0, 5])
@pytest.mark.parametrize("frames_per_token", [1, 2, 3])
@pytest.mark.parametrize("garbage", [1e3, float("nan")])
def test_real_frames_do_not_depend_on_padding(garbage, frames_per_token, temporal_kernel):
    """With k = 3, 20 real frames end inside a token; with k = 2, 20 + 17 frames are padded again inside the model.
    The temporal convolution sees padded tokens as the zeros of its own boundary padding."""
    model = small_model(frames_per_token=frames_per_token, temporal_kernel=temporal_kernel).eval()
    x, t, mask, cond = inputs(frames=20)
    pad = 17
    x_padded = torch.cat([x, torch.randn(3, pad, FEATURES) * 1e3], dim=1)  # (B, T + pad, D)
    if garbage != 1e3:
        x_padded[:, 20:] = garbage
    mask_padded = torch.cat([mask, torch.zeros(3, pad, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        out = model(x, t, mask, cond)
        out_padded = model(x_padded, t, mask_padded, cond)
    assert torch.allclose(out, out_padded[:, :20], atol=1e-5)
    assert (out_padded[:, 20:] == 0).all()  # padded frames come out as zeros


@pytest.mark.parametrize("temporal_kernel", [0, 3])
@pytest.mark.parametrize("frames_per_token", [1, 2, 3])
def test_mixed_lengths_in_a_batch_match_single_samples(frames_per_token, temporal_kernel):
    model = small_model(frames_per_token=frames_per_token, temporal_kernel=temporal_kernel).eval()
    x, t, mask, cond = inputs(batch=2, frames=30)
    lengths = [30, 12]
    mask[1, lengths[1] :] = False
    x[1, lengths[1] :] = 99.0  # garbage in the padded tail
    with torch.no_grad():
        batched = model(x, t, mask, cond)
        for i, n in enumerate(lengths):
            single = model(x[i : i + 1, :n], t[i : i + 1], mask[i : i + 1, :n], cond[i : i + 1])
            assert torch.allclose(batched[i, :n], single[0], atol=1e-5)


def test_timestep_and_condition_change_the_output():
    model = small_model().eval()
    x, t, mask, cond = inputs()
    with torch.no_grad():
        base = model(x, t, mask, cond)
        assert not torch.allclose(base, model(x, t + 7, mask, cond), atol=1e-4)
        assert not torch.allclose(base, model(x, t, mask, torch.randn_like(cond)), atol=1e-4)


def test_cond_dropout_one_in_training_equals_forced_uncond():
    model = small_model(dropout=0.0, cond_dropout=1.0)  # no token dropout: training mode is deterministic
    x, t, mask, cond = inputs()
    all_uncond = torch.ones(3, dtype=torch.bool)
    with torch.no_grad():
        dropped = model.train()(x, t, mask, cond)
        forced = model.eval()(x, t, mask, cond, uncond=all_uncond)
        zeroed = model.eval()(x, t, mask, torch.zeros_like(cond))
        no_cond = model.eval()(x, t, mask, None)
        conditional = model.eval()(x, t, mask, cond)  # eval mode never drops
    assert torch.allclose(dropped, forced, atol=1e-6)
    assert torch.allclose(forced, zeroed, atol=1e-6)
    assert torch.allclose(forced, no_cond, atol=1e-6)
    assert not torch.allclose(conditional, forced, atol=1e-4)


def test_uncond_flags_act_per_sample():
    model = small_model().eval()
    x, t, mask, cond = inputs()
    uncond = torch.tensor([False, True, False])
    with torch.no_grad():
        mixed = model(x, t, mask, cond, uncond=uncond)
        conditional = model(x, t, mask, cond)
        unconditional = model(x, t, mask, cond, uncond=torch.ones(3, dtype=torch.bool))
    assert torch.allclose(mixed[[0, 2]], conditional[[0, 2]], atol=1e-6)
    assert torch.allclose(mixed[1], unconditional[1], atol=1e-6)
    assert not torch.allclose(mixed[1], conditional[1], atol=1e-4)


def test_cond_dropout_zero_in_training_keeps_condition():
    model = small_model(dropout=0.0, cond_dropout=0.0)
    x, t, mask, cond = inputs()
    with torch.no_grad():
        assert torch.allclose(model.train()(x, t, mask, cond), model.eval()(x, t, mask, cond), atol=1e-6)


@pytest.mark.parametrize(("frames_per_token", "temporal_kernel"), [(1, 0), (2, 0), (1, 5)])
def test_gradients_flow_to_every_parameter(frames_per_token, temporal_kernel):
    model = small_model(frames_per_token=frames_per_token, temporal_kernel=temporal_kernel).train()
    x, t, mask, cond = inputs()
    mask[0, 15:] = False
    out = model(x, t, mask, cond, uncond=torch.tensor([False, False, False]))
    loss = (out - x).pow(2)[mask].mean()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_bf16_autocast_runs():
    model = small_model().eval()
    x, t, mask, cond = inputs()
    mask[1, 10:] = False
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, mask, cond)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    with torch.no_grad():
        reference = model(x, t, mask, cond)
    assert torch.allclose(out.float(), reference, atol=0.1)


def test_positional_table_is_not_saved():
    model = small_model()
    assert "positional" not in model.state_dict()
    assert model.positional.shape == (65, 32)  # max_frames + 1 (condition token) positions


@pytest.mark.parametrize("frames_per_token", [2, 3])
@pytest.mark.parametrize("frames", [1, 5, 20, 21, 64])
def test_patched_model_shapes_for_any_length(frames_per_token, frames):
    """Lengths that k does not divide are padded inside the model; the transformer sees ceil(T / k) + 1 tokens."""
    model = small_model(frames_per_token=frames_per_token).eval()
    x, t, mask, cond = inputs(batch=2, frames=frames)
    seen = []
    model.blocks[0].register_forward_hook(lambda module, args, output: seen.append(output.shape))
    with torch.no_grad():
        out = model(x, t, mask, cond)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert seen == [(2, 1 + -(-frames // frames_per_token), 32)]


def test_patched_padding_inside_a_token_is_zero_in_the_output():
    """21 frames, k = 2: frame 20 shares its token with one padding frame; padded frames out are exactly 0, and a
    token whose frames are all padding is not a key (outputs equal the 21-frame call)."""
    model = small_model(frames_per_token=2).eval()
    x, t, mask, cond = inputs(batch=2, frames=24)
    mask[0, 21:] = False
    mask[1, 19:] = False
    x[~mask] = float("nan")
    with torch.no_grad():
        out = model(x, t, mask, cond)
        alone = model(x[:1, :21], t[:1], mask[:1, :21], cond[:1])
    assert torch.isfinite(out).all()
    assert (out[~mask] == 0).all()
    assert torch.allclose(out[0, :21], alone[0], atol=1e-5)
    x[0, 20] += 1.0  # the real frame of a half-padding token is seen by the other frames (its token is a key)
    with torch.no_grad():
        assert not torch.allclose(model(x, t, mask, cond)[0, 0], out[0, 0], atol=1e-5)


def test_frames_per_token_one_is_the_per_frame_model():
    """k = 1 (the default) keeps the per-frame model: same parameters, same shapes, same outputs."""
    default, explicit = small_model(), small_model(frames_per_token=1)
    patched = small_model(frames_per_token=2)
    assert {k: v.shape for k, v in default.state_dict().items()} == \
        {k: v.shape for k, v in explicit.state_dict().items()}
    assert list(patched.state_dict()) == list(default.state_dict())  # same keys, so checkpoints keep their layout
    assert default.input_proj.weight.shape == (32, FEATURES)
    assert patched.input_proj.weight.shape == (32, 2 * FEATURES)
    assert patched.output_proj.weight.shape == (2 * FEATURES, 32)
    assert patched.positional.shape == (33, 32)  # ceil(64 / 2) token positions + the condition token
    x, t, mask, cond = inputs()
    with torch.no_grad():
        assert torch.equal(default.eval()(x, t, mask, cond), explicit.eval()(x, t, mask, cond))
    with pytest.raises(ValueError, match="frames_per_token"):
        small_model(frames_per_token=0)


@pytest.mark.parametrize("kernel", [2, -1])
def test_temporal_kernel_must_be_odd_and_positive(kernel):
    with pytest.raises(ValueError, match="temporal kernel"):
        small_model(temporal_kernel=kernel)


def test_temporal_kernel_zero_is_the_transformer_alone():
    plain, with_zero = small_model(), small_model(temporal_kernel=0)
    assert plain.state_dict().keys() == with_zero.state_dict().keys()
    assert not any("conv" in name for name in plain.state_dict())  # checkpoints of earlier models load unchanged
