"""A real calibrated rig to test and benchmark with: Pose2Sim's single-person demo, fetched at run time.

The ``pose2sim==0.10.49`` wheel on PyPI (package license BSD-3-Clause, author David Pagnon; the recordings carry no
separate statement) ships ``Pose2Sim/Demo_SinglePerson``: four phone videos of one take of one person (60 fps,
about 1.7 s, portrait 1088×1920 as calibrated; two of the files are 1080 wide) and their Qualisys calibration
(``calibration/Calib.qca.txt``). :func:`fetch_rig_demo` downloads the wheel with pip into a cache folder and extracts
just those five files; nothing is committed or redistributed. The videos are not frame-synchronized: estimate their
offsets with :func:`videomdm.triangulation.estimate_offsets`.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from .errors import DataError

__all__ = ["RIG_DEMO_SPEC", "RIG_DEMO_FILES", "fetch_rig_demo"]

RIG_DEMO_SPEC = "pose2sim==0.10.49"
_PREFIX = "Pose2Sim/Demo_SinglePerson"
RIG_DEMO_FILES = ("calibration/Calib.qca.txt", "videos/cam01.mp4", "videos/cam02.mp4", "videos/cam03.mp4",
                  "videos/cam04.mp4")


def fetch_rig_demo(cache: Path) -> Path:
    """The folder ``cache/pose2sim-demo`` with ``calibration/Calib.qca.txt`` and ``videos/cam01..04.mp4`` (the
    calibration's camera order), fetched with pip on first use. DataError when pip cannot fetch the wheel."""
    cache = Path(cache)
    folder = cache / "pose2sim-demo"
    if all((folder / name).exists() for name in RIG_DEMO_FILES):
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("pose2sim-0.10.49-*.whl"))
    if not wheels:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--only-binary", ":all:",
                   RIG_DEMO_SPEC, "-d", str(cache)]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(cache.glob("pose2sim-0.10.49-*.whl"))
        if done.returncode != 0 or not wheels:
            raise DataError(f"cannot fetch {RIG_DEMO_SPEC} with pip into {cache}: {done.stderr.strip()[-500:]}")
    with zipfile.ZipFile(wheels[0]) as archive:
        for name in RIG_DEMO_FILES:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(archive.read(f"{_PREFIX}/{name}"))
            tmp.replace(target)
    return folder
