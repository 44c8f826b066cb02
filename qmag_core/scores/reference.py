"""A literal re-implementation of the official QMagFace training code (the oracle).

This follows the seed code in ``shared/seeds/qmagface_paper_notes.md`` step by step:
one sklearn ``roc_curve`` per ω, a Python loop over FMRs with ``fpr < fmr`` masks,
``np.argmin`` tie breaking and sklearn's ``LinearRegression`` for the line.  The seed's
``_compute_s_q`` ends with ``return s,`` (truncated); here it returns ``(s, q_min)``.

It is slow on purpose and exists only as the reference that tests and
``bench/bench_trainer.py`` compare :class:`qmag_core.scores.scoring.QMagFaceTrainer` against.
"""

from __future__ import annotations

import numpy as np


def seed_compute_s_q(f: np.ndarray, pair_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine s and q_min of index pairs, as the seed computes them (in f's dtype)."""
    from sklearn.preprocessing import normalize

    fn, q = normalize(f, return_norm=True)
    s = np.sum(fn[pair_indices[:, 0]] * fn[pair_indices[:, 1]], axis=1)
    q = np.min(q[pair_indices], 1)
    return s, q


def seed_thresholds_omegas(s, q, y, weights_num=20, fmr_num=50, fmr_min=1e-5, fmr_max=1e-2, max_ratio=0.5):
    """The seed's ``get_thresholds_omegas`` on precomputed s and q_min."""
    from scipy.special import expit
    from sklearn.metrics import roc_curve

    fmrs = np.logspace(np.log10(fmr_min), np.log10(fmr_max), num=fmr_num)
    max_q = np.max(q)
    max_omega = max_ratio / max_q
    omegas = np.linspace(-max_omega, max_omega, num=weights_num)
    ts = np.zeros((fmr_num,))
    omega_opts = np.zeros((fmr_num,))
    tmp_thrs = np.zeros((weights_num, fmr_num))
    tmp_fnmrs = np.zeros((weights_num, fmr_num))
    for i, omega in enumerate(omegas):
        scores = expit(omega * q + s)
        fpr, tpr, thr = roc_curve(y, scores)
        for j, fmr in enumerate(fmrs):
            fnmr_idx = np.argmin(1 - tpr[fpr < fmr])
            fnmr = (1 - tpr[fpr < fmr])[fnmr_idx]
            tmp_thrs[i, j] = thr[fnmr_idx]
            tmp_fnmrs[i, j] = fnmr
    for j in range(fmr_num):
        idx = np.argmin(tmp_fnmrs[:, j])
        ts[j] = tmp_thrs[idx, j]
        omega_opts[j] = omegas[idx]
    return ts, omega_opts, tmp_fnmrs, tmp_thrs


def seed_fit_line(x, y):
    """The seed's ``fit_line``: sklearn LinearRegression, returns (m, b)."""
    from sklearn.linear_model import LinearRegression

    lreg = LinearRegression()
    lreg.fit(x.reshape(-1, 1), y)
    return lreg.coef_[0], lreg.intercept_


def seed_train(s, q, y, **kw) -> tuple[float, float]:
    """α, β exactly as the seed's ``train`` would set them (float64 s, q_min)."""
    ts, omegas, _, _ = seed_thresholds_omegas(np.asarray(s, np.float64), np.asarray(q, np.float64), np.asarray(y), **kw)
    m, b = seed_fit_line(ts, omegas)
    return float(-b), float(m)
