import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import need_shared

from qmag_core.encoders import load_encoder
from qmag_core.errors import QMagError
from qmag_core.quality.explain import (
    deletion_drops,
    explain,
    gradient_map,
    local_variance_map,
    occlusion_map,
    patch_region,
    quality_gradient,
    render_overlay,
)
from qmag_core.vision.align import FaceDetector, NoFaceError, detect_and_align
from qmag_core.vision.images import ImageError, blur


@pytest.fixture(scope="module")
def enc():
    return load_encoder("builtin", device="cpu")


@pytest.fixture(scope="module")
def crops(enc):
    det = FaceDetector()
    files = sorted(need_shared("lfw", "images").glob("*/*.jpg"))[11::1200][:8]
    return [detect_and_align(f, det, enc.spec).crop for f in files]


def test_quality_matches_embedding_norm(enc, crops):
    q = enc.quality_of(np.stack(crops).astype(np.float32))
    np.testing.assert_allclose(q, np.linalg.norm(enc.embed(np.stack(crops)), axis=1), rtol=1e-5)


def test_gradient_is_first_order_correct(enc, crops):
    for crop in crops[:3]:
        q, g = quality_gradient(enc, crop)
        u = g / np.linalg.norm(g)
        t = 1.0  # one grey level of L2 norm along the gradient
        qp, qn = enc.quality_of(np.stack([crop + t * u, crop - t * u]).astype(np.float32))
        rel = abs((qp - qn) / 2 - t * np.linalg.norm(g)) / (t * np.linalg.norm(g))
        assert rel < 0.05, rel


@pytest.mark.slow
def test_integrated_gradients_complete(enc, crops):
    for crop in crops[:2]:
        # completeness: attributions sum to q − q(baseline) up to the midpoint-rule error,
        # which shrinks with the number of steps (q ≈ 20; q − q(blur) can be as small as 0.1)
        m = gradient_map(enc, crop, sigma=0, steps=256)
        qb = enc.quality_of(blur(crop.astype(np.float32), 4.0)[None])[0]
        assert m.raw.sum() == pytest.approx(m.quality - qb, rel=0.1, abs=0.02)


@pytest.mark.slow
def test_maps_are_deterministic(enc, crops):
    for fn in (gradient_map, occlusion_map):
        a, b = fn(enc, crops[0]), fn(enc, crops[0])
        np.testing.assert_array_equal(a.map, b.map)
        assert a.map.shape == crops[0].shape[:2] and np.abs(a.map).max() == pytest.approx(1.0)


@pytest.mark.slow
def test_deletion_beats_local_variance(enc, crops):
    """Blurring the pixels a map rates highest lowers q more than blurring its lowest."""
    wins = {"gradient": 0, "occlusion": 0, "variance": 0}
    for crop in crops:
        for name, mp in (
            ("gradient", gradient_map(enc, crop, steps=32).map),
            ("occlusion", occlusion_map(enc, crop, patch=20, stride=10).map),
            ("variance", local_variance_map(crop)),
        ):
            _, dh, dl = deletion_drops(enc, crop, mp)
            wins[name] += dh > dl
    n = len(crops)
    assert wins["gradient"] >= 0.8 * n and wins["occlusion"] >= 0.8 * n, wins
    assert wins["gradient"] > wins["variance"] and wins["occlusion"] > wins["variance"], wins


@pytest.mark.parametrize("part", ["eyes", "mouth"])
@pytest.mark.slow
def test_patch_lowers_quality_and_map(enc, crops, part):
    """With the quality head, an opaque patch lowers q and the gradient map's values in
    the patch on most faces (bench/bench_explain.py, 60 faces: q lower 95/93%, map lower 85/90%)."""
    rs, cs = patch_region(enc.spec, part)
    q_low = map_low = 0
    for crop in crops:
        patched = crop.copy()
        patched[rs, cs] = 128
        q0, q1 = enc.quality_of(np.stack([crop, patched]).astype(np.float32))
        q_low += q1 < q0
        a, b = gradient_map(enc, crop, steps=32), gradient_map(enc, patched, steps=32)
        map_low += b.raw[rs, cs].mean() < a.raw[rs, cs].mean()
    assert q_low >= 0.75 * len(crops) and map_low >= 0.6 * len(crops), (q_low, map_low)


@pytest.mark.slow
def test_explain_errors_and_overlay(enc, tmp_path):
    with pytest.raises(ImageError, match="not an image"):
        explain(b"nope", enc, name="x.jpg")
    wall = np.full((200, 200, 3), 127, np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        explain(wall, enc, name="wall")
    qm = explain(str(need_shared("deepface", "img1.jpg")), enc, method="occlusion", patch=24, stride=12)
    img = render_overlay(qm)
    assert img.shape == (2 * 150, 2 * 300, 3) and img.dtype == np.uint8
    with pytest.raises(Exception, match="method must be"):
        explain(wall, enc, method="magic")


@pytest.mark.slow
def test_magface_encoder_map(tmp_path):
    from qmag_core.encoders.iresnet import build_iresnet

    torch.manual_seed(0)
    f = tmp_path / "m.pth"
    torch.save(
        {"state_dict": {"features.module." + k: v for k, v in build_iresnet("iresnet18").state_dict().items()}}, f
    )
    enc = load_encoder("magface", checkpoint=f, arch="iresnet18", device="cpu")
    crop = np.asarray(np.random.default_rng(0).integers(0, 256, (112, 112, 3)), np.uint8)
    m = gradient_map(enc, crop, steps=4)
    assert m.map.shape == (112, 112) and np.isfinite(m.map).all()
    assert m.quality == pytest.approx(float(np.linalg.norm(enc.embed(crop[None]))), rel=1e-5)


@pytest.mark.slow
def test_cli_explain(tmp_path):
    out = tmp_path / "m.png"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "qmag_core",
            "explain",
            str(need_shared("deepface", "img2.jpg")),
            "--out",
            str(out),
            "--method",
            "occlusion",
            "--patch",
            "30",
            "--stride",
            "15",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "q=" in r.stdout and out.stat().st_size > 10_000
    raw = np.load(tmp_path / "m.npy")
    assert raw.shape == (150, 150)


def test_occlusion_fill_options(enc, crops):
    a = occlusion_map(enc, crops[0], patch=30, stride=30)
    b = occlusion_map(enc, crops[0], patch=30, stride=30, fill="grey")
    assert a.options["fill"] == "blur" and b.options["fill"] == "grey"
    assert a.quality == b.quality and not np.allclose(a.raw, b.raw)
    # greying out the whole crop in one patch: the map is q − q(grey image) everywhere
    c = occlusion_map(enc, crops[0], patch=150, stride=150, fill="grey")
    q_grey = enc.quality_of(np.full((1, 150, 150, 3), 128.0, np.float32))[0]
    np.testing.assert_allclose(c.raw, c.quality - q_grey, rtol=1e-4)
    with pytest.raises(QMagError, match="fill must be"):
        occlusion_map(enc, crops[0], fill="noise")


def test_maps_report_their_progress_step_by_step(enc, crops):
    """The Quality page's progress bar reads these steps (gradient: integration steps;
    occlusion: patches); the map is the same with or without the callback."""
    seen = []
    m = gradient_map(enc, crops[0], steps=8, batch_size=4, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(4, 8), (8, 8)]
    np.testing.assert_array_equal(m.raw, gradient_map(enc, crops[0], steps=8, batch_size=4).raw)
    seen.clear()
    occlusion_map(enc, crops[0], patch=50, stride=50, batch_size=4, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(4, 9), (8, 9), (9, 9)]
