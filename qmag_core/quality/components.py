"""Quality components with the names of ISO/IEC 29794-5: a native value and a 0–100
scalar per component, higher is better, with the scalar mappings of the reference
implementation (OFIQ 1.x, ``data/ofiq_config.jaxn``) where its definition is followed,
and our own mappings where the measure is our own (facts: docs/method/components.md).

Sources of the native values:

* the detector's faces: ``SingleFacePresent``;
* the 468-point face mesh (:mod:`qmag_core.vision.face_mesh`) and the photo's pixels
  (:mod:`.face_measures`): head pose, eyes open, mouth closed, eye distance, head size,
  crops, margins, the luminance statistics, illumination uniformity, natural colour,
  and our own ``EyesVisible``, ``NoHeadCoverings``, ``Sharpness``, ``CompressionArtifacts``;
* the encoder: ``UnifiedQualityScore`` is the project's calibrated quality scale (its
  native value is q), not the reference's MagFace score.

Already-aligned inputs have no photo: only the luminance statistics (on an ellipse of
the crop) are assessed for them.  Components that need networks we do not have
(``BackgroundUniformity``, ``MouthOcclusionPrevention``, ``FaceOcclusionPrevention``,
``ExpressionNeutrality``) are ``None`` ("not assessed"), never guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["COMPONENTS", "MAPPINGS", "NOT_ASSESSED", "Component", "scalar", "assess_components", "face_region_mask"]


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
    "IlluminationUniformity": lambda x: _clip(100 * max(0.0, x) ** 0.3),
    "NaturalColour": lambda x: _clip(200 * (1 - _sig(x, 0, 10))),
    "EyesVisible": lambda x: _clip(100 * (1 - x)),
    # our own mappings (our own measures; midpoints set on clean development photos)
    "NoHeadCoverings": lambda x: _clip(100 * (1 - x)),
    "Sharpness": lambda x: _clip(100 * _sig(x, 3.0, 0.8)),
    "CompressionArtifacts": lambda x: _clip(100 * (1 - _sig(x, 0.3, 0.08))),
}
#: assessed by no measure here (they need the reference's networks)
NOT_ASSESSED = ("BackgroundUniformity", "MouthOcclusionPrevention", "FaceOcclusionPrevention", "ExpressionNeutrality")
#: every component the report lists, in the reference's CSV order; None: not assessed
COMPONENTS = (
    "UnifiedQualityScore",
    "BackgroundUniformity",
    "IlluminationUniformity",
    "LuminanceMean",
    "LuminanceVariance",
    "UnderExposurePrevention",
    "OverExposurePrevention",
    "DynamicRange",
    "Sharpness",
    "CompressionArtifacts",
    "NaturalColour",
    "SingleFacePresent",
    "EyesOpen",
    "MouthClosed",
    "EyesVisible",
    "MouthOcclusionPrevention",
    "FaceOcclusionPrevention",
    "InterEyeDistance",
    "HeadSize",
    "LeftwardCrop",
    "RightwardCrop",
    "MarginAbove",
    "MarginBelow",
    "HeadPoseYaw",
    "HeadPosePitch",
    "HeadPoseRoll",
    "ExpressionNeutrality",
    "NoHeadCoverings",
)


def scalar(name: str, native: float | None) -> int | None:
    """The 0–100 scalar of a component's native value (None when not assessed)."""
    if native is None or not math.isfinite(native) or name not in MAPPINGS:
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
    """The reference's luminance statistics of the masked face of an aligned crop."""
    from .face_measures import luminance, luminance_stats

    return luminance_stats(luminance(np.asarray(crop)[mask]))


def assess_components(
    aligned, photo: np.ndarray | None = None, *, quality: tuple[float, float | None] | None = None, mesh=None
) -> dict[str, Component]:
    """Every component of :data:`COMPONENTS` for one aligned face (``aligned``: an
    :class:`~qmag_core.vision.align.AlignedFace` with its detections); ``photo`` (H, W, 3)
    uint8 the photo it was detected in (None: only the crop's statistics);
    ``quality``: (q, its calibrated scale value 0–100) for ``UnifiedQualityScore``;
    ``mesh``: the face's :class:`~qmag_core.vision.face_mesh.FaceMesh` when already made."""
    native: dict[str, float | None] = dict.fromkeys(COMPONENTS)
    scalars: dict[str, int | None] = {}
    if aligned.face is not None:
        areas = sorted((f.area for f in aligned.faces), reverse=True) or [aligned.face.area]
        native["SingleFacePresent"] = areas[1] / areas[0] if len(areas) > 1 and areas[0] > 0 else 0.0
    if aligned.face is not None and photo is not None:
        from ..vision.face_mesh import face_mesh
        from .face_measures import mesh_measures

        m = mesh if mesh is not None else face_mesh(photo, aligned.face.landmarks)
        native.update(mesh_measures(photo, m, aligned.face.box))
    else:
        native.update(_luminance_stats(aligned.crop, face_region_mask(aligned.spec)))
    if quality is not None:
        native["UnifiedQualityScore"] = float(quality[0])
        scalars["UnifiedQualityScore"] = None if quality[1] is None else _clip(quality[1])
    return {n: Component(n, native[n], scalars.get(n, scalar(n, native[n]))) for n in COMPONENTS}
