"""The suite's own synthetic data: the same in every process, so a test sees the same data on every run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent


def _make_in_subprocess(out: Path, hash_seed: str) -> None:
    """``conftest.make_motion_dataset(out)`` in a fresh interpreter with ``PYTHONHASHSEED=hash_seed``."""
    script = ("import sys\n"
              "from pathlib import Path\n"
              f"sys.path.insert(0, {str(TESTS)!r})\n"
              "from conftest import make_motion_dataset\n"
              "make_motion_dataset(Path(sys.argv[1]))\n")
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_motion_dataset_is_the_same_in_every_process(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    _make_in_subprocess(a, "1")
    _make_in_subprocess(b, "2")  # str hashes differ between these two processes
    clips = sorted(p.relative_to(a) for p in a.rglob("*.npz"))
    assert clips and clips == sorted(p.relative_to(b) for p in b.rglob("*.npz"))
    for rel in clips:
        with np.load(a / rel) as first, np.load(b / rel) as second:
            assert first.files == second.files
            for name in first.files:
                np.testing.assert_array_equal(first[name], second[name], err_msg=f"{rel}: {name}")
