"""Model-free quality measures beside q: computed while embedding, cached, carried into
score tables as qm_* columns, and given their own EDC in evaluate and on the Quality page."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from qmag_core import io as D
from qmag_core.evaluation.measures import measure_columns
from qmag_core.evaluation.protocol import evaluate_table
from qmag_core.quality.baselines import MEASURES, inter_eye_distance, sharpness
from qmag_core.scores import QMagFaceParams

FACES = ROOT / "sample_data" / "faces" / "deepface"


def test_sharpness_and_ied():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (1, 64, 64, 3)).astype(np.uint8)
    flat = np.full((1, 64, 64, 3), 128, np.uint8)
    assert sharpness(sharp)[0] > 1000 and sharpness(flat)[0] == 0
    lm = np.array([[[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]]], float)
    assert inter_eye_distance(lm)[0] == pytest.approx(40)


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 40), st.integers(3, 40), st.integers(0, 2**32 - 1), st.sampled_from([1, 8, 255]))
def test_sharpness_opencv_equals_the_numpy_definition(h, w, seed, top):
    """The OpenCV path (what embedding uses) against the plain float64 definition: grey =
    channel mean, 4-neighbour Laplacian over interior pixels, its variance."""
    from qmag_core.quality.baselines import _sharpness_numpy

    x = np.random.default_rng(seed).integers(0, top + 1, (3, h, w, 3)).astype(np.uint8)
    g = x.astype(np.float64).mean(axis=3)
    lap = -4 * g[:, 1:-1, 1:-1] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:]
    want = lap.reshape(3, -1).var(axis=1)
    np.testing.assert_allclose(sharpness(x), want, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(_sharpness_numpy(x), want, rtol=1e-12, atol=1e-9)


def test_embed_records_measures_and_cache_keeps_them(tmp_path):
    from qmag_core.encoders import load_encoder
    from qmag_core.pipeline.compare import compare_images
    from qmag_core.pipeline.embed import embed_files

    enc = load_encoder("builtin")
    paths = ["img1.jpg", "img2.jpg", "img3.jpg"]
    a = embed_files(paths, FACES, enc, cache_dir=tmp_path)
    b = embed_files(paths, FACES, enc, cache_dir=tmp_path)  # all from the cache
    assert set(a.measures) == set(MEASURES)
    for name in MEASURES:
        np.testing.assert_array_equal(a.measures[name], b.measures[name])
    assert (a.measures["detector_prob"] > 0.9).all() and (a.measures["ied_px"] > 20).all()
    raw = load_encoder("builtin-raw").embed(
        np.stack([r.aligned.crop for r in compare_images([FACES / p for p in paths], enc).images])
    )
    np.testing.assert_allclose(a.measures["raw_length"], np.linalg.norm(raw, axis=1), rtol=1e-5)
    D.save_embeddings(tmp_path / "e.npz", a)
    c = D.load_embeddings(tmp_path / "e.npz")
    np.testing.assert_array_equal(c.measures["sharpness"], a.measures["sharpness"])


def _table_with_measures(seed=0):
    rng = np.random.default_rng(seed)
    n_g, n_i = 2000, 20000
    q = rng.uniform(10, 30, n_g + n_i)
    s = np.r_[0.3 + 0.02 * q[:n_g] + rng.normal(0, 0.1, n_g), rng.normal(0.1, 0.1, n_i)].clip(-1, 1)
    y = np.r_[np.ones(n_g), np.zeros(n_i)].astype(np.int8)
    extra = {"qm_same_as_q": q.copy(), "qm_noise": rng.uniform(0, 1, n_g + n_i)}
    return D.ScoreTable(s, q, q, y, np.arange(n_g + n_i) % 5, {}, extra)


def test_evaluate_gives_each_measure_an_edc():
    rep, _ = evaluate_table(_table_with_measures(), params=QMagFaceParams(alpha=0.0, beta=0.0), n_boot=10)
    e = rep["edc"]
    assert set(e["baselines"]) == {"same_as_q", "noise"}
    assert e["baselines"]["same_as_q"]["ratio_at_20"] == pytest.approx(e["ratio_at_20"])
    assert e["ratio_at_20"] < 0.8 < e["baselines"]["noise"]["ratio_at_20"] < 1.25  # q predicts errors, noise not


@pytest.mark.slow
def test_user_quality_column_in_a_scores_csv(tmp_path):
    t = _table_with_measures()
    f = tmp_path / "s.csv"
    t.extra = {"qm_ofiq": t.q1.round(3), "comment": np.array(["x"] * len(t))}
    D.write_scores_csv(f, t)
    js = tmp_path / "r.json"
    r = subprocess.run(
        [sys.executable, "-m", "qmag_core", "evaluate", "--scores", str(f), "--json", str(js), "--n-boot", "10"],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())
    assert set(rep["edc"]["baselines"]) == {"ofiq"}
    assert "ofiq" in r.stdout and "EDC" in r.stdout
    assert measure_columns({"qm_a": np.array(["1", "2"]), "qm_b": np.array(["x", "y"])}).keys() == {"a"}


@pytest.mark.slow
def test_pages_show_failures_and_baselines(tmp_path, monkeypatch):
    import shutil

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("QMAG_DATA_ROOT", str(tmp_path))
    d = tmp_path / "imgs"
    d.mkdir()
    for k in range(1, 8):
        shutil.copy(FACES / f"img{k}.jpg", d / f"img{k}.jpg")
    (d / "broken.jpg").write_bytes(b"truncated upload")
    # img1/2/4/5/6/7 show one person, img3 another (deepface's own labels)
    rows = [
        "img1.jpg,img2.jpg,1",
        "img4.jpg,img5.jpg,1",
        "img6.jpg,img7.jpg,1",
        "img1.jpg,img4.jpg,1",
        "img1.jpg,img3.jpg,0",
        "img2.jpg,img3.jpg,0",
        "img3.jpg,img5.jpg,0",
        "img3.jpg,broken.jpg,0",
        "img2.jpg,broken.jpg,1",
    ]
    (tmp_path / "pairs.csv").write_text("path1,path2,label\n" + "\n".join(rows) + "\n")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    at.switch_page("views/dataset.py").run()
    at.text_input(key="srv_folder").set_value("imgs").run()
    at.text_input(key="srv_pairs").set_value("pairs.csv").run()
    at.button(key="load_srv").click().run()
    assert not at.exception and at.selectbox(key="w_dataset_id").value == "imgs"
    assert any("Failure to acquire: 2 of 9 pairs" in c.value for c in at.caption)
    scores = at.dataframe[0].value["scores"].tolist()
    assert scores == ["cosine s", "QMagFace ŝ", "cosine s, failures counted", "QMagFace ŝ, failures counted"]
    at.switch_page("views/quality.py").run()
    assert not at.exception
    table = next(df.value for df in at.dataframe if "quality measure" in df.value.columns)
    assert table["quality measure"].tolist() == ["q (this encoder)", *MEASURES]
