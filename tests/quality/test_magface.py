import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from qmag_core.errors import QMagError
from qmag_core.quality.head import load_quality_head, save_quality_head
from qmag_core.quality.magface import (
    MagFaceConfig,
    MagFaceLoss,
    magnitude_margin,
    magnitude_regulariser,
    train_quality_head,
)

CFG = MagFaceConfig()


def test_margin_by_hand():
    a = torch.tensor([5.0, 10.0, 60.0, 110.0, 200.0])
    m = magnitude_margin(a)
    # (0.8 - 0.45) / 100 * (clip(a) - 10) + 0.45
    np.testing.assert_allclose(m.numpy(), [0.45, 0.45, 0.625, 0.8, 0.8], atol=1e-6)


def test_regulariser_by_hand_and_minimum_at_u_a():
    a = torch.tensor([10.0, 110.0])
    np.testing.assert_allclose(magnitude_regulariser(a).numpy(), [0.1 + 10 / 110**2, 1 / 110 + 1 / 110], rtol=1e-6)
    grid = torch.linspace(CFG.l_a, CFG.u_a, 10001)
    g = magnitude_regulariser(grid)
    assert float(grid[torch.argmin(g)]) == pytest.approx(CFG.u_a, abs=0.02)
    assert torch.all(g[1:] <= g[:-1])  # decreasing on [l_a, u_a]


def test_loss_target_logit_uses_margin():
    loss = MagFaceLoss(2, 2, CFG)
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    th = 1.2  # hard example: a large loss, not float32 noise
    e = 50.0 * torch.tensor([[np.cos(th), np.sin(th)]], dtype=torch.float32)
    total, parts = loss(e, torch.tensor([0]))
    m = float(magnitude_margin(torch.tensor([50.0])))
    logits = torch.tensor([[np.cos(th + m), np.cos(np.pi / 2 - th)]]) * CFG.scale
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([0]))
    assert parts["ce"] == pytest.approx(float(ce), rel=1e-4)
    assert float(total) == pytest.approx(
        float(ce) + CFG.lambda_g * float(magnitude_regulariser(torch.tensor(50.0))), rel=1e-4
    )


def _toy(seed=0, n_cls=8, per=40, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_cls, dim))
    feats, labels, sev = [], [], []
    for c in range(n_cls):
        s = rng.uniform(0, 1, per)  # severity: shrinks the identity signal
        f = centres[c] * (1 - 0.8 * s)[:, None] + rng.normal(0, 0.3, (per, dim))
        feats.append(f)
        labels.append(np.full(per, c))
        sev.append(s)  # noqa: E702
    return np.concatenate(feats).astype(np.float32), np.concatenate(labels), np.concatenate(sev)


def test_training_decreases_loss_and_length_tracks_quality():
    x, y, sev = _toy()
    head, hist = train_quality_head(x, y, epochs=40, batch_size=64, lr=0.05, dim=32, seed=0)
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    with torch.no_grad():
        q = head(torch.from_numpy(x)).norm(dim=1).numpy()
    from scipy.stats import spearmanr

    assert spearmanr(q, -sev).correlation > 0.3  # degraded samples get shorter embeddings


def test_same_seed_same_weights_and_resume(tmp_path):
    x, y, _ = _toy(1)
    h1, _ = train_quality_head(x, y, epochs=6, batch_size=64, dim=16, seed=3)
    h2, _ = train_quality_head(x, y, epochs=6, batch_size=64, dim=16, seed=3)
    h3, _ = train_quality_head(x, y, epochs=6, batch_size=64, dim=16, seed=4)
    for k in h1.state_dict():
        assert torch.equal(h1.state_dict()[k], h2.state_dict()[k])
    assert not torch.equal(h1.fc.weight, h3.fc.weight)
    ck = tmp_path / "ck.pt"

    def stop(ep, n, rec):
        if ep == 3:
            raise KeyboardInterrupt  # the run is killed after epoch 3 (checkpoint already written)

    with pytest.raises(KeyboardInterrupt):
        train_quality_head(x, y, epochs=6, batch_size=64, dim=16, seed=3, checkpoint=ck, progress=stop)
    h4, hist = train_quality_head(
        x, y, epochs=6, batch_size=64, dim=16, seed=3, checkpoint=ck, log=tmp_path / "log.json"
    )
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4, 5, 6]
    for k in h1.state_dict():
        assert torch.allclose(h1.state_dict()[k], h4.state_dict()[k], atol=1e-6)
    f = tmp_path / "head.pt"
    save_quality_head(h1, f, {"seed": 3})
    back, meta = load_quality_head(f)
    assert meta == {"seed": 3} and torch.equal(back.fc.weight, h1.fc.weight)


def test_needs_two_identities():
    with pytest.raises(QMagError, match="at least 2 identities"):
        train_quality_head(np.ones((4, 3), np.float32), np.zeros(4), epochs=1)


def test_degradations_seeded_and_monotone():
    from conftest import need_shared
    from PIL import Image

    from qmag_core.quality.degrade import KINDS, degrade, random_degradations

    x = np.asarray(Image.open(need_shared("magface_toy", "toy_imgs", "5.jpg")).convert("RGB").resize((150, 150)))
    for k in KINDS:
        a = degrade(x, k, 0.7, np.random.default_rng(1))
        b = degrade(x, k, 0.7, np.random.default_rng(1))
        assert a.shape == x.shape and a.dtype == np.uint8 and np.array_equal(a, b)
        d_lo = np.abs(degrade(x, k, 0.2, np.random.default_rng(2)).astype(float) - x).mean()
        d_hi = np.abs(degrade(x, k, 1.0, np.random.default_rng(2)).astype(float) - x).mean()
        assert d_hi > d_lo, k  # stronger severity changes the image more
    out = random_degradations(x, 5, np.random.default_rng(0))
    assert len(out) == 5 and all(0.1 <= s <= 1 and k in KINDS for _, k, s in out)
    with pytest.raises(QMagError, match="unknown degradation"):
        degrade(x, "rain", 0.5, np.random.default_rng(0))


@pytest.mark.slow
def test_magface_loss_trains_an_iresnet():
    """The loss also drives full backbone training (CPU smoke test; GPU runs the same code)."""
    from qmag_core.encoders.iresnet import build_iresnet

    torch.manual_seed(0)
    net = build_iresnet("iresnet18", dropout=0.0)
    loss_fn = MagFaceLoss(3, 512, CFG)
    opt = torch.optim.SGD(list(net.parameters()) + list(loss_fn.parameters()), lr=0.05, momentum=0.9)
    x = torch.rand(6, 3, 112, 112)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    losses = []
    for _ in range(4):
        loss, _ = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


@pytest.mark.slow
def test_cli_train_magface(tmp_path):
    import subprocess
    import sys

    from conftest import need_shared

    glint = need_shared("glint24")
    data = tmp_path / "ids"
    for name in sorted(p.name for p in glint.iterdir())[:4]:
        (data / name).mkdir(parents=True)
        for f in sorted((glint / name).glob("*.jpg"))[:6]:
            (data / name / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "head.pt"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "qmag_core",
            "train-magface",
            "--data",
            str(data),
            "--out",
            str(out),
            "--aligned",
            "--epochs",
            "3",
            "--degraded",
            "1",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "4 identities, 48 samples" in r.stdout
    head, meta = load_quality_head(out)
    assert meta["n_identities"] == 4 and meta["epochs"] == 3
    assert meta["direction"] == "fixed" and meta["magface"]["u_a"] == 110.0
    import json

    log = json.loads((tmp_path / "head.pt.log.json").read_text())
    assert [h["epoch"] for h in log["history"]] == [1, 2, 3]


def test_backbone_feature_kinds():
    from pathlib import Path

    from qmag_core.encoders import load_encoder
    from qmag_core.quality.head import backbone_features

    enc = load_encoder("builtin-raw", device="cpu")
    crops = np.load(Path(__file__).parents[1] / "fixtures" / "faceapi_reference.npz")["inputs"]
    pooled = backbone_features(enc, crops)
    multi = backbone_features(enc, crops, kind="multi")
    assert pooled.shape == (5, 256) and multi.shape == (5, 768)
    np.testing.assert_allclose(multi[:, -256:], pooled, atol=1e-5)  # the pooled layer is included
    assert (multi[:, 32:64] >= 0).all()  # per-stage standard deviations
    # the descriptor itself is fc(pooled): the head never changes the identity direction
    with torch.inference_mode():
        d = enc.net.fc(torch.from_numpy(pooled)).numpy()
    np.testing.assert_allclose(d, enc.embed(crops), atol=1e-4)


def test_direction_fixed_training_learns_only_the_length():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 16)).astype(np.float32)
    Y = rng.integers(0, 4, 200)
    D = rng.normal(size=(200, 8)).astype(np.float32)
    h1, _ = train_quality_head(X, Y, directions=D, epochs=2, seed=3)
    h2, _ = train_quality_head(X, Y, directions=D, epochs=2, seed=3)
    for a, b in zip(h1.state_dict().values(), h2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(QMagError, match="directions has 10 rows"):
        train_quality_head(X, Y, directions=D[:10], epochs=1)


@pytest.mark.slow
def test_fixed_direction_length_learns_how_well_the_direction_fits_its_class():
    # toy: the direction drifts from its class centre by noise of strength t, and the
    # head sees t among distractors; only a length trained against the fixed directions
    # can learn "large t = poor fit = low q"; the head's own embedding can ignore it
    rng = np.random.default_rng(0)
    n, C = 1200, 10
    centres = rng.normal(size=(C, 16))
    Y = rng.integers(0, C, n)
    t = rng.uniform(0, 1, n)
    D = (centres[Y] + 3.0 * t[:, None] * rng.normal(size=(n, 16))).astype(np.float32)
    X = np.c_[t, rng.normal(size=(n, 7))].astype(np.float32)
    rho = {}
    for name, dirs in (("fixed", D), ("free", None)):
        head, _ = train_quality_head(X, Y, directions=dirs, epochs=40, batch_size=64, lr=0.2, dim=128, seed=0)
        with torch.inference_mode():
            q = head(torch.from_numpy(X)).norm(dim=1).numpy()
        rho[name] = spearmanr(q, -t).correlation
    assert rho["fixed"] > 0.7 and rho["fixed"] > rho["free"] + 0.4, rho


def test_small_heads_start_inside_the_magnitude_range():
    # with dim 8 the default init gives lengths ≈ 4 < l_a = 10, where the clipped MagFace
    # loss has no gradient on the length: training must start them inside [l_a, u_a]
    rng = np.random.default_rng(1)
    X = rng.normal(size=(256, 6)).astype(np.float32)
    Y = rng.integers(0, 4, 256)
    head, hist = train_quality_head(X, Y, epochs=3, batch_size=64, dim=8, seed=0)
    assert hist[0]["mean_a"] > MagFaceConfig().l_a + 1


def test_backbone_directions_are_the_encoder_descriptors():
    from pathlib import Path

    from qmag_core.encoders import load_encoder
    from qmag_core.quality.head import backbone_directions, backbone_features

    enc = load_encoder("builtin-raw", device="cpu")
    crops = np.load(Path(__file__).parents[1] / "fixtures" / "faceapi_reference.npz")["inputs"]
    for kind in ("pooled", "multi"):
        np.testing.assert_allclose(
            backbone_directions(enc, backbone_features(enc, crops, kind=kind)), enc.embed(crops), atol=1e-4
        )
    with pytest.raises(QMagError, match=r"features must be \(N, >= 256\)"):
        backbone_directions(enc, np.zeros((3, 100), np.float32))


def test_quality_model_keeps_backbone_direction_and_uses_head_length():
    from pathlib import Path

    from qmag_core.encoders import load_encoder
    from qmag_core.quality.head import QualityHead, QualityModel

    raw = load_encoder("builtin-raw", device="cpu")
    head = QualityHead(768, 16).reset(torch.Generator().manual_seed(0)).eval()
    model = QualityModel(raw.net, head, "multi").eval()
    crops = np.load(Path(__file__).parents[1] / "fixtures" / "faceapi_reference.npz")["inputs"]
    x = raw.tensor(crops)
    with torch.inference_mode():
        e = model(x)
        d = raw.net(x)
        q = head(raw.net.quality_features(x)).norm(dim=1)
    np.testing.assert_allclose(
        torch.nn.functional.normalize(e, dim=1).numpy(), torch.nn.functional.normalize(d, dim=1).numpy(), atol=1e-6
    )
    np.testing.assert_allclose(e.norm(dim=1).numpy(), q.numpy(), rtol=1e-5)
    with pytest.raises(QMagError, match="feature_kind"):
        QualityModel(raw.net, head, "pixels")


def test_bad_quality_head_files(tmp_path):
    from qmag_core.encoders import load_encoder

    bad = tmp_path / "head.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(QMagError, match="not a quality-head file"):
        load_encoder("builtin", head=bad, device="cpu")
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(QMagError, match="not a quality-head file"):
        load_encoder("builtin", head=bad, device="cpu")
    with pytest.raises(QMagError, match="missing"):
        load_encoder("builtin", head=tmp_path / "nope.pt", device="cpu")


@pytest.mark.slow
def test_shipped_head_quality_tracks_degradation_on_unseen_faces():
    """The shipped head on LFW dev folds 5–7 crops (identities it never saw): q falls
    with severity for blur, noise and occlusion on a small seeded slice."""
    from conftest import need_shared
    from scipy.stats import spearmanr

    from qmag_core.encoders import BUILTIN_HEAD, load_encoder
    from qmag_core.io.pairs import read_lfw_pairs
    from qmag_core.quality.degrade import degrade
    from qmag_core.quality.head import load_quality_head
    from qmag_core.vision.align import FaceDetector, detect_and_align

    lfw = need_shared("lfw")
    _, meta = load_quality_head(BUILTIN_HEAD)
    assert meta["kind"] == "utility" and meta["family"] == "both"
    assert "folds 1-3 fit, fold 4" in meta["data"]  # never the folds this test reads
    enc = load_encoder("builtin", device="cpu")
    pairs = read_lfw_pairs(lfw / "pairs_dev.txt")
    paths = sorted(set(pairs.path1[pairs.fold >= 4]))[::40][:24]
    det = FaceDetector()
    crops = [detect_and_align(str(lfw / "images" / p), det, enc.spec).crop for p in paths]
    rng = np.random.default_rng(0)
    for kind in ("blur", "noise", "occlusion"):
        imgs, sev = [], []
        for c in crops:
            for s in (0.0, 0.5, 1.0):
                imgs.append(degrade(c, kind, s, rng) if s else c)
                sev.append(s)
        q = np.linalg.norm(enc.embed(np.stack(imgs)), axis=1)
        assert spearmanr(q, -np.asarray(sev)).correlation > 0.4, kind
        # within each face, the strongest degradation costs quality
        assert np.mean(q[2::3] < q[0::3]) >= 0.9, kind
