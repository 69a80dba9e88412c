"""Which depth weighting of the 2D reprojection loss trains the best 3D prior?

Trains the ``2d`` supervision mode once per weighting (``none``, ``mean_depth``, ``depth_squared``) with the same
model, budget and seed on the LAFAN1 2D benchmark (``videomdm.pipeline``: a lifter trained on the ``lifter`` split
teaches the ``train`` split, seen by 2 virtual cameras per clip), then noises the teacher of every ``test`` clip to
t* and lets each model denoise it (``videomdm.sample.lift``). Prints the 3D error of those predictions
against ``gt_3d`` (which no training step read), next to the teacher's own error.

    python benchmarks/depth_weighting.py --out bench-depth --steps 1200

Stages are cached under ``--out``: a second call with the same folder only re-evaluates.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from videomdm.checkpoint import latest_checkpoint
from videomdm.config import load_config
from videomdm.experiments import LiftSettings, lift_split
from videomdm.pipeline import prepare_benchmark
from videomdm.sample import load_run
from videomdm.train import train

WEIGHTINGS = ("none", "mean_depth", "depth_squared")
COLUMNS = ("mpjpe_mm", "root_mpjpe_mm", "pa_mpjpe_mm", "accel_error_ms2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-depth-weighting"))
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "videomdm")
    parser.add_argument("--config", default="small", help="model/training preset (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=1200, help="training steps per weighting (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    data = prepare_benchmark(args.out / "data", cache=args.cache, progress=False)
    denoise_only = LiftSettings(guidance=0.0, seed=args.seed)  # the teacher noised to t*, denoised, no 2D guidance
    results = {}
    for weighting in WEIGHTINGS:
        run_dir = args.out / "runs" / weighting
        config = load_config(args.config, [f"train.steps={args.steps}", f"train.seed={args.seed}",
                                           "train.supervision=2d", f"two_d.depth_weighting={weighting}",
                                           f"train.device={args.device}"])
        started = time.perf_counter()
        if latest_checkpoint(run_dir) is None:
            train(data.data_2d, run_dir, config, progress=False)
            print(f"trained {weighting} in {time.perf_counter() - started:.0f} s")
        metrics = lift_split(load_run(run_dir, device=args.device), data.data_2d, "test", denoise_only)
        results.setdefault("teacher", {key: metrics[f"teacher_{key}"] for key in COLUMNS})
        results[weighting] = {key: metrics[f"lift_{key}"] for key in COLUMNS}

    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n3D error on the test split ({args.steps} steps, config {args.config}, seed {args.seed}):\n")
    print("| predictions | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{row[key]:.1f}" for key in COLUMNS) + " |")
    print(f"\nwritten {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
