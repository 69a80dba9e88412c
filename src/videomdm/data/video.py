"""Reading videos and detecting their main person with MediaPipe BlazePose (optional extra ``videomdm[video]``).

Frames are read with imageio's ffmpeg plugin. A video is seen at the dataset frame rate: output frame ``k`` (time
``k / fps``) is the source frame nearest to that time (:func:`iter_frames`), so a 30 fps video at 20 fps keeps two
frames of three and a 15 fps video repeats every other frame; the error in time is at most half a source frame.

Detection uses MediaPipe's ``solutions.pose`` with the full landmark model (``model_complexity=1``), the only one
inside the ``mediapipe==0.10.21`` wheel (the lite and heavy models would be downloaded at run time; the tasks API
needs a separate model file). In video mode BlazePose tracks one person: it detects the most confident person,
then follows that person's region frame to frame and detects again only when the track is lost. For each frame it
gives the 33 landmarks in the image (``pose_landmarks``, normalized to the frame size; ``visibility`` is used as the
confidence) and in 3D (``pose_world_landmarks``: metres, origin between the hips, x to the image's right, y down,
z away from the camera, i.e. OpenCV camera axes up to the translation). Frames without a detection get confidence 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from ..skeleton import BLAZEPOSE_33
from .errors import DataError
from .observed import KeypointSequence

__all__ = ["VIDEO_EXTENSIONS", "find_videos", "is_video", "video_info", "iter_frames",
           "detect_video", "require_mediapipe", "MEDIAPIPE_MISSING"]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
MEDIAPIPE_MISSING = ("reading keypoints from video needs MediaPipe: pip install 'videomdm[video]' "
                     "(installs mediapipe==0.10.21, which carries its pose models)")


def require_mediapipe():
    """The ``mediapipe`` module, or ValueError with the install command (the CLI prints it as one error line)."""
    import os

    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: warnings and errors only
    try:
        import mediapipe
    except ImportError:
        raise ValueError(MEDIAPIPE_MISSING) from None
    return mediapipe


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def find_videos(src: Path) -> list[Path]:
    """A video file, or the video files in a folder (recursively, sorted); DataError when there is none."""
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: does not exist")
    if src.is_file():
        if not is_video(src):
            raise DataError(f"{src}: not a video file (known extensions: {', '.join(VIDEO_EXTENSIONS)})")
        return [src]
    videos = sorted(p for p in src.rglob("*") if p.is_file() and is_video(p))
    if not videos:
        raise DataError(f"{src}: no video files (known extensions: {', '.join(VIDEO_EXTENSIONS)})")
    stems: dict[str, Path] = {}
    for video in videos:
        if video.stem in stems:
            raise DataError(f"{src}: two videos share the name {video.stem!r} ({stems[video.stem]} and {video}); "
                            f"rename one, clips are named after the file")
        stems[video.stem] = video
    return videos


def video_info(path: Path) -> tuple[float, tuple[int, int], float]:
    """``(fps, (width, height), duration in seconds)`` of a video; DataError naming it when unreadable."""
    import imageio.v3 as iio

    try:
        meta = iio.immeta(path, plugin="FFMPEG")
    except Exception as err:  # imageio raises many types for broken files
        raise DataError(f"{path}: cannot read the video ({type(err).__name__}: {err})") from None
    fps, size, duration = meta.get("fps"), meta.get("size"), meta.get("duration")
    if not fps or not np.isfinite(fps) or fps <= 0:
        raise DataError(f"{path}: the video does not state a frame rate")
    if not size or min(size) <= 0:
        raise DataError(f"{path}: the video has no frame size (no video stream?)")
    return float(fps), (int(size[0]), int(size[1])), float(duration or 0.0)


def iter_frames(path: Path, fps: float, *, max_seconds: float | None = None) -> Iterator[np.ndarray]:
    """RGB frames ``(H, W, 3)`` uint8 of a video at ``fps`` (nearest source frames), up to ``max_seconds``."""
    import imageio.v3 as iio

    source_fps, _, _ = video_info(path)
    step = source_fps / fps
    next_time = 0  # output frame index k: wants source frame round(k * step)
    try:
        for index, frame in enumerate(iio.imiter(path, plugin="FFMPEG")):
            while round(next_time * step) == index:
                if max_seconds is not None and next_time / fps > max_seconds:
                    return
                yield frame
                next_time += 1
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{path}: cannot decode the video ({type(err).__name__}: {err})") from None


def detect_video(path: Path, *, fps: float = 20.0, max_seconds: float | None = None,
                 progress: bool = True) -> KeypointSequence:
    """Detect the main person in every frame of a video at ``fps`` (see the module docstring).

    Returns a :class:`KeypointSequence` in BlazePose-33 order with ``world`` (the detector's 3D, NaN in frames
    without a detection). An unreadable or empty video raises DataError naming the file; a video where nobody is
    found returns a sequence whose confidences are all 0.
    """
    mp = require_mediapipe()
    path = Path(path)
    source_fps, size, duration = video_info(path)
    width, height = size
    total = int(duration * fps) + 1 if duration else None
    if max_seconds is not None and total is not None:
        total = min(total, int(max_seconds * fps) + 1)
    keypoints, confidence, world = [], [], []
    J = BLAZEPOSE_33.num_joints
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                                enable_segmentation=False) as pose, \
            tqdm(total=total, desc=path.name, unit="frame", disable=not progress, leave=False) as bar:
        for frame in iter_frames(path, fps, max_seconds=max_seconds):
            if frame.ndim != 3 or frame.shape[2] < 3:
                raise DataError(f"{path}: frames must be colour images, got shape {frame.shape}")
            result = pose.process(np.ascontiguousarray(frame[..., :3]))
            if result.pose_landmarks is None or result.pose_world_landmarks is None:
                keypoints.append(np.zeros((J, 2)))
                confidence.append(np.zeros(J))
                world.append(np.full((J, 3), np.nan))
            else:
                image = result.pose_landmarks.landmark
                keypoints.append([(p.x * width, p.y * height) for p in image])
                confidence.append([p.visibility for p in image])
                world.append([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark])
            bar.update(1)
    if not keypoints:
        raise DataError(f"{path}: the video has no frames")
    return KeypointSequence(name=path.stem, keypoints=np.array(keypoints), confidence=np.array(confidence),
                            skeleton=BLAZEPOSE_33.name, fps=float(fps), image_size=(width, height), source=str(path),
                            world=np.array(world), source_fps=source_fps)
