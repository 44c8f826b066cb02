"""A quality scale that means something: q mapped to the match rate it allows.

For an encoder and a reference set of labelled pairs, the **scale value** of a quality q
is ``100 · (1 − FNMR(q))``, where FNMR(q) is the false non-match rate at the operating
point (cosine threshold at ``fmr`` on the reference imposters) among genuine pairs whose
*worse* image has quality q — a monotone (isotonic, non-increasing) fit over quantile
bins of the worse q, linear between bin centres and flat beyond them.  So "scale 70"
reads: comparisons with an image of this quality fail 30 % of the time at that FMR.

**Bands** have data-driven edges: ``good`` where the fitted FNMR is at most half the
reference set's overall FNMR, ``poor`` where it is at least 1.5 times it, ``usable``
between (the multipliers are :data:`BAND_RULE`).  The q edges are where the fit crosses
those rates.

The same file carries the **fixed PLQ scale** of the encoder: per map method, the
99th percentile of |attribution| over clean reference crops, so maps divided by it are
comparable across photos and before/after a repair.

Shipped for ``builtin`` (``qmag_core/assets/quality_scale/builtin.json``, rebuilt by
``tools/build_quality_scale.py``); ``qmag calibrate-quality`` fits one for any encoder
and dataset.  numpy and scipy only.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, QMagError, shown
from ..evaluation.metrics import threshold_at_fmr
from ..scores.params import same_q_scale

__all__ = [
    "QualityScale",
    "fit_scale",
    "load_scale",
    "shipped_scale",
    "shipped_references",
    "scale_for",
    "BANDS",
    "BAND_RULE",
    "SCALE_DIR",
    "REFERENCES",
]

SCALE_DIR = Path(__file__).resolve().parents[1] / "assets" / "quality_scale"
BANDS = ("poor", "usable", "good")
#: (good when FNMR ≤ a · overall, poor when FNMR ≥ b · overall)
BAND_RULE = (0.5, 1.5)
FORMAT = "qmag-quality-scale-1"
#: the reference faces of the check's ``reference`` repair: K dlib-150 aligned crops side
#: by side in one PNG (150 × 150·K), licence and source beside it
REFERENCES = SCALE_DIR / "reference_faces_dlib150.png"


@dataclass(frozen=True)
class QualityScale:
    """Monotone map q → scale value (0–100) and band, for one encoder.

    ``q_knots`` (K,) increasing, ``fnmr_knots`` (K,) non-increasing in [0, 1];
    ``edges`` = (q where poor ends, q where good starts); ``plq`` = {method: units of q
    that map to ±1 on the fixed PLQ scale}."""

    encoder: str
    encoder_key: str
    fmr: float
    threshold: float
    q_knots: tuple
    fnmr_knots: tuple
    edges: tuple
    fnmr_overall: float
    n_genuine: int
    n_imposter: int
    source: str = ""
    plq: dict = field(default_factory=dict)
    #: the enrolment check's calibration (:mod:`.check`): repairs, clean_median, edge per region
    check: dict = field(default_factory=dict)

    def fnmr(self, q) -> np.ndarray:
        """Fitted FNMR at quality q (any shape)."""
        return np.interp(np.asarray(q, np.float64), self.q_knots, self.fnmr_knots)

    def value(self, q) -> np.ndarray:
        """Scale value 0–100 (= 100 · expected match rate at the operating point)."""
        return 100.0 * (1.0 - self.fnmr(q))

    def band(self, q) -> np.ndarray:
        """'poor' / 'usable' / 'good' per q (NaN q → 'unknown')."""
        q = np.asarray(q, np.float64)
        k = np.searchsorted(np.asarray(self.edges, np.float64), q, side="right")
        out = np.asarray(BANDS, dtype=object)[np.clip(k, 0, 2)]
        out = np.where(np.isfinite(q), out, "unknown")
        return out if out.ndim else str(out)

    def mismatch(self, encoder_id: str, encoder_key: str) -> str | None:
        """Why this scale does not describe q of that encoder (None when it does)."""
        if same_q_scale(self.encoder_key, encoder_key):
            return None
        return (
            f"this quality scale was calibrated on q of encoder {self.encoder!r} ({self.encoder_key}), "
            f"but q here comes from {encoder_id!r} ({encoder_key}): its values and bands do not apply"
        )

    def describe(self, q: float) -> dict:
        """The JSON fields shown beside a raw q."""
        if not math.isfinite(q):
            return {"q": None, "scale": None, "band": "unknown"}
        return {"q": round(float(q), 4), "scale": round(float(self.value(q)), 1), "band": str(self.band(q))}

    def to_json(self) -> dict:
        d = asdict(self)
        d["format"] = FORMAT
        d["q_knots"] = [round(float(x), 5) for x in self.q_knots]
        d["fnmr_knots"] = [round(float(x), 6) for x in self.fnmr_knots]
        d["edges"] = [round(float(x), 5) for x in self.edges]
        return d

    def save(self, path: str | os.PathLike) -> None:
        from ..outputs import atomic_write

        with atomic_write(path) as fh:
            fh.write(json.dumps(self.to_json(), indent=1) + "\n")

    def with_plq(self, plq: dict) -> QualityScale:
        return QualityScale(**{**asdict(self), "plq": dict(plq)})

    def with_check(self, check: dict) -> QualityScale:
        return QualityScale(**{**asdict(self), "check": dict(check)})


def _crossing(qk: np.ndarray, fk: np.ndarray, level: float) -> float:
    """Smallest q where the non-increasing fit falls to ≤ level (linear between knots)."""
    below = np.nonzero(fk <= level)[0]
    if below.size == 0:
        return float(qk[-1])
    j = int(below[0])
    if j == 0:
        return float(qk[0])
    f0, f1 = fk[j - 1], fk[j]
    t = (f0 - level) / (f0 - f1) if f0 > f1 else 1.0
    return float(qk[j - 1] + t * (qk[j] - qk[j - 1]))


def fit_scale(
    s,
    label,
    q1,
    q2,
    *,
    fmr: float = 1e-3,
    imposter_scores=None,
    bins: int = 20,
    encoder: str = "",
    encoder_key: str = "",
    source: str = "",
) -> QualityScale:
    """Fit the scale on reference pairs: cosines ``s`` (N,), ``label`` (N,) 1 = genuine,
    qualities ``q1``, ``q2`` (N,).  The threshold comes from ``imposter_scores`` when
    given (e.g. all cross-identity pairs of the reference images), else from the
    imposter pairs among the N; it must hold ≥ 1/fmr imposters."""
    from scipy.optimize import isotonic_regression

    s, label = np.asarray(s, np.float64), np.asarray(label).astype(bool)
    qw = np.minimum(np.asarray(q1, np.float64), np.asarray(q2, np.float64))
    keep = np.isfinite(s) & np.isfinite(qw)
    s, label, qw = s[keep], label[keep], qw[keep]
    imp = np.asarray(imposter_scores if imposter_scores is not None else s[~label], np.float64)
    imp = imp[np.isfinite(imp)]
    if not 0 < fmr < 1:
        raise QMagError(f"fmr must be in (0, 1), got {fmr}")
    if imp.size < math.ceil(1 / fmr):
        raise QMagError(f"FMR {fmr:g} needs at least {math.ceil(1 / fmr)} imposter scores, got {imp.size}")
    gen = label.sum()
    if gen < 4 * bins:
        raise QMagError(
            f"{bins} bins (--bins) need at least {4 * bins} genuine pairs with both images embedded, got {gen}: "
            "use fewer bins or more pairs"
        )
    t = threshold_at_fmr(imp, fmr)  # at most fmr·n imposters above it
    qg, miss = qw[label], (s[label] <= t).astype(np.float64)
    order = np.argsort(qg, kind="stable")
    qg, miss = qg[order], miss[order]
    cuts = np.linspace(0, qg.size, bins + 1).round().astype(int)
    counts = np.diff(cuts)
    q_mid = np.array([np.median(qg[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)])
    rate = np.add.reduceat(miss, cuts[:-1]) / counts
    fit = isotonic_regression(rate, weights=counts, increasing=False).x
    overall = float(miss.mean())
    a, b = BAND_RULE
    poor_end = _crossing(q_mid, fit, b * overall)
    good_start = max(_crossing(q_mid, fit, a * overall), poor_end)
    return QualityScale(
        encoder=encoder,
        encoder_key=encoder_key,
        fmr=float(fmr),
        threshold=t,
        q_knots=tuple(float(x) for x in q_mid),
        fnmr_knots=tuple(float(x) for x in np.clip(fit, 0, 1)),
        edges=(poor_end, good_start),
        fnmr_overall=overall,
        n_genuine=int(gen),
        n_imposter=int(imp.size),
        source=source,
    )


def load_scale(path: str | os.PathLike) -> QualityScale:
    """Read a scale file (written by :meth:`QualityScale.save`), every field checked for
    its type and range: :class:`DataFormatError` naming the file and the field."""
    from ..safeio import read_json

    d = read_json(path, expected="a quality scale JSON file")
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise DataFormatError(f"not a quality scale file (expected format {FORMAT!r})", path=str(path))
    d = {k: v for k, v in d.items() if k != "format"}
    _check_scale_fields(d, str(path))
    return QualityScale(**{**d, **{k: tuple(d[k]) for k in ("q_knots", "fnmr_knots", "edges")}})


def _check_scale_fields(d: dict, source: str) -> None:
    from ..safeio import is_real, real_list

    def bad(key, what):
        raise DataFormatError(f"field {key!r} must be {what}, got {shown(d.get(key))}", path=source)

    unknown = sorted(set(d) - set(QualityScale.__dataclass_fields__))
    missing = [k for k, f in QualityScale.__dataclass_fields__.items() if f.default is MISSING and k not in d]
    if unknown or missing:
        raise DataFormatError(f"unknown field(s) {unknown[:5]} or missing field(s) {missing}", path=source)
    for key in ("encoder", "encoder_key", "source"):
        if key in d and not (isinstance(d[key], str) and len(d[key]) <= 1000):
            bad(key, "a string")
    checks = (
        ("fmr", lambda v: is_real(v) and 0 < v < 1, "a number in (0, 1)"),
        ("threshold", lambda v: is_real(v) and -1 <= v <= 1, "a cosine in [-1, 1]"),
        ("fnmr_overall", lambda v: is_real(v) and 0 <= v <= 1, "a rate in [0, 1]"),
        ("n_genuine", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a count >= 0"),
        ("n_imposter", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a count >= 0"),
        ("q_knots", lambda v: real_list(v, n=(2, 10_000)) and all(np.diff(v) >= 0), "an increasing list of q"),
        ("fnmr_knots", lambda v: real_list(v, lo=0, hi=1, n=(len(d["q_knots"]),) * 2), "FNMRs in [0, 1], one per q"),
        ("edges", lambda v: real_list(v, n=(2, 2)) and v[0] <= v[1], "[q where poor ends, q where good starts]"),
        ("plq", lambda v: isinstance(v, dict) and all(is_real(x) and x > 0 for x in v.values()), "{method: unit > 0}"),
        ("check", lambda v: isinstance(v, dict), "an object"),
    )
    for key, ok, what in checks:
        if key in d and not ok(d[key]):
            bad(key, what)
    if np.any(np.diff(d["fnmr_knots"]) > 1e-12):
        bad("fnmr_knots", "non-increasing in q")


def scale_for(encoder) -> QualityScale | None:
    """The shipped scale of ``encoder`` when it was calibrated on this encoder's q (same
    weights and quality head), else None (q is then shown raw)."""
    sc = shipped_scale(encoder.id)
    if sc is None or not same_q_scale(sc.encoder_key, encoder.key):
        return None
    return sc


def shipped_scale(encoder_id: str) -> QualityScale | None:
    """The scale shipped for an encoder id (``builtin``), or None."""
    base = encoder_id.removesuffix("-int8")
    p = SCALE_DIR / f"{base}.json"
    return load_scale(p) if p.is_file() else None


def shipped_references() -> np.ndarray:
    """The shipped reference faces (K, 150, 150, 3) float32 (dlib-150 aligned crops)."""
    from PIL import Image

    with Image.open(REFERENCES) as im:
        strip = np.asarray(im.convert("RGB"), np.float32)
    h, w, _ = strip.shape
    if w % h:
        raise QMagError(f"{REFERENCES.name}: a strip of square faces was expected, got {w}x{h}")
    return np.stack(np.split(strip, w // h, axis=1))
