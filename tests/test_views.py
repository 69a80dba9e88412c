"""Views (DESIGN.md, "Views"): clips of V synchronized cameras, the 2D losses and placement over views, mixed-V
batches, virtual rigs, multi-view training and lifting; a monocular clip is V = 1 and old datasets still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import walk
from test_objectives import tiny_config

from videomdm.camera import look_at, project_normalized, world_to_camera
from videomdm.data.clip import Clip, load_clip, read_clip_summary, read_dataset_index, save_clip
from videomdm.data.dataset import MotionWindows, Observations, collate
from videomdm.data.errors import DataError
from videomdm.factory import build_diffusion
from videomdm.losses import reprojection_loss, velocity_2d_loss
from videomdm.objectives import build_objective
from videomdm.placement import solve_placement
from videomdm.representation import yaw_matrix
from videomdm.train import ItemRandom
from videomdm.views import nearest_point_to_rays, view_weight, views_as_frames, views_as_items

LEGACY = Path(__file__).parent / "data" / "legacy_v1_dataset"
CPU = torch.device("cpu")


class Shrink(torch.nn.Module):
    """A fixed 'denoiser' (no parameters): the objective's result depends on the data path alone."""

    def forward(self, x, t, mask, cond=None, uncond=None):
        return 0.8 * x + 0.05


def _objective_terms(data: Path, weighting: str, indices=(0, 0, 0)) -> dict[str, float]:
    config = tiny_config("train.supervision=2d", "two_d.alignment=0.5", f"two_d.depth_weighting={weighting}",
                         "two_d.time_weighting=x0")  # the reference was computed with the x0 level weights
    objective = build_objective(config, None, CPU)
    windows = MotionWindows(data, "train", motion_field="teacher_3d", num_frames=16, min_frames=10,
                            with_keypoints=True)
    batch = windows.batch(list(indices), np.random.default_rng(0))
    loss, terms = objective(Shrink(), build_diffusion(config), windows.normalizer(), batch,
                            ItemRandom(0, 0, range(len(indices)), max_frames=16))
    return {name: float(value) for name, value in terms.items()} | {"loss": float(loss)}


# --- the record ------------------------------------------------------------------------------------------------------


def test_a_dataset_written_before_views_loads_as_one_view():
    """tests/data/legacy_v1_dataset was written by the clip writer of the commit before the view axis (format 1)."""
    index = read_dataset_index(LEGACY)
    path = index.clip_paths("train")[0]
    with np.load(path) as raw:
        assert int(raw["clip_format_version"]) == 1 and raw["keypoints_2d"].ndim == 3
        stored = {name: raw[name] for name in ("keypoints_2d", "confidence", "K", "R", "t")}
    clip = load_clip(path)
    assert clip.num_views == 1 and clip.num_frames == 24
    for name, value in stored.items():
        np.testing.assert_array_equal(getattr(clip, name), value[None], err_msg=name)
    summary = read_clip_summary(path)
    assert summary.views == 1 and summary.frames["keypoints_2d"] == 24


@pytest.mark.parametrize("weighting", ["depth_squared", "mean_depth"])
def test_monocular_2d_losses_equal_the_losses_before_views(weighting):
    """The 2d objective on the legacy dataset, with a fixed denoiser and fixed random streams, against the terms the
    code before the view axis computed on the same batch (tests/data/legacy_v1_dataset/make_reference.py)."""
    reference = json.loads((LEGACY / "reference_2d_terms.json").read_text())[weighting]
    terms = _objective_terms(LEGACY, weighting)
    # Equal up to the float32 rounding of the placement solve (bit for bit until its algebraic stage left float64,
    # fifth session: ~1e-7 relative); computing anything differently per view would move them by far more.
    assert terms["reprojection"] == pytest.approx(reference["reprojection"], rel=1e-6)
    assert terms["velocity_2d"] == pytest.approx(reference["velocity_2d"], rel=1e-6)
    # The alignment target (the point nearest to the rays) carries a 1e-6 ridge for views in general.
    assert terms["alignment"] == pytest.approx(reference["alignment"], rel=1e-5)


def test_a_legacy_clip_saved_again_is_read_back_identically(tmp_path):
    clip = load_clip(read_dataset_index(LEGACY).clip_paths("test")[0])
    save_clip(tmp_path / "again.npz", clip)
    again = load_clip(tmp_path / "again.npz")
    with np.load(tmp_path / "again.npz") as raw:
        assert int(raw["clip_format_version"]) == 2 and raw["keypoints_2d"].shape == (1, 24, 22, 2)
    for name in ("keypoints_2d", "confidence", "K", "R", "t", "teacher_3d", "gt_3d"):
        np.testing.assert_array_equal(getattr(again, name), getattr(clip, name), err_msg=name)


def _rig_clip(views: int = 3, frames: int = 10, per_frame: bool = False) -> Clip:
    rng = np.random.default_rng(1)
    gt = walk(frames, seed=2)
    K = np.tile(np.array([[800.0, 0, 640], [0, 800, 360], [0, 0, 1]]), (views, 1, 1))
    eyes = [gt[0, 0] + 5 * np.array([np.sin(a), 0.2, np.cos(a)]) for a in np.linspace(0, 2, views)]
    R, t = look_at(torch.tensor(np.array(eyes)), torch.tensor(np.tile(gt[0, 0], (views, 1)), dtype=torch.float64))
    R, t = R.numpy(), t.numpy()
    if per_frame:
        R, t = np.repeat(R[:, None], frames, 1), np.repeat(t[:, None], frames, 1)
    return Clip(name="rig", fps=20.0, skeleton="smpl22", source="test", gt_3d=gt, teacher_3d=gt,
                keypoints_2d=rng.uniform(0, 600, (views, frames, 22, 2)).astype(np.float32),
                confidence=rng.uniform(0, 1, (views, frames, 22)).astype(np.float32), keypoint_skeleton="smpl22",
                K=K, R=R, t=t)


@pytest.mark.parametrize("per_frame", [False, True])
def test_a_multi_view_clip_round_trips_and_splits_into_views(tmp_path, per_frame):
    clip = _rig_clip(per_frame=per_frame).validate()
    save_clip(tmp_path / "rig.npz", clip)
    loaded = load_clip(tmp_path / "rig.npz")
    assert loaded.num_views == 3 and loaded.num_frames == 10 and read_clip_summary(tmp_path / "rig.npz").views == 3
    for name in ("keypoints_2d", "confidence", "K", "R", "t"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(clip, name), err_msg=name)
    second = loaded.view(1)
    assert second.num_views == 1 and np.array_equal(second.keypoints_2d[0], clip.keypoints_2d[1])
    assert np.array_equal(second.R[0], clip.R[1]) and second.gt_3d is loaded.gt_3d
    with pytest.raises(IndexError, match=r"has 3 views, cannot select views \[3\]"):
        loaded.view(3)


def test_views_that_disagree_are_refused_naming_the_clip():
    clip = _rig_clip()
    with pytest.raises(DataError, match=r"clip 'rig': K must have a leading view axis of 3 views"):
        Clip(**{**clip.__dict__, "K": clip.K[:2]}).validate()
    with pytest.raises(DataError, match=r"confidence must have shape \(3, 10, 22\) \(V, T, J2\)"):
        Clip(**{**clip.__dict__, "confidence": clip.confidence[:, :, :5]}).validate()
    behind = clip.t.copy()
    behind[2] = [0.0, 0.0, -5.0]  # the third camera looks away from the subject
    with pytest.raises(DataError, match=r"\(gt_3d\) is behind the camera .* in 10 of 10 frames in some view"):
        Clip(**{**clip.__dict__, "t": behind}).validate()


# --- losses and placement over views ---------------------------------------------------------------------------------


def _ring_cameras(center: torch.Tensor, azimuths: list[float], frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras 5 m from ``center`` at the given azimuths (radians), as per-frame ``R (1, V, T, 3, 3)``, ``t``."""
    eyes = torch.stack([center + 5.0 * torch.tensor([np.sin(a), 0.1, np.cos(a)], dtype=center.dtype)
                        for a in azimuths])
    R, t = look_at(eyes, center.expand(len(azimuths), 3))  # (V, 3, 3), (V, 3)
    return R[None, :, None].expand(1, -1, frames, 3, 3), t[None, :, None].expand(1, -1, frames, 3)


def _observe(joints: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact normalized keypoints ``(1, V, T, J, 2)`` of ``joints (1, T, J, 3)`` in every view."""
    views = R.shape[1]
    points = joints[:, None].expand(1, views, *joints.shape[1:]).flatten(0, 1)  # (V, T, J, 3)
    return project_normalized(world_to_camera(points, R.flatten(0, 1), t.flatten(0, 1)))[None]


def _losses(joints, keypoints, R, t):
    frames, num_joints = joints.shape[1:3]
    weight = view_weight(torch.ones(keypoints.shape[:-1], dtype=joints.dtype), torch.ones(1, frames, dtype=torch.bool))
    observed = views_as_items(joints, keypoints, weight, torch.ones(1, frames, dtype=torch.bool), R, t)
    return float(reprojection_loss(**observed)), float(velocity_2d_loss(**observed))


def test_the_true_motion_scores_zero_in_every_view_and_a_depth_error_shows_in_another_view():
    truth = torch.from_numpy(walk(12, seed=4)).double()[None]  # (1, T, J, 3)
    center = truth[0, 0, 0]
    R, t = _ring_cameras(center, [0.0, np.pi / 2], 12)  # two cameras, 90° apart
    keypoints = _observe(truth, R, t)
    assert max(_losses(truth, keypoints, R, t)) < 1e-20
    # Move every joint along camera 0's viewing ray through it (a pure depth error for camera 0).
    centre0 = -(R[0, 0, 0].T @ t[0, 0, 0])  # camera 0's centre in the world
    moved = centre0 + (truth - centre0) * 1.1  # 10 % farther along each ray: invisible to camera 0
    alone = _losses(moved, keypoints[:, :1], R[:, :1], t[:, :1])
    both = _losses(moved, keypoints, R, t)
    assert max(alone) < 1e-20  # one view cannot see it
    assert both[0] > 1e-3 and both[1] > 1e-6  # the second view does (m² per joint, depth-weighted)
    # The losses average over views: two copies of one view score what that view alone scores.
    twice = _losses(moved, keypoints[:, [1, 1]], R[:, [1, 1]], t[:, [1, 1]])
    assert twice == pytest.approx(_losses(moved, keypoints[:, 1:], R[:, 1:], t[:, 1:]), rel=1e-12)


def test_placement_uses_every_view_and_two_views_pin_the_depth_of_a_wrongly_sized_body():
    truth = torch.from_numpy(walk(20, seed=6)).double()[None]
    center = truth[0, 0, 0]
    R, t = _ring_cameras(center, [0.3, 0.3 + np.pi / 2], 20)
    keypoints = _observe(truth, R, t)
    pivot = truth[0, 0, 0] * torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    offset = torch.tensor([0.5, 0.0, -0.4], dtype=torch.float64)
    anchor = (truth - pivot) @ yaw_matrix(torch.tensor(0.2, dtype=torch.float64)).T + pivot + offset
    scaled = (anchor - anchor.mean((1, 2), keepdim=True)) * 0.9 + anchor.mean((1, 2), keepdim=True)  # a smaller body

    def placed_error(points, views):
        weight = torch.ones(keypoints[:, views].shape[:-1], dtype=torch.float64)
        placement = solve_placement(*views_as_frames(points, keypoints[:, views], weight, R[:, views], t[:, views]))
        return float((placement.apply(points) - truth).norm(dim=-1).mean())

    assert placed_error(anchor, [0, 1]) < 1e-5 and placed_error(anchor, [0]) < 1e-4  # exact but for the tiny ridge
    # A 10 % smaller body: one view puts it nearer the camera (scale and depth trade off), two views pin its depth.
    assert placed_error(scaled, [0, 1]) < 0.5 * placed_error(scaled, [0])


def test_the_point_nearest_to_the_rays_triangulates_with_two_views_and_is_the_ray_point_with_one():
    from videomdm.camera import ray_nearest_point

    truth = torch.from_numpy(walk(5, seed=8)).double()[None]
    R, t = _ring_cameras(truth[0, 0, 0], [0.0, 1.2, 2.5], 5)
    keypoints = _observe(truth, R, t)
    guess = truth + torch.from_numpy(np.random.default_rng(0).normal(scale=0.2, size=truth.shape))
    weight = torch.ones(keypoints.shape[:-1], dtype=torch.float64)
    triangulated = nearest_point_to_rays(guess, keypoints, weight, R, t)
    torch.testing.assert_close(triangulated, truth, atol=1e-5, rtol=0)  # the ridge pulls by ~1e-6 of the 0.2 m guess error
    one = nearest_point_to_rays(guess, keypoints[:, :1], weight[:, :1], R[:, :1], t[:, :1])
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(one, ray_nearest_point(guess, keypoints[:, 0], eye, R[:, 0], t[:, 0]), atol=1e-6,
                               rtol=0)
    unseen = nearest_point_to_rays(guess, keypoints, torch.zeros_like(weight), R, t)
    torch.testing.assert_close(unseen, guess, atol=1e-9, rtol=0)


# --- virtual rigs, batches, training, lifting ------------------------------------------------------------------------


@pytest.fixture
def rig_datasets(motion_dataset, tmp_path):
    """The synthetic walks filmed by 3 virtual cameras: a rig dataset (one clip of 3 views per walk) and the
    monocular dataset of the same cameras (3 clips per walk), through the command line."""
    from videomdm.cli import main

    rig, mono = tmp_path / "rig", tmp_path / "mono"
    common = ["--teacher", "corrupt", "--cameras", "3", "--seed", "4", "--quiet"]
    assert main(["prepare", "mocap", str(motion_dataset), "--out", str(rig), "--multiview", *common]) == 0
    assert main(["prepare", "mocap", str(motion_dataset), "--out", str(mono), *common]) == 0
    return rig, mono


def test_prepare_mocap_multiview_writes_one_clip_of_all_views(rig_datasets):
    rig, mono = rig_datasets
    rig_index, mono_index = read_dataset_index(rig), read_dataset_index(mono)
    assert rig_index.extra["multiview"] is True and mono_index.extra["multiview"] is False
    assert len(rig_index.splits["train"]) == 6 and len(mono_index.splits["train"]) == 18
    monocular = {c.name: c for c in map(load_clip, mono_index.clip_paths("train"))}
    for path in rig_index.clip_paths("train"):
        clip = load_clip(path)
        assert clip.name.endswith("_rig") and clip.num_views == 3 and "virtual rig of 3 cameras" in clip.source
        base = clip.name[:-len("_rig")]
        for v in range(3):
            single = monocular[f"{base}_cam{v}"]
            for name in ("keypoints_2d", "confidence", "K", "R", "t"):
                np.testing.assert_array_equal(getattr(clip, name)[v], getattr(single, name)[0], err_msg=name)
        assert clip.teacher_3d.shape == clip.gt_3d.shape and not np.array_equal(clip.teacher_3d, clip.gt_3d)


def test_a_batch_of_clips_with_different_view_counts_is_padded_and_masked(rig_datasets, tmp_path):
    rig, mono = rig_datasets
    windows_rig = MotionWindows(rig, "train", motion_field="teacher_3d", num_frames=30, min_frames=20,
                                with_keypoints=True)
    windows_mono = MotionWindows(mono, "train", motion_field="teacher_3d", num_frames=30, min_frames=20,
                                 with_keypoints=True)
    three = windows_rig.sample(0, np.random.default_rng(0))
    one = windows_mono.sample(1, np.random.default_rng(1))
    batch = collate([three, one])
    assert batch.keypoints.shape[:3] == (2, 3, 30) and batch.view_mask.tolist() == [[True] * 3, [True, False, False]]
    assert batch.confidence[1, 1:].abs().sum() == 0
    identity = batch.R[1, 1:] @ batch.R[1, 1:].transpose(-1, -2)  # padding views hold valid cameras
    torch.testing.assert_close(identity, torch.eye(3).expand_as(identity))
    # The padded item scores what it scores alone.
    joints = torch.from_numpy(walk(30, seed=1))[None].expand(2, 30, 22, 3)

    def loss(b, index):
        weight = view_weight(b.confidence, b.mask, b.view_mask)[index:index + 1]
        return float(reprojection_loss(**views_as_items(joints[:1], b.keypoints[index:index + 1], weight,
                                                        b.mask[index:index + 1], b.R[index:index + 1],
                                                        b.t[index:index + 1])))

    assert loss(batch, 1) == pytest.approx(loss(collate([one]), 0), rel=1e-6)


def test_multi_view_2d_training_runs_and_reads_no_ground_truth(rig_datasets, tmp_path):
    from conftest import poison_ground_truth
    from test_train import TINY, read_metrics

    from videomdm.config import load_config
    from videomdm.train import train

    rig, _ = rig_datasets
    data = tmp_path / "rig_poisoned"
    shutil.copytree(rig, data)
    poison_ground_truth(data)
    config = load_config("small", TINY + ["train.supervision=2d", "train.steps=4", "two_d.alignment=0.1"])
    train(data, tmp_path / "run", config, progress=False)
    rows = read_metrics(tmp_path / "run")
    assert rows and all(np.isfinite(row["loss"]) for row in rows)
    assert {"loss_reprojection", "loss_velocity_2d", "loss_alignment"} <= set(rows[-1])


def test_multi_view_lifting_fixes_the_depth_that_one_view_leaves_free(motion_dataset, tmp_path, monkeypatch):
    """A prior that returns its clean input, a teacher 8 % too large (so a single view places it too far from the
    camera): lifting with ray guidance from one view keeps a depth error, two views at right angles remove it."""
    from test_train_2d import _oracle_run

    from videomdm.sample import lift

    run = _oracle_run(motion_dataset, tmp_path, monkeypatch)
    truth = torch.from_numpy(walk(40, seed=9)).double()  # (T, J, 3)
    R, t = _ring_cameras(truth[0, 0], [0.4, 0.4 + np.pi / 2], 40)  # (1, 2, T, 3, 3)
    keypoints = _observe(truth[None], R, t)[0]  # (2, T, J, 2)
    centre = truth.mean((0, 1))
    teacher = ((truth - centre) * 1.08 + centre).float().numpy()

    def error_mm(views):
        observations = Observations(keypoints[views].float().numpy(), np.ones((len(views), 40, 22), np.float32),
                                    R[0, views].float().numpy(), t[0, views].float().numpy())
        lifted = lift(run, teacher, observations, guidance=1.0, guidance_min_t=0)
        return 1000 * float(np.linalg.norm(lifted - truth.numpy(), axis=-1).mean())

    mono, multi = error_mm([0]), error_mm([0, 1])
    assert multi < 0.5 * mono and multi < 15.0, (mono, multi)


def test_virtual_rigs_with_the_triangulating_teacher(motion_dataset, tmp_path, capsys):
    from videomdm.cli import main
    from videomdm.metrics import mpjpe

    out = tmp_path / "tri"
    common = ["prepare", "mocap", str(motion_dataset), "--out", str(out), "--teacher", "triangulate", "--cameras", "3",
              "--quiet"]
    assert main(common) == 2 and "--teacher triangulate needs multi-view clips" in capsys.readouterr().err
    assert main(common + ["--multiview"]) == 0
    assert read_dataset_index(out).extra["teacher"] == "triangulate:all views"
    for path in read_dataset_index(out).clip_paths("test"):
        clip = load_clip(path)
        assert mpjpe(clip.teacher_3d, clip.gt_3d) < 40.0  # mm: three views of the simulated detector
