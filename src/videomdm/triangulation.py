"""Triangulation of keypoints seen by several calibrated cameras: confidence-weighted DLT with outlier views rejected.

Inputs are numpy arrays of V synchronized views (``DESIGN.md``, Views): keypoints ``(V, T, J, 2)`` in pixels of the
ideal pinhole camera (undistorted: :func:`videomdm.data.calibration.undistort_points`), confidences ``(V, T, J)``
(0 = missing), intrinsics ``K (V, 3, 3)`` and world→camera extrinsics ``R (V, 3, 3)``, ``t (V, 3)`` metres
(``X_c = R X_w + t``, OpenCV camera axes).

- :func:`triangulate_dlt`: one point per (frame, joint) from the views given, by the weighted DLT (eq. T1);
- :func:`reprojection_errors`: pixels between each view's keypoint and the point's projection;
- :func:`triangulate`: :func:`triangulate_dlt` with robust view selection: while the worst used view of a point is
  further than ``threshold_px`` from its projection, the view whose removal leaves the smallest worst error is
  dropped (leave-one-out), down to two views; a point whose last two views still disagree is not triangulated.
  This rejects a view that swapped left and right, locked onto another person or guessed an occluded joint;
- :func:`estimate_offsets`: per-camera frame offsets of unsynchronized videos, by the triangulation error;
- :func:`heldout_view_errors`: leave-one-camera-out, how well the other views predict each view's keypoints;
- :func:`ideal_rig`: the same two errors for the same rig and motion without timing or calibration error (the
  detector's noise alone), to read a real rig's held-out error against;
- :func:`rig_consistency`: both for a take, as a report (what ``prepare video --calibration`` records per take).

A point triangulated from n views is fitted to them (3 unknowns from 2n coordinates), so the error in the views it
used understates the detector's: with independent Gaussian noise of σ px per image axis, the expected sum of squared
residuals is (2n − 3) σ², not 2n σ². A held-out view is not fitted and also carries the error of the point itself,
so even a perfectly synchronized and calibrated rig shows held-out errors well above the used views' (1.6–2.1× for
the Pose2Sim demo rig: README, "Multi-view benchmark"); :func:`ideal_rig` measures that ratio for a given rig.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Triangulation", "IdealRig", "triangulate_dlt", "project", "reprojection_errors", "triangulate",
           "estimate_offsets", "heldout_view_errors", "ideal_rig", "rig_consistency"]


def _check_views(uv: np.ndarray, confidence: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple:
    uv = np.asarray(uv, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    K, R, t = (np.asarray(a, dtype=np.float64) for a in (K, R, t))
    if uv.ndim < 2 or uv.shape[-1] != 2:
        raise ValueError(f"keypoints must be (V, ..., 2), got {uv.shape}")
    V = uv.shape[0]
    if confidence.shape != uv.shape[:-1]:
        raise ValueError(f"confidence must be {uv.shape[:-1]} (keypoints {uv.shape}), got {confidence.shape}")
    if K.shape != (V, 3, 3) or R.shape != (V, 3, 3) or t.shape != (V, 3):
        raise ValueError(f"{V} views need K ({V}, 3, 3), R ({V}, 3, 3), t ({V}, 3); got {K.shape}, {R.shape}, "
                         f"{t.shape}")
    confidence = np.where(np.isfinite(uv).all(-1) & np.isfinite(confidence), np.clip(confidence, 0.0, None), 0.0)
    return np.nan_to_num(uv), confidence, K, R, t


def _normalized(uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels ``(V, ..., 2)`` → normalized coordinates ``K⁻¹ (u, v, 1)`` ``(V, ..., 2)`` (eq. 3 of camera.py)."""
    K = K.reshape(K.shape[:1] + (1,) * (uv.ndim - 2) + (3, 3))  # (V, 1.., 3, 3)
    y = (uv[..., 1] - K[..., 1, 2]) / K[..., 1, 1]
    x = (uv[..., 0] - K[..., 0, 2] - K[..., 0, 1] * y) / K[..., 0, 0]
    return np.stack([x, y], axis=-1)


def triangulate_dlt(uv: np.ndarray, weights: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Weighted direct linear transform: one 3D point per keypoint track, from every view of positive weight.

    With ``(x_v, y_v)`` the normalized coordinates of the keypoint in view v and ``P_v = [R_v | t_v]`` (3×4), the
    homogeneous point ``X`` satisfies ``x_v P_v³ X − P_v¹ X = 0`` and ``y_v P_v³ X − P_v² X = 0`` (Hartley &
    Zisserman, Multiple View Geometry, §12.2). Each view's two rows are scaled by its weight ``w_v`` and, to make
    them comparable across views, divided by their norm; ``X`` is the right singular vector of the smallest
    singular value of the stacked ``(2V, 4)`` system (eq. T1). Normalized coordinates keep the system well
    conditioned (Hartley's normalization up to the focal length).

    Args:
        uv: ``(V, ..., 2)`` pixels (undistorted). weights: ``(V, ...)`` ≥ 0; views of weight 0 are ignored.
        K: ``(V, 3, 3)``. R: ``(V, 3, 3)``. t: ``(V, 3)`` metres.

    Returns:
        ``(..., 3)`` world points, metres; NaN where fewer than two views have a positive weight or the point is at
        infinity. Exact (to rounding) for noiseless projections of a point in front of every camera.
    """
    uv, weights, K, R, t = _check_views(uv, weights, K, R, t)
    V = uv.shape[0]
    batch = uv.shape[1:-1]
    xy = _normalized(uv, K).reshape(V, -1, 2)  # (V, N, 2)
    w = weights.reshape(V, -1)  # (V, N)
    P = np.concatenate([R, t[:, :, None]], axis=2)  # (V, 3, 4)
    rows_x = xy[..., 0:1] * P[:, None, 2, :] - P[:, None, 0, :]  # (V, N, 4)
    rows_y = xy[..., 1:2] * P[:, None, 2, :] - P[:, None, 1, :]  # (V, N, 4)
    rows = np.stack([rows_x, rows_y], axis=2)  # (V, N, 2, 4)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)
    rows = rows * w[..., None, None]
    A = rows.transpose(1, 0, 2, 3).reshape(-1, 2 * V, 4)  # (N, 2V, 4)
    _, _, vt = np.linalg.svd(A)
    X = vt[:, -1, :]  # (N, 4) homogeneous
    with np.errstate(divide="ignore", invalid="ignore"):
        points = X[:, :3] / X[:, 3:4]
    enough = (w > 0).sum(axis=0) >= 2  # (N,)
    ok = enough & (np.abs(X[:, 3]) > 1e-12) & np.isfinite(points).all(-1)
    points = np.where(ok[:, None], points, np.nan)
    return points.reshape(batch + (3,))


def project(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points ``(..., 3)`` into every view: pixels ``(V, ..., 2)`` and depths ``(V, ...)`` (metres, ``Z_c``).

    Pinhole projection ``u = K (X_c / Z_c)`` (eqs. 1, 3, 4 of camera.py), no depth clamp: points behind a camera
    get a negative depth and are the caller's to mask.
    """
    points = np.asarray(points, dtype=np.float64)
    K, R, t = (np.asarray(a, dtype=np.float64) for a in (K, R, t))
    cam = np.einsum("vij,...j->v...i", R, points) + t.reshape(t.shape[:1] + (1,) * (points.ndim - 1) + (3,))
    depth = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = cam[..., :2] / depth[..., None]
    Kb = K.reshape(K.shape[:1] + (1,) * (points.ndim - 1) + (3, 3))
    u = Kb[..., 0, 0] * xy[..., 0] + Kb[..., 0, 1] * xy[..., 1] + Kb[..., 0, 2]
    v = Kb[..., 1, 1] * xy[..., 1] + Kb[..., 1, 2]
    return np.stack([u, v], axis=-1), depth


def reprojection_errors(points: np.ndarray, uv: np.ndarray, K: np.ndarray, R: np.ndarray,
                        t: np.ndarray) -> np.ndarray:
    """Pixels between each view's keypoint and the point's projection: points ``(..., 3)``, keypoints
    ``(V, ..., 2)`` → ``(V, ...)``; ``inf`` where the point is behind (or on) a camera, NaN where it is NaN."""
    projected, depth = project(points, K, R, t)
    error = np.linalg.norm(projected - np.asarray(uv, dtype=np.float64), axis=-1)
    return np.where(depth > 0, error, np.where(np.isnan(depth), np.nan, np.inf))


@dataclass
class Triangulation:
    """What :func:`triangulate` found.

    Attributes:
        points: ``(T, J, 3)`` world metres; NaN where no two views agreed.
        used: ``(V, T, J)`` bool, the views each point was triangulated from.
        errors_px: ``(V, T, J)`` pixels from each observed keypoint (confidence > 0) to the point's projection,
            used and rejected views alike; NaN where the view did not see the joint or there is no point.
    """

    points: np.ndarray
    used: np.ndarray
    errors_px: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """``(T, J)`` bool: a point was triangulated."""
        return np.isfinite(self.points).all(-1)

    def used_errors(self) -> np.ndarray:
        """``(V, T, J)`` the errors of the views each point used, NaN elsewhere."""
        return np.where(self.used, self.errors_px, np.nan)

    def per_view_median_px(self) -> np.ndarray:
        """``(V,)`` median error of each view over the points it was used for (NaN for a view never used)."""
        used = self.used_errors().reshape(len(self.used), -1)
        out = np.full(len(used), np.nan)
        for v, row in enumerate(used):
            if np.isfinite(row).any():
                out[v] = float(np.nanmedian(row))
        return out


def triangulate(uv: np.ndarray, confidence: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, *,
                threshold_px: float = 20.0, min_confidence: float = 0.1) -> Triangulation:
    """Robust triangulation of every (frame, joint): weighted DLT (:func:`triangulate_dlt`) over the views that agree.

    1. Views with ``confidence ≥ min_confidence`` are candidates; the DLT weights are the confidences.
    2. While a point has more than two views and its worst used view is further than ``threshold_px`` from the
       point's projection (or the point is behind a used camera), each used view is left out in turn and the view
       whose removal gives the smallest worst error of the rest is dropped (leave-one-out, batched over points).
    3. A point whose views still disagree (two views, error above the threshold, or behind a camera) or that has
       fewer than two views is not triangulated (NaN, no view used).

    Args:
        uv: ``(V, T, J, 2)`` undistorted pixels. confidence: ``(V, T, J)`` in [0, 1].
        K: ``(V, 3, 3)``. R: ``(V, 3, 3)``. t: ``(V, 3)`` metres.
        threshold_px: the largest reprojection error, in pixels, of a view that agrees with the others.
        min_confidence: keypoints below this confidence are ignored.

    Returns:
        :class:`Triangulation` (points, the views used and every observed view's reprojection error).
    """
    uv, confidence, K, R, t = _check_views(uv, confidence, K, R, t)
    if uv.ndim != 4:
        raise ValueError(f"keypoints must be (V, T, J, 2), got {uv.shape}")
    observed = confidence >= min_confidence  # (V, T, J)
    used = observed.copy()

    def solve(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = triangulate_dlt(uv, np.where(mask, confidence, 0.0), K, R, t)  # (T, J, 3)
        errors = reprojection_errors(points, uv, K, R, t)  # (V, T, J)
        worst = np.where(mask, np.nan_to_num(errors, nan=np.inf), -np.inf).max(axis=0)  # (T, J)
        return points, worst

    points, worst = solve(used)
    for _ in range(max(uv.shape[0] - 2, 0)):
        todo = (worst > threshold_px) & (used.sum(axis=0) > 2)  # (T, J)
        if not todo.any():
            break
        best_worst = np.full(todo.shape, np.inf)
        best_view = np.full(todo.shape, -1)
        for v in range(uv.shape[0]):
            trial = used.copy()
            trial[v] &= ~todo  # leave view v out of the points still to fix
            _, trial_worst = solve(trial)
            better = todo & used[v] & (trial_worst < best_worst)
            best_worst = np.where(better, trial_worst, best_worst)
            best_view = np.where(better, v, best_view)
        drop = todo & (best_view >= 0)
        for v in range(uv.shape[0]):
            used[v] &= ~(drop & (best_view == v))
        points, worst = solve(used)
    ok = (used.sum(axis=0) >= 2) & (worst <= threshold_px) & np.isfinite(points).all(-1)  # (T, J)
    points = np.where(ok[..., None], points, np.nan)
    used &= ok[None]
    errors = reprojection_errors(points, uv, K, R, t)
    errors = np.where(observed & np.isfinite(points).all(-1)[None], errors, np.nan)
    return Triangulation(points=points, used=used, errors_px=errors)


def estimate_offsets(uv: np.ndarray, confidence: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, *,
                     max_offset: int, reference: int = 0, min_confidence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Frame offsets of unsynchronized views: for each view v, the shift ``d`` in ``[−max_offset, max_offset]``
    such that its frame ``f + d`` shows the instant of the ``reference`` view's frame ``f``, chosen to minimize the
    median two-view reprojection error (:func:`triangulate_dlt` of the pair, then :func:`reprojection_errors`)
    over the frames and joints both views see.

    Args:
        uv: ``(V, T, J, 2)`` undistorted pixels; confidence ``(V, T, J)``; K, R, t as :func:`triangulate`.
        max_offset: frames searched either way (a shift must leave at least a quarter of the frames overlapping).

    Returns:
        ``offsets (V,)`` int (0 for the reference) and ``costs (V, 2·max_offset + 1)`` the median error in pixels
        of every shift tried (NaN where too few frames overlap).
    """
    uv, confidence, K, R, t = _check_views(uv, confidence, K, R, t)
    V, T = uv.shape[:2]
    shifts = np.arange(-max_offset, max_offset + 1)
    costs = np.full((V, len(shifts)), np.nan)
    offsets = np.zeros(V, dtype=int)
    for v in range(V):
        if v == reference:
            continue
        for k, d in enumerate(shifts):
            ref_frames = np.arange(max(0, -d), min(T, T - d))  # f with 0 <= f + d < T
            if len(ref_frames) < max(T // 4, 2):
                continue
            pair = [reference, v]
            pair_uv = np.stack([uv[reference, ref_frames], uv[v, ref_frames + d]])  # (2, F, J, 2)
            pair_conf = np.stack([confidence[reference, ref_frames], confidence[v, ref_frames + d]])
            pair_conf = np.where(pair_conf >= min_confidence, pair_conf, 0.0)
            points = triangulate_dlt(pair_uv, pair_conf, K[pair], R[pair], t[pair])
            errors = reprojection_errors(points, pair_uv, K[pair], R[pair], t[pair])  # (2, F, J)
            seen = (pair_conf > 0).all(axis=0) & np.isfinite(points).all(-1)
            if seen.sum() >= 10:
                costs[v, k] = float(np.median(np.where(np.isinf(errors), 1e6, errors)[:, seen]))
        if np.isfinite(costs[v]).any():
            offsets[v] = int(shifts[np.nanargmin(costs[v])])
    return offsets, costs


def heldout_view_errors(uv: np.ndarray, confidence: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, *,
                        threshold_px: float = 20.0, min_confidence: float = 0.1,
                        scored_confidence: float = 0.5) -> np.ndarray:
    """Leave-one-camera-out: for each view h, every point triangulated (:func:`triangulate`) from the other views,
    projected into h and compared with h's keypoints of confidence ≥ ``scored_confidence``.

    Args:
        uv, confidence, K, R, t: as :func:`triangulate`, at least 3 views. threshold_px, min_confidence: passed on.

    Returns:
        ``(V,)`` median error in pixels of each held-out view (NaN where no keypoint could be scored).
    """
    uv, confidence, K, R, t = _check_views(uv, confidence, K, R, t)
    V = uv.shape[0]
    if V < 3:
        raise ValueError(f"leave-one-camera-out needs at least 3 views, got {V}")
    medians = np.full(V, np.nan)
    for h in range(V):
        others = [v for v in range(V) if v != h]
        points = triangulate(uv[others], confidence[others], K[others], R[others], t[others],
                             threshold_px=threshold_px, min_confidence=min_confidence).points
        errors = reprojection_errors(points, uv[h:h + 1], K[h:h + 1], R[h:h + 1], t[h:h + 1])[0]
        scored = (confidence[h] >= scored_confidence) & np.isfinite(errors)
        if scored.any():
            medians[h] = float(np.median(errors[scored]))
    return medians


@dataclass
class IdealRig:
    """What :func:`ideal_rig` measured on the simulated rig.

    Attributes:
        noise_px: σ of the Gaussian keypoint noise per image axis, pixels (its median 2D error is 1.177 σ).
        used_median_px: median error in the views used (:meth:`Triangulation.used_errors`), over the draws.
        heldout_median_px: ``(V,)`` :func:`heldout_view_errors`, averaged over the draws.
        matched: whether some σ reproduced the real used-view error. Not where that error is above what Gaussian
            noise can give under the outlier rejection (heavy-tailed detector errors near ``threshold_px``); σ is
            then the largest tried below the rejection's peak, and the held-out errors are not comparable.
    """

    noise_px: float
    used_median_px: float
    heldout_median_px: np.ndarray
    matched: bool


def ideal_rig(points: np.ndarray, confidence: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, *,
              used_median_px: float, threshold_px: float = 20.0, min_confidence: float = 0.1, draws: int = 2,
              seed: int = 0) -> IdealRig:
    """The rig without timing or calibration error: ``points`` projected into every view (:func:`project`) plus
    independent Gaussian noise of σ px per image axis, σ chosen (the same normal draws for every σ) so that the
    simulated triangulation's median error in the views it used equals ``used_median_px``, the real one.
    Its held-out errors are then what the detector's noise alone gives on this rig's geometry, frames and masks.

    Args:
        points: ``(T, J, 3)`` world metres, e.g. the real keypoints triangulated from every view (NaN: not seen).
        confidence: ``(V, T, J)`` the real confidences (which keypoints each view has). K, R, t: as
            :func:`triangulate`. used_median_px: the real triangulation's median error in the views used.
        threshold_px, min_confidence: as the real triangulation. draws: noise draws averaged. seed: their seed.

    Returns:
        :class:`IdealRig`.
    """
    points = np.asarray(points, dtype=np.float64)
    uv, depth = project(points, K, R, t)  # (V, T, J, 2)
    seen = np.isfinite(uv).all(-1) & (depth > 0)
    confidence = np.where(seen, confidence, 0.0)
    uv = np.nan_to_num(uv)
    normal = np.random.default_rng(seed).standard_normal((draws,) + uv.shape)

    def used_median(sigma: float) -> float:
        return float(np.mean([np.nanmedian(triangulate(uv + sigma * z, confidence, K, R, t, threshold_px=threshold_px,
                                                       min_confidence=min_confidence).used_errors()) for z in normal]))

    # The used-view error grows with σ until the outlier rejection starts removing the worst views, then falls
    # again (a peak near σ ≈ 0.8 × threshold_px), so σ is the first crossing: scanned upwards, then bisected.
    low, high, matched = 0.0, 0.0, False
    for k in range(12):
        high = 0.5 * used_median_px * 1.25**k
        if used_median(high) >= used_median_px:
            matched = True
            break
        low = high
    if matched:
        for _ in range(7):  # the bracket is 25 % wide: to 0.2 %
            sigma = 0.5 * (low + high)
            low, high = (sigma, high) if used_median(sigma) < used_median_px else (low, sigma)
    sigma = 0.5 * (low + high) if matched else low
    heldout = np.mean([heldout_view_errors(uv + sigma * z, confidence, K, R, t, threshold_px=threshold_px,
                                           min_confidence=min_confidence) for z in normal], axis=0)
    return IdealRig(noise_px=sigma, used_median_px=used_median(sigma), heldout_median_px=heldout, matched=matched)


def rig_consistency(uv: np.ndarray, confidence: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, *,
                    threshold_px: float = 20.0, max_frames: int = 120, draws: int = 1,
                    seed: int = 0) -> dict[str, object]:
    """How well a take's views agree, against what the detector's noise alone allows on this rig.

    On at most ``max_frames`` frames spread evenly over the take: :func:`heldout_view_errors`, and the same for the
    :func:`ideal_rig` of the points triangulated from every view, with noise matched to the take's used-view error.
    Their ratio is 1 where the rig's timing and calibration add nothing to the detector's noise and grows with
    unsynchronized or miscalibrated cameras (the Pose2Sim demo rig: 1.29, README "Multi-view benchmark").

    Args:
        uv, confidence, K, R, t: as :func:`triangulate`, at least 3 views. threshold_px: its outlier threshold.
        max_frames: frames used at most. draws, seed: the ideal rig's noise draws (:func:`ideal_rig`).

    Returns:
        ``heldout_view_px`` and ``ideal_rig_heldout_px`` (per view), ``ideal_rig_noise_px`` (σ per image axis),
        ``heldout_over_ideal_rig`` (mean over the views held out in both; None where the ideal rig's error is 0,
        i.e. noiseless keypoints, or where no Gaussian noise reproduces the used-view error:
        :attr:`IdealRig.matched`) and ``frames`` (the frames used); None for a view never seen, and for every
        ideal-rig figure where no point was triangulated.
    """
    uv, confidence, K, R, t = _check_views(uv, confidence, K, R, t)
    T = uv.shape[1]
    frames = np.unique(np.linspace(0, T - 1, min(T, max_frames)).round().astype(int))
    uv, confidence = uv[:, frames], confidence[:, frames]
    heldout = heldout_view_errors(uv, confidence, K, R, t, threshold_px=threshold_px)
    seen = triangulate(uv, confidence, K, R, t, threshold_px=threshold_px)
    used = seen.used_errors()
    report: dict[str, object] = {"heldout_view_px": _rounded(heldout), "ideal_rig_heldout_px": [None] * len(heldout),
                                 "ideal_rig_noise_px": None, "heldout_over_ideal_rig": None, "frames": int(len(frames))}
    if not np.isfinite(used).any() or not np.isfinite(heldout).any():
        return report  # no point two views agree on, or no view that can be held out: nothing to compare
    ideal = ideal_rig(seen.points, confidence, K, R, t, used_median_px=float(np.nanmedian(used)),
                      threshold_px=threshold_px, draws=draws, seed=seed)
    report.update(ideal_rig_heldout_px=_rounded(ideal.heldout_median_px), ideal_rig_noise_px=round(ideal.noise_px, 2))
    both = np.isfinite(heldout) & np.isfinite(ideal.heldout_median_px)
    ideal_mean = float(ideal.heldout_median_px[both].mean()) if both.any() else 0.0
    if ideal.matched and ideal_mean > 1e-2:
        report["heldout_over_ideal_rig"] = round(float(heldout[both].mean()) / ideal_mean, 3)
    return report


def _rounded(values: np.ndarray) -> list[float | None]:
    """Pixels for a JSON report: 2 decimals, None where not finite."""
    return [round(float(v), 2) if np.isfinite(v) else None for v in values]
