"""Training at scale: the distributed split of each step's batch, gradient accumulation, DDP on 2 CPU processes
(gloo, launched by torchrun), resume with another number of processes, bf16 autocast.

Equivalence tolerance: a step of 2 processes at batch b and one of 1 process at batch 2b compute the same per-item
quantities; only the order of float32 sums differs (gloo adds two half-batch gradients, the single process sums
the whole batch at once). That changes results at the level of float32 rounding, ~1e-7 relative per sum, so losses
and gradient norms are compared at 1e-5 relative and the weights (which Adam moves by about ``lr`` per step) at
1e-6 absolute, far below the ``3e-4`` an Adam step moves each weight. The test datasets have clips longer than the
window and the 2D data are seen by a noiseless detector (every confidence 1), so every item has the same number of
frames and keypoint weights and the losses weight items equally. (With unequal weights, each process's loss is the
weighted mean over its own items, as in any data-parallel training, and differs from the whole batch's slightly.)
"""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from test_train import TINY, read_metrics

from videomdm.checkpoint import load_tensors
from videomdm.config import load_config
from videomdm.factory import autocast_dtype
from videomdm.train import ItemRandom, Processes, micro_batch_positions, processes_from_env, train

# fp32: the splits below compute the same gradients to float32 rounding; bf16 products (train.precision=auto on a
# CPU with bf16 units) round differently for differently sized batches.
EXACT = TINY + ["model.dropout=0", "train.save_every=1", "train.keep_checkpoints=5", "train.precision=fp32"]


@pytest.fixture
def clean_dataset_2d(motion_dataset, tmp_path):
    """Synthetic walks seen by 2 virtual cameras through a noiseless detector (every confidence 1)."""
    from videomdm.data.prepare import prepare_mocap_2d
    from videomdm.data.virtual import DetectorNoise
    from videomdm.teacher import make_teacher

    out = tmp_path / "clean_2d"
    prepare_mocap_2d(motion_dataset, out, teacher=make_teacher("corrupt", severity=1.0), teacher_name="corrupt",
                     noise=DetectorNoise.clean(), progress=False)
    return out


def config(*extra: str):
    return load_config("small", EXACT + list(extra))


def weights(run, step: int) -> dict[str, torch.Tensor]:
    return load_tensors(run / "checkpoints" / f"step_{step:07d}" / "model.safetensors")


def assert_same_training(a, b, steps: list[int]) -> None:
    """Same logged loss and gradient norm at every step, same weights after the last one."""
    rows_a, rows_b = read_metrics(a), read_metrics(b)
    for step in steps:
        ra, rb = rows_a[step - 1], rows_b[step - 1]
        assert ra["step"] == rb["step"] == step
        np.testing.assert_allclose([ra["loss"], ra["grad_norm"]], [rb["loss"], rb["grad_norm"]], rtol=1e-5)
    wa, wb = weights(a, steps[-1]), weights(b, steps[-1])
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=1e-6, msg=name)


def test_micro_batches_split_the_global_batch_disjointly():
    batch, accum, world = 3, 2, 4
    held = [p for rank in range(world) for micro in range(accum)
            for p in micro_batch_positions(batch, Processes(rank, world, rank), micro)]
    assert sorted(held) == list(range(batch * accum * world))
    # 2 processes at batch b hold, in rank order, what one process at batch 2b holds.
    halves = [list(micro_batch_positions(2, Processes(rank, 2, rank), 0)) for rank in range(2)]
    assert halves[0] + halves[1] == list(micro_batch_positions(4, Processes(), 0))


def test_item_randomness_does_not_depend_on_neighbours_or_padding():
    alone = ItemRandom(seed=7, step=3, positions=[5], max_frames=40)
    among = ItemRandom(seed=7, step=3, positions=[4, 5, 6], max_frames=40)
    assert alone.timesteps(50, torch.device("cpu"))[0] == among.timesteps(50, torch.device("cpu"))[1]
    short = alone.noise(12, 8, torch.device("cpu"))  # (1, 12, 8)
    padded = among.noise(30, 8, torch.device("cpu"), items=[1])  # (1, 30, 8)
    assert torch.equal(short[0], padded[0, :12])
    other_step = ItemRandom(seed=7, step=4, positions=[5], max_frames=40).noise(12, 8, torch.device("cpu"))
    assert not torch.equal(short, other_step)
    with pytest.raises(ValueError, match="41 frames"):
        alone.noise(41, 8, torch.device("cpu"))


def test_processes_from_torchrun_environment():
    assert processes_from_env({}) == Processes(rank=0, world_size=1, local_rank=0)
    found = processes_from_env({"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1"})
    assert found == Processes(rank=5, world_size=8, local_rank=1) and not found.is_main
    with pytest.raises(ValueError, match="WORLD_SIZE=2"):
        processes_from_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="integers"):
        processes_from_env({"WORLD_SIZE": "two"})


@pytest.mark.parametrize("supervision", ["3d", "2d"])
def test_gradient_accumulation_equals_the_whole_batch(supervision, motion_dataset, clean_dataset_2d, tmp_path):
    data = clean_dataset_2d if supervision == "2d" else motion_dataset
    mode = f"train.supervision={supervision}"
    whole, accumulated = tmp_path / "whole", tmp_path / "accumulated"
    train(data, whole, config(mode, "train.steps=2", "train.batch_size=4"), progress=False)
    train(data, accumulated, config(mode, "train.steps=2", "train.batch_size=2", "train.grad_accum=2"),
          progress=False)
    assert_same_training(whole, accumulated, [1, 2])
    # The same batch size without accumulation is a different (smaller) batch: the check can fail.
    half = tmp_path / "half"
    train(data, half, config(mode, "train.steps=1", "train.batch_size=2"), progress=False)
    assert read_metrics(half)[0]["loss"] != pytest.approx(read_metrics(whole)[0]["loss"], rel=1e-3)


def test_bf16_autocast_is_a_config_switch(motion_dataset, tmp_path, monkeypatch):
    # A zero output layer would make the first loss independent of the network's matrix products.
    settings = ["train.steps=1", "model.zero_init_output=false"]
    train(motion_dataset, tmp_path / "fp32", config(*settings), progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        supported = autocast_dtype("bf16", torch.device("cpu")) is not None
        train(motion_dataset, tmp_path / "bf16", config(*settings, "train.precision=bf16"), progress=False)
    fp32, bf16 = read_metrics(tmp_path / "fp32")[0]["loss"], read_metrics(tmp_path / "bf16")[0]["loss"]
    if supported:  # bf16 matrix products: close to fp32, not equal
        assert fp32 != bf16 and bf16 == pytest.approx(fp32, rel=0.05)
    else:  # fell back to fp32, with a warning
        assert fp32 == bf16 and any("no native bf16" in str(w.message) for w in caught)
    # A device without bf16 falls back to fp32 and says so.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16 support; training in fp32"):
        assert autocast_dtype("bf16", torch.device("cpu")) is None
    assert autocast_dtype("fp32", torch.device("cpu")) is None


def launch_two_processes(data, run, *settings: str) -> None:
    """``torchrun --standalone --nproc_per_node 2 -m videomdm.cli train`` on the CPU (gloo), one thread each."""
    sets = sum((["--set", s] for s in EXACT + list(settings)), [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "videomdm.cli", "train", str(data), "--out", str(run), "--config", "small", "--quiet", *sets],
        env=env, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("last checkpoint") == 1  # rank 0 alone reports
    assert json.loads((run / "run.json").read_text())["processes"] == 2


@pytest.mark.integration
def test_two_processes_equal_one_and_resume_on_one(motion_dataset, tmp_path):
    """torchrun, 2 gloo processes at batch 2 == 1 process at batch 4 (also with batch 1 and 2 accumulated
    micro-batches per process); the 2-process run then resumes on 1 process and its next step equals the
    single-process run's."""
    single, double, accumulated = tmp_path / "single", tmp_path / "double", tmp_path / "accumulated"
    train(motion_dataset, single, config("train.steps=3", "train.batch_size=4"), progress=False)
    launch_two_processes(motion_dataset, double, "train.steps=2", "train.batch_size=2")
    assert_same_training(single, double, [1, 2])
    launch_two_processes(motion_dataset, accumulated, "train.steps=1", "train.batch_size=1", "train.grad_accum=2")
    assert_same_training(single, accumulated, [1])

    train(motion_dataset, double, config("train.steps=3", "train.batch_size=4"), resume=True, progress=False)
    rows = read_metrics(double)
    assert [row["step"] for row in rows] == [1, 2, 3] and np.isfinite(rows[-1]["loss"])
    assert_same_training(single, double, [3])
