"""The enrolment check: is this photo good enough as a reference image, and if not, why?

For one aligned face it reports

* q with its calibrated scale value and band (:mod:`.scale`);
* per face region (:mod:`.regions`): ``share`` — the region's part of the quality the
  map says is lost (negative mass of the check's PLQ map inside the region, over the
  face's); ``q_gain`` — q after repairing the region minus q now, with the region's
  repair (``inpaint``; ``reference``, averaged over the reference faces; or the better
  of ``both``, chosen per region on development data); ``z`` — how unusual that gain is
  against what the same repair does to clean reference photos: (gain − their median) /
  their spread (IQR / 1.349), and
  ``flagged`` when z is beyond the clean photos' edge (a high percentile of their z, per
  region); an advice line for each flagged region;
* the repair of the top region (largest z) with q before/after, and the same repair of
  a random region of equal area as the control;
* ``verdict``: ``reject`` when the band is ``poor`` or any region is flagged.

The calibration (repairs, clean medians, edges) lives in the encoder's scale file
(``check`` block) and is rebuilt by ``tools/build_quality_scale.py``.  The q of the
crop and of its repairs (per region and method; the reference repair once per
reference face) run as one batch, then the top region's control.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import QMagError
from .regions import REGIONS, REPAIRS, random_region_mask, reference_faces, region_masks, repair, repairs

__all__ = [
    "ADVICE",
    "CheckReport",
    "RegionReport",
    "check_crop",
    "check_calibration",
    "clean_stats",
    "gain_z",
    "repair_gains",
]

ADVICE = {
    "forehead": "forehead: a cap, hat, hair or a shadow over the forehead lowers quality — remove headwear, "
    "keep the forehead free",
    "eyes": "eyes: sunglasses, glare or closed eyes lower quality — remove glasses, open the eyes, look at the camera",
    "nose": "nose: something over the nose (a mask, a hand) lowers quality — uncover the face",
    "mouth": "mouth: a mask, a hand or an object over the mouth lowers quality — uncover the mouth",
    "cheeks": "cheeks: hair, hands or strong shadows on the cheeks lower quality — uncover the face, light it evenly",
    "chin": "chin: a scarf, a mask or a hand over the chin lowers quality — uncover the chin",
}


@dataclass(frozen=True)
class RegionReport:
    name: str
    share: float
    q_gain: float
    z: float
    flagged: bool
    repair: str
    advice: str = ""

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "share": round(self.share, 4),
            "q_gain": round(self.q_gain, 4),
            "z": round(self.z, 3),
            "flagged": bool(self.flagged),
            "repair": self.repair,
            "advice": self.advice,
        }


@dataclass(frozen=True)
class CheckReport:
    """One image's enrolment check (see module docstring); crops are (S, S, 3) uint8."""

    q: float
    scale: float | None
    band: str
    verdict: str
    regions: tuple
    top: str
    q_after: float
    control_q_after: float
    crop: np.ndarray = field(repr=False)
    repaired: np.ndarray = field(repr=False)
    map: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0

    def to_json(self, image: str) -> dict:
        return {
            "image": image,
            "q": round(self.q, 4),
            "scale": None if self.scale is None else round(self.scale, 1),
            "band": self.band,
            "verdict": self.verdict,
            "regions": [r.to_json() for r in self.regions],
            "repair": {
                "region": self.top,
                "q_before": round(self.q, 4),
                "q_after": round(self.q_after, 4),
                "control_q_after": round(self.control_q_after, 4),
            },
        }


def check_calibration(scale) -> dict:
    """The ``check`` block of a scale, validated: per region ``repairs`` (inpaint,
    reference or both), ``clean_median`` and ``clean_spread`` {repair: q} of the clean
    reference photos' gains, and ``edge`` (z above which a region is flagged)."""
    c = (scale.check if scale is not None else None) or {}
    try:
        out = {k: {r: c[k][r] for r in REGIONS} for k in ("repairs", "clean_median", "clean_spread", "edge")}
        for r in REGIONS:
            for m in _methods(out["repairs"][r]):
                float(out["clean_median"][r][m]), float(out["clean_spread"][r][m])
            float(out["edge"][r])
    except (KeyError, TypeError, ValueError):
        who = (scale.encoder if scale is not None else None) or "?"
        raise QMagError(
            f"the quality scale of {who} has no (valid) enrolment-check "
            "calibration; rebuild it with tools/build_quality_scale.py"
        ) from None
    return out


def _methods(choice: str) -> tuple[str, ...]:
    if choice == "both":
        return REPAIRS
    if choice not in REPAIRS:
        raise ValueError(choice)
    return (choice,)


def clean_stats(gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and spread (IQR / 1.349, at least 1e-6) over axis 0 of clean reference
    photos' repair gains (N, ...) in q units: the centre and unit of :func:`gain_z`."""
    g = np.asarray(gains, np.float64)
    q75, q25 = np.percentile(g, [75, 25], axis=0)
    return np.median(g, axis=0), np.maximum((q75 - q25) / 1.349, 1e-6)


def gain_z(gain, median, spread):
    """How unusual a repair gain is against clean photos: (gain − median) / spread."""
    return (np.asarray(gain, np.float64) - median) / np.maximum(spread, 1e-6)


def _shares(raw: np.ndarray, masks: dict) -> dict[str, float]:
    lost = np.maximum(-np.asarray(raw, np.float64), 0)
    face = sum(lost[m].sum() for m in masks.values())
    return {r: float(lost[m].sum() / face) if face > 0 else 0.0 for r, m in masks.items()}


#: the check's map: occlusion sensitivity with patches of 16 % of the crop, half-overlapping
#: (≈ 120 forward passes: the map's share of the check's time)
CHECK_MAP = {"patch_frac": 0.16}


def check_map(encoder, crop: np.ndarray) -> np.ndarray:
    """The check's PLQ map (S, S) in q units (coarse occlusion sensitivity)."""
    from .explain import occlusion_map

    patch = max(8, int(round(encoder.spec.size * CHECK_MAP["patch_frac"])))
    return occlusion_map(encoder, crop, patch=patch, stride=max(4, patch // 2)).raw


def _repair_jobs(x: np.ndarray, masks: dict, jobs: list, refs: np.ndarray) -> tuple[list, list]:
    """Every repaired crop of ``jobs`` [(region, method)]: one per job for ``inpaint``,
    one per reference face for ``reference``; and each job's slice into that list."""
    out, spans = [], []
    for r, m in jobs:
        k0 = len(out)
        out += repairs(x, masks[r], m, refs)
        spans.append(slice(k0, len(out)))
    return out, spans


def check_crop(encoder, crop: np.ndarray, scale, *, with_map: bool = True, seed: int = 0) -> CheckReport:
    """Check one aligned crop (S, S, 3) of ``encoder.spec`` against ``scale`` (a
    :class:`~.scale.QualityScale` with a ``check`` block).  ``seed`` places the controls.

    A region's ``q_gain`` is the mean over its repairs (the reference repair is made with
    every reference face); the repair shown is the one whose q is the median of them
    (the lower median), and its control is the same repair of the control place."""
    t0 = time.perf_counter()
    cal = check_calibration(scale)
    spec = encoder.spec
    x = np.asarray(crop, np.uint8)
    if x.shape != (spec.size, spec.size, 3):
        raise QMagError(f"a crop for {encoder.id} must be ({spec.size}, {spec.size}, 3), got {x.shape}")
    masks = region_masks(spec)
    refs = reference_faces(spec)
    rng = np.random.default_rng(seed)
    jobs = [(r, m) for r in REGIONS for m in _methods(cal["repairs"][r])]
    fixed, spans = _repair_jobs(x, masks, jobs, refs)
    # one control place per region, drawn in region order (the same places whichever
    # region comes out on top); only the top region's is repaired and scored, below
    ctl_masks = {r: random_region_mask(spec, int(masks[r].sum()), rng) for r in REGIONS}
    q = encoder.quality_of(np.stack([x] + fixed)).astype(np.float64)
    q0, q_fix = float(q[0]), q[1:]
    best: dict[str, tuple] = {}  # region -> (z, job index, mean gain)
    for j, (r, m) in enumerate(jobs):
        g = float(q_fix[spans[j]].mean() - q0)
        z = float(gain_z(g, float(cal["clean_median"][r][m]), float(cal["clean_spread"][r][m])))
        if r not in best or z > best[r][0]:
            best[r] = (z, j, g)
    raw = check_map(encoder, x) if with_map else None
    shares = _shares(raw, masks) if raw is not None else dict.fromkeys(REGIONS, 0.0)
    regions = []
    for r in REGIONS:
        z, j, g = best[r]
        flag = z > float(cal["edge"][r])
        regions.append(RegionReport(r, shares[r], g, z, flag, jobs[j][1], ADVICE[r] if flag else ""))
    top = max(REGIONS, key=lambda r: best[r][0])
    jt = best[top][1]
    span = spans[jt]
    k = span.start + int(np.argsort(q_fix[span], kind="stable")[(span.stop - span.start - 1) // 2])
    method = jobs[jt][1]
    ref = refs[k - span.start] if method == "reference" else None
    control = repair(x, ctl_masks[top], method, ref)
    q_ctl = float(encoder.quality_of(control[None])[0])
    d = scale.describe(q0)
    verdict = "reject" if d["band"] == "poor" or any(g.flagged for g in regions) else "accept"
    return CheckReport(
        q0,
        d["scale"],
        d["band"],
        verdict,
        tuple(regions),
        top,
        float(q_fix[k]),
        q_ctl,
        x,
        fixed[k],
        raw,
        time.perf_counter() - t0,
    )


def repair_gains(encoder, crops: np.ndarray, references: np.ndarray | None = None, batch_size: int = 64) -> dict:
    """For aligned crops (N, S, S, 3): ``q`` (N,) and ``gain`` (N, repairs, regions) =
    q after each repair of each region minus q, the reference repair's averaged over the
    reference faces (K, S, S, 3) of the spec (default: the shipped ones) — the data the
    check is calibrated on, the same numbers :func:`check_crop` ranks."""
    spec = encoder.spec
    masks = region_masks(spec)
    refs = reference_faces(spec) if references is None else np.asarray(references, np.float32)
    crops = np.asarray(crops, np.uint8)
    n, R = len(crops), len(REGIONS)
    q = encoder.quality_of(crops, batch_size).astype(np.float64) if n else np.zeros(0)
    gain = np.zeros((n, len(REPAIRS), R))
    jobs = [(r, m) for m in REPAIRS for r in REGIONS]
    for i, x in enumerate(crops):
        fixed, spans = _repair_jobs(x, masks, jobs, refs)
        qf = encoder.quality_of(np.stack(fixed), batch_size)
        gain[i] = np.array([qf[sp].mean() for sp in spans]).reshape(len(REPAIRS), R) - q[i]
    return {"q": q, "gain": gain}
