"""Figures: one template (legend outside the axes), DET ticks in percent, decision boundary
listed only when drawn, one colour scale for compared matrices."""

import numpy as np
import pytest

from qmag_core.evaluation import edc as E
from qmag_core.evaluation import metrics as M
from studio.figures import edc_figure, roc_det, s_vs_q, similarity_matrix


def _scores(seed=0, n=3000):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    s = np.clip(np.where(y, rng.normal(0.7, 0.1, n), rng.normal(0.2, 0.1, n)), -1, 1)
    return s, rng.uniform(10, 40, n), y


def test_legends_sit_outside_the_axes():
    s, q, y = _scores()
    for fig in (roc_det({"cosine": M.roc(s[y], s[~y])}), s_vs_q(s, q, y, alpha=0.1, beta=0.2, threshold=0.5)):
        lay, tpl = fig.layout, fig.layout.template.layout
        assert lay.legend.x is None and lay.legend.orientation is None  # the figure does not override the template
        assert tpl.legend.x >= 1 and tpl.legend.xanchor == "left"
        assert tpl.xaxis.exponentformat == "e"


def test_det_ticks_are_percent_inside_the_measured_range():
    s, q, y = _scores()
    fig = roc_det({"cosine": M.roc(s[y], s[~y])})
    ticks = fig.layout.xaxis2.ticktext
    assert ticks and all(t.endswith("%") for t in ticks) and ticks[-1] == "50%"
    lo, hi = fig.layout.xaxis2.range
    assert all(lo <= v <= hi for v in fig.layout.xaxis2.tickvals)
    # 2,100 imposters cannot measure FMR 1e-4: the axis does not pretend to
    assert "0.01%" not in ticks and "0.001%" not in ticks


def test_decision_boundary_listed_only_when_drawn():
    s, q, y = _scores()
    inside = s_vs_q(s, q, y, alpha=0.1, beta=0.2, threshold=0.3)
    assert any(t.name and t.name.startswith("ŝ =") for t in inside.data)
    outside = s_vs_q(s, q, y, alpha=1e-6, beta=1e-6, threshold=0.3)  # ω ≈ 0: boundary far outside q
    assert not any(t.name and t.name.startswith("ŝ =") for t in outside.data)
    assert any("outside the q range" in a.text for a in outside.layout.annotations)


def test_edc_axis_starts_at_zero_and_matrices_share_a_scale():
    s, q, y = _scores()
    e = E.edc(s, y, q, n_random=20, random_state=0)
    assert edc_figure(e).layout.yaxis.range[0] == 0
    m1 = similarity_matrix(np.eye(3), list("abc"), "s", (0.0, 2.0))
    assert (m1.data[0].zmin, m1.data[0].zmax) == (0.0, 2.0)


def test_compare_sentence_says_what_qmagface_did():
    from qmag_core.pipeline.compare import PairResult, explain_pairs
    from qmag_core.scores.params import QMagFaceParams

    p = QMagFaceParams(alpha=0.5, beta=0.6)  # s0 = 0.833
    hi = PairResult(0, 1, 0.95, 0.95, 30.0, True, True)
    lo = PairResult(0, 2, 0.5, 0.5 + (0.6 * 0.5 - 0.5) * 20.0, 20.0, False, False)
    assert "ŝ = s: the cosine 0.9500 is above s0" in explain_pairs([hi], p)
    assert "same as with cosine alone" in explain_pairs([hi], p)
    msg = explain_pairs([lo], p)
    assert "below s0" in msg and "-4.0000" in msg and "q_min = 20" in msg
    flip = PairResult(0, 3, 0.8, 0.79, 1.0, True, False)
    assert "1 decision differs from cosine" in explain_pairs([hi, lo, flip], p)
    assert "2 of 3 pairs have a cosine below s0" in explain_pairs([hi, lo, flip], p)
    assert explain_pairs([hi], None).startswith("No QMagFace parameters")


def test_compare_sentence_follows_omega_not_the_sign_of_beta():
    """Whether a pair is moved comes from ω(s) itself: with β ≤ 0 (s0 meaningless) the
    sentence neither calls a moved pair 'below s0' nor counts an unmoved one."""
    from qmag_core.pipeline.compare import PairResult, explain_pairs
    from qmag_core.scores.params import QMagFaceParams

    p = QMagFaceParams(alpha=-0.5, beta=-1.0)  # ω(s) = min(0, 0.5 − s) < 0 for s > 0.5
    hi = PairResult(0, 1, 0.9, 0.9 - 0.4 * 10, 10.0, None, None)
    lo = PairResult(0, 2, 0.3, 0.3, 10.0, None, None)
    assert "1 of 2 pairs have a cosine where ω(s) < 0" in explain_pairs([hi, lo], p)
    assert "below s0" not in explain_pairs([hi], p) and "-4.0000" in explain_pairs([hi], p)
    assert explain_pairs([lo], p).startswith("ŝ = s:")


def test_roc_det_draws_only_what_the_pairs_measured():
    """No point and no axis below FMR = 1/#imposters; the uncertain strip up to 3/#imposters;
    the two curves differ in colour and dash; a DET without errors says why it is empty."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    g, i = rng.normal(0.7, 0.1, 500), rng.normal(0.2, 0.1, 400)
    fig = roc_det({"cosine": M.roc(g, i), "QMagFace": M.roc(g + 0.01, i)})
    roc = [d for d in fig.data if d.xaxis in (None, "x") and d.name in ("cosine", "QMagFace")]
    assert all(np.min(d.x) >= 1 / 400 * (1 - 1e-9) for d in roc)
    assert roc[0].line.color != roc[1].line.color and roc[0].line.dash != roc[1].line.dash
    assert fig.layout.xaxis.range[0] == pytest.approx(np.log10(1 / 400))
    assert fig.layout.xaxis2.range[0] == pytest.approx(norm.ppf(1 / 400))
    strip = [s for s in fig.layout.shapes if s.xref == "x"]
    assert strip and strip[0].x0 == pytest.approx(1 / 400) and strip[0].x1 == pytest.approx(3 / 400)
    separated = roc_det({"cosine": M.roc(g + 5, i)})
    assert any("No errors to draw" in a.text for a in separated.layout.annotations)


def test_similarity_matrix_reads_top_down_without_the_diagonal():
    m = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]])
    fig = similarity_matrix(m, ["a", "b", "c"], "cosine s")
    z = np.asarray(fig.data[0].z, float)
    assert np.isnan(np.diag(z)).all() and fig.layout.yaxis.autorange == "reversed"
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0.3, 0.8)  # the pairs' own range, not 0.7–1
