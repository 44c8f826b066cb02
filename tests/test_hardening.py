"""Bad input as an attacker or a careless user gives it: isolated sessions, one-line errors,
bounded resources, nothing accepted silently.  Images are real photos from
sample_data/faces/deepface (MIT, in the repository)."""

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import FACES, ROOT, one_line_error, qmag, toy_scores
from PIL import Image

from qmag_core import io as D
from qmag_core.errors import DataFormatError, QMagError
from qmag_core.outputs import atomic_write
from qmag_core.safeio import load_npz


# ---------------------------------------------------------- 3. cross-session leak
@pytest.mark.slow
def test_two_sessions_same_name_same_rows_see_their_own_results():
    from streamlit.testing.v1 import AppTest

    from qmag_core.evaluation.protocol import heldout_effect
    from qmag_core.scores import QMagFaceTrainer

    shown = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        n_g, n_i = 300, 3000
        s = np.r_[rng.normal(0.6, 0.12, n_g), rng.normal(0.05, 0.1, n_i)].clip(-1, 1)
        q = rng.uniform(10, 40, (n_g + n_i, 2))
        body = "s,q1,q2,label\n" + "".join(
            f"{float(s[k])!r},{float(q[k, 0])!r},{float(q[k, 1])!r},{int(k < n_g)}\n" for k in range(n_g + n_i)
        )
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
        at.switch_page("views/dataset.py").run()
        at.file_uploader(key="up_scores").set_value(("mine.csv", body.encode(), "text/csv")).run()
        at.button(key="load_scores").click().run()
        assert not at.exception and at.selectbox(key="w_dataset_id").value == "mine.csv"
        at.switch_page("views/train.py").run()
        assert not at.exception
        df = at.dataframe[1].value  # the held-out table
        shown.append(df)
        lo, hi = at.select_slider(key="w_fmr_range").value
        t = D.ScoreTable(s, q[:, 0], q[:, 1], (np.arange(s.size) < n_g).astype(np.int8), np.full(s.size, -1))
        mode = at.radio(key="mode").value  # the page starts from the active parameters' mode
        h = heldout_effect(t, QMagFaceTrainer(mode=mode, fmr_min=lo, fmr_max=hi, random_state=0), seed=0)
        assert df["cosine"].iloc[0] == f"{100 * h['cosine']['eer']:.3f}%"
        assert df["QMagFace"].iloc[0] == f"{100 * h['qmagface']['eer']:.3f}%"
    assert not shown[0].equals(shown[1])


# ---------------------------------------------------- 4. crashes instead of messages
def _tiny_face(path, side=15):
    Image.open(FACES / "img1.jpg").convert("RGB").resize((side, side)).save(path)


@pytest.mark.slow
def test_tiny_image_in_folder_fails_alone(tmp_path, image_dir):
    _tiny_face(image_dir / "a" / "tiny.png")
    out = tmp_path / "e.npz"
    r = qmag("embed", "--images", image_dir, "--out", out, "--no-cache")
    assert r.returncode == 0, r.stderr
    e = D.load_embeddings(out)
    assert e.paths.tolist() == ["a/1.jpg", "a/2.jpg", "a/tiny.png"]
    assert e.ok.tolist() == [True, True, False]
    assert "only 15×15 px" in e.error[2]


def test_tiny_image_next_to_good_ones_in_compare():
    from qmag_core.encoders import load_encoder
    from qmag_core.pipeline.compare import compare_images

    b = io.BytesIO()
    Image.open(FACES / "img1.jpg").convert("RGB").resize((12, 16)).save(b, "PNG")
    res = compare_images(
        [str(FACES / "img1.jpg"), b.getvalue(), str(FACES / "img2.jpg")],
        load_encoder("builtin"),
        names=["a", "tiny", "b"],
    )
    assert [r.ok for r in res.images] == [True, False, True]
    assert "smaller than 20 px" in res.images[1].error and len(res.pairs) == 1


@pytest.mark.slow
def test_damaged_cache_chunk_is_skipped_reported_rebuilt(tmp_path, image_dir):
    cache = tmp_path / "cache"
    args = ("embed", "--images", image_dir, "--cache-dir", cache)
    assert qmag(*args, "--out", tmp_path / "1.npz").returncode == 0
    chunks = list(cache.rglob("chunk-*.npz"))
    assert len(chunks) == 1
    chunks[0].write_bytes(chunks[0].read_bytes()[:300])  # truncated by a crash or a full disk
    r = qmag(*args, "--out", tmp_path / "2.npz")
    assert r.returncode == 0, r.stderr
    assert "warning: embedding cache" in r.stderr and "embedded again" in r.stderr
    r = qmag(*args, "--out", tmp_path / "3.npz")  # rebuilt: served from the cache, no warning
    assert "warning" not in r.stderr and "2 from cache" in r.stderr
    np.testing.assert_array_equal(
        D.load_embeddings(tmp_path / "1.npz").embeddings, D.load_embeddings(tmp_path / "3.npz").embeddings
    )


@pytest.mark.parametrize("page", ["dataset", "train", "quality"])
@pytest.mark.slow
def test_one_class_upload_gives_a_message_and_keeps_the_page(page):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    at.switch_page("views/dataset.py").run()
    body = "s,q1,q2,label\n" + "".join(f"{0.5 + k / 100},20,21,1\n" for k in range(30))
    at.file_uploader(key="up_scores").set_value(("genuine_only.csv", body.encode(), "text/csv")).run()
    at.button(key="load_scores").click().run()
    if page != "dataset":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("only genuine pairs" in w.value for w in at.warning)
    assert at.selectbox(key="w_dataset_id").value == "genuine_only.csv"


@pytest.mark.slow
def test_one_fold_evaluate_still_reports(tmp_path):
    t = toy_scores(400)
    t.fold[:] = 0
    f = tmp_path / "one_fold.csv"
    D.write_scores_csv(f, t)
    js = tmp_path / "r.json"
    r = qmag("evaluate", "--scores", f, "--json", js, "--fmr-max", "0.1", "--fmr-min", "0.01")
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())  # cross-fitted over 2 seeded folds, as for a file without folds
    assert rep["qmagface"] is not None and rep["params"]["folds_from"] == "2 seeded folds"
    p = tmp_path / "p.json"
    p.write_text('{"alpha": 0.05, "beta": 0.08}')
    r = qmag("evaluate", "--scores", f, "--json", js, "--params", p)
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())
    assert rep["baseline"]["accuracy"] is None and "at least 2 folds" in rep["baseline"]["accuracy_note"]
    assert rep["qmagface"]["eer"] is not None


def _npz_with_text_member(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("embeddings.npy", b"this is not an npy array at all")


@pytest.mark.parametrize(
    "case, needle",
    [
        ("fold64", "fold must be an integer"),
        ("params_latin1", "not a text file"),
        ("params_nested", "nested too deeply"),
        ("params_ops", "operating_points[0]"),
        ("checkpoint5", "not a readable PyTorch checkpoint"),
        ("list_latin1", "not a text file"),
        ("folds0", "--folds"),
        ("nboot0", "--n-boot"),
        ("nboot_neg", "--n-boot"),
        ("explain_ext", "unknown image type"),
        ("npz_member", "not an .npy array"),
        ("steps0", "--steps"),
        ("genuine_neg", "--genuine"),
    ],
)
@pytest.mark.slow
def test_no_traceback_one_line(tmp_path, case, needle):
    good = tmp_path / "good.csv"
    D.write_scores_csv(good, toy_scores())
    p = tmp_path / "p.json"
    img = FACES / "img1.jpg"
    if case == "fold64":
        f = tmp_path / "f.csv"
        f.write_text("s,q1,q2,label,fold\n0.5,20,20,1,99999999999999999999999\n0.1,20,20,0,1\n")
        args = ("train", "--scores", f, "--out", p)
    elif case == "params_latin1":
        p.write_bytes('{"alpha": 0.1, "beta": 0.2, "encoder": "caf\xe9"}'.encode("latin-1"))
        args = ("evaluate", "--scores", good, "--params", p)
    elif case == "params_nested":
        p.write_text("[" * 50000 + "]" * 50000)
        args = ("evaluate", "--scores", good, "--params", p)
    elif case == "params_ops":
        p.write_text('{"alpha": 0.1, "beta": 0.2, "operating_points": [{"fmr": "often"}]}')
        args = ("compare", img, "--params", p)
    elif case == "checkpoint5":
        ck = tmp_path / "magface.pth"
        ck.write_bytes(b"abcde")  # torch.load raises IndexError on these 5 bytes
        args = ("compare", img, "--encoder", "magface", "--checkpoint", ck)
    elif case == "list_latin1":
        lst = tmp_path / "l.txt"
        lst.write_bytes("caf\xe9.jpg\n".encode("latin-1"))
        args = ("embed", "--list", lst, "--out", tmp_path / "e.npz")
    elif case == "folds0":
        args = (
            "make-pairs",
            "--images",
            tmp_path,
            "--genuine",
            1,
            "--imposter",
            1,
            "--folds",
            0,
            "--out",
            tmp_path / "x",
        )
    elif case == "nboot0":
        args = ("evaluate", "--scores", good, "--n-boot", 0)
    elif case == "nboot_neg":
        args = ("evaluate", "--scores", good, "--n-boot", -3)
    elif case == "explain_ext":
        args = ("explain", tmp_path / "not_even_there.jpg", "--out", tmp_path / "x.unknown")  # checked before work
    elif case == "npz_member":
        bad = tmp_path / "e.npz"
        _npz_with_text_member(bad)
        with pytest.raises(QMagError, match="not an .npy array"):
            D.load_embeddings(bad)
        return
    elif case == "steps0":
        args = ("explain", img, "--out", tmp_path / "x.png", "--steps", 0)
    elif case == "genuine_neg":
        args = ("make-pairs", "--images", tmp_path, "--genuine", -1, "--imposter", 1, "--out", tmp_path / "x")
    one_line_error(qmag(*args), needle)


# ---------------------------------------------------------- 5. unbounded resources
def test_79_megapixel_jpeg_decodes_downscaled_in_bounded_memory(tmp_path):
    big = tmp_path / "big.jpg"
    Image.new("RGB", (8900, 8900), (120, 100, 90)).save(big, "JPEG", quality=50)  # 79 MP, ~1.2 MB
    code = (
        "from qmag_core.vision.align import load_image\n"  # VmHWM: this process's peak (ru_maxrss survives exec)
        f"a = load_image({str(big)!r})\n"
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1]\n"
        "print(a.shape[0], a.shape[1], hwm)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    h, w, rss_kib = map(int, r.stdout.split())
    assert (h, w) == (2048, 2048)
    assert rss_kib < 250 * 1024, f"peak RSS {rss_kib / 1024:.0f} MiB"  # full decode alone is 237 MB + a copy


def test_figure_sends_photos_at_display_size():
    from qmag_core.vision.images import load_image
    from studio.face_figures import face_overlay

    img = load_image(FACES / "img2.jpg", max_side=None)
    big = np.asarray(Image.fromarray(img).resize((4352, 3264)))  # a 14 MP phone photo
    fig = face_overlay(big, [1000, 800, 2000, 2200], np.full((5, 2), 1500.0))
    assert len(fig.to_json()) < 400_000  # the pixel JSON of this photo is ~150 MB
    assert fig.data[1].x[0] == pytest.approx(1500 * 640 / 4352)  # landmarks follow the display scale


def test_npz_zip_bomb_refused_before_inflating(tmp_path):
    f = tmp_path / "bomb.npz"
    n = 256 << 20  # 256 MiB of zeros compress to ~250 kB
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (n // 2048, 512)})
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z, z.open("embeddings.npy", "w", force_zip64=True) as m:
        m.write(header.getvalue())
        zero = bytes(1 << 20)
        for _ in range(n >> 20):
            m.write(zero)
    assert f.stat().st_size < 2 << 20
    with pytest.raises(DataFormatError, match="zip bomb"):
        load_npz(f)
    with pytest.raises(DataFormatError, match="zip bomb"):
        D.load_embeddings(f)


def test_npz_member_size_must_match_its_header(tmp_path):
    f = tmp_path / "lie.npz"
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 8), np.float32))
    raw = buf.getvalue().replace(b"(4, 8)", b"(9, 8)")
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("embeddings.npy", raw)
    with pytest.raises(DataFormatError, match="not what it says"):
        D.load_embeddings(f)


def test_npy_header_declaring_1e12_rows(tmp_path):
    f = tmp_path / "huge.npy"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 512)})
    f.write_bytes(buf.getvalue() + bytes(64))
    with pytest.raises(DataFormatError, match="above the limit"):
        D.load_embeddings(f)
    small = tmp_path / "short.npy"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (1000, 512)})
    small.write_bytes(buf.getvalue() + bytes(64))
    with pytest.raises(DataFormatError, match="truncated"):
        D.load_embeddings(small)


# ---------------------------------------------------------- 6. silent acceptance
def test_duplicate_pairs_refused(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("path1,path2,label\na/1.jpg,a/2.jpg,1\nb/1.jpg,a/1.jpg,0\na/2.jpg,a/1.jpg,1\n")
    with pytest.raises(DataFormatError, match=r"line 4: .*listed again \(first on line 2\)"):
        D.read_pairs(f)
    t = tmp_path / "pairs.txt"
    t.write_text("Ann\t1\t2\nAnn\t2\t1\n")
    with pytest.raises(DataFormatError, match="listed again"):
        D.read_lfw_pairs(t)


def test_duplicate_columns_refused(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("s,q1,q2,label,S\n0.5,20,20,1,0.3\n0.1,20,20,0,0.2\n")
    with pytest.raises(DataFormatError, match="column 'S' appears twice"):
        D.read_scores_csv(f)
    p = tmp_path / "p.csv"
    p.write_text("path1,path2,label,label\na,b,1,0\n")
    with pytest.raises(DataFormatError, match="appears twice"):
        D.read_pairs(p)


@pytest.mark.parametrize(
    "doc, needle",
    [
        ('{"alpha": true, "beta": false}', "'alpha' must be a finite number"),
        ('{"alpha": 0.1, "beta": "0.2"}', "'beta' must be a finite number"),
        ('{"alpha": 0.1, "beta": 0.2, "mode": 3}', "'mode'"),
        ('{"alpha": 0.1, "beta": 0.2, "fmrs": [1, "x"]}', "'fmrs'"),
    ],
)
def test_params_types_refused(tmp_path, doc, needle):
    from qmag_core.scores import QMagFaceParams

    f = tmp_path / "p.json"
    f.write_text(doc)
    with pytest.raises(DataFormatError, match=needle.replace("(", r"\(")):
        QMagFaceParams.load(f)


def test_absurd_quality_refused(tmp_path):
    from qmag_core.scores import QMagFaceTrainer

    f = tmp_path / "s.csv"
    f.write_text("s,q1,q2,label\n0.5,1e300,20,1\n0.1,20,20,0\n")
    with pytest.raises(DataFormatError, match="implausibly large"):
        D.read_scores_csv(f)
    with pytest.raises(QMagError, match="quality q must lie"):
        QMagFaceTrainer().fit([[0.5, 1e300], [0.1, 20]], [1, 0])


def test_complex_embeddings_refused(tmp_path):
    z = (np.ones((4, 8)) + 1j).astype(np.complex64)
    np.save(tmp_path / "c.npy", z)
    np.savez(tmp_path / "c.npz", embeddings=z)
    for f in ("c.npy", "c.npz"):
        with pytest.raises(DataFormatError, match="real"):
            D.load_embeddings(tmp_path / f)
    with pytest.raises(QMagError, match="real numbers"):
        D.Embeddings.from_array(z)


def test_gradient_map_steps_must_be_positive():
    from qmag_core.encoders import load_encoder
    from qmag_core.quality.explain import gradient_map

    with pytest.raises(QMagError, match="steps must be a positive integer"):
        gradient_map(load_encoder("builtin-raw"), np.zeros((112, 112, 3), np.uint8), steps=0)


def test_upload_errors_name_the_upload_not_server_paths():
    import tempfile

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run().switch_page("views/dataset.py").run()
    at.file_uploader(key="up_scores").set_value(("bad.csv", b"s,q1,q2,label\n0.5,1,1,1\nxx,1,1,0\n", "text/csv")).run()
    at.button(key="load_scores").click().run()
    errs = [e.value for e in at.error]
    assert any("bad.csv, line 3" in e for e in errs), errs
    assert not any(tempfile.gettempdir() in e or "qmag-upload-" in e for e in errs)
    at.text_input(key="srv_folder").set_value("no_such_folder").run()
    at.text_input(key="srv_pairs").set_value("pairs.csv").run()
    at.button(key="load_srv").click().run()
    errs = [e.value for e in at.error]
    assert any("no_such_folder: not found under the data root" in e for e in errs), errs
    assert not any(str(ROOT) in e for e in errs)
    assert at.selectbox(key="w_dataset_id").value == "lfw-dev"  # what was loaded stays loaded


def test_app_server_folder_escape_shown_in_place_and_data_kept(tmp_path, image_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("QMAG_DATA_ROOT", str(tmp_path))
    (tmp_path / "pairs.csv").write_text("path1,path2,label\na/1.jpg,a/2.jpg,1\na/1.jpg,../../../etc/passwd,0\n")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run().switch_page("views/dataset.py").run()
    at.text_input(key="srv_folder").set_value("images").run()
    at.text_input(key="srv_pairs").set_value("pairs.csv").run()
    at.button(key="load_srv").click().run()
    assert not at.exception
    errs = [e.value for e in at.error]
    assert any("pairs.csv, line 3" in e and "outside the image folder" in e for e in errs), errs
    assert not any(str(tmp_path) in e for e in errs)
    assert at.selectbox(key="w_dataset_id").value == "lfw-dev"
    assert any("EER" in m.label for m in at.metric)  # the loaded dataset is still shown


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    """A new file gets 0666 minus the umask (not mkstemp's 0600); a replaced file keeps its mode."""
    import stat

    mask = os.umask(0o022)
    try:
        new = tmp_path / "new.csv"
        with atomic_write(new) as fh:
            fh.write("x\n")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        old = tmp_path / "old.csv"
        old.write_text("a\n")
        old.chmod(0o640)
        with atomic_write(old) as fh:
            fh.write("b\n")
        assert stat.S_IMODE(old.stat().st_mode) == 0o640 and old.read_text() == "b\n"
    finally:
        os.umask(mask)
