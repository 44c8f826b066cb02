"""Quality components with the names of ISO/IEC 29794-5: a native value and a 0–100
scalar per component, higher is better, with the scalar mappings of the reference
implementation (OFIQ 1.x, ``data/ofiq_config.jaxn``; facts in docs/method/components.md).

What this module assesses today, from the detector's 5 landmarks and the aligned crop:

* ``SingleFacePresent`` (the detector's faces: area of the second largest ÷ largest);
* ``InterEyeDistance`` (eye-centre distance in the photo's pixels; the reference divides
  by cos(yaw), which needs a 3-D pose: here yaw is taken as 0, so frontal photos agree);
* ``LeftwardCrop`` / ``RightwardCrop`` (the far eye's distance to the photo's edge ÷ eye
  distance, as the reference defines them);
* ``HeadPoseRoll`` (our own measure: the eye line's angle, not the reference's 3-D pose);
* ``LuminanceMean``, ``LuminanceVariance``, ``UnderExposurePrevention``,
  ``OverExposurePrevention``, ``DynamicRange`` (the reference's statistics, computed on
  an ellipse around the eyes and mouth of the aligned crop instead of its landmark
  outline: our region, the reference's formulas).

Components that need dense landmarks, a 3-D pose or segmentation networks (EyesOpen,
MouthClosed, HeadSize, margins, yaw, pitch, occlusions, …) are reported as ``None``
("not assessed") rather than guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["COMPONENTS", "Component", "scalar", "assess_components", "face_region_mask"]


def _sig(x: float, x0: float, w: float) -> float:
    return 1.0 / (1.0 + math.exp(-(x - x0) / w))


def _clip(q: float) -> int:
    return int(min(100, max(0, round(q))))


#: native value → scalar 0–100 per component (the reference implementation's mappings)
MAPPINGS = {
    "EyesOpen": lambda x: _clip(100 * _sig(x, 0.02, 0.01)),
    "MouthClosed": lambda x: _clip(100 * (1 - _sig(x, 0.2, 0.06))),
    "InterEyeDistance": lambda x: _clip(100 * _sig(x, 70, 20)),
    "HeadSize": lambda x: _clip(200 * (1 - _sig(abs(x - 0.45), 0, 0.05))),
    "LeftwardCrop": lambda x: _clip(100 * _sig(x, 0.9, 0.1)),
    "RightwardCrop": lambda x: _clip(100 * _sig(x, 0.9, 0.1)),
    "MarginAbove": lambda x: _clip(100 * _sig(x, 1.4, 0.1)),
    "MarginBelow": lambda x: _clip(100 * _sig(x, 1.8, 0.1)),
    "HeadPoseYaw": lambda x: _clip(100 * max(0.0, math.cos(math.radians(x))) ** 2),
    "HeadPosePitch": lambda x: _clip(100 * max(0.0, math.cos(math.radians(x))) ** 2),
    "HeadPoseRoll": lambda x: _clip(100 * max(0.0, math.cos(math.radians(x))) ** 2),
    "LuminanceMean": lambda m: _clip(100 * _sig(m, 0.2, 0.05) * (1 - _sig(m, 0.8, 0.05))),
    "LuminanceVariance": lambda v: _clip(100 * math.sin(math.pi * 60 * v / (60 * v + 1))),
    "UnderExposurePrevention": lambda x: _clip(120 * (0.832 - _sig(x, 0.92, 0.05))),
    "OverExposurePrevention": lambda x: _clip(min(100.0, 1 / (x + 0.01))),
    "DynamicRange": lambda h: _clip(12.5 * h),
    "SingleFacePresent": lambda f: _clip(100 * (1 - f)),
}
#: every component the report lists, in the reference's order; None: not assessed here
COMPONENTS = (
    "SingleFacePresent",
    "EyesOpen",
    "MouthClosed",
    "HeadPoseYaw",
    "HeadPosePitch",
    "HeadPoseRoll",
    "InterEyeDistance",
    "HeadSize",
    "LeftwardCrop",
    "RightwardCrop",
    "MarginAbove",
    "MarginBelow",
    "LuminanceMean",
    "LuminanceVariance",
    "UnderExposurePrevention",
    "OverExposurePrevention",
    "DynamicRange",
)


def scalar(name: str, native: float | None) -> int | None:
    """The 0–100 scalar of a component's native value (None when not assessed)."""
    if native is None or not math.isfinite(native):
        return None
    return MAPPINGS[name](float(native))


@dataclass(frozen=True)
class Component:
    name: str
    native: float | None
    scalar: int | None

    def to_json(self) -> dict:
        return {"native": None if self.native is None else round(self.native, 4), "scalar": self.scalar}


def face_region_mask(spec) -> np.ndarray:
    """(S, S) bool: an ellipse over the aligned crop around the eyes and the mouth (our
    stand-in for the reference's landmark outline)."""
    t = np.asarray(spec.template, np.float64)
    eyes, mouth = t[:2].mean(0), t[3:].mean(0)
    d = float(np.linalg.norm(t[1] - t[0]))
    cx, cy = (eyes[0] + mouth[0]) / 2, (eyes[1] + mouth[1]) / 2
    ax, ay = 1.1 * d, 0.95 * d + (mouth[1] - eyes[1]) / 2
    yy, xx = np.mgrid[: spec.size, : spec.size] + 0.5
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0


def _luminance_stats(crop: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The reference's luminance statistics of the masked face (luminance in 0–1)."""
    rgb = np.asarray(crop, np.float64)[mask]
    y = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]) / 255.0
    y8 = np.clip(np.round(y * 255), 0, 255).astype(np.int64)
    hist = np.bincount(y8, minlength=256) / y8.size
    p = hist[hist > 0]
    return {
        "LuminanceMean": float(y.mean()),
        "LuminanceVariance": float(y.var()),
        "UnderExposurePrevention": float(np.mean(y8 <= 25)),
        "OverExposurePrevention": float(np.mean(y8 >= 247)),
        "DynamicRange": float(-(p * np.log2(p)).sum()),
    }


def assess_components(aligned) -> dict[str, Component]:
    """Every component of :data:`COMPONENTS` for one aligned face (``aligned``: a
    :class:`~qmag_core.vision.align.AlignedFace` with its detections and the photo's
    size)."""
    image_size = aligned.source_size
    native: dict[str, float | None] = dict.fromkeys(COMPONENTS)
    native.update(_luminance_stats(aligned.crop, face_region_mask(aligned.spec)))
    if aligned.face is not None:
        areas = sorted((f.area for f in aligned.faces), reverse=True) or [aligned.face.area]
        native["SingleFacePresent"] = areas[1] / areas[0] if len(areas) > 1 and areas[0] > 0 else 0.0
        native.update(_eye_measures(np.asarray(aligned.face.landmarks, np.float64), image_size))
    return {n: Component(n, native[n], scalar(n, native[n])) for n in COMPONENTS}


def _eye_measures(lm: np.ndarray, image_size: tuple[int, int]) -> dict[str, float]:
    """From the eye centres (landmarks 0, 1: the subject's right eye on the image's left):
    eye distance, the two crops, and the eye line's roll in degrees (positive when the
    eye on the image's right is lower)."""
    (x0, y0), (x1, y1) = lm[0], lm[1]
    d = math.hypot(x1 - x0, y1 - y0)
    if d <= 0:
        return {}
    w = image_size[0]
    return {
        "InterEyeDistance": d,
        "LeftwardCrop": min(x0, x1) / d,
        "RightwardCrop": (w - max(x0, x1)) / d,
        "HeadPoseRoll": math.degrees(math.atan2(y1 - y0, x1 - x0)),
    }
