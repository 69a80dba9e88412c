import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import poison_ground_truth

from videomdm.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints
from videomdm.cli import main
from videomdm.config import load_config
from videomdm.data.errors import DataError
from videomdm.sample import generate, load_run
from videomdm.train import RunExistsError, train

TINY = ["model.width=32", "model.layers=2", "model.heads=2", "model.ff_size=64", "data.num_frames=40",
        "data.min_frames=20", "train.batch_size=4", "train.log_every=1", "train.save_every=3",
        "diffusion.steps=10", "diffusion.sample_steps=10", "two_d.teacher_min_t=3"]


def tiny_config(*extra: str):
    return load_config("small", TINY + list(extra))


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_step_smoke_run_writes_a_complete_run(motion_dataset, tmp_path):
    run = tmp_path / "run"
    ckpt = train(motion_dataset, run, tiny_config("train.steps=2"), progress=False)
    assert ckpt == run / "checkpoints" / "step_0000002"
    for name in ("model.safetensors", "ema.safetensors", "state.pt", "config.json"):
        assert (ckpt / name).is_file()
    assert (run / "config.json").is_file() and (run / "normalizer.safetensors").is_file()
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(np.isfinite(m["loss"]) and m["loss"] > 0 for m in metrics)
    assert not list((run / "checkpoints").glob(".*")), "temporary checkpoint folders left behind"


def test_resume_continues_exactly(motion_dataset, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(motion_dataset, straight, tiny_config("train.steps=6"), progress=False)
    train(motion_dataset, resumed, tiny_config("train.steps=3"), progress=False)
    train(motion_dataset, resumed, tiny_config("train.steps=6"), resume=True, progress=False)
    a, b = read_metrics(straight), read_metrics(resumed)
    assert [m["step"] for m in b] == list(range(1, 7))
    assert [m["loss"] for m in a] == [m["loss"] for m in b]
    wa = load_run(straight, device="cpu").model.state_dict()
    wb = load_run(resumed, device="cpu").model.state_dict()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_keeps_only_the_newest_checkpoints(motion_dataset, tmp_path):
    run = tmp_path / "run"
    train(motion_dataset, run, tiny_config("train.steps=12", "train.keep_checkpoints=2"), progress=False)
    assert [p.name for p in list_checkpoints(run)] == ["step_0000009", "step_0000012"]


def test_existing_run_is_never_overwritten(motion_dataset, tmp_path):
    run = tmp_path / "run"
    train(motion_dataset, run, tiny_config("train.steps=3"), progress=False)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RunExistsError, match="--resume"):
        train(motion_dataset, run, tiny_config("train.steps=3"), progress=False)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


def test_resume_with_other_model_settings_is_refused(motion_dataset, tmp_path):
    run = tmp_path / "run"
    train(motion_dataset, run, tiny_config("train.steps=3"), progress=False)
    with pytest.raises(CheckpointError, match="model.width"):
        train(motion_dataset, run, tiny_config("train.steps=6", "model.width=64"), resume=True, progress=False)


def test_corrupt_checkpoint_is_reported_by_file(motion_dataset, tmp_path):
    run = tmp_path / "run"
    train(motion_dataset, run, tiny_config("train.steps=3"), progress=False)
    weights = latest_checkpoint(run) / "ema.safetensors"
    weights.write_bytes(os.urandom(200))
    with pytest.raises(CheckpointError, match="ema.safetensors"):
        load_run(run, device="cpu")
    other = tmp_path / "other"
    train(motion_dataset, other, tiny_config("train.steps=3"), progress=False)
    state = latest_checkpoint(other) / "state.pt"
    state.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="state.pt"):
        train(motion_dataset, other, tiny_config("train.steps=6"), resume=True, progress=False)
    assert state.read_bytes() == b"garbage", "the broken checkpoint must be left for the user to inspect"


def test_checkpoint_from_another_config_is_refused(motion_dataset, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(motion_dataset, a, tiny_config("train.steps=3"), progress=False)
    train(motion_dataset, b, tiny_config("train.steps=3", "model.layers=1"), progress=False)
    with pytest.raises(CheckpointError, match="model.layers"):
        load_run(a, checkpoint=latest_checkpoint(b), device="cpu")


def test_empty_dataset_folder_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty"):
        train(empty, tmp_path / "run", tiny_config("train.steps=2"), progress=False)
    assert not (tmp_path / "run").exists()


def test_losses_reach_the_host_once_per_log_interval_and_a_non_finite_one_is_never_saved(motion_dataset, tmp_path,
                                                                                         monkeypatch):
    import videomdm.train as training

    build, calls = training.build_objective, []

    def build_poisoned(*args):
        objective = build(*args)

        def poisoned(*inputs):  # one micro-batch per step: call k is step k
            loss, terms = objective(*inputs)
            calls.append(len(calls))
            return (loss * float("nan") if len(calls) == 2 else loss), terms

        poisoned.with_keypoints = objective.with_keypoints
        return poisoned

    monkeypatch.setattr(training, "build_objective", build_poisoned)
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError, match="non-finite loss at step 1"):
        train(motion_dataset, run, tiny_config("train.steps=8", "train.log_every=4", "train.save_every=4"),
              progress=False)
    assert len(calls) == 4  # the losses were read at the end of the interval (step 4), not at every step
    assert latest_checkpoint(run) is None and read_metrics(run) == []


def test_teacher_supervision_reads_the_teacher(motion_dataset, tmp_path):
    """``teacher`` mode trains on teacher_3d alone: with every gt_3d poisoned (NaN) its losses stay finite."""
    poison_ground_truth(motion_dataset)
    run = tmp_path / "run"
    train(motion_dataset, run, tiny_config("train.steps=2", "train.supervision=teacher"), progress=False)
    assert json.loads((run / "config.json").read_text())["train"]["supervision"] == "teacher"
    rows = read_metrics(run)
    assert rows and all(np.isfinite(row["loss"]) for row in rows)
    # The poison is real: a mode that reads gt_3d fails on it, naming the file.
    with pytest.raises(DataError, match=r"\.npz.*gt_3d contains NaN"):
        train(motion_dataset, tmp_path / "run_3d", tiny_config("train.steps=2", "train.supervision=3d"),
              progress=False)


def test_geometric_losses_are_logged(motion_dataset, tmp_path):
    run = tmp_path / "run"
    train(motion_dataset, run, tiny_config("train.steps=2", "loss.positions=1", "loss.velocities=1",
                                           "loss.foot_contact=1"), progress=False)
    last = read_metrics(run)[-1]
    for key in ("loss_features", "loss_positions", "loss_velocities", "loss_foot_contact"):
        assert np.isfinite(last[key])


def test_patched_model_trains_and_samples(motion_dataset, tmp_path):
    """model.frames_per_token=2: training steps run, the run reloads as k = 2, and sampling an odd length works."""
    run = tmp_path / "run"
    train(motion_dataset, run, tiny_config("train.steps=2", "model.frames_per_token=2"), progress=False)
    assert all(np.isfinite(m["loss"]) and m["loss"] > 0 for m in read_metrics(run))
    loaded = load_run(run, device="cpu")
    assert loaded.model.net.frames_per_token == 2
    joints = generate(loaded, 2, num_frames=23, steps=3, seed=1)
    assert joints.shape == (2, 23, 22, 3) and np.isfinite(joints).all()


def test_sample_gives_finite_joints(motion_dataset, tmp_path):
    run = tmp_path / "run"
    train(motion_dataset, run, tiny_config("train.steps=2"), progress=False)
    loaded = load_run(run, device="cpu")
    joints = generate(loaded, 3, num_frames=24, steps=5, seed=1)
    assert joints.shape == (3, 24, 22, 3) and np.isfinite(joints).all()
    again = generate(loaded, 3, num_frames=24, steps=5, seed=1)
    np.testing.assert_array_equal(joints, again)
    with pytest.raises(ValueError, match="without a text encoder"):
        generate(loaded, 1, texts=["a person walks"])


def test_text_conditioned_training_and_guided_sampling(text_dataset, tmp_path):
    run = tmp_path / "run"
    train(text_dataset, run, tiny_config("train.steps=2", "data.text_encoder=minilm"), progress=False)
    loaded = load_run(run, device="cpu")
    joints = generate(loaded, 2, texts=["a person walks forward"], num_frames=20, steps=4)
    assert joints.shape == (2, 20, 22, 3) and np.isfinite(joints).all()


def test_cli_train_sample_render(motion_dataset, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "samples"
    args = ["train", str(motion_dataset), "--out", str(run), "--config", "small", "--steps", "2", "--quiet"]
    assert main(args + sum((["--set", s] for s in TINY), [])) == 0
    assert main(["sample", str(run), "--num", "2", "--frames", "20", "--steps", "3", "--out", str(out)]) == 0
    joints = np.load(out / "joints.npy")
    assert joints.shape == (2, 20, 22, 3)
    assert (out / "motion_000.gif").stat().st_size > 1000
    assert main(["render", str(out / "joints.npy"), "--index", "1", "--out", str(tmp_path / "m.gif")]) == 0
    assert (tmp_path / "m.gif").is_file()
    # Bad input: one line naming the problem, exit status 2.
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((10, 5, 3)))
    assert main(["render", str(bad), "--out", str(tmp_path / "bad.gif")]) == 2
    assert "bad.npy" in capsys.readouterr().err and not (tmp_path / "bad.gif").exists()
    assert main(["train", str(motion_dataset), "--out", str(run), "--steps", "2"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", str(motion_dataset), "--out", str(tmp_path / "r2"), "--set", "train.lr=fast"]) == 2
    assert "train.lr" in capsys.readouterr().err


def test_init_from_starts_from_another_runs_weights_and_normalizer(motion_dataset, tmp_path):
    from videomdm.checkpoint import load_checkpoint, load_tensors

    source = tmp_path / "teacher"
    train(motion_dataset, source, tiny_config("train.steps=3", "train.supervision=teacher"), progress=False)
    warm = tmp_path / "warm"
    train(motion_dataset, warm, tiny_config("train.steps=1", "train.lr=1e-12", "train.warmup_steps=0"),
          progress=False, init_from=source)
    start, done = load_checkpoint(latest_checkpoint(source)), load_checkpoint(latest_checkpoint(warm))
    for name, value in start.ema.items():  # one step at a vanishing learning rate: the source's EMA weights
        torch.testing.assert_close(done.model[name], value, atol=1e-6, rtol=0)
    assert load_tensors(warm / "normalizer.safetensors")["std"].equal(
        load_tensors(source / "normalizer.safetensors")["std"])
    assert json.loads((warm / "run.json").read_text())["init_from"] == str(source.resolve())
    with pytest.raises(CheckpointError, match="other model settings"):
        train(motion_dataset, tmp_path / "other", tiny_config("train.steps=1", "model.width=16"), progress=False,
              init_from=source)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(motion_dataset, tmp_path / "none", tiny_config("train.steps=1"), progress=False,
              init_from=tmp_path / "missing")


def test_learning_rate_warms_up_then_decays_on_a_cosine():
    from videomdm.train import _learning_rate

    config = tiny_config("train.steps=110", "train.warmup_steps=10", "train.lr=1.0", "train.lr_schedule=cosine",
                         "train.lr_final=0.1")
    assert _learning_rate(config, 0) == pytest.approx(0.1) and _learning_rate(config, 9) == pytest.approx(1.0)
    assert _learning_rate(config, 10) == pytest.approx(1.0)
    assert _learning_rate(config, 60) == pytest.approx(0.55)
    assert _learning_rate(config, 110) == pytest.approx(0.1)
    constant = tiny_config("train.warmup_steps=0", "train.lr=1.0", "train.lr_schedule=constant")
    assert _learning_rate(constant, 500) == 1.0
