"""Animations of 3D joint sequences: a stick figure over a ground plane with its root trajectory (GIF or MP4).

Input joints are world coordinates in metres, y up (DESIGN.md conventions). Frames are drawn with matplotlib's
Agg backend (no screen needed) and written with imageio.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .skeleton import Skeleton

__all__ = ["render_motion", "render_overlay", "RenderError"]


class RenderError(ValueError):
    """Joints that cannot be rendered, or an output path that cannot be written."""


def _check_joints(joints: np.ndarray, skeleton: Skeleton, name: str) -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (skeleton.num_joints, 3):
        raise RenderError(f"{name}: expected joints of shape (T, {skeleton.num_joints}, 3), got {joints.shape}")
    if joints.shape[0] == 0:
        raise RenderError(f"{name}: no frames to render")
    if not np.isfinite(joints).all():
        raise RenderError(f"{name}: joints contain NaN or infinite values")
    return joints


def render_motion(joints: np.ndarray, skeleton: Skeleton, out: Path, *, fps: float = 20.0, title: str = "",
                  size_px: int = 320, source: str | None = None) -> Path:
    """Render ``joints (T, J, 3)`` (metres, y up) to ``out`` (``.gif`` or ``.mp4``), written atomically.

    ``source`` names where the joints came from in error messages (default: ``out``).

    The camera is fixed for the whole clip and frames the full trajectory; the ground plane is y = 0; the root's
    ground-projected trajectory is drawn as a line.
    """
    import imageio.v3 as iio
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise RenderError(f"{out}: output must end in .gif or .mp4")
    joints = _check_joints(joints, skeleton, source or str(out))
    # Plot with matplotlib's z axis up: (x, y, z)_world → (x, z, y)_plot.
    plot = joints[..., [0, 2, 1]]
    lo, hi = plot.min(axis=(0, 1)), plot.max(axis=(0, 1))
    center = (lo + hi) / 2
    radius = max(float((hi - lo)[:2].max()) / 2, 1.0) + 0.2
    height = max(float(hi[2]), 2.0)

    dpi = 80
    fig = plt.figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    ax = fig.add_subplot(projection="3d")
    frames = []
    root = plot[:, 0]
    grid = np.linspace(-radius, radius, 9)
    try:
        for f in range(plot.shape[0]):
            ax.cla()
            ax.set_xlim(center[0] - radius, center[0] + radius)
            ax.set_ylim(center[1] - radius, center[1] + radius)
            ax.set_zlim(0, height)
            ax.set_box_aspect((1, 1, height / (2 * radius)))
            ax.view_init(elev=20, azim=-60)
            ax.set_axis_off()
            for g in grid:  # ground grid at y = 0
                ax.plot([center[0] + g] * 2, [center[1] - radius, center[1] + radius], [0, 0], color="0.85", lw=0.6)
                ax.plot([center[0] - radius, center[0] + radius], [center[1] + g] * 2, [0, 0], color="0.85", lw=0.6)
            ax.plot(root[:, 0], root[:, 1], np.zeros(len(root)), color="tab:orange", lw=1.0)
            for parent, child in skeleton.bones:
                seg = plot[f, [parent, child]]
                ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color="tab:blue", lw=2.0)
            ax.scatter(plot[f, :, 0], plot[f, :, 1], plot[f, :, 2], s=4, color="k")
            if title:
                ax.set_title(title, fontsize=8)
            fig.canvas.draw()
            frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    finally:
        plt.close(fig)

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        if out.suffix.lower() == ".gif":
            iio.imwrite(tmp, np.stack(frames), duration=1000.0 / fps, loop=0)
        else:
            _write_mp4(tmp, frames, fps)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
    on the right. Written atomically.

    Args:
        frames: iterable of ``T`` RGB frames ``(H, W, 3)`` uint8 (the video at the clip's frame rate).
        keypoints_2d: ``(T, J2, 2)`` pixels; ``confidence (T, J2)``, keypoints with confidence 0 are not drawn.
        projected: ``(T, J, 2)`` pixels of ``joints`` seen through the clip's camera.
        joints: ``(T, J, 3)`` world metres.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from PIL import Image

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise RenderError(f"{out}: the overlay is written as .mp4")
    joints = _check_joints(joints, skeleton, str(out))
    T = len(joints)
    if keypoints_2d.shape[:2] != (T, keypoint_skeleton.num_joints) or projected.shape != (T, skeleton.num_joints, 2):
        raise RenderError(f"{out}: keypoints {keypoints_2d.shape} / projection {projected.shape} do not match "
                          f"{T} frames of {skeleton.num_joints} joints")
    plot = joints[..., [0, 2, 1]]  # matplotlib's z axis up
    lo, hi = plot.min(axis=(0, 1)), plot.max(axis=(0, 1))
    center = (lo + hi) / 2
    radius = max(float((hi - lo)[:2].max()) / 2, 1.0) + 0.2
    top = max(float(hi[2]), 2.0)
    dpi = 80
    fig = None
    images = []
    try:
        for f, frame in enumerate(frames):
            if f >= T:
                break
            scale = height_px / frame.shape[0]
            width_px = int(round(frame.shape[1] * scale))
            small = np.asarray(Image.fromarray(frame[..., :3]).resize((width_px, height_px)))
            if fig is None:
                fig = plt.figure(figsize=((width_px + height_px) / dpi, height_px / dpi), dpi=dpi)
                ax2d = fig.add_axes((0, 0, width_px / (width_px + height_px), 1))
                ax3d = fig.add_axes((width_px / (width_px + height_px), 0, height_px / (width_px + height_px), 1),
                                    projection="3d")
            ax2d.cla()
            ax2d.imshow(small)
            ax2d.set_axis_off()
            uv, conf = keypoints_2d[f] * scale, confidence[f]
            for parent, child in keypoint_skeleton.bones:
                if conf[parent] > 0 and conf[child] > 0:
                    ax2d.plot(uv[[parent, child], 0], uv[[parent, child], 1], color="white", lw=1.0, alpha=0.7)
            ax2d.scatter(uv[conf > 0, 0], uv[conf > 0, 1], s=6, color="red")
            pj = projected[f] * scale
            for parent, child in skeleton.bones:
                ax2d.plot(pj[[parent, child], 0], pj[[parent, child], 1], color="tab:blue", lw=2.0)
            ax2d.set_xlim(0, width_px)
            ax2d.set_ylim(height_px, 0)
            if title:
                ax2d.text(5, 15, title, color="white", fontsize=8)
            ax3d.cla()
            ax3d.set_xlim(center[0] - radius, center[0] + radius)
            ax3d.set_ylim(center[1] - radius, center[1] + radius)
            ax3d.set_zlim(0, top)
            ax3d.set_box_aspect((1, 1, top / (2 * radius)))
            ax3d.view_init(elev=15, azim=-80)
            ax3d.set_axis_off()
            for g in np.linspace(-radius, radius, 7):
                ax3d.plot([center[0] + g] * 2, [center[1] - radius, center[1] + radius], [0, 0], color="0.85", lw=0.6)
                ax3d.plot([center[0] - radius, center[0] + radius], [center[1] + g] * 2, [0, 0], color="0.85", lw=0.6)
            for parent, child in skeleton.bones:
                seg = plot[f, [parent, child]]
                ax3d.plot(seg[:, 0], seg[:, 1], seg[:, 2], color="tab:blue", lw=2.0)
            fig.canvas.draw()
            images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    finally:
        if fig is not None:
            plt.close(fig)
    if not images:
        raise RenderError(f"{out}: no video frames to draw on")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        _write_mp4(tmp, images, fps)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
