"""Seeded synthetic MagFace-like pair scores (for tests, benchmarks and demos).

Not real data.  Qualities q1, q2 ~ N(27, 4.5) clipped to [12, 40].  Genuine cosine
similarity falls with the pair's lower quality q_min (degraded faces match worse):
s = 0.18 + 0.02·(q_min − 12) + N(0, 0.09).  Imposter similarity is N(0, sd) with
sd = imposter_sd + imposter_sd_slope·(q_min − 27) (quality-independent by default).
"""

from __future__ import annotations

import numpy as np

__all__ = ["synthetic_pairs"]


def synthetic_pairs(
    n_genuine: int,
    n_imposter: int,
    *,
    random_state=0,
    quantize: float | None = None,
    imposter_sd: float = 0.07,
    imposter_sd_slope: float = 0.0,
):
    """Return ``(s, q1, q2, y)`` (float64 ×3, int8) for ``n_genuine + n_imposter`` pairs,
    shuffled.  ``quantize`` rounds s and q to multiples of that step (many exact ties)."""
    rng = np.random.default_rng(random_state)
    n = n_genuine + n_imposter
    q1 = np.clip(rng.normal(27.0, 4.5, n), 12.0, 40.0)
    q2 = np.clip(rng.normal(27.0, 4.5, n), 12.0, 40.0)
    qm = np.minimum(q1, q2)
    y = np.r_[np.ones(n_genuine, np.int8), np.zeros(n_imposter, np.int8)]
    s = np.empty(n)
    s[:n_genuine] = 0.18 + 0.02 * (qm[:n_genuine] - 12.0) + rng.normal(0.0, 0.09, n_genuine)
    sd = np.maximum(imposter_sd + imposter_sd_slope * (qm[n_genuine:] - 27.0), 1e-3)
    s[n_genuine:] = rng.normal(0.0, 1.0, n_imposter) * sd
    s = np.clip(s, -1.0, 1.0)
    if quantize:
        s = np.round(s / quantize) * quantize
        q1 = np.round(q1 / quantize) * quantize
        q2 = np.round(q2 / quantize) * quantize
    perm = rng.permutation(n)
    return s[perm], q1[perm], q2[perm], y[perm]
