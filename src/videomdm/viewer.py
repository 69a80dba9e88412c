"""A motion viewer in one self-contained HTML file, and its blind comparison mode for user studies.

:func:`write_viewer` embeds the motions as JSON into ``viewer_template.html`` (plain canvas drawing with a small
perspective projection; no library, no network access when the file is opened). The page plays several motions side
by side (skeleton, ground grid, root trajectory, play/pause, scrub, speed, orbit by dragging, captions) and, for a
clip with 2D keypoints and a camera, a second panel with the keypoints and the 3D reprojected through the camera
(projection done here with :func:`videomdm.camera.project_to_pixels`).

Inputs (:func:`collect_motions`): a joints ``.npy`` ``(T, J, 3)`` or ``(N, T, J, 3)`` (captions and fps from a
``samples.json`` beside it, as ``videomdm sample`` writes, or from a sidecar ``<name>.json`` with ``fps`` / ``text``),
a clip ``.npz`` (its ``gt_3d`` and ``teacher_3d`` become two motions), a folder of those, a sample folder, or a
dataset folder (``dataset.json``; the clips of one split). Lifted clips (``videomdm lift`` writes ``<clip>.npy`` in
the clip's world frame) get their clip's 2D panel when the dataset is given (``clips_from``).

Blind comparison (:func:`write_comparison`): two sample folders (or runs holding ``samples/``) are paired by
caption (the i-th motion with a caption in A with the i-th with the same caption in B); pair order and left/right
are drawn from a seeded generator. The page shows only "left" and "right"; the assignment, the seed and the runs go
to a separate key file (``<out>.key.json``) that the raters must not see. The page's votes (JSON download) are
scored against the key by :mod:`videomdm.study`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .checkpoint import atomic_write_text
from .data.mocap import check_joints, load_joints, read_sidecar, recorded_fps
from .skeleton import SMPL_22, Skeleton, get_skeleton

__all__ = ["ViewerError", "ViewMotion", "collect_motions", "write_viewer", "write_comparison", "load_samples",
           "pair_by_caption", "TEMPLATE_MARK", "DEFAULT_FPS"]

TEMPLATE_MARK = "/*__VIEWER_DATA__*/"
DEFAULT_FPS = 20.0
STUDY_FORMAT = "videomdm-study-key"


class ViewerError(ValueError):
    """Input the viewer cannot show; the message names the file. Bad joints raise
    :class:`videomdm.data.errors.DataError` (:func:`videomdm.data.mocap.check_joints`)."""


@dataclass
class ViewMotion:
    """One motion for the page.

    Attributes:
        label: short name shown above the view.
        joints: (T, J, 3) metres, y up.
        fps: frames per second.
        skeleton: the joints' skeleton.
        caption: text shown under the view ("" for none).
        view2d: optional second panel: ``keypoints (T, J2, 2)`` pixels, ``confidence (T, J2)``, ``reprojection
            (T, J, 2)`` pixels, ``keypoint_skeleton``, ``width``, ``height``.
    """

    label: str
    joints: np.ndarray
    fps: float
    skeleton: Skeleton = SMPL_22
    caption: str = ""
    view2d: dict[str, Any] | None = field(default=None)


def _load_npy(path: Path, skeleton: Skeleton, clips: dict[str, Any]) -> list[ViewMotion]:
    stack = load_joints(path, skeleton)  # (N, T, J, 3)
    info = read_sidecar(path)
    fps = recorded_fps(path) or DEFAULT_FPS
    texts = info.get("texts") or ([info["text"]] if isinstance(info.get("text"), str) else info.get("text") or [])
    out = []
    for i, joints in enumerate(stack):
        label = path.stem if len(stack) == 1 else f"{path.stem}[{i}]"
        caption = str(texts[i]) if i < len(texts) else ""
        motion = ViewMotion(label, joints, fps, skeleton, caption)
        clip = clips.get(path.stem) if len(stack) == 1 else None
        if clip is not None:  # a lifted clip (``videomdm lift`` names its files by clip): show its keypoints
            if clip.keypoints_2d is not None and clip.num_frames != len(joints):
                raise ViewerError(f"{path}: {len(joints)} frames but clip {clip.name} has {clip.num_frames}")
            motion.fps, motion.caption = float(clip.fps), caption or (clip.text[0] if clip.text else "")
            motion.view2d = _view2d(clip, motion.joints)
        out.append(motion)
    return out


def _clips_by_name(dataset: Path) -> dict[str, Any]:
    """Every clip of a dataset folder (all splits) by name, without its 3D arrays."""
    from .data.clip import load_clip, read_dataset_index

    index = read_dataset_index(dataset)
    clips = {}
    for split in index.splits:
        for path in index.clip_paths(split):
            clip = load_clip(path, skip=("gt_3d", "teacher_3d"))
            clips[clip.name] = clip
    return clips


def _view2d(clip, joints: np.ndarray) -> dict[str, Any] | None:
    """The second panel of a clip with keypoints and a camera (else None): its first view."""
    import torch

    from .camera import project_to_pixels

    if clip.keypoints_2d is None or clip.K is None or clip.R is None:
        return None
    keypoints, confidence, K = clip.keypoints_2d[0], clip.confidence[0], clip.K[0]  # the first view
    reprojection = project_to_pixels(torch.as_tensor(joints, dtype=torch.float64)[None], torch.as_tensor(K),
                                     torch.as_tensor(clip.R[0])[None], torch.as_tensor(clip.t[0])[None])[0]
    reprojection = reprojection.numpy()  # (T, J, 2) pixels
    if clip.image_size is not None:
        width, height = clip.image_size
    else:  # principal point at the image centre
        width, height = int(round(2 * K[0, 2])), int(round(2 * K[1, 2]))
    return {"keypoints": keypoints, "confidence": confidence, "reprojection": reprojection,
            "keypoint_skeleton": get_skeleton(clip.keypoint_skeleton), "width": width, "height": height}


def _load_clip(path: Path) -> list[ViewMotion]:
    from .data.clip import load_clip

    clip = load_clip(path)
    skeleton = get_skeleton(clip.skeleton)
    caption = clip.text[0] if clip.text else ""
    out = []
    for field_name, what in (("teacher_3d", "teacher"), ("gt_3d", "ground truth")):
        joints = getattr(clip, field_name)
        if joints is None:
            continue
        joints = check_joints(joints, skeleton, f"{path} ({field_name})")
        out.append(ViewMotion(f"{clip.name} · {what}", joints, float(clip.fps), skeleton, caption,
                              _view2d(clip, joints)))
    return out


def collect_motions(paths: Sequence[str | Path], *, skeleton: Skeleton = SMPL_22, split: str = "test",
                    max_motions: int = 12, clips_from: str | Path | None = None) -> list[ViewMotion]:
    """Motions from files and folders (module docstring), at most ``max_motions``. With ``clips_from`` (a dataset
    folder), a joints file named like one of its clips (``<clip>.npy``, as ``videomdm lift`` writes) gets that clip's
    keypoints and its reprojection through the clip's camera in a second panel."""
    from .data.clip import INDEX_NAME, read_dataset_index

    clips = _clips_by_name(Path(clips_from)) if clips_from is not None else {}
    motions: list[ViewMotion] = []
    for path in map(Path, paths):
        if path.is_dir():
            if (path / INDEX_NAME).is_file():
                files = read_dataset_index(path).clip_paths(split)
            elif (path / "joints.npy").is_file():
                files = [path / "joints.npy"]
            elif (path / "samples" / "joints.npy").is_file():  # a run folder with samples
                files = [path / "samples" / "joints.npy"]
            else:
                files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz"))
            if not files:
                raise ViewerError(f"{path}: no joints .npy, clip .npz or dataset.json in this folder")
        elif path.is_file():
            files = [path]
        else:
            raise ViewerError(f"{path}: no such file or folder")
        for file in files:
            if file.suffix == ".npz":
                motions += _load_clip(file)
            elif file.suffix == ".npy":
                motions += _load_npy(file, skeleton, clips)
            else:
                raise ViewerError(f"{file}: expected a joints .npy or a clip .npz")
            if len(motions) >= max_motions:
                return motions[:max_motions]
    return motions


def _rounded(array: np.ndarray, decimals: int) -> list[float]:
    return np.round(np.asarray(array, dtype=np.float64), decimals).ravel().tolist()


def _motion_json(m: ViewMotion) -> dict[str, Any]:
    left = {a for a, _ in m.skeleton.left_right}
    right = {b for _, b in m.skeleton.left_right}
    sides = ["left" if n in left else "right" if n in right else "center" for n in m.skeleton.joint_names]
    out: dict[str, Any] = {"label": m.label, "caption": m.caption, "fps": m.fps, "joints": m.skeleton.num_joints,
                           "parents": list(m.skeleton.parents), "sides": sides,
                           "positions": _rounded(m.joints, 3)}  # millimetres are enough to look at
    if m.view2d is not None:
        v = m.view2d
        out["view2d"] = {"width": v["width"], "height": v["height"], "keypoints": _rounded(v["keypoints"], 1),
                         "confidence": _rounded(v["confidence"], 2),
                         "reprojection": _rounded(np.nan_to_num(v["reprojection"], nan=-1e4), 1),
                         "keypoint_joints": v["keypoint_skeleton"].num_joints,
                         "keypoint_parents": list(v["keypoint_skeleton"].parents)}
    return out


def _page(data: dict[str, Any]) -> str:
    template = resources.files("videomdm").joinpath("viewer_template.html").read_text(encoding="utf-8")
    # "<" escaped so that no caption can close the <script> element that holds the data.
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    return template.replace(TEMPLATE_MARK, payload)


def write_viewer(motions: Sequence[ViewMotion], out: str | Path, *, title: str = "videomdm viewer") -> Path:
    """Write the page for ``motions`` to ``out`` (atomically)."""
    if not motions:
        raise ViewerError(f"{out}: no motions to show")
    out = Path(out)
    atomic_write_text(out, _page({"mode": "view", "title": title, "motions": [_motion_json(m) for m in motions]}))
    return out


# --- blind comparison ----------------------------------------------------------------------------------------------


def load_samples(path: str | Path, skeleton: Skeleton = SMPL_22) -> tuple[np.ndarray, list[str], float, Path]:
    """A sample folder (``joints.npy`` + ``samples.json``) or a run folder holding ``samples/``: joints
    ``(N, T, J, 3)`` (checked by :func:`videomdm.data.mocap.load_joints`), captions (N,), fps and the folder used."""
    path = Path(path)
    folder = path if (path / "joints.npy").is_file() else path / "samples"
    if not (folder / "joints.npy").is_file():
        raise ViewerError(f"{path}: no joints.npy here or in samples/ (make one with `videomdm sample RUN --out DIR`)")
    joints = load_joints(folder / "joints.npy", skeleton)
    texts = [str(t) for t in read_sidecar(folder / "joints.npy").get("texts", [""] * len(joints))]
    if len(texts) != len(joints):
        raise ViewerError(f"{folder / 'samples.json'}: {len(texts)} captions for {len(joints)} motions")
    return joints, texts, recorded_fps(folder / "joints.npy") or DEFAULT_FPS, folder


def pair_by_caption(texts_a: Sequence[str], texts_b: Sequence[str]) -> list[tuple[int, int]]:
    """(index in A, index in B) pairs: the i-th motion with a caption in A with the i-th with that caption in B,
    in A's order; motions without a partner are left out."""
    queue: dict[str, list[int]] = {}
    for j, text in enumerate(texts_b):
        queue.setdefault(text, []).append(j)
    pairs = []
    for i, text in enumerate(texts_a):
        if queue.get(text):
            pairs.append((i, queue[text].pop(0)))
    return pairs


def write_comparison(run_a: str | Path, run_b: str | Path, out: str | Path, *, seed: int | None = None,
                     skeleton: Skeleton = SMPL_22) -> tuple[Path, Path]:
    """Write the blind comparison page ``out`` and its key ``<out>.key.json`` (module docstring).

    Returns (page, key file).
    """
    out = Path(out)
    joints_a, texts_a, fps_a, folder_a = load_samples(run_a, skeleton)
    joints_b, texts_b, fps_b, folder_b = load_samples(run_b, skeleton)
    pairs = pair_by_caption(texts_a, texts_b)
    if not pairs:
        raise ViewerError(f"{folder_a} and {folder_b} share no caption; nothing to compare")
    seed = secrets.randbits(32) if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    a_left = rng.random(len(pairs)) < 0.5
    study_id = secrets.token_hex(8)  # random, so the page reveals nothing of the seed
    motions, page_pairs, key_pairs = [], [], []
    for number, k in enumerate(order):
        i, j = pairs[k]
        # No label and no caption on the motions (the caption is shown once per pair): nothing tells A from B.
        a = ViewMotion("", joints_a[i], fps_a, skeleton)
        b = ViewMotion("", joints_b[j], fps_b, skeleton)
        left, right = (a, b) if a_left[number] else (b, a)
        page_pairs.append({"left": len(motions), "right": len(motions) + 1, "caption": texts_a[i]})
        motions += [left, right]
        key_pairs.append({"pair": number, "caption": texts_a[i], "a_index": i, "b_index": j,
                          "a_side": "left" if a_left[number] else "right"})
    key = {"format": STUDY_FORMAT, "version": 1, "study_id": study_id, "seed": seed,
           "run_a": str(folder_a), "run_b": str(folder_b), "pairs": key_pairs}
    key_path = out.with_name(out.stem + ".key.json")
    atomic_write_text(key_path, json.dumps(key, indent=2) + "\n")
    atomic_write_text(out, _page({"mode": "compare", "title": "Which motion looks more natural?",
                                  "study_id": study_id, "pairs": page_pairs,
                                  "motions": [_motion_json(m) for m in motions]}))
    return out, key_path
