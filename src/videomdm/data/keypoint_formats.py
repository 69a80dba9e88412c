"""Importers for keypoints that other detectors made: each file (or folder) becomes :class:`KeypointSequence` s.

Formats (``--format``):

- ``coco17``: COCO-17 JSON as MMPose / ViTPose write it, one file per video. Either MMPose's prediction file
  (``{"instance_info": [{"frame_id": f, "instances": [{"keypoints": [[x, y], ...], "keypoint_scores": [...],
  "bbox": [[x1, y1, x2, y2]]}]}], "meta_info": {...}}``) or a COCO result list (``[{"image_id": f, "keypoints":
  [x, y, score, ...], "bbox": [x, y, w, h], "score": s}, ...]``).
- ``openpose``: OpenPose BODY_25 per-frame JSON (``<video>_<frame>_keypoints.json`` with ``{"people":
  [{"pose_keypoints_2d": [x, y, c] × 25}]}``); files are grouped into videos by the name before the frame number.
- ``alphapose``: AlphaPose's result JSON (``[{"image_id": "12.jpg", "keypoints": [x, y, s] × 17, "box": [x, y, w,
  h], "idx": track}, ...]``), one file per video, COCO-17 joints.
- ``h36m``: ``.npz`` with one ``(T, 17, 2 | 3)`` array per sequence in Human3.6M-17 order (pixels, optional third
  column = confidence), optional ``fps`` and ``image_size`` arrays. VideoPose3D's archives (a pickled
  ``positions_2d`` dictionary: subject → action → one array per camera) are read only with ``allow_pickle=True``,
  because unpickling can run code from the file.

Files with several people per frame keep one main person (:func:`track_main_person`): the largest in the first frame
where anyone is seen, then in each frame the person closest to the previous position (within one body size), else
the largest again. Frames are numbered by the file's frame ids; missing frames get confidence 0.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..skeleton import COCO_17, H36M_17, OPENPOSE_25, Skeleton
from .errors import DataError
from .observed import KeypointSequence, person_box

__all__ = ["FORMATS", "track_main_person", "read_keypoints", "keypoint_files"]

FORMATS = ("coco17", "openpose", "alphapose", "h36m")

# One candidate person: (keypoints (J, 2), confidence (J,))
_Person = tuple[np.ndarray, np.ndarray]


def track_main_person(frames: list[list[_Person]], num_joints: int) -> tuple[np.ndarray, np.ndarray]:
    """One person per frame from per-frame candidate lists: ``(T, J, 2)`` keypoints and ``(T, J)`` confidences.

    The largest person starts the track; each next frame keeps the candidate nearest to the last kept position when
    it is within one body size of it, and otherwise (the person left, or a new track starts) the largest candidate.
    """
    keypoints = np.zeros((len(frames), num_joints, 2))
    confidence = np.zeros((len(frames), num_joints))
    last: tuple[np.ndarray, float] | None = None
    for f, people in enumerate(frames):
        people = [p for p in people if person_box(*p)[1] > 0]
        if not people:
            continue
        sizes = [person_box(*p) for p in people]
        choice = int(np.argmax([s for _, s in sizes]))
        if last is not None:
            distances = [np.linalg.norm(c - last[0]) for c, _ in sizes]
            nearest = int(np.argmin(distances))
            if distances[nearest] < max(last[1], sizes[nearest][1]):
                choice = nearest
        keypoints[f], confidence[f] = people[choice]
        last = sizes[choice]
    return keypoints, confidence


def _person(values: Any, num_joints: int, where: str, scores: Any = None) -> _Person:
    """``[x, y, c] × J`` flat, ``[[x, y], ...]`` with separate scores, or ``[[x, y, c], ...]`` → a person."""
    array = np.asarray(values, dtype=np.float64)
    if scores is not None:
        array = array.reshape(-1, 2)
        conf = np.asarray(scores, dtype=np.float64).reshape(-1)
    else:
        if array.ndim == 1:
            if array.size % 3:
                raise DataError(f"{where}: a flat keypoint list must hold (x, y, score) triples, got {array.size} "
                                f"numbers")
            array = array.reshape(-1, 3)
        if array.ndim != 2 or array.shape[1] not in (2, 3):
            raise DataError(f"{where}: keypoints must be (J, 2) or (J, 3), got shape {array.shape}")
        conf = array[:, 2] if array.shape[1] == 3 else np.ones(len(array))
        array = array[:, :2]
    if len(array) != num_joints or len(conf) != num_joints:
        raise DataError(f"{where}: {len(array)} keypoints per person, the format has {num_joints}")
    return array, np.clip(conf, 0.0, 1.0)


def _frame_number(value: Any, where: str) -> int:
    if isinstance(value, (int, np.integer)):
        return int(value)
    digits = re.findall(r"\d+", str(value))
    if not digits:
        raise DataError(f"{where}: cannot read a frame number from image id {value!r}")
    return int(digits[-1])


def _frames_by_id(entries: dict[int, list[_Person]]) -> list[list[_Person]]:
    if not entries:
        return []
    first, last = min(entries), max(entries)
    return [entries.get(f, []) for f in range(first, last + 1)]


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read JSON ({err})") from None


def _coco_like(path: Path, skeleton: Skeleton) -> list[list[_Person]]:
    data = _load_json(path)
    J = skeleton.num_joints
    entries: dict[int, list[_Person]] = {}
    if isinstance(data, dict) and "instance_info" in data:  # MMPose predictions
        for item in data["instance_info"]:
            f = _frame_number(item.get("frame_id"), str(path))
            for k, instance in enumerate(item.get("instances", [])):
                where = f"{path}: frame {f}, instance {k}"
                entries.setdefault(f, []).append(_person(instance["keypoints"], J, where,
                                                         instance.get("keypoint_scores")))
    elif isinstance(data, list):  # COCO / AlphaPose result list
        for k, item in enumerate(data):
            if not isinstance(item, dict) or "keypoints" not in item:
                raise DataError(f"{path}: entry {k} has no 'keypoints'")
            f = _frame_number(item.get("image_id", item.get("frame_id")), f"{path}: entry {k}")
            entries.setdefault(f, []).append(_person(item["keypoints"], J, f"{path}: entry {k}"))
    else:
        raise DataError(f"{path}: expected a list of detections or an MMPose file with 'instance_info'")
    return _frames_by_id(entries)


def _sequence(name: str, frames: list[list[_Person]], skeleton: Skeleton, fps: float | None, source: str,
              image_size: tuple[int, int] | None = None) -> KeypointSequence:
    if not frames:
        raise DataError(f"{source}: no detections")
    keypoints, confidence = track_main_person(frames, skeleton.num_joints)
    return KeypointSequence(name=name, keypoints=keypoints, confidence=confidence, skeleton=skeleton.name, fps=fps,
                            image_size=image_size, source=source)


def _read_openpose(folder: Path, fps: float | None) -> list[KeypointSequence]:
    files = sorted(folder.rglob("*_keypoints.json"))
    if not files:
        raise DataError(f"{folder}: no OpenPose files (<video>_<frame>_keypoints.json)")
    videos: dict[str, dict[int, list[_Person]]] = {}
    pattern = re.compile(r"^(.*?)_?(\d+)_keypoints\.json$")
    for path in files:
        match = pattern.match(path.name)
        if match is None:
            raise DataError(f"{path}: cannot read a frame number from the file name")
        video, frame = match.group(1) or path.parent.name, int(match.group(2))
        data = _load_json(path)
        people = data.get("people") if isinstance(data, dict) else None
        if not isinstance(people, list):
            raise DataError(f"{path}: no 'people' list")
        entry = videos.setdefault(video, {})
        entry[frame] = [_person(p.get("pose_keypoints_2d", []), OPENPOSE_25.num_joints, f"{path}: person {k}")
                        for k, p in enumerate(people)]
    return [_sequence(video, _frames_by_id(frames), OPENPOSE_25, fps, f"{folder}/{video}*")
            for video, frames in sorted(videos.items())]


def _arrays_in(value: Any, prefix: str, found: dict[str, np.ndarray]) -> None:
    """Every (T, J, 2|3) array inside nested dicts / lists, named by its path of keys and indices."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        value = value.item() if value.shape == () else list(value)
    if isinstance(value, dict):
        for key, item in value.items():
            _arrays_in(item, f"{prefix}_{key}" if prefix else str(key), found)
    elif isinstance(value, (list, tuple)):
        for k, item in enumerate(value):
            _arrays_in(item, f"{prefix}_cam{k}", found)
    elif isinstance(value, np.ndarray) and value.ndim == 3:
        found[prefix] = value


def _read_h36m(path: Path, fps: float | None, allow_pickle: bool) -> list[KeypointSequence]:
    try:
        with np.load(path, allow_pickle=allow_pickle) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise DataError(f"{path}: holds pickled objects (VideoPose3D's positions_2d); read it only if you trust "
                            f"the file, with --allow-pickle") from None
        raise DataError(f"{path}: cannot read .npz ({err})") from None
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read .npz ({err})") from None
    file_fps = float(arrays.pop("fps")) if "fps" in arrays else fps
    size = arrays.pop("image_size", None)
    image_size = None if size is None else (int(size[0]), int(size[1]))
    metadata = arrays.pop("metadata", None)
    skeleton = H36M_17
    if metadata is not None and metadata.dtype == object:
        layout = metadata.item().get("layout_name") if isinstance(metadata.item(), dict) else None
        if layout not in (None, "h36m"):
            raise DataError(f"{path}: keypoint layout {layout!r}; this importer reads Human3.6M-17 (layout 'h36m'), "
                            f"use --format coco17 for COCO layouts converted to JSON")
    found: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        _arrays_in(value, "" if key == "positions_2d" else key, found)
    if not found:
        raise DataError(f"{path}: no (T, 17, 2) keypoint arrays")
    stem = path.stem
    sequences = []
    for key, array in sorted(found.items()):
        name = f"{stem}_{key}" if key else stem
        if array.shape[1] != skeleton.num_joints or array.shape[2] not in (2, 3):
            raise DataError(f"{path}: array {key!r} has shape {array.shape}; expected (T, 17, 2) or (T, 17, 3) "
                            f"Human3.6M-17 keypoints")
        array = np.asarray(array, dtype=np.float64)
        conf = array[..., 2] if array.shape[2] == 3 else np.ones(array.shape[:2])
        sequences.append(KeypointSequence(name=name, keypoints=array[..., :2], confidence=conf, skeleton=skeleton.name,
                                          fps=file_fps, image_size=image_size, source=str(path)))
    return sequences


def read_keypoints(path: Path, fmt: str, *, fps: float | None = None,
                   allow_pickle: bool = False) -> list[KeypointSequence]:
    """The sequences in one keypoint file (or, for ``openpose``, one folder of per-frame files).

    ``fps`` is the source frame rate for formats that do not store it. DataError naming the file for a wrong joint
    count, an unreadable file or an unknown format.
    """
    path = Path(path)
    if fmt == "openpose":
        return _read_openpose(path, fps)
    if fmt in ("coco17", "alphapose"):
        frames = _coco_like(path, COCO_17)
        return [_sequence(path.stem, frames, COCO_17, fps, str(path))]
    if fmt == "h36m":
        return _read_h36m(path, fps, allow_pickle)
    raise DataError(f"unknown keypoint format {fmt!r}; known: {', '.join(FORMATS)}")


def keypoint_files(src: Path, fmt: str) -> list[Path]:
    """The files (or, for ``openpose``, folders) to import from ``src`` (a file or a folder)."""
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: does not exist")
    if fmt == "openpose":
        if not src.is_dir():
            raise DataError(f"{src}: OpenPose keypoints are a folder of per-frame JSON files")
        return [src]
    suffix = ".npz" if fmt == "h36m" else ".json"
    if src.is_file():
        return [src]
    files = sorted(p for p in src.rglob(f"*{suffix}") if p.is_file())
    if not files:
        raise DataError(f"{src}: no {suffix} files for format {fmt}")
    return files
