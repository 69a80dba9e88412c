"""Atomic file writes (videomdm.checkpoint.atomic_path): all or nothing under the final name, ordinary permissions."""

import os
import stat

import pytest

from videomdm.checkpoint import atomic_path, atomic_write_text


def test_atomic_write_replaces_and_uses_the_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "notes.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's owner-only 0o600
    assert [p.name for p in target.parent.iterdir()] == ["notes.txt"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "motion.npy"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target, suffix=".npy") as tmp:
            assert tmp.suffix == ".npy" and tmp.parent == tmp_path
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["motion.npy"]
