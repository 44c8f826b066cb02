"""Model-free quality measures, the baselines an encoder's quality q must beat.

Per image (computed while embedding, see :func:`qmag_core.embed.embed_files`):

==================  ==========================================================
measure             meaning (higher = better)
==================  ==========================================================
``raw_length``      length of the backbone descriptor (for ``builtin``: the raw
                    network's descriptor, before the quality head)
``sharpness``       variance of the Laplacian of the aligned crop (grey levels²)
``detector_prob``   MTCNN's face probability of the chosen face
``ied_px``          inter-eye distance in pixels of the decoded photo
==================  ==========================================================

A pair's measure is the minimum over its two images, like q_min.  In score tables
they are columns ``qm_<measure>``; any such numeric column a user adds (e.g.
``qm_ofiq``) is treated the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MEASURES",
    "MEASURE_PREFIX",
    "sharpness",
    "inter_eye_distance",
    "pair_measures",
    "measure_columns",
    "measure_edcs",
    "iso_edcs",
]

MEASURES = ("raw_length", "sharpness", "detector_prob", "ied_px")
MEASURE_PREFIX = "qm_"


def sharpness(crops: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each grey crop: (N, S, S, 3) uint8 → (N,) float64."""
    x = np.asarray(crops, np.float64)
    if x.ndim == 3:
        x = x[None]
    g = x.mean(axis=3)
    lap = -4 * g[:, 1:-1, 1:-1] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:]
    return lap.reshape(lap.shape[0], -1).var(axis=1)


def inter_eye_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the two eye landmarks: (N, 5, 2) → (N,) px."""
    lm = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    return np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1)


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
    """EDC (:func:`qmag_core.metrics.edc`) of the pairwise q and, at the same threshold,
    of every model-free ``measures`` column; pairs with a failed image count as
    non-matches and go first.  Returns ``(edc of q, {name: edc})``."""
    from . import metrics as M

    s_all, y_all, q_all = M.with_failures(s, labels, failed_labels, q_min)
    e = M.edc(s_all, y_all, q_all, n_random=n_random, random_state=seed)
    return e, {
        name: M.edc(
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
    """ISO/IEC 29794-1 EDC (:func:`qmag_core.metrics.quality_edc`) of each pairwise
    quality in ``qualities``: one threshold at ``starting_error`` of the scored pairs,
    failed pairs as errors (mated) or correct rejections (non-mated), discarded first.
    Returns ``{name: QualityEDC}``."""
    from . import metrics as M

    thr = M.quality_edc(s, labels, next(iter(qualities.values())), error=error, starting_error=starting_error).threshold
    out = {}
    for name, v in qualities.items():
        s_all, y_all, q_all = M.with_failures(s, labels, failed_labels, v)
        out[name] = M.quality_edc(s_all, y_all, q_all, error=error, threshold=thr)
    return out
