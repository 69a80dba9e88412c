"""Tests of the 2D losses in ``videomdm.losses``: the depth-weighting equivalence (module docstring, eq. 2D-3),
masking, confidence, points behind the camera, and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from videomdm.camera import look_at, project_normalized, sample_cameras, world_to_camera
from videomdm.losses import (
    depth_weights,
    joint_position_loss,
    reprojection_diagnostics,
    reprojection_loss,
    velocity_2d_loss,
)

DT = torch.float64


def human_cloud(*shape: int, generator: torch.Generator) -> torch.Tensor:
    """Random joints of human size (1.7 m tall, 0.5 m wide) centred on the origin: ``(*shape, 3)`` metres."""
    u = torch.rand(*shape, 3, generator=generator, dtype=DT) * 2 - 1
    return u * torch.tensor([0.25, 0.85, 0.25], dtype=DT)


def sphere_directions(n: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, 3)`` unit vectors uniform on the sphere."""
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=DT), dim=-1)


def views(directions: torch.Tensor, distance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras at ``distance · direction`` looking at the origin (the subject centred in the view)."""
    eye = distance[:, None] * directions
    return look_at(eye, torch.zeros_like(eye))


def loss_over_views(motion, delta, R, t, weighting):
    """The 2D loss of ``motion + delta`` against the exact keypoints of ``motion``, one clip per view:
    ``motion, delta (T, J, 3)``, ``R (N, 3, 3)``, ``t (N, 3)`` → scalar (the mean over views, frames, joints)."""
    N = R.shape[0]
    T, J, _ = motion.shape
    gt = motion.expand(N, T, J, 3)
    keypoints = project_normalized(world_to_camera(gt, R, t))  # (N, T, J, 2)
    confidence = torch.ones(N, T, J, dtype=DT)
    mask = torch.ones(N, T, dtype=torch.bool)
    return reprojection_loss(gt + delta, keypoints, confidence, mask, R, t, weighting=weighting)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# --- the equivalence claim (eq. 2D-3) --------------------------------------------------------------------------------


def test_depth_squared_weighting_equals_3d_error_over_uniform_viewpoints(gen):
    """(3/2) E_views[Z² ‖Δ‖²] = ‖δ‖², per motion.

    Tolerance 2 %. Expected deviations: Monte Carlo (per view the relative std of Σ_j ‖δ_⊥,j‖² over 88 independent
    errors is ≈ 0.45 / √88 ≈ 5 %; over N = 4000 views ≈ 0.08 %); first order off-axis error ≈ +E[(x² + y²)] / 2 ≈
    +0.2–0.4 % (joints up to 0.85 m from the optical axis at 4–6 m, eq. 2D-1 is oblique to the ray); second order in
    δ / Z (1 cm / 5 m) ≈ 0.2 %, zero mean. Measured: 1.002–1.005.
    """
    N, T, J = 4000, 4, 22
    for _ in range(4):
        motion = human_cloud(T, J, generator=gen)
        delta = 0.01 * torch.randn(T, J, 3, generator=gen, dtype=DT)  # 1 cm std per axis
        distance = 4.0 + 2.0 * torch.rand(N, generator=gen, dtype=DT)
        R, t = views(sphere_directions(N, gen), distance)
        error_3d = joint_position_loss((motion + delta)[None], motion[None], torch.ones(1, T, dtype=torch.bool))
        ratios = {w: (1.5 * loss_over_views(motion, delta, R, t, w) / error_3d).item()
                  for w in ("depth_squared", "mean_depth", "none")}
        assert ratios["depth_squared"] == pytest.approx(1.0, abs=0.02), ratios
        # The other weightings are off by ~Z (≈ 5 m → ratio ≈ 1/5) and ~Z² (≈ 1/25).
        assert ratios["mean_depth"] == pytest.approx(1 / 5, rel=0.1), ratios
        assert ratios["none"] == pytest.approx(1 / 25, rel=0.1), ratios


def test_depth_squared_weights_near_and_far_subjects_equally(gen):
    """The same 3D error seen from 3 m and from 9 m (same viewing directions): ``depth_squared`` gives the same loss
    (tolerance 3 %: the off-axis term is ≈ 1 % at 3 m), ``mean_depth`` 3× and ``none`` 9× more at 3 m (10 %: the
    joints' depths spread ±0.85 m around the subject's)."""
    N, T, J = 4000, 4, 22
    motion = human_cloud(T, J, generator=gen)
    delta = 0.01 * torch.randn(T, J, 3, generator=gen, dtype=DT)
    directions = sphere_directions(N, gen)
    near = views(directions, torch.full((N,), 3.0, dtype=DT))
    far = views(directions, torch.full((N,), 9.0, dtype=DT))
    error_3d = delta.square().sum(-1).mean()
    ratio = {}
    for w in ("depth_squared", "mean_depth", "none"):
        loss_near = loss_over_views(motion, delta, *near, w)
        loss_far = loss_over_views(motion, delta, *far, w)
        ratio[w] = (loss_near / loss_far).item()
        if w == "depth_squared":  # both distances satisfy eq. 2D-3
            assert (1.5 * loss_near / error_3d).item() == pytest.approx(1.0, abs=0.03)
            assert (1.5 * loss_far / error_3d).item() == pytest.approx(1.0, abs=0.02)
        else:  # neither distance does
            assert abs((1.5 * loss_near / error_3d).item() - 1.0) > 0.5
            assert abs((1.5 * loss_far / error_3d).item() - 1.0) > 0.5
    assert ratio["depth_squared"] == pytest.approx(1.0, abs=0.03), ratio
    assert ratio["mean_depth"] == pytest.approx(3.0, rel=0.1), ratio
    assert ratio["none"] == pytest.approx(9.0, rel=0.1), ratio


def test_fixed_elevation_sees_a_direction_dependent_quadratic_form(gen):
    """Azimuth uniform at elevation e (docstring, non-uniform viewpoints): E[Z² ‖Δ‖²] = cos² e ‖δ‖² for a vertical
    error and (1 + sin² e) / 2 ‖δ‖² for a horizontal one. A compact subject (±10 cm) keeps the off-axis term small;
    tolerance 3 %."""
    N, T, J = 4000, 2, 22
    motion = 0.1 * (torch.rand(T, J, 3, generator=gen, dtype=DT) * 2 - 1)
    e = math.radians(20.0)
    cams = sample_cameras(N, torch.zeros(N, 3, dtype=DT), distance=5.0, elevation_deg=20.0, target_jitter=0.0,
                          generator=gen)
    size = 0.01
    vertical = torch.zeros(T, J, 3, dtype=DT)
    vertical[..., 1] = size
    horizontal = torch.zeros(T, J, 3, dtype=DT)
    horizontal[..., 0] = size
    seen_vertical = (loss_over_views(motion, vertical, cams.R, cams.t, "depth_squared") / size**2).item()
    seen_horizontal = (loss_over_views(motion, horizontal, cams.R, cams.t, "depth_squared") / size**2).item()
    assert seen_vertical == pytest.approx(math.cos(e) ** 2, rel=0.03)
    assert seen_horizontal == pytest.approx((1 + math.sin(e) ** 2) / 2, rel=0.03)


# --- the loss units --------------------------------------------------------------------------------------------------


def clip_batch(gen: torch.Generator, B: int = 2, T: int = 6, J: int = 5, per_frame: bool = False):
    """Motions in front of per-clip (or per-frame) cameras, their exact keypoints, confidence, mask."""
    motion = human_cloud(B, T, J, generator=gen)
    shape = (B, T) if per_frame else (B,)
    directions = sphere_directions(math.prod(shape), gen)
    R, t = views(directions, 4.0 + 2.0 * torch.rand(math.prod(shape), generator=gen, dtype=DT))
    R, t = R.reshape(*shape, 3, 3), t.reshape(*shape, 3)
    keypoints = project_normalized(world_to_camera(motion, R, t))  # (B, T, J, 2)
    confidence = 0.2 + 0.8 * torch.rand(B, T, J, generator=gen, dtype=DT)
    mask = torch.ones(B, T, dtype=torch.bool)
    return motion, keypoints, confidence, mask, R, t


@pytest.mark.parametrize("per_frame", [False, True])
@pytest.mark.parametrize("weighting", ["none", "mean_depth", "depth_squared"])
def test_exact_projection_has_zero_loss(gen, per_frame, weighting):
    motion, keypoints, confidence, mask, R, t = clip_batch(gen, per_frame=per_frame)
    for loss_fn in (reprojection_loss, velocity_2d_loss):
        loss = loss_fn(motion, keypoints, confidence, mask, R, t, weighting=weighting)
        assert loss.item() == pytest.approx(0.0, abs=1e-20)
        noisy = loss_fn(motion + 0.05, keypoints, confidence, mask, R, t, weighting=weighting)
        assert noisy.item() > 0


def test_reprojection_loss_matches_a_direct_computation(gen):
    motion, keypoints, confidence, mask, R, t = clip_batch(gen)
    pred = motion + 0.03 * torch.randn(motion.shape, generator=gen, dtype=DT)
    cam = world_to_camera(pred, R, t)
    error = (cam[..., :2] / cam[..., 2:] - keypoints).square().sum(-1)  # (B, T, J)
    expected = (confidence * cam[..., 2].square() * error).sum() / confidence.sum()
    torch.testing.assert_close(reprojection_loss(pred, keypoints, confidence, mask, R, t), expected)
    # Velocity: min of the two confidences, depth of the later frame.
    vel_error = ((cam[:, 1:, :, :2] / cam[:, 1:, :, 2:] - cam[:, :-1, :, :2] / cam[:, :-1, :, 2:])
                 - (keypoints[:, 1:] - keypoints[:, :-1])).square().sum(-1)  # (B, T-1, J)
    pair = torch.minimum(confidence[:, 1:], confidence[:, :-1])
    expected_vel = (pair * cam[:, 1:, :, 2].square() * vel_error).sum() / pair.sum()
    torch.testing.assert_close(velocity_2d_loss(pred, keypoints, confidence, mask, R, t), expected_vel)


@pytest.mark.parametrize("loss_fn", [reprojection_loss, velocity_2d_loss])
@pytest.mark.parametrize("weighting", ["none", "mean_depth", "depth_squared"])
def test_masked_frames_and_missing_joints_are_ignored(gen, loss_fn, weighting):
    motion, keypoints, confidence, mask, R, t = clip_batch(gen, T=8)
    pred = (motion + 0.03 * torch.randn(motion.shape, generator=gen, dtype=DT)).requires_grad_(True)
    mask[0, 5:] = False  # padding at the end of clip 0
    mask[1, 0] = False  # and a dropped first frame in clip 1
    confidence[0, 2, 3] = 0.0  # missing joints
    confidence[1, 4, :2] = 0.0
    # The reference: the same loss with the ignored entries removed by hand, i.e. holding finite arbitrary values.
    reference = loss_fn(pred, keypoints, confidence, mask, R, t, weighting=weighting)
    poisoned_kp = keypoints.clone()
    poisoned_kp[0, 5:] = 1e30
    poisoned_kp[1, 0] = float("nan")
    poisoned_kp[0, 2, 3] = float("inf")
    poisoned_kp[1, 4, :2] = -1e30
    poisoned_conf = confidence.clone()
    poisoned_conf[0, 5:] = 1e6  # confidence of padded frames is ignored too
    loss = loss_fn(pred, poisoned_kp, poisoned_conf, mask, R, t, weighting=weighting)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, reference)
    (grad,) = torch.autograd.grad(loss, pred)
    assert torch.isfinite(grad).all()
    # No gradient reaches masked frames or missing joints (every depth weight is detached).
    assert grad[0, 5:].abs().max() == 0 and grad[1, 0].abs().max() == 0 and grad[0, 2, 3].abs().max() == 0
    # Changing the prediction in masked frames changes nothing (mean_depth averages real frames only).
    moved = pred.detach().clone()
    moved[0, 5:] += 100.0
    torch.testing.assert_close(loss_fn(moved, poisoned_kp, poisoned_conf, mask, R, t, weighting=weighting),
                               reference.detach())


def test_point_behind_the_camera_is_finite_and_counted(gen):
    motion, keypoints, confidence, mask, R, t = clip_batch(gen)
    # Put joint 0 of clip 0, frame 1, 1 m behind the camera.
    cam = world_to_camera(motion, R, t)
    cam[0, 1, 0] = torch.tensor([0.2, -0.1, -1.0], dtype=DT)
    pred = (R.transpose(-1, -2)[:, None, None] @ (cam - t[:, None, None]).unsqueeze(-1)).squeeze(-1)
    pred.requires_grad_(True)
    for weighting in ("none", "mean_depth", "depth_squared"):
        for loss_fn in (reprojection_loss, velocity_2d_loss):
            loss = loss_fn(pred, keypoints, confidence, mask, R, t, weighting=weighting)
            (grad,) = torch.autograd.grad(loss, pred)
            assert torch.isfinite(loss) and loss > 0 and torch.isfinite(grad).all()
    diagnostics = reprojection_diagnostics(pred, mask, R, t)
    assert diagnostics["behind_camera"].item() == 1
    assert diagnostics["behind_camera_fraction"].item() == pytest.approx(1 / mask.sum().item() / 5)


@pytest.mark.parametrize("per_frame", [False, True])
def test_gradients_flow_to_the_prediction(gen, per_frame):
    motion, keypoints, confidence, mask, R, t = clip_batch(gen, per_frame=per_frame)
    pred = (motion + 0.05 * torch.randn(motion.shape, generator=gen, dtype=DT)).requires_grad_(True)
    loss = reprojection_loss(pred, keypoints, confidence, mask, R, t) + velocity_2d_loss(
        pred, keypoints, confidence, mask, R, t)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad.abs().sum((-1)) > 0).all()
    # A gradient step reduces the loss.
    with torch.no_grad():
        stepped = pred - 1e-2 * pred.grad / pred.grad.norm()
    assert reprojection_loss(stepped, keypoints, confidence, mask, R, t) < reprojection_loss(
        pred.detach(), keypoints, confidence, mask, R, t)


def test_depth_weights():
    depth = torch.tensor([[[2.0, 4.0], [6.0, 8.0]], [[1.0, 1.0], [-3.0, 0.05]]], requires_grad=True)  # (2, 2, 2)
    mask = torch.tensor([[True, False], [True, True]])
    torch.testing.assert_close(depth_weights(depth, "none"), torch.ones(2, 2, 2))
    squared = depth_weights(depth, "depth_squared", min_depth=0.1)
    torch.testing.assert_close(squared, torch.tensor([[[4.0, 16.0], [36.0, 64.0]], [[1.0, 1.0], [0.01, 0.01]]]))
    mean = depth_weights(depth, "mean_depth", mask, min_depth=0.1)
    torch.testing.assert_close(mean[0], torch.full((2, 2), 3.0))  # real frames only: (2 + 4) / 2
    torch.testing.assert_close(mean[1], torch.full((2, 2), (1 + 1 + 0.1 + 0.1) / 4))  # depths clamped
    assert not squared.requires_grad and not mean.requires_grad
    with pytest.raises(ValueError, match="depth weighting"):
        depth_weights(depth, "depth")


def test_shape_errors(gen):
    motion, keypoints, confidence, mask, R, t = clip_batch(gen)
    with pytest.raises(ValueError):
        reprojection_loss(motion, keypoints[..., :1, :], confidence, mask, R, t)
    with pytest.raises(ValueError):
        reprojection_loss(motion, keypoints, confidence, mask[:, :-1], R, t)
    with pytest.raises(ValueError):
        velocity_2d_loss(motion, keypoints, confidence, mask, R, t[:, None].expand(-1, motion.shape[1], -1))
