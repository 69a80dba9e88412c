"""Video and keypoint-file input: importers, resampling, gaps, the static camera, the detector teacher, captions,
resumable preparation and bad input. Synthetic data only (the real-video test is in test_video_integration.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import walk

from videomdm.camera import project_to_pixels
from videomdm.cli import main
from videomdm.data.captions import match_captions, read_captions
from videomdm.data.clip import load_clip, read_dataset_index
from videomdm.data.errors import DataError
from videomdm.data.keypoint_formats import read_keypoints, track_main_person
from videomdm.data.observed import (CAMERA_ROTATION, KeypointSequence, default_focal_px,
                                    ground_clip, identity_switches, intrinsics_for, prepare_sequences, resample_sequence, split_at_gaps,
                                    clip_reprojection_px)
from videomdm.teacher import detector_teacher
from videomdm.skeleton import (BLAZEPOSE_33, COCO_17, H36M_17, OPENPOSE_25, SMPL_22, blazepose_to_smpl22,
                               joint_map)

IMAGE = (1280, 720)
T_CAMERA = np.array([0.0, 1.0, 5.0])  # the person stands ~5 m in front of the estimated camera


def _pixels(world: np.ndarray, K: np.ndarray, R: np.ndarray = CAMERA_ROTATION, t: np.ndarray = T_CAMERA):
    to = torch.as_tensor
    return project_to_pixels(to(world, dtype=torch.float64)[None], to(K), to(R)[None], to(t)[None])[0].numpy()


def _walk_in(skeleton, frames=40):
    """A synthetic walk's keypoints in another skeleton (joints it lacks: confidence 0), plus the SMPL-22 walk."""
    world = walk(frames, seed=3).astype(np.float64)
    world[..., 0] -= world[:, :1, 0].mean()
    world[..., 2] -= world[:, :1, 2].mean()
    uv = _pixels(world, intrinsics_for(IMAGE))
    mapped, present = joint_map(SMPL_22, skeleton).apply(uv)
    conf = np.tile(present.astype(float), (frames, 1))
    return mapped, conf, world


# --- skeleton: the BlazePose derivation ------------------------------------------------------------------------------


def test_blazepose_derivation_is_affine_and_lowers_derived_confidence():
    d = blazepose_to_smpl22()
    assert np.allclose(d.weights.sum(1), 1.0)
    points = np.random.default_rng(0).normal(size=(5, 33, 3))
    shift = np.array([1.0, -2.0, 3.0])
    assert np.allclose(d.apply(points + shift), d.apply(points) + shift)  # commutes with translation
    pelvis, neck = d.apply(points)[:, SMPL_22.index("pelvis")], d.apply(points)[:, SMPL_22.index("neck")]
    spine2 = d.apply(points)[:, SMPL_22.index("spine2")]
    assert np.allclose(spine2, pelvis + 0.45 * (neck - pelvis))
    conf = d.confidence(np.full((2, 33), 0.8))
    assert conf[0, SMPL_22.index("left_knee")] == pytest.approx(0.8)
    assert conf[0, SMPL_22.index("spine1")] == pytest.approx(0.4)
    assert conf[0, SMPL_22.index("left_collar")] == pytest.approx(0.4)
    assert joint_map(OPENPOSE_25, SMPL_22).present.sum() == 17


# --- sequences: resampling, gaps, camera -----------------------------------------------------------------------------


def _sequence(frames=30, fps=30.0, joints=17, skeleton="coco17", **kw):
    t = np.arange(frames, dtype=float)
    keypoints = np.stack([np.stack([t * 2 + j, t * 3 - j], -1) for j in range(joints)], 1)  # linear in time
    return KeypointSequence(name="s", keypoints=keypoints, confidence=np.ones((frames, joints)), skeleton=skeleton,
                            fps=fps, image_size=IMAGE, source="test", **kw)


def test_resampling_interpolates_linearly_and_never_across_a_gap():
    seq = _sequence(frames=31, fps=30.0)
    seq.confidence[10] = 0.0
    out = resample_sequence(seq, 20.0)
    assert out.fps == 20.0 and out.num_frames == 21  # 1 s at 20 fps
    source_time = np.arange(21) * 1.5  # output frame k is at source frame 1.5 k
    assert np.allclose(out.keypoints[:, 0, 0], source_time * 2)
    gap = [k for k in range(21) if 9 < source_time[k] < 11]
    assert gap and (out.confidence[gap] == 0).all() and (np.delete(out.confidence, gap, axis=0) == 1).all()


def test_unknown_fps_is_refused():
    with pytest.raises(DataError, match="frame rate unknown"):
        resample_sequence(_sequence(fps=None), 20.0)


def test_wrong_joint_count_names_the_source():
    with pytest.raises(DataError, match=r"test: s: keypoints must be \(T, 17, 2\)"):
        _sequence(joints=16)


def test_split_at_gaps():
    detected = np.array([0, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0], dtype=bool)
    assert split_at_gaps(detected, max_gap=1, min_length=2) == [(1, 6), (9, 13)]
    assert split_at_gaps(detected, max_gap=3, min_length=2) == [(1, 13)]
    assert split_at_gaps(detected, max_gap=1, min_length=5) == [(1, 6)]
    assert split_at_gaps(np.zeros(5, bool), max_gap=1, min_length=1) == []
    breaks = np.zeros(14, bool)
    breaks[11] = True
    assert split_at_gaps(detected, max_gap=3, min_length=2, breaks=breaks) == [(1, 11), (11, 13)]


def test_a_jump_to_another_person_is_an_identity_switch():
    box = np.array([[100.0, 100.0], [140.0, 200.0]])  # diagonal ≈ 108 px
    keypoints = np.stack([box, box + 10, box + 400, box + 410])  # (T=4, J=2, 2)
    switches = identity_switches(keypoints, np.ones((4, 2)), np.ones(4, bool))
    assert switches.tolist() == [False, False, True, False]


def test_intrinsics_default_focal_and_fov():
    assert default_focal_px((1600, 1200)) == pytest.approx(2000.0)
    K = intrinsics_for((1600, 1200))
    assert K[0, 0] == K[1, 1] == pytest.approx(2000.0) and (K[0, 2], K[1, 2]) == (800.0, 600.0)
    assert intrinsics_for((1600, 1200), focal_px=900.0)[0, 0] == 900.0
    assert intrinsics_for((1600, 1200), fov_deg=90.0)[0, 0] == pytest.approx(800.0)
    with pytest.raises(ValueError, match="not both"):
        intrinsics_for((1600, 1200), focal_px=900.0, fov_deg=90.0)


# --- teacher and grounding -------------------------------------------------------------------------------------------


def _blazepose_body(world_smpl: np.ndarray) -> np.ndarray:
    """(T, 33, 3) BlazePose points of an SMPL-22 body: mapped joints where they exist, the rest near a neighbour."""
    out = np.zeros(world_smpl.shape[:1] + (33, 3))
    near = {"nose": "head", "eye": "head", "ear": "head", "mouth": "head", "pinky": "wrist", "index": "wrist",
            "thumb": "wrist", "heel": "ankle", "foot_index": "foot"}
    rng = np.random.default_rng(1)
    for j, name in enumerate(BLAZEPOSE_33.joint_names):
        side = "left" if "left" in name else "right"
        smpl = name if name in SMPL_22.joint_names else None
        if smpl is None:
            key = next(k for k in near if k in name)
            smpl = near[key] if near[key] == "head" else f"{side}_{near[key]}"
        out[:, j] = world_smpl[:, SMPL_22.index(smpl)] + (0 if name in SMPL_22.joint_names or key == "foot_index"
                                                           else rng.normal(scale=0.03, size=3))
    return out


def test_detector_teacher_recovers_the_world_body_and_grounding_keeps_pixels():
    from videomdm.data.clip import Clip

    world_smpl = walk(30, seed=2).astype(np.float64)
    body = _blazepose_body(world_smpl)  # (T, 33, 3) world
    K = intrinsics_for(IMAGE)
    R, t = CAMERA_ROTATION, T_CAMERA
    cam = body @ R.T + t
    hips = cam[:, BLAZEPOSE_33.indices(["left_hip", "right_hip"])].mean(1, keepdims=True)
    clip = Clip(name="c", fps=20.0, skeleton="smpl22", source="test", keypoints_2d=_pixels(body, K, R, t),
                confidence=np.ones((30, 33)), keypoint_skeleton="blazepose33", K=K, R=R, t=np.zeros(3),
                image_size=IMAGE)
    teacher = detector_teacher(clip, cam - hips)  # the detector's hip-centred 3D in camera axes
    # The estimated camera sits at the origin: the teacher is the body as that camera sees it.
    expected = blazepose_to_smpl22().apply(cam) @ R
    assert np.allclose(teacher, expected, atol=1e-6)
    clip.teacher_3d = teacher.astype(np.float32)
    grounded = ground_clip(clip)
    # Only the mean joints (pelvis, neck, head) differ: the projection of a mean is not the mean of projections.
    assert clip_reprojection_px(clip) < 0.2
    assert clip_reprojection_px(grounded) == pytest.approx(clip_reprojection_px(clip), abs=1e-3)
    left, right = SMPL_22.foot_indices
    assert abs(np.percentile(grounded.teacher_3d[:, left + right, 1].min(1), 5)) < 1e-5  # floor at y = 0
    assert np.allclose(grounded.teacher_3d[0, 0, [0, 2]], 0.0, atol=1e-5)  # root x, z at the origin
    # A gap (no detection, NaN 3D): the detector's 3D and the root translation are interpolated linearly, so with a
    # static camera the teacher in the gap is the linear interpolation of its neighbours; other frames are unchanged.
    gap = [11, 12, 13]
    detector = cam - hips
    detector[gap] = np.nan
    clip.confidence = clip.confidence.copy()
    clip.confidence[:, gap] = 0.0  # (V, T, J2)
    gapped = detector_teacher(clip, detector)
    assert np.allclose(np.delete(gapped, gap, axis=0), np.delete(teacher, gap, axis=0), atol=1e-9)
    for k, frame in enumerate(gap, start=1):
        assert np.allclose(gapped[frame], teacher[10] + k / 4 * (teacher[14] - teacher[10]), atol=1e-9)


# --- importers -------------------------------------------------------------------------------------------------------


def test_track_main_person_keeps_the_largest_then_follows_it():
    small = (np.array([[0.0, 0.0], [10.0, 10.0]]), np.ones(2))
    large = (np.array([[100.0, 100.0], [200.0, 300.0]]), np.ones(2))
    moved_large = (large[0] + 20.0, np.ones(2))
    far_big = (np.array([[900.0, 900.0], [1200.0, 1300.0]]), np.ones(2))
    keypoints, conf = track_main_person([[small, large], [], [small, moved_large, far_big]], 2)
    assert np.allclose(keypoints[0], large[0]) and (conf[1] == 0).all() and np.allclose(keypoints[2], moved_large[0])


def _coco_people(uv, conf):
    return [np.concatenate([uv, conf[:, None]], -1).reshape(-1).tolist()]


def test_coco_mmpose_and_result_list(tmp_path):
    uv, conf, _ = _walk_in(COCO_17, frames=12)
    mmpose = {"meta_info": {}, "instance_info": [
        {"frame_id": f + 1, "instances": [{"keypoints": uv[f].tolist(), "keypoint_scores": conf[f].tolist(),
                                           "bbox": [[0, 0, 1, 1]]}]} for f in range(12)]}
    (tmp_path / "a.json").write_text(json.dumps(mmpose))
    results = [{"image_id": f, "category_id": 1, "keypoints": _coco_people(uv[f], conf[f])[0], "score": 0.9}
               for f in range(12) if f != 5]
    (tmp_path / "b.json").write_text(json.dumps(results))
    (a,) = read_keypoints(tmp_path / "a.json", "coco17", fps=30.0)
    (b,) = read_keypoints(tmp_path / "b.json", "coco17", fps=30.0)
    assert a.skeleton == b.skeleton == "coco17" and a.num_frames == b.num_frames == 12
    assert np.allclose(a.keypoints, uv) and np.allclose(a.confidence, conf)
    assert (b.confidence[5] == 0).all() and np.allclose(b.keypoints[6], uv[6])


def test_openpose_folder_groups_videos_and_keeps_the_main_person(tmp_path):
    uv, conf, _ = _walk_in(OPENPOSE_25, frames=8)
    for video in ("clipA", "clipB"):
        for f in range(8):
            main_person = np.concatenate([uv[f], conf[f][:, None]], -1).reshape(-1).tolist()
            bystander = np.concatenate([uv[f] * 0.1, conf[f][:, None]], -1).reshape(-1).tolist()
            people = [{"pose_keypoints_2d": bystander}, {"pose_keypoints_2d": main_person}]
            (tmp_path / f"{video}_{f:012d}_keypoints.json").write_text(json.dumps({"people": people}))
    sequences = read_keypoints(tmp_path, "openpose", fps=25.0)
    assert [s.name for s in sequences] == ["clipA", "clipB"]
    assert np.allclose(sequences[0].keypoints, uv) and sequences[0].skeleton == "body25"


def test_alphapose_and_wrong_joint_count(tmp_path):
    uv, conf, _ = _walk_in(COCO_17, frames=6)
    entries = [{"image_id": f"{f}.jpg", "category_id": 1, "keypoints": _coco_people(uv[f], conf[f])[0],
                "box": [0, 0, 10, 10], "idx": 1, "score": 2.5} for f in range(6)]
    (tmp_path / "ap.json").write_text(json.dumps(entries))
    (seq,) = read_keypoints(tmp_path / "ap.json", "alphapose", fps=30.0)
    assert np.allclose(seq.keypoints, uv)
    entries[2]["keypoints"] = entries[2]["keypoints"][:-3]  # 16 joints
    (tmp_path / "bad.json").write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"bad\.json: entry 2: 16 keypoints per person, the format has 17"):
        read_keypoints(tmp_path / "bad.json", "alphapose", fps=30.0)


def test_h36m_npz_plain_and_pickled(tmp_path):
    uv, conf, _ = _walk_in(H36M_17, frames=10)
    np.savez(tmp_path / "plain.npz", walk=np.concatenate([uv, conf[..., None]], -1), fps=np.array(50.0),
             image_size=np.array(IMAGE))
    (seq,) = read_keypoints(tmp_path / "plain.npz", "h36m")
    assert seq.fps == 50.0 and seq.image_size == IMAGE and seq.name == "plain_walk"
    positions = {"S1": {"Walking": [uv.astype(np.float32), uv.astype(np.float32) + 1]}}
    with open(tmp_path / "vp3d.npz", "wb") as f:
        np.savez(f, positions_2d=np.array(positions, dtype=object),
                 metadata=np.array({"layout_name": "h36m"}, dtype=object))
    with pytest.raises(DataError, match="vp3d.npz: holds pickled objects.*--allow-pickle"):
        read_keypoints(tmp_path / "vp3d.npz", "h36m", fps=50.0)
    sequences = read_keypoints(tmp_path / "vp3d.npz", "h36m", fps=50.0, allow_pickle=True)
    assert [s.name for s in sequences] == ["vp3d_S1_Walking_cam0", "vp3d_S1_Walking_cam1"]
    np.savez(tmp_path / "wrong.npz", walk=np.zeros((10, 16, 2)))
    with pytest.raises(DataError, match=r"wrong.npz: array 'walk' has shape \(10, 16, 2\)"):
        read_keypoints(tmp_path / "wrong.npz", "h36m", fps=50.0)


# --- captions --------------------------------------------------------------------------------------------------------


def test_captions_json_csv_and_unknown_names(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"a.mp4": "a person jumps", "b": ["walks", "strolls"], "zz": "x"}))
    (tmp_path / "c.csv").write_text("name,caption\na,a person jumps\nb,walks\nb,strolls\n")
    from_json, from_csv = read_captions(tmp_path / "c.json"), read_captions(tmp_path / "c.csv")
    assert from_csv == {"a": ["a person jumps"], "b": ["walks", "strolls"]}
    matched, unknown = match_captions(from_json, ["a", "b"])
    assert matched == from_csv and unknown == ["zz"]
    (tmp_path / "bad.csv").write_text("file,words\na,b\n")
    with pytest.raises(DataError, match="bad.csv: a captions CSV needs a header"):
        read_captions(tmp_path / "bad.csv")


# --- preparation: resumable, mixed fps, one bad file -----------------------------------------------------------------


def _camera_teacher_file(path: Path, names_and_worlds: dict[str, np.ndarray]) -> Path:
    """A teacher file in the estimated camera's frame (what an external lifter would give)."""
    arrays = {name: world @ CAMERA_ROTATION.T + T_CAMERA for name, world in names_and_worlds.items()}
    np.savez(path, __frame__=np.array("camera"), **arrays)
    return path


def test_prepare_keypoints_cli_mixed_fps_bad_file_captions_and_resume(tmp_path, capsys):
    src = tmp_path / "kp"
    src.mkdir()
    uv, conf, world = _walk_in(H36M_17, frames=40)
    np.savez(src / "a.npz", walk=np.concatenate([uv, conf[..., None]], -1), fps=np.array(20.0),
             image_size=np.array(IMAGE))
    # the same motion recorded at 40 fps: every frame twice
    np.savez(src / "b.npz", walk=np.repeat(np.concatenate([uv, conf[..., None]], -1), 2, axis=0)[:79],
             fps=np.array(40.0), image_size=np.array(IMAGE))
    np.savez(src / "c.npz", walk=np.zeros((40, 16, 2)))  # wrong joint count
    teacher = _camera_teacher_file(tmp_path / "teacher.npz", {"a_walk_00": world, "b_walk_00": world})
    (tmp_path / "captions.json").write_text(json.dumps({"a_walk": "a person walks", "ghost": "nobody"}))
    out = tmp_path / "data"
    args = ["prepare", "keypoints", str(src), "--format", "h36m", "--out", str(out), "--teacher", "file",
            "--teacher-file", str(teacher), "--captions", str(tmp_path / "captions.json")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "c.npz: array 'walk' has shape (40, 16, 2)" in printed  # the bad file is reported, the others done
    assert "resampled to 20 fps" in printed and "'ghost', which is not among the sources" in printed
    index = read_dataset_index(out)
    clips = [load_clip(p) for p in index.clip_paths("train")]
    assert sorted(c.name for c in clips) == ["a_walk_00", "b_walk_00"] and index.fps == 20.0
    by_name = {c.name: c for c in clips}
    assert by_name["a_walk_00"].text == ["a person walks"] and by_name["b_walk_00"].text == []
    assert len(by_name["b_walk_00"].teacher_3d) == 40
    for clip in clips:  # the exact teacher of the exact keypoints: pixels agree after grounding
        assert clip_reprojection_px(clip) < 1e-2
    (src / "a.npz").write_bytes(b"not an npz")  # a finished file is not read again on resume
    assert main(args) == 0  # a second run resumes
    printed = capsys.readouterr().out
    assert "a_walk: already prepared" in printed and "b_walk: already prepared" in printed
    assert "a.npz" not in printed and "c.npz: array 'walk' has shape" in printed  # the bad file is read again
    assert main(args + ["--fps", "25"]) == 2  # resuming with other settings is refused
    assert "was prepared with other settings" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "clips" / "train").iterdir()) == ["a_walk_00.npz", "b_walk_00.npz"]


def test_prepare_sequences_reports_an_empty_source_and_refuses_when_nothing_is_left(tmp_path):
    empty = _sequence()
    empty.confidence[:] = 0.0

    def never(clip, detector_3d):
        raise AssertionError("no clip, no teacher")

    with pytest.raises(DataError, match="no clip was made.*no person detected"):
        prepare_sequences([("s", "test", lambda: empty)], tmp_path / "out", fps=20.0, teacher=never,
                          teacher_name="none", dataset_name="x", log=lambda _: None)
    assert not (tmp_path / "out" / "dataset.json").exists()


# --- lifting a video: one decode for all overlays --------------------------------------------------------------------


def test_lift_video_decodes_the_video_once_for_all_overlays(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import videomdm.footage as footage

    frames, gap = 60, range(22, 37)  # two clips: frames 0-21 and 37-59 (the gap is longer than max_gap_s)
    world_smpl = walk(frames, seed=2).astype(np.float64)
    body = _blazepose_body(world_smpl)
    K = intrinsics_for(IMAGE)
    cam = body @ CAMERA_ROTATION.T + T_CAMERA
    hips = cam[:, BLAZEPOSE_33.indices(["left_hip", "right_hip"])].mean(1, keepdims=True)
    confidence = np.ones((frames, 33))
    confidence[gap] = 0.0
    seq = KeypointSequence(name="v", keypoints=_pixels(body, K), confidence=confidence, skeleton="blazepose33",
                           fps=20.0, image_size=IMAGE, source="v.mp4", world=cam - hips)
    decodes, overlays = [], {}

    def frames_of_the_video(video, fps, max_seconds=None):
        decodes.append(video)
        for k in range(frames):  # frame k is filled with the value k
            yield np.full((8, 12, 3), k, dtype=np.uint8)

    def record_overlay(frames, *args, **kwargs):
        out = args[-1]
        overlays[out.stem] = [int(frame[0, 0, 0]) for frame in frames]
        return out

    monkeypatch.setattr(footage, "detect_video", lambda video, **kwargs: seq)
    monkeypatch.setattr(footage, "iter_frames", frames_of_the_video)
    monkeypatch.setattr(footage, "render_overlay", record_overlay)
    monkeypatch.setattr(footage, "lift", lambda run, teacher_3d, observations, **kwargs: teacher_3d)
    run = SimpleNamespace(config=SimpleNamespace(data=SimpleNamespace(fps=20.0)), skeleton=SMPL_22,
                          checkpoint=Path("none"))
    metrics = footage.lift_video(run, Path("v.mp4"), tmp_path, log=lambda _: None)
    assert {name: row["start_frame"] for name, row in metrics["clips"].items()} == {"v_00": 0, "v_01": 37}
    assert len(decodes) == 1
    assert overlays == {"v_00": list(range(0, 22)), "v_01": list(range(37, 60))}  # each clip gets its own frames
    # The lift here returns the teacher, so both move alike; the video's figure weighs each clip by its frames.
    rows = metrics["clips"].values()
    assert all(row["lift_accel_ms2"] == row["teacher_accel_ms2"] > 0 for row in rows)
    assert metrics["lift_accel_ms2"] == pytest.approx(
        sum(row["lift_accel_ms2"] * row["frames"] for row in rows) / sum(row["frames"] for row in rows))
    assert metrics["settings"]["samples"] == 8  # the lifting settings travel with the result


# --- videos: bad input -----------------------------------------------------------------------------------------------


@pytest.mark.integration  # starts MediaPipe (seconds)
def test_videos_that_are_empty_unreadable_or_without_a_person(tmp_path, capsys):
    pytest.importorskip("mediapipe")
    import imageio.v3 as iio

    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(b"not a video")
    (folder / "empty.mp4").write_bytes(b"")
    frames = np.full((12, 96, 128, 3), 90, dtype=np.uint8)  # grey, nobody in view
    iio.imwrite(folder / "nobody.mp4", frames, fps=10, codec="libx264", macro_block_size=1)
    assert main(["prepare", "video", str(folder), "--out", str(tmp_path / "data"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "broken.mp4: cannot read the video" in captured.out and "empty.mp4: cannot read the video" in captured.out
    assert "no person detected in any frame" in captured.err
    assert not (tmp_path / "data" / "dataset.json").exists()
    with pytest.raises(DataError, match="no video files"):
        from videomdm.data.video import find_videos
        find_videos(tmp_path / "data")


def test_a_missing_mediapipe_gives_the_install_command(tmp_path, monkeypatch, capsys):
    import sys

    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import mediapipe raises ImportError
    assert main(["prepare", "video", str(video), "--out", str(tmp_path / "data")]) == 2
    assert "pip install 'videomdm[video]'" in capsys.readouterr().err


@pytest.mark.integration  # trains a tiny lifter (about 2 s)
def test_prepare_keypoints_with_the_builtin_lifter_teacher(tmp_path, capsys):
    from test_lifter import TINY, _dataset

    from videomdm.teacher import LifterConfig, train_lifter

    lifter = train_lifter(_dataset(tmp_path / "mocap", num_clips=2, frames=40), tmp_path / "lifter", split="lifter",
                          config=LifterConfig(**TINY, steps=3, keypoint_skeleton="coco17"), progress=False)
    uv, conf, _ = _walk_in(COCO_17, frames=30)
    results = [{"image_id": f, "keypoints": np.concatenate([uv[f], conf[f][:, None]], -1).reshape(-1).tolist()}
               for f in range(30)]
    (tmp_path / "walk.json").write_text(json.dumps(results))
    out = tmp_path / "data"
    assert main(["prepare", "keypoints", str(tmp_path / "walk.json"), "--format", "coco17", "--out", str(out),
                 "--source-fps", "20", "--image-size", *map(str, IMAGE), "--lifter", str(lifter)]) == 0
    (clip,) = [load_clip(p) for p in read_dataset_index(out).clip_paths("train")]
    assert clip.teacher_3d.shape == (30, 22, 3) and clip.keypoint_skeleton == "coco17" and clip.image_size == IMAGE
    assert np.isfinite(clip.teacher_3d).all()
    assert '"teacher_reprojection_px"' in capsys.readouterr().out
