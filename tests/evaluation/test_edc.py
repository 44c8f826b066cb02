"""EDC and pAUC-EDC as ISO/IEC 29794-1:2024 / Schlett et al. (2023) define them, checked
against a literal, loop-by-loop implementation of the published definition."""

import numpy as np
import pytest

from qmag_core.errors import QMagError
from qmag_core.evaluation import edc as E


def literal_edc(scores, labels, quality, error, starting_error):
    """The definition, one quality cutoff at a time: comparisons of one kind (mated for
    FNMR, non-mated for FMR); threshold = the starting-error quantile of their scores;
    discard every comparison whose pairwise quality is below each distinct quality value
    (ties together); the error among the rest."""
    kind = [k for k in range(len(scores)) if bool(labels[k]) == (error == "fnmr")]
    sv = [scores[k] for k in kind]
    t = float(np.quantile(sv, starting_error if error == "fnmr" else 1 - starting_error))
    points = []
    for cutoff in sorted({quality[k] for k in kind}):
        rest = [k for k in kind if quality[k] >= cutoff]
        errs = sum(1 for k in rest if (scores[k] < t if error == "fnmr" else scores[k] >= t))
        points.append(((len(kind) - len(rest)) / len(kind), errs / len(rest)))
    return t, points


def literal_pauc(points, limit):
    area = 0.0
    for j, (d, r) in enumerate(points):
        nxt = points[j + 1][0] if j + 1 < len(points) else 1.0
        if d >= limit:
            break
        area += r * (min(nxt, limit) - d)
    e0 = points[0][1]
    best = e0 * e0 / 2 - (max(0.0, e0 - limit) ** 2) / 2
    return area - best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("error", ["fnmr", "fmr"])
def test_matches_the_literal_definition(seed, error):
    rng = np.random.default_rng(seed)
    n_g, n_i = 300, 900
    q = np.round(rng.uniform(0, 10, n_g + n_i), 0 if seed % 2 else 2)  # odd seeds: many ties
    y = np.r_[np.ones(n_g), np.zeros(n_i)].astype(bool)
    s = np.where(y, 0.5 + 0.04 * q, 0.1) + rng.normal(0, 0.15, n_g + n_i)
    e = E.quality_edc(s, y, q, error=error, starting_error=0.05)
    t, points = literal_edc(s.tolist(), y.tolist(), q.tolist(), error, 0.05)
    assert e.threshold == pytest.approx(t)
    np.testing.assert_allclose(e.discard, [p[0] for p in points], atol=1e-12)
    np.testing.assert_allclose(e.rate, [p[1] for p in points], atol=1e-12)
    for limit in (0.05, 0.2, 0.5):
        assert e.pauc(limit) == pytest.approx(literal_pauc(points, limit), abs=1e-12)


def test_good_quality_beats_random_and_the_best_is_zero():
    rng = np.random.default_rng(7)
    n = 4000
    q = rng.uniform(0, 1, n)
    y = rng.random(n) < 0.3
    s = np.where(y, 0.3 + 0.6 * q + rng.normal(0, 0.05, n), rng.normal(0.1, 0.1, n))
    good = E.quality_edc(s, y, q)
    noise = E.quality_edc(s, y, rng.uniform(0, 1, n))
    assert good.starting_error == pytest.approx(0.05, abs=0.01)
    assert good.pauc(0.2) < 0.5 * noise.pauc(0.2)  # noise stays near the flat curve, e0 × 0.2 − e0²/2
    oracle = E.quality_edc(s, y, s)  # discarding the lowest scores first is the theoretical best
    assert abs(oracle.pauc(0.2)) < 2e-3


def test_recomputed_variant_is_labelled_and_differs():
    rng = np.random.default_rng(3)
    n = 20000
    q = rng.uniform(0, 1, n)
    y = rng.random(n) < 0.2
    s = np.where(y, 0.4 + 0.4 * q + rng.normal(0, 0.1, n), rng.normal(0.1, 0.1, n))
    r = E.quality_edc_recomputed(s, y, q, fmr=1e-3)
    assert r.rule == "recomputed_fmr_0.001" and r.fnmr[0] > r.fnmr[-1]
    with pytest.raises(QMagError, match="mated"):
        E.quality_edc(s[~y], y[~y], q[~y])
