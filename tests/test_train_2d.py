"""The ``2d`` supervision mode: training from keypoints and a noisy teacher, never from ground truth."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import poison_ground_truth
from test_train import TINY, read_metrics

from videomdm.cli import main
from videomdm.config import load_config
from videomdm.data.errors import DataError
from videomdm.diffusion import GaussianDiffusion
from videomdm.objectives import ReprojectionObjective, build_objective
from videomdm.train import ItemRandom, train


def tiny_2d_config(*extra: str):
    return load_config("small", TINY + ["train.supervision=2d", *extra])


def _fixed_reprojection_loss(run_dir: Path, data: Path) -> float:
    """Depth-weighted reprojection loss of a run's raw weights on a fixed batch, averaged over every noise level, each
    window placed from its keypoints as the objective places it."""
    from videomdm.data.dataset import MotionWindows
    from videomdm.placement import solve_placement
    from videomdm.losses import reprojection_loss
    from videomdm.representation import decode
    from videomdm.views import view_weight, views_as_frames, views_as_items
    from videomdm.sample import load_run

    run = load_run(run_dir, use_ema=False)
    windows = MotionWindows(data, "train", motion_field="teacher_3d", num_frames=40, min_frames=20,
                            with_keypoints=True)
    batch = windows.batch(list(range(len(windows))), np.random.default_rng(0))
    x0 = run.normalizer.normalize(batch.features)
    generator = torch.Generator().manual_seed(0)
    losses = []
    with torch.no_grad():
        for level in range(run.diffusion.num_steps):
            t = torch.full((x0.shape[0],), level)
            x_t = run.diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=generator))
            joints = decode(run.normalizer.denormalize(run.model(x_t, t, batch.mask)), 22)
            weight = view_weight(batch.confidence, batch.mask, batch.view_mask)
            joints = solve_placement(*views_as_frames(joints, batch.keypoints, weight, batch.R, batch.t)).apply(joints)
            losses.append(float(reprojection_loss(**views_as_items(joints, batch.keypoints, weight, batch.mask, batch.R,
                                                                   batch.t), weighting="depth_squared")))
    return float(np.mean(losses))


def test_2d_training_reduces_the_reprojection_loss(dataset_2d, tmp_path):
    settings = ["train.lr=2e-3", "train.warmup_steps=5", "train.save_every=80", "model.dropout=0"]
    train(dataset_2d, tmp_path / "start", tiny_2d_config("train.steps=1", *settings), progress=False)
    train(dataset_2d, tmp_path / "trained", tiny_2d_config("train.steps=80", *settings), progress=False)
    before = _fixed_reprojection_loss(tmp_path / "start", dataset_2d)
    after = _fixed_reprojection_loss(tmp_path / "trained", dataset_2d)
    # A v-predicting prior starts from its input (the teacher), so it starts lower than an x0 one did (0.016 vs 0.047
    # m² here) and has less to gain in 80 steps: 0.62 of the start on the tests' data.
    assert after < 0.75 * before, (before, after)
    assert np.isfinite([row["loss_reprojection"] for row in read_metrics(tmp_path / "trained")]).all()
    assert json.loads((tmp_path / "trained" / "config.json").read_text())["train"]["supervision"] == "2d"


def test_ground_truth_never_reaches_2d_training(dataset_2d, tmp_path):
    poison_ground_truth(dataset_2d)
    run = tmp_path / "run"
    train(dataset_2d, run, tiny_2d_config("train.steps=3"), progress=False)
    rows = read_metrics(run)
    assert rows and all(np.isfinite(row["loss"]) for row in rows)
    # The poison is real: a mode that reads gt_3d fails on it, naming the file.
    with pytest.raises(DataError, match=r"\.npz.*gt_3d contains NaN"):
        train(dataset_2d, tmp_path / "run_3d", tiny_2d_config("train.steps=3", "train.supervision=3d"),
              progress=False)


class _RecordingDenoiser(torch.nn.Module):
    """Predicts a constant x0 and records the levels it was called at."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.levels: list[list[int]] = []

    def forward(self, x, t, mask, cond=None, uncond=None):
        self.levels.append(t.tolist())
        return torch.full_like(x, self.value)


def test_teacher_is_never_noised_below_t_star(monkeypatch):
    steps, t_star, chain = 50, 12, 4
    config = load_config("small", [f"diffusion.steps={steps}", f"two_d.teacher_min_t={t_star}",
                                   f"two_d.chain_steps={chain}", "train.supervision=2d"])
    objective = build_objective(config, None, torch.device("cpu"))
    assert isinstance(objective, ReprojectionObjective)
    diffusion = GaussianDiffusion(steps)
    model = _RecordingDenoiser(value=7.0)
    teacher = torch.randn(4, 10, 263)
    levels = torch.tensor([0, 5, 12, 40])
    calls = []
    original = diffusion.q_sample

    def recording_q_sample(x0, t, noise=None):
        calls.append((x0 is teacher, t.clone(), x0.clone()))
        return original(x0, t, noise)

    monkeypatch.setattr(diffusion, "q_sample", recording_q_sample)
    mask = torch.ones(4, 10, dtype=torch.bool)
    x = objective.noised_teacher(model, diffusion, teacher, levels, mask, None, None,
                                 ItemRandom(0, 0, range(4), max_frames=10))

    teacher_levels = torch.cat([t for is_teacher, t, _ in calls if is_teacher])
    assert teacher_levels.min() >= t_star
    # Items below t* walk down a chain of `chain` model calls, from t* to their own level.
    assert len(model.levels) == chain
    assert [step[0] for step in model.levels] == [12, 9, 6, 3]
    assert [step[1] for step in model.levels] == [12, 10, 8, 7]
    last_is_teacher, last_levels, last_x0 = calls[-1]
    assert not last_is_teacher and last_levels[:2].tolist() == [0, 5]
    assert torch.all(last_x0 == 7.0)  # the last step starts from the model's own prediction
    # Each chain step is deterministic DDIM: the next level keeps the noise that x and the prediction imply. Replaying
    # the chain of item 0 (levels 12 → 9 → 6 → 3 → 0) from its start gives its result exactly.
    first_noise = ItemRandom(0, 0, range(4), max_frames=10).noise(10, 263, torch.device("cpu"))[:1]
    replay = original(teacher[:1], torch.tensor([t_star]), first_noise)
    for current, nxt in ((12, 9), (9, 6), (6, 3), (3, 0)):
        prediction = torch.full_like(replay, 7.0)
        implied = diffusion.predict_noise_from_x0(replay, torch.tensor([current]), prediction)
        replay = original(prediction, torch.tensor([nxt]), implied)
    torch.testing.assert_close(x[:1], replay)
    # Items at or above t* are the teacher noised directly to their level.
    assert not torch.allclose(x[3], torch.full_like(x[3], 7.0), atol=0.5)


def test_low_levels_self_denoise_the_models_own_estimate():
    """``two_d.low_levels=self``: items below t* are the model's one-call estimate from the teacher noised to t*,
    noised again to their own level with fresh noise, and that estimate is their target; the others are the teacher
    noised to their level."""
    steps, t_star = 50, 12
    config = load_config("small", [f"diffusion.steps={steps}", f"two_d.teacher_min_t={t_star}",
                                   "two_d.low_levels=self", "train.supervision=2d"])
    objective = build_objective(config, None, torch.device("cpu"))
    diffusion = GaussianDiffusion(steps)
    model = _RecordingDenoiser(value=7.0)
    teacher = torch.randn(4, 10, 263)
    levels = torch.tensor([0, 5, 12, 40])
    mask = torch.ones(4, 10, dtype=torch.bool)
    x, own = objective.noised_own_estimate(model, diffusion, teacher, levels, mask, None, None,
                                           ItemRandom(0, 0, range(4), max_frames=10))
    assert model.levels == [[t_star, t_star]]  # one call, at t*, for the two low items only
    torch.testing.assert_close(own[:2], torch.full_like(own[:2], 7.0))
    torch.testing.assert_close(own[2:], teacher[2:])
    random = ItemRandom(0, 0, range(4), max_frames=10)
    first = random.noise(10, 263, torch.device("cpu"))
    fresh = random.noise(10, 263, torch.device("cpu"), [0, 1])
    torch.testing.assert_close(x[:2], diffusion.q_sample(own[:2], levels[:2], fresh))
    torch.testing.assert_close(x[2:], diffusion.q_sample(teacher[2:], levels[2:], first[2:]))


def test_cli_lifter_prepare_and_2d_training(tmp_path, capsys):
    mocap = tmp_path / "mocap"
    mocap.mkdir()
    from synthetic import walk

    for i in range(3):
        np.save(mocap / f"take_{i}.npy", walk(200, seed=i))
        (mocap / f"take_{i}.json").write_text('{"fps": 20}')
    data, lifter, data_2d = tmp_path / "data", tmp_path / "lifter", tmp_path / "data_2d"
    assert main(["data", "mocap", str(mocap), "--out", str(data), "--lifter-fraction", "0.3",
                 "--window-frames", "40"]) == 0
    assert set(json.loads((data / "dataset.json").read_text())["splits"]) == {"lifter", "train", "test"}
    assert main(["lifter", "train", str(data), "--out", str(lifter), "--steps", "2", "--quiet"]) == 0
    # A lifter may not lift the clips it was trained on.
    assert main(["prepare", "mocap", str(data), "--out", str(data_2d), "--lifter", str(lifter),
                 "--splits", "lifter,train", "--quiet"]) == 2
    assert "trained on split 'lifter'" in capsys.readouterr().err and not data_2d.exists()
    assert main(["prepare", "mocap", str(data), "--out", str(data_2d), "--lifter", str(lifter), "--quiet"]) == 0
    index = json.loads((data_2d / "dataset.json").read_text())
    assert set(index["splits"]) == {"train", "test"}
    args = ["train", str(data_2d), "--out", str(tmp_path / "run"), "--supervision", "2d", "--steps", "2", "--quiet"]
    assert main(args + sum((["--set", s] for s in TINY), [])) == 0


def _oracle_run(motion_dataset, tmp_path, monkeypatch):
    """A tiny run whose denoiser returns the clean input that lifting noised (an oracle prior)."""
    from videomdm.sample import load_run

    run_dir = tmp_path / "run"
    train(motion_dataset, run_dir, tiny_2d_config("train.steps=1", "train.supervision=3d"), progress=False)
    run = load_run(run_dir)
    clean = {}
    original = run.diffusion.q_sample

    def capturing_q_sample(x0, t, noise=None):
        clean["x0"] = x0
        return original(x0, t, noise)

    class Oracle(torch.nn.Module):
        def forward(self, x, t, mask, cond=None, uncond=None):
            return clean["x0"]

    monkeypatch.setattr(run.diffusion, "q_sample", capturing_q_sample)
    run.model = Oracle()
    return run


@pytest.mark.parametrize("num_frames", [15, 40, 97])
def test_lift_windows_and_frames(motion_dataset, tmp_path, monkeypatch, num_frames):
    """With an oracle denoiser (it returns the clean input), denoising gives back the teacher in the world frame:
    windowing, canonicalization, decoding and the way back are exact."""
    from videomdm.sample import lift, window_starts

    run = _oracle_run(motion_dataset, tmp_path, monkeypatch)
    from synthetic import walk

    teacher = walk(num_frames, seed=3)
    out = lift(run, teacher, t_start=5)
    assert out.shape == teacher.shape
    np.testing.assert_allclose(out, teacher, atol=1e-3)
    np.testing.assert_allclose(lift(run, teacher, t_start=5, samples=3), teacher, atol=1e-3)  # each sample's windows
    starts = window_starts(num_frames, 40)
    covered = np.zeros(num_frames, dtype=bool)
    for s in starts:
        covered[s:s + min(40, num_frames)] = True
    assert covered.all() and starts[-1] + min(40, num_frames) == num_frames
    with pytest.raises(ValueError, match="t_start"):
        lift(run, teacher, t_start=10)
    with pytest.raises(ValueError, match="samples"):
        lift(run, teacher, t_start=5, samples=0)


def test_the_posterior_mean_of_several_lifts_averages_their_noise_out(motion_dataset, tmp_path):
    """A prior that removes nothing (it returns its input without the signal scale, x_t / √ᾱ_t) lifts the teacher
    plus that sample's noise; the mean of 16 samples keeps about a quarter of one sample's error (1/√K)."""
    from synthetic import walk

    from videomdm.sample import lift, load_run

    run_dir = tmp_path / "run"
    train(motion_dataset, run_dir, tiny_2d_config("train.steps=1", "train.supervision=3d"), progress=False)
    run = load_run(run_dir)
    abar = run.diffusion.alphas_cumprod

    class KeepsTheNoise(torch.nn.Module):
        def forward(self, x, t, mask, cond=None, uncond=None):
            return x / abar[t].sqrt()[:, None, None]

    run.model = KeepsTheNoise()
    teacher = walk(60, seed=4)
    errors = {k: float(np.linalg.norm(lift(run, teacher, t_start=3, samples=k) - teacher, axis=-1).mean())
              for k in (1, 16)}
    assert 0 < errors[16] < 0.5 * errors[1], errors


def test_guided_lift_lands_on_the_keypoint_rays(motion_dataset, tmp_path):
    """With full guidance down to the last level, every confident joint of the lifted motion projects onto its
    keypoint, whatever the (here untrained) prior predicts: the cameras follow every re-canonicalization."""
    from synthetic import walk

    from videomdm.camera import look_at, project_normalized, world_to_camera
    from videomdm.data.dataset import Observations
    from videomdm.sample import lift, load_run

    run_dir = tmp_path / "run"
    train(motion_dataset, run_dir, tiny_2d_config("train.steps=1", "train.supervision=3d"), progress=False)
    run = load_run(run_dir)
    truth = torch.from_numpy(walk(57, seed=5)).double()  # (T, J, 3)
    eye = truth[0, 0] + torch.tensor([3.0, 0.5, 4.0], dtype=torch.float64)
    R, t = look_at(eye[None], truth[0, 0][None])  # (1, 3, 3), (1, 3)
    R_frames, t_frames = R.expand(57, 3, 3), t.expand(57, 3)
    keypoints = project_normalized(world_to_camera(truth[None], R, t))[0]  # (T, J, 2)
    confidence = torch.ones(57, 22)
    confidence[10:20, 3] = 0.0  # a missing joint is left where the prior puts it
    observations = Observations(keypoints.float().numpy()[None], confidence.numpy()[None],  # one view
                                R_frames.float().numpy()[None], t_frames.float().numpy()[None])
    teacher = truth.float().numpy() + np.random.default_rng(0).normal(scale=0.05, size=truth.shape).astype(np.float32)
    lifted = lift(run, teacher, observations, guidance=1.0, guidance_min_t=0)
    reprojected = project_normalized(world_to_camera(torch.from_numpy(lifted).double()[None], R, t))[0]
    error = (reprojected - keypoints).norm(dim=-1)  # (T, J) normalized image units
    assert error[confidence > 0].max() < 2e-3, error.max()
    assert error[confidence == 0].max() > 1e-2  # the missing joint was not snapped


def test_lifting_in_chunks_of_windows_gives_the_same_motion(motion_dataset, tmp_path):
    """``max_windows`` bounds how many windows (of every sample) the sampler holds at once; guided, placed and
    fitted window by window, the result is the same whatever the chunks."""
    from synthetic import walk

    from videomdm.camera import look_at, project_normalized, world_to_camera
    from videomdm.data.dataset import Observations
    from videomdm.sample import lift, load_run

    run_dir = tmp_path / "run"
    train(motion_dataset, run_dir, tiny_2d_config("train.steps=1", "train.supervision=3d"), progress=False)
    run = load_run(run_dir)
    truth = torch.from_numpy(walk(70, seed=6)).double()  # (T, J, 3)
    eye = truth[0, 0] + torch.tensor([3.0, 0.5, 4.0], dtype=torch.float64)
    R, t = look_at(eye[None], truth[0, 0][None])
    keypoints = project_normalized(world_to_camera(truth[None], R, t))[0]
    observations = Observations(keypoints.float().numpy()[None], np.ones((1, 70, 22), np.float32),
                                R.expand(1, 70, 3, 3).float().numpy(), t.expand(1, 70, 3).float().numpy())
    teacher = truth.float().numpy() + np.random.default_rng(1).normal(scale=0.03, size=truth.shape).astype(np.float32)
    whole = lift(run, teacher, observations, samples=2, stride=10)  # 4 windows × 2 samples in one batch
    chunked = lift(run, teacher, observations, samples=2, stride=10, max_windows=3)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    with pytest.raises(ValueError, match="max_windows"):
        lift(run, teacher, observations, max_windows=0)


@pytest.mark.parametrize("num_frames", [40, 97])
def test_lift_places_the_prior_from_the_keypoints_not_at_the_teachers_anchor(motion_dataset, tmp_path, monkeypatch,
                                                                             num_frames):
    """A teacher with the right shape in the wrong place (turned 10°, 40 cm off): a prior that returns its clean
    input, lifted without ray guidance, lands on the truth because every window is placed from the keypoints (and
    overlapping windows blend without a seam); without keypoints it stays where the teacher is."""
    from synthetic import walk

    from videomdm.camera import look_at, project_normalized, world_to_camera
    from videomdm.data.dataset import Observations
    from videomdm.representation import yaw_matrix
    from videomdm.sample import lift

    run = _oracle_run(motion_dataset, tmp_path, monkeypatch)
    truth = torch.from_numpy(walk(num_frames, seed=7)).double()  # (T, J, 3)
    pivot = truth[0, 0] * torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    turned = (truth - pivot) @ yaw_matrix(torch.tensor(0.17, dtype=torch.float64)).T + pivot
    teacher = (turned + torch.tensor([0.4, 0.0, -0.3], dtype=torch.float64)).float().numpy()
    eye = truth[0, 0] + torch.tensor([3.0, 0.5, 4.0], dtype=torch.float64)
    R, t = look_at(eye[None], truth[0, 0][None])  # (1, 3, 3), (1, 3)
    keypoints = project_normalized(world_to_camera(truth[None], R, t))[0]  # (T, J, 2)
    observations = Observations(keypoints.float().numpy()[None], np.ones((1, num_frames, 22), np.float32),
                                R.expand(1, num_frames, 3, 3).float().numpy(),
                                t.expand(1, num_frames, 3).float().numpy())
    placed = lift(run, teacher, observations, guidance=0.0, stride=15)
    np.testing.assert_allclose(placed, truth.numpy(), atol=5e-3)
    unobserved = lift(run, teacher, stride=15)
    np.testing.assert_allclose(unobserved, teacher, atol=1e-3)


def test_blend_windows_hands_over_gradually_and_keeps_agreeing_windows():
    from videomdm.sample import blend_windows, window_starts

    starts = window_starts(50, 20, 10)
    assert starts == [0, 10, 20, 30]
    agreeing = torch.stack([torch.arange(s, s + 20, dtype=torch.float64) for s in starts])  # (W, L)
    torch.testing.assert_close(blend_windows(agreeing, starts, 50), torch.arange(50, dtype=torch.float64))
    two = blend_windows(torch.stack([torch.zeros(20), torch.ones(20)]), [0, 10], 30)
    assert torch.all(two[:10] == 0) and torch.all(two[20:] == 1)
    assert torch.all(torch.diff(two[10:20]) > 0)  # across the overlap the second window takes over step by step


def test_windows_carry_the_camera_into_their_frame(dataset_2d):
    """Decoded window features seen through the window's camera land where the teacher was seen by the real one."""
    from videomdm.camera import project_normalized, world_to_camera
    from videomdm.data.clip import load_clip, read_dataset_index
    from videomdm.data.dataset import MotionWindows, clip_observations
    from videomdm.representation import decode
    from videomdm.skeleton import SMPL_22

    windows = MotionWindows(dataset_2d, "train", motion_field="teacher_3d", num_frames=30, min_frames=20,
                            with_keypoints=True)
    path = read_dataset_index(dataset_2d).clip_paths("train")[0]
    clip = load_clip(path)
    observed = clip_observations(clip, SMPL_22, path)
    rng = np.random.default_rng(3)
    start = int(np.random.default_rng(3).integers(0, len(clip.teacher_3d) - 30 + 1))
    batch = windows.sample(0, rng)
    assert torch.equal(batch.keypoints[0], torch.from_numpy(observed.keypoints[:, start:start + 30]))
    decoded = decode(batch.features, SMPL_22.num_joints)  # (1, 30, J, 3) in the window's frame
    seen = project_normalized(world_to_camera(decoded.double(), batch.R[:, 0].double(), batch.t[:, 0].double()))
    teacher = torch.from_numpy(clip.teacher_3d[start:start + 30]).double()[None]
    R = torch.from_numpy(observed.R[0, start:start + 30]).double()[None]  # the clip's one view
    t = torch.from_numpy(observed.t[0, start:start + 30]).double()[None]
    expected = project_normalized(world_to_camera(teacher, R, t))
    torch.testing.assert_close(seen, expected, atol=1e-4, rtol=0)


@pytest.mark.integration
def test_demo_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    """The demo's whole path (LAFAN1 fetch, lifter, virtual cameras, 2d training, samples, lifting) with tiny budgets."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "3", "--lifter-steps", "3", "--num", "1", "--quiet",
                 "--cache", str(Path.home() / ".cache" / "videomdm")]) == 0
    printed = capsys.readouterr().out
    assert "MPJPE mm" in printed and "demo finished" in printed
    run = next((out / "runs").iterdir())
    assert (run / "samples" / "motion_000.gif").stat().st_size > 1000
    lifted = sorted((run / "lifted").glob("*.npy"))
    assert lifted and np.load(lifted[0]).shape[1:] == (22, 3)
