"""Dense face landmarks: MediaPipe's 468-point face mesh (``face_landmark.tflite`` from
the Apache-2.0 ``mediapipe==0.10.14`` wheel, shipped in ``assets/face_mesh/`` with its
licence), run by OpenCV's TFLite reader (no torch, no MediaPipe runtime).

The network sees a 192 × 192 RGB crop (values 0–1) of a square box rotated so that the
eyes are level; it returns 468 points (x, y, z) in crop pixels (z: depth in the same
unit, smaller is nearer the camera) and a face-presence logit.  As MediaPipe does, it
runs twice: on a box from the detector's five landmarks, then on a box from the first
pass's mesh (eyes levelled by the mesh's eye corners), which brings the roll error on
rotated photos from about 3° to under 1°.

Point numbers follow MediaPipe's topology (e.g. 33/133 the outer/inner corner of the
eye on the image's left — the subject's right eye — 263/362 those of the other eye,
152 the chin, 10 the top of the forehead); :data:`POINTS` names the ones the quality
components use.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np

from ..errors import QMagError

__all__ = [
    "POINTS",
    "MODEL_SHA256",
    "IRIS_SHA256",
    "MODELS",
    "FaceMesh",
    "face_mesh",
    "levelling",
    "mesh_roi",
    "eye_contours",
    "LID_PAIRS",
]

#: sha256 of the shipped ``face_landmark.tflite`` (mediapipe 0.10.14, checked on load)
MODEL_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
#: sha256 of the shipped ``iris_landmark.tflite`` (the same wheel)
IRIS_SHA256 = "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f"
#: the shipped model files and their pinned sha256
MODELS = {"face_landmark.tflite": MODEL_SHA256, "iris_landmark.tflite": IRIS_SHA256}
_EYE_INPUT = 64
#: upper/lower lid pairs among the iris model's 16 eye-contour points (0–8: the lower
#: lid from the outer to the inner corner; 9–15: the upper lid between them), the same
#: three places as the mesh's (160, 144), (159, 145), (158, 153)
LID_PAIRS = ((11, 3), (12, 4), (13, 5))
#: each contour point's twin in the mirrored eye (the lower lid reversed, the upper too)
_TWIN = (*range(8, -1, -1), *range(15, 8, -1))
_INPUT = 192
#: named points of MediaPipe's face-mesh topology ("image-left" = the subject's right)
POINTS = {
    "eye_l_outer": 33,
    "eye_l_inner": 133,
    "eye_r_inner": 362,
    "eye_r_outer": 263,
    # inner-lip pairs, three (image-left to image-right)
    "lips_inner": ((82, 87), (13, 14), (312, 317)),
    "chin": 152,
    "nose_tip": 1,
    # eye contours (16 points each) and brows (upper edge, outer to inner)
    "eye_l": (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    "eye_r": (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466),
    "brow_l": (70, 63, 105, 66, 107),
    "brow_r": (300, 293, 334, 296, 336),
    # the forehead's upper rim, image-left to image-right
    "forehead_rim": (54, 103, 67, 109, 10, 338, 297, 332, 284),
    "cheek_l": 50,
    "cheek_r": 280,
}


@dataclass(frozen=True)
class FaceMesh:
    """One face's mesh: ``points`` (468, 3) float64 in photo pixels (x right, y down,
    z depth in pixels, relative), ``presence`` the network's face probability (0–1)."""

    points: np.ndarray = field(repr=False)
    presence: float

    def xy(self, i) -> np.ndarray:
        """Photo (x, y) of point(s) ``i``."""
        return self.points[np.asarray(i), :2]

    def eye_centres(self) -> np.ndarray:
        """(2, 2): the image-left and image-right eye centres (mean of each eye's corners)."""
        P = POINTS
        return np.stack(
            [
                self.points[[P["eye_l_outer"], P["eye_l_inner"]], :2].mean(0),
                self.points[[P["eye_r_inner"], P["eye_r_outer"]], :2].mean(0),
            ]
        )


@lru_cache(maxsize=2)
def _net(name: str):
    import cv2

    path = resources.files("qmag_core") / "assets" / "face_mesh" / name
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != MODELS[name]:
        raise QMagError(f"{path}: not the shipped model; rebuild it with python -m tools.build_face_mesh")
    try:
        net = cv2.dnn.readNetFromTFLite(str(path))
        return net, tuple(net.getUnconnectedOutLayersNames())
    except (AttributeError, cv2.error):  # an OpenCV without (this model's) TFLite support
        raise QMagError(
            f"the face mesh needs OpenCV 5 or later to read {name} (this is OpenCV {cv2.__version__}): "
            "pip install 'opencv-python-headless>=5'"
        ) from None


def levelling(angle: float, scale: float = 1.0) -> np.ndarray:
    """(2, 2): a turn by −``angle`` radians times ``scale``, which makes a line at
    ``angle`` (an eye line, with y down) horizontal."""
    c, n = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, n], [-n, c]])


def mesh_roi(centre, side: float, angle: float) -> np.ndarray:
    """(2, 3) affine from photo pixels to the network's 192 × 192 input, for a square box
    of ``side`` px at ``centre`` (x, y) turned by ``angle`` radians (the eye line's)."""
    A = levelling(angle, _INPUT / max(float(side), 1e-6))
    # the box's centre goes to the crop's centre
    t = np.array([_INPUT / 2, _INPUT / 2]) - A @ np.asarray(centre, np.float64)[:2]
    return np.c_[A, t]


def _forward(name: str, crop: np.ndarray) -> list:
    """The outputs of model ``name`` on one (S, S, 3) uint8 RGB crop (input values 0–1)."""
    net, outs = _net(name)
    net.setInput(np.ascontiguousarray(crop.transpose(2, 0, 1)[None], np.float32) / 255.0)
    return net.forward(outs)


def _to_photo(xy: np.ndarray, M: np.ndarray) -> np.ndarray:
    """(N, 2) crop pixels back to photo pixels through the inverse of the affine ``M``."""
    return (xy - M[:, 2]) @ np.linalg.inv(M[:, :2]).T


def _run(rgb: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, float]:
    """The network on the box ``M``: points (468, 3) in photo pixels and the presence."""
    import cv2

    crop = cv2.warpAffine(rgb, M, (_INPUT, _INPUT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    lm, flag = _forward("face_landmark.tflite", crop)
    p = np.asarray(lm, np.float64).reshape(468, 3)
    z = p[:, 2] / math.sqrt(abs(np.linalg.det(M[:, :2])))
    presence = 1.0 / (1.0 + math.exp(-float(np.asarray(flag).ravel()[0])))
    return np.c_[_to_photo(p[:, :2], M), z], presence


def _box_from_points(xy: np.ndarray, angle: float) -> tuple[np.ndarray, float]:
    """Centre and side (1.5 × the longer side of the points' box in the levelled frame)."""
    R = levelling(angle)  # photo → levelled frame
    q = xy @ R.T
    lo, hi = q.min(0), q.max(0)
    return ((lo + hi) / 2) @ R, 1.5 * float(max(hi - lo))


def face_mesh(rgb: np.ndarray, landmarks) -> FaceMesh:
    """The mesh of the face whose five detector landmarks (5, 2; eyes, nose, mouth
    corners, photo pixels) are given, in the photo ``rgb`` (H, W, 3) uint8."""
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    eyes = lm[1] - lm[0]
    angle = math.atan2(eyes[1], eyes[0])
    # first box: around the five points, as wide as MediaPipe's box from its detector
    centre, side = _box_from_points(lm, angle)
    side = max(side, 2.2 * float(np.hypot(*eyes))) * 1.35
    pts, _ = _run(rgb, mesh_roi(centre, side, angle))
    P = POINTS
    d = pts[P["eye_r_outer"], :2] - pts[P["eye_l_outer"], :2]
    angle = math.atan2(d[1], d[0])
    centre, side = _box_from_points(pts[:, :2], angle)
    pts, presence = _run(rgb, mesh_roi(centre, side, angle))
    return FaceMesh(pts, presence)


def _iris(crop: np.ndarray) -> np.ndarray:
    """The iris model's (16, 2) eye contour on one (64, 64, 3) uint8 crop whose outer
    corner is on the left, in crop pixels."""
    return np.asarray(_forward("iris_landmark.tflite", crop)[0], np.float64).reshape(-1, 3)[:16, :2]


def _eye(rgb: np.ndarray, outer: np.ndarray, inner: np.ndarray, flip: bool) -> np.ndarray:
    """The iris model on one eye: (16, 2) eye-contour points in photo pixels.  The box
    is square, 2.3 × the corner distance, levelled on the corners; the model expects the
    outer corner on the left, so the image-right eye is mirrored in and out.  The model
    also runs on the mirrored crop, and the two contours are averaged point by point
    (their twins matched: :data:`_TWIN`), which halves its noise on small eyes."""
    import cv2

    d = inner - outer if not flip else outer - inner
    angle = math.atan2(d[1], d[0])
    M = mesh_roi((outer + inner) / 2, 2.3 * float(np.hypot(*d)), angle) * (_EYE_INPUT / _INPUT)
    crop = cv2.warpAffine(rgb, M, (_EYE_INPUT, _EYE_INPUT), flags=cv2.INTER_LINEAR)
    if flip:
        crop = crop[:, ::-1]
    twin = _iris(np.ascontiguousarray(crop[:, ::-1]))[list(_TWIN)]
    twin[:, 0] = _EYE_INPUT - twin[:, 0]
    contour = (_iris(np.ascontiguousarray(crop)) + twin) / 2
    if flip:
        contour[:, 0] = _EYE_INPUT - contour[:, 0]
    return _to_photo(contour, M)


def eye_contours(rgb: np.ndarray, mesh: FaceMesh) -> np.ndarray:
    """(2, 16, 2): the image-left and image-right eye's contour in photo pixels from
    MediaPipe's iris model (``iris_landmark.tflite``, same wheel and licence), which
    follows the lids more closely than the mesh (closed eyes close)."""
    P, p = POINTS, mesh.points[:, :2]
    return np.stack(
        [
            _eye(rgb, p[P["eye_l_outer"]], p[P["eye_l_inner"]], flip=False),
            _eye(rgb, p[P["eye_r_outer"]], p[P["eye_r_inner"]], flip=True),
        ]
    )
