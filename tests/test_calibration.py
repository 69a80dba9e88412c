"""Calibrated rigs: every reader into the project frame (metres, y up, OpenCV camera axes), the project's JSON round
trip, clear errors for malformed files, and the lens model against OpenCV's."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from videomdm.camera import intrinsics, look_at
from videomdm.data.calibration import (CameraCalibration, Rig, distort_normalized, distort_points, read_rig,
                                       to_project_frame, undistort_normalized, undistort_points, write_rig)
from videomdm.data.errors import DataError
from videomdm.data.rig_demo import fetch_rig_demo
from videomdm.triangulation import project

# File world (z up) → project world (y up): X_p = A X_f.
A_ZUP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
DIST = np.array([-0.21, 0.08, 0.001, -0.0015, -0.01])


def make_rig(num: int = 4, seed: int = 0) -> Rig:
    """``num`` cameras 3–5 m around the origin, 1.5–2.5 m high, looking at the body's middle, project frame."""
    rng = np.random.default_rng(seed)
    cameras = []
    for k in range(num):
        angle = 2 * np.pi * k / num + rng.uniform(-0.3, 0.3)
        distance = rng.uniform(3, 5)
        eye = torch.tensor([distance * np.sin(angle), rng.uniform(1.5, 2.5), distance * np.cos(angle)])
        R, t = look_at(eye[None], torch.tensor([[0.0, 0.9, 0.0]]))
        K = intrinsics(float(rng.uniform(900, 1300)), (1280, 720), dtype=torch.float64).numpy()
        K[0, 2] += rng.uniform(-20, 20)
        cameras.append(CameraCalibration(name=f"cam{k + 1}", K=K, R=R[0].double().numpy(), t=t[0].double().numpy(),
                                         distortion=DIST * rng.uniform(0.5, 1.0), image_size=(1280, 720)))
    return Rig(tuple(cameras), source="test")


def assert_same_rig(a: Rig, b: Rig, atol: float = 1e-6) -> None:
    assert a.names == b.names
    for ca, cb in zip(a.cameras, b.cameras):
        np.testing.assert_allclose(ca.K, cb.K, atol=atol)
        np.testing.assert_allclose(ca.R, cb.R, atol=atol)
        np.testing.assert_allclose(ca.t, cb.t, atol=atol)
        np.testing.assert_allclose(ca.distortion, cb.distortion, atol=atol)
        assert ca.image_size == cb.image_size


def test_json_round_trip(tmp_path):
    rig = make_rig()
    path = write_rig(rig, tmp_path / "rig.json")
    back = read_rig(path)
    assert_same_rig(rig, back, atol=0)
    assert json.loads(path.read_text())["units"] == "m"


def write_toml(path: Path, rig: Rig, scale: float = 1.0) -> Path:
    """A Pose2Sim-style TOML of ``rig`` in a z-up world, lengths × ``scale``."""
    lines = []
    for c in rig.cameras:
        R_file = c.R @ A_ZUP  # X_c = R X_p + t = R A X_f + t
        rotvec = Rotation.from_matrix(R_file).as_rotvec()
        lines += [f"[{c.name}]", f'name = "{c.name}"', f"size = [ {c.image_size[0]}.0, {c.image_size[1]}.0]",
                  f"matrix = {json.dumps(c.K.tolist())}", f"distortions = {json.dumps(c.distortion[:4].tolist())}",
                  f"rotation = {json.dumps(rotvec.tolist())}", f"translation = {json.dumps((c.t * scale).tolist())}",
                  "fisheye = false", ""]
    lines += ["[metadata]", "adjusted = false", "error = 0.0"]
    path.write_text("\n".join(lines))
    return path


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_toml_z_up_is_converted(tmp_path, scale):
    rig = make_rig()
    path = write_toml(tmp_path / "Calib_board.toml", rig, scale)
    back = read_rig(path)
    expected = Rig(tuple(CameraCalibration(c.name, c.K, c.R, c.t, c.distortion[:4], c.image_size)
                         for c in rig.cameras))
    assert_same_rig(expected, back)
    notes = " ".join(back.notes)
    assert "world up: +z (estimated" in notes and ("units: mm" if scale > 1 else "units: m ") in notes
    # Same pixels: a point of the file's world projects where its project-frame twin does.
    X_file = np.array([0.3, -0.2, 1.1])
    uv_file, _ = project(X_file, np.stack([c.K for c in rig.cameras]), np.stack([c.R @ A_ZUP for c in rig.cameras]),
                         np.stack([c.t for c in rig.cameras]))
    uv_project, _ = project(A_ZUP @ X_file, back.K, back.R, back.t)
    np.testing.assert_allclose(uv_file, uv_project, atol=1e-6)


def write_qca(path: Path, rig: Rig, left: int = 0, top: int = 0) -> Path:
    """A Qualisys .qca.txt of ``rig`` (z-up world in mm, camera axes y up z backward, sub-pixel intrinsics)."""
    F = np.diag([1.0, -1.0, -1.0])
    cams = []
    for c in rig.cameras:
        M = F @ c.R @ A_ZUP  # X_qcam = M (X_q − C_q)
        C = A_ZUP.T @ c.center * 1000
        r = " ".join(f'r{i + 1}{j + 1}="{M[i, j]!r}"' for i in range(3) for j in range(3))
        k1, k2, p1, p2, k3 = c.distortion
        w, h = c.image_size
        cams.append(
            f'<camera active="1" serial="{c.name}" model="none">'
            f'<fov_video left="{left}" top="{top}" right="{left + w - 1}" bottom="{top + h - 1}"/>'
            f'<transform x="{C[0]!r}" y="{C[1]!r}" z="{C[2]!r}" {r}/>'
            f'<intrinsic focalLengthU="{c.K[0, 0] * 64!r}" focalLengthV="{c.K[1, 1] * 64!r}" '
            f'centerPointU="{(c.K[0, 2] + left) * 64!r}" centerPointV="{(c.K[1, 2] + top) * 64!r}" '
            f'radialDistortion1="{k1!r}" radialDistortion2="{k2!r}" radialDistortion3="{k3!r}" '
            f'tangentalDistortion1="{p1!r}" tangentalDistortion2="{p2!r}"/></camera>')
    cams.append('<camera active="0" serial="unused" model="none"/>')
    path.write_text(f"<?xml version='1.0'?><calibration><cameras>{''.join(cams)}</cameras></calibration>")
    return path


def test_qualisys_written_by_the_test(tmp_path):
    rig = make_rig()
    back = read_rig(write_qca(tmp_path / "Calib.qca.txt", rig, left=8, top=4))
    assert_same_rig(rig, back)
    assert back.notes[0].startswith("format: qualisys")


def test_qualisys_shipped_with_pose2sim(request):
    demo = fetch_rig_demo(Path(request.config.cache.mkdir("videomdm-pose2sim")))
    rig = read_rig(demo / "calibration" / "Calib.qca.txt")
    assert rig.names == ["cam01", "cam02", "cam03", "cam04"]
    for camera in rig.cameras:
        assert camera.image_size == (1088, 1920)
        assert 1600 < camera.K[0, 0] < 1750 and abs(camera.K[0, 2] - 544) < 40
        assert 1.5 < camera.center[1] < 2.3  # phones on tripods, metres above the floor (y up)
    # Every camera sees the capture volume's middle (1 m above the origin) in front of it, inside its image.
    uv, depth = project(np.array([0.0, 1.0, 0.0]), rig.K, rig.R, rig.t)
    assert (depth > 2).all()
    assert ((uv >= 0) & (uv < [1088, 1920])).all()


def test_opencv_filestorage_yaml_and_xml(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rig = make_rig(3)
    for suffix in (".yml", ".xml"):
        single = tmp_path / f"cam1{suffix}"
        storage = cv2.FileStorage(str(single), cv2.FILE_STORAGE_WRITE)
        c = rig.cameras[0]
        storage.write("image_width", c.image_size[0])
        storage.write("image_height", c.image_size[1])
        storage.write("camera_matrix", c.K)
        storage.write("dist_coeffs", c.distortion.reshape(1, -1))
        storage.write("rvec", Rotation.from_matrix(c.R).as_rotvec().reshape(3, 1))
        storage.write("T", c.t.reshape(3, 1) * 1000)  # millimetres
        storage.release()
        back = read_rig(single, up="+y")
        assert back.names == ["cam1"] and "units: mm (assumed" in " ".join(back.notes)
        assert_same_rig(rig.subset([0]), back)

        several = tmp_path / f"rig{suffix}"
        storage = cv2.FileStorage(str(several), cv2.FILE_STORAGE_WRITE)
        storage.write("names", [c.name for c in rig.cameras])
        for c in rig.cameras:
            storage.write(f"K_{c.name}", c.K)
            storage.write(f"dist_{c.name}", c.distortion.reshape(1, -1))
            storage.write(f"Rot_{c.name}", c.R)
            storage.write(f"T_{c.name}", c.t.reshape(3, 1))
            storage.write(f"image_size_{c.name}", np.array(c.image_size, dtype=np.float64))
        storage.release()
        assert_same_rig(rig, read_rig(several, unit="m"))


def test_malformed_files_name_the_file_and_the_problem(tmp_path):
    rig = make_rig(2)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('[cam_01]\nmatrix = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\nsize = [10, 10]\n')
    with pytest.raises(DataError, match=r"bad\.toml: \[cam_01\] lacks distortions, rotation, translation"):
        read_rig(bad_toml)
    text = write_toml(tmp_path / "fish.toml", rig).read_text().replace("fisheye = false", "fisheye = true", 1)
    (tmp_path / "fish.toml").write_text(text)
    with pytest.raises(DataError, match=r"fish\.toml: \[cam1\] is a fisheye camera"):
        read_rig(tmp_path / "fish.toml")
    (tmp_path / "broken.toml").write_text("[cam_01\nmatrix = ")
    with pytest.raises(DataError, match=r"broken\.toml: not valid TOML"):
        read_rig(tmp_path / "broken.toml")
    (tmp_path / "none.toml").write_text("[metadata]\nerror = 0.0\n")
    with pytest.raises(DataError, match=r"none\.toml: no camera tables"):
        read_rig(tmp_path / "none.toml")
    qca = write_qca(tmp_path / "Calib.qca.txt", rig).read_text()
    (tmp_path / "cut.qca.txt").write_text(qca[: len(qca) // 2])
    with pytest.raises(DataError, match=r"cut\.qca\.txt: not a readable Qualisys calibration"):
        read_rig(tmp_path / "cut.qca.txt")
    (tmp_path / "nofocal.qca.txt").write_text(qca.replace("focalLengthU=", "focalLengthX="))
    with pytest.raises(DataError, match=r"nofocal\.qca\.txt: camera 'cam1': <intrinsic> has no 'focalLengthU'"):
        read_rig(tmp_path / "nofocal.qca.txt")
    not_rotation = write_rig(rig, tmp_path / "rig.json")
    data = json.loads(not_rotation.read_text())
    data["cameras"][1]["R"] = [[1, 0, 0], [0, 2, 0], [0, 0, 1]]
    not_rotation.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"rig\.json: camera 'cam2': R is not a rotation"):
        read_rig(not_rotation)
    (tmp_path / "other.json").write_text('{"cameras": []}')
    with pytest.raises(DataError, match=r"other\.json: not a videomdm rig"):
        read_rig(tmp_path / "other.json")
    (tmp_path / "rig.txt").write_text("1 2 3")
    with pytest.raises(DataError, match=r"rig\.txt: unknown calibration file type"):
        read_rig(tmp_path / "rig.txt")
    with pytest.raises(DataError, match=r"missing\.toml: calibration file does not exist"):
        read_rig(tmp_path / "missing.toml")
    with pytest.raises(DataError, match="states its units and up axis"):
        read_rig(tmp_path / "Calib.qca.txt", unit="m")


def test_up_axis_that_cannot_be_told_is_refused():
    # Two cameras looking at each other's image-up directions cancel: no axis is clearly up.
    upright = make_rig(1).cameras[0]
    upside_down = CameraCalibration("flipped", upright.K, np.diag([-1.0, -1.0, 1.0]) @ upright.R, upright.t,
                                    upright.distortion, upright.image_size)
    with pytest.raises(DataError, match="give the world up axis"):
        to_project_frame([upright, upside_down], unit="m", up="auto", source="two.toml")
    # Given explicitly, any of the six axes is accepted.
    assert to_project_frame([upright, upside_down], unit="m", up="+y").notes[-1] == "world up: +y"


def test_distortion_round_trip_and_agreement_with_opencv():
    rng = np.random.default_rng(1)
    K = np.array([[1000.0, 0, 650], [0, 1010.0, 355], [0, 0, 1]])
    uv = rng.uniform([0, 0], [1280, 720], size=(5, 40, 2))  # ideal pixels over the whole image
    for dist in (DIST, DIST[:4], np.array([-0.3, 0.1, 0.002, 0.001, 0.0, 0.05, 0.01, 0.002]), np.zeros(0)):
        distorted = distort_points(uv, K, dist)
        np.testing.assert_allclose(undistort_points(distorted, K, dist), uv, atol=1e-6)
    xy = rng.uniform(-0.6, 0.6, size=(100, 2))
    np.testing.assert_allclose(undistort_normalized(distort_normalized(xy, DIST), DIST), xy, atol=1e-9)
    cv2 = pytest.importorskip("cv2")
    points = np.concatenate([xy, np.ones((100, 1))], axis=1)
    projected, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), K, DIST)
    np.testing.assert_allclose(distort_points(xy @ K[:2, :2].T + K[:2, 2], K, DIST), projected[:, 0], atol=1e-6)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    ours = undistort_points(projected[:, 0], K, DIST)
    theirs = cv2.undistortPointsIter(projected, K, DIST, None, K, criteria)[:, 0]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
