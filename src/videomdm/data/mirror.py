"""Left/right mirroring of a clip: 3D joints, cameras and 2D keypoints mirrored together (training augmentation).

The mirror is the reflection of the world in its y-z plane, ``M = diag(−1, 1, 1)`` (x → −x; y stays up), followed by
swapping every left joint with its right partner (:attr:`videomdm.skeleton.Skeleton.mirror_permutation` ``p``, an
involution), so that a mirrored left arm is again called a left arm::

    X'_j = M X_{p(j)}                                                                                          (Mi-1)

A camera ``X_c = R X_w + t`` looks at the mirrored world as the mirror image of itself::

    R' = M R M,    t' = M t    ⇒    R' X' + t' = M R M M X + M t = M (R X + t) = M X_c                          (Mi-2)

(``M M = I``; ``R'`` is again a rotation, det(M R M) = det R). Its camera-frame points are the mirrored camera-frame
points, so their normalized image coordinates ``(X_c / Z_c, Y_c / Z_c)`` become::

    x' = −x,    y' = y,    keypoint and confidence j' = those of p(j)                                       (Mi-3)

which in pixels is the image flipped about its principal point, ``u' = 2 c_x − u`` (zero skew). Training windows hold
normalized coordinates (:func:`videomdm.data.dataset.clip_observations`), so (Mi-3) is applied in those, and after the
keypoints were mapped to the motion skeleton: the joint maps are symmetric (a left detector joint feeds the left
motion joint), so mirroring after the map equals mapping the keypoints mirrored with the detector skeleton's own
permutation (tests/test_mirror.py checks this for every map). A clip with V views is mirrored view by view.

Mirroring commutes with projection (Mi-2, Mi-3) and with any rigid motion of the world (it conjugates a rotation and
reflects a translation), so every 2D loss of a mirrored (prediction, keypoints, cameras) triple equals the loss of
the unmirrored one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIRROR", "mirror_joints", "mirror_camera", "mirror_keypoints"]

MIRROR = np.diag([-1.0, 1.0, 1.0])  # M: the reflection x → −x of the world (and of the camera frame)
_SIGN_3D = np.array([-1.0, 1.0, 1.0])
_SIGN_2D = np.array([-1.0, 1.0])


def _check_permutation(permutation: np.ndarray, num_joints: int) -> np.ndarray:
    permutation = np.asarray(permutation)
    if permutation.shape != (num_joints,) or not np.array_equal(np.sort(permutation), np.arange(num_joints)):
        raise ValueError(f"expected a permutation of {num_joints} joints, got {permutation!r}")
    return permutation


def mirror_joints(joints: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """(Mi-1): joints ``(..., J, 3)`` (world frame, metres, y up) → the mirrored joints ``(..., J, 3)``, x → −x,
    with left and right swapped by ``permutation (J,)``; dtype kept."""
    joints = np.asarray(joints)
    if joints.ndim < 2 or joints.shape[-1] != 3:
        raise ValueError(f"expected joints (..., J, 3), got {joints.shape}")
    permutation = _check_permutation(permutation, joints.shape[-2])
    return (joints[..., permutation, :] * _SIGN_3D).astype(joints.dtype)


def mirror_camera(R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Mi-2): world→camera extrinsics ``R (..., 3, 3)``, ``t (..., 3)`` (any leading axes: views, frames) → the
    camera of the mirrored world, ``R' = M R M`` and ``t' = M t``, dtypes kept. ``M R M`` flips the signs of R's
    first row and first column (its (0, 0) entry twice)."""
    R, t = np.asarray(R), np.asarray(t)
    if R.shape[-2:] != (3, 3) or t.shape[-1] != 3 or R.shape[:-2] != t.shape[:-1]:
        raise ValueError(f"expected R (..., 3, 3) and t (..., 3) with the same leading axes, got {R.shape}, {t.shape}")
    return (R * _SIGN_3D[:, None] * _SIGN_3D).astype(R.dtype), (t * _SIGN_3D).astype(t.dtype)


def mirror_keypoints(keypoints_norm: np.ndarray, confidence: np.ndarray,
                     permutation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Mi-3): keypoints in NORMALIZED image coordinates ``(..., J, 2)`` (``((u − c_x) / f_x, (v − c_y) / f_y)``,
    not pixels) and their confidence ``(..., J)`` → the keypoints of the mirrored image, ``x' = −x``, with left and
    right swapped by ``permutation (J,)`` (the permutation of the skeleton the keypoints are ordered in); dtypes
    kept. Any leading axes (views, frames) are mirrored alike."""
    keypoints_norm, confidence = np.asarray(keypoints_norm), np.asarray(confidence)
    if keypoints_norm.shape[-1] != 2 or keypoints_norm.shape[:-1] != confidence.shape:
        raise ValueError(f"expected keypoints (..., J, 2) and confidence (..., J), got {keypoints_norm.shape}, "
                         f"{confidence.shape}")
    permutation = _check_permutation(permutation, keypoints_norm.shape[-2])
    return ((keypoints_norm[..., permutation, :] * _SIGN_2D).astype(keypoints_norm.dtype),
            confidence[..., permutation])
