"""Head pose (yaw, pitch, roll in degrees) from a 468-point face mesh: the rotation that
best maps a frontal reference shape onto the mesh (Kabsch, with scale), read as angles.

The reference shape (``assets/face_mesh/reference_shape.npy``, (468, 3)) is the mean
mesh of development photos after generalised Procrustes alignment, made left-right
symmetric (:func:`build_reference`; rebuilt by ``python -m tools.build_face_mesh``).
Pitch 0 is therefore the mean head tilt of those photos; yaw and roll 0 are exact
symmetries of the reference.

Conventions (x right, y down, z away from the camera; the reference looks at the camera):

* yaw > 0: the nose points to the image's right (the subject turns to their left);
* pitch > 0: the nose points up (chin raised);
* roll > 0: the face's right side as seen in the image is lower (the eye line falls to
  the right), the same sign as the eye line's angle ``atan2(dy, dx)``;

read from R = Rz(roll) · Rx(pitch) · Ry(yaw): the head turns, then tilts, then rolls.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["head_pose", "fit_rotation", "build_reference", "mirror_index", "reference_shape"]


def _normalise(p: np.ndarray) -> np.ndarray:
    q = np.asarray(p, np.float64) - np.asarray(p, np.float64).mean(0)
    return q / max(float(np.sqrt((q**2).sum(1).mean())), 1e-12)


def fit_rotation(ref: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(3, 3) proper rotation R minimising ‖R·ref_i − pts_i‖ over the points (both (N, 3),
    centred and scaled here)."""
    a, b = _normalise(ref), _normalise(pts)
    U, _, Vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(U @ Vt)) or 1.0
    return U @ np.diag([1.0, 1.0, d]) @ Vt


def angles(R: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation R = Rz(roll) · Rx(pitch) · Ry(yaw) in
    image axes: the head turns by yaw, then tilts by pitch, then rolls (conventions in
    the module docstring)."""
    yaw = math.degrees(math.atan2(R[2, 0], R[2, 2]))
    pitch = math.degrees(math.asin(float(np.clip(-R[2, 1], -1.0, 1.0))))
    roll = math.degrees(math.atan2(-R[0, 1], R[1, 1]))
    return yaw, pitch, roll


@lru_cache(maxsize=1)
def reference_shape() -> np.ndarray:
    """The shipped frontal reference shape (468, 3)."""
    path = resources.files("qmag_core") / "assets" / "face_mesh" / "reference_shape.npy"
    with path.open("rb") as fh:
        return np.load(fh, allow_pickle=False).astype(np.float64)


def head_pose(points: np.ndarray, reference: np.ndarray | None = None) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a mesh's points (468, 3) in photo pixels."""
    ref = reference_shape() if reference is None else reference
    return angles(fit_rotation(ref, points))


def mirror_index(shape: np.ndarray) -> np.ndarray:
    """(N,) for each point the index of its mirror twin (x ↦ −x about the shape's centre):
    the one-to-one matching of the points to their mirror images with the least total
    distance (points on the midline are their own twins)."""
    from scipy.optimize import linear_sum_assignment

    p = _normalise(shape)
    m = p * np.array([-1.0, 1.0, 1.0])
    d = np.sqrt(((p[:, None, :2] - m[None, :, :2]) ** 2).sum(-1))
    rows, cols = linear_sum_assignment(d)
    twin = np.empty(len(p), np.int64)
    twin[cols] = rows
    return twin


def build_reference(meshes: np.ndarray, iterations: int = 5) -> np.ndarray:
    """A symmetric frontal reference (N, 3) from meshes (K, N, 3): generalised Procrustes
    (each mesh rotated onto the running mean, rotation about the camera axis and yaw
    included), then averaged with its own mirror image."""
    X = np.stack([_normalise(m) for m in np.asarray(meshes, np.float64)])
    mean = _symmetric(_normalise(X.mean(0)))
    for _ in range(iterations):
        aligned = np.stack([x @ fit_rotation(x, mean).T for x in X])
        mean = _symmetric(_normalise(aligned.mean(0)))
    return mean


def _symmetric(shape: np.ndarray) -> np.ndarray:
    """The shape averaged with its mirror image (x ↦ −x, each point with its twin)."""
    mirrored = shape[mirror_index(shape)] * np.array([-1.0, 1.0, 1.0])
    return _normalise((shape + mirrored) / 2)
