"""Placement of a motion from its keypoints (placement.py): exact on noise-free data, inert without keypoints, and
the reason the 2d objective prefers the ground truth to the teacher."""

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from videomdm.camera import look_at, project_normalized, world_to_camera
from videomdm.placement import Placement, solve_placement


def _scene(frames: int = 12, joints: int = 22, per_frame: bool = True):
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(2, frames, joints, 3, generator=generator, dtype=torch.float64) * 0.4
    points[..., 1] += 1.0
    eye = torch.tensor([[3.0, 1.5, 4.0], [-4.0, 1.0, 1.0]], dtype=torch.float64)
    R, t = look_at(eye, torch.tensor([[0.0, 1.0, 0.0]] * 2, dtype=torch.float64))
    if per_frame:
        R, t = R[:, None].expand(2, frames, 3, 3), t[:, None].expand(2, frames, 3)
    return points, R, t


@pytest.mark.parametrize("per_frame", [True, False])
def test_a_known_turn_and_translation_are_recovered_from_exact_keypoints(per_frame):
    points, R, t = _scene(per_frame=per_frame)
    truth = Placement(torch.tensor([0.2, -0.3], dtype=torch.float64),
                      torch.tensor([[0.5, -0.1, 0.8], [-0.7, 0.2, 0.3]], dtype=torch.float64))
    keypoints = project_normalized(world_to_camera(truth.apply(points), R, t))
    found = solve_placement(points, keypoints, torch.ones(points.shape[:-1], dtype=torch.float64), R, t,
                            ridge=0.0, iterations=8)
    torch.testing.assert_close(found.yaw, truth.yaw, atol=1e-6, rtol=0)
    torch.testing.assert_close(found.translation, truth.translation, atol=1e-6, rtol=0)


def test_translation_only_is_exact_in_one_solve_and_leaves_the_turn_at_zero():
    points, R, t = _scene()
    shift = torch.tensor([[0.3, 0.0, -0.6], [0.1, 0.2, 0.9]], dtype=torch.float64)
    keypoints = project_normalized(world_to_camera(points + shift[:, None, None], R, t))
    found = solve_placement(points, keypoints, torch.ones(points.shape[:-1], dtype=torch.float64), R, t,
                            solve_yaw=False, ridge=0.0)
    assert torch.equal(found.yaw, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(found.translation, shift, atol=1e-9, rtol=0)


def test_without_usable_keypoints_the_window_stays_at_its_anchor():
    points, R, t = _scene()
    keypoints = torch.full(points.shape[:-1] + (2,), float("nan"), dtype=torch.float64)
    weight = torch.zeros(points.shape[:-1], dtype=torch.float64)
    weight[1] = 1.0  # the second window is observed (its keypoints NaN: treated as missing)
    found = solve_placement(points, keypoints, weight, R, t)
    assert torch.isfinite(found.translation).all() and torch.isfinite(found.yaw).all()
    assert float(found.translation.abs().max()) == 0.0 and float(found.yaw.abs().max()) == 0.0


def test_the_turn_is_bounded():
    points, R, t = _scene()
    truth = Placement(torch.tensor([2.5, 0.0], dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
    keypoints = project_normalized(world_to_camera(truth.apply(points), R, t))
    found = solve_placement(points, keypoints, torch.ones(points.shape[:-1], dtype=torch.float64), R, t,
                            max_yaw=0.5)
    assert float(found.yaw.abs().max()) <= 0.5 + 1e-12


def test_the_2d_objective_prefers_the_ground_truth_to_the_teacher(dataset_2d):
    """On train windows, the ground truth as the model expresses it (decoded at the teacher window's anchor) scores
    below the teacher once both are placed from the keypoints; at the anchor it would not."""
    from videomdm.config import TwoDConfig
    from videomdm.data.clip import load_clip, read_dataset_index
    from videomdm.data.dataset import clip_observations
    from videomdm.camera import transform_camera
    from videomdm.losses import reprojection_loss, velocity_2d_loss
    from videomdm.representation import canonical_frames, decode, encode
    from videomdm.skeleton import get_skeleton

    skeleton, cfg, length = get_skeleton("smpl22"), TwoDConfig(), 40
    scores = {"truth_at_anchor": [], "truth_placed": [], "teacher_placed": []}
    for path in read_dataset_index(dataset_2d).clip_paths("train"):
        clip = load_clip(path)
        obs = clip_observations(clip, skeleton, path)
        gt, teacher = (torch.as_tensor(a, dtype=torch.float32) for a in (clip.gt_3d, clip.teacher_3d))
        frames = canonical_frames(teacher, skeleton)
        for start in range(0, len(teacher) - length + 1, 10):
            window = frames.window(start)
            R, t = transform_camera(torch.from_numpy(obs.R[0, start:start + length])[None],  # the clip's one view
                                    torch.from_numpy(obs.t[0, start:start + length])[None],
                                    window.rotation[None], window.translation[None])
            keypoints = torch.from_numpy(obs.keypoints[0, start:start + length])[None]
            confidence = torch.from_numpy(obs.confidence[0, start:start + length])[None]
            mask = torch.ones(1, length, dtype=torch.bool)

            def loss(joints):
                observed = (keypoints, confidence, mask, R, t)
                return float(cfg.reprojection * reprojection_loss(joints, *observed)
                             + cfg.velocity * velocity_2d_loss(joints, *observed))

            def placed(joints):
                return solve_placement(joints, keypoints, confidence, R, t).apply(joints)

            truth = decode(encode(gt[start:start + length], skeleton), 22)[None]
            scores["truth_at_anchor"].append(loss(truth))
            scores["truth_placed"].append(loss(placed(truth)))
            scores["teacher_placed"].append(loss(placed(window.apply(teacher[start:start + length])[None])))
    mean = {name: float(np.mean(values)) for name, values in scores.items()}
    assert mean["truth_placed"] < 0.9 * mean["teacher_placed"], mean
    assert mean["truth_placed"] < mean["truth_at_anchor"], mean
    assert not math.isnan(mean["truth_placed"])


def test_the_solution_minimizes_the_reprojection_loss_not_the_algebraic_residual():
    """With keypoints that the shape does not fit exactly (detector noise), the algebraic residual (P-2) places the
    window nearer the camera; the refined solution (P-3) is a stationary point of the depth-weighted reprojection
    loss (detached depth weights: what training differentiates) and lands nearer the truth in depth."""
    from videomdm.losses import reprojection_loss

    points, R, t = _scene(frames=20, per_frame=False)
    generator = torch.Generator().manual_seed(1)
    keypoints = project_normalized(world_to_camera(points, R, t))
    keypoints = keypoints + 0.01 * torch.randn(keypoints.shape, generator=generator, dtype=torch.float64)
    weight = torch.ones(points.shape[:-1], dtype=torch.float64)
    mask = torch.ones(points.shape[:2], dtype=torch.bool)
    camera_centre = -torch.einsum("bji,bj->bi", R, t)  # (B, 3)

    def depth_error(placement: Placement) -> Tensor:  # signed: negative = nearer the camera than the truth
        towards = torch.nn.functional.normalize(points.mean((1, 2)) - camera_centre, dim=-1)
        return (placement.translation * towards).sum(-1)

    algebraic = solve_placement(points, keypoints, weight, R, t, refinements=0, ridge=0.0)
    refined = solve_placement(points, keypoints, weight, R, t, refinements=5, ridge=0.0)
    assert (depth_error(algebraic) < 0).all()  # the bias of (P-2): towards the camera
    assert (depth_error(refined).abs() < depth_error(algebraic).abs()).all()
    shift = refined.translation.clone().requires_grad_()
    placed = Placement(refined.yaw, shift).apply(points)
    reprojection_loss(placed, keypoints, weight, mask, R, t).backward()
    assert float(shift.grad.abs().max()) < 1e-6
