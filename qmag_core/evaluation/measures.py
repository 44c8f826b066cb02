"""Model-free quality measures as score-table columns: pairing per-image measures
(a pair's measure is the minimum over its two images, like q_min), reading the
``qm_<measure>`` columns of a table, and their EDCs beside q's.

The measures themselves are computed from images in :mod:`qmag_core.quality.baselines`;
any numeric ``qm_*`` column a user adds (e.g. ``qm_ofiq``) is treated the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MEASURE_PREFIX", "pair_measures", "measure_columns", "measure_edcs", "iso_edcs"]


MEASURE_PREFIX = "qm_"


def pair_measures(measures: dict, idx: np.ndarray) -> dict:
    """``{f"qm_{name}": min over each pair}`` for per-image ``measures`` and pair indices (P, 2)."""
    out = {}
    for name, v in measures.items():
        v = np.asarray(v, np.float64)
        out[MEASURE_PREFIX + name] = np.minimum(v[idx[:, 0]], v[idx[:, 1]])
    return out


def measure_columns(extra: dict) -> dict:
    """The ``qm_*`` columns of a score table's extra columns, as float arrays (columns
    that are not numeric are left out)."""
    out = {}
    for k, v in extra.items():
        if str(k).lower().startswith(MEASURE_PREFIX):
            try:
                a = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):
                continue
            if np.isfinite(a).all():
                out[str(k)[len(MEASURE_PREFIX) :]] = a
    return out


def measure_edcs(s, labels, q_min, measures: dict, failed_labels, *, n_random: int = 200, seed: int = 0):
    """EDC (:func:`qmag_core.evaluation.edc.edc`) of the pairwise q and, at the same threshold,
    of every model-free ``measures`` column; pairs with a failed image count as
    non-matches and go first.  Returns ``(edc of q, {name: edc})``."""
    from . import metrics as M
    from .edc import edc

    s_all, y_all, q_all = M.with_failures(s, labels, failed_labels, q_min)
    e = edc(s_all, y_all, q_all, n_random=n_random, random_state=seed)
    return e, {
        name: edc(
            s_all,
            y_all,
            M.with_failures(s, labels, failed_labels, v)[2],
            threshold=e.threshold,
            n_random=n_random,
            random_state=seed,
        )
        for name, v in measures.items()
    }


def iso_edcs(s, labels, qualities: dict, failed_labels, *, error: str = "fnmr", starting_error: float = 0.05):
    """ISO/IEC 29794-1 EDC (:func:`qmag_core.evaluation.edc.quality_edc`) of each pairwise
    quality in ``qualities``: one threshold at ``starting_error`` of the scored pairs,
    failed pairs as errors (mated) or correct rejections (non-mated), discarded first.
    Returns ``{name: QualityEDC}``."""
    from . import metrics as M
    from .edc import quality_edc

    thr = quality_edc(s, labels, next(iter(qualities.values())), error=error, starting_error=starting_error).threshold
    out = {}
    for name, v in qualities.items():
        s_all, y_all, q_all = M.with_failures(s, labels, failed_labels, v)
        out[name] = quality_edc(s_all, y_all, q_all, error=error, threshold=thr)
    return out
