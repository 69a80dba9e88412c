"""The fast training step (``train.fast``) learns as the reference step does; ``train.precision=auto``; the pieces the
fast step is made of (batch prefetching, the written-out attention, the placement solve in float32, against float64)."""

import json
import math
import threading
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from videomdm.checkpoint import latest_checkpoint, load_run_config
from videomdm.config import apply_overrides, config_from_dict, config_to_dict, load_config
from videomdm.factory import autocast_dtype
from videomdm.model import _attention_written_out
from videomdm.sample import load_run
from videomdm.train import prefetch, train

TINY = ["model.width=32", "model.layers=2", "model.heads=2", "model.ff_size=64", "data.num_frames=40",
        "data.min_frames=20", "train.batch_size=4", "train.log_every=1", "train.save_every=3",
        "diffusion.steps=10", "diffusion.sample_steps=10", "two_d.teacher_min_t=3", "train.precision=fp32"]
# Float tolerance: fused AdamW may round differently from the single-tensor AdamW on another CPU (measured on the
# development CPU: the two curves are equal to the last bit over these 6 steps; another seed moves them by ~30 %).
SAME_LEARNING = 1e-5


def tiny_config(*extra: str):
    return load_config("small", TINY + list(extra))


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def dataset_for(motion_dataset, dataset_2d):
    return lambda supervision: dataset_2d if supervision == "2d" else motion_dataset


@pytest.mark.parametrize("supervision", ["3d", "2d"])
def test_the_fast_step_gives_the_loss_curve_of_the_reference_step(supervision, dataset_for, tmp_path):
    data, mode = dataset_for(supervision), f"train.supervision={supervision}"
    train(data, tmp_path / "fast", tiny_config(mode, "train.steps=6"), progress=False)
    train(data, tmp_path / "reference", tiny_config(mode, "train.steps=6", "train.fast=false"), progress=False)
    fast, reference = losses(tmp_path / "fast"), losses(tmp_path / "reference")
    assert len(fast) == 6 and fast == pytest.approx(reference, rel=SAME_LEARNING, abs=0)
    assert fast[-1] != fast[0]  # the model learns: the curve is not a constant that any step would reproduce
    ema_fast = load_ema(tmp_path / "fast")
    ema_reference = load_ema(tmp_path / "reference")
    for name, value in ema_fast.items():
        torch.testing.assert_close(value, ema_reference[name], rtol=1e-4, atol=1e-6)
    if supervision == "3d":  # the tolerance is far below seed noise: another seed is outside it
        train(data, tmp_path / "seed1", tiny_config(mode, "train.steps=6", "train.seed=1"), progress=False)
        assert losses(tmp_path / "seed1") != pytest.approx(reference, rel=1e-2, abs=0)


def load_ema(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(latest_checkpoint(run) / "ema.safetensors")


def test_a_run_from_before_auto_precision_and_the_fast_step_resumes_with_it(motion_dataset, tmp_path):
    """A run written with the former defaults (no ``train.fast`` key, ``precision=fp32``) loads, keeps its fp32,
    and its single-tensor AdamW state continues in the fused optimizer along the reference curve."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(motion_dataset, straight, tiny_config("train.steps=6", "train.fast=false"), progress=False)
    train(motion_dataset, resumed, tiny_config("train.steps=3", "train.fast=false"), progress=False)
    for path in [resumed / "config.json", *resumed.glob("checkpoints/*/config.json")]:
        values = json.loads(path.read_text())
        del values["train"]["fast"]  # as written before the key existed
        path.write_text(json.dumps(values))
    load_run(resumed, device="cpu")  # the checkpoint loads for sampling
    config = apply_overrides(load_run_config(resumed), ["train.steps=6"])  # as `train --resume` reads it
    assert config.train.fast and config.train.precision == "fp32"
    train(motion_dataset, resumed, config, resume=True, progress=False)
    assert losses(resumed) == pytest.approx(losses(straight), rel=SAME_LEARNING, abs=0)


def test_precision_auto_is_bf16_only_where_the_device_has_it_natively(monkeypatch):
    assert load_config("small").train.precision == "auto"
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    for native in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # auto never warns
            assert autocast_dtype("auto", cpu) == (torch.bfloat16 if native else None)
            assert autocast_dtype("fp32", cpu) is None
    with pytest.warns(UserWarning, match="no native bf16 support; training in fp32"):
        assert autocast_dtype("bf16", cpu) is None
    with pytest.raises(ValueError, match="'auto', 'fp32', 'bf16'"):
        autocast_dtype("fp16", cpu)


def test_config_keeps_precision_and_fast_through_a_round_trip():
    config = load_config("small", ["train.precision=bf16", "train.fast=false"])
    again = config_from_dict(config_to_dict(config))
    assert again.train.precision == "bf16" and again.train.fast is False
    with pytest.raises(ValueError, match="train.precision"):
        load_config("small", ["train.precision=fp16"])


def test_prefetch_gives_the_results_in_order_computed_on_one_other_thread():
    threads = []

    def make(key: int) -> int:
        threads.append(threading.current_thread())
        return key * key

    assert list(prefetch(make, range(7), ahead=2)) == [k * k for k in range(7)]
    assert len(set(threads)) == 1 and threads[0] is not threading.current_thread()


def test_prefetch_raises_an_error_at_the_key_that_failed_and_stops_early_without_waiting():
    made = []

    def make(key: int) -> int:
        made.append(key)
        if key == 2:
            raise ValueError("bad clip 2")
        return key

    results = prefetch(make, range(100), ahead=1)
    assert [next(results), next(results)] == [0, 1]
    with pytest.raises(ValueError, match="bad clip 2"):
        next(results)
    results.close()
    assert max(made) <= 4  # at most `ahead` + 1 keys past the consumer were ever started


@pytest.mark.parametrize("padded", [False, True])
def test_written_out_attention_equals_torch_sdpa_with_dropout(padded):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 9, 8, generator=generator) for _ in range(3))
    key_mask = torch.ones(3, 9, dtype=torch.bool)
    if padded:
        key_mask[0, 5:] = False
        key_mask[2, 1:] = False
    torch.manual_seed(7)
    ours = _attention_written_out(q, k, v, key_mask, 0.3)
    torch.manual_seed(7)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None], dropout_p=0.3)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)
    torch.manual_seed(8)  # another dropout draw is a different result: the check can fail
    assert not torch.allclose(_attention_written_out(q, k, v, key_mask, 0.3), reference)


@pytest.mark.parametrize("padded", [False, True])
def test_written_out_attention_without_dropout_equals_torch_sdpa_with_its_gradients(padded):
    """What the fast step trains with on the CPU against the fused kernel the reference step uses."""
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 2, 9, 8, generator=generator, requires_grad=True) for _ in range(3))
    key_mask = torch.ones(3, 9, dtype=torch.bool)
    if padded:
        key_mask[0, 5:] = False
    ours = _attention_written_out(q, k, v, key_mask, 0.0)
    ours_grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None])
    reference_grads = torch.autograd.grad(reference.square().sum(), (q, k, v))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    for a, b in zip(ours_grads, reference_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_placement_in_float32_matches_the_float64_solve():
    from videomdm.camera import look_at, project_normalized, world_to_camera
    from videomdm.placement import Placement, solve_placement

    generator = torch.Generator().manual_seed(0)
    points = torch.randn(4, 30, 22, 3, generator=generator, dtype=torch.float64) * 0.4
    points[..., 1] += 1.0
    eye = torch.tensor([[3.0, 1.5, 4.0], [-4.0, 1.0, 1.0], [0.5, 2.0, -5.0], [6.0, 1.2, 0.0]], dtype=torch.float64)
    R, t = look_at(eye, torch.tensor([[0.0, 1.0, 0.0]] * 4, dtype=torch.float64))
    truth = Placement(torch.tensor([0.2, -0.3, 0.1, 0.0], dtype=torch.float64),
                      torch.randn(4, 3, generator=generator, dtype=torch.float64) * 0.3)
    keypoints = project_normalized(world_to_camera(truth.apply(points), R, t))
    keypoints = keypoints + 0.002 * torch.randn(keypoints.shape, generator=generator, dtype=torch.float64)
    weight = torch.rand(points.shape[:-1], generator=generator, dtype=torch.float64)
    exact = solve_placement(points, keypoints, weight, R, t)
    single = solve_placement(points.float(), keypoints.float(), weight.float(), R.float(), t.float())
    assert single.translation.dtype == torch.float32
    torch.testing.assert_close(single.translation.double(), exact.translation, atol=1e-5, rtol=0)
    torch.testing.assert_close(single.yaw.double(), exact.yaw, atol=1e-6, rtol=0)
    assert math.isfinite(float(exact.translation.abs().max()))


def test_compiled_training_falls_back_to_eager_with_a_warning(monkeypatch):
    """``train.compile``: a compiler failure costs a warning, not the run; the wrapper holds only the module's
    parameters, and errors of the module itself still surface."""
    from videomdm.train import CompiledOrEager

    def failing_compile(module):
        def call(*args, **kwargs):
            raise RuntimeError("backend compiler failed")
        return call

    monkeypatch.setattr(torch, "compile", failing_compile)
    module = torch.nn.Linear(3, 2)
    wrapped = CompiledOrEager(module)
    assert list(wrapped.parameters()) == list(module.parameters())
    x = torch.randn(4, 3)
    with pytest.warns(UserWarning, match="torch.compile failed .*backend compiler failed"):
        out = wrapped(x)
    torch.testing.assert_close(out, module(x))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        wrapped(torch.randn(4, 5))  # eager from now on: the module's own error
