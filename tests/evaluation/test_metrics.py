import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import det_curve, roc_auc_score, roc_curve

from qmag_core.errors import QMagError
from qmag_core.evaluation import bootstrap as B
from qmag_core.evaluation import edc as E
from qmag_core.evaluation import metrics as M
from qmag_core.scores.synthetic import synthetic_pairs


@pytest.fixture(scope="module")
def tied():
    s, q1, q2, y = synthetic_pairs(3000, 40000, random_state=3, quantize=0.01)
    return s, np.minimum(q1, q2), y


def test_roc_equals_sklearn(tied):
    s, _, y = tied
    c = M.roc(*M.split_scores(s, y))
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_array_equal(c.thresholds, thr)
    np.testing.assert_allclose(c.fmr, fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(c.tpr, tpr, rtol=0, atol=1e-15)


def test_det_points_equal_sklearn(tied):
    s, _, y = tied
    c = M.roc(*M.split_scores(s, y))
    fpr, fnr, thr = det_curve(y, s)
    # sklearn's det_curve drops the trivial ends; each of its points is on our curve
    k = np.searchsorted(-c.thresholds, -thr)
    np.testing.assert_array_equal(c.thresholds[k], thr)
    np.testing.assert_allclose(c.fmr[k], fpr, atol=1e-15)
    np.testing.assert_allclose(c.fnmr[k], fnr, atol=1e-15)


def test_roc_toy():
    c = M.roc([0.9, 0.6], [0.1, 0.6])
    assert c.thresholds.tolist() == [np.inf, 0.9, 0.6, 0.1]
    assert c.fmr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert c.fnmr.tolist() == [1.0, 0.5, 0.0, 0.0]


def test_auc_equals_sklearn_with_ties(tied):
    s, _, y = tied
    assert M.auc(*M.split_scores(s, y)) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def _brute_fnmr_at(g, i, fmr):
    ths = np.r_[np.unique(np.r_[g, i]), np.inf]
    best = 1.0
    for t in ths:
        if np.mean(i >= t) <= fmr:
            best = min(best, np.mean(g < t))
    return best


@pytest.mark.parametrize("fmr", [1e-2, 1e-3, 1e-4])
def test_fnmr_at_fmr_bruteforce(tied, fmr):
    s, _, y = tied
    g, i = M.split_scores(s, y)
    op = M.fnmr_at_fmr(g, i, fmrs=(fmr,))[0]
    assert op.fnmr == pytest.approx(_brute_fnmr_at(g, i, fmr), abs=1e-12)
    assert op.fmr <= fmr
    assert np.mean(i >= op.threshold) == pytest.approx(op.fmr)
    assert np.mean(g < op.threshold) == pytest.approx(op.fnmr)


def test_fnmr_at_fmr_not_enough_imposters():
    ops = M.fnmr_at_fmr([0.9, 0.8, 0.3], [0.5] * 10 + [0.2] * 90, fmrs=(0.1, 1e-2, 1e-3))
    # t=0.3 still has FMR 10/100 = 0.1: every genuine accepted
    assert ops[0].fnmr == 0.0 and ops[0].threshold == 0.3 and ops[0].fmr == pytest.approx(0.1)
    # 100 imposters support 1e-2 exactly; FMR <= 0.01 needs t above 0.5 -> t = 0.8
    assert ops[1].fnmr == pytest.approx(1 / 3) and ops[1].threshold == 0.8 and ops[1].fmr == 0.0
    assert ops[2].fnmr is None and "not enough imposters" in ops[2].reason and "1,000" in ops[2].reason


@pytest.mark.parametrize(
    "g, i, value, low, high",
    [
        ([0.9, 0.8, 0.7, 0.2], [0.1, 0.3, 0.4, 0.75], 0.25, 0.25, 0.25),
        ([1.0, 0.9], [0.1, 0.2], 0.0, 0.0, 0.0),
        ([0.1, 0.2], [0.9, 1.0], 1.0, 1.0, 1.0),
        # t1=0.4: FNMR 0 <= FMR 1/4 (sum 1/4); t2=0.45: FNMR 1/3 >= FMR 1/4 (sum 7/12) -> [0, 1/4]
        ([0.9, 0.5, 0.4], [0.45, 0.3, 0.2, 0.1], 0.125, 0.0, 0.25),
    ],
)
def test_eer_toy(g, i, value, low, high):
    e = M.eer(g, i)
    assert e.low <= e.value <= e.high
    assert e.value == pytest.approx((e.low + e.high) / 2)
    assert (e.low, e.high, e.value) == pytest.approx((low, high, value))


def test_eer_close_to_crossing(tied):
    s, _, y = tied
    g, i = M.split_scores(s, y)
    e = M.eer(g, i)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    k = np.argmin(np.abs(fpr - (1 - tpr)))
    assert e.low <= max(fpr[k], 1 - tpr[k]) + 1e-12 and e.high >= min(fpr[k], 1 - tpr[k]) - 1e-12
    assert abs(np.mean(g < e.threshold) - np.mean(i >= e.threshold)) <= e.high - e.low + 1e-12


def test_dprime_by_hand():
    g, i = np.array([1.0, 3.0]), np.array([0.0, 0.0, 2.0, 2.0])
    assert M.dprime(g, i) == pytest.approx(1.0 / np.sqrt((1.0 + 1.0) / 2))


def test_best_threshold_and_kfold_toy():
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    y = np.array([0, 0, 1, 0, 1, 1], bool)
    # candidates .15,.25,.35,.45,.55 ; accuracy 4/6 at .15, 5/6 at .25 and .45 -> lowest .25
    assert M.best_threshold(s, y) == pytest.approx(0.25)
    folds = np.array([0, 1, 0, 1, 0, 1])
    r = M.kfold_accuracy(s, y, folds)
    # fold 0 trains on {0.2:0, 0.4:0, 0.6:1} -> t=0.5 ; test {0.1:0, 0.3:1, 0.5:1} -> 2/3
    # fold 1 trains on {0.1:0, 0.3:1, 0.5:1} -> t=0.2 ; test {0.2:0, 0.4:0, 0.6:1} -> 1/3
    np.testing.assert_allclose(r.thresholds, [0.5, 0.2])
    np.testing.assert_allclose(r.per_fold, [2 / 3, 1 / 3])
    assert r.mean == pytest.approx(0.5) and r.std == pytest.approx(1 / 6)
    with pytest.raises(QMagError, match="at least 2 folds"):
        M.kfold_accuracy(s, y, np.zeros(6))


def test_bootstrap_ci_seeded_and_covers(tied):
    s, _, y = tied
    g, i = M.split_scores(s, y)
    a = B.bootstrap_ci(g, i, n_boot=100, random_state=1)
    b = B.bootstrap_ci(g, i, n_boot=100, random_state=1)
    assert a == b
    e = M.eer(g, i).value
    assert a["eer"][0] <= e <= a["eer"][1]
    f3 = M.fnmr_at_fmr(g, i, fmrs=(1e-3,))[0].fnmr
    lo, hi = a["fnmr_at_fmr"][1e-3]
    assert lo <= f3 <= hi and hi - lo < 0.2
    small = B.bootstrap_ci(g[:50], i[:500], n_boot=20)
    assert small["fnmr_at_fmr"][1e-3] is None


def test_edc_quality_discard_beats_random():
    rng = np.random.default_rng(0)
    n_g, n_i = 4000, 20000
    q = np.r_[rng.uniform(10, 40, n_g), rng.uniform(10, 40, n_i)]
    s = np.r_[0.2 + 0.02 * (q[:n_g] - 10) + rng.normal(0, 0.05, n_g), rng.normal(0, 0.07, n_i)]
    y = np.r_[np.ones(n_g), np.zeros(n_i)].astype(bool)
    r = E.edc(s, y, q)
    assert r.rule == "fmr_0.001"
    assert r.fnmr[0] == pytest.approx(np.mean(s[y] < r.threshold))
    assert r.fnmr[-1] < 0.5 * r.fnmr[0]  # discarding low q removes errors
    assert abs(r.fnmr_random_median[-1] - r.fnmr[0]) < 0.02  # random discards do not
    k = int(np.floor(0.2 * s.size))
    keep = np.argsort(q, kind="stable")[k:]
    j = list(np.round(r.discard, 2)).index(0.2)
    assert r.fnmr[j] == pytest.approx(np.mean(s[keep][y[keep]] < r.threshold))
    few = E.edc(np.r_[s[:100], s[-500:]], np.r_[y[:100], y[-500:]], np.r_[q[:100], q[-500:]])
    assert few.rule == "eer"


def test_decimate_keeps_ends_and_limit(tied):
    s, _, y = tied
    rng = np.random.default_rng(0)
    g, i = rng.normal(1, 1, 50000), rng.normal(0, 1, 50000)
    c = M.roc(g, i)
    d = c.decimate(2000)
    assert d.fmr.size <= 2000 and c.fmr.size > 2000
    assert d.thresholds[0] == np.inf and d.fmr[-1] == 1.0
    assert np.all(np.diff(d.fmr) >= 0)
    assert (d.fmr[1:] < 1e-3).sum() >= 50  # low-FMR region keeps detail for DET plots


def test_bad_input_messages():
    with pytest.raises(QMagError, match="need genuine and imposter"):
        M.eer([], [0.1])
    with pytest.raises(QMagError, match="finite"):
        M.roc([np.nan], [0.1])


def test_paired_bootstrap_values_and_differences():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(400, bool), np.zeros(3000, bool)]
    a = np.where(y, rng.normal(1.5, 1, y.size), rng.normal(0, 1, y.size))
    folds = rng.integers(0, 4, y.size)
    res = {d.metric: d for d in B.paired_bootstrap(y, a, a.copy(), fmrs=(1e-2, 1e-3, 1e-4), folds=folds, n_boot=50)}
    # FMR 1e-4 needs 10,000 imposters: left out rather than reported from too few
    assert set(res) == {"eer", "fnmr@fmr=0.01", "fnmr@fmr=0.001", "accuracy"}
    g, i = a[y], a[~y]
    assert res["eer"].a == pytest.approx(M.eer(g, i).value)
    assert res["fnmr@fmr=0.01"].a == pytest.approx(M.fnmr_at_fmr(g, i, (1e-2,))[0].fnmr)
    assert res["accuracy"].a == pytest.approx(M.kfold_accuracy(a, y, folds).mean)
    # identical score sets: every difference and every CI is exactly zero
    assert all(d.diff == d.lo == d.hi == 0 for d in res.values())
    # a monotone transform changes no rank metric
    tr = B.paired_bootstrap(y, a, np.tanh(a / 3), n_boot=30)
    assert all(abs(d.diff) < 1e-12 and abs(d.lo) < 1e-12 and abs(d.hi) < 1e-12 for d in tr)
    # genuine scores moved up: EER and FNMR fall, the CI excludes 0; seeded → repeatable
    b = a + 0.8 * y
    d1 = B.paired_bootstrap(y, a, b, n_boot=200, random_state=5)
    d2 = B.paired_bootstrap(y, a, b, n_boot=200, random_state=5)
    assert d1 == d2
    e = d1[0]
    assert e.metric == "eer" and e.b < e.a and e.hi < 0 and e.excludes_zero and e.lo <= e.diff <= e.hi
    with pytest.raises(QMagError, match="equal length"):
        B.paired_bootstrap(y, a, b[:-1])


def test_roc_curve_methods_equal_the_functions_on_one_sort():
    rng = np.random.default_rng(7)
    g = np.round(rng.normal(1, 1, 300), 2)  # ties inside and across classes
    i = np.round(rng.normal(0, 1, 5000), 2)
    c = M.roc(g, i)
    assert c.eer() == M.eer(g, i) and c.auc() == M.auc(g, i)
    assert c.fnmr_at_fmr((1e-1, 1e-2, 1e-3, 1e-4)) == M.fnmr_at_fmr(g, i, (1e-1, 1e-2, 1e-3, 1e-4))
    # brute force FNMR@1e-2: lowest FNMR over thresholds with FMR <= 1e-2
    ts = np.r_[np.inf, np.unique(np.r_[g, i])]
    fmr = np.array([(i >= t).mean() for t in ts])
    fnmr = np.array([(g < t).mean() for t in ts])
    assert c.fnmr_at_fmr((1e-2,))[0].fnmr == pytest.approx(fnmr[fmr <= 1e-2].min())
    assert c.fnmr_at_fmr((1e-4,))[0].fnmr is None  # 5,000 imposters cannot measure 1e-4


@given(
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from([1e-3, 1e-2, 0.05, 0.3]),
)
def test_threshold_at_fmr_accepts_at_most_fmr_of_imposters(imp, fmr):
    """Against counting: at most ⌊fmr·n⌋ imposters lie above t, and t is an imposter score
    with more than that many at or above it (no lower threshold keeps the bound)."""
    from qmag_core.evaluation.metrics import threshold_at_fmr

    a = np.asarray(imp)
    t = threshold_at_fmr(a, fmr)
    k = int(np.floor(fmr * a.size))
    assert (a > t).sum() <= k < (a >= t).sum()
    assert t in a
