"""Training objectives (videomdm.objectives): one per supervision mode, chosen by name, called with the real network,
diffusion, normalizer and batches; the training loop and inference know none of them."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_train import TINY

import videomdm.train as training
from videomdm.config import load_config
from videomdm.data.dataset import MOTION_SOURCES, MotionWindows
from videomdm.factory import build_denoiser, build_diffusion, build_model
from videomdm.objectives import FeatureObjective, ReprojectionObjective, build_objective
from videomdm.train import ItemRandom

CPU = torch.device("cpu")


def tiny_config(*extra: str):
    return load_config("small", TINY + ["model.dropout=0", "model.cond_dropout=0", *extra])


@pytest.mark.parametrize("mode, kind", [("3d", FeatureObjective), ("teacher", FeatureObjective),
                                        ("2d", ReprojectionObjective)])
def test_each_supervision_mode_selects_its_objective_by_name(mode, kind):
    objective = build_objective(tiny_config(f"train.supervision={mode}"), None, CPU)
    assert type(objective) is kind
    assert objective.with_keypoints == (mode == "2d")


def test_an_unknown_supervision_mode_is_a_clear_error():
    config = tiny_config()
    config.train.supervision = "4d"  # past the config's own check, as a mode added there but not here would be
    with pytest.raises(ValueError, match="no objective for supervision '4d'; expected one of 3d, teacher, 2d"):
        build_objective(config, None, CPU)


def test_the_training_loop_knows_no_supervision_mode():
    source = inspect.getsource(training)
    for word in ("2d", "two_d", "teacher", "keypoints", "reprojection", "FeatureObjective", "ReprojectionObjective"):
        assert not re.search(rf"\b{word}\b", source), word  # ``with_keypoints`` (the objective's answer) is fine


def test_inference_does_not_load_the_trainer():
    code = "import sys, videomdm.sample, videomdm.cli; assert 'videomdm.train' not in sys.modules, 'train imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("mode, settings, weights", [
    ("3d", [], {"features": 1.0}),
    ("teacher", ["loss.positions=2", "loss.velocities=3", "loss.foot_contact=4"],
     {"features": 1.0, "positions": 2.0, "velocities": 3.0, "foot_contact": 4.0}),
    ("2d", [], {"reprojection": 7.0, "velocity_2d": 350.0, "self_features": 1.0}),
    ("2d", ["two_d.low_levels=chain"], {"reprojection": 7.0, "velocity_2d": 350.0}),
    ("2d", ["model.prediction=v", "two_d.alignment=0.5"],
     {"reprojection": 7.0, "velocity_2d": 350.0, "alignment": 0.5, "self_features": 1.0}),
    ("2d", ["loss.positions=3"],
     {"reprojection": 7.0, "velocity_2d": 350.0, "self_features": 1.0, "self_positions": 3.0}),
])
def test_an_objective_returns_its_weighted_total_and_detached_terms(dataset_2d, mode, settings, weights):
    config = tiny_config(f"train.supervision={mode}", *settings)
    objective = build_objective(config, None, CPU)
    windows = MotionWindows(dataset_2d, "train", motion_field=MOTION_SOURCES[mode], num_frames=40, min_frames=20,
                            with_keypoints=objective.with_keypoints)
    batch = windows.batch([0, 1, 2], np.random.default_rng(0))
    normalizer = windows.normalizer()
    torch.manual_seed(0)
    network = build_model(config, windows.layout.dim, 0)
    model, diffusion = build_denoiser(config, network).train(), build_diffusion(config)

    loss, terms = objective(model, diffusion, normalizer, batch, ItemRandom(0, 0, range(3), max_frames=40))
    assert set(terms) == set(weights)
    assert all(value.shape == () and not value.requires_grad and torch.isfinite(value) for value in terms.values())
    torch.testing.assert_close(loss.detach(), sum(weights[name] * value for name, value in terms.items()))
    loss.backward()
    assert all(p.grad is not None for p in network.parameters())
    # Same item streams, same loss: every random draw comes from ``random``.
    again, _ = objective(model, diffusion, normalizer, batch, ItemRandom(0, 0, range(3), max_frames=40))
    assert again.item() == loss.item()
