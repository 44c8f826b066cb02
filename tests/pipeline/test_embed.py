import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import need_shared

from qmag_core.encoders import load_encoder
from qmag_core.evaluation import metrics as M
from qmag_core.evaluation.pairing import scores_from_embeddings
from qmag_core.io.embeddings import load_embeddings
from qmag_core.io.pairs import read_lfw_pairs
from qmag_core.pipeline.compare import compare_images
from qmag_core.pipeline.embed import EmbeddingCache, EmbedStats, embed_files
from qmag_core.scores.params import QMagFaceParams
from qmag_core.vision.images import list_images


@pytest.fixture(scope="module")
def enc():
    return load_encoder("builtin", device="cpu")


@pytest.fixture
def mixed_folder(tmp_path):
    src = need_shared("deepface")
    d = tmp_path / "imgs"
    (d / "a").mkdir(parents=True)
    (d / "b").mkdir()
    for k in (1, 2):
        shutil.copy(src / f"img{k}.jpg", d / "a" / f"{k}.jpg")
    shutil.copy(need_shared("magface_toy", "toy_imgs", "3.jpg"), d / "b" / "3.jpg")
    (d / "b" / "broken.jpg").write_bytes(b"not really a jpeg")
    (d / "b" / "empty.png").write_bytes(b"")
    from PIL import Image

    Image.new("RGB", (200, 200), (120, 120, 120)).save(d / "b" / "wall.png")
    return d


@pytest.mark.slow
def test_embed_keeps_failures_as_rows_and_resumes(mixed_folder, enc, tmp_path):
    paths = list_images(mixed_folder)
    assert paths == ["a/1.jpg", "a/2.jpg", "b/3.jpg", "b/broken.jpg", "b/empty.png", "b/wall.png"]
    cache = tmp_path / "cache"
    st = EmbedStats()
    e = embed_files(paths, mixed_folder, enc, cache_dir=cache, stats=st, batch_size=4)
    assert e.ok.tolist() == [True, True, True, False, False, False]
    assert "not an image" in e.error[3] and "empty" in e.error[4] and "no face detected" in e.error[5]
    assert np.isnan(e.embeddings[3:]).all() and np.isnan(e.quality[3:]).all()
    np.testing.assert_allclose(e.quality[:3], np.linalg.norm(e.embeddings[:3], axis=1), rtol=1e-6)
    assert st.n_embedded == 3 and st.n_failed == 3 and e.encoder == "builtin"
    # a re-run only embeds new files

    shutil.copy(need_shared("deepface", "img3.jpg"), mixed_folder / "a" / "new.jpg")
    st2 = EmbedStats()
    e2 = embed_files(list_images(mixed_folder), mixed_folder, enc, cache_dir=cache, stats=st2, batch_size=4)
    assert st2.n_embedded == 1 and st2.n_cached == 6  # failures are cached by content too
    k = list(e2.paths).index("a/1.jpg")
    np.testing.assert_array_equal(e2.embeddings[k], e.embeddings[0])
    # a damaged cache chunk is ignored, not fatal
    chunk = sorted((cache).rglob("chunk-*.npz"))[0]
    chunk.write_bytes(b"garbage")
    st3 = EmbedStats()
    e3 = embed_files(paths, mixed_folder, enc, cache_dir=cache, stats=st3, batch_size=4)
    assert st3.n_cached < 6 and e3.ok.tolist() == e.ok.tolist()
    np.testing.assert_allclose(e3.embeddings[:3], e.embeddings[:3], rtol=1e-5)


def test_cache_is_keyed_by_content(tmp_path):
    c = EmbeddingCache(tmp_path, "k")
    c.add(["aa", "bb"], np.ones((2, 3), np.float32), [True, False], ["", "no face"])
    c2 = EmbeddingCache(tmp_path, "k")
    assert "aa" in c2 and "bb" in c2 and c2.get("bb")[1:3] == (False, "no face")
    assert "aa" not in EmbeddingCache(tmp_path, "other-encoder")


@pytest.mark.slow
def test_cli_embed_and_npz(mixed_folder, tmp_path):
    out = tmp_path / "f.npz"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "qmag_core",
            "embed",
            "--images",
            str(mixed_folder),
            "--out",
            str(out),
            "--encoder",
            "builtin-raw",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "3 failed" in r.stderr and "no face detected" in r.stderr
    e = load_embeddings(out)
    assert e.encoder == "builtin-raw" and e.ok.sum() == 3 and e.embeddings.shape == (6, 128)
    # which weights + head made q travels on, and the runtime that ran them (the CLI's auto: the shipped graph)
    assert e.encoder_key == load_encoder("builtin-raw", runtime="fast").key
    with np.load(out, allow_pickle=False) as z:
        assert z["paths"].dtype.kind == "U"


def test_compare_reports_each_file(enc, mixed_folder):
    files = [
        mixed_folder / "a" / "1.jpg",
        mixed_folder / "a" / "2.jpg",
        mixed_folder / "b" / "wall.png",
        mixed_folder / "b" / "broken.jpg",
    ]
    params = QMagFaceParams.shipped("builtin")
    res = compare_images([str(f) for f in files], enc, names=[f.name for f in files], params=params, fmr=1e-3)
    assert [r.ok for r in res.images] == [True, True, False, False]
    assert "wall.png: no face detected" in res.images[2].error and "broken.jpg" in res.images[3].error
    assert len(res.pairs) == 1
    p = res.pairs[0]
    e1, e2 = res.images[0].embedding.astype(float), res.images[1].embedding.astype(float)
    assert p.s == pytest.approx(e1 @ e2 / np.linalg.norm(e1) / np.linalg.norm(e2))
    assert p.s_hat == pytest.approx(
        p.s + min(0, params.beta * p.s - params.alpha) * min(res.images[0].quality, res.images[1].quality)
    )
    fmr_used, ts, th = params.threshold_at(1e-3)
    assert res.threshold_s_hat == th and p.accept_s_hat == (p.s_hat >= th)
    m = res.matrix("s_hat")
    assert m[0, 1] == p.s_hat and np.isnan(m[2]).all()


@pytest.mark.slow
def test_cli_compare_json(tmp_path, mixed_folder):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "qmag_core",
            "compare",
            str(mixed_folder / "a" / "1.jpg"),
            str(mixed_folder / "a" / "2.jpg"),
            "--json",
            "--fmr",
            "0.001",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["encoder"] == "builtin" and len(d["pairs"]) == 1 and d["threshold_s_hat"] is not None
    assert d["pairs"][0]["accept_s_hat"] is True  # two photos of one person


def test_shipped_params_for_builtin():
    p = QMagFaceParams.shipped("builtin")
    assert p is not None and p.encoder == "builtin" and p.mode == "consistent"
    assert p.operating_points and all(0 < d["fmr"] <= 0.1 for d in p.operating_points)
    # trained on persons of LFW dev folds 1-4 only: folds 5-7 are the benches' test
    assert "folds 1-4" in p.trained_on["data"] and "never folds 5-7" in p.trained_on["data"]
    assert p.threshold_at(1e-7) == (None, None, None)
    # the q these α/β were trained on is the shipped head's, and the shipped encoder gives it
    assert p.encoder_key == load_encoder("builtin", device="cpu").key and p.quality_mismatch(p.encoder_key) is None
    raw = QMagFaceParams.shipped("builtin-raw")
    assert raw.encoder_key == load_encoder("builtin-raw", device="cpu").key


@pytest.mark.slow
def test_lfw_slice_end_to_end_accuracy(enc):
    """Fold 1 of LFW-dev (600 pairs) through MTCNN + builtin: accuracy on a real slice."""
    root = need_shared("lfw")
    pairs = read_lfw_pairs(root / "pairs_dev.txt")
    m = pairs.fold == 0
    from qmag_core.io.pairs import Pairs

    sub = Pairs(pairs.path1[m], pairs.path2[m], pairs.label[m], pairs.fold[m], pairs.line[m], pairs.source)
    paths = sorted(set(sub.path1.tolist()) | set(sub.path2.tolist()))
    emb = embed_files(paths, root / "images", enc, cache_dir=None)
    t, rep = scores_from_embeddings(emb, sub)
    assert rep["n_scored"] == 600
    acc = np.mean((t.s >= M.best_threshold(t.s, t.label.astype(bool))) == t.label)
    assert acc >= 0.975  # in-sample threshold on one fold; 7-fold CV over all folds: 98.50 %
    g, i = M.split_scores(t.s, t.label)
    assert M.auc(g, i) > 0.995
