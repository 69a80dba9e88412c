"""Animations of 3D joint sequences: stick figures over a floor with their root trajectories and foot-contact marks,
one motion or several in a grid, with captions and a fixed camera (GIF or MP4).

Input joints are world coordinates in metres, y up (DESIGN.md conventions). Frames are drawn with matplotlib's
Agg backend (no screen needed) and written with imageio.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .checkpoint import atomic_path
from .data.mocap import check_joints
from .skeleton import Skeleton

__all__ = ["render_motion", "render_motions", "render_overlay", "render_views_overlay", "foot_contacts", "RenderError"]


class RenderError(ValueError):
    """Inputs that cannot be rendered together (captions, keypoints or frames that do not match the motions) or an
    output path that cannot be written. Bad joints raise :class:`videomdm.data.errors.DataError`
    (:func:`videomdm.data.mocap.check_joints`)."""


def foot_contacts(joints: np.ndarray, skeleton: Skeleton, fps: float) -> np.ndarray:
    """(T, 4) bool foot contacts (left ankle, left toe, right ankle, right toe: ``skeleton.feet_left`` then
    ``feet_right``) exactly as the representation's ``foot_contacts`` slice defines them, with its threshold
    (0.002 m² per frame at 20 fps) scaled to ``fps`` so that it stays a speed threshold."""
    import torch

    from .representation import FeatureLayout, encode

    if len(joints) < 2:
        return np.zeros((len(joints), 4), dtype=bool)
    threshold = 0.002 * (20.0 / fps) ** 2
    features = encode(torch.as_tensor(joints, dtype=torch.float64), skeleton, contact_threshold=threshold)
    return features[:, FeatureLayout(skeleton.num_joints).foot_contacts].numpy() > 0.5


def _scene_extent(plots: Sequence[np.ndarray]) -> tuple[list[np.ndarray], float, float]:
    """The 3D views' common scale for motions in plot axes ``[(T_i, J, 3)]`` (x, z, y: matplotlib's z axis up): each
    view's centre ``(3,)`` (middle of its motion's bounding box), the half-width of every view's floor (metres, at
    least 1.2) and its height (at least 2 m)."""
    centers = [(p.min(axis=(0, 1)) + p.max(axis=(0, 1))) / 2 for p in plots]
    radius = max(max(float((p.max(axis=(0, 1)) - p.min(axis=(0, 1)))[:2].max()) / 2 for p in plots), 1.0) + 0.2
    height = max(max(float(p[..., 2].max()) for p in plots), 2.0)
    return centers, radius, height


def _set_up_scene(ax, center: np.ndarray, radius: float, height: float, *, elevation: float, azimuth: float,
                  grid_lines: int) -> None:
    """Clear a 3D axes and draw the fixed scene of :func:`_scene_extent`: limits, equal aspect, camera (``elevation``,
    ``azimuth`` in degrees, matplotlib's convention), no axes, the floor y = 0 as a grid of ``grid_lines`` lines each
    way."""
    ax.cla()
    ax.set_xlim(center[0] - radius, center[0] + radius)
    ax.set_ylim(center[1] - radius, center[1] + radius)
    ax.set_zlim(0, height)
    ax.set_box_aspect((1, 1, height / (2 * radius)))
    ax.view_init(elev=elevation, azim=azimuth)
    ax.set_axis_off()
    for x in np.linspace(-radius, radius, grid_lines):
        ax.plot([center[0] + x] * 2, [center[1] - radius, center[1] + radius], [0, 0], color="0.85", lw=0.6)
        ax.plot([center[0] - radius, center[0] + radius], [center[1] + x] * 2, [0, 0], color="0.85", lw=0.6)


def _draw_bones(ax, points: np.ndarray, skeleton: Skeleton, colors: Sequence[str]) -> None:
    """One line per bone of ``skeleton`` between the joints ``points (J, 3)`` (plot axes), ``colors`` per bone."""
    for (parent, child), color in zip(skeleton.bones, colors):
        seg = points[[parent, child]]
        ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color=color, lw=2.0)


def render_motion(joints: np.ndarray, skeleton: Skeleton, out: Path, *, fps: float = 20.0, title: str = "",
                  size_px: int = 320, source: str | None = None, **options) -> Path:
    """Render one motion ``joints (T, J, 3)`` (metres, y up) to ``out`` (``.gif`` or ``.mp4``), written atomically.

    ``source`` names where the joints came from in error messages (default: ``out``); ``options`` are those of
    :func:`render_motions`.
    """
    return render_motions([joints], skeleton, out, fps=fps, captions=[title] if title else None, size_px=size_px,
                          source=source, **options)


def render_motions(motions: Sequence[np.ndarray], skeleton: Skeleton, out: Path, *, fps: float = 20.0,
                   captions: Sequence[str] | None = None, title: str = "", columns: int | None = None,
                   size_px: int = 320, elevation: float = 20.0, azimuth: float = -60.0, contacts: bool = True,
                   source: str | None = None) -> Path:
    """Render several motions ``[(T_i, J, 3)]`` (metres, y up) side by side in one grid to ``out`` (``.gif`` or
    ``.mp4``), written atomically.

    Every view has the same fixed camera (``elevation`` / ``azimuth`` in degrees, matplotlib's convention) and the
    same scale; each is centred on its own motion's trajectory. The floor is y = 0 with a grid; the root's
    trajectory is drawn on it; with ``contacts``, every foot contact so far (:func:`foot_contacts`) leaves a mark on
    the floor under that foot joint. Left side red, right side blue. ``captions`` go above each view (wrapped),
    ``title`` above the grid. Shorter motions hold their last frame. ``source`` names the input in error messages.
    """
    import textwrap

    import imageio.v3 as iio
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise RenderError(f"{out}: output must end in .gif or .mp4")
    if not motions:
        raise RenderError(f"{source or out}: no motions to render")
    if captions is not None and len(captions) != len(motions):
        raise RenderError(f"{out}: {len(captions)} captions for {len(motions)} motions")
    where = source or str(out)
    checked = [check_joints(m, skeleton, where if len(motions) == 1 else f"{where} (motion {i})")
               for i, m in enumerate(motions)]
    # Plot with matplotlib's z axis up: (x, y, z)_world → (x, z, y)_plot.
    plots = [m[..., [0, 2, 1]] for m in checked]
    centers, radius, height = _scene_extent(plots)
    left, right = skeleton.foot_indices
    foot_joints = left + right
    foot_colors = ["tab:red"] * len(left) + ["tab:blue"] * len(right)
    left_names = {a for a, _ in skeleton.left_right}
    right_names = {b for _, b in skeleton.left_right}
    bone_colors = ["tab:red" if skeleton.joint_names[c] in left_names else
                   "tab:blue" if skeleton.joint_names[c] in right_names else "0.2" for _, c in skeleton.bones]
    contact = [foot_contacts(m, skeleton, fps) if contacts else np.zeros((len(m), len(foot_joints)), bool)
               for m in checked]
    num_frames = max(len(p) for p in plots)
    columns = columns or int(np.ceil(np.sqrt(len(plots))))
    rows = int(np.ceil(len(plots) / columns))

    dpi = 80
    fig = plt.figure(figsize=(columns * size_px / dpi, rows * size_px / dpi), dpi=dpi)
    axes = [fig.add_subplot(rows, columns, i + 1, projection="3d") for i in range(len(plots))]
    frames = []
    try:
        for f in range(num_frames):
            for k, (ax, plot, center) in enumerate(zip(axes, plots, centers)):
                g = min(f, len(plot) - 1)
                _set_up_scene(ax, center, radius, height, elevation=elevation, azimuth=azimuth, grid_lines=9)
                root = plot[:, 0]
                ax.plot(root[:, 0], root[:, 1], np.zeros(len(root)), color="tab:orange", lw=1.0)
                past = contact[k][: g + 1]  # (g+1, 4)
                for c, (joint, color) in enumerate(zip(foot_joints, foot_colors)):
                    marks = plot[: g + 1, joint][past[:, c]]
                    if len(marks):
                        ax.scatter(marks[:, 0], marks[:, 1], np.zeros(len(marks)), s=10, color=color, alpha=0.4)
                _draw_bones(ax, plot[g], skeleton, bone_colors)
                ax.scatter(plot[g, :, 0], plot[g, :, 1], plot[g, :, 2], s=4, color="k")
                if captions and captions[k]:
                    ax.set_title("\n".join(textwrap.wrap(captions[k], 40)), fontsize=8)
            if title:
                fig.suptitle(title, fontsize=9)
            fig.canvas.draw()
            frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    finally:
        plt.close(fig)

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=out.suffix) as tmp:
        if out.suffix.lower() == ".gif":
            iio.imwrite(tmp, np.stack(frames), duration=1000.0 / fps, loop=0)
        else:
            _write_mp4(str(tmp), frames, fps)
    return out


def _write_mp4(path: str, frames: list[np.ndarray], fps: float) -> None:
    import imageio.v2 as iio2

    with iio2.get_writer(path, fps=fps, codec="libx264", macro_block_size=1, format="FFMPEG") as writer:
        for frame in frames:
            writer.append_data(frame)


def render_overlay(frames, keypoints_2d: np.ndarray, confidence: np.ndarray, keypoint_skeleton: Skeleton,
                   projected: np.ndarray, joints: np.ndarray, skeleton: Skeleton, out: Path, *, fps: float = 20.0,
                   title: str = "", height_px: int = 360) -> Path:
    """A side-by-side MP4 of a lifted video: the frames with the detected keypoints (red dots, ``keypoint_skeleton``
    bones in white) and the reprojected 3D skeleton (blue) on the left, the 3D skeleton (metres, y up, ground y = 0)
    on the right. Written atomically. One view of :func:`render_views_overlay`.

    Args:
        frames: iterable of ``T`` RGB frames ``(H, W, 3)`` uint8 (the video at the clip's frame rate).
        keypoints_2d: ``(T, J2, 2)`` pixels; ``confidence (T, J2)``, keypoints with confidence 0 are not drawn.
        projected: ``(T, J, 2)`` pixels of ``joints`` seen through the clip's camera.
        joints: ``(T, J, 3)`` world metres.
    """
    return render_views_overlay(([frame] for frame in frames), keypoints_2d[None], confidence[None], keypoint_skeleton,
                                projected[None], joints, skeleton, out, fps=fps, title=title, height_px=height_px)


def render_views_overlay(frames, keypoints_2d: np.ndarray, confidence: np.ndarray, keypoint_skeleton: Skeleton,
                         projected: np.ndarray, joints: np.ndarray, skeleton: Skeleton, out: Path, *,
                         fps: float = 20.0, title: str = "", height_px: int = 360) -> Path:
    """The overlay of :func:`render_overlay` for V synchronized views: one panel per view, side by side, then the 3D
    skeleton. Written atomically.

    Args:
        frames: iterable of ``T`` lists of V RGB frames ``(H_v, W_v, 3)`` uint8 (each view at the clip's frame rate).
        keypoints_2d: ``(V, T, J2, 2)`` pixels in each view's frame; ``confidence (V, T, J2)``.
        projected: ``(V, T, J, 2)`` pixels of ``joints`` seen through each view's camera.
        joints: ``(T, J, 3)`` world metres.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from PIL import Image

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise RenderError(f"{out}: the overlay is written as .mp4")
    joints = check_joints(joints, skeleton, str(out))
    T = len(joints)
    views = len(keypoints_2d)
    if keypoints_2d.shape[:3] != (views, T, keypoint_skeleton.num_joints) \
            or projected.shape != (views, T, skeleton.num_joints, 2):
        raise RenderError(f"{out}: keypoints {keypoints_2d.shape} / projection {projected.shape} do not match "
                          f"{T} frames of {skeleton.num_joints} joints in {views} view(s)")
    plot = joints[..., [0, 2, 1]]  # matplotlib's z axis up
    (center,), radius, top = _scene_extent([plot])
    dpi = 80
    fig = None
    images = []
    try:
        for f, frame_views in enumerate(frames):
            if f >= T:
                break
            if len(frame_views) != views:
                raise RenderError(f"{out}: frame {f} has {len(frame_views)} views, expected {views}")
            scales = [height_px / frame.shape[0] for frame in frame_views]
            widths = [int(round(frame.shape[1] * scale)) for frame, scale in zip(frame_views, scales)]
            if fig is None:
                total = sum(widths) + height_px
                fig = plt.figure(figsize=(total / dpi, height_px / dpi), dpi=dpi)
                lefts = np.cumsum([0] + widths) / total
                axes2d = [fig.add_axes((lefts[v], 0, widths[v] / total, 1)) for v in range(views)]
                ax3d = fig.add_axes((lefts[-1], 0, height_px / total, 1), projection="3d")
            for v, (frame, scale, width_px, ax2d) in enumerate(zip(frame_views, scales, widths, axes2d)):
                small = np.asarray(Image.fromarray(frame[..., :3]).resize((width_px, height_px)))
                ax2d.cla()
                ax2d.imshow(small)
                ax2d.set_axis_off()
                uv, conf = keypoints_2d[v, f] * scale, confidence[v, f]
                for parent, child in keypoint_skeleton.bones:
                    if conf[parent] > 0 and conf[child] > 0:
                        ax2d.plot(uv[[parent, child], 0], uv[[parent, child], 1], color="white", lw=1.0, alpha=0.7)
                ax2d.scatter(uv[conf > 0, 0], uv[conf > 0, 1], s=6, color="red")
                pj = projected[v, f] * scale
                for parent, child in skeleton.bones:
                    ax2d.plot(pj[[parent, child], 0], pj[[parent, child], 1], color="tab:blue", lw=2.0)
                ax2d.set_xlim(0, width_px)
                ax2d.set_ylim(height_px, 0)
                if title and v == 0:
                    ax2d.text(5, 15, title, color="white", fontsize=8)
            _set_up_scene(ax3d, center, radius, top, elevation=15, azimuth=-80, grid_lines=7)
            _draw_bones(ax3d, plot[f], skeleton, ["tab:blue"] * len(skeleton.bones))
            fig.canvas.draw()
            images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    finally:
        if fig is not None:
            plt.close(fig)
    if not images:
        raise RenderError(f"{out}: no video frames to draw on")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=out.suffix) as tmp:
        _write_mp4(str(tmp), images, fps)
    return out
