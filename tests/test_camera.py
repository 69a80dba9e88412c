"""Tests of ``videomdm.camera``: conventions, round trips, gradients, ray geometry, look-at, carrying cameras through
rigid transforms, random cameras, and shape errors."""

from __future__ import annotations

import math

import pytest
import roma
import torch

from videomdm.camera import (
    camera_center,
    camera_to_world,
    in_front,
    intrinsics,
    intrinsics_from_fov,
    look_at,
    normalized_to_pixels,
    pixels_to_normalized,
    project_normalized,
    project_to_pixels,
    ray_nearest_point,
    sample_cameras,
    transform_camera,
    unproject,
    world_to_camera,
)

IMAGE = (1280, 720)


def human_cloud(*shape: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """Random joints of human size (1.7 m tall, 0.5 m wide) centred on the origin: ``(*shape, 3)`` metres."""
    u = torch.rand(*shape, 3, generator=generator, dtype=dtype) * 2 - 1
    return u * torch.tensor([0.25, 0.85, 0.25], dtype=dtype)


def cameras_around(eye_shape: tuple[int, ...], generator: torch.Generator, distance=(4.0, 6.0), dtype=torch.float64):
    """Cameras at random directions on the sphere, ``distance`` metres from the origin, looking at it."""
    direction = torch.nn.functional.normalize(torch.randn(*eye_shape, 3, generator=generator, dtype=dtype), dim=-1)
    d = distance[0] + (distance[1] - distance[0]) * torch.rand(*eye_shape, 1, generator=generator, dtype=dtype)
    eye = d * direction
    return look_at(eye, torch.zeros_like(eye))


def random_K(batch: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    return intrinsics(800 + 600 * torch.rand(batch, generator=generator, dtype=dtype), IMAGE)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# --- extrinsics and projection --------------------------------------------------------------------------------------


def test_world_camera_round_trip_and_center(gen):
    B, T, J = 3, 5, 7
    points = human_cloud(B, T, J, generator=gen)
    R, t = cameras_around((B,), gen)
    cam = world_to_camera(points, R, t)
    torch.testing.assert_close(camera_to_world(cam, R, t), points)
    # The camera centre maps to the camera-frame origin.
    torch.testing.assert_close(world_to_camera(camera_center(R, t), R, t), torch.zeros(B, 3, dtype=torch.float64))
    # Per-frame cameras equal to the per-clip one give the same result.
    R_f, t_f = R[:, None].expand(B, T, 3, 3), t[:, None].expand(B, T, 3)
    torch.testing.assert_close(world_to_camera(points, R_f, t_f), cam)


@pytest.mark.parametrize("per_frame", [False, True])
def test_project_unproject_round_trip(gen, per_frame):
    B, T, J = 2, 4, 6
    points = human_cloud(B, T, J, generator=gen)
    R, t = cameras_around((B, T) if per_frame else (B,), gen)
    K = random_K(B, gen)
    uv = project_to_pixels(points, K, R, t)
    depth = world_to_camera(points, R, t)[..., 2]
    assert uv.shape == (B, T, J, 2) and bool((depth > 3).all())
    torch.testing.assert_close(unproject(uv, depth, K, R, t), points)
    # Pixels ↔ normalized coordinates, with a single (3, 3) K as well.
    xy = pixels_to_normalized(uv, K)
    torch.testing.assert_close(normalized_to_pixels(xy, K), uv)
    torch.testing.assert_close(pixels_to_normalized(uv[0], K[0]), xy[0])
    torch.testing.assert_close(xy, project_normalized(world_to_camera(points, R, t)))


def test_pixels_follow_opencv_and_design_formula():
    K = torch.tensor([[1000.0, 0.0, 640.0], [0.0, 900.0, 360.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    uv = torch.tensor([[700.0, 100.0], [640.0, 360.0]], dtype=torch.float64)
    expected = torch.stack([(uv[:, 0] - 640) / 1000, (uv[:, 1] - 360) / 900], -1)
    torch.testing.assert_close(pixels_to_normalized(uv, K), expected)
    # Skew is honoured: K⁻¹ (u, v, 1).
    K[0, 1] = 3.0
    homog = torch.cat([uv, torch.ones(2, 1, dtype=torch.float64)], -1)
    torch.testing.assert_close(pixels_to_normalized(uv, K), (torch.linalg.inv(K) @ homog.T).T[:, :2])
    torch.testing.assert_close(normalized_to_pixels(pixels_to_normalized(uv, K), K), uv)


def test_project_to_pixels_gradcheck(gen):
    B, T, J = 1, 2, 3
    points = human_cloud(B, T, J, generator=gen) + torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64)
    K = random_K(B, gen)
    R = roma.rotvec_to_rotmat(0.1 * torch.randn(B, 3, generator=gen, dtype=torch.float64))  # points stay in front
    t = 0.1 * torch.randn(B, 3, generator=gen, dtype=torch.float64)
    inputs = tuple(x.clone().requires_grad_(True) for x in (points, K, R, t))
    assert torch.autograd.gradcheck(project_to_pixels, inputs)


def test_points_behind_camera_are_finite():
    cam = torch.tensor([[0.3, -0.2, 2.0], [0.3, -0.2, 0.05], [0.3, -0.2, -1.0], [0.0, 0.0, 0.0]],
                       dtype=torch.float64, requires_grad=True)
    xy = project_normalized(cam, min_depth=0.1)
    assert torch.isfinite(xy).all()
    torch.testing.assert_close(xy[1:3], torch.tensor([[3.0, -2.0], [3.0, -2.0]], dtype=torch.float64))
    xy.sum().backward()
    assert torch.isfinite(cam.grad).all()
    assert in_front(cam.detach(), 0.1).tolist() == [True, False, False, False]


# --- rays ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_frame", [False, True])
def test_ray_nearest_point(gen, per_frame):
    B, T, J = 2, 3, 5
    points = human_cloud(B, T, J, generator=gen)
    R, t = cameras_around((B, T) if per_frame else (B,), gen)
    K = random_K(B, gen)
    # Keypoints: the projections of perturbed points (20 cm), so the rays miss the points.
    uv = project_to_pixels(points + 0.2 * torch.randn(points.shape, generator=gen, dtype=torch.float64), K, R, t)
    nearest = ray_nearest_point(points, uv, K, R, t)
    # On the ray: projects onto the keypoint.
    torch.testing.assert_close(project_to_pixels(nearest, K, R, t), uv)
    # Nearest: (X − P*) · r = 0 with r the ray direction from the camera centre C.
    center = camera_center(R, t)
    center = center[:, None, None] if not per_frame else center[:, :, None]  # (B, 1|T, 1, 3)
    ray = torch.nn.functional.normalize(nearest - center, dim=-1)
    torch.testing.assert_close(((points - nearest) * ray).sum(-1), torch.zeros(B, T, J, dtype=torch.float64),
                               atol=1e-9, rtol=0)
    # Brute force: no point of the ray on a 1 mm grid is nearer.
    lam = torch.linspace(0.1, 10.0, 9901, dtype=torch.float64)  # (L,)
    samples = center[..., None, :] + lam[:, None] * ray[..., None, :]  # (B, T, J, L, 3)
    brute = (samples - points[..., None, :]).norm(dim=-1).min(-1).values
    best = (nearest - points).norm(dim=-1)
    assert bool((best <= brute + 1e-12).all())
    # ... and the grid's best point is within half a step (0.5 mm) of P* along the ray.
    lam_star = (nearest - center).norm(dim=-1)
    lam_grid = lam[(samples - points[..., None, :]).norm(dim=-1).argmin(-1)]
    assert bool(((lam_grid - lam_star).abs() <= 0.5e-3 + 1e-9).all())


def test_ray_nearest_point_behind_camera_is_clamped():
    R, t = torch.eye(3)[None], torch.zeros(1, 3)
    K = intrinsics(1000.0, IMAGE)[None]
    points = torch.tensor([[[[0.0, 0.0, -2.0]]]])  # (1, 1, 1, 3) behind the camera
    uv = torch.tensor([[[[640.0, 360.0]]]])  # the optical axis
    nearest = ray_nearest_point(points, uv, K, R, t, min_depth=0.1)
    torch.testing.assert_close(nearest, torch.tensor([[[[0.0, 0.0, 0.1]]]]))


# --- look-at ---------------------------------------------------------------------------------------------------------


def test_look_at(gen):
    B = 64
    target = torch.randn(B, 3, generator=gen, dtype=torch.float64)
    eye = target + 5 * torch.nn.functional.normalize(torch.randn(B, 3, generator=gen, dtype=torch.float64), dim=-1)
    R, t = look_at(eye, target)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(B, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(B, dtype=torch.float64))
    torch.testing.assert_close(camera_center(R, t), eye)
    K = intrinsics(1000.0, IMAGE, dtype=torch.float64)
    uv_target = project_to_pixels(target[:, None], K, R, t)  # (B, 1, 2)
    torch.testing.assert_close(uv_target[:, 0], torch.tensor([640.0, 360.0], dtype=torch.float64).expand(B, 2))
    # World up is up in the image: a point above the target has a smaller v (and the same u when the camera's
    # x axis is horizontal, which look_at guarantees).
    above = target + torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64)
    uv_above = project_to_pixels(above[:, None], K, R, t)[:, 0]
    looking_vertically = torch.nn.functional.normalize(target - eye, dim=-1)[:, 1].abs() > 0.999
    assert bool((uv_above[~looking_vertically, 1] < 360.0).all())
    torch.testing.assert_close(R[:, 0, 1], torch.zeros(B, dtype=torch.float64), atol=1e-12, rtol=0)  # x horizontal


def test_look_at_straight_down_and_front_view():
    eye = torch.tensor([[0.0, 5.0, 0.0], [0.0, 1.0, 4.0]])
    target = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    R, t = look_at(eye, target)
    assert torch.isfinite(R).all()
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2))
    torch.testing.assert_close(R[0, 2], torch.tensor([0.0, -1.0, 0.0]))
    # A camera in front of a subject that faces +z looks along −z; world +x is on its right, world up is image up.
    torch.testing.assert_close(R[1], torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]))


# --- rigid transforms ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_frame_camera, per_frame_transform", [(False, False), (True, False), (True, True)])
def test_transform_camera_keeps_pixels(gen, per_frame_camera, per_frame_transform):
    B, T, J = 3, 4, 5
    points = human_cloud(B, T, J, generator=gen)
    R, t = cameras_around((B, T) if per_frame_camera else (B,), gen)
    K = random_K(B, gen)
    shape = (B, T) if per_frame_transform else (B,)
    A = roma.random_rotmat(shape, dtype=torch.float64)
    b = torch.randn(*shape, 3, generator=gen, dtype=torch.float64)
    A_b = A[:, None, None] if not per_frame_transform else A[:, :, None]  # broadcast over (T, J) or J
    b_b = b[:, None, None] if not per_frame_transform else b[:, :, None]
    moved = (A_b @ points.unsqueeze(-1)).squeeze(-1) + b_b  # X' = A X + b
    R2, t2 = transform_camera(R, t, A, b)
    assert R2.shape == R.shape and t2.shape == t.shape
    torch.testing.assert_close(project_to_pixels(moved, K, R2, t2), project_to_pixels(points, K, R, t))
    torch.testing.assert_close(world_to_camera(moved, R2, t2), world_to_camera(points, R, t))


# --- intrinsics and random cameras -----------------------------------------------------------------------------------


def test_intrinsics():
    K = intrinsics(1000.0, (1280, 720))
    torch.testing.assert_close(K, torch.tensor([[1000.0, 0, 640], [0, 1000.0, 360], [0, 0, 1]]))
    assert intrinsics(torch.tensor([800.0, 900.0]), (640, 480)).shape == (2, 3, 3)
    torch.testing.assert_close(intrinsics_from_fov(90.0, (1280, 720))[0, 0], torch.tensor(640.0))
    torch.testing.assert_close(intrinsics_from_fov(90.0, (1280, 720), axis="vertical")[0, 0], torch.tensor(360.0))


def test_sample_cameras_ranges_and_visibility():
    N = 2000
    g = torch.Generator().manual_seed(1)
    target = torch.randn(N, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.0, 2.0],
                                                                                dtype=torch.float64)
    target[:, 1] = 0.9  # mid-body height
    cams = sample_cameras(N, target, generator=g, focal_px=(500.0, 700.0), azimuth_deg=(30.0, 60.0))
    assert cams.K.shape == (N, 3, 3) and cams.R.shape == (N, 3, 3) and cams.t.shape == (N, 3)
    assert cams.image_size == (1280, 720) and cams.K.dtype == torch.float64
    offset = camera_center(cams.R, cams.t) - target  # (N, 3)
    distance = offset.norm(dim=-1)
    elevation = torch.rad2deg(torch.asin(offset[:, 1] / distance))
    azimuth = torch.rad2deg(torch.atan2(offset[:, 0], offset[:, 2]))
    eps = 1e-9
    assert distance.min() >= 3.5 - eps and distance.max() <= 6.0 + eps
    assert elevation.min() >= -5 - eps and elevation.max() <= 25 + eps
    assert azimuth.min() >= 30 - eps and azimuth.max() <= 60 + eps
    f = cams.K[:, 0, 0]
    assert f.min() >= 500 and f.max() <= 700 and bool((cams.K[:, 1, 1] == f).all())
    torch.testing.assert_close(cams.K[:, :2, 2], torch.tensor([640.0, 360.0], dtype=torch.float64).expand(N, 2))
    # Ranges are used, not just respected.
    assert distance.max() - distance.min() > 2.0 and elevation.max() - elevation.min() > 25
    torch.testing.assert_close(torch.linalg.det(cams.R), torch.ones(N, dtype=torch.float64))
    # A standing subject (1.7 m, feet on the floor, centred on the target) is in front and inside the image.
    body = human_cloud(N, 1, 22, generator=g) + target[:, None, None]  # (N, 1, J, 3)
    cam = world_to_camera(body, cams.R, cams.t)
    assert bool(in_front(cam, 1.0).all())
    uv = project_to_pixels(body, cams.K, cams.R, cams.t)
    assert bool((uv[..., 0] > 0).all() and (uv[..., 0] < 1280).all())
    assert bool((uv[..., 1] > 0).all() and (uv[..., 1] < 720).all())


def test_sample_cameras_defaults_reproducible_and_target_near_centre():
    N = 500
    target = torch.zeros(N, 3)
    target[:, 1] = 1.0
    a = sample_cameras(N, target, generator=torch.Generator().manual_seed(3))
    b = sample_cameras(N, target, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.R, b.R)
    torch.testing.assert_close(a.K, b.K)
    uv = project_to_pixels(target[:, None], a.K, a.R, a.t)[:, 0]  # (N, 2)
    # The look-at point is jittered by at most 0.1 m per axis: the target stays within f · 0.1·√3 / (d − 0.1·√3) px.
    bound = a.K[:, 0, 0] * 0.1 * math.sqrt(3) / (3.5 - 0.1 * math.sqrt(3))
    assert bool(((uv - torch.tensor([640.0, 360.0])).norm(dim=-1) <= bound + 1e-3).all())
    fixed = sample_cameras(N, target, distance=5.0, elevation_deg=10.0, target_jitter=0.0)
    torch.testing.assert_close((camera_center(fixed.R, fixed.t) - target).norm(dim=-1), torch.full((N,), 5.0))


# --- shape errors ----------------------------------------------------------------------------------------------------


def test_mixed_up_shapes_raise():
    B, T, J = 2, 4, 3
    points = torch.zeros(B, T, J, 3)
    R_clip, t_clip = torch.eye(3).expand(B, 3, 3), torch.zeros(B, 3)
    R_frame, t_frame = torch.eye(3).expand(B, T, 3, 3), torch.zeros(B, T, 3)
    with pytest.raises(ValueError, match="per-clip R"):
        world_to_camera(points, R_clip, t_frame)
    with pytest.raises(ValueError, match="per-frame R"):
        world_to_camera(points, R_frame, t_clip)
    with pytest.raises(ValueError, match="leading dims"):
        world_to_camera(torch.zeros(B, T + 1, J, 3), R_frame, t_frame)  # wrong T
    with pytest.raises(ValueError, match="leading dims"):
        world_to_camera(torch.zeros(B + 1, T, J, 3), R_clip, t_clip)  # wrong B
    with pytest.raises(ValueError, match="batch dims"):
        world_to_camera(points, R_frame, torch.zeros(B, T + 1, 3))
    with pytest.raises(ValueError):
        world_to_camera(points, torch.eye(3), torch.zeros(3))  # unbatched camera
    with pytest.raises(ValueError):
        project_to_pixels(points, torch.eye(3).expand(B + 1, 3, 3), R_clip, t_clip)  # K batch mismatch
    with pytest.raises(ValueError):
        unproject(torch.zeros(B, T, J, 2), torch.ones(B, T, J + 1), torch.eye(3), R_clip, t_clip)
    with pytest.raises(ValueError):
        transform_camera(R_clip, t_clip, torch.eye(3).expand(B, T, 3, 3), torch.zeros(B, T, 3))
    with pytest.raises(ValueError):
        transform_camera(R_clip, t_frame, torch.eye(3).expand(B, 3, 3), torch.zeros(B, 3))
