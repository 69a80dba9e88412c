"""Pinhole cameras in pure torch: world↔camera, projection, unprojection, ray geometry, look-at, random cameras.

Conventions (``DESIGN.md``):

- **World**: right-handed, y up, metres.
- **Camera**: OpenCV, x right, y DOWN, z forward (depth). World→camera is ``X_c = R X_w + t`` (eq. 1); the camera
  centre in the world is ``C = −Rᵀ t`` (eq. 2).
- **Extrinsics** are per clip, ``R (B, 3, 3)``, ``t (B, 3)``, or per frame, ``R (B, T, 3, 3)``, ``t (B, T, 3)``.
  Points are ``(B, *S, 3)`` for a per-clip camera (any ``S``, usually ``(T, J)``) and ``(B, T, *S, 3)`` for a
  per-frame camera. Anything else (a per-clip R with a per-frame t, a different B or T) raises ``ValueError``.
- **Intrinsics** ``K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels, shape ``(3, 3)`` or ``(*P, 3, 3)`` where
  ``P`` is a prefix of the points' batch dims (usually ``(B,)``). Skew ``s`` is honoured (it is 0 for every camera
  made here).
- **Normalized image coordinates** ``(x, y) = (X_c / Z_c, Y_c / Z_c) = K⁻¹ (u, v, 1)`` (eq. 3); without skew this is
  ``((u − cx) / fx, (v − cy) / fy)``, the coordinates every 2D loss uses, so focal length and resolution never set
  a loss scale. Pixels: ``u = fx x + s y + cx``, ``v = fy y + cy`` (eq. 4).
- **Depth** is the camera-frame ``Z_c`` (distance along the optical axis), not the distance along the ray.

Points at or behind the camera (``Z_c ≤ min_depth``, default 0.1 m) are projected with the depth clamped to
``min_depth``, so values and gradients stay finite; :func:`in_front` tells which points are valid.

Every function is batched, differentiable, and works in the dtype and on the device of its inputs. This module
imports nothing from the rest of the project.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_MIN_DEPTH",
    "Cameras",
    "camera_center",
    "camera_to_world",
    "in_front",
    "intrinsics",
    "intrinsics_from_fov",
    "look_at",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "project_normalized",
    "project_to_pixels",
    "ray_nearest_point",
    "sample_cameras",
    "transform_camera",
    "unproject",
    "world_to_camera",
]

DEFAULT_MIN_DEPTH = 0.1  # metres


# --- shape checks ---------------------------------------------------------------------------------------------------


def _broadcast_extrinsics(points: Tensor, R: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Reshape a per-clip or per-frame ``R, t`` so that it broadcasts against ``points (..., 3)``.

    Returns ``R (B, 1.., 3, 3)``, ``t (B, 1.., 3)`` (per clip) or ``R (B, T, 1.., 3, 3)``, ``t (B, T, 1.., 3)``
    (per frame) with as many singleton dims as ``points`` has between the camera's batch dims and its last dim.
    """
    if points.shape[-1:] != (3,):
        raise ValueError(f"points must end in 3 coordinates, got shape {tuple(points.shape)}")
    if R.shape[-2:] != (3, 3) or t.shape[-1:] != (3,):
        raise ValueError(f"R must be (..., 3, 3) and t (..., 3), got R {tuple(R.shape)}, t {tuple(t.shape)}")
    if R.ndim == 3:
        kind, lead = "per-clip R (B, 3, 3)", 1
        if t.ndim != 2:
            raise ValueError(f"{kind} needs t (B, 3), got t {tuple(t.shape)} (per-frame t needs per-frame R)")
    elif R.ndim == 4:
        kind, lead = "per-frame R (B, T, 3, 3)", 2
        if t.ndim != 3:
            raise ValueError(f"{kind} needs t (B, T, 3), got t {tuple(t.shape)} (per-clip t needs per-clip R)")
    else:
        raise ValueError(f"R must be per clip (B, 3, 3) or per frame (B, T, 3, 3), got {tuple(R.shape)}")
    if R.shape[:lead] != t.shape[:lead]:
        raise ValueError(f"R {tuple(R.shape)} and t {tuple(t.shape)} disagree on their batch dims")
    if points.ndim < lead + 1 or points.shape[:lead] != R.shape[:lead]:
        dims = "(B, ..., 3)" if lead == 1 else "(B, T, ..., 3)"
        raise ValueError(f"{kind} of shape {tuple(R.shape)} needs points {dims} with the same leading dims, "
                         f"got points {tuple(points.shape)}")
    extra = points.ndim - 1 - lead  # dims of points between the camera's batch dims and xyz
    R_b = R.reshape(R.shape[:lead] + (1,) * extra + (3, 3))
    t_b = t.reshape(t.shape[:lead] + (1,) * extra + (3,))
    return R_b, t_b


def _broadcast_intrinsics(K: Tensor, xy: Tensor) -> Tensor:
    """Reshape ``K (*P, 3, 3)`` to ``(*P, 1.., 3, 3)`` against ``xy (*P, *S, 2)``."""
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K must be (3, 3) or (B, 3, 3), got {tuple(K.shape)}")
    if xy.shape[-1:] != (2,):
        raise ValueError(f"image coordinates must end in 2 values, got shape {tuple(xy.shape)}")
    prefix = K.shape[:-2]
    if xy.ndim - 1 < len(prefix) or xy.shape[:len(prefix)] != prefix:
        raise ValueError(f"K {tuple(K.shape)} does not match the leading dims of coordinates {tuple(xy.shape)}")
    extra = xy.ndim - 1 - len(prefix)
    return K.reshape(prefix + (1,) * extra + (3, 3))


# --- extrinsics -----------------------------------------------------------------------------------------------------


def world_to_camera(points: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """Eq. 1, ``X_c = R X_w + t``.

    Args:
        points: world points, metres: ``(B, *S, 3)`` with a per-clip camera, ``(B, T, *S, 3)`` with a per-frame one
            (typically ``(B, T, J, 3)`` for both).
        R: ``(B, 3, 3)`` per clip or ``(B, T, 3, 3)`` per frame, world→camera rotation.
        t: ``(B, 3)`` per clip or ``(B, T, 3)`` per frame, metres.

    Returns:
        Camera-frame points, same shape as ``points`` (OpenCV: x right, y down, z forward).
    """
    R_b, t_b = _broadcast_extrinsics(points, R, t)
    return (R_b @ points.unsqueeze(-1)).squeeze(-1) + t_b


def camera_to_world(points_cam: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """Inverse of eq. 1, ``X_w = Rᵀ (X_c − t)``. Shapes as :func:`world_to_camera`."""
    R_b, t_b = _broadcast_extrinsics(points_cam, R, t)
    return (R_b.transpose(-1, -2) @ (points_cam - t_b).unsqueeze(-1)).squeeze(-1)


def camera_center(R: Tensor, t: Tensor) -> Tensor:
    """Eq. 2, the camera centre in the world, ``C = −Rᵀ t``: ``R (..., 3, 3)``, ``t (..., 3)`` → ``(..., 3)`` m."""
    if R.shape[-2:] != (3, 3) or R.shape[:-2] != t.shape[:-1] or t.shape[-1:] != (3,):
        raise ValueError(f"R (..., 3, 3) and t (..., 3) must share batch dims, got {tuple(R.shape)}, {tuple(t.shape)}")
    return -(R.transpose(-1, -2) @ t.unsqueeze(-1)).squeeze(-1)


def transform_camera(R: Tensor, t: Tensor, rotation: Tensor, translation: Tensor) -> tuple[Tensor, Tensor]:
    """Carry a camera through a rigid world transform ``X' = A X + b`` applied to the 3D data.

    ``R X + t = R Aᵀ (X' − b) + t``, so the camera in the new frame is (eq. 5)::

        R' = R Aᵀ,    t' = t − R Aᵀ b,

    and projecting ``X'`` with ``(R', t')`` gives the same camera-frame points (hence pixels) as ``X`` with ``(R, t)``.

    Args:
        R, t: per-clip ``(B, 3, 3)``, ``(B, 3)`` or per-frame ``(B, T, 3, 3)``, ``(B, T, 3)`` extrinsics.
        rotation: A, ``(B, 3, 3)`` (per clip, e.g. canonicalization), or ``(B, T, 3, 3)`` with a per-frame camera.
        translation: b, ``(B, 3)`` or ``(B, T, 3)``, metres.

    Returns:
        ``(R', t')`` with the shapes of ``(R, t)``.
    """
    _broadcast_extrinsics(t.new_zeros(t.shape), R, t)  # validates R, t
    if rotation.shape[-2:] != (3, 3) or rotation.shape[:-2] != translation.shape[:-1] or translation.shape[-1] != 3:
        raise ValueError(f"rotation (..., 3, 3) and translation (..., 3) must share batch dims, "
                         f"got {tuple(rotation.shape)}, {tuple(translation.shape)}")
    if rotation.ndim == 3 and R.ndim == 4:  # per-clip transform, per-frame camera
        rotation, translation = rotation.unsqueeze(1), translation.unsqueeze(1)  # (B, 1, 3, 3), (B, 1, 3)
    if rotation.ndim != R.ndim or rotation.shape[0] != R.shape[0] or (
            R.ndim == 4 and rotation.shape[1] not in (1, R.shape[1])):
        raise ValueError(f"transform {tuple(rotation.shape)} does not match camera R {tuple(R.shape)}")
    new_R = R @ rotation.transpose(-1, -2)
    new_t = t - (new_R @ translation.unsqueeze(-1)).squeeze(-1)
    return new_R, new_t


# --- projection -----------------------------------------------------------------------------------------------------


def in_front(points_cam: Tensor, min_depth: float = DEFAULT_MIN_DEPTH) -> Tensor:
    """``(..., 3)`` camera-frame points → ``(...)`` bool, True where ``Z_c > min_depth`` (metres)."""
    return points_cam[..., 2] > min_depth


def project_normalized(points_cam: Tensor, min_depth: float = DEFAULT_MIN_DEPTH) -> Tensor:
    """Eq. 3, ``(x, y) = (X_c, Y_c) / max(Z_c, min_depth)``: ``(..., 3)`` metres → ``(..., 2)`` normalized coords.

    The depth is clamped to ``min_depth`` in the division so points near or behind the camera give finite values and
    gradients (no gradient flows into ``Z_c`` while it is clamped). Use :func:`in_front` for the valid mask.
    """
    depth = points_cam[..., 2:3].clamp_min(min_depth)  # (..., 1)
    return points_cam[..., :2] / depth


def normalized_to_pixels(xy: Tensor, K: Tensor) -> Tensor:
    """Eq. 4, ``u = fx x + s y + cx``, ``v = fy y + cy``.

    ``xy (*P, *S, 2)`` normalized coordinates, ``K (*P, 3, 3)`` (usually ``(3, 3)`` or ``(B, 3, 3)``) → pixels
    ``(*P, *S, 2)``.
    """
    K_b = _broadcast_intrinsics(K, xy)
    x, y = xy[..., 0], xy[..., 1]
    u = K_b[..., 0, 0] * x + K_b[..., 0, 1] * y + K_b[..., 0, 2]
    v = K_b[..., 1, 1] * y + K_b[..., 1, 2]
    return torch.stack([u, v], dim=-1)


def pixels_to_normalized(uv: Tensor, K: Tensor) -> Tensor:
    """Inverse of eq. 4, ``(x, y) = K⁻¹ (u, v, 1)``: pixels ``(*P, *S, 2)`` → normalized ``(*P, *S, 2)``.

    Without skew: ``((u − cx) / fx, (v − cy) / fy)``.
    """
    K_b = _broadcast_intrinsics(K, uv)
    y = (uv[..., 1] - K_b[..., 1, 2]) / K_b[..., 1, 1]
    x = (uv[..., 0] - K_b[..., 0, 2] - K_b[..., 0, 1] * y) / K_b[..., 0, 0]
    return torch.stack([x, y], dim=-1)


def project_to_pixels(points_world: Tensor, K: Tensor, R: Tensor, t: Tensor,
                      min_depth: float = DEFAULT_MIN_DEPTH) -> Tensor:
    """World points → pixels (eqs. 1, 3, 4). ``points_world (B, T, J, 3)`` (see :func:`world_to_camera` for the
    accepted shapes), ``K (3, 3)`` or ``(B, 3, 3)``, per-clip or per-frame ``R, t`` → ``(B, T, J, 2)`` pixels."""
    return normalized_to_pixels(project_normalized(world_to_camera(points_world, R, t), min_depth), K)


def unproject(uv: Tensor, depth: Tensor, K: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """Pixels and depths → world points: ``X_c = Z (x, y, 1)`` with ``(x, y) = K⁻¹ (u, v, 1)``, then inverse eq. 1.

    Args:
        uv: ``(B, T, J, 2)`` pixels (any shape accepted by :func:`world_to_camera` with 2 instead of 3 coordinates).
        depth: ``(B, T, J)`` camera-frame depth ``Z_c`` in metres (along the optical axis, not along the ray).
        K: ``(3, 3)`` or ``(B, 3, 3)``. R, t: per-clip or per-frame extrinsics.

    Returns:
        ``(B, T, J, 3)`` world points, metres; :func:`project_to_pixels` of them gives back ``uv`` when ``depth > 0``.
    """
    if depth.shape != uv.shape[:-1]:
        raise ValueError(f"depth {tuple(depth.shape)} must match the pixel grid {tuple(uv.shape[:-1])}")
    xy = pixels_to_normalized(uv, K)
    points_cam = torch.cat([xy * depth.unsqueeze(-1), depth.unsqueeze(-1)], dim=-1)  # (..., 3)
    return camera_to_world(points_cam, R, t)


def ray_nearest_point(points_world: Tensor, uv_pixels: Tensor, K: Tensor, R: Tensor, t: Tensor,
                      min_depth: float = DEFAULT_MIN_DEPTH) -> Tensor:
    """The point of the ray through each keypoint that is nearest to the corresponding 3D point (eq. 6)::

        r = Rᵀ K⁻¹ (u, v, 1) / ‖K⁻¹ (u, v, 1)‖,   C = −Rᵀ t,   λ = max(r · (X − C), min_depth),   P* = C + λ r.

    Computed in the camera frame, where ``C = 0`` and ``r · (X − C) = r_c · X_c`` (R is orthonormal), then taken
    back to the world. ``λ`` is the distance from the camera centre along the ray (metres); clamping it keeps P* in
    front of the camera for points behind it. ``(X − P*) · r = 0`` whenever the clamp is inactive.

    Args:
        points_world: ``(B, T, J, 3)`` metres.
        uv_pixels: ``(B, T, J, 2)`` keypoints, pixels.
        K, R, t: as :func:`project_to_pixels`; ``min_depth`` in metres along the ray.

    Returns:
        ``(B, T, J, 3)`` world points on the rays; they project exactly onto ``uv_pixels``.
    """
    if uv_pixels.shape[:-1] != points_world.shape[:-1]:
        raise ValueError(f"keypoints {tuple(uv_pixels.shape)} and points {tuple(points_world.shape)} must match")
    xy = pixels_to_normalized(uv_pixels, K)
    ray = F.normalize(torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1), dim=-1)  # (..., 3) unit, camera frame
    points_cam = world_to_camera(points_world, R, t)
    lam = (ray * points_cam).sum(-1, keepdim=True).clamp_min(min_depth)  # (..., 1) metres along the ray
    return camera_to_world(lam * ray, R, t)


# --- making cameras -------------------------------------------------------------------------------------------------


def look_at(eye: Tensor, target: Tensor,
            up: tuple[float, float, float] | Tensor = (0.0, 1.0, 0.0)) -> tuple[Tensor, Tensor]:
    """World→camera extrinsics of a camera at ``eye`` looking at ``target``, OpenCV convention.

    Camera axes in world coordinates (the rows of R)::

        z = normalize(target − eye)        (forward)
        x = normalize(z × up)              (right)
        y = z × x                          (down: opposite to ``up`` in the image)

    so ``target`` projects to the principal point and world up appears up in the image (v decreases with height).
    When ``z`` is parallel to ``up`` (looking straight up/down) the world axis least aligned with ``z`` replaces
    ``up``. ``t = −R eye``.

    Args:
        eye, target: ``(..., 3)`` metres (usually ``(B, 3)``).
        up: world up, ``(3,)`` or ``(..., 3)``; default +y.

    Returns:
        ``R (..., 3, 3)`` with det +1, ``t (..., 3)``.
    """
    up = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    z = F.normalize(target - eye, dim=-1)
    x = torch.cross(z, up, dim=-1)
    fallback_axis = F.one_hot(z.abs().argmin(dim=-1), 3).to(eye.dtype)  # (..., 3) world axis least aligned with z
    degenerate = x.norm(dim=-1, keepdim=True) < 1e-6
    x = F.normalize(torch.where(degenerate, torch.cross(z, fallback_axis, dim=-1), x), dim=-1)
    y = torch.cross(z, x, dim=-1)
    R = torch.stack([x, y, z], dim=-2)  # (..., 3, 3) rows = camera axes
    t = -(R @ eye.unsqueeze(-1)).squeeze(-1)
    return R, t


def intrinsics(focal_px: float | Tensor, image_size: tuple[int, int], *, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> Tensor:
    """``K = [[f, 0, w/2], [0, f, h/2], [0, 0, 1]]`` (square pixels, no skew, principal point at the image centre).

    Args:
        focal_px: focal length in pixels, a float or a tensor ``(...)``.
        image_size: ``(width, height)`` in pixels. The centre is ``(w/2, h/2)``: pixel (0, 0) covers [0, 1)².

    Returns:
        ``(3, 3)`` for a float focal, else ``(..., 3, 3)``.
    """
    if isinstance(focal_px, Tensor):
        default_dtype = focal_px.dtype if focal_px.is_floating_point() else torch.get_default_dtype()
        f = focal_px.to(dtype=dtype or default_dtype, device=device or focal_px.device)
    else:
        f = torch.tensor(float(focal_px), dtype=dtype or torch.get_default_dtype(), device=device)
    width, height = image_size
    K = torch.zeros(f.shape + (3, 3), dtype=f.dtype, device=f.device)
    K[..., 0, 0] = f
    K[..., 1, 1] = f
    K[..., 0, 2] = width / 2
    K[..., 1, 2] = height / 2
    K[..., 2, 2] = 1.0
    return K


def intrinsics_from_fov(fov_deg: float | Tensor, image_size: tuple[int, int], *, axis: str = "horizontal",
                        dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
    """:func:`intrinsics` with ``f = (size / 2) / tan(fov / 2)``; ``size`` is the width (``axis="horizontal"``) or
    the height (``axis="vertical"``) in pixels, ``fov_deg`` the full field of view in degrees."""
    if axis not in ("horizontal", "vertical"):
        raise ValueError(f"axis must be 'horizontal' or 'vertical', got {axis!r}")
    size = image_size[0] if axis == "horizontal" else image_size[1]
    if isinstance(fov_deg, Tensor):
        default_dtype = fov_deg.dtype if fov_deg.is_floating_point() else torch.get_default_dtype()
        fov = fov_deg.to(dtype=dtype or default_dtype, device=device or fov_deg.device)
    else:
        fov = torch.tensor(float(fov_deg), dtype=dtype or torch.get_default_dtype(), device=device)
    focal = (size / 2) / torch.tan(torch.deg2rad(fov) / 2)
    return intrinsics(focal, image_size)


@dataclass
class Cameras:
    """A batch of per-clip pinhole cameras. ``K (N, 3, 3)`` pixels, ``R (N, 3, 3)``, ``t (N, 3)`` metres
    (``X_c = R X_w + t``), ``image_size = (width, height)`` pixels."""

    K: Tensor
    R: Tensor
    t: Tensor
    image_size: tuple[int, int]


def _as_range(value: float | tuple[float, float], name: str) -> tuple[float, float]:
    """A ``(low, high)`` range; a single number means a fixed value."""
    if isinstance(value, (int, float)):
        return float(value), float(value)
    low, high = value
    if low > high:
        raise ValueError(f"{name}: low {low} > high {high}")
    return float(low), float(high)


def sample_cameras(
    num: int,
    target: Tensor,
    *,
    distance: float | tuple[float, float] = (3.5, 6.0),
    elevation_deg: float | tuple[float, float] = (-5.0, 25.0),
    azimuth_deg: float | tuple[float, float] = (-180.0, 180.0),
    focal_px: float | tuple[float, float] = (800.0, 1400.0),
    image_size: tuple[int, int] = (1280, 720),
    target_jitter: float = 0.1,
    generator: torch.Generator | None = None,
) -> Cameras:
    """Random virtual cameras that look at a subject (for rendering mocap into 2D training data).

    Every range is ``(low, high)``, sampled uniformly, or one number for a fixed value. For camera ``i``::

        eye = target + d (cos e sin a, sin e, cos e cos a)         (e elevation, a azimuth, d distance)
        R, t = look_at(eye, target + jitter),   jitter ~ U[−target_jitter, target_jitter]³ (m)
        K = intrinsics(f, image_size)

    Azimuth 0 puts the camera on the +z side of the target (in front of a canonical subject, which faces +z);
    positive elevation puts it above the target, looking down.

    Args:
        num: number of cameras N.
        target: ``(N, 3)`` metres, the point to look at (e.g. the clip's mean root position; note that a full
            body only fits in the image if ``focal · body height / distance`` is below the image height).
        distance: metres from ``target`` to the camera centre.
        elevation_deg, azimuth_deg: degrees.
        focal_px: pixels (fx = fy).
        image_size: ``(width, height)`` pixels.
        target_jitter: metres, per axis, of the look-at point around ``target`` (the subject is not always centred).
        generator: a CPU ``torch.Generator`` for reproducibility.

    Returns:
        :class:`Cameras` in the dtype and on the device of ``target``.
    """
    if target.shape != (num, 3):
        raise ValueError(f"target must be ({num}, 3), got {tuple(target.shape)}")
    dtype, device = target.dtype, target.device

    def uniform(value: float | tuple[float, float], name: str, shape: tuple[int, ...] = (num,)) -> Tensor:
        low, high = _as_range(value, name)
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        return (low + (high - low) * u).to(dtype=dtype, device=device)

    d = uniform(distance, "distance")
    e = torch.deg2rad(uniform(elevation_deg, "elevation_deg"))
    a = torch.deg2rad(uniform(azimuth_deg, "azimuth_deg"))
    f = uniform(focal_px, "focal_px")
    jitter = uniform((-target_jitter, target_jitter), "target_jitter", (num, 3))
    direction = torch.stack([torch.cos(e) * torch.sin(a), torch.sin(e), torch.cos(e) * torch.cos(a)], dim=-1)
    eye = target + d.unsqueeze(-1) * direction  # (N, 3)
    R, t = look_at(eye, target + jitter)
    return Cameras(K=intrinsics(f, image_size), R=R, t=t, image_size=(int(image_size[0]), int(image_size[1])))
