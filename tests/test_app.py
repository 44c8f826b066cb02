"""Dashboard pages through streamlit.testing (AppTest), asserting the values shown
against qmag_core computed independently."""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image
from streamlit.testing.v1 import AppTest

from qmag_core.encoders import load_encoder
from qmag_core.evaluation import edc as E
from qmag_core.evaluation import metrics as M
from qmag_core.io.scores import read_scores_csv
from qmag_core.pipeline.compare import compare_images
from qmag_core.scores import QMagFaceTrainer, qmagface_score
from qmag_core.scores.params import QMagFaceParams

APP = str(ROOT / "app.py")
LFW = ROOT / "sample_data" / "lfw_dev_builtin" / "scores.csv"
FACES = ROOT / "sample_data" / "faces" / "deepface"


def app(page=None):
    at = AppTest.from_file(APP, default_timeout=240).run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


@pytest.fixture(scope="module")
def enc():
    """The encoder the sidebar's default (auto) runtime loads: the shipped graph on a CPU."""
    return load_encoder("builtin", device="cpu", runtime="fast")


@pytest.mark.slow
def test_compare_page_sample_photos(enc):
    from qmag_core.quality.scale import scale_for

    at = app()
    ref = compare_images(
        [str(FACES / "img1.jpg"), str(FACES / "img2.jpg")],
        enc,
        names=["img1.jpg", "img2.jpg"],
        params=QMagFaceParams.shipped("builtin"),
        fmr=1e-3,
    )
    # q on the calibrated scale first, the raw q beside it with 2 decimals
    shown = [m.value for m in at.metric if m.label == "quality (builtin scale)"]
    scale = scale_for(enc)
    assert shown == [f"{scale.describe(r.quality)['scale']:.0f}/100" for r in ref.images]
    captions = " ".join(c.value for c in at.caption)
    assert all(f"raw q {r.quality:.2f}" in captions for r in ref.images)
    df = at.dataframe[0].value
    assert df["s"].iloc[0] == pytest.approx(ref.pairs[0].s, abs=1e-5)
    assert df["ŝ"].iloc[0] == pytest.approx(ref.pairs[0].s_hat, abs=1e-5)
    assert df["decision (ŝ)"].iloc[0] == ("accept" if ref.pairs[0].accept_s_hat else "reject")
    # one sentence says what QMagFace did to the pair and why
    from qmag_core.pipeline.compare import explain_pairs

    assert any(i.value == explain_pairs(ref.pairs, QMagFaceParams.shipped("builtin")) for i in at.info)


@pytest.mark.slow
def test_compare_fmr_slider_does_not_re_embed(monkeypatch):
    """The decision moves with the FMR slider; detection and embedding do not re-run."""
    import qmag_core.pipeline.compare as C

    calls = []
    real = C.embed_images

    def counting(*a, **k):
        calls.append(k.get("names"))
        return real(*a, **k)

    monkeypatch.setattr(C, "embed_images", counting)
    at = AppTest.from_file(APP, default_timeout=240)
    at.session_state["sample_faces"] = ["img1.jpg", "img3.jpg"]  # a pair no other test caches
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    # each image at most once (fewer when an earlier test already embedded it: cached per image)
    assert len(calls) == len({n[0] for n in calls}) and {n[0] for n in calls} <= {"img1.jpg", "img3.jpg"}
    n_after_first = len(calls)
    # the sidebar is drawn once per run: by app.py's frame, the page's own call is then a no-op
    assert [m.value for m in at.sidebar.markdown].count("### QMagFace Studio") == 1
    fmrs = sorted({d["fmr"] for d in QMagFaceParams.shipped("builtin").operating_points})
    captions = []
    for f in (fmrs[0], fmrs[-1]):
        at.select_slider(key="compare_fmr").set_value(f).run()
        assert not at.exception, [e.message for e in at.exception]
        captions.append(next(c.value for c in at.caption if "Parameters α" in c.value))
    assert len(calls) == n_after_first  # no image was embedded again
    assert captions[0] != captions[1]  # the threshold shown follows the slider


def _jpeg(path, size=None):
    im = Image.open(path).convert("RGB")
    b = io.BytesIO()
    im.save(b, "JPEG")
    return b.getvalue()


def test_compare_upload_no_face_others_still_shown(enc):
    at = app()
    wall = io.BytesIO()
    Image.new("RGB", (300, 300), (128, 128, 128)).save(wall, "PNG")
    at.file_uploader[0].set_value(
        [
            ("a.jpg", _jpeg(FACES / "img1.jpg"), "image/jpeg"),
            ("wall.png", wall.getvalue(), "image/png"),
            ("b.jpg", _jpeg(FACES / "img2.jpg"), "image/jpeg"),
            ("notes.jpg", b"this is not an image", "image/jpeg"),
        ]
    ).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("wall.png: no face detected" in e for e in errors)
    assert any("notes.jpg: not an image file" in e for e in errors)
    qs = [m for m in at.metric if m.label.startswith("quality")]
    assert len(qs) == 2
    df = at.dataframe[0].value
    assert list(df["image 1"]) == ["a.jpg"] and list(df["image 2"]) == ["b.jpg"]


@pytest.mark.slow
def test_dataset_page_values():
    """The shipped α/β were trained on persons of LFW-dev folds 1–4: the page says so and
    opens on the held-out pairs (folds 5–7); switched off, it shows every pair and marks
    the numbers in-sample.  Rates read as the page writes them, "—" where unmeasured."""
    at = app("dataset")
    t = read_scores_csv(LFW)
    p = QMagFaceParams.shipped("builtin")
    assert p.trained_on["persons_of_folds"] == [1, 2, 3, 4]
    held = t.fold >= 4  # 0-based folds 4–6 = LFW folds 5–7
    y = t.label.astype(bool)
    sh = qmagface_score(t.s, t.q_min, p.alpha, p.beta)
    assert any("2,400 of 4,200 pairs here are of those persons" in i.value for i in at.info)
    assert at.toggle(key="held_out_only").value is True
    for rows in (held, np.ones(len(t), bool)):
        g, i = y & rows, ~y & rows
        assert metric(at, "EER cosine") == f"{100 * M.eer(t.s[g], t.s[i]).value:.3f}%"
        assert metric(at, "EER QMagFace") == f"{100 * M.eer(sh[g], sh[i]).value:.3f}%"
        df = at.dataframe[0].value
        assert df["FNMR @ FMR 0.0001"].iloc[0] == "—"  # too few imposters for 1e-4
        assert not df.isin(["None", "nan", None]).any().any()
        if rows.all():
            break
        at.toggle(key="held_out_only").set_value(False).run()
    assert any("In-sample" in w.value for w in at.warning)


def _upload_dirs():
    import tempfile

    return set(Path(tempfile.gettempdir()).glob("qmag-upload-*"))


@pytest.mark.slow
def test_dataset_bad_upload_keeps_loaded_data(tmp_path):
    before = _upload_dirs()
    at = app("dataset")
    at.file_uploader(key="up_scores").set_value(("bad.csv", b"s,q1,q2,label\n0.5,1,1,1\nxx,1,1,0\n", "text/csv")).run()
    at.button(key="load_scores").click().run()
    assert any("bad.csv, line 3" in e.value or "line 3" in e.value for e in at.error)
    assert at.selectbox(key="w_dataset_id").value == "lfw-dev"
    assert metric(at, "EER cosine")  # still showing the loaded dataset
    good = LFW.read_bytes()
    at.file_uploader(key="up_scores").set_value(("mine.csv", good, "text/csv")).run()
    at.button(key="load_scores").click().run()
    assert at.selectbox(key="w_dataset_id").value == "mine.csv"
    assert not at.exception
    assert _upload_dirs() == before  # staged upload files are gone after loading, failed or not


def test_staged_uploads_are_removed_even_on_errors():
    from studio.datasets import staged_uploads

    class Up:
        def __init__(self, name, data):
            self.name, self._d = name, data

        def getvalue(self):
            return self._d

    with staged_uploads(Up("a.csv", b"1"), Up("a.csv", b"2")) as (p1, p2):
        assert Path(p1).read_bytes() == b"1" and Path(p2).read_bytes() == b"2"  # same name, both kept
        assert Path(p1).name == "a.csv"
    assert not Path(p1).exists() and not Path(p1).parent.parent.exists()
    with pytest.raises(ValueError):
        with staged_uploads(Up("../../evil.csv", b"x")) as (p,):
            assert Path(p).name == "evil.csv" and "qmag-upload-" in str(Path(p).parent.parent)
            raise ValueError("loader failed")
    assert not Path(p).parent.parent.exists()


@pytest.mark.slow
def test_server_paths_outside_data_root_refused():
    at = app("dataset")
    at.text_input(key="srv_folder").set_value("/etc").run()
    at.text_input(key="srv_pairs").set_value("/etc/passwd").run()
    at.button(key="load_srv").click().run()
    assert any("outside the data root" in e.value for e in at.error)


def _expected(table, lo, hi, mode="official"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return QMagFaceTrainer(mode=mode, fmr_min=lo, fmr_max=hi, random_state=0).fit(table.X(), table.label)


@pytest.mark.slow
def test_train_page_alpha_beta_follow_range():
    at = app()
    at.selectbox(key="w_dataset_id").set_value("lfw-dev-ext").run()
    at.switch_page("views/train.py").run()
    assert not at.exception
    assert at.radio(key="mode").value == "consistent"  # starts from the active (shipped) parameters' mode
    at.radio(key="mode").set_value("official").run()
    t = read_scores_csv(ROOT / "sample_data" / "lfw_dev_builtin" / "scores_extended.csv")
    lo, hi = at.select_slider(key="w_fmr_range").value
    ref = _expected(t, lo, hi)
    assert metric(at, "α") == f"{ref.alpha_:.6g}" and metric(at, "β") == f"{ref.beta_:.6g}"
    at.select_slider(key="w_fmr_range").set_range(1e-4, 1e-2).run()
    ref2 = _expected(t, 1e-4, 1e-2)
    assert metric(at, "α") == f"{ref2.alpha_:.6g}" and metric(at, "β") == f"{ref2.beta_:.6g}"
    assert (ref2.alpha_, ref2.beta_) != (ref.alpha_, ref.beta_)
    at.radio(key="mode").set_value("consistent").run()
    ref3 = _expected(t, 1e-4, 1e-2, "consistent")
    assert metric(at, "α") == f"{ref3.alpha_:.6g}"
    # "use these parameters" makes them active everywhere
    at.button(key="use_params").click().run()
    # the sidebar shows the new parameters at once, not after the next page
    assert any(f"α = {ref3.alpha_:.5g}" in c.value for c in at.sidebar.caption), [c.value for c in at.sidebar.caption]
    assert any("Active parameters set" in x.value for x in at.success)
    at.switch_page("views/dataset.py").run()
    y = t.label.astype(bool)
    sh = qmagface_score(t.s, t.q_min, ref3.alpha_, ref3.beta_)
    assert metric(at, "EER QMagFace") == f"{100 * M.eer(sh[y], sh[~y]).value:.3f}%"


def test_train_slider_limits_follow_imposter_count():
    at = app("train")  # lfw-dev: 2,100 imposters
    lo, hi = at.select_slider(key="w_fmr_range").value
    assert lo == pytest.approx(1 / 2100, rel=5e-3) and hi == pytest.approx(1e-2)
    assert any("cannot be measured" in c.value for c in at.caption)


def test_quality_page_edc():
    at = app("quality")
    t = read_scores_csv(LFW)
    e = E.edc(t.s, t.label.astype(bool), t.q_min, n_random=200, random_state=0)
    k = int(np.argmin(np.abs(e.discard - 0.2)))
    assert any(f"FNMR {100 * e.fnmr[k]:.3f}%" in c.value for c in at.caption)
    assert any(f"median {np.median(np.r_[t.q1, t.q2]):.2f}" in c.value for c in at.caption)


@pytest.mark.slow
def test_quality_page_plq_map(enc):
    from qmag_core.quality.explain import explain

    at = app("quality")
    data = _jpeg(FACES / "img5.jpg")
    assert at.main.get("file_uploader")[0].key == "plq_upload"  # the upload is at the top of the page
    at.file_uploader(key="plq_upload").set_value(("face.jpg", data, "image/jpeg")).run()
    assert not at.exception
    from qmag_core.vision.align import FaceDetector

    # gradient maps run on the torch twin of the sidebar's encoder, faces found by its detector (ONNX here)
    torch_enc = load_encoder("builtin", device="cpu", runtime="torch")
    ref = explain(data, torch_enc, method="gradient", name="face.jpg", detector=FaceDetector.for_encoder(enc))
    assert any(f"face.jpg: q = {ref.quality:.2f}" in c.value for c in at.caption)
    wall = io.BytesIO()
    Image.new("RGB", (200, 200), (90, 90, 90)).save(wall, "PNG")
    at.file_uploader(key="plq_upload").set_value(("wall.png", wall.getvalue(), "image/png")).run()
    assert any("wall.png: no face detected" in e.value for e in at.error)


def test_dataset_page_says_when_qmagface_changes_nothing():
    from qmag_core.evaluation.protocol import qmagface_effect

    at = app("dataset")  # LFW-dev held-out folds with the shipped parameters: the EER does not move
    t = read_scores_csv(LFW)
    t = t.subset(t.fold >= 4)  # the page opens on the pairs of persons that did not train α/β
    p = QMagFaceParams.shipped("builtin")
    eff = qmagface_effect(t.s, t.q_min, t.label, p.alpha, p.beta)
    assert not eff["significant"] and "does not change the errors significantly" in eff["sentence"]
    assert any(eff["sentence"] == i.value for i in at.info)
    m = next(m for m in at.metric if m.label == "EER QMagFace")
    assert m.delta in ("no change", f"{100 * eff['eer_diff']:+.3f} pt")
    # ω = 0 everywhere: the sentence names the zero crossing
    none = qmagface_effect(t.s, t.q_min, t.label, 0.0, 1.0)  # s0 = 0 < every LFW cosine
    assert none["changed"] == 0 and "changes nothing here" in none["sentence"]


def test_encoder_error_shown_once(monkeypatch):
    at = app()
    at.selectbox(key="w_encoder_id").set_value("magface").run()
    errs = [e.value for e in at.sidebar.error]
    assert len([e for e in errs if "Encoder not loaded" in e]) == 1 and "needs a checkpoint" in errs[0]
    assert not at.exception


@pytest.mark.slow
def test_bundled_cross_quality_set_shows_quality_at_work():
    """The bundled cross-quality set (persons no shipped part saw): failed photos are
    counted, and on the Quality page discarding the lowest-q pairs visibly lowers FNMR
    — well below random discards and below the sharpness baseline."""
    from qmag_core.evaluation.measures import measure_columns, measure_edcs
    from studio.datasets import load_sample_dataset

    ds = load_sample_dataset("lfw-cross-quality")
    t = ds.table
    assert t.n_failed > 0 and ds.notes and "count as failures" in ds.notes[0]
    y = t.label.astype(bool)
    fl = t.failed.label.astype(bool)
    e, others = measure_edcs(t.s, y, t.q_min, measure_columns(t.extra), fl, n_random=200, seed=0)
    k = int(np.argmin(np.abs(e.discard - 0.2)))
    ratio = e.fnmr[k] / e.fnmr_random_median[k]
    sharp = others["sharpness"].fnmr[k] / others["sharpness"].fnmr_random_median[k]
    assert ratio < 0.5 and ratio < sharp, (ratio, sharp)
    at = app()
    at.selectbox(key="w_dataset_id").set_value("lfw-cross-quality").run()
    at.switch_page("views/quality.py").run()
    assert not at.exception, [x.message for x in at.exception]
    assert any(f"FNMR {100 * e.fnmr[k]:.3f}%" in c.value for c in at.caption)


@pytest.mark.slow
def test_dataset_page_loads_embeddings_and_pairs_with_failures():
    """The embeddings + pairs upload and the bundled cross-quality set share one loader:
    failed pairs are counted and noted; pairs matching no embedding are refused in place."""
    from studio.datasets import dataset_from_embeddings

    d = ROOT / "sample_data" / "lfw_cross_quality"
    ref = dataset_from_embeddings(d / "embeddings.npz", d / "pairs.csv", "x")
    at = app("dataset")
    emb, pairs = (d / "embeddings.npz").read_bytes(), (d / "pairs.csv").read_bytes()
    at.file_uploader(key="up_emb").set_value(("e.npz", emb, "application/octet-stream")).run()
    at.file_uploader(key="up_pairs").set_value(("p.csv", b"path1,path2,label\na/1.jpg,b/2.jpg,1\n", "text/csv")).run()
    at.button(key="load_emb").click().run()
    assert any("no pair could be matched" in e.value for e in at.error)
    assert at.selectbox(key="w_dataset_id").value == "lfw-dev"  # what was loaded stays
    at.file_uploader(key="up_pairs").set_value(("p.csv", pairs, "text/csv")).run()
    at.button(key="load_emb").click().run()
    assert not at.exception and at.selectbox(key="w_dataset_id").value == "e.npz + p.csv"
    # the expected failures from the files themselves: pairs with an image the embeddings mark failed
    from qmag_core.io.embeddings import load_embeddings
    from qmag_core.io.pairs import read_pairs

    e_, p_ = load_embeddings(d / "embeddings.npz"), read_pairs(d / "pairs.csv")
    bad = set(e_.paths[~e_.ok].tolist())
    n_bad = sum(a in bad or b in bad for a, b in zip(p_.path1.tolist(), p_.path2.tolist(), strict=True))
    assert n_bad > 0 and ref.table.n_failed == n_bad
    assert f"{n_bad} pairs" in ref.notes[0] and "count as failures" in ref.notes[0]
    assert any(f"{ref.n_genuine:,} genuine" in c.value for c in at.caption)


def test_enrolment_check_page(enc):
    """Verdict, scale, region table and repaired preview equal qmag_core's check of the
    same photo; a bad upload gets its own message and the last report stays."""
    from qmag_core.quality.check import check_crop
    from qmag_core.quality.regions import REGIONS
    from qmag_core.quality.scale import scale_for
    from qmag_core.vision.align import FaceDetector, detect_and_align

    at = AppTest.from_file(APP, default_timeout=240)
    at.session_state["check_sample"] = "img3.jpg"
    at.run()
    at.switch_page("views/check.py").run()
    assert not at.exception, [e.message for e in at.exception]
    from qmag_core.pipeline.checks import report_json
    from qmag_core.vision.images import load_image

    photo = load_image(FACES / "img3.jpg")
    a = detect_and_align(photo, FaceDetector.for_encoder(enc), enc.spec, face="best")
    ref = check_crop(enc, a.crop, scale_for(enc))
    doc = report_json("img3.jpg", a, ref, photo, scale=scale_for(enc))
    assert metric(at, "verdict") == doc["verdict"].upper()
    assert metric(at, "quality scale") == f"{ref.scale:.0f} / 100"
    assert metric(at, "band") == ref.band
    df = at.dataframe[0].value
    assert list(df["region"]) == list(REGIONS)
    np.testing.assert_allclose(df["q gain when repaired"], [round(r.q_gain, 3) for r in ref.regions], atol=2e-3)
    assert list(df["flagged"]) == [r.flagged for r in ref.regions]
    # what is wrong, first: one advice line per failed requirement, and the component table
    advice = " ".join(m.value for m in at.markdown)
    assert doc["advice"] and all(item["advice"] in advice for item in doc["advice"])
    comps = next(d.value for d in at.dataframe if "component" in d.value.columns).set_index("component")
    for name, c in doc["components"].items():
        assert comps.loc[name, "result"] == {True: "pass", False: "FAIL", None: ""}[c["pass"]]
    assert comps.loc["HeadPoseYaw", "requirement"] == "within ±5"
    # the repaired preview only when the repair raises q, and labelled as a simulation
    shown = any(s.value == f"Repaired preview: {ref.top}" for s in at.subheader)
    assert shown == (ref.q_after > ref.q)
    if shown:
        assert len(at.get("image")) >= 2 and any("simulation" in c.value.lower() for c in at.caption)
    # a bad upload: a specific message, and the report of the last photo stays
    at.file_uploader(key="check_upload").set_value([("notes.jpg", b"this is not an image", "image/jpeg")]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("notes.jpg" in e.value and "not an image" in e.value for e in at.error)
    assert metric(at, "verdict") == doc["verdict"].upper()
    assert list(at.dataframe[0].value["region"]) == list(REGIONS)


def _check_page(sample=None, mode=None):
    at = AppTest.from_file(APP, default_timeout=300)
    if sample:
        at.session_state["check_sample"] = sample
    at.run()
    at.switch_page("views/check.py").run()
    if mode:
        at.radio(key="check_mode").set_value(mode).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.mark.slow
def test_check_page_shows_every_face_and_says_when_there_are_several(enc):
    """couple.jpg holds two people: the page says so, draws both boxes (the checked one
    solid, the other dashed) and the verdict comes with its reasons; the record downloads."""
    import json

    from qmag_core.vision.align import FaceDetector, detect_and_align

    at = _check_page("couple.jpg")
    a = detect_and_align(FACES / "couple.jpg", FaceDetector.for_encoder(enc), enc.spec, face="best")
    assert a.n_faces == 2
    assert any(f"{a.n_faces} faces in this photo" in w.value for w in at.warning)
    photo = json.loads(at.get("plotly_chart")[0].proto.spec)
    boxes = [s for s in photo["layout"]["shapes"] if s["type"] == "rect"]
    assert sorted(str(s.get("line", {}).get("dash")) for s in boxes) == ["None", "dash"]  # checked solid, other dashed
    from qmag_core.quality.components import assess_components
    from qmag_core.vision.images import load_image

    c = assess_components(a, load_image(FACES / "couple.jpg"))
    texts = [n.get("text") for n in photo["layout"]["annotations"]]  # the head's axes with the components' angles
    assert f"roll {c['HeadPoseRoll'].native:+.1f}°" in texts
    assert f"yaw {c['HeadPoseYaw'].native:+.1f}°, pitch {c['HeadPosePitch'].native:+.1f}°" in texts
    assert any(t.get("name") == "face mesh" for t in photo["data"])  # the 468 mesh points drawn
    assert any("because" in m.value for m in at.markdown)
    assert any("SingleFacePresent" in m.value and "more than one face" in m.value for m in at.markdown)
    assert at.get("download_button")
    comps = next(d.value for d in at.dataframe if "component" in d.value.columns)
    row = comps.set_index("component").loc["SingleFacePresent"]
    assert int(row["scalar (0–100, higher is better)"]) < 50  # the second face costs the component
    assert comps.set_index("component").loc["BackgroundUniformity", "value"] == "not assessed"
    assert comps.set_index("component").loc["EyesOpen", "value"] != "not assessed"


def test_check_page_without_the_mesh_runtime_says_so_and_keeps_the_report(enc, monkeypatch):
    """An OpenCV without the TFLite reader: the page names the fix in one message (no
    traceback) and still shows the verdict, the regions and the components it can measure."""
    import cv2

    from qmag_core.vision import face_mesh as fm

    def old_opencv(path):
        raise cv2.error("unsupported layer")

    fm._net.cache_clear()
    monkeypatch.setattr(cv2.dnn, "readNetFromTFLite", old_opencv)
    try:
        at = _check_page("img5.jpg")
    finally:
        fm._net.cache_clear()
    assert any("not assessed" in e.value and "OpenCV 5" in e.value for e in at.error), [e.value for e in at.error]
    assert metric(at, "verdict") in ("ACCEPT", "REJECT")
    comps = next(d.value for d in at.dataframe if "component" in d.value.columns).set_index("component")
    assert comps.loc["EyesOpen", "value"] == "not assessed"
    assert comps.loc["LuminanceMean", "value"] != "not assessed"  # measured on the aligned crop


@pytest.mark.slow
def test_check_page_applies_an_uploaded_profile_and_keeps_it_after_a_bad_one(enc):
    """A profile uploaded on the page replaces the ICAO thresholds in the verdict, the
    advice and the component table, as report_json with that profile gives; a bad profile
    gets a message naming the file and the field, and the profile in use stays."""
    import json

    from qmag_core.pipeline.checks import report_json
    from qmag_core.quality.check import check_crop
    from qmag_core.quality.requirements import default_profile, parse_profile, profile_json
    from qmag_core.quality.scale import scale_for
    from qmag_core.vision.align import FaceDetector, detect_and_align
    from qmag_core.vision.images import load_image

    def comps():
        return next(d.value for d in at.dataframe if "component" in d.value.columns).set_index("component")

    at = _check_page("couple.jpg")
    assert comps().loc["HeadPoseYaw", "result"] == "FAIL"  # turned 19°: ICAO wants ±5
    doc = json.loads(profile_json(default_profile()))
    doc["name"] = "lenient-pose"
    doc["requirements"]["HeadPoseYaw"] = {"abs_max": 45, "source": "a test"}
    data = json.dumps(doc).encode()
    at.file_uploader(key="check_profile_file").set_value(("lenient.json", data, "application/json")).run()
    assert not at.exception, [e.message for e in at.exception]
    assert comps().loc["HeadPoseYaw", "requirement"] == "within ±45"
    assert comps().loc["HeadPoseYaw", "result"] == "pass"
    assert any("because (lenient-pose profile)" in m.value for m in at.markdown)
    photo = load_image(FACES / "couple.jpg")
    a = detect_and_align(photo, FaceDetector.for_encoder(enc), enc.spec, face="best")
    sc = scale_for(enc)
    ref = report_json("couple.jpg", a, check_crop(enc, a.crop, sc), photo, profile=parse_profile(data, "x"), scale=sc)
    assert "HeadPoseYaw" not in ref["requirements_failed"]
    assert metric(at, "verdict") == ref["verdict"].upper()
    shown = " ".join(m.value for m in at.markdown)
    assert all(item["advice"] in shown for item in ref["advice"]) and "yaw within" not in shown
    bad = json.dumps({"requirements": {"HeadPoseYaw": {"abs_max": "wide"}}}).encode()
    at.file_uploader(key="check_profile_file").set_value(("bad.json", bad, "application/json")).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("bad.json" in e.value and "HeadPoseYaw" in e.value and "finite number" in e.value for e in at.error)
    assert comps().loc["HeadPoseYaw", "requirement"] == "within ±45"  # the last good profile stays


@pytest.mark.slow
def test_check_page_batch_table_filters_and_csv(enc, tmp_path):
    """Several photos at once: one row each with its verdict (a broken file as a failed
    row), filters for rejects and by flagged region, and the CSV of qmag check --csv."""
    from qmag_core.pipeline.checks import CSV_COLUMNS

    at = _check_page(mode="several photos")
    files = [(f"img{k}.jpg", (FACES / f"img{k}.jpg").read_bytes(), "image/jpeg") for k in (1, 5, 9)]
    files.append(("broken.jpg", b"not a photo", "image/jpeg"))
    at.file_uploader(key="check_batch").set_value(files).run()
    assert not at.exception, [e.message for e in at.exception]
    df = at.dataframe[0].value
    assert list(df["Filename"]) == ["img1.jpg", "img5.jpg", "img9.jpg", "broken.jpg"]
    assert df["Verdict"].iloc[-1] == "failed" and "not an image" in df["Error"].iloc[-1]
    assert set(df["Verdict"].iloc[:3]) <= {"accept", "reject"}
    at.toggle(key="check_batch_rejects").set_value(True).run()
    kept = at.dataframe[0].value
    assert set(kept["Verdict"]) <= {"reject", "failed"} and len(kept) == int((df["Verdict"] != "accept").sum())
    csv_text = next(b for b in at.get("download_button") if "qmag check --csv" in b.proto.label)
    assert csv_text is not None and list(CSV_COLUMNS)[0] == "Filename"
