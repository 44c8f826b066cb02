"""The exact ROC-window engine behind :class:`qmag_core.scores.trainer.QMagFaceTrainer`.

For each ω only the top ``fmr_max · #imposters`` imposter scores can set a threshold, so
the engine selects those in one vectorised pass, sorts that small window and counts the
genuine scores with ``searchsorted``.  :func:`window_operating_points` explains why this
reproduces sklearn's ``roc_curve(drop_intermediate=True)`` exactly, ties included.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["window_operating_points", "lowest_fmr"]


def lowest_fmr(n_imposter: int) -> float:
    """The lowest FMR that ``n_imposter`` imposter pairs can measure: 1 / #imposters
    (one accepted imposter); every FMR floor of the package (trainer range, metrics,
    sliders, plot axes) is this one."""
    return 1.0 / max(int(n_imposter), 1)


def _top_with_ties(values: np.ndarray, m0: int) -> np.ndarray:
    """``values`` sorted descending, cut after the ``m0``-th largest, ties to it kept."""
    w = np.sort(values)[::-1]
    cut = w[m0 - 1]
    return w[: np.searchsorted(-w, -cut, side="right")]


def _select_top_window(u_imp: np.ndarray, m0: int, transform: Callable | None):
    """Imposters that can set a threshold: the top ``m0`` by transformed score, with ties.

    Returns ``(window_desc, cutoff_u)``: the transformed scores of every imposter whose
    transformed score is ≥ that of the ``m0``-th largest, sorted descending, and a raw
    cutoff such that every imposter or genuine with raw score below it has a
    transformed score strictly below the window's smallest value (``-inf`` when all
    were taken).  Only the speed depends on how the cutoff is guessed, never the result.
    """
    n = u_imp.shape[0]
    tf = transform if transform is not None else (lambda x: x)
    if n <= max(4 * m0, 65536):
        return _top_with_ties(tf(u_imp), m0), -np.inf
    # Guess a raw cutoff from a deterministic strided sample, then verify it.
    stride = max(1, n // 16384)
    sample = u_imp[::stride]
    k = sample.shape[0]
    rank = int(math.ceil(2.0 * m0 / n * k)) + 32
    while rank < k:
        c = np.partition(sample, k - rank)[k - rank]
        cand = u_imp[u_imp >= c]
        if cand.shape[0] > m0:
            w = _top_with_ties(tf(cand), m0)
            # Every excluded score is < c, so (tf monotone) transforms to at most
            # tf(prev(c)); the window is exact when that is strictly below the cut.
            if tf(np.array([np.nextafter(c, -np.inf)]))[0] < w[-1]:
                return w, c
        rank *= 4
    return _top_with_ties(tf(u_imp), m0), -np.inf


def window_operating_points(
    u_gen: np.ndarray,
    u_imp: np.ndarray,
    fmrs: np.ndarray,
    *,
    transform: Callable | None,
    strict: bool,
    drop_intermediate: bool,
    fmr_max: float,
) -> tuple[np.ndarray, np.ndarray]:
    """FNMR and threshold per FMR for one score set, as sklearn's ROC would give them.

    ``u_gen``/``u_imp`` are raw scores; ``transform`` (σ or None) is applied to them.
    For every ``fmr`` the operating point is: among ROC points with fpr < fmr
    (``strict``) or fpr ≤ fmr, the first point with the lowest FNMR; returns
    ``(fnmr, threshold)`` arrays of shape ``(len(fmrs),)``.

    Why a window is enough (full ROC = distinct thresholds, descending):
    the last prefix point K' and the first point J' with the same TPR are joined by
    points that each add ≥ 1 imposter, so all of them lie among the top
    ``fmr_max·n_imp + 2`` imposter scores plus the genuine scores interleaved there.
    sklearn (drop_intermediate) removes a point when its step (Δfp, Δtp) equals the
    next step.  A threshold holding imposters has step (a_i, b_i) (its own imposter
    and genuine counts), so it is dropped iff the next threshold also holds imposters
    (no genuine-only threshold between) with the same (a, b).  Genuine-only runs are
    vertical; only their last point can be an operating point and it is always kept.
    The first point of the curve (before sklearn's (0,0) is added) is always kept.
    """
    n_gen = u_gen.shape[0]
    n_imp = u_imp.shape[0]
    m0 = min(n_imp, int(math.floor(fmr_max * n_imp)) + 2)
    win, cut_u = _select_top_window(u_imp, m0, transform)
    tf = transform if transform is not None else (lambda x: x)

    # distinct imposter thresholds x (descending) with counts a
    starts = np.flatnonzero(np.r_[True, win[1:] != win[:-1]])
    x = win[starts]
    a = np.diff(np.r_[starts, win.shape[0]]).astype(np.float64)
    fps = np.cumsum(a)

    g = tf(u_gen[u_gen >= cut_u]) if np.isfinite(cut_u) else tf(u_gen)
    g = g[g >= x[-1]]
    above = g > x[0]
    n_above = int(np.count_nonzero(above))
    min_above = g[above].min() if n_above else np.inf
    gs = np.sort(g[~above])
    left = np.searchsorted(gs, x, side="left")
    right = np.searchsorted(gs, x, side="right")
    ge = n_above + (gs.shape[0] - left)  # genuines with score >= x_i
    gt = n_above + (gs.shape[0] - right)  # genuines with score >  x_i
    b = ge - gt
    ge_prev = np.r_[0, ge[:-1]]
    run = gt - ge_prev  # genuine-only thresholds strictly between x_i and x_{i-1}
    # threshold of the last point of that run: the lowest genuine score above x_i
    if gs.shape[0]:
        run_last = np.where(right < gs.shape[0], gs[np.minimum(right, gs.shape[0] - 1)], min_above)
    else:
        run_last = np.full(x.shape, min_above)

    thr, fp, tp = _curve_points(x, a, fps, ge, gt, run, b, run_last, drop_intermediate)
    fpr = fp / float(n_imp)
    count = np.searchsorted(fpr, fmrs, side="left" if strict else "right")
    t_best = tp[count - 1]
    j = np.searchsorted(tp, t_best, side="left")
    fnmr = 1.0 - t_best / float(n_gen)
    return fnmr, thr[j]


def _curve_points(x, a, fps, ge, gt, run, b, run_last, drop_intermediate: bool):
    """``(thresholds, false positives, true positives)`` of the ROC points, in order:
    [P0] + for each imposter threshold i: (the last point of the genuine-only run
    before it, if any), (its own point, unless sklearn's drop_intermediate drops it)."""
    d = x.shape[0]
    kept = np.ones(d, dtype=bool)
    if drop_intermediate:
        if d > 1:
            same_next = (run[1:] == 0) & (a[1:] == a[:-1]) & (b[1:] == b[:-1])
            kept[:-1] = ~same_next
        if run[0] == 0:
            kept[0] = True  # first point of sklearn's curve is never dropped
    has_run = run > 0
    thr = np.empty(2 * d + 1)
    fp = np.empty(2 * d + 1)
    tp = np.empty(2 * d + 1)
    use = np.zeros(2 * d + 1, dtype=bool)
    thr[0], fp[0], tp[0], use[0] = np.inf, 0.0, 0.0, True
    thr[1::2], fp[1::2], tp[1::2], use[1::2] = run_last, np.r_[0.0, fps[:-1]], gt, has_run
    thr[2::2], fp[2::2], tp[2::2], use[2::2] = x, fps, ge, kept
    return thr[use], fp[use], tp[use].astype(np.float64)
