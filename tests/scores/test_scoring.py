import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from qmag_core.errors import (
    DataFormatError,
    DegenerateFitError,
    FMRClampWarning,
    InvalidEmbeddingError,
    NotFittedError,
    QMagError,
)
from qmag_core.scores import QMagFaceParams, QMagFaceTrainer, omega_of_s, pair_similarity, qmagface_score
from qmag_core.scores.reference import seed_compute_s_q, seed_thresholds_omegas, seed_train
from qmag_core.scores.synthetic import synthetic_pairs


# ----------------------------------------------------------------------- scorer
def test_score_formula_by_hand():
    # ω(0.9) = min(0, 0.2*0.9 - 0.1) = 0 ; ω(0.2) = min(0, 0.04 - 0.1) = -0.06
    out = qmagface_score([0.9, 0.2], [30.0, 10.0], alpha=0.1, beta=0.2)
    np.testing.assert_allclose(out, [0.9, 0.2 - 0.06 * 10.0])
    np.testing.assert_allclose(omega_of_s([0.9, 0.2], 0.1, 0.2), [0.0, -0.06])


def test_zero_params_give_cosine():
    s, q1, q2, _ = synthetic_pairs(100, 100, random_state=1)
    np.testing.assert_array_equal(qmagface_score(s, np.minimum(q1, q2), 0.0, 0.0), s)


def test_score_shape_mismatch():
    with pytest.raises(QMagError, match="same shape"):
        qmagface_score([0.1, 0.2], [1.0], 0.1, 0.1)


def test_pair_similarity_matches_manual():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(6, 8)) * rng.uniform(5, 30, (6, 1))
    pairs = np.array([[0, 1], [2, 3], [4, 5], [0, 5]])
    ps = pair_similarity(e, pairs)
    for k, (a, b) in enumerate(pairs):
        cos = e[a] @ e[b] / np.linalg.norm(e[a]) / np.linalg.norm(e[b])
        assert ps.s[k] == pytest.approx(cos, abs=1e-12)
        assert ps.q_min[k] == pytest.approx(min(np.linalg.norm(e[a]), np.linalg.norm(e[b])))
    assert ps.valid.all()


def test_pair_similarity_rejects_or_masks_bad_rows():
    e = np.ones((4, 3))
    e[1] = 0.0
    e[3, 0] = np.nan
    pairs = np.array([[0, 1], [0, 2], [2, 3]])
    with pytest.raises(InvalidEmbeddingError, match=r"rows 1, 3") as ei:
        pair_similarity(e, pairs)
    assert ei.value.rows == [1, 3]
    ps = pair_similarity(e, pairs, on_invalid="mask")
    np.testing.assert_array_equal(ps.valid, [False, True, False])
    assert np.isnan(ps.s[0]) and np.isnan(ps.s[2]) and ps.s[1] == pytest.approx(1.0)
    ps2 = pair_similarity(e, pairs, ok=[True, True, False, True], on_invalid="mask")
    np.testing.assert_array_equal(ps2.valid, [False, False, False])


@pytest.mark.parametrize(
    "pairs, msg", [(np.array([[0, 5]]), "lie in"), (np.array([0, 1]), "shape"), (np.array([[0.0, 1.0]]), "integers")]
)
def test_pair_similarity_bad_pairs(pairs, msg):
    with pytest.raises(QMagError, match=msg):
        pair_similarity(np.ones((3, 2)), pairs)


# ----------------------------------------------------- official mode == seed code
DATASETS = [
    dict(n_genuine=2000, n_imposter=20000, random_state=0),
    dict(n_genuine=3000, n_imposter=30000, random_state=1, quantize=0.01),  # many ties
    dict(n_genuine=600, n_imposter=9000, random_state=2, quantize=0.05),  # heavy mixed ties
    dict(n_genuine=4000, n_imposter=120000, random_state=3),  # windowed path
    dict(n_genuine=3000, n_imposter=100000, random_state=4, quantize=0.002),  # windowed + ties
    dict(n_genuine=1500, n_imposter=15000, random_state=5, imposter_sd_slope=0.004),
]


@pytest.mark.parametrize("kw", DATASETS, ids=[str(i) for i in range(len(DATASETS))])
def test_official_mode_matches_seed_exactly(kw):
    s, q1, q2, y = synthetic_pairs(**kw)
    q = np.minimum(q1, q2)
    ts, om, fn, th = seed_thresholds_omegas(s, q, y)
    a_ref, b_ref = seed_train(s, q, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FMRClampWarning)
        tr = QMagFaceTrainer(mode="official", clamp_fmr=False).fit(np.c_[s, q1, q2], y)
    np.testing.assert_array_equal(tr.fnmr_grid_, fn)
    np.testing.assert_array_equal(tr.threshold_grid_, th)
    np.testing.assert_array_equal(tr.thresholds_, ts)
    np.testing.assert_array_equal(tr.omega_opt_, om)
    assert tr.alpha_ == pytest.approx(a_ref, rel=1e-9, abs=0)
    assert tr.beta_ == pytest.approx(b_ref, rel=1e-9, abs=0)


@pytest.mark.parametrize("seed", range(40))
def test_official_grid_matches_seed_on_random_small_sets(seed):
    """Tiny, coarse and odd sets: every kind of tie and sklearn's dropped points."""
    rng = np.random.default_rng(seed)
    ng, ni = int(rng.integers(1, 200)), int(rng.integers(2, 2000))
    step = [0, 0.5, 0.2, 0.1, 0.05, 0.01][seed % 6]
    s = np.r_[rng.normal(0.5, 0.2, ng), rng.normal(0.1, 0.15, ni)]
    q = rng.uniform(10, 35, ng + ni)
    if step:
        s, q = np.round(s / step) * step, np.round(q / (20 * step)) * (20 * step)
    y = np.r_[np.ones(ng, int), np.zeros(ni, int)]
    nf, nw = int(rng.integers(2, 12)), int(rng.integers(2, 25))
    fmin = 10 ** rng.uniform(-5, -2)
    fmax = min(0.9, fmin * 10 ** rng.uniform(0, 2.5))
    _, _, fn, th = seed_thresholds_omegas(s, q, y, weights_num=nw, fmr_num=nf, fmr_min=fmin, fmr_max=fmax)
    omegas = np.linspace(-0.5 / q.max(), 0.5 / q.max(), nw)
    fmrs = np.logspace(np.log10(fmin), np.log10(fmax), nf)
    F, T = QMagFaceTrainer._grid(s, q, np.flatnonzero(y == 1), np.flatnonzero(y == 0), omegas, fmrs, fmax, True)
    np.testing.assert_array_equal(F, fn)
    np.testing.assert_array_equal(T, th)


def test_seed_compute_s_q_and_float32_inputs():
    rng = np.random.default_rng(3)
    f = (rng.normal(size=(50, 16)) * rng.uniform(10, 30, (50, 1))).astype(np.float32)
    pairs = np.array([[i, (i + 7) % 50] for i in range(50)])
    s_ref, q_ref = seed_compute_s_q(f.astype(np.float64), pairs)
    ps = pair_similarity(f, pairs)
    np.testing.assert_allclose(ps.s, s_ref, atol=1e-12)
    np.testing.assert_allclose(ps.q_min, q_ref, rtol=1e-6)


# ----------------------------------------------------------- consistent mode oracle
def _consistent_oracle(s, q, y, omegas, fmrs):
    fn = np.empty((omegas.size, fmrs.size))
    th = np.empty_like(fn)
    for i, w in enumerate(omegas):
        fpr, tpr, thr = roc_curve(y, w * q + s, drop_intermediate=False)
        for j, f in enumerate(fmrs):
            m = fpr <= f
            k = np.argmin(1 - tpr[m])
            fn[i, j], th[i, j] = (1 - tpr[m])[k], thr[k]
    return fn, th


@pytest.mark.parametrize("kw", DATASETS[:3] + DATASETS[4:5], ids=["0", "1", "2", "4"])
def test_consistent_mode_matches_bruteforce(kw):
    s, q1, q2, y = synthetic_pairs(**kw)
    q = np.minimum(q1, q2)
    tr = QMagFaceTrainer(mode="consistent", clamp_fmr=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr.fit(np.c_[s, q], y)
    fn, th = _consistent_oracle(s, q, y, tr.omegas_, tr.fmrs_)
    np.testing.assert_array_equal(tr.fnmr_grid_, fn)
    np.testing.assert_array_equal(tr.threshold_grid_, th)
    # thresholds live in raw score space: they exceed the sigmoid range of official
    assert tr.thresholds_.min() < 0.5 or tr.thresholds_.max() > 0.8


# ------------------------------------------------------------- estimator habits
def test_estimator_contract():
    s, q1, q2, y = synthetic_pairs(1500, 15000, random_state=0)
    X = np.c_[s, q1, q2]
    tr = QMagFaceTrainer(mode="nonsense")  # __init__ stores, fit validates
    assert tr.mode == "nonsense"
    with pytest.raises(QMagError, match="mode must be one of"):
        tr.fit(X, y)
    tr = QMagFaceTrainer()
    with pytest.raises(NotFittedError, match="not fitted"):
        tr.transform(X)
    assert tr.fit(X, y) is tr
    assert set(tr.get_params()) == {
        "mode",
        "fmr_min",
        "fmr_max",
        "n_fmr",
        "n_omega",
        "max_ratio",
        "max_imposters",
        "clamp_fmr",
        "random_state",
    }
    clone = QMagFaceTrainer(**tr.get_params())
    assert clone.get_params() == tr.get_params()
    assert tr.fmrs_.shape == tr.thresholds_.shape == tr.omega_opt_.shape == (50,)
    assert tr.fnmr_grid_.shape == (20, 50)
    np.testing.assert_allclose(tr.transform(X), qmagface_score(s, np.minimum(q1, q2), tr.alpha_, tr.beta_))
    # refit forgets: a second fit with other options changes the learned arrays
    tr.set_params(n_fmr=10).fit(X, y)
    assert tr.thresholds_.shape == (10,)
    with pytest.raises(QMagError, match="unknown parameter"):
        tr.set_params(bogus=1)


def test_determinism_and_seeded_subsampling():
    s, q1, q2, y = synthetic_pairs(2000, 60000, random_state=4)
    X = np.c_[s, q1, q2]
    a = QMagFaceTrainer().fit(X, y)
    b = QMagFaceTrainer().fit(X, y)
    assert (a.alpha_, a.beta_) == (b.alpha_, b.beta_)
    c = QMagFaceTrainer(max_imposters=20000, random_state=7).fit(X, y)
    d = QMagFaceTrainer(max_imposters=20000, random_state=7).fit(X, y)
    e = QMagFaceTrainer(max_imposters=20000, random_state=8).fit(X, y)
    assert c.n_imposter_ == 20000 and (c.alpha_, c.beta_) == (d.alpha_, d.beta_)
    assert (c.alpha_, c.beta_) != (e.alpha_, e.beta_)
    assert any("subset" in w for w in c.warnings_)


# ----------------------------------------------------------------- degenerate input
def test_no_genuine_or_no_imposter():
    X = np.c_[np.linspace(0, 1, 10), np.full(10, 20.0)]
    with pytest.raises(QMagError, match="0 genuine"):
        QMagFaceTrainer().fit(X, np.zeros(10))
    with pytest.raises(QMagError, match="0 imposter"):
        QMagFaceTrainer().fit(X, np.ones(10))


def test_bad_labels_and_shapes():
    with pytest.raises(QMagError, match="labels must be 1"):
        QMagFaceTrainer().fit(np.c_[[0.1, 0.2], [1, 2]], [1, 2])
    with pytest.raises(QMagError, match="shape"):
        QMagFaceTrainer().fit(np.ones((3, 4)), [1, 0, 1])
    with pytest.raises(QMagError, match="NaN"):
        QMagFaceTrainer().fit(np.c_[[0.1, np.nan], [1, 2]], [1, 0])


def test_fmr_range_clamped_with_reason():
    s, q1, q2, y = synthetic_pairs(1000, 5000, random_state=0)
    with pytest.warns(FMRClampWarning, match=r"needs 100,000 imposter pairs but the data has 5,000"):
        tr = QMagFaceTrainer().fit(np.c_[s, q1, q2], y)
    assert tr.fmr_clamped_ and tr.fmrs_[0] == pytest.approx(1 / 5000)
    with pytest.raises(QMagError, match="fmr_max=0.0001 needs more than 10,000"):
        QMagFaceTrainer(fmr_max=1e-4).fit(np.c_[s, q1, q2], y)


def test_separable_data_is_degenerate():
    rng = np.random.default_rng(0)
    s = np.r_[rng.uniform(0.8, 0.9, 100), rng.uniform(-0.1, 0.1, 5000)]
    q = rng.uniform(20, 30, s.size)
    y = np.r_[np.ones(100), np.zeros(5000)]
    with pytest.raises(DegenerateFitError, match="zero variance in t"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            QMagFaceTrainer().fit(np.c_[s, q], y)


def test_ties_are_reported():
    s, q1, q2, y = synthetic_pairs(600, 9000, random_state=2, quantize=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = QMagFaceTrainer().fit(np.c_[s, q1, q2], y)
    assert tr.n_ties_.min() >= 1
    assert tr.n_ties_.max() > 1
    np.testing.assert_array_equal(tr.n_ties_, (tr.fnmr_grid_ == tr.fnmr_grid_.min(axis=0)).sum(axis=0))
    assert any("ties" in w for w in tr.warnings_)


def test_bootstrap_ci_is_seeded():
    s, q1, q2, y = synthetic_pairs(2000, 30000, random_state=6)
    X = np.c_[s, q1, q2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = QMagFaceTrainer().fit(X, y)
        c1 = tr.bootstrap(X, y, n_boot=15, random_state=3)
        c2 = tr.bootstrap(X, y, n_boot=15, random_state=3)
        c3 = tr.bootstrap(X, y, n_boot=15, random_state=4)
    assert c1.alpha == c2.alpha and c1.beta == c2.beta
    assert c1.alpha != c3.alpha
    assert c1.alpha[0] <= c1.alpha[1] and c1.beta[0] <= c1.beta[1]
    assert c1.alphas.size + c1.n_failed == 15


# ------------------------------------------------------------------ params record
def test_params_roundtrip(tmp_path):
    s, q1, q2, y = synthetic_pairs(1500, 15000, random_state=0)
    tr = QMagFaceTrainer(mode="consistent").fit(np.c_[s, q1, q2], y)
    p = tr.params(encoder="magface", trained_on={"file": "x.csv"})
    f = tmp_path / "p.json"
    p.save(f)
    d = json.loads(f.read_text())
    for k in (
        "alpha",
        "beta",
        "mode",
        "fmrs",
        "thresholds",
        "omega_opt",
        "options",
        "encoder",
        "quality",
        "trained_on",
    ):
        assert k in d
    assert d["options"]["n-omega"] == 20 and d["options"]["mode"] == "consistent"
    back = QMagFaceParams.load(f)
    assert back.alpha == tr.alpha_ and back.beta == tr.beta_ and back.encoder == "magface"
    assert back.s0 == pytest.approx(tr.alpha_ / tr.beta_)


@pytest.mark.parametrize(
    "text, msg",
    [
        ('{"beta": 1}', "missing key"),
        ("{nope", "not valid JSON"),
        ('{"alpha": "x", "beta": 1}', "must be a finite number"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_params_load_errors(tmp_path, text, msg):
    f = tmp_path / "p.json"
    f.write_text(text)
    with pytest.raises(DataFormatError, match=msg):
        QMagFaceParams.load(f)


def test_same_q_scale_strips_variant_suffixes_only():
    from qmag_core.scores.params import QMagFaceParams, same_q_scale

    base = "builtin-w1-headA"
    for variant in ("-onnx", "-flip", "-int8", "-int8-flip", "-flip-onnx-int8"):
        assert same_q_scale(base, base + variant) and same_q_scale(base + variant, base)
    assert not same_q_scale(base, "builtin-w1-headB")
    assert not same_q_scale(base, base + "-int4")  # an unknown variant is another encoder
    assert not same_q_scale("builtin-raw-w1", "builtin-w1")
    p = QMagFaceParams(alpha=0.1, beta=0.2, encoder_key=base)
    assert p.quality_mismatch(base + "-int8") is None
    assert "retrain" in p.quality_mismatch("builtin-w1-headB")
