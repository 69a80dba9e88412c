"""Training throughput and peak memory, ``3d`` against ``2d`` supervision.

Builds a synthetic mocap dataset (forward-kinematics walks from ``tests/synthetic.py``) and its 2D version (2 virtual
cameras per clip, a corrupted-ground-truth teacher) in a temporary folder, then prints one JSON line per
configuration:

* ``throughput``: the real training loop (:func:`videomdm.train.train`) for ``3d`` and ``2d`` on the same data, model
  and batch: seconds per step (on the CPU in process CPU time, robust to other load on a shared machine; see
  :func:`throughput`), clips/s, the 2d/3d step-cost ratio, and the step split into the loop's profiler ranges
  (batch assembly, the teacher-noising chain, forward + losses, backward, optimizer + EMA).
* ``memory``: peak memory of a short run in a fresh process for several batch sizes, window lengths and dataset
  sizes: on CUDA ``torch.cuda.max_memory_allocated``, on the CPU the process's peak resident set during the run
  (Linux ``/proc``: ``VmHWM`` after resetting it) minus its resident set before, which includes loading the dataset.

* ``--compare``: the reference step (``train.fast=false``, ``train.precision=fp32``: the loop as it was before the
  fast step existed) and the default step (``train.fast=true``, ``train.precision=auto``) side by side, whole
  ``videomdm train`` processes alternating round by round, one JSON line per supervision mode (``3d``, ``teacher``,
  ``2d``) with the machine (CPU model, bf16 units, torch, threads), ``baseline_steps_per_s``, ``steps_per_s`` and
  ``speedup`` (:func:`compare`). ``--baseline-src OLD/src`` times another source tree's default step instead.

    OMP_NUM_THREADS=1 python benchmarks/training.py            # small model (the ``small`` preset) and reference size
    python benchmarks/training.py --quick                       # small model only
    python benchmarks/training.py --compare                     # reference vs default step, small preset, 32 x 60
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import make_motion_dataset  # noqa: E402

from videomdm.config import load_config  # noqa: E402
from videomdm.data.prepare import prepare_mocap_2d  # noqa: E402
from videomdm.factory import device_summary, resolve_device  # noqa: E402
from videomdm.teacher import make_teacher  # noqa: E402
from videomdm.train import train  # noqa: E402

PROFILE_RANGES = ("videomdm.batch", "videomdm.noised_teacher", "videomdm.loss", "videomdm.backward",
                  "videomdm.optimizer")


def make_data(root: Path, num_walks: int, frames: int) -> Path:
    """A 2D dataset of ``num_walks`` synthetic walks of ``frames`` frames, each filmed by 2 cameras (2 training clips
    per walk; the clips keep gt_3d, for ``3d``)."""
    mocap = make_motion_dataset(root / f"mocap_{num_walks}_{frames}", num_train=num_walks, num_test=1, frames=frames)
    out = root / f"data_{num_walks}_{frames}"
    if not (out / "dataset.json").exists():
        prepare_mocap_2d(mocap, out, teacher=make_teacher("corrupt", severity=1.0), teacher_name="corrupt",
                         num_cameras=2, progress=False)
    return out


def run_config(preset: str, supervision: str, batch: int, frames: int, steps: int, device: str,
               precision: str = "fp32", cache_mb: float = 1024.0, extra: tuple[str, ...] = ()):
    return load_config(preset, [f"train.supervision={supervision}", f"train.batch_size={batch}",
                                f"data.cache_mb={cache_mb}",
                                f"data.num_frames={frames}", f"data.min_frames={min(40, frames)}",
                                f"train.steps={steps}", "train.log_every=1", f"train.save_every={steps}",
                                f"train.device={device}", f"train.precision={precision}", "train.warmup_steps=0",
                                *extra])


def step_seconds(run_dir: Path) -> list[float]:
    """Wall-clock seconds of each logged step."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [1.0 / row["steps_per_s"] for row in rows]


def timed_run(data: Path, run_dir: Path, config) -> float:
    """Seconds one ``train`` call takes: process CPU time on the CPU (with one thread, the work done, whatever else
    runs on the machine), wall time on CUDA (the last checkpoint copies to the host, which synchronizes)."""
    clock = time.process_time if resolve_device(config.train.device).type == "cpu" else time.perf_counter
    start = clock()
    train(data, run_dir, config, progress=False)
    return clock() - start


def throughput(data: Path, work: Path, preset: str, batch: int, frames: int, args) -> list[dict]:
    """One line per supervision mode (the 2d line with the 2d/3d ratio).

    Seconds per step = (time of a run of ``warmup + steps`` steps − time of a run of ``warmup`` steps) / ``steps``:
    set-up (data loading, model building, the final checkpoint) cancels out. A short run under ``torch.profiler``
    splits a step into the training loop's ranges (wall time, profiler overhead included)."""
    lines, per_step = [], {}
    for supervision in ("3d", "2d"):
        name = f"tp_{preset}_{supervision}_{batch}_{frames}"
        short = timed_run(data, work / f"{name}_short",
                          run_config(preset, supervision, batch, frames, args.warmup, args.device, args.precision))
        config = run_config(preset, supervision, batch, frames, args.warmup + args.steps, args.device, args.precision)
        long = timed_run(data, work / name, config)
        per_step[supervision] = (long - short) / args.steps
        wall = step_seconds(work / name)[args.warmup:]
        profiled_steps = 2
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            train(data, work / f"{name}_profiled",
                  run_config(preset, supervision, batch, frames, profiled_steps, args.device, args.precision),
                  progress=False)
        totals = {e.key: e.cpu_time_total for e in prof.key_averages() if e.key in PROFILE_RANGES}
        line = {"benchmark": "training", "kind": "throughput", "preset": preset, "supervision": supervision,
                "width": config.model.width, "layers": config.model.layers, "batch": batch, "frames": frames,
                "precision": args.precision, "timed_steps": args.steps,
                "clock": "process CPU time" if resolve_device(args.device).type == "cpu" else "wall",
                "seconds_per_step": round(per_step[supervision], 4),
                "clips_per_s": round(batch / per_step[supervision], 1),
                "wall_seconds_per_step_median": round(statistics.median(wall), 4),
                "profiled_ms_per_step": {k.removeprefix("videomdm."): round(v / 1e3 / profiled_steps, 1)
                                         for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}}
        if supervision == "2d":
            line["ratio_2d_to_3d"] = round(per_step["2d"] / per_step["3d"], 3)
        lines.append(line)
    return lines


SRC = Path(__file__).resolve().parents[1] / "src"


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _cli_run(src: Path, data: Path, run: Path, mode: str, steps: int, device: str,
             sets: list[str]) -> tuple[list[float], float]:
    """``videomdm train`` of the package in ``src`` in a fresh process (``small`` preset, batch 32 x 60, ``steps``
    steps, a log line per step): the wall time of each step as the training loop logs it, and the CPU time (user +
    system, all threads) of the whole process."""
    overrides = [f"train.supervision={mode}", "train.batch_size=32", "data.num_frames=60", "data.min_frames=40",
                 f"train.steps={steps}", "train.log_every=1", f"train.save_every={steps}", "train.keep_checkpoints=1",
                 f"train.device={device}", "train.warmup_steps=0", *sets]
    command = [sys.executable, "-m", "videomdm.cli", "train", str(data), "--out", str(run), "--config", "small",
               "--quiet", *(arg for item in overrides for arg in ("--set", item))]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} (PYTHONPATH={src}) failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return step_seconds(run), cpu


def _baseline_data(src: Path, work: Path) -> Path:
    """The benchmark's dataset (16 walks of 120 frames) built by the tree of ``src`` with its own
    ``benchmarks/training.py`` ``make_data``, in a fresh process: for a baseline that reads an older clip format."""
    tree = src.parent
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import training; "
            "print(training.make_data(Path(sys.argv[2]), num_walks=16, frames=120))")
    done = subprocess.run([sys.executable, "-c", code, str(tree / "benchmarks"), str(work / "baseline_data")],
                          env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True, cwd=tree)
    if done.returncode != 0:
        raise RuntimeError(f"building the baseline's data with {tree / 'benchmarks' / 'training.py'} failed:\n"
                           f"{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def compare(data: Path, work: Path, args) -> list[dict]:
    """The default step against the baseline step, round-robin: ``--repeats`` rounds, each a run of
    ``--warmup + --steps`` steps of ``videomdm train`` per step kind and supervision mode (``small`` preset, batch
    32 x 60 frames), each in a fresh process, the two kinds alternating (and which goes first alternating by round).
    A step's time is the wall time the training loop logs for it (``log_every=1``); the first ``--warmup`` steps of
    every run are dropped (they load and encode the clips they draw). ``steps_per_s`` = 1 / the median step time over
    all rounds; ``speedup`` = the median over rounds of the ratio of the two kinds' median step times in that round
    (load that changes between rounds cancels).

    Other load on a shared machine moves wall times, so each round also runs every kind for ``--warmup`` steps only:
    ``cpu_seconds_per_step`` = (CPU time of the long run − CPU time of the short run) / ``--steps`` (set-up cancels;
    all threads), the work a step takes whatever else runs, and ``cpu_speedup`` the ratio of the medians over rounds.

    The baseline is this tree's reference step (``train.fast=false``, ``train.precision=fp32``: the loop as it was
    before the fast step existed), or with ``--baseline-src`` the default step of another source tree (e.g. an older
    checkout's ``src``); ``--baseline-set`` overrides the baseline's settings, ``--set`` the new step's. A tree that
    reads an older clip format trains on the same synthetic walks built by its own code (``--baseline-own-data``).

    Whole processes, not two runs taking turns in one process: runs sharing a process interfere (two runs' threads,
    caches and allocator), which slowed both by 15–50 % on an idle 2-core machine and hid most of a speedup."""
    device = resolve_device(args.device)
    modes = args.modes.split(",")
    baseline_src = Path(args.baseline_src).resolve() if args.baseline_src else SRC
    baseline_sets = args.baseline_set if args.baseline_set is not None else (
        [] if args.baseline_src else ["train.fast=false", "train.precision=fp32"])
    kinds = {"baseline": (baseline_src, list(baseline_sets)), "new": (SRC, list(args.set or []))}
    datasets = {"baseline": _baseline_data(baseline_src, work) if args.baseline_own_data else data, "new": data}
    times: dict[tuple[str, str], list[float]] = {(m, k): [] for m in modes for k in kinds}
    round_medians: dict[tuple[str, str], list[float]] = {(m, k): [] for m in modes for k in kinds}
    cpu: dict[tuple[str, str], list[float]] = {(m, k): [] for m in modes for k in kinds}
    load_before = _load_average()
    started = time.perf_counter()
    for round_ in range(args.repeats):
        for mode in modes:
            for kind, (src, sets) in (kinds.items() if round_ % 2 == 0 else reversed(kinds.items())):
                run = work / f"compare_{mode}_{kind}_{round_}"
                steps, cpu_long = _cli_run(src, datasets[kind], run, mode, args.warmup + args.steps, args.device,
                                           sets)
                _, cpu_short = _cli_run(src, datasets[kind], work / f"{run.name}_short", mode, args.warmup,
                                        args.device, sets)
                times[mode, kind] += steps[args.warmup:]
                round_medians[mode, kind].append(statistics.median(steps[args.warmup:]))
                cpu[mode, kind].append((cpu_long - cpu_short) / args.steps)
    summary = device_summary(device)
    lines = []
    for mode in modes:
        baseline = 1.0 / statistics.median(times[mode, "baseline"])
        new = 1.0 / statistics.median(times[mode, "new"])
        lines.append({"benchmark": "training", "kind": "compare", "mode": mode, "cpu": summary["cpu"],
                      "bf16_units": summary["bf16_units"], "gpu": summary["gpu"], "torch": summary["torch"],
                      "threads": summary["threads"], "preset": "small", "batch": 32, "frames": 60,
                      "baseline": f"{baseline_src} {' '.join(kinds['baseline'][1]) or '(defaults)'}",
                      "new_settings": kinds["new"][1],
                      "baseline_data": "own" if args.baseline_own_data else "same",
                      "baseline_steps_per_s": round(baseline, 3), "steps_per_s": round(new, 3),
                      "speedup": round(statistics.median(b / n for b, n in zip(round_medians[mode, "baseline"],
                                                                                  round_medians[mode, "new"])), 3),
                      "baseline_cpu_seconds_per_step": round(statistics.median(cpu[mode, "baseline"]), 4),
                      "cpu_seconds_per_step": round(statistics.median(cpu[mode, "new"]), 4),
                      "cpu_speedup": round(statistics.median(cpu[mode, "baseline"])
                                           / statistics.median(cpu[mode, "new"]), 3),
                      "timed_steps_each": len(times[mode, "new"]), "rounds": args.repeats})
    if "2d" in modes and "3d" in modes:
        for line in lines:
            if line["mode"] == "2d":
                for kind, prefix in (("new", ""), ("baseline", "baseline_")):
                    line[f"{prefix}ratio_2d_to_3d"] = round(statistics.median(times["2d", kind])
                                                            / statistics.median(times["3d", kind]), 3)
                line["cpu_ratio_2d_to_3d"] = round(statistics.median(cpu["2d", "new"])
                                                   / statistics.median(cpu["3d", "new"]), 3)
                line["baseline_cpu_ratio_2d_to_3d"] = round(statistics.median(cpu["2d", "baseline"])
                                                            / statistics.median(cpu["3d", "baseline"]), 3)
    for line in lines:
        line.update({"load_average_before_after": [load_before, _load_average()],
                     "benchmark_seconds": round(time.perf_counter() - started, 1)})
    return lines


def _memory_status(field: str) -> int:
    """A ``/proc/self/status`` size in bytes (``VmRSS``: resident now, ``VmHWM``: peak resident)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _train_clips(run_dir: str) -> int:
    return json.loads((Path(run_dir) / "run.json").read_text())["train_clips"]


def _peak_memory_child(data: str, run_dir: str, config, queue) -> None:
    device = resolve_device(config.train.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        train(Path(data), Path(run_dir), config, progress=False)
        queue.put((torch.cuda.max_memory_allocated(device), _train_clips(run_dir)))
    else:
        # getrusage's ru_maxrss survives exec (a spawned child starts with its parent's peak), so the peak is read
        # from /proc after resetting it (clear_refs 5), and taken relative to the resident set before the run.
        Path("/proc/self/clear_refs").write_text("5")
        before = _memory_status("VmRSS")
        train(Path(data), Path(run_dir), config, progress=False)
        queue.put((_memory_status("VmHWM") - before, _train_clips(run_dir)))


def peak_memory(data: Path, work: Path, preset: str, supervision: str, batch: int, frames: int, num_walks: int,
                cache_mb: float, args) -> dict:
    config = run_config(preset, supervision, batch, frames, 2, args.device, args.precision, cache_mb)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_peak_memory_child,
                            args=(str(data), str(work / f"mem_{preset}_{supervision}_{batch}_{frames}_{num_walks}_"
                                                              f"{cache_mb}"),
                                  config, queue))
    child.start()
    peak, train_clips = queue.get(timeout=1800)
    child.join()
    return {"benchmark": "training", "kind": "memory", "preset": preset, "supervision": supervision, "batch": batch,
            "frames": frames, "train_clips": train_clips, "cache_mb": cache_mb, "precision": args.precision,
            "measure": "cuda max_memory_allocated" if resolve_device(args.device).type == "cuda"
            else "peak RSS over the run minus RSS before it", "peak_mib": round(peak / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--steps", type=int, help="timed steps per configuration (default: 4, --compare: 20)")
    parser.add_argument("--warmup", type=int, help="untimed first steps of a run (default: 1, --compare: 5)")
    parser.add_argument("--quick", action="store_true", help="small model only")
    parser.add_argument("--work", type=Path, help="folder for data and runs (default: a temporary folder)")
    parser.add_argument("--compare", action="store_true",
                        help="only the reference step against the default one (small preset, 32 x 60), per mode")
    parser.add_argument("--repeats", type=int, default=3, help="--compare: rounds (default: %(default)s)")
    parser.add_argument("--modes", default="3d,teacher,2d", help="--compare: supervision modes (default: %(default)s)")
    parser.add_argument("--baseline-src", help="--compare: time the default step of this source tree (its src/ "
                        "folder) as the baseline instead of this tree's reference step")
    parser.add_argument("--baseline-own-data", action="store_true",
                        help="--compare with --baseline-src: the baseline trains on the benchmark's walks prepared by "
                        "its own tree (for a checkout that reads an older dataset format)")
    parser.add_argument("--baseline-set", action="append", metavar="KEY=VALUE",
                        help="--compare: config override of the baseline step, repeatable (default: the reference "
                        "step's train.fast=false train.precision=fp32, none with --baseline-src)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="--compare: config override of the new step, repeatable")
    args = parser.parse_args()
    args.steps = args.steps or (20 if args.compare else 4)
    args.warmup = args.warmup if args.warmup is not None else (5 if args.compare else 1)
    if args.baseline_own_data and not args.baseline_src:
        parser.error("--baseline-own-data needs --baseline-src")
    if args.compare:
        with tempfile.TemporaryDirectory() as tmp:
            work = args.work or Path(tmp)
            data = make_data(work, num_walks=16, frames=120)
            for line in compare(data, work, args):
                print(json.dumps(line), flush=True)
        return

    device = resolve_device(args.device)
    header = {"benchmark": "training", "kind": "device", "device": str(device),
              "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__}
    print(json.dumps(header), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        data = make_data(work, num_walks=32, frames=240)
        configs = [("small", 32, 60)] + ([] if args.quick else [("default", 16, 196)])
        for preset, batch, frames in configs:
            for line in throughput(data, work, preset, batch, frames, args):
                print(json.dumps({**line, "device": str(device)}), flush=True)
        # Batch and window length at the default cache; then dataset size with a cache bound below the data, where
        # peak memory must stay flat (the encoded-clip cache is the only part that scales with the dataset).
        memory = [("3d", 8, 60, 32, 1024.0), ("3d", 16, 60, 32, 1024.0), ("3d", 32, 60, 32, 1024.0),
                  ("3d", 16, 120, 32, 1024.0), ("3d", 16, 196, 32, 1024.0), ("2d", 16, 60, 32, 1024.0),
                  ("2d", 16, 120, 32, 1024.0), ("3d", 16, 60, 128, 1024.0),
                  ("3d", 16, 60, 32, 2.0), ("3d", 16, 60, 128, 2.0), ("3d", 16, 60, 512, 2.0)]
        for supervision, batch, frames, num_walks, cache_mb in memory:
            clips = data if num_walks == 32 else make_data(work, num_walks=num_walks, frames=240)
            line = peak_memory(clips, work, "small", supervision, batch, frames, num_walks, cache_mb, args)
            print(json.dumps({**line, "device": str(device)}), flush=True)


if __name__ == "__main__":
    main()
