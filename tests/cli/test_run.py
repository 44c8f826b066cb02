import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import run_cli

from qmag_core.evaluation import protocol as evaluation
from qmag_core.io.scores import ScoreTable, read_scores_csv, write_scores_csv
from qmag_core.scores import QMagFaceTrainer, qmagface_score
from qmag_core.scores.synthetic import synthetic_pairs


@pytest.fixture(scope="module")
def scores_csv(tmp_path_factory):
    s, q1, q2, y = synthetic_pairs(3000, 30000, random_state=11)
    f = tmp_path_factory.mktemp("cli") / "scores.csv"
    write_scores_csv(f, ScoreTable(s, q1, q2, y, np.arange(s.size) % 3, {"encoder": "magface"}))
    return f


@pytest.mark.slow
def test_train_writes_params(scores_csv, tmp_path):
    out = tmp_path / "p.json"
    r = run_cli("train", "--scores", scores_csv, "--out", out, "--mode", "consistent", "--n-omega", "30", "--seed", "3")
    assert "alpha=" in r.stdout and "clamped" in r.stderr  # 30,000 imposters < 1e5
    d = json.loads(out.read_text())
    assert set(d) >= {
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
    }
    assert d["mode"] == "consistent" and d["encoder"] == "magface" and "MagFace" in d["quality"]
    assert d["options"] == {
        "mode": "consistent",
        "fmr-min": 1e-5,
        "fmr-max": 0.01,
        "n-fmr": 50,
        "n-omega": 30,
        "max-ratio": 0.5,
        "max-imposters": None,
        "clamp-fmr": True,
        "seed": 3,
    }
    t = read_scores_csv(scores_csv)
    ref = QMagFaceTrainer(mode="consistent", n_omega=30, random_state=3).fit(t.X(), t.label)
    assert d["alpha"] == ref.alpha_ and d["beta"] == ref.beta_
    import hashlib

    assert d["trained_on"] == {
        "file": "scores.csv",
        "sha256": hashlib.sha256(scores_csv.read_bytes()).hexdigest(),
        "n_pairs": 33000,
        "n_genuine": 3000,
        "n_imposter": 30000,
    }


@pytest.mark.slow
def test_evaluate_json_structure_and_cross_fit(scores_csv, tmp_path):
    out = tmp_path / "ev.json"
    r = run_cli("evaluate", "--scores", scores_csv, "--json", out, "--n-boot", "30")
    assert "cross-fitted" in r.stderr and "EER" in r.stdout
    d = json.loads(out.read_text())
    assert set(d) == {"baseline", "qmagface", "n_genuine", "n_imposter", "params", "edc", "edc_iso"}
    iso = d["edc_iso"]["fnmr"]
    assert iso["starting_error"] == 0.05 and abs(iso["actual_starting_error"] - 0.05) < 0.01
    assert set(iso["pauc"]) == {"q"} and iso["pauc_limit"] == 0.2
    for m in (d["baseline"], d["qmagface"]):
        assert set(m) >= {"eer", "auc", "dprime", "fnmr_at_fmr", "accuracy", "accuracy_std", "ci95"}
        assert set(m["fnmr_at_fmr"]) == {"0.01", "0.001", "0.0001"}
        assert all(0 <= v <= 1 for v in m["fnmr_at_fmr"].values())  # 30,000 imposters support 1e-4
        assert 0 <= m["eer"] <= 1 and m["accuracy"] is not None
        assert m["ci95"]["eer"][0] <= m["eer"] <= m["ci95"]["eer"][1]
    assert d["n_genuine"] == 3000 and d["n_imposter"] == 30000
    assert d["edc"]["rule"] == "fmr_0.001" and len(d["edc"]["discard"]) == 11
    assert len(d["edc"]["fnmr_random_median"]) == 11 and d["edc"]["discard"][-1] == 0.5
    assert d["params"]["source"] == "cross-fit" and d["params"]["n_folds"] == 3


def test_cross_fit_never_scores_a_fold_with_params_that_saw_it():
    s, q1, q2, y = synthetic_pairs(2400, 24000, random_state=5)
    folds = np.arange(s.size) % 4
    t = ScoreTable(s, q1, q2, y, folds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s_hat, used_folds, per_fold = evaluation.cross_fit(t, QMagFaceTrainer())
        for d in per_fold:
            test = used_folds == d["fold"]
            assert not np.intersect1d(d["train_rows"], np.flatnonzero(test)).size
            ref = QMagFaceTrainer().fit(t.X()[~test], y[~test])
            assert (ref.alpha_, ref.beta_) == (d["alpha"], d["beta"])
            np.testing.assert_array_equal(s_hat[test], qmagface_score(s[test], t.q_min[test], ref.alpha_, ref.beta_))
            # params fitted on everything would score this fold differently
            full = QMagFaceTrainer().fit(t.X(), y)
            assert (full.alpha_, full.beta_) != (d["alpha"], d["beta"])
        # no folds in the file: 2 seeded, label-stratified folds
        t2 = ScoreTable(s, q1, q2, y, np.full(s.size, -1))
        _, f2a, pf = evaluation.cross_fit(t2, QMagFaceTrainer(), seed=1)
        _, f2b, _ = evaluation.cross_fit(t2, QMagFaceTrainer(), seed=1)
    assert len(pf) == 2 and np.array_equal(f2a, f2b)
    assert abs(int(((f2a == 0) & (y == 1)).sum()) - 1200) <= 1


def test_evaluate_with_params_warns_on_encoder_mismatch(scores_csv, tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"alpha": 0.07, "beta": 0.12, "encoder": "builtin"}))
    out = tmp_path / "ev.json"
    r = run_cli("evaluate", "--scores", scores_csv, "--params", p, "--json", out, "--n-boot", "10")
    assert "trained for encoder 'builtin'" in r.stderr and "'magface'" in r.stderr
    d = json.loads(out.read_text())
    t = read_scores_csv(scores_csv)
    from qmag_core.evaluation.metrics import eer, split_scores

    assert d["qmagface"]["eer"] == pytest.approx(
        eer(*split_scores(qmagface_score(t.s, t.q_min, 0.07, 0.12), t.label)).value
    )


@pytest.mark.slow
def test_params_record_which_quality_head_made_q(tmp_path):
    """train records the scores' encoder_key (weights + quality head); evaluating other
    qualities with those α/β warns, the same encoder (or its -flip variant) does not."""
    s, q1, q2, y = synthetic_pairs(1500, 15000, random_state=3)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    meta = {"encoder": "builtin", "encoder_key": "builtin-w1-headA"}
    write_scores_csv(a, ScoreTable(s, q1, q2, y, np.arange(s.size) % 3, meta))
    write_scores_csv(b, ScoreTable(s, q1, q2, y, np.arange(s.size) % 3, {**meta, "encoder_key": "builtin-w1-headB"}))
    assert read_scores_csv(a).encoder_key == "builtin-w1-headA"
    run_cli("train", "--scores", a, "--out", tmp_path / "p.json")
    from qmag_core.scores.params import QMagFaceParams

    p = QMagFaceParams.load(tmp_path / "p.json")
    assert p.encoder_key == "builtin-w1-headA"
    assert p.quality_mismatch("builtin-w1-headA-flip") is None and p.quality_mismatch(None) is None
    r = run_cli("evaluate", "--scores", b, "--params", tmp_path / "p.json", "--n-boot", "5")
    assert "trained on q from encoder 'builtin-w1-headA'" in r.stderr and "'builtin-w1-headB'" in r.stderr
    r = run_cli("evaluate", "--scores", a, "--params", tmp_path / "p.json", "--n-boot", "5")
    assert "trained on q" not in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"alpha": 0.1, "beta": 0.1, "encoder_key": 7}))
    r = run_cli("evaluate", "--scores", a, "--params", bad, check=False)
    assert r.returncode == 2 and "'encoder_key' must be a string" in r.stderr


def test_score_adds_s_hat(scores_csv, tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"alpha": 0.07, "beta": 0.12}))
    out = tmp_path / "scored.csv"
    run_cli("score", "--scores", scores_csv, "--params", p, "--out", out)
    t = read_scores_csv(out)
    np.testing.assert_allclose(t.extra["s_hat"].astype(float), qmagface_score(t.s, t.q_min, 0.07, 0.12), rtol=1e-8)
    assert t.encoder == "magface"


def test_make_pairs_cli(tmp_path):
    for k in range(6):
        d = tmp_path / "imgs" / f"p{k}"
        d.mkdir(parents=True)
        for j in range(3):
            (d / f"{j}.png").write_bytes(b"x")
    out = tmp_path / "pairs.csv"
    run_cli(
        "make-pairs",
        "--images",
        tmp_path / "imgs",
        "--genuine",
        6,
        "--imposter",
        8,
        "--folds",
        2,
        "--seed",
        4,
        "--out",
        out,
    )
    lines = out.read_text().splitlines()
    assert lines[0] == "path1,path2,label,fold" and len(lines) == 15


@pytest.mark.parametrize(
    "args, msg",
    [
        (["train", "--scores", "missing.csv", "--out", "x.json"], "missing.csv: no such file"),
        (["evaluate", "--scores", "BAD", "--params", "none.json"], "line 3: column 's' expected a finite number"),
        (["train", "--scores", "BAD", "--out", "x.json"], "line 3"),
        (["score", "--scores", "GOOD", "--params", "none.json", "--out", "o.csv"], "none.json"),
    ],
)
def test_bad_input_one_line_no_traceback(tmp_path, args, msg):
    bad = tmp_path / "bad.csv"
    bad.write_text("s,q1,q2,label\n0.5,20,20,1\nxx,20,20,0\n")
    good = tmp_path / "good.csv"
    good.write_text("s,q1,q2,label\n0.5,20,20,1\n0.1,20,20,0\n")
    args = [
        str(bad)
        if a == "BAD"
        else str(good)
        if a == "GOOD"
        else str(tmp_path / a)
        if a.endswith((".json", ".csv")) and a != "x.json"
        else a
        for a in args
    ]
    r = run_cli(*args, check=False)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr


def test_degenerate_training_message(tmp_path):
    f = tmp_path / "sep.csv"
    rng = np.random.default_rng(0)
    s = np.r_[rng.uniform(0.8, 0.9, 50), rng.uniform(-0.1, 0.1, 2000)]
    write_scores_csv(
        f,
        ScoreTable(
            s,
            np.full(s.size, 20.0),
            np.full(s.size, 25.0),
            np.r_[np.ones(50), np.zeros(2000)].astype(np.int8),
            np.full(s.size, -1),
        ),
    )
    r = run_cli("train", "--scores", f, "--out", tmp_path / "p.json", check=False)
    assert r.returncode == 2 and "zero variance in t" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_fast_paths_do_not_import_torch_or_sklearn(scores_csv, tmp_path):
    code = (
        "import sys; from qmag_core.cli.run import run_command as main; "
        f"main(['train','--scores',{str(scores_csv)!r},'--out',{str(tmp_path / 'p.json')!r}]); "
        f"main(['evaluate','--scores',{str(scores_csv)!r},'--n-boot','5']); "
        "bad=[m for m in ('torch','sklearn','streamlit') if m in sys.modules]; print('HEAVY', bad)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow
def test_head_option_is_checked(tmp_path):
    from pathlib import Path

    img = Path(__file__).resolve().parents[2] / "sample_data" / "faces" / "deepface" / "img1.jpg"
    r = run_cli(
        "compare", img, img, "--encoder", "builtin-raw", "--head", tmp_path / "h.pt", "--device", "cpu", check=False
    )
    assert r.returncode == 2 and "--head is for --encoder builtin" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "h.pt"
    bad.write_bytes(b"junk")
    r = run_cli("compare", img, img, "--encoder", "builtin", "--head", bad, "--device", "cpu", check=False)
    assert r.returncode == 2 and "not a quality-head file" in r.stderr and "Traceback" not in r.stderr


def test_missing_extra_is_named_not_a_traceback(tmp_path):
    """Without torch and onnxruntime (the core install), a network command says which
    extras to install."""
    img = tmp_path / "a.jpg"
    img.write_bytes(b"x")
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['facenet_pytorch'] = None; "
        "sys.modules['onnxruntime'] = None; "
        "from qmag_core.cli.run import run_command as main; "
        f"sys.exit(main(['compare', {str(img)!r}, {str(img)!r}]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "neither torch nor onnxruntime is installed" in r.stderr
    assert "qmag-studio[onnx]" in r.stderr and "qmag-studio[vision]" in r.stderr
    assert "Traceback" not in r.stderr


def test_network_option_choices_are_the_cores():
    """The parser spells --runtime and --face out (importing align/encoders at start-up
    would slow every command); they must stay the core's own lists."""
    from qmag_core.cli.run import build_parser
    from qmag_core.vision.align import FACE_RULES
    from qmag_core.vision.runtime import RUNTIMES

    sub = next(a for a in build_parser()._actions if a.dest == "cmd").choices
    for cmd in ("embed", "compare", "evaluate", "explain"):
        opts = {a.dest: a for a in sub[cmd]._actions}
        assert tuple(opts["runtime"].choices) == RUNTIMES and opts["runtime"].default == "auto"
        assert tuple(opts["face"].choices) == FACE_RULES
