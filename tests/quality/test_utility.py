"""Utility quality heads (qmag_core.quality.utility): ridge fit, head file, encoder, samples, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from qmag_core.errors import QMagError
from qmag_core.quality.head import Q_SCALE, UtilityHead, load_quality_head, q_from_utility, save_quality_head
from qmag_core.quality.utility import fit_utility_head, split_by_identity, utility_samples

ROOT = Path(__file__).resolve().parents[2]


def _linear(seed, n=400, f=12):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)) * rng.uniform(0.5, 5, f) + rng.normal(size=f)
    w = np.r_[1.0, -0.5, np.zeros(f - 2)] / 10
    return X, 0.8 + X @ w + rng.normal(0, 0.02, n)


def test_ridge_recovers_a_linear_utility_and_is_deterministic():
    X, y = _linear(0)
    Xv, yv = _linear(1, 200)
    a = fit_utility_head(X, y, Xv, yv)
    b = fit_utility_head(X, y, Xv, yv)
    assert all(torch.equal(a.head.state_dict()[k], b.head.state_dict()[k]) for k in a.head.state_dict())
    assert a.val_spearman[a.lam] == max(a.val_spearman.values()) > 0.95
    Xt, yt = _linear(2, 300)
    with torch.no_grad():
        u = a.head.utility(torch.from_numpy(Xt).double()).numpy()
    assert np.corrcoef(u, yt)[0, 1] > 0.97
    assert abs(np.mean(u - yt)) < 0.02  # intercept learnt, not just the ranking


def test_head_q_is_positive_monotone_and_about_100_times_utility():
    u = np.linspace(-1, 1.2, 50)
    q = q_from_utility(u)
    assert (q > 0).all() and (np.diff(q) > 0).all()
    np.testing.assert_allclose(q[u >= 0.3], Q_SCALE * u[u >= 0.3], rtol=1e-3)
    head = UtilityHead(1)
    head.scale.fill_(1.0)
    head.weight.fill_(1.0)  # noqa: E702
    with torch.no_grad():
        np.testing.assert_allclose(head(torch.from_numpy(u)[:, None].double()).numpy().ravel(), q, rtol=1e-5, atol=1e-9)


def test_bad_inputs_are_named():
    X, y = _linear(0, 40)
    with pytest.raises(QMagError, match="same F"):
        fit_utility_head(X, y, X[:, :3], y)
    with pytest.raises(QMagError, match="differ in length"):
        fit_utility_head(X, y[:-1], X, y)
    with pytest.raises(QMagError, match="too few"):
        fit_utility_head(X[:5], y[:5], X, y)
    X[3, 2] = np.nan
    with pytest.raises(QMagError, match="NaN"):
        fit_utility_head(X, y, X, y)
    with pytest.raises(QMagError, match="family"):
        utility_samples(None, [], family="video")
    with pytest.raises(QMagError, match="crop level"):
        utility_samples(None, [], family="capture", aligned=True)


def test_split_by_identity_is_seeded_and_disjoint():
    paths = [f"id{k}/img{j}.jpg" for k in range(10) for j in range(3)] + ["loose.jpg"]
    a, b = split_by_identity(paths, 0.3, seed=4)
    assert (a, b) == split_by_identity(paths, 0.3, seed=4)
    assert {p.split("/")[0] for p in a}.isdisjoint({p.split("/")[0] for p in b})
    assert len({p.split("/")[0] for p in b}) == 3 and len(a) + len(b) == 30
    assert split_by_identity(paths, 0.3, seed=5) != (a, b)
    with pytest.raises(QMagError, match="two or more identity"):
        split_by_identity(["a/1.jpg", "a/2.jpg"])


def test_head_file_round_trip_and_encoder_keeps_directions(tmp_path):
    from qmag_core.encoders import load_encoder

    X, y = _linear(0, 400, 768)
    fit = fit_utility_head(X, y, *_linear(1, 100, 768))
    f = tmp_path / "u.pt"
    save_quality_head(fit.head, f, {"kind": "utility", "lambda": fit.lam})
    head, meta = load_quality_head(f)
    assert isinstance(head, UtilityHead) and meta["lambda"] == fit.lam
    assert all(torch.equal(head.state_dict()[k], fit.head.state_dict()[k]) for k in head.state_dict())
    crops = np.load(ROOT / "tests" / "fixtures" / "faceapi_reference.npz")["inputs"]
    raw, enc = load_encoder("builtin-raw", device="cpu"), load_encoder("builtin", head=f, device="cpu")
    e, r = enc.embed(crops), raw.embed(crops)
    np.testing.assert_allclose(
        e / np.linalg.norm(e, axis=1, keepdims=True), r / np.linalg.norm(r, axis=1, keepdims=True), atol=1e-6
    )
    with torch.inference_mode():
        feats = raw.net.quality_features(raw.tensor(crops)).float()
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), head(feats).numpy().ravel(), rtol=1e-4)
    from qmag_core.quality.head import head_quality

    np.testing.assert_allclose(head_quality(head, feats.numpy()), np.linalg.norm(e, axis=1), rtol=1e-4)
    # an unknown head kind is a bad file, named
    d = torch.load(f, weights_only=True)
    d["head_kind"] = torch.tensor(list(b"vit"), dtype=torch.uint8)
    torch.save(d, f)
    with pytest.raises(QMagError, match="not a quality-head file.*unknown head kind"):
        load_quality_head(f)


@pytest.mark.slow
def test_samples_from_real_photos_both_families():
    """Uncropped LFW photos (several faces in some): clean samples have target 1,
    degraded ones lower, stronger degradations lower still; faces lost to a capture
    degradation are counted, not sampled."""
    from conftest import need_shared
    from scipy.stats import spearmanr

    from qmag_core.encoders import load_encoder

    photos = need_shared("lfw_photos", "images")
    paths = sorted(str(p) for p in photos.glob("*/*.jpg"))[::150][:12]
    enc = load_encoder("builtin-raw", device="cpu")
    d = utility_samples(enc, paths, family="both", n_degraded=3, seed=0)
    again = utility_samples(enc, paths[:3], family="both", n_degraded=3, seed=0)
    n3 = len(again["target"])
    np.testing.assert_array_equal(
        d["family"][:n3] if len(d["failed"]) == len(again["failed"]) == 0 else again["family"], again["family"]
    )
    clean = d["family"] == "clean"
    assert clean.sum() == len(paths) - len(d["failed"])
    assert (d["target"][clean] == 1).all()
    assert (d["family"] == "crop").sum() == 3 * clean.sum()
    assert (d["family"] == "capture").sum() + d["lost"] == 3 * clean.sum()
    deg = ~clean
    assert d["target"][deg].mean() < 0.97 and d["features"].shape == (len(d["target"]), 768)
    assert spearmanr(d["target"][deg], -d["severity"][deg])[0] > 0.3


@pytest.mark.slow
def test_cli_train_quality(tmp_path):
    """Four pseudo-identities of the sample photos, crop family: a head file that
    `compare --head` uses; a flat folder is refused with a message."""
    src = sorted((ROOT / "sample_data" / "faces" / "deepface").glob("img[0-9]*.jpg"))[:16]
    data = tmp_path / "ids"
    for k, f in enumerate(src):
        (data / f"p{k % 4}").mkdir(parents=True, exist_ok=True)
        (data / f"p{k % 4}" / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "u.pt"
    cmd = [
        sys.executable,
        "-m",
        "qmag_core",
        "train-quality",
        "--data",
        str(data),
        "--out",
        str(out),
        "--family",
        "crop",
        "--degraded",
        "2",
        "--device",
        "cpu",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "3 + 1 identities" in r.stdout and "crop family" in r.stdout
    head, meta = load_quality_head(out)
    assert isinstance(head, UtilityHead) and meta["identities"] == {"fit": 3, "validation": 1}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "qmag_core",
            "compare",
            str(src[0]),
            str(src[1]),
            "--encoder",
            "builtin",
            "--head",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    import json

    q = [im["quality"] for im in json.loads(r.stdout)["images"]]
    assert all(0 < v < 130 for v in q)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.jpg").write_bytes(src[0].read_bytes())
    r = subprocess.run(cmd[:5] + [str(flat)] + cmd[6:], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "two or more identity sub-folders" in r.stderr and "Traceback" not in r.stderr


def test_cli_train_quality_refuses_a_symlink_out_of_the_folder(tmp_path):
    """A folder scan follows no link out of --data: nothing is read, one line names it."""
    src = sorted((ROOT / "sample_data" / "faces" / "deepface").glob("img[0-9]*.jpg"))[:4]
    data = tmp_path / "ids"
    for k, f in enumerate(src):
        (data / f"p{k % 2}").mkdir(parents=True, exist_ok=True)
        (data / f"p{k % 2}" / f.name).write_bytes(f.read_bytes())
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(src[0].read_bytes())
    (data / "p0" / "link.jpg").symlink_to(outside)
    r = subprocess.run(
        [sys.executable, "-m", "qmag_core", "train-quality", "--data", str(data), "--out", str(tmp_path / "u.pt")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2 and "p0/link.jpg" in r.stderr and "lies outside the image folder" in r.stderr
    assert "nothing is read" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "u.pt").exists()
