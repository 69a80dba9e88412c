"""Data files fetched from the package index (videomdm.data.package_files), through each source that uses it."""

import subprocess

import pytest

from videomdm.data import package_files
from videomdm.data.climb import fetch_climb_joints
from videomdm.data.errors import DataError
from videomdm.data.lafan1 import fetch_lafan1_bvh
from videomdm.data.rig_demo import fetch_rig_demo


@pytest.mark.parametrize("fetch, stderr, expected", [
    (fetch_lafan1_bvh, "ERROR: Could not find a version that satisfies bvhtools", "Could not find a version"),
    (fetch_climb_joints, "ERROR: No matching distribution for holosoma-retargeting", "No matching distribution"),
    (fetch_rig_demo, "ERROR: Could not find a version that satisfies pose2sim", "satisfies pose2sim"),
])
def test_fetch_reports_pip_failure_with_its_stderr(fetch, stderr, expected, tmp_path, monkeypatch):
    def failing_pip(command, **kw):
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(package_files.subprocess, "run", failing_pip)
    with pytest.raises(DataError, match=rf"(?s)exit status 1.*{expected}"):
        fetch(tmp_path)
