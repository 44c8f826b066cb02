"""Template verification (IJB layout): pooling, chunked scoring and TAR@FAR against
literal per-template / per-pair computations; protocol files checked; an end-to-end run
on real photos in the IJB layout."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import need_shared, run_cli

from qmag_core.errors import DataFormatError, QMagError
from qmag_core.evaluation import metrics as M
from qmag_core.evaluation.templates import (
    TemplateProtocol,
    evaluate_templates,
    pool_templates,
    read_protocol,
    score_template_pairs,
    tar_at_far,
)


def _toy(seed=0, n_t=40, d=16):
    rng = np.random.default_rng(seed)
    tid = np.repeat(np.arange(100, 100 + n_t), rng.integers(1, 6, n_t))
    mid = rng.integers(0, 3, tid.size)
    x = rng.normal(size=(tid.size, d)) * rng.uniform(5, 30, (tid.size, 1))
    ok = rng.random(tid.size) > 0.1
    return tid, mid, x, ok


def _literal_pool(x, ok, tid, mid, rule):
    """Per template, by loops: the pooling rules as the module docstring states them."""
    out = {}
    for t in np.unique(tid):
        media = []
        for m in np.unique(mid[tid == t]):
            sel = (tid == t) & (mid == m) & ok
            if not sel.any():
                continue
            f, q = x[sel], np.linalg.norm(x[sel], axis=1)
            u = f / q[:, None]
            if rule == "mean":
                media.append((u.mean(0), q.mean()))
            elif rule == "magface":
                media.append((f.mean(0), None))
            elif rule == "softmax":
                w = np.exp((q - q.max()) / T_TEST)
                w /= w.sum()
                media.append(((w[:, None] * u).sum(0), (w * q).sum()))
            else:
                media.append(((q[:, None] * u).sum(0), (q**2).sum() / q.sum()))
        if not media:
            out[t] = None
            continue
        F = np.array([m[0] for m in media])
        if rule == "mean":
            v, qt = F.mean(0), np.mean([m[1] for m in media])
        elif rule == "magface":
            v = F.mean(0)
            qt = np.linalg.norm(v)
        elif rule == "softmax":
            qm = np.array([m[1] for m in media])
            w = np.exp((qm - qm.max()) / T_TEST)
            w /= w.sum()
            v = (w[:, None] * F / np.linalg.norm(F, axis=1, keepdims=True)).sum(0)
            qt = (w * qm).sum()
        else:
            qm = np.array([m[1] for m in media])
            v = (qm[:, None] * F / np.linalg.norm(F, axis=1, keepdims=True)).sum(0)
            qt = (qm**2).sum() / qm.sum()
        out[t] = (v / np.linalg.norm(v), qt)
    return out


T_TEST = 3.0


@pytest.mark.parametrize("rule", ["mean", "magface", "qmagface", "softmax"])
def test_pooling_matches_literal_loops(rule):
    tid, mid, x, ok = _toy()
    ok[tid == 103] = False  # a template with no usable image
    x[5] = np.nan  # an unusable feature marked ok: left out too
    ok_lit = ok & np.isfinite(x).all(axis=1)
    t = pool_templates(x, ok, tid, mid, rule, temperature=T_TEST)
    lit = _literal_pool(x, ok_lit, tid, mid, rule)
    assert t.ids.tolist() == sorted(lit)
    for k, tt in enumerate(t.ids):
        if lit[tt] is None:
            assert not t.ok[k] and np.isnan(t.features[k]).all()
            continue
        np.testing.assert_allclose(t.features[k], lit[tt][0], atol=1e-6)
        assert t.quality[k] == pytest.approx(lit[tt][1], rel=1e-6)  # float32 features


def test_chunked_scores_equal_per_pair_and_failures_do_not_match(monkeypatch):
    import qmag_core.evaluation.templates as T

    monkeypatch.setattr(T, "_BLOCK_FLOATS", 7 * 40)  # blocks of 7 templates: several blocks
    tid, mid, x, ok = _toy(1)
    ok[tid == 105] = False
    t = pool_templates(x, ok, tid, mid, "qmagface")
    rng = np.random.default_rng(2)
    pairs = rng.choice(t.ids, (500, 2))
    ref = np.array([t.features[np.searchsorted(t.ids, a)] @ t.features[np.searchsorted(t.ids, b)] for a, b in pairs])
    for chunk, method in ((1, "gather"), (7, "gather"), (500, "gather"), (None, "blocks"), (None, "auto")):
        s, q_min, good = score_template_pairs(t, pairs, chunk=chunk, method=method)
        pos = np.searchsorted(t.ids, pairs)
        assert np.array_equal(good, t.ok[pos].all(axis=1)) and not good[np.isin(pairs, 105).any(axis=1)].any()
        np.testing.assert_allclose(s[good], ref[good], atol=1e-6)
        assert np.isnan(s[~good]).all()
    qa, qb = t.quality[np.searchsorted(t.ids, pairs[:, 0])], t.quality[np.searchsorted(t.ids, pairs[:, 1])]
    np.testing.assert_allclose(q_min[good], np.minimum(qa, qb)[good])


def test_tar_at_far_both_conventions_match_their_definitions():
    rng = np.random.default_rng(3)
    g, i = rng.normal(2, 1, 3000), rng.normal(0, 1, 20000).round(2)  # ties among imposters
    r = tar_at_far(g, i, fars=(1e-5, 1e-4, 1e-3, 1e-2, 1e-1))
    assert r["tar_at_far"]["0.00001"] is None and "20,000 imposter pairs" in r["tar_at_far_null_reason"]["0.00001"]
    thr = np.unique(np.r_[g, i, np.inf])
    far = np.array([(i >= t).mean() for t in thr])
    tar = np.array([(g >= t).mean() for t in thr])
    for f in (1e-4, 1e-3, 1e-2, 1e-1):
        assert r["tar_at_far"][M.fmr_key(f)] == pytest.approx(tar[far <= f].max())  # highest TAR, FAR <= target
        k = np.flatnonzero(np.abs(far - f) == np.abs(far - f).min())
        assert np.isclose(r["tar_at_far_closest"][M.fmr_key(f)], tar[k]).any()  # the ROC point nearest in FAR
    assert r["eer"] == pytest.approx(M.eer(g, i).value)


def test_evaluate_templates_report_and_qmagface_scores():
    from qmag_core.scores.params import QMagFaceParams
    from qmag_core.scores.scoring import qmagface_score

    tid, mid, x, ok = _toy(4, n_t=60)
    ids = np.unique(tid)
    rng = np.random.default_rng(5)
    pairs = rng.choice(ids, (400, 2))
    label = (rng.random(400) < 0.2).astype(np.int8)
    prot = TemplateProtocol("toy", np.array([f"{k}.jpg" for k in range(tid.size)]), tid, mid, pairs, label)
    p = QMagFaceParams(alpha=0.02, beta=0.03)
    rep = evaluate_templates(prot, x, ok, params=p, fars=(1e-2, 1e-1))
    assert (
        rep["n_templates"] == ids.size
        and rep["n_pairs"] == 400
        and set(rep["pooling"])
        == {
            "softmax",
            "mean",
            "magface",
            "qmagface",
        }
    )
    t = pool_templates(x, ok, tid, mid, "magface")
    s, q, good = score_template_pairs(t, pairs)
    sh = np.where(good, qmagface_score(np.nan_to_num(s), np.nan_to_num(q), 0.02, 0.03), M.FAILED_SCORE)
    y = label.astype(bool)
    assert rep["pooling"]["magface"]["qmagface"]["eer"] == pytest.approx(M.eer(sh[y], sh[~y]).value)
    json.dumps(rep)  # plain JSON


def _write_protocol(d: Path, faces, pairs, pts=None, name="ijbc"):
    (d / "meta").mkdir(parents=True, exist_ok=True)
    (d / "meta" / f"{name}_face_tid_mid.txt").write_text("".join(f"{a} {b} {c}\n" for a, b, c in faces))
    (d / "meta" / f"{name}_template_pair_label.txt").write_text("".join(f"{a} {b} {c}\n" for a, b, c in pairs))
    if pts is not None:
        (d / "meta" / f"{name}_name_5pts_score.txt").write_text(pts)


def test_protocol_files_are_checked(tmp_path):
    d = tmp_path / "ijb"
    _write_protocol(d, [("1.jpg", 1, 1), ("2.jpg", 2, 2)], [(1, 2, 0)])
    prot = read_protocol(d)  # the only protocol in meta/
    assert prot.name == "ijbc" and prot.pairs.tolist() == [[1, 2]] and prot.landmarks is None
    _write_protocol(d, [("1.jpg", 1, 1), ("2.jpg", 2, 2)], [(1, 3, 0)])
    with pytest.raises(DataFormatError, match=r"1 pairs name a template with no image \(first: \[1, 3\]\)"):
        read_protocol(d)
    _write_protocol(d, [("1.jpg", 1, 1), ("2.jpg", 2, 2)], [(1, 2, 5)])
    with pytest.raises(DataFormatError, match="labels must be 0 or 1"):
        read_protocol(d)
    _write_protocol(d, [("1.jpg", 1, 1), ("../../etc/passwd", 2, 2)], [(1, 2, 0)])
    with pytest.raises(DataFormatError, match=r"line 2: image path '\.\./\.\./etc/passwd' lies outside loose_crop"):
        read_protocol(d)
    (d / "meta" / "ijbc_face_tid_mid.txt").write_text("1.jpg 1 1\n2.jpg 2\n")
    with pytest.raises(DataFormatError, match="line 2: a face/template/media list needs 3 fields per line"):
        read_protocol(d)
    (d / "meta" / "ijbc_face_tid_mid.txt").write_text("1.jpg 1 1\n2.jpg two 2\n")
    with pytest.raises(DataFormatError, match="not a face/template/media list"):
        read_protocol(d)
    _write_protocol(d, [("1.jpg", 1, 1), ("2.jpg", 2, 2)], [(1, 2, 0)], pts="1.jpg " + "1 " * 10 + "0.9\n")
    with pytest.raises(DataFormatError, match="no landmarks for 1 images"):
        read_protocol(d)
    # a symlink inside loose_crop/ leading out: refused before anything is read (no encoder needed)
    from qmag_core.pipeline.datasets import embed_protocol

    (d / "loose_crop").mkdir()
    (d / "loose_crop" / "2.jpg").symlink_to("/etc/passwd")
    pts = "".join(f"{n} " + "1 " * 10 + "0.9\n" for n in ("1.jpg", "2.jpg"))
    _write_protocol(d, [("1.jpg", 1, 1), ("2.jpg", 2, 2)], [(1, 2, 0)], pts=pts)
    with pytest.raises(DataFormatError, match="'2.jpg' lies outside the image folder"):
        embed_protocol(read_protocol(d), None, cache_dir=None)
    (d / "meta" / "ijbc_name_5pts_score.txt").unlink()
    with pytest.raises(DataFormatError, match="'2.jpg' lies outside the image folder"):
        embed_protocol(read_protocol(d), None, cache_dir=None)
    _write_protocol(d, [("1.jpg", 1, 1)], [(1, 1, 1)], name="ijbb")
    with pytest.raises(QMagError, match="2 protocols"):
        read_protocol(d)
    with pytest.raises(QMagError, match="no meta/ folder"):
        read_protocol(tmp_path)


@pytest.fixture(scope="module")
def real_ijb(tmp_path_factory):
    """An IJB-layout protocol from original LFW photos (several faces in some): 6 persons,
    2 templates each of 3 photos in 2 media; landmarks from MTCNN (the subject rule)."""
    from PIL import Image

    from qmag_core.vision.align import FaceDetector, choose_face
    from qmag_core.vision.images import load_image

    photos = need_shared("lfw_photos", "images")
    persons = ["Abdullah_Gul", "Adrien_Brody", "Alejandro_Toledo", "Andre_Agassi", "Angelina_Jolie", "Bill_Gates"]
    d = tmp_path_factory.mktemp("ijb")
    (d / "loose_crop").mkdir()
    det = FaceDetector()
    faces, pts, tids = [], [], []
    for p_i, person in enumerate(persons):
        files = sorted((photos / person).glob("*.jpg"))[:6]
        for k, f in enumerate(files):
            name = f"{person}_{k}.jpg"
            Image.open(f).save(d / "loose_crop" / name)
            img = load_image(f)
            fs = det.detect(img)
            face = fs[choose_face(fs, (img.shape[1], img.shape[0]))]
            t = 10 * p_i + k // 3  # two templates per person
            faces.append((name, t, 100 * t + (k % 3 == 2)))  # photos 0-1 one media, photo 2 another
            pts.append(name + " " + " ".join(f"{v:.3f}" for v in face.landmarks.ravel()) + f" {face.score:.4f}\n")
            tids.append(t)
    ts = sorted(set(tids))
    pairs = [(a, b, int(a // 10 == b // 10)) for i, a in enumerate(ts) for b in ts[i + 1 :]]
    _write_protocol(d, faces, pairs, pts="".join(pts))
    return d


@pytest.mark.slow
def test_ijb_end_to_end_on_real_photos_matches_brute_force(real_ijb, tmp_path):
    from qmag_core.encoders import load_encoder
    from qmag_core.vision.align import align
    from qmag_core.vision.images import load_image

    out = tmp_path / "rep.json"
    r = run_cli("evaluate", "--ijb", real_ijb, "--json", out, "--cache-dir", tmp_path / "cache")
    assert "TAR@0.1" in r.stdout and "qmagface" in r.stdout
    rep = json.loads(out.read_text())
    assert rep["n_templates"] == 12 and rep["n_pairs"] == 66 and rep["n_genuine"] == 6 and rep["n_images_failed"] == 0
    # brute force: every image aligned from its landmark line, pooled by loops, each pair scored alone
    prot = read_protocol(real_ijb)
    enc = load_encoder("builtin", device="cpu")
    crops = [
        align(load_image(real_ijb / "loose_crop" / im), lm, enc.spec).crop
        for im, lm in zip(prot.images, prot.landmarks, strict=True)
    ]
    x = enc.embed(np.stack(crops)).astype(np.float64)
    from qmag_core.scores.params import QMagFaceParams
    from qmag_core.scores.scoring import qmagface_score

    p = QMagFaceParams.shipped("builtin")
    y = prot.label.astype(bool)
    for rule in ("mean", "magface", "qmagface"):
        lit = _literal_pool(x, np.ones(len(x), bool), prot.tid, prot.mid, rule)
        s = np.array([lit[a][0] @ lit[b][0] for a, b in prot.pairs])
        qm = np.array([min(lit[a][1], lit[b][1]) for a, b in prot.pairs])
        sh = qmagface_score(s, qm, p.alpha, p.beta)
        got = rep["pooling"][rule]
        assert got["cosine"]["eer"] == pytest.approx(M.eer(s[y], s[~y]).value, abs=1e-9)
        assert got["qmagface"]["eer"] == pytest.approx(M.eer(sh[y], sh[~y]).value, abs=1e-9)
        ref = tar_at_far(s[y], s[~y])
        assert got["cosine"]["tar_at_far"] == pytest.approx(ref["tar_at_far"])
    # resumable: a second run reads every image from the cache and gives the same report
    out2 = tmp_path / "rep2.json"
    run_cli("evaluate", "--ijb", real_ijb, "--json", out2, "--cache-dir", tmp_path / "cache")
    assert json.loads(out2.read_text())["pooling"] == rep["pooling"]


@pytest.mark.slow
def test_ijb_with_precomputed_features_and_without_landmarks(real_ijb, tmp_path):
    import shutil

    d = tmp_path / "ijb"
    shutil.copytree(real_ijb, d)
    (d / "meta" / "ijbc_name_5pts_score.txt").unlink()  # no landmarks: faces are detected
    emb = tmp_path / "emb.npz"
    run_cli("embed", "--images", d / "loose_crop", "--out", emb, "--cache-dir", tmp_path / "cache")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    run_cli("evaluate", "--ijb", d, "--json", a, "--cache-dir", tmp_path / "cache")
    r = run_cli("evaluate", "--ijb", d, "--features", emb, "--json", b, "--params", _shipped())
    assert json.loads(a.read_text())["pooling"] == json.loads(b.read_text())["pooling"]
    assert "trained on q" not in r.stderr
    bad = run_cli("evaluate", "--ijb", d, "--scores", emb, check=False)
    assert bad.returncode == 2 and "--ijb goes alone" in bad.stderr


def _shipped():
    return Path(__file__).resolve().parents[2] / "qmag_core" / "assets" / "params" / "builtin.json"


@pytest.mark.slow
def test_dataset_page_opens_a_template_protocol(real_ijb, monkeypatch):
    """The Dataset page loads an IJB-layout folder under the data root: one row per template
    pair, the EER shown equals the template table's."""
    from streamlit.testing.v1 import AppTest

    from qmag_core.encoders import load_encoder
    from qmag_core.evaluation.templates import template_table
    from qmag_core.pipeline.datasets import embed_protocol

    monkeypatch.setenv("QMAG_DATA_ROOT", str(real_ijb.parent))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=300).run()
    at.switch_page("views/dataset.py").run()
    at.text_input(key="srv_ijb").set_value(real_ijb.name).run()
    at.selectbox(key="ijb_pooling").set_value("mean").run()
    at.button(key="load_ijb").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    prot = read_protocol(real_ijb)
    enc = load_encoder("builtin", device="cpu")
    t = template_table(prot, *embed_protocol(prot, enc)[:2], "mean")
    y = t.label.astype(bool)
    shown = next(m.value for m in at.metric if m.label == "EER cosine")
    assert shown == f"{100 * M.eer(t.s[y], t.s[~y]).value:.3f}%" and len(t) == 66
    assert "(ijbc, mean)" in at.selectbox(key="w_dataset_id").value


def test_softmax_pooling_limits():
    """T large: the mean rule's directions; T small: the best image of each template."""
    tid, mid, x, ok = _toy(2)
    mid[:] = 0  # one media per template: the limits are per image
    hot = pool_templates(x, ok, tid, mid, "softmax", temperature=1e6)
    mean = pool_templates(x, ok, tid, mid, "mean")
    np.testing.assert_allclose(hot.features[hot.ok], mean.features[mean.ok], atol=1e-4)
    cold = pool_templates(x, ok, tid, mid, "softmax", temperature=1e-3)
    q = np.linalg.norm(x, axis=1)
    for k, t in enumerate(cold.ids):
        sel = np.flatnonzero((tid == t) & ok)
        if sel.size:
            best = sel[np.argmax(q[sel])]
            np.testing.assert_allclose(cold.features[k], x[best] / q[best], atol=1e-5)
            assert cold.quality[k] == pytest.approx(q[best], rel=1e-5)
    with pytest.raises(QMagError, match="temperature"):
        pool_templates(x, ok, tid, mid, "softmax", temperature=0)


@pytest.mark.parametrize(
    ("face_list", "needle"),
    [
        ("1.jpg 99999999999999999999999 1\n", "beyond 64-bit integers"),
        ("1.jpg 1 1 " + "x" * 2_000_000 + "\n", "QMAG_MAX_LINE_BYTES"),
    ],
    ids=["id-beyond-int64", "line-beyond-limit"],
)
def test_meta_files_beyond_integers_or_the_line_limit_are_one_line_errors(tmp_path, face_list, needle):
    """Before: a template id beyond int64 was an internal error, and the meta reader did
    not apply the line limit."""
    d = tmp_path / "ijb"
    (d / "meta").mkdir(parents=True)
    (d / "loose_crop").mkdir()
    (d / "meta" / "x_face_tid_mid.txt").write_text(face_list)
    (d / "meta" / "x_template_pair_label.txt").write_text("1 1 1\n")
    r = run_cli("evaluate", "--ijb", d, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert needle in r.stderr and "x_face_tid_mid.txt" in r.stderr
