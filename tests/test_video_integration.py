"""Real videos end to end: detection → 2D training clips → a short ``2d`` run → lifting a video.

The videos come from two PyPI archives, fetched with pip into pytest's cache (not dependencies of the project):
``sports2d==0.8.34`` (wheel, ``Sports2D/Demo/demo.mp4``, 30 fps, BSD-3-Clause) and ``aipose==3.2.0`` (source
archive, ``video.mp4``, 25 fps, sit-ups). Only the first seconds of each are used, to keep the test near a minute.
"""

import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_train import TINY

from videomdm.cli import main
from videomdm.data.bvh import read_bvh
from videomdm.data.clip import load_clip, read_dataset_index
from videomdm.data.observed import clip_reprojection_px
from videomdm.skeleton import SMPL_22

pytestmark = pytest.mark.integration

SECONDS = 2.5  # of each video to prepare
# (parent, child) bones and the range of their length in adults, metres (generous: detector 3D is approximate).
HUMAN_BONES = {("left_hip", "left_knee"): (0.25, 0.6), ("right_hip", "right_knee"): (0.25, 0.6),
               ("left_knee", "left_ankle"): (0.25, 0.6), ("right_knee", "right_ankle"): (0.25, 0.6),
               ("left_shoulder", "left_elbow"): (0.15, 0.45), ("right_shoulder", "right_elbow"): (0.15, 0.45),
               ("left_elbow", "left_wrist"): (0.12, 0.4), ("right_elbow", "right_wrist"): (0.12, 0.4)}


def _fetch(cache: Path, spec: str, binary: bool) -> Path:
    found = sorted(cache.glob(f"{spec.split('==')[0]}-*"))
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", spec, "-d", str(cache)]
    command += ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    subprocess.run(command, check=True, capture_output=True)
    return sorted(cache.glob(f"{spec.split('==')[0]}-*"))[0]


@pytest.fixture(scope="module")
def videos(request) -> Path:
    cache = Path(request.config.cache.mkdir("videomdm-videos"))
    folder = cache / "videos"
    if not (folder / "demo.mp4").exists() or not (folder / "situps.mp4").exists():
        folder.mkdir(exist_ok=True)
        wheel = _fetch(cache, "sports2d==0.8.34", binary=True)
        with zipfile.ZipFile(wheel) as archive:
            (folder / "demo.mp4").write_bytes(archive.read("Sports2D/Demo/demo.mp4"))
        sdist = _fetch(cache, "aipose==3.2.0", binary=False)
        with tarfile.open(sdist) as archive:
            (folder / "situps.mp4").write_bytes(archive.extractfile("aipose-3.2.0/video.mp4").read())
    return folder


def test_video_to_clips_to_training_to_lifting(videos, tmp_path, capsys):
    pytest.importorskip("mediapipe")
    data = tmp_path / "data"
    assert main(["prepare", "video", str(videos), "--out", str(data), "--max-seconds", str(SECONDS),
                 "--caption", "a person moves", "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "resampled to 20 fps" in summary  # 30 and 25 fps sources

    index = read_dataset_index(data)
    clips = [load_clip(p) for p in index.clip_paths("train")]
    assert {c.name.rsplit("_", 1)[0] for c in clips} == {"demo", "situps"}
    for clip in clips:
        teacher = clip.teacher_3d.astype(np.float64)
        assert clip.fps == 20.0 and clip.text == ["a person moves"] and clip.keypoint_skeleton == "blazepose33"
        for (a, b), (low, high) in HUMAN_BONES.items():
            length = np.median(np.linalg.norm(teacher[:, SMPL_22.index(a)] - teacher[:, SMPL_22.index(b)], axis=-1))
            assert low < length < high, (clip.name, a, b, length)
        left, right = SMPL_22.foot_indices
        assert abs(np.median(teacher[:, left + right, 1].min(axis=1))) < 0.15, clip.name  # feet near the floor
        error = clip_reprojection_px(clip)
        with capsys.disabled():
            print(f"\n{clip.name}: teacher reprojection error {error:.1f} px on a {clip.image_size} video")
        assert error < 0.03 * clip.image_size[0]

    # A second run resumes: nothing is detected again.
    assert main(["prepare", "video", str(videos), "--out", str(data), "--max-seconds", str(SECONDS), "--quiet"]) == 0
    assert capsys.readouterr().out.count("already prepared") == 2

    run = tmp_path / "run"
    settings = [item for s in TINY + ["train.lr=2e-3", "train.warmup_steps=5", "train.save_every=100"]
                for item in ("--set", s)]
    assert main(["train", str(data), "--out", str(run), "--supervision", "2d", "--steps", "100",
                 "--config", "small", "--quiet", *settings]) == 0

    # Guidance at every level (down to 0) with weight 2 × confidence (clamped to 1): the tiny prior's own
    # prediction is poor, the lift must still land on the keypoint rays more closely than the teacher does.
    out = tmp_path / "lifted"
    assert main(["lift", str(run), str(videos / "demo.mp4"), "--out", str(out), "--max-seconds", "2",
                 "--guidance", "2", "--guidance-min-t", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    with capsys.disabled():
        print(f"\nlift: teacher {metrics['teacher_reprojection_px']:.1f} px → lift "
              f"{metrics['lift_reprojection_px']:.1f} px")
    assert metrics["lift_reprojection_px"] < metrics["teacher_reprojection_px"]
    for name, row in metrics["clips"].items():
        joints = np.load(out / f"{name}.npy")
        assert joints.shape == (row["frames"], 22, 3) and np.isfinite(joints).all()
        assert (out / f"{name}_teacher.npy").is_file()
        bvh = read_bvh(out / f"{name}.bvh", unit="m")  # opens with the project's own reader
        assert bvh.fps == pytest.approx(row["fps"]) and bvh.positions.shape == joints.shape
        overlay = out / f"{name}.mp4"
        assert overlay.stat().st_size > 1000
        import imageio.v3 as iio

        frame = iio.imread(overlay, index=0)
        assert frame.shape[0] == 360 and frame.std() > 10  # frames drawn, not blank
