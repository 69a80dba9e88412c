"""Evaluating runs (lifting and generation metrics) and the recovery experiment, on tiny synthetic data."""

import json
import math

import numpy as np
import pytest
from synthetic import walk
from test_train import TINY

from videomdm.cli import main
from videomdm.config import load_config
from videomdm.data.clip import load_clip, read_dataset_index
from videomdm.data.observed import clip_reprojection_px
from videomdm.evaluator import EvaluatorConfig, EvaluatorError, train_evaluator
from videomdm.experiments import LiftSettings, evaluate_run, gap_closed, lift_split, run_recovery
from videomdm.metrics import pose_errors
from videomdm.sample import load_run
from videomdm.skeleton import SMPL_22
from videomdm.train import train

TINY_EVALUATOR = EvaluatorConfig(steps=3, batch_size=8, pool_size=16, hidden=16, embed_dim=16, num_blocks=1,
                                 min_frames=20, max_frames=40, text_encoder="none")


def test_gap_closed():
    assert gap_closed(teacher=2.0, two_d=1.5, three_d=1.0) == pytest.approx(0.5)
    assert gap_closed(teacher=2.0, two_d=1.0, three_d=1.0) == pytest.approx(1.0)
    assert gap_closed(teacher=2.0, two_d=2.5, three_d=1.0) == pytest.approx(-0.5)  # worse than the teacher
    assert math.isnan(gap_closed(teacher=1.0, two_d=1.0, three_d=1.0))
    assert math.isnan(gap_closed(teacher=1.0, two_d=0.5, three_d=1.2))  # 3d worse than the teacher: no gap to close


@pytest.fixture
def run_2d(dataset_2d, tmp_path):
    run = tmp_path / "run"
    train(dataset_2d, run, load_config("small", TINY + ["train.steps=2", "train.supervision=2d"]), progress=False)
    return run


def test_lift_split_scores_the_teacher_exactly(dataset_2d, run_2d, tmp_path):
    metrics = lift_split(load_run(run_2d), dataset_2d, "test", LiftSettings(), out_dir=tmp_path / "lifted")
    paths = read_dataset_index(dataset_2d).clip_paths("test")
    assert metrics["lift_clips"] == len(paths) == len(list((tmp_path / "lifted").glob("*.npy")))
    frames, total = 0, 0.0
    for path in paths:
        clip = load_clip(path)
        total += len(clip.gt_3d) * pose_errors(clip.teacher_3d, clip.gt_3d, fps=clip.fps, skeleton=SMPL_22)["mpjpe_mm"]
        frames += len(clip.gt_3d)
    assert metrics["teacher_mpjpe_mm"] == pytest.approx(total / frames)
    assert all(np.isfinite(v) for v in metrics.values())


def test_lift_split_reprojection_is_in_pixels_of_the_clip_keypoints(dataset_2d, run_2d):
    """Reprojection errors are frame-weighted over clips; ground truth fits its own noisy keypoints best."""
    metrics = lift_split(load_run(run_2d), dataset_2d, "test", LiftSettings(guidance=0.0))
    rows = [(len(clip.gt_3d), clip_reprojection_px(clip, SMPL_22), clip_reprojection_px(clip, SMPL_22, clip.gt_3d))
            for clip in map(load_clip, read_dataset_index(dataset_2d).clip_paths("test"))]
    frames = sum(n for n, _, _ in rows)
    assert metrics["teacher_reprojection_px"] == pytest.approx(sum(n * e for n, e, _ in rows) / frames)
    assert metrics["gt_reprojection_px"] == pytest.approx(sum(n * e for n, _, e in rows) / frames)
    assert 0 < metrics["gt_reprojection_px"] < metrics["teacher_reprojection_px"]
    assert np.isfinite(metrics["lift_reprojection_px"])


def test_the_final_fit_brings_the_lift_towards_the_keypoints_within_the_band(dataset_2d, run_2d):
    """The band-limited last pull towards the rays lowers the reprojection error of a (barely trained) prior's
    lift; without it the lift is the prior's last prediction, placed."""
    run = load_run(run_2d)
    assert run.config.model.max_frequency_hz > 0
    fitted = lift_split(run, dataset_2d, "test", LiftSettings())
    unfitted = lift_split(run, dataset_2d, "test", LiftSettings(final_fit_hz=0.0))
    assert fitted["lift_reprojection_px"] < unfitted["lift_reprojection_px"]


def test_evaluate_run_writes_metrics_and_refuses_a_foreign_evaluator(dataset_2d, run_2d, motion_dataset, tmp_path):
    evaluator = train_evaluator(dataset_2d, tmp_path / "evaluator", config=TINY_EVALUATOR, progress=False)
    out = tmp_path / "eval"
    metrics = evaluate_run(run_2d, dataset_2d, out, evaluator_dir=evaluator, num_samples=6, log=lambda _: None)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == pytest.approx(metrics)
    for key in ("fid", "kid", "kid_std_error", "diversity", "precision", "recall", "lift_mpjpe_mm",
                "lift_pa_mpjpe_mm", "lift_accel_error_ms2", "teacher_mpjpe_mm", "teacher_accel_error_ms2",
                "gen_foot_skating_ms", "denoise_mm_t0", "input_mm_t0", "denoise_ratio_t0"):
        assert np.isfinite(saved[key]), key
    assert len([key for key in saved if key.startswith("denoise_ratio_t")]) >= 4  # one per level
    assert "| fid |" in (out / "report.md").read_text()
    foreign = train_evaluator(motion_dataset, tmp_path / "foreign", config=TINY_EVALUATOR, progress=False)
    with pytest.raises(EvaluatorError):
        evaluate_run(run_2d, dataset_2d, tmp_path / "eval2", evaluator_dir=foreign, num_samples=4, log=lambda _: None)


def test_cli_lift_and_evaluate(dataset_2d, run_2d, tmp_path, capsys):
    out = tmp_path / "lift"
    assert main(["lift", str(run_2d), str(dataset_2d), "--out", str(out), "--guidance", "0.5", "--samples", "2"]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert "lift_mpjpe_mm" in saved
    assert saved["settings"]["guidance"] == 0.5 and saved["settings"]["samples"] == 2  # how it was lifted
    assert saved["settings"]["final_fit_hz"] is None  # the run's band
    assert main(["lift", str(run_2d), str(dataset_2d), "--out", str(out)]) == 2  # nothing is overwritten
    assert "--overwrite" in capsys.readouterr().err
    assert main(["evaluate", str(run_2d), str(dataset_2d), "--out", str(tmp_path / "eval"), "--num", "4"]) == 0
    assert "gen_accel_ms2" in json.loads((tmp_path / "eval" / "metrics.json").read_text())


def test_recovery_experiment_end_to_end(tmp_path):
    mocap = tmp_path / "mocap"
    mocap.mkdir()
    for i in range(2):
        np.save(mocap / f"take_{i}.npy", walk(800, seed=i))
        (mocap / f"take_{i}.json").write_text('{"fps": 20}')
    out = tmp_path / "recovery"
    report = run_recovery(out, cache=tmp_path / "cache", mocap=mocap, overrides=TINY, steps=2, lifter_steps=2,
                          evaluator_config=TINY_EVALUATOR, num_samples=6, views=(1, 2), log=lambda _: None)
    assert set(report["results"]) == {"3d", "teacher", "2d", "2d_views1", "2d_views2"}
    for key in ("gap_fid", "gap_closed_fid", "gap_closed_lift_mpjpe_mm", "lift_mpjpe_vs_lifter", "gap_closed_fid_views1",
                "gap_closed_lift_mpjpe_mm_views2"):
        assert key in report["summary"]
    # The multi-view arm: one rig, cut to its first 1 and 2 views; the same clips, teachers and ground truth.
    one, two = (read_dataset_index(out / "data" / f"rig2_views{v}") for v in (1, 2))
    assert one.splits == two.splits and one.extra["views"] == 1 and two.extra["views"] == 2
    for rel in two.splits["test"]:
        a, b = load_clip(one.root / rel), load_clip(two.root / rel)
        assert a.num_views == 1 and b.num_views == 2
        np.testing.assert_array_equal(a.keypoints_2d[0], b.keypoints_2d[0])
        np.testing.assert_array_equal(a.teacher_3d, b.teacher_3d)
    assert "rig_lift_mpjpe_mm" in report["results"]["2d_views2"] and "rig_lift_mpjpe_mm" not in report["results"]["2d"]
    assert json.loads((out / "runs" / "2d_views2" / "config.json").read_text())["train"]["supervision"] == "2d"
    assert json.loads((out / "results.json").read_text())["steps"] == 2
    assert (out / "results.png").stat().st_size > 1000 and "| fid |" in (out / "results.md").read_text()
    # The three runs saw the same data, config and seed; only the supervision differs.
    configs = [json.loads((out / "runs" / m / "config.json").read_text()) for m in ("3d", "teacher", "2d")]
    for config in configs:
        config["train"].pop("supervision")
    assert configs[0] == configs[1] == configs[2]
