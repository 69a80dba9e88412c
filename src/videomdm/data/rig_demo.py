"""A real calibrated rig to test and benchmark with: Pose2Sim's single-person demo, fetched at run time.

The ``pose2sim==0.10.49`` wheel on PyPI (package license BSD-3-Clause, author David Pagnon; the recordings carry no
separate statement) ships ``Pose2Sim/Demo_SinglePerson``: four phone videos of one take of one person (60 fps,
about 1.7 s, portrait 1088×1920 as calibrated; two of the files are 1080 wide) and their Qualisys calibration
(``calibration/Calib.qca.txt``). :func:`fetch_rig_demo` downloads the wheel with pip into a temporary folder of
the cache, extracts just those five files and checks their SHA-256; nothing is committed or redistributed. The videos
are not frame-synchronized: estimate their offsets with :func:`videomdm.triangulation.estimate_offsets`.
"""

from __future__ import annotations

from pathlib import Path

from .package_files import fetch_package_files

__all__ = ["RIG_DEMO_SPEC", "RIG_DEMO_FILES", "fetch_rig_demo"]

RIG_DEMO_SPEC = "pose2sim==0.10.49"
_WHEEL = "pose2sim-0.10.49-py3-none-any.whl"
_PREFIX = "Pose2Sim/Demo_SinglePerson"
_SHA256 = {  # of the files as the wheel holds them
    "calibration/Calib.qca.txt": "fd90e4bbae3278ef1dc0cdd42a34ee06bf88286f628a02c00a29407aa39e34c5",
    "videos/cam01.mp4": "cf4f2816c86bea4bfbea255333d8626ff32a3ecabdab8b0fb147cea9167fde3a",
    "videos/cam02.mp4": "94ff87cf978b8406e8aa36ab3c5362e72848994e87652f0dc7a33c315e8e0442",
    "videos/cam03.mp4": "b8b329f832f178f27ecb78d024d5026b96c6adb36c387bfe2c0af85eab8a11ca",
    "videos/cam04.mp4": "b5c0e7863fd70d008e7178d3c556b045b0ea5f78fcd61ca548a0b2e807e641f7",
}
RIG_DEMO_FILES = tuple(_SHA256)


def fetch_rig_demo(cache: Path) -> Path:
    """The folder ``cache/pose2sim-demo`` with ``calibration/Calib.qca.txt`` and ``videos/cam01..04.mp4`` (the
    calibration's camera order), fetched with pip on first use and checked against their SHA-256
    (:func:`~videomdm.data.package_files.fetch_package_files`). DataError when pip cannot fetch the wheel or it
    holds other files."""
    folder = Path(cache) / "pose2sim-demo"
    fetch_package_files(folder, RIG_DEMO_SPEC, ("--only-binary", ":all:"), _WHEEL,
                        {name: (f"{_PREFIX}/{name}", digest) for name, digest in _SHA256.items()},
                        "the Pose2Sim rig demo")
    return folder
