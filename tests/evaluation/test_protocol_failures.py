"""Failures counted (ISO/IEC 19795-1 style): pairs with an image that cannot be embedded
are reported (FTA) and counted by the generalized metrics — a failed genuine pair is a
false non-match, a failed imposter pair a correct non-match — and an EDC discards
them first."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from qmag_core.evaluation import metrics as M
from qmag_core.evaluation.protocol import evaluate_table
from qmag_core.io.scores import FailedPairs, ScoreTable

FACES = ROOT / "sample_data" / "faces" / "deepface"


def _table(n_g=400, n_i=4000, fail_g=40, fail_i=100, seed=0):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(0.7, 0.1, n_g), rng.normal(0.1, 0.1, n_i)].clip(-1, 1)
    y = np.r_[np.ones(n_g), np.zeros(n_i)].astype(np.int8)
    q = rng.uniform(10, 30, (n_g + n_i, 2))
    fold = np.arange(n_g + n_i) % 4
    failed = FailedPairs(
        np.r_[np.ones(fail_g), np.zeros(fail_i)].astype(np.int8),
        np.arange(fail_g + fail_i) % 4,
        np.zeros(fail_g + fail_i, np.int64),
    )
    return ScoreTable(s, q[:, 0], q[:, 1], y, fold, {}, {}, "", failed)


def test_generalized_rates_follow_the_definition():
    t = _table()
    y = t.label.astype(bool)
    s_all, y_all, _ = M.with_failures(t.s, y, t.failed.label)
    curve = M.roc(s_all[y_all], s_all[~y_all])
    for thr in (0.3, 0.45, 0.6):
        fn = (t.s[y] < thr).sum() + 40  # every failed genuine pair is a false non-match
        fm = (t.s[~y] >= thr).sum()  # a failed imposter pair never matches
        k = np.searchsorted(-curve.thresholds, -thr, side="right") - 1  # last point with threshold >= thr
        assert curve.thresholds[k] >= thr
        assert curve.fnmr[k] <= fn / 440 + 1e-12 and curve.fmr[k] == pytest.approx(fm / 4100, abs=1 / 4100)


def test_evaluate_report_has_generalized_blocks_and_edc_discards_failures_first():
    from qmag_core.scores import QMagFaceParams

    t = _table()
    rep, _ = evaluate_table(t, params=QMagFaceParams(alpha=0.05, beta=0.08), n_boot=20)
    b, g = rep["baseline"], rep["baseline"]["generalized"]
    assert set(g) >= {"eer", "fnmr_at_fmr", "accuracy", "auc", "ci95"} and g["dprime"] is None
    assert g["eer"] > b["eer"]  # failures only add errors
    gen_fnmr = g["fnmr_at_fmr"]["0.01"]
    assert gen_fnmr >= 40 / 440  # at least the failed genuine pairs
    assert rep["qmagface"]["generalized"]["eer"] is not None
    e = rep["edc"]
    assert e["n_failed"] == 140
    # 140 of 4,540 pairs failed (3.1%): at no discard the 40 failed genuine pairs are false
    # non-matches (FNMR >= 40/440); a 5% discard removes every failed pair first
    assert e["discard"][1] == 0.05 and e["fnmr"][0] >= 40 / 440
    assert e["fnmr"][1] < 0.02


@pytest.mark.slow
def test_cli_counts_pairs_whose_images_fail(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for k in (1, 2, 3, 4, 5, 6):
        (d / f"img{k}.jpg").write_bytes((FACES / f"img{k}.jpg").read_bytes())
    (d / "broken.jpg").write_bytes(b"not an image")
    Image.new("RGB", (200, 200), (128, 128, 128)).save(d / "wall.png")
    pairs = tmp_path / "pairs.csv"
    # img1/2/4/5/6/7 are one person in deepface's set; img3 another
    pairs.write_text(
        "path1,path2,label,fold\n"
        "img1.jpg,img2.jpg,1,0\nimg1.jpg,img3.jpg,0,0\nimg4.jpg,broken.jpg,1,0\n"
        "img5.jpg,img6.jpg,1,1\nimg2.jpg,img3.jpg,0,1\nimg3.jpg,wall.png,0,1\n"
    )
    js = tmp_path / "r.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "qmag_core",
            "evaluate",
            "--images",
            str(d),
            "--pairs",
            str(pairs),
            "--json",
            str(js),
            "--no-cache",
            "--n-boot",
            "20",
        ],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())
    pr = rep["pairs_report"]
    assert pr["fta_rate"] == pytest.approx(2 / 6) and pr["n_failed_genuine"] == 1 and pr["n_failed_imposter"] == 1
    g = rep["baseline"]["generalized"]
    assert g["accuracy"] is not None and g["accuracy"] <= rep["baseline"]["accuracy"]
    assert "failure to acquire: 2 of 6 pairs" in r.stdout and "generalized" in r.stdout
