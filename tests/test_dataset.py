"""Lazy training windows (videomdm.data.dataset.MotionWindows): same windows as encoding every clip up front,
bounded memory, streamed normalization statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videomdm.data.clip import load_clip, read_clip_summary, read_dataset_index
from videomdm.data.dataset import MotionWindows, clip_observations, merge_moments
from videomdm.data.errors import DataError
from videomdm.representation import Normalizer, canonical_frames, encode
from videomdm.skeleton import SMPL_22
from videomdm.camera import transform_camera


def eager_windows(root, field, indices, rng, num_frames, with_keypoints=False):
    """Windows cut by hand from clips loaded and encoded up front (the reference the lazy loader must match)."""
    clips = [load_clip(p) for p in read_dataset_index(root).clip_paths("train")]
    out = []
    for i in indices:
        clip = clips[i]
        joints = torch.from_numpy(getattr(clip, field))
        features = encode(joints, SMPL_22)
        length = min(len(features), num_frames)
        start = int(rng.integers(0, len(features) - length + 1))
        text = clip.text[int(rng.integers(len(clip.text)))] if clip.text else ""
        item = {"features": features[start:start + length], "text": text}
        if with_keypoints:
            obs = clip_observations(clip, SMPL_22)
            window = canonical_frames(joints, SMPL_22).window(start)
            views = len(obs.R)  # (V, T, 3, 3): each view's camera carried into the window's frame
            R, t = transform_camera(torch.from_numpy(obs.R[:, start:start + length]),
                                    torch.from_numpy(obs.t[:, start:start + length]),
                                    window.rotation.expand(views, 3, 3), window.translation.expand(views, 3))
            item.update(keypoints=torch.from_numpy(obs.keypoints[:, start:start + length]), R=R, t=t)
        out.append(item)
    return out


@pytest.mark.parametrize("cache_mb", [1024.0, 0.0])
def test_lazy_windows_equal_windows_of_eagerly_encoded_clips(text_dataset, cache_mb):
    windows = MotionWindows(text_dataset, "train", motion_field="gt_3d", num_frames=30, min_frames=20,
                            cache_mb=cache_mb)
    indices = [3, 0, 5, 3, 1]
    for seed in (0, 1):
        batch = windows.batch(indices, np.random.default_rng(seed))
        expected = eager_windows(text_dataset, "gt_3d", indices, np.random.default_rng(seed), 30)
        assert batch.texts == [e["text"] for e in expected] and all(batch.texts)
        for k, e in enumerate(expected):
            torch.testing.assert_close(batch.features[k], e["features"], rtol=0, atol=0)
    assert windows.has_text and windows.names[0] == "train_walk_00" and len(windows) == 6


def test_lazy_2d_windows_carry_the_same_observations_and_cameras(dataset_2d):
    windows = MotionWindows(dataset_2d, "train", motion_field="teacher_3d", num_frames=30, min_frames=20,
                            with_keypoints=True, cache_mb=0.0)
    indices = [2, 7, 2]
    batch = windows.batch(indices, np.random.default_rng(4))
    expected = eager_windows(dataset_2d, "teacher_3d", indices, np.random.default_rng(4), 30, with_keypoints=True)
    for k, e in enumerate(expected):
        for name in ("features", "keypoints", "R", "t"):
            torch.testing.assert_close(getattr(batch, name)[k], e[name], rtol=0, atol=0)


def test_streamed_normalizer_equals_the_concatenated_one(motion_dataset):
    windows = MotionWindows(motion_dataset, "train", motion_field="gt_3d", num_frames=30, min_frames=20,
                            cache_mb=0.0)
    clips = [load_clip(p) for p in read_dataset_index(motion_dataset).clip_paths("train")]
    reference = Normalizer.from_features(torch.cat([encode(torch.from_numpy(c.gt_3d), SMPL_22) for c in clips]))
    streamed = windows.normalizer()
    torch.testing.assert_close(streamed.mean, reference.mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(streamed.std, reference.std, rtol=1e-6, atol=1e-6)
    assert streamed.mean.dtype == reference.mean.dtype == torch.float32


def test_merge_moments_matches_direct_statistics_on_uneven_chunks():
    rows = torch.from_numpy(np.random.default_rng(0).normal(5.0, 3.0, size=(1000, 4)))  # float64, offset mean
    chunks = torch.split(rows, [1, 7, 300, 2, 690])
    moments = None
    for chunk in chunks:
        mine = (len(chunk), chunk.mean(0), ((chunk - chunk.mean(0)) ** 2).sum(0))
        moments = mine if moments is None else merge_moments(moments, mine)
    count, mean, sum_squares = moments
    assert count == 1000
    torch.testing.assert_close(mean, rows.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sum_squares / count, rows.var(0, correction=0), rtol=1e-12, atol=1e-12)


def test_cache_stays_within_its_bound(motion_dataset):
    probe = MotionWindows(motion_dataset, "train", motion_field="gt_3d", num_frames=30, min_frames=20)
    one_clip_mb = probe.clip(0).nbytes / 2**20
    windows = MotionWindows(motion_dataset, "train", motion_field="gt_3d", num_frames=30, min_frames=20,
                            cache_mb=2.5 * one_clip_mb)
    rng = np.random.default_rng(0)
    for _ in range(5):
        windows.batch(list(range(len(windows))), rng)
        assert len(windows._cache) == 2 and windows._cached_bytes <= windows.cache_bytes
    assert len(probe._cache) == 1  # a large cache keeps what it has read


def test_index_reads_headers_and_defers_bad_clips_to_their_first_read(motion_dataset):
    paths = read_dataset_index(motion_dataset).clip_paths("train")
    summary = read_clip_summary(paths[0])
    assert summary.name == "train_walk_00" and summary.frames == {"gt_3d": 50, "teacher_3d": 50}
    clip = load_clip(paths[1])
    data = dict(np.load(paths[1]))
    data["gt_3d"] = np.full_like(clip.gt_3d, np.nan)  # bypass save_clip, which refuses NaN
    np.savez(paths[1], **data)
    windows = MotionWindows(motion_dataset, "train", motion_field="gt_3d", num_frames=30, min_frames=20)
    windows.sample(0, np.random.default_rng(0))
    with pytest.raises(DataError, match=f"{paths[1].name}.*NaN"):
        windows.sample(1, np.random.default_rng(0))
    with pytest.raises(DataError, match=paths[1].name):
        windows.normalizer()


def test_short_clips_are_skipped_from_the_headers(motion_dataset):
    windows = MotionWindows(motion_dataset, "train", motion_field="gt_3d", num_frames=30, min_frames=50)
    assert len(windows) == 6 and windows.skipped == 0 and windows.lengths == [50] * 6
    with pytest.raises(DataError, match="no clip with at least 51"):
        MotionWindows(motion_dataset, "train", motion_field="gt_3d", num_frames=30, min_frames=51)


def test_normalizer_statistics_of_smoothed_motion_are_not_inflated_by_jitter(tmp_path):
    from conftest import make_motion_dataset

    from videomdm.data.clip import load_clip, read_dataset_index, save_clip
    from videomdm.representation import FeatureLayout

    root = make_motion_dataset(tmp_path / "data")
    rng = np.random.default_rng(0)
    for path in read_dataset_index(root).clip_paths("train"):  # a lifter's per-frame jitter on the teacher
        clip = load_clip(path)
        clip.teacher_3d = clip.gt_3d + rng.normal(scale=0.03, size=clip.gt_3d.shape).astype(np.float32)
        save_clip(path, clip)
    layout = FeatureLayout(22)

    def root_velocity_std(field: str, smoothing: float) -> float:
        windows = MotionWindows(root, "train", motion_field=field, num_frames=40, min_frames=20)
        return float(windows.normalizer(smoothing=smoothing).std[layout.root_linear_velocity].mean())

    clean, jittery = root_velocity_std("gt_3d", 0.0), root_velocity_std("teacher_3d", 0.0)
    smoothed = root_velocity_std("teacher_3d", 2.0)
    assert jittery > 2 * clean
    assert abs(smoothed - clean) < 0.5 * (jittery - clean)
