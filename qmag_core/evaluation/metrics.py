"""Biometric verification metrics on similarity scores.

Conventions (``shared/reference/qmagface_algorithm.md``): higher score = more similar,
a pair is accepted when ``score >= t``; FMR = imposters accepted, FNMR = genuines
rejected, both as fractions in [0, 1].  FNMR@FMR is the lowest FNMR over thresholds
whose FMR ≤ target; it is reported only when the imposter count supports the target
(≥ 1/FMR imposters), else ``None`` with a reason.

Functions take ``(genuine, imposter)`` score arrays unless they need labels/folds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import QMagError
from ..scores.params import SHIPPED_FMRS
from ..scores.roc_window import lowest_fmr

__all__ = [
    "FAILED_SCORE",
    "FAILED_QUALITY",
    "with_failures",
    "RocCurve",
    "OperatingPoint",
    "EER",
    "AccuracyResult",
    "split_scores",
    "roc",
    "fnmr_at_fmr",
    "threshold_at_fmr",
    "operating_points",
    "eer",
    "auc",
    "dprime",
    "kfold_accuracy",
    "decimate_indices",
    "overlap",
]

FloatArray = npt.NDArray[np.float64]


#: score given to a pair whose image could not be embedded (failure to acquire): below
#: any cosine or QMagFace score, so it never matches — a failed genuine pair is a false
#: non-match, a failed imposter pair a correct non-match (ISO/IEC 19795-1 generalized rates)
FAILED_SCORE = -1e6
#: quality given to such a pair: below any real q, so an EDC discards it first
FAILED_QUALITY = -1.0


def fmr_key(f: float) -> str:
    """The one spelling of an FMR as a key or label, positional and shortest:
    0.01 → '0.01', 1e-4 → '0.0001', 1e-5 → '0.00001'.

    >>> [fmr_key(f) for f in (1e-2, 1e-3, 1e-4, 1e-5, 0.05)]
    ['0.01', '0.001', '0.0001', '0.00001', '0.05']
    """
    return np.format_float_positional(float(f), trim="-")


def with_failures(
    scores: npt.ArrayLike, labels: npt.ArrayLike, failed_labels: npt.ArrayLike, quality: npt.ArrayLike | None = None
):
    """Scores (and labels, quality) of every pair: the scored ones followed by the failed
    ones at :data:`FAILED_SCORE` / :data:`FAILED_QUALITY`.  Returns ``(scores, labels,
    quality or None)``."""
    fl = np.asarray(failed_labels).astype(bool)
    s = np.r_[np.asarray(scores, np.float64), np.full(fl.size, FAILED_SCORE)]
    y = np.r_[np.asarray(labels).astype(bool), fl]
    q = None if quality is None else np.r_[np.asarray(quality, np.float64), np.full(fl.size, FAILED_QUALITY)]
    return s, y, q


def split_scores(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """``(genuine, imposter)`` scores from scores and 0/1 labels of the same length."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise QMagError(f"scores and labels must be 1-D of equal length, got {scores.shape} and {labels.shape}")
    lab = labels.astype(bool)
    return scores[lab], scores[~lab]


def checked_scores(genuine, imposter) -> tuple[FloatArray, FloatArray]:
    g = np.asarray(genuine, dtype=np.float64).ravel()
    i = np.asarray(imposter, dtype=np.float64).ravel()
    if g.size == 0 or i.size == 0:
        raise QMagError(f"need genuine and imposter scores, got {g.size} genuine and {i.size} imposter")
    if not (np.isfinite(g).all() and np.isfinite(i).all()):
        raise QMagError("scores must be finite (no NaN/inf)")
    return g, i


# ------------------------------------------------------------------------- ROC core
class SortedScores:
    """Pooled scores sorted descending with distinct-threshold boundaries.

    Rates for any per-element weights (1 for plain metrics, bootstrap counts for
    resamples) then cost one cumulative sum.
    """

    def __init__(self, g: FloatArray, i: FloatArray):
        pooled = np.concatenate([g, i])
        order = np.argsort(-pooled, kind="stable")
        self.scores = pooled[order]
        self.is_gen = order < g.size
        self.src = order  # index into concat(g, i)
        self.ends = np.r_[np.flatnonzero(self.scores[1:] != self.scores[:-1]), self.scores.size - 1]
        self.thresholds = self.scores[self.ends]
        self.curve_thresholds = np.r_[np.inf, self.thresholds]  # the curve starts at +inf
        self.n_gen, self.n_imp = g.size, i.size

    def counts(self, w_gen: np.ndarray | None = None, w_imp: np.ndarray | None = None):
        """Cumulative (tps, fps) at each distinct threshold (descending)."""
        if w_gen is None:
            cg = np.cumsum(self.is_gen)
            ci = np.cumsum(~self.is_gen)
        else:
            w = np.empty(self.scores.size)
            w[self.is_gen] = w_gen[self.src[self.is_gen]]
            w[~self.is_gen] = w_imp[self.src[~self.is_gen] - self.n_gen]
            cg = np.cumsum(np.where(self.is_gen, w, 0.0))
            ci = np.cumsum(np.where(self.is_gen, 0.0, w))
        return cg[self.ends].astype(np.float64), ci[self.ends].astype(np.float64)


@dataclass(frozen=True)
class RocCurve:
    """ROC/DET points, one per distinct threshold, thresholds descending.

    The first point is the threshold +inf (nothing accepted: FMR 0, FNMR 1).

    Attributes
    ----------
    thresholds : (n_points,) accept when score >= threshold
    fmr, fnmr : (n_points,) fractions; fmr non-decreasing, fnmr non-increasing
    n_genuine, n_imposter : int
    """

    thresholds: FloatArray
    fmr: FloatArray
    fnmr: FloatArray
    n_genuine: int
    n_imposter: int

    @property
    def tpr(self) -> FloatArray:
        return 1.0 - self.fnmr

    def eer(self) -> EER:
        """Equal error rate of this curve (see :func:`eer`)."""
        return _eer_from_rates(self.fmr, self.fnmr, self.thresholds)

    def fnmr_at_fmr(self, fmrs=(1e-2, 1e-3, 1e-4)) -> list[OperatingPoint]:
        """FNMR at each target FMR (see :func:`fnmr_at_fmr`)."""
        return _operating_points(self.fmr, self.fnmr, self.thresholds, self.n_imposter, fmrs)

    def auc(self) -> float:
        """Area under this curve (ties count one half)."""
        tpr = 1.0 - self.fnmr
        return float(np.sum(np.diff(self.fmr) * (tpr[1:] + tpr[:-1]) / 2.0))

    def decimate(self, max_points: int = 2000) -> RocCurve:
        """At most ``max_points`` points, spread in index and in log-FMR (for plotting)."""
        idx = decimate_indices(self.fmr, max_points)
        return RocCurve(self.thresholds[idx], self.fmr[idx], self.fnmr[idx], self.n_genuine, self.n_imposter)


def _rates(tps, fps, n_gen, n_imp):
    fmr = np.r_[0.0, fps / n_imp]
    fnmr = np.r_[1.0, 1.0 - tps / n_gen]
    return fmr, fnmr


def roc(genuine: npt.ArrayLike, imposter: npt.ArrayLike) -> RocCurve:
    """ROC/DET curve of genuine vs imposter scores (all distinct thresholds).

    Examples
    --------
    >>> c = roc([0.9, 0.6], [0.1, 0.6])
    >>> c.thresholds.tolist(), c.fmr.tolist(), c.fnmr.tolist()
    ([inf, 0.9, 0.6, 0.1], [0.0, 0.0, 0.5, 1.0], [1.0, 0.5, 0.0, 0.0])
    """
    g, i = checked_scores(genuine, imposter)
    ss = SortedScores(g, i)
    tps, fps = ss.counts()
    fmr, fnmr = _rates(tps, fps, g.size, i.size)
    return RocCurve(ss.curve_thresholds, fmr, fnmr, g.size, i.size)


def decimate_indices(fmr: npt.ArrayLike, max_points: int = 2000) -> npt.NDArray[np.int64]:
    """Indices (sorted, first and last kept) of at most ``max_points`` curve points:
    half uniform in index, half uniform in log10(FMR), so DET tails keep detail."""
    fmr = np.asarray(fmr, dtype=np.float64)
    n = fmr.size
    if n <= max_points:
        return np.arange(n)
    half = max_points // 2
    by_index = np.linspace(0, n - 1, half).round().astype(np.int64)
    pos = fmr[fmr > 0]
    if pos.size:
        grid = np.logspace(np.log10(pos.min()), 0.0, max_points - half)
        by_fmr = np.clip(np.searchsorted(fmr, grid, side="left"), 0, n - 1)
    else:
        by_fmr = np.empty(0, np.int64)
    idx = np.unique(np.r_[0, n - 1, by_index, by_fmr])
    if idx.size > max_points:  # duplicates removed may still leave a few too many
        keep = np.linspace(0, idx.size - 1, max_points).round().astype(np.int64)
        idx = idx[np.unique(keep)]
    return idx


# --------------------------------------------------------------- operating points
@dataclass(frozen=True)
class OperatingPoint:
    """FNMR at a target FMR.

    ``fnmr``/``threshold``/``fmr`` are None when the imposter count cannot support
    the target (``reason`` says why).  ``threshold`` is the highest threshold that
    reaches the FNMR (so ``fmr``, the FMR achieved there, is as low as possible).
    """

    target_fmr: float
    fnmr: float | None
    fmr: float | None
    threshold: float | None
    reason: str = ""


def supports_fmr(n_imposter: int, fmr: float) -> bool:
    """Whether ``n_imposter`` imposters can measure ``fmr`` (≥ :func:`~qmag_core.scores.roc_window.lowest_fmr`)."""
    return n_imposter >= 1 and fmr >= lowest_fmr(n_imposter) * (1 - 1e-9)


def _op_from_rates(fmr, fnmr, thr, fmrs):
    """Vectorised FNMR@FMR (≤ rule) on a curve with thresholds descending from +inf:
    the lowest FNMR with FMR ≤ each target, at the highest threshold giving it."""
    k = np.searchsorted(fmr, fmrs, side="right") - 1
    best = fnmr[k]
    j = np.searchsorted(-fnmr, -best, side="left")  # first point reaching that FNMR
    return best, fmr[j], thr[j]


def _operating_points(curve_fmr, curve_fnmr, curve_thr, n_imp, fmrs) -> list[OperatingPoint]:
    fmrs = np.atleast_1d(np.asarray(fmrs, dtype=np.float64))
    fn, fm, th = _op_from_rates(curve_fmr, curve_fnmr, curve_thr, fmrs)
    out = []
    for t, a, b, c in zip(fmrs, fn, fm, th, strict=True):
        if supports_fmr(n_imp, t):
            out.append(OperatingPoint(float(t), float(a), float(b), float(c)))
        else:
            out.append(
                OperatingPoint(
                    float(t),
                    None,
                    None,
                    None,
                    f"not enough imposters: FMR {t:g} needs ≥ {math.ceil(1 / t - 1e-9):,}, have {n_imp:,}",
                )
            )
    return out


def threshold_at_fmr(imposter: npt.ArrayLike, fmr: float) -> float:
    """The score threshold t at which at most ⌊fmr·n⌋ of the n imposter scores are
    accepted under the rule ``s > t``: the (⌊fmr·n⌋ + 1)-th largest imposter score
    (O(n), no sort).  ``fmr`` in (0, 1); n ≥ 1."""
    imp = np.asarray(imposter, np.float64).ravel()
    if imp.size == 0 or not 0 < fmr < 1:
        raise ValueError(f"threshold_at_fmr needs imposter scores and 0 < fmr < 1 (n={imp.size}, fmr={fmr})")
    k = int(math.floor(fmr * imp.size))
    return float(np.partition(imp, imp.size - k - 1)[imp.size - k - 1])


def operating_points(s, s_hat, labels, fmrs=SHIPPED_FMRS) -> list[dict]:
    """Thresholds on s and ŝ at each FMR (FMR ≤ target rule) measured on labelled pairs,
    as a parameter set stores them for decisions; FMRs the imposter count cannot
    support are left out."""
    g, i = split_scores(np.asarray(s), labels)
    gh, ih = split_scores(np.asarray(s_hat), labels)
    keys = ("fmr", "threshold_s", "threshold_s_hat", "fnmr_s", "fnmr_s_hat")
    return [
        dict(zip(keys, (a.target_fmr, a.threshold, b.threshold, a.fnmr, b.fnmr), strict=True))
        for a, b in zip(fnmr_at_fmr(g, i, fmrs), fnmr_at_fmr(gh, ih, fmrs), strict=True)
        if a.fnmr is not None
    ]


def fnmr_at_fmr(genuine: npt.ArrayLike, imposter: npt.ArrayLike, fmrs=(1e-2, 1e-3, 1e-4)) -> list[OperatingPoint]:
    """Lowest FNMR over thresholds with FMR ≤ each target FMR.

    Examples
    --------
    >>> ops = fnmr_at_fmr([0.9, 0.8, 0.3], [0.5] * 10 + [0.2] * 90, fmrs=(0.1, 0.01, 1e-3))
    >>> [(p.fnmr, p.threshold) for p in ops]
    [(0.0, 0.3), (0.33333333333333337, 0.8), (None, None)]
    """
    return roc(genuine, imposter).fnmr_at_fmr(fmrs)


@dataclass(frozen=True)
class EER:
    """Equal error rate as an interval (Maio et al., FVC2000) and its midpoint."""

    value: float
    low: float
    high: float
    threshold: float


def _eer_from_rates(fmr, fnmr, thr) -> EER:
    d = fnmr - fmr  # non-increasing along descending thresholds
    k = int(np.argmax(d <= 0))  # first point with FNMR <= FMR (t1)
    k2 = int(np.flatnonzero(d >= 0)[-1])  # last point with FNMR >= FMR (t2)
    if fnmr[k] + fmr[k] <= fnmr[k2] + fmr[k2]:
        low, high, t = fnmr[k], fmr[k], thr[k]
    else:
        low, high, t = fmr[k2], fnmr[k2], thr[k2]
    return EER(float((low + high) / 2), float(low), float(high), float(t))


def eer(genuine: npt.ArrayLike, imposter: npt.ArrayLike) -> EER:
    """Equal error rate.

    With t1 the highest threshold where FNMR ≤ FMR and t2 the lowest where FNMR ≥ FMR,
    the EER interval is [FNMR(t1), FMR(t1)] or [FMR(t2), FNMR(t2)], whichever point has
    the smaller FNMR+FMR; ``value`` is its midpoint and ``threshold`` that point's.

    Examples
    --------
    >>> eer([0.9, 0.8, 0.7, 0.2], [0.1, 0.3, 0.4, 0.75]).value
    0.25
    """
    return roc(genuine, imposter).eer()


def auc(genuine: npt.ArrayLike, imposter: npt.ArrayLike) -> float:
    """Area under the ROC curve (ties count one half), = sklearn's ``roc_auc_score``."""
    return roc(genuine, imposter).auc()


def dprime(genuine: npt.ArrayLike, imposter: npt.ArrayLike) -> float:
    """Decidability d′ = |μ_G − μ_I| / sqrt((σ_G² + σ_I²)/2)."""
    g, i = checked_scores(genuine, imposter)
    den = math.sqrt((g.var() + i.var()) / 2.0)
    return float(abs(g.mean() - i.mean()) / den) if den > 0 else math.inf


# ------------------------------------------------------------------------ accuracy
@dataclass(frozen=True)
class AccuracyResult:
    """k-fold verification accuracy: mean and population std over folds."""

    mean: float
    std: float
    per_fold: FloatArray
    thresholds: FloatArray
    folds: npt.NDArray[np.int64]


def best_threshold(scores: FloatArray, labels: npt.NDArray[np.bool_]) -> float:
    """Threshold maximising accuracy: candidates are midpoints between sorted distinct
    scores; the lowest wins ties.  With a single distinct score, that score."""
    v, inv = np.unique(scores, return_inverse=True)
    if v.size == 1:
        return float(v[0])
    n_gen_at = np.bincount(inv, weights=labels.astype(np.float64), minlength=v.size)
    n_imp_at = np.bincount(inv, weights=(~labels).astype(np.float64), minlength=v.size)
    # threshold between v[k] and v[k+1]: accept v[k+1:], reject v[:k+1]
    gen_accepted = np.cumsum(n_gen_at[::-1])[::-1][1:]
    imp_rejected = np.cumsum(n_imp_at)[:-1]
    acc = gen_accepted + imp_rejected
    k = int(np.argmax(acc))
    return float((v[k] + v[k + 1]) / 2.0)


def kfold_accuracy(scores: npt.ArrayLike, labels: npt.ArrayLike, folds: npt.ArrayLike) -> AccuracyResult:
    """Accuracy with the LFW protocol: per fold, the threshold maximising accuracy on
    the other folds is applied to it; returns mean ± std (ddof=0) over folds."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    f = np.asarray(folds)
    if not (s.shape == y.shape == f.shape) or s.ndim != 1:
        raise QMagError("scores, labels and folds must be 1-D of equal length")
    ids = np.unique(f)
    if ids.size < 2:
        raise QMagError(f"k-fold accuracy needs at least 2 folds, got {ids.size}")
    accs, ths = [], []
    for k in ids:
        test = f == k
        t = best_threshold(s[~test], y[~test])
        accs.append(float(np.mean((s[test] >= t) == y[test])))
        ths.append(t)
    a = np.asarray(accs)
    return AccuracyResult(float(a.mean()), float(a.std()), a, np.asarray(ths), ids)


def weighted_eer_fnmr(ss: SortedScores, wg: np.ndarray, wi: np.ndarray, fmrs: np.ndarray):
    """EER value and FNMR at each FMR of ``fmrs`` for per-score weights (bootstrap counts)."""
    tps, fps = ss.counts(wg, wi)
    fmr, fnmr = _rates(tps, fps, ss.n_gen, ss.n_imp)
    eer_value = _eer_from_rates(fmr, fnmr, ss.curve_thresholds).value
    return eer_value, _op_from_rates(fmr, fnmr, ss.curve_thresholds, fmrs)[0]


def overlap(genuine, imposter, bins: np.ndarray) -> float:
    """Overlap coefficient of the two normalised histograms on the same bins (0 = none)."""
    hg, _ = np.histogram(genuine, bins=bins)
    hi, _ = np.histogram(imposter, bins=bins)
    if hg.sum() == 0 or hi.sum() == 0:
        return math.nan
    return float(np.minimum(hg / hg.sum(), hi / hi.sum()).sum())
