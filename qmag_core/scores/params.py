"""QMagFace parameter records: what a params JSON holds, validated on the way in."""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt

from ..errors import DataFormatError
from ..safeio import is_real
from .scoring import qmagface_score

__all__ = [
    "QMagFaceParams",
    "SHIPPED_FMRS",
    "ParamsCI",
    "SAME_Q_SUFFIXES",
    "same_q_scale",
    "OFFICIAL_IRESNET100",
    "OFFICIAL_PARAMS",
    "QUALITY_MEANING",
    "scale_free",
]

FloatArray = npt.NDArray[np.float64]

#: FMRs at which a shipped parameter set stores its decision thresholds (1e-4 … 1e-1)
SHIPPED_FMRS = tuple(np.logspace(-4, -1, 13))

#: α/β published with the official code for MagFace iResNet100 (trained on Adience).
OFFICIAL_IRESNET100 = {"alpha": 0.077428, "beta": 0.125926}

#: What the quality q means for each encoder id (written into params JSON).
QUALITY_MEANING = {
    "builtin": "length of the built-in encoder's embedding (its utility quality head: ≈ 100 × predicted "
    "cosine to a clean capture)",
    "builtin-raw": "length of the raw faceRecognitionNet descriptor (weak quality proxy)",
    "magface": "MagFace embedding length ||e||",
    None: "q1, q2 as given in the scores file (embedding lengths, MagFace quality)",
}


#: key suffixes of an encoder's variants that keep its q scale: the ONNX runtime, mirrored
#: faces, and the int8 graph (q agreement with the float graph: docs/results/embedding.md)
SAME_Q_SUFFIXES = ("-onnx", "-flip", "-int8")


def same_q_scale(key_a: str, key_b: str) -> bool:
    """Whether two encoder keys give q on one scale: equal once the variant suffixes of
    :data:`SAME_Q_SUFFIXES` are stripped (in any order).  α/β files and quality scales
    both decide with this."""

    def strip(k: str) -> str:
        while k.endswith(SAME_Q_SUFFIXES):
            k = k[: k.rindex("-")]
        return k

    return strip(str(key_a)) == strip(str(key_b))


@dataclass(frozen=True)
class ParamsCI:
    """Seeded bootstrap confidence interval of α and β (percentile method)."""

    alpha: tuple[float, float]
    beta: tuple[float, float]
    level: float
    n_boot: int
    n_failed: int
    alphas: FloatArray = field(repr=False)
    betas: FloatArray = field(repr=False)


@dataclass
class QMagFaceParams:
    """A trained QMagFace parameter set, as stored in params JSON files."""

    alpha: float
    beta: float
    mode: str = "official"
    fmrs: list = field(default_factory=list)
    thresholds: list = field(default_factory=list)
    omega_opt: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    encoder: str | None = None
    quality: str = QUALITY_MEANING[None]
    trained_on: dict = field(default_factory=dict)
    n_ties: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    #: thresholds on s and ŝ per FMR measured on labelled pairs (for decisions)
    operating_points: list = field(default_factory=list)
    #: fingerprint of the encoder + quality head whose q these α/β were trained on
    #: (``Encoder.key``; None when unknown): ω(s)·q only means something on that q scale
    encoder_key: str | None = None

    @classmethod
    def shipped(cls, encoder_id: str) -> QMagFaceParams | None:
        """The parameter set shipped for an encoder (``qmag_core/assets/params/<id>.json``),
        None when there is none; the file is read once, each call returns its own copy."""
        p = _shipped_params(str(encoder_id))
        return copy.deepcopy(p) if p is not None else None

    def threshold_at(self, fmr: float) -> tuple[float | None, float | None, float | None]:
        """``(fmr_used, threshold_s, threshold_s_hat)`` from the operating points: the
        largest stored FMR ≤ the requested one (conservative); Nones when there is none."""
        ok = [d for d in sorted(self.operating_points, key=lambda d: d["fmr"]) if d["fmr"] <= fmr * (1 + 1e-9)]
        if not ok:
            return None, None, None
        d = ok[-1]
        return float(d["fmr"]), float(d["threshold_s"]), float(d["threshold_s_hat"])

    def score(self, s: npt.ArrayLike, q_min: npt.ArrayLike) -> FloatArray:
        return qmagface_score(s, q_min, self.alpha, self.beta)

    @property
    def s0(self) -> float:
        """Zero crossing α/β: pairs with s ≥ s0 are left unchanged (scale-free)."""
        return self.alpha / self.beta if self.beta != 0 else math.inf

    def max_correction(self, s_low: float, q: float) -> float:
        """Correction ω(s_low)·q at a low cosine s_low and quality q (≤ 0)."""
        return float(min(0.0, self.beta * s_low - self.alpha) * q)

    def quality_mismatch(self, encoder_key: str | None) -> str | None:
        """Why these α/β may not fit q from the encoder ``encoder_key`` (None when they
        fit or either side is unknown; see :func:`same_q_scale`)."""
        if not self.encoder_key or not encoder_key or same_q_scale(self.encoder_key, encoder_key):
            return None
        return (
            f"these α/β were trained on q from encoder {self.encoder_key!r}, but q here comes from "
            f"{encoder_key!r} (other weights or quality head): q may be on another scale, retrain α/β on this encoder"
        )

    def mismatch(self, encoder_id: str | None, encoder_key: str | None = None) -> str | None:
        """Why these α/β may not fit q from that encoder (another encoder id, or another
        key of the same id: other weights or head); None when they fit or it is unknown.
        Every command and page that applies a params file says this as a warning."""
        if self.encoder and encoder_id and self.encoder != encoder_id and not same_q_scale(self.encoder, encoder_id):
            return (
                f"these α/β were trained for encoder '{self.encoder}' but the scores come from '{encoder_id}'; "
                "α/β depend on the encoder's quality scale"
            )
        return self.quality_mismatch(encoder_key)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path) -> None:
        """Write the JSON atomically."""
        from ..outputs import atomic_write

        with atomic_write(path) as fh:
            json.dump(self.to_dict(), fh, indent=2)
            fh.write("\n")

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "params") -> QMagFaceParams:
        """Validate a params mapping: α/β real numbers (not booleans), known fields of
        the right type; anything else is a :class:`DataFormatError` naming the key."""
        if not isinstance(d, dict):
            raise DataFormatError("expected a JSON object with 'alpha' and 'beta'", path=source)
        missing = [k for k in ("alpha", "beta") if k not in d]
        if missing:
            raise DataFormatError(f"missing key(s) {missing}; expected 'alpha' and 'beta'", path=source)
        for k in ("alpha", "beta"):
            if not is_real(d[k]):
                raise DataFormatError(f"'{k}' must be a finite number, got {d[k]!r}", path=source)
        alpha, beta = float(d["alpha"]), float(d["beta"])
        known = {f for f in cls.__dataclass_fields__}
        rest = {k: v for k, v in d.items() if k in known and k not in ("alpha", "beta")}
        _check_param_fields(rest, source)
        return cls(alpha=alpha, beta=beta, **rest)

    @classmethod
    def load(cls, path) -> QMagFaceParams:
        """Read a params JSON (at most 16 MiB of UTF-8)."""
        from ..safeio import read_json

        d = read_json(path, expected="a params JSON", max_bytes=16 << 20)
        return cls.from_dict(d, source=str(path))


#: The published parameter set as a record (what the Train page compares against).
OFFICIAL_PARAMS = QMagFaceParams(
    **OFFICIAL_IRESNET100,
    mode="official",
    encoder="magface",
    quality="MagFace iResNet100 embedding length (published, trained on Adience)",
)


def scale_free(p: QMagFaceParams, *, s_low: float = 0.0, q: float | None = None) -> dict:
    """Encoder-independent view of α/β: zero crossing s0 = α/β (no correction above it)
    and the correction ω(s_low)·q at a low cosine, relative to the cosine range."""
    return {
        "s0": p.s0,
        "omega_at_s_low": min(0.0, p.beta * s_low - p.alpha),
        "correction_at_s_low": None if q is None else p.max_correction(s_low, q),
    }


def _check_param_fields(d: dict, source: str) -> None:
    """Types of the optional fields of a params JSON (those code reads back)."""

    def bad(key, what):
        raise DataFormatError(f"'{key}' must be {what}", path=source)

    if "mode" in d and d["mode"] not in ("official", "consistent"):
        bad("mode", "'official' or 'consistent'")
    for key in ("fmrs", "thresholds", "omega_opt", "n_ties"):
        if key in d and not (isinstance(d[key], list) and all(v is None or is_real(v) for v in d[key])):
            bad(key, "a list of numbers")
    for key, kind, what in (
        ("options", dict, "an object"),
        ("trained_on", dict, "an object"),
        ("notes", list, "a list"),
    ):
        if key in d and not isinstance(d[key], kind):
            bad(key, what)
    for key in ("encoder", "quality", "encoder_key"):
        if key in d and d[key] is not None and not isinstance(d[key], str):
            bad(key, "a string")
    if "operating_points" in d:
        _check_operating_points(d["operating_points"], source)


def _check_operating_points(ops, source: str) -> None:
    if not isinstance(ops, list):
        raise DataFormatError(
            "'operating_points' must be a list of {fmr, threshold_s, threshold_s_hat} objects", path=source
        )
    for k, op in enumerate(ops):
        ok = isinstance(op, dict) and all(is_real(op.get(f)) for f in ("fmr", "threshold_s", "threshold_s_hat"))
        if not (ok and 0 < op["fmr"] <= 1):
            raise DataFormatError(
                f"operating_points[{k}] must be an object with numbers fmr in (0, 1], "
                f"threshold_s and threshold_s_hat; got {op!r}"[:300],
                path=source,
            )


@functools.cache
def _shipped_params(encoder_id: str) -> QMagFaceParams | None:
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "assets" / "params"
    p = folder / f"{encoder_id}.json"
    return QMagFaceParams.load(p) if p.parent == folder and p.is_file() else None
