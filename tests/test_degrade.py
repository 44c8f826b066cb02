"""The cross-quality protocol helpers in qmag_core.degrade (bank of degraded versions,
pairs, one-side-degraded versions)."""
from pathlib import Path

import numpy as np
import pytest

from qmag_core.degrade import DegradedBank, cross_versions, degraded_bank, identity_pairs
from qmag_core.errors import QMagError

CROPS = np.load(Path(__file__).parent / "fixtures" / "faceapi_reference.npz")["inputs"][:3]


@pytest.fixture(scope="module")
def encoders():
    from qmag_core.encoders import load_encoder

    return load_encoder("builtin", device="cpu"), load_encoder("builtin-raw", device="cpu")


def test_bank_versions_are_seeded_and_version_0_is_the_clean_embedding(encoders):
    enc, raw = encoders
    bk = degraded_bank(enc, CROPS, 2, seed=5, batch_size=2)  # batches split inside the set
    assert bk.unit.shape == (3, 3, 128) and bk.q.shape == bk.raw.shape == bk.kind.shape == (3, 3)
    np.testing.assert_allclose(np.linalg.norm(bk.unit, axis=2), 1, atol=1e-5)
    e = enc.embed(CROPS)
    np.testing.assert_allclose(bk.q[:, 0], np.linalg.norm(e, axis=1), rtol=1e-4)  # head q
    np.testing.assert_allclose(bk.raw[:, 0], np.linalg.norm(raw.embed(CROPS), axis=1), rtol=1e-4)
    assert (bk.kind[:, 0] == "").all() and (bk.severity[:, 0] == 0).all()
    assert (bk.kind[:, 1:] != "").all() and ((bk.severity[:, 1:] >= 0.1) & (bk.severity[:, 1:] <= 1)).all()
    again = degraded_bank(enc, CROPS, 2, seed=5)
    np.testing.assert_allclose(again.unit, bk.unit, atol=1e-5)
    assert (again.kind == bk.kind).all()
    other = degraded_bank(enc, CROPS, 2, seed=6)
    assert not np.allclose(other.severity, bk.severity)


def test_bank_for_an_encoder_without_head_uses_the_embedding_length(encoders, tmp_path):
    _, raw = encoders
    bk = degraded_bank(raw, CROPS[:2], 1)
    np.testing.assert_allclose(bk.q, bk.raw)
    bk.save(tmp_path / "b.npz")
    back = DegradedBank.load(tmp_path / "b.npz")
    assert (back.kind == bk.kind).all() and np.array_equal(back.unit, bk.unit)
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(QMagError, match="not a degraded bank"):
        DegradedBank.load(tmp_path / "x.npz")


def test_pair_scores_take_each_side_at_its_version():
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(4, 3, 5))
    unit /= np.linalg.norm(unit, axis=2, keepdims=True)
    q = rng.uniform(10, 20, (4, 3))
    bk = DegradedBank(unit, q, q + 1, np.full((4, 3), "blur"), np.zeros((4, 3)))
    ij = np.array([[0, 1], [2, 3]])
    v = np.array([[0, 2], [1, 0]])
    s, qmin, rmin = bk.pair_scores(ij, v)
    assert s[0] == pytest.approx(unit[0, 0] @ unit[1, 2]) and s[1] == pytest.approx(unit[2, 1] @ unit[3, 0])
    assert qmin[1] == min(q[2, 1], q[3, 0]) and rmin[0] == min(q[0, 0], q[1, 2]) + 1
    with pytest.raises(QMagError, match=r"\(P, 2\)"):
        bk.pair_scores(ij, v[:1])


def test_identity_pairs_are_all_genuine_pairs_and_true_imposters():
    ident = np.array(["b", "a", "b", "c", "a", "b", "d"])
    ij, gen = identity_pairs(ident, np.random.default_rng(0), 100, 50)
    g = ij[gen]
    assert {tuple(sorted(p)) for p in g.tolist()} == {(1, 4), (0, 2), (0, 5), (2, 5)}  # every genuine pair once
    assert (ident[g[:, 0]] == ident[g[:, 1]]).all() and (ident[ij[~gen, 0]] != ident[ij[~gen, 1]]).all()
    assert (~gen).sum() == 50 and gen[:4].all()
    capped, gen2 = identity_pairs(ident, np.random.default_rng(0), 2, 5)
    assert gen2.sum() == 2 and {tuple(p) for p in capped[gen2].tolist()} <= {tuple(p) for p in g.tolist()}
    a, _ = identity_pairs(ident, np.random.default_rng(3), 2, 5)
    b, _ = identity_pairs(ident, np.random.default_rng(3), 2, 5)
    assert np.array_equal(a, b)


def test_cross_versions_degrade_exactly_one_side():
    v = cross_versions(1000, 3, np.random.default_rng(0))
    assert ((v == 0).sum(axis=1) == 1).all() and v.max() == 3 and v[v > 0].min() == 1
    assert 0.4 < (v[:, 0] > 0).mean() < 0.6  # either side, seeded
    assert np.array_equal(v, cross_versions(1000, 3, np.random.default_rng(0)))
