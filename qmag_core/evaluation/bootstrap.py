"""Seeded bootstrap confidence intervals: EER and FNMR@FMR of one score set, and paired
differences between two score sets on the same pairs (optionally resampling whole
folds).  ``qmag_core.evaluation.metrics`` re-exports both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import QMagError
from .metrics import (
    SortedScores,
    checked_scores,
    fmr_key,
    kfold_accuracy,
    supports_fmr,
    weighted_eer_fnmr,
)

__all__ = ["bootstrap_ci", "PairedDifference", "paired_bootstrap"]


def bootstrap_ci(
    genuine: npt.ArrayLike,
    imposter: npt.ArrayLike,
    *,
    fmrs=(1e-2, 1e-3, 1e-4),
    n_boot: int = 200,
    level: float = 0.95,
    random_state=0,
) -> dict:
    """Seeded percentile bootstrap CIs of EER and FNMR@FMR.

    Genuine and imposter scores are resampled with replacement separately (stratified);
    each resample reuses one sort through per-score counts.  Returns
    ``{"eer": (lo, hi), "fnmr_at_fmr": {fmr: (lo, hi) or None}}``.
    """
    g, i = checked_scores(genuine, imposter)
    rng = np.random.default_rng(random_state)
    ss = SortedScores(g, i)
    fmrs = np.atleast_1d(np.asarray(fmrs, dtype=np.float64))
    eers = np.empty(n_boot)
    fns = np.empty((n_boot, fmrs.size))
    for b in range(int(n_boot)):
        wg = np.bincount(rng.integers(0, g.size, g.size), minlength=g.size).astype(np.float64)
        wi = np.bincount(rng.integers(0, i.size, i.size), minlength=i.size).astype(np.float64)
        eers[b], fns[b] = weighted_eer_fnmr(ss, wg, wi, fmrs)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {"eer": (float(np.percentile(eers, lo)), float(np.percentile(eers, hi))), "fnmr_at_fmr": {}}
    for j, t in enumerate(fmrs):
        out["fnmr_at_fmr"][float(t)] = (
            (float(np.percentile(fns[:, j], lo)), float(np.percentile(fns[:, j], hi)))
            if supports_fmr(i.size, t)
            else None
        )
    return out


@dataclass(frozen=True)
class PairedDifference:
    """One metric for two score sets on the same pairs: values ``a``, ``b``, the
    difference ``b − a`` and its seeded paired-bootstrap percentile CI [lo, hi]."""

    metric: str
    a: float
    b: float
    diff: float
    lo: float
    hi: float

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


def paired_bootstrap(
    labels: npt.ArrayLike,
    scores_a: npt.ArrayLike,
    scores_b: npt.ArrayLike,
    *,
    fmrs=(1e-2, 1e-3),
    folds: npt.ArrayLike | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    random_state=0,
) -> list[PairedDifference]:
    """Paired bootstrap of EER, FNMR@FMR (and k-fold accuracy with ``folds``) for two
    score sets over the same pairs (e.g. cosine vs QMagFace).

    Each resample draws genuine and imposter pairs with replacement (stratified) and
    scores *both* sets on the same draw, so the CI is for the difference b − a.  FMRs
    the imposter count cannot measure are left out.  With ``folds`` the accuracy uses
    the LFW protocol (``kfold_accuracy``) on the resampled pairs.
    """
    y = np.asarray(labels).astype(bool)
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if not (a.shape == b.shape == y.shape) or a.ndim != 1:
        raise QMagError("labels and both score arrays must be 1-D of equal length")
    gi, ii = np.flatnonzero(y), np.flatnonzero(~y)
    checked_scores(a[gi], a[ii])
    fmrs = [float(t) for t in np.atleast_1d(fmrs) if supports_fmr(ii.size, float(t))]
    sorted_sets = [SortedScores(x[gi], x[ii]) for x in (a, b)]
    names = ["eer"] + [f"fnmr@fmr={fmr_key(t)}" for t in fmrs] + (["accuracy"] if folds is not None else [])
    f = None if folds is None else np.asarray(folds)

    def measure(ss, wg, wi, x, idx):
        eer_value, fnmrs = weighted_eer_fnmr(ss, wg, wi, np.asarray(fmrs, dtype=np.float64))
        out = [eer_value] + list(fnmrs)
        if f is not None:
            out.append(kfold_accuracy(x[idx], y[idx], f[idx]).mean)
        return out

    full = [
        measure(ss, np.ones(gi.size), np.ones(ii.size), x, np.arange(y.size))
        for ss, x in zip(sorted_sets, (a, b), strict=True)
    ]
    rng = np.random.default_rng(random_state)
    diffs = np.empty((int(n_boot), len(names)))
    for r in range(int(n_boot)):
        dg, di = rng.integers(0, gi.size, gi.size), rng.integers(0, ii.size, ii.size)
        wg = np.bincount(dg, minlength=gi.size).astype(np.float64)
        wi = np.bincount(di, minlength=ii.size).astype(np.float64)
        idx = np.r_[gi[dg], ii[di]]
        ma, mb = (measure(ss, wg, wi, x, idx) for ss, x in zip(sorted_sets, (a, b), strict=True))
        diffs[r] = np.subtract(mb, ma)
    lo, hi = np.percentile(diffs, [(1 - level) / 2 * 100, (1 + level) / 2 * 100], axis=0)
    return [
        PairedDifference(n, float(va), float(vb), float(vb - va), float(lo_), float(hi_))
        for n, va, vb, lo_, hi_ in zip(names, full[0], full[1], lo, hi, strict=True)
    ]
