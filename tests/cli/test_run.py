import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import ROOT, run_cli

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


# ------------------------------------------------------------------ outputs never replace inputs
def _commands():
    """``(command, subparser)`` for every ``qmag`` sub-command."""
    import argparse

    from qmag_core.cli.run import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices.items())


def _required_argv(sp, tmp_path, skip: set[str]) -> list[str]:
    """Placeholder values for a sub-command's required options and positionals."""
    argv = []
    for act in sp._actions:
        if act.dest in skip or act.dest == "help" or not (act.required or not act.option_strings):
            continue
        value = "1" if act.type is not None else str(tmp_path / f"placeholder_{act.dest}")
        argv += [value] if not act.option_strings else [act.option_strings[-1], value]
    return argv


def _input_cases():
    """Every (command, output option, input option) a command declares."""
    for cmd, sp in _commands():
        writes, reads = sp.get_default("writes") or (), sp.get_default("reads") or ()
        folders = set(sp.get_default("image_folders") or ())
        for out in writes:
            for src in reads:
                yield pytest.param(cmd, out, src, src in folders, id=f"{cmd}-{out}-{src}")


def _flag(sp, dest):
    act = next(a for a in sp._actions if a.dest == dest)
    return act.option_strings[-1] if act.option_strings else None


@pytest.mark.parametrize(("cmd", "out", "src", "image_folder"), list(_input_cases()))
def test_no_output_option_can_name_a_file_its_command_reads(cmd, out, src, image_folder, tmp_path, capsys):
    """Each output option of each command, pointed at one of its inputs — a file it reads,
    an image inside an input image folder, a file inside any other input folder — is
    refused before any work with exit 2 and one line naming the option; the file keeps
    its bytes."""
    from qmag_core.cli.run import run_command

    sp = dict(_commands())[cmd]
    folder = tmp_path / "in"
    (folder / "x").mkdir(parents=True)
    victim = folder / "x" / ("photo.jpg" if image_folder else "data.txt")
    victim.write_bytes(b"user data \x00\x01")
    value = str(folder) if image_folder or src in ("ijb", "features", "root") else str(victim)
    argv = [cmd, *_required_argv(sp, tmp_path, {out, src})]
    argv += [value] if _flag(sp, src) is None else [_flag(sp, src), value]  # None: a positional input
    if cmd == "embed" and src != "images":  # the victim is a listed file (--out must be an .npz)
        victim = folder / "x" / "cache.npz"
        victim.write_bytes(b"user data")
        (tmp_path / "list.txt").write_text("x/cache.npz\n")
        argv = [cmd, "--list", str(tmp_path / "list.txt"), "--root", str(folder)]
    argv += [_flag(sp, out), str(victim)]
    before = victim.read_bytes()
    rc = run_command(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, (argv, err)
    assert len(err) == 1 and _flag(sp, out) in err[0], err
    assert victim.read_bytes() == before


def test_an_output_beside_the_inputs_is_allowed_and_links_into_the_folder_are_not(tmp_path, capsys):
    """A new file in an input folder, or a non-image there, is not an input; a link whose
    name or target lies in the folder is."""
    from qmag_core.cli.run import build_parser, check_outputs
    from qmag_core.errors import QMagError

    d = tmp_path / "D"
    (d / "a").mkdir(parents=True)
    (d / "a" / "1.jpg").write_bytes(b"jpeg")
    (d / "notes.csv").write_text("kept")
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(b"x")
    (d / "a" / "link.jpg").symlink_to(outside)
    (tmp_path / "to_photo.csv").symlink_to(d / "a" / "1.jpg")

    def check(out):
        a = build_parser().parse_args(
            ["make-pairs", "--images", str(d), "--genuine", "1", "--imposter", "1"] + ["--out", str(out)]
        )
        check_outputs(a)

    check(d / "pairs.csv")  # new file beside the photos
    check(d / "notes.csv")  # not an image: make-pairs does not read it
    check(d / "a" / ".." / "b.csv")
    check(tmp_path / "to_photo.csv")  # a link outside: replacing it leaves the photo as it is
    for bad in (d / "a" / "1.jpg", d / "a" / "." / "1.jpg", d / "a" / "link.jpg"):
        with pytest.raises(QMagError, match="--out"):
            check(bad)


# ------------------------------------------------------------------ bounded arguments
def test_every_integer_argument_that_sizes_work_has_an_upper_bound():
    """Whole-number options have an upper end (docs/cli.md lists them), except a subset
    size bounded by the data itself."""
    unbounded = [
        f"{cmd} --{a.dest}"
        for cmd, sp in _commands()
        for a in sp._actions
        if a.type is not None and "integer" in a.type.__name__ and " to " not in a.type.__name__
    ]
    assert unbounded == ["evaluate --max_imposters", "train --max_imposters"], unbounded


@pytest.mark.parametrize(
    ("argv", "opt"),
    [
        (["train", "--scores", "s.csv", "--out", "p.json", "--bootstrap", "1000000000000"], "--bootstrap"),
        (["evaluate", "--scores", "s.csv", "--n-boot", "100000000"], "--n-boot"),
        (["calibrate-quality", "--scores", "s.csv", "--out", "q.json", "--bins", "100000000"], "--bins"),
        (["export-onnx", "--out", "m.onnx", "--opset", "999"], "--opset"),
        (["make-pairs", "--images", ".", "--genuine", "1e9", "--imposter", "1", "--out", "p.csv"], "--genuine"),
        (["embed", "--images", ".", "--out", "e.npz", "--batch-size", "100000"], "--batch-size"),
        (["train", "--scores", "s.csv", "--out", "p.json", "--n-omega", "9" * 50], "--n-omega"),
    ],
)
def test_oversized_arguments_end_in_one_line_naming_the_option(argv, opt, capsys):
    from qmag_core.cli.run import run_command

    with pytest.raises(SystemExit) as ex:
        run_command(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert ex.value.code == 2 and len(err) == 1 and opt in err[0] and "Traceback" not in err[0], err


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "garbage!!", "host:99999", "ray://"])
def test_a_ray_address_nobody_answers_at_is_refused_in_seconds(address, tmp_path):
    """Before: Ray retried an unreachable address until killed (600 s) and a malformed one
    was an internal error.  Now: exit 2 within 20 s, one line naming --address."""
    import time

    pytest.importorskip("ray")
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes((ROOT / "sample_data/faces/deepface/img1.jpg").read_bytes())
    t0 = time.perf_counter()
    r = run_cli(
        "embed",
        "--images",
        tmp_path / "img",
        "--out",
        tmp_path / "o.npz",
        "--engine",
        "ray",
        "--address",
        address,
        check=False,
    )
    assert time.perf_counter() - t0 < 20
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--address" in r.stderr, r.stderr
    assert not (tmp_path / "o.npz").exists()


def test_score_warns_about_another_encoders_params_like_evaluate(scores_csv, tmp_path):
    """Before: score applied α/β trained on another encoder's q without a word."""
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"alpha": 0.05, "beta": 0.08, "encoder": "builtin"}))
    r = run_cli("score", "--scores", scores_csv, "--params", p, "--out", tmp_path / "o.csv")
    e = run_cli("evaluate", "--scores", scores_csv, "--params", p, "--n-boot", "2", check=False)
    for out in (r.stderr, e.stderr):
        assert "warning: these α/β were trained for encoder 'builtin'" in out and "'magface'" in out, out


# ------------------------------------------------------------------ nothing but the one line
def test_a_one_class_scores_file_is_refused_naming_the_file(tmp_path):
    """Before: 'training needs genuine and imposter pairs' with no file named."""
    f = tmp_path / "only_genuine.csv"
    write_scores_csv(
        f, ScoreTable(np.full(20, 0.9), np.full(20, 30.0), np.full(20, 31.0), np.ones(20, np.int8), np.full(20, -1))
    )
    for argv in (
        ("train", "--scores", f, "--out", tmp_path / "p.json"),
        ("evaluate", "--scores", f),
        ("calibrate-quality", "--scores", f, "--out", tmp_path / "s.json"),
    ):
        r = run_cli(*argv, check=False)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "only_genuine.csv: 20 genuine and 0 imposter pairs" in r.stderr, r.stderr


def test_library_warnings_stay_off_the_terminal_unless_debugging(monkeypatch):
    import warnings

    from qmag_core.cli.run import _quiet_libraries

    monkeypatch.delenv("QMAG_DEBUG", raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _quiet_libraries()
        for module in ("torch.nn.modules.module", "onnxruntime.capi", "ray.data", "qmag_core.scores.trainer"):
            warnings.warn_explicit("noise", UserWarning, "x.py", 1, module=module)
    assert [w.filename for w in seen] == ["x.py"] and len(seen) == 1  # only our own


def test_sharded_embed_refuses_a_link_leading_out_before_writing_anything(tmp_path):
    """Before: a part file was written, then 'nothing is read' was said."""
    d = tmp_path / "photos"
    d.mkdir()
    (d / "a.jpg").write_bytes((ROOT / "sample_data/faces/deepface/img1.jpg").read_bytes())
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"x")
    (d / "z.jpg").symlink_to(secret)
    out = tmp_path / "shards"
    r = run_cli("embed", "--images", d, "--out", out, "--shard-size", "1", check=False)
    assert r.returncode == 2 and "outside the image folder" in r.stderr, r.stderr
    assert not out.exists() or not any(out.iterdir())
