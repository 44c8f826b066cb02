"""The cross-quality protocol helpers in qmag_core.quality.degrade (bank of degraded versions,
pairs, one-side-degraded versions)."""

from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from qmag_core.errors import QMagError
from qmag_core.quality.degrade import CAPTURE_KINDS, DegradedBank, cross_versions, degrade_photo, degraded_bank

CROPS = np.load(Path(__file__).parents[1] / "fixtures" / "faceapi_reference.npz")["inputs"][:3]


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


def test_cross_versions_degrade_exactly_one_side():
    v = cross_versions(1000, 3, np.random.default_rng(0))
    assert ((v == 0).sum(axis=1) == 1).all() and v.max() == 3 and v[v > 0].min() == 1
    assert 0.4 < (v[:, 0] > 0).mean() < 0.6  # either side, seeded
    assert np.array_equal(v, cross_versions(1000, 3, np.random.default_rng(0)))


# ------------------------------------------------------------- capture-level family
def _photo_and_landmarks():
    from qmag_core.vision.align import FaceDetector, choose_face
    from qmag_core.vision.images import load_image

    img = load_image(ROOT / "sample_data" / "faces" / "deepface" / "img2.jpg")
    faces = FaceDetector().detect(img)
    return img, faces[choose_face(faces, (img.shape[1], img.shape[0]))].landmarks


def _laplacian_var(x):
    from scipy.ndimage import laplace

    return float(laplace(x.astype(np.float64).mean(2)).var())


@pytest.fixture(scope="module")
def photo():
    return _photo_and_landmarks()


@pytest.mark.parametrize("kind", CAPTURE_KINDS)
def test_capture_kinds_are_seeded_and_mild_at_zero(photo, kind):
    img, lm = photo
    a = degrade_photo(img, kind, 0.7, np.random.default_rng(3), landmarks=lm)
    b = degrade_photo(img, kind, 0.7, np.random.default_rng(3), landmarks=lm)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.ndim == 3
    if kind not in ("resolution", "chain", "occluder"):
        z = degrade_photo(img, kind, 0.0, np.random.default_rng(3), landmarks=lm)
        assert np.abs(z.astype(int) - img).mean() < 3.0  # severity 0 leaves the photo nearly as it was


def test_capture_severity_orders_the_damage(photo):
    img, lm = photo
    for kind in ("defocus", "motion"):
        sharp = [
            _laplacian_var(degrade_photo(img, kind, s, np.random.default_rng(0), landmarks=lm)) for s in (0.2, 0.5, 1.0)
        ]
        assert sharp[0] > sharp[1] > sharp[2]
    err = [
        np.abs(degrade_photo(img, "lowlight", s, np.random.default_rng(0), landmarks=lm).astype(int) - img).mean()
        for s in (0.2, 0.5, 1.0)
    ]
    assert err[0] < err[1] < err[2]
    covered = [
        np.mean(np.any(degrade_photo(img, "occluder", s, np.random.default_rng(5), landmarks=lm) != img, 2))
        for s in (0.2, 1.0)
    ]
    assert covered[0] < covered[1]


def test_capture_resolution_reaches_12_px_between_the_eyes(photo):
    img, lm = photo
    ied = float(np.linalg.norm(lm[1] - lm[0]))
    for seed in range(8):  # half of the draws keep the photo small: find one
        y = degrade_photo(img, "resolution", 1.0, np.random.default_rng(seed), landmarks=lm)
        if y.shape != img.shape:
            break
    assert y.shape[1] / img.shape[1] * ied == pytest.approx(12, rel=0.05)


def test_capture_unknown_kind():
    with pytest.raises(QMagError, match="capture degradation"):
        degrade_photo(np.zeros((50, 50, 3), np.uint8), "fog", 0.5, np.random.default_rng(0))
