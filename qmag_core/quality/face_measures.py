"""Native values of the ISO/IEC 29794-5 components that a 468-point face mesh and the
photo's pixels define (facts and formulas: docs/method/components.md).

Geometry follows the reference implementation's definitions on our landmarks: eye
centre = mean of the eye's two corners; T = distance from the eyes' midpoint to the
chin.  Image statistics are computed in a *face frame*: the photo warped so that the
eyes are level and 96 px apart (small faces are enlarged, large ones reduced), which
makes zone sizes and histograms independent of the photo's resolution.

Our own measures (the reference uses networks we do not have; documented as such):

* ``EyesVisible`` — occluded share of the worse eye's zone (an ellipse around each eye);
* ``NoHeadCoverings`` — occluded share of the forehead zone (brows to the mesh's top, and a
  band of :data:`HEAD_BAND` eye distances above it, where a cap's crown sits);

where a pixel is *occluded* when its colour is unlike the face's own skin (:data:`SKIN_CHROMA`,
:data:`SKIN_DARK`) (the median of two cheekbone patches and the nose
dorsum: parts no glasses, cap or mask covers) and it is not a specular highlight
(:func:`occluded`).  ``Sharpness`` is the mean absolute
Laplacian of the face's luminance in the face frame, ``CompressionArtifacts`` the
excess of luminance steps across the photo's 8 × 8 JPEG block edges over steps inside
blocks, in the face box.
"""

from __future__ import annotations

import math

import numpy as np

from ..vision.face_mesh import LID_PAIRS, POINTS, FaceMesh, eye_contours, levelling
from ..vision.head_pose import head_pose

__all__ = [
    "SKIN_CHROMA",
    "SKIN_DARK",
    "HEAD_BAND",
    "occluded",
    "luminance_stats",
    "FRAME_IED",
    "mesh_measures",
    "face_frame",
    "luminance",
]

#: eye distance (px) of the face frame the statistics are computed in
FRAME_IED = 96.0
#: a pixel counts as occluded when its chromaticity (r, g) = (R, G) / (R + G + B) lies
#: further than SKIN_CHROMA from the skin's, or its luminance is below SKIN_DARK × the
#: skin's (chosen on development photos with the development occluders only:
#: docs/results/components.md)
SKIN_CHROMA = 0.07
SKIN_DARK = 0.25
#: height (in eye distances) of the band above the mesh's upper rim that NoHeadCoverings
#: counts with the forehead: a cap's brim sits on that rim, leaving the forehead under it bare
HEAD_BAND = 0.35


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Luminance 0–255 (ITU-R BT.601 weights) of (..., 3) RGB."""
    x = np.asarray(rgb, np.float64)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def face_frame(rgb: np.ndarray, mesh: FaceMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face frame: the photo around the face (and the head band above it), levelled
    and scaled so the eyes are :data:`FRAME_IED` px apart; returns the frame (uint8 RGB),
    the mesh's (468, 2) points in it and an (H, W) bool mask of the pixels that lie
    inside the photo."""
    import cv2

    e = mesh.eye_centres()
    d = e[1] - e[0]
    s = FRAME_IED / max(float(np.hypot(*d)), 1e-6)
    A = levelling(math.atan2(d[1], d[0]), s)
    pts = mesh.points[:, :2] @ A.T
    lo = pts.min(0) - [0.15 * FRAME_IED, (HEAD_BAND + 0.15) * FRAME_IED]
    hi = pts.max(0) + 0.15 * FRAME_IED
    M = np.c_[A, -lo]
    size = tuple(int(v) for v in np.ceil(hi - lo))
    frame = cv2.warpAffine(rgb, M, size, flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones(rgb.shape[:2], np.uint8), M, size, flags=cv2.INTER_NEAREST) > 0
    return frame, pts - lo, inside


def _poly_mask(shape, poly: np.ndarray) -> np.ndarray:
    import cv2

    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
    return m.astype(bool)


def _hull_mask(shape, pts: np.ndarray) -> np.ndarray:
    import cv2

    return _poly_mask(shape, cv2.convexHull(pts.astype(np.float32))[:, 0])


def _patch(shape, centre, half: float) -> np.ndarray:
    m = np.zeros(shape[:2], bool)
    x0, y0 = (int(round(v - half)) for v in centre)
    x1, y1 = (int(round(v + half)) for v in centre)
    m[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return m


def _lab(rgb: np.ndarray) -> np.ndarray:
    import cv2

    x = np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(x, cv2.COLOR_RGB2LAB).astype(np.float64).reshape(np.shape(rgb))


def _geometry(mesh: FaceMesh, image_size: tuple[int, int], eyes_contour: np.ndarray) -> dict[str, float]:
    """Pose, eye distance, crops, margins, head size, eyes open (on the iris model's
    eye contours ``eyes_contour`` (2, 16, 2)), mouth closed."""
    P, p = POINTS, mesh.points
    w, h = image_size
    eyes = mesh.eye_centres()
    mid = eyes.mean(0)
    T = float(np.hypot(*(p[P["chin"], :2] - mid)))
    ied = float(np.hypot(*(eyes[1] - eyes[0])))
    yaw, pitch, roll = head_pose(p)
    if T <= 0 or ied <= 0:
        return {}

    def lids(pairs, q=p) -> float:
        return max(float(np.hypot(*(q[a, :2] - q[b, :2]))) for a, b in pairs)

    return {
        "HeadPoseYaw": yaw,
        "HeadPosePitch": pitch,
        "HeadPoseRoll": roll,
        "InterEyeDistance": ied / max(math.cos(math.radians(yaw)), 1e-3),
        "LeftwardCrop": float(min(eyes[:, 0])) / ied,
        "RightwardCrop": (w - float(max(eyes[:, 0]))) / ied,
        "MarginAbove": float(mid[1]) / T,
        "MarginBelow": (h - float(mid[1])) / T,
        "HeadSize": T / h,
        "EyesOpen": min(lids(LID_PAIRS, e) for e in eyes_contour) / T,
        "MouthClosed": lids(P["lips_inner"]) / T,
    }


def _zones(frame: np.ndarray, pts: np.ndarray, inside: np.ndarray) -> tuple[dict, np.ndarray, list]:
    """Masks over the face frame: face (the mesh's hull), cheeks, skin patches, eyes,
    forehead with the head band above it (eyes and forehead only where ``inside`` the
    photo)."""
    P, u = POINTS, FRAME_IED
    shp = frame.shape
    el, er = pts[[P["eye_l_outer"], P["eye_l_inner"]]].mean(0), pts[[P["eye_r_inner"], P["eye_r_outer"]]].mean(0)
    yy, xx = np.mgrid[: shp[0], : shp[1]] + 0.5
    eye = [((xx - c[0]) / (0.3 * u)) ** 2 + ((yy - c[1]) / (0.17 * u)) ** 2 <= 1 for c in (el, er)]
    brows = pts[list(P["brow_l"]) + list(P["brow_r"])]
    rim = pts[list(P["forehead_rim"])]
    forehead = _poly_mask(shp, np.r_[rim, brows[::-1] - [0, 0.08 * u]]) | _poly_mask(
        shp, np.r_[rim - [0, HEAD_BAND * u], rim[::-1]]
    )
    skin = (
        _patch(shp, pts[P["cheek_l"]], 0.12 * u)
        | _patch(shp, pts[P["cheek_r"]], 0.12 * u)
        | _patch(shp, pts[[6, 195]].mean(0), 0.06 * u)
    )
    # the reference's measurement zones: squares below each eye, halfway to the mouth
    mouth = pts[[61, 291]].mean(0)
    em = float(mouth[1] - (el[1] + er[1]) / 2)
    cheeks = [_patch(shp, (c[0], c[1] + em / 2), 0.15 * u) for c in (el, er)]
    zones = {"eye_l": eye[0] & inside, "eye_r": eye[1] & inside, "forehead": forehead & inside}
    return {"face": _hull_mask(shp, pts), **zones}, skin, cheeks


def occluded(frame: np.ndarray, Y: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels unlike the skin patches ``skin`` (H, W) bool of the RGB
    ``frame`` with luminance ``Y``: chromaticity further than :data:`SKIN_CHROMA`, or
    darker than :data:`SKIN_DARK` × the skin.  Specular highlights are skin: a pixel
    brighter than the skin whose chromaticity lies within SKIN_CHROMA / 2 of the line from
    the skin's to neutral grey (skin colour plus the light's own, the dichromatic model)
    is not occluded."""
    x = np.asarray(frame, np.float64)
    rg = x[..., :2] / np.maximum(x.sum(-1, keepdims=True), 1.0)
    ref = np.median(rg[skin], axis=0)
    y_skin = float(np.median(Y[skin]))
    far = (np.hypot(*(rg - ref).transpose(2, 0, 1)) > SKIN_CHROMA) | (Y < SKIN_DARK * y_skin)
    v = np.array([1 / 3, 1 / 3]) - ref  # skin → neutral
    t = np.clip((rg - ref) @ v / max(float(v @ v), 1e-12), 0.0, 1.0)
    off_line = np.hypot(*(rg - ref - t[..., None] * v).transpose(2, 0, 1))
    return far & ~((Y > y_skin) & (off_line < SKIN_CHROMA / 2))


def luminance_stats(Y: np.ndarray) -> dict[str, float]:
    """The reference's luminance statistics of a face's pixels ``Y`` (luminance 0–255):
    mean and variance on 0–1, the shares at 0–25 and 247–255, the histogram's entropy."""
    y = np.asarray(Y, np.float64) / 255.0
    hist = _histogram(y * 255)
    nz = hist[hist > 0]
    return {
        "LuminanceMean": float(y.mean()),
        "LuminanceVariance": float(y.var()),
        "UnderExposurePrevention": float(hist[:26].sum()),
        "OverExposurePrevention": float(hist[247:].sum()),
        "DynamicRange": float(-(nz * np.log2(nz)).sum()),
    }


def _histogram(y: np.ndarray) -> np.ndarray:
    y8 = np.clip(np.round(y), 0, 255).astype(np.int64)
    return np.bincount(y8, minlength=256) / max(y8.size, 1)


def _statistics(frame: np.ndarray, pts: np.ndarray, inside: np.ndarray) -> dict[str, float]:
    """Luminance statistics of the face, illumination uniformity, natural colour,
    occluded shares of the eyes and the forehead, sharpness."""
    import cv2

    zones, skin, cheeks = _zones(frame, pts, inside)
    Y = luminance(frame)
    out = luminance_stats(Y[zones["face"]])
    out["Sharpness"] = float(np.abs(cv2.Laplacian(Y, cv2.CV_64F, ksize=3))[zones["face"]].mean())
    if all(m.any() for m in cheeks):
        out["IlluminationUniformity"] = float(np.minimum(*(_histogram(Y[m]) for m in cheeks)).sum())
        lab = _lab(frame[cheeks[0] | cheeks[1]]).mean(0)
        da = max(0.0, 5 - lab[1], lab[1] - 25)
        db = max(0.0, 5 - lab[2], lab[2] - 35)
        out["NaturalColour"] = float(math.hypot(da, db))
    if skin.any():
        far = occluded(frame, Y, skin)
        if zones["eye_l"].any() and zones["eye_r"].any():
            out["EyesVisible"] = max(float(far[zones[k]].mean()) for k in ("eye_l", "eye_r"))
        if zones["forehead"].any():
            out["NoHeadCoverings"] = float(far[zones["forehead"]].mean())
    return out


def _blockiness(rgb: np.ndarray, box) -> float | None:
    """Mean luminance step across 8 × 8 block edges ÷ inside blocks, minus 1, in ``box``
    (x1, y1, x2, y2) of the photo's own pixel grid (the grid a JPEG was coded on)."""
    h, w = rgb.shape[:2]
    x1, y1 = (max(0, int(v) // 8 * 8) for v in box[:2])
    x2, y2 = min(w, int(box[2])), min(h, int(box[3]))
    if x2 - x1 < 32 or y2 - y1 < 32:
        return None
    Y = luminance(rgb[y1:y2, x1:x2])
    dx = np.abs(np.diff(Y, axis=1))  # step between column j and j + 1
    dy = np.abs(np.diff(Y, axis=0))
    edge_x = (np.arange(dx.shape[1]) % 8) == 7
    edge_y = (np.arange(dy.shape[0]) % 8) == 7
    across = np.r_[dx[:, edge_x].ravel(), dy[edge_y].ravel()].mean()
    inside = np.r_[dx[:, ~edge_x].ravel(), dy[~edge_y].ravel()].mean()
    return float(across / max(inside, 1e-6) - 1.0)


def mesh_measures(rgb: np.ndarray, mesh: FaceMesh, box) -> dict[str, float]:
    """Native values from one face's mesh in the photo ``rgb`` (H, W, 3) uint8 and its
    detector box (x1, y1, x2, y2): keys are component names; absent = not assessed."""
    out = _geometry(mesh, (rgb.shape[1], rgb.shape[0]), eye_contours(rgb, mesh))
    out.update(_statistics(*face_frame(rgb, mesh)))
    b = _blockiness(rgb, box)
    if b is not None:
        out["CompressionArtifacts"] = b
    return out
