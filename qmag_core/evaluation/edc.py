"""Error-versus-discard characteristics (EDC): how much a quality measure's lowest
values hold the errors.  ``edc`` against random discards at a fixed threshold;
``quality_edc`` as ISO/IEC 29794-1:2024 defines it; ``quality_edc_recomputed`` the
threshold-recomputed variant of the MagFace / CR-FIQA scripts.  ``qmag_core.evaluation.metrics``
re-exports all three."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..errors import QMagError
from .metrics import FloatArray, checked_scores, eer, fnmr_at_fmr, supports_fmr

#: discarded fractions of an EDC: 0, 0.05, …, 0.5
EDC_DISCARD = tuple(np.round(np.arange(0, 0.501, 0.05), 2))

__all__ = ["EDC_DISCARD", "EDCResult", "edc", "QualityEDC", "quality_edc", "quality_edc_recomputed"]


@dataclass(frozen=True)
class EDCResult:
    """Error-versus-discard: FNMR of the remaining genuine pairs vs discarded fraction."""

    rule: str  # "fmr_0.001" or "eer"
    threshold: float
    discard: FloatArray
    fnmr: FloatArray
    fnmr_random_median: FloatArray
    fnmr_random_q05: FloatArray = field(repr=False)
    fnmr_random_q95: FloatArray = field(repr=False)
    n_random: int = 200


def edc(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    quality: npt.ArrayLike,
    *,
    discard=EDC_DISCARD,
    threshold: float | None = None,
    n_random: int = 200,
    random_state=0,
) -> EDCResult:
    """EDC (ISO/IEC 29794-1 style) with a random-discard comparison.

    The threshold is fixed once on the full set: FMR 1e-3 when there are ≥ 1,000
    imposters, else the EER threshold (or ``threshold`` if given).  For each fraction
    f, the ⌊f·n⌋ pairs with the lowest ``quality`` (stable order on ties) are
    discarded and FNMR is measured on the remaining genuine pairs.  The random
    comparison discards uniformly random pairs ``n_random`` times (seeded,
    multivariate hypergeometric counts) and reports the median FNMR.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    q = np.asarray(quality, dtype=np.float64)
    if not (s.shape == y.shape == q.shape) or s.ndim != 1:
        raise QMagError("scores, labels and quality must be 1-D of equal length")
    g, i = s[y], s[~y]
    checked_scores(g, i)
    if threshold is not None:
        rule, t = "given", float(threshold)
    elif supports_fmr(i.size, 1e-3):
        rule, t = "fmr_0.001", float(fnmr_at_fmr(g, i, fmrs=(1e-3,))[0].threshold)
    else:
        rule, t = "eer", eer(g, i).threshold
    fr = np.asarray(discard, dtype=np.float64)
    n = s.size
    ks = np.floor(fr * n + 1e-9).astype(np.int64)
    order = np.argsort(q, kind="stable")
    gen_sorted = y[order]
    rej_sorted = y[order] & (s[order] < t)
    # remaining = order[k:]; use suffix counts
    gen_suffix = np.r_[np.cumsum(gen_sorted[::-1])[::-1], 0]
    rej_suffix = np.r_[np.cumsum(rej_sorted[::-1])[::-1], 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        fnmr = rej_suffix[ks] / gen_suffix[ks]
    rng = np.random.default_rng(random_state)
    n_rej = int(np.count_nonzero(y & (s < t)))
    n_acc = int(np.count_nonzero(y)) - n_rej
    colors = np.array([n_rej, n_acc, n - n_rej - n_acc], dtype=np.int64)
    med = np.empty(fr.size)
    q05 = np.empty(fr.size)
    q95 = np.empty(fr.size)
    for j, k in enumerate(ks):
        draws = rng.multivariate_hypergeometric(colors, int(k), size=int(n_random))
        rem_rej = n_rej - draws[:, 0]
        rem_gen = n_rej + n_acc - draws[:, 0] - draws[:, 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            f = rem_rej / rem_gen
        med[j], q05[j], q95[j] = np.nanmedian(f), np.nanpercentile(f, 5), np.nanpercentile(f, 95)
    return EDCResult(rule, t, fr, fnmr.astype(np.float64), med, q05, q95, int(n_random))


# ------------------------------------------------- EDC per ISO/IEC 29794-1:2024
@dataclass(frozen=True)
class QualityEDC:
    """An EDC as ISO/IEC 29794-1:2024 and Schlett et al. (2023) define it.

    ``error`` 'fnmr' (over the mated comparisons) or 'fmr' (over the non-mated ones);
    ``discard`` (k,) fraction of those comparisons discarded, one point per distinct
    pairwise quality (tied qualities go together); ``rate`` (k,) the error among the
    rest at the fixed ``threshold``; ``starting_error`` = rate[0].
    """

    error: str
    discard: np.ndarray
    rate: np.ndarray
    threshold: float
    starting_error: float

    def pauc(self, limit: float = 0.2, *, minus_best: bool = True) -> float:
        """Area under the (step-wise) EDC up to ``limit``, minus the area under the
        theoretical best (the error falling by exactly the discarded fraction)."""
        if not 0 <= limit <= 1:
            raise QMagError(f"limit must be in [0, 1], got {limit}")
        d, r = self.discard, self.rate
        right = np.minimum(np.r_[d[1:], 1.0], limit)
        area = float(np.sum(r * np.clip(right - d, 0, None)))
        if minus_best:
            e0 = self.starting_error
            area -= e0 * e0 / 2 - (max(0.0, e0 - limit) ** 2) / 2
        return area


def quality_edc(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    quality: npt.ArrayLike,
    *,
    error: str = "fnmr",
    starting_error: float = 0.05,
    threshold: float | None = None,
) -> QualityEDC:
    """EDC with the threshold fixed at a starting error (ISO/IEC 29794-1:2024).

    ``quality`` is the pairwise quality (e.g. min(q1, q2)).  The threshold is the
    ``starting_error`` quantile of the mated scores ('fnmr') or the 1 − starting_error
    quantile of the non-mated ones ('fmr'), unless ``threshold`` is given; a comparison
    is an error when a mated score is below it or a non-mated score at or above it.
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels).astype(bool)
    q = np.asarray(quality, np.float64)
    if not (s.shape == y.shape == q.shape) or s.ndim != 1:
        raise QMagError("scores, labels and quality must be 1-D of equal length")
    if error not in ("fnmr", "fmr"):
        raise QMagError(f"error must be 'fnmr' or 'fmr', got {error!r}")
    sel = y if error == "fnmr" else ~y
    if not sel.any():
        raise QMagError(f"no {'mated' if error == 'fnmr' else 'non-mated'} comparisons for an {error.upper()} EDC")
    if not (np.isfinite(s[sel]).all() and np.isfinite(q[sel]).all()):
        raise QMagError("scores and qualities must be finite")
    sv, qv = s[sel], q[sel]
    if threshold is None:
        if not 0 < starting_error < 1:
            raise QMagError(f"starting_error must be in (0, 1), got {starting_error}")
        threshold = float(np.quantile(sv, starting_error if error == "fnmr" else 1 - starting_error))
    order = np.argsort(qv, kind="stable")
    qs = qv[order]
    err = (sv[order] < threshold) if error == "fnmr" else (sv[order] >= threshold)
    remaining_errors = np.cumsum(err[::-1])[::-1]  # errors among comparisons k..n-1
    n = qs.size
    cut = np.r_[0, np.flatnonzero(qs[1:] != qs[:-1]) + 1]  # discard whole runs of tied qualities
    rate = remaining_errors[cut] / (n - cut)
    return QualityEDC(error, cut / n, rate, float(threshold), float(rate[0]))


def quality_edc_recomputed(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    quality: npt.ArrayLike,
    *,
    fmr: float = 1e-3,
    discard=EDC_DISCARD,
) -> EDCResult:
    """The variant of the MagFace / CR-FIQA evaluation scripts (labelled, not the ISO
    EDC): after discarding the lowest-quality fraction of *all* pairs, the threshold is
    recomputed on the remaining imposters for ``fmr`` and FNMR is measured on the
    remaining genuine pairs."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels).astype(bool)
    q = np.asarray(quality, np.float64)
    order = np.argsort(q, kind="stable")
    fr = np.asarray(discard, np.float64)
    out = np.full(fr.size, np.nan)
    for j, f in enumerate(fr):  # one operating point per discard step (a handful of steps)
        keep = order[int(np.floor(f * s.size + 1e-9)) :]
        g, i = s[keep][y[keep]], s[keep][~y[keep]]
        if g.size and i.size and supports_fmr(i.size, fmr):
            out[j] = fnmr_at_fmr(g, i, fmrs=(fmr,))[0].fnmr
    nan = np.full(fr.size, np.nan)
    return EDCResult(f"recomputed_fmr_{fmr:g}", math.nan, fr, out, nan, nan, nan, 0)
