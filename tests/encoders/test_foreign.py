"""Third-party ONNX face models (no qmag.* metadata), in the insightface convention:
one (N, 3, 112, 112) RGB input, (x - 127.5) / 127.5 on an ArcFace-112 crop, one
embedding output.  The model under test is built from a real network (the shipped
faceRecognitionNet behind a fixed ArcFace-112 -> dlib-150 resampling), exported without
our metadata, and checked against a direct onnxruntime run on the same crops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need_shared

from qmag_core.errors import QMagError

ROOT = Path(__file__).resolve().parents[2]
FACES = ROOT / "sample_data" / "faces" / "deepface"
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def _insightface_style_model(path: Path, *, nhwc: bool = False, size: int = 112) -> Path:
    """The shipped network as an insightface-convention graph, without qmag metadata
    (tools/make_insightface_model.py)."""
    pytest.importorskip("torch")
    from tools.make_insightface_model import make

    return make(path, nhwc=nhwc, size=size)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _insightface_style_model(tmp_path_factory.mktemp("m") / "w600k_r50.onnx")


def _direct(model_path: Path, crops: np.ndarray) -> np.ndarray:
    """The model run by onnxruntime directly, the insightface way."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    x = ((crops.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
    return s.run(None, {s.get_inputs()[0].name: np.ascontiguousarray(x)})[0]


def test_layout_is_read_from_the_graph_and_keys_follow_the_content(model, tmp_path):
    from qmag_core.encoders import open_onnx
    from qmag_core.encoders.foreign import ForeignOnnxEncoder, InputLayout
    from qmag_core.encoders.keys import file_key

    enc = open_onnx(model, device="cpu")
    assert isinstance(enc, ForeignOnnxEncoder) and enc.spec.name == "arcface-112" and enc.dim == 128
    assert enc.id == "onnx-" + file_key(model)[:12] and not enc.nhwc
    assert "weak" in enc.quality
    bgr = open_onnx(model, device="cpu", layout=InputLayout(bgr=True))
    assert bgr.id == enc.id and bgr.key != enc.key  # same file, other preprocessing: other cache key
    crops = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    np.testing.assert_allclose(enc.embed(crops), _direct(model, crops), rtol=1e-5, atol=1e-5)
    q = np.linalg.norm(enc.embed(crops), axis=1)
    assert np.allclose(enc.embed_with_raw(crops)[1], q)
    nhwc = open_onnx(_insightface_style_model(tmp_path / "nhwc.onnx", nhwc=True), device="cpu")
    assert nhwc.nhwc and np.allclose(nhwc.embed(crops), enc.embed(crops), atol=1e-4)


def test_graphs_that_cannot_take_a_face_crop_are_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from qmag_core.encoders import open_onnx

    def graph(name, shape, out_shape, dtype=TensorProto.FLOAT):
        x = helper.make_tensor_value_info("x", dtype, shape)
        y = helper.make_tensor_value_info("y", dtype, out_shape)
        g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.save(m, tmp_path / name)
        return tmp_path / name

    with pytest.raises(QMagError, match="a face crop is a float"):
        open_onnx(graph("text.onnx", ["N", 77], ["N", 77]))
    with pytest.raises(QMagError, match="a face crop is a float"):
        open_onnx(graph("one_channel.onnx", ["N", 1, 112, 112], ["N", 1, 112, 112]))
    with pytest.raises(QMagError, match="no output of shape"):
        open_onnx(graph("image_out.onnx", ["N", 3, 112, 112], ["N", 3, 112, 112]))
    with pytest.raises(QMagError, match="square"):
        open_onnx(graph("wide.onnx", ["N", 3, 112, 96], ["N", 3, 112, 96]))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(QMagError, match="not a loadable ONNX model"):
        open_onnx(tmp_path / "junk.onnx")


def test_cli_layout_flags_are_checked_like_arguments(model, tmp_path):
    def qmag(*args):
        return subprocess.run(
            [sys.executable, "-m", "qmag_core", *map(str, args)], capture_output=True, text=True, cwd=str(ROOT)
        )

    r = qmag("compare", FACES / "img1.jpg", FACES / "img2.jpg", "--onnx", model, "--mean", "abc")
    assert r.returncode == 2 and "--mean" in r.stderr and "Traceback" not in r.stderr
    r = qmag("compare", FACES / "img1.jpg", FACES / "img2.jpg", "--onnx", model, "--std", "0")
    assert r.returncode == 2 and "--std" in r.stderr.strip().splitlines()[-1]
    r = qmag("compare", FACES / "img1.jpg", FACES / "img2.jpg", "--onnx", model, "--input-size", "96")
    assert r.returncode == 2 and "takes 112×112 crops" in r.stderr
    r = qmag("compare", FACES / "img1.jpg", FACES / "img2.jpg", "--onnx", model, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["encoder"].startswith("onnx-") and rep["alpha"] is None  # no α/β are borrowed from another model
    assert "weak quality signal" in r.stderr


@pytest.mark.slow
def test_evaluate_with_a_foreign_model_equals_a_direct_onnxruntime_run(model, tmp_path):
    """Real LFW pairs (2 of the dev folds, 1,200 pairs): `qmag evaluate --onnx` gives the
    accuracy of the same model run directly on the same ArcFace-112 crops, and `qmag
    embed --onnx` its embeddings within 1e-5."""
    from qmag_core.evaluation import metrics as M
    from qmag_core.io import Pairs, load_embeddings, read_lfw_pairs
    from qmag_core.io.pairs import write_pairs_csv
    from qmag_core.vision.align import ARCFACE_112, FaceDetector, detect_and_align_batch
    from qmag_core.vision.images import load_image

    images = need_shared("lfw", "images")
    allp = read_lfw_pairs(need_shared("lfw", "pairs_dev.txt"))
    keep = np.isin(allp.fold, [0, 1])
    pairs = Pairs(allp.path1[keep], allp.path2[keep], allp.label[keep], allp.fold[keep], allp.line[keep], "")
    write_pairs_csv(tmp_path / "pairs.csv", pairs)
    env = {**os.environ, "QMAG_CACHE": str(tmp_path / "cache")}
    base = [sys.executable, "-m", "qmag_core"]
    r = subprocess.run(
        [*base, "evaluate", "--images", images, "--pairs", tmp_path / "pairs.csv", "--onnx", model, "--json",
         tmp_path / "r.json"], capture_output=True, text=True, env=env, cwd=str(ROOT),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    acc_cli = json.loads((tmp_path / "r.json").read_text())["baseline"]["accuracy"]
    paths = sorted(set(pairs.path1.tolist()) | set(pairs.path2.tolist()))
    (tmp_path / "list.txt").write_text("\n".join(paths) + "\n")
    cmd = [*base, "embed", "--list", tmp_path / "list.txt", "--root", images, "--onnx", model]
    r = subprocess.run([*cmd, "--out", tmp_path / "e.npz"], capture_output=True, text=True, env=env, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr
    emb = load_embeddings(tmp_path / "e.npz")
    det = FaceDetector(runtime="onnx")
    photos = [load_image(images / p) for p in paths]
    aligned = []
    for k in range(0, len(photos), 32):
        aligned += detect_and_align_batch(photos[k : k + 32], det, ARCFACE_112)
    ok = np.array([a is not None for a in aligned])
    assert np.array_equal(ok, emb.ok) and ok.mean() > 0.99
    direct = _direct(model, np.stack([a.crop for a in aligned if a is not None]))
    assert np.abs(direct - emb.embeddings[ok]).max() < 1e-5
    unit = direct / np.linalg.norm(direct, axis=1, keepdims=True)
    row = {p: k for k, p in enumerate(np.asarray(paths)[ok])}
    both = np.array([a in row and b in row for a, b in zip(pairs.path1, pairs.path2, strict=True)])
    s = np.einsum("ij,ij->i", unit[[row[a] for a in pairs.path1[both]]], unit[[row[b] for b in pairs.path2[both]]])
    acc_direct = M.kfold_accuracy(s, pairs.label[both], pairs.fold[both]).mean
    assert abs(acc_cli - acc_direct) <= 0.003, (acc_cli, acc_direct)
    assert acc_direct > 0.95  # a real network on real faces


@pytest.mark.slow
def test_dashboard_lists_the_models_folder_and_refuses_bad_graphs(model, tmp_path, monkeypatch):
    """<data root>/models/*.onnx are encoders in the sidebar; a refused graph is named
    and the page keeps working on the built-in encoder; links out of the root are not
    offered."""
    import shutil

    from streamlit.testing.v1 import AppTest

    root = tmp_path / "data"
    (root / "models").mkdir(parents=True)
    shutil.copy(model, root / "models" / "r50.onnx")
    (root / "models" / "broken.onnx").write_bytes(b"not a model")
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(model, outside)
    (root / "models" / "link.onnx").symlink_to(outside)
    monkeypatch.setenv("QMAG_DATA_ROOT", str(root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    options = at.selectbox(key="w_encoder_id").options
    assert "model: r50.onnx" in options and "model: broken.onnx" in options
    assert not any("link.onnx" in o for o in options)
    at.selectbox(key="w_encoder_id").set_value("model:broken.onnx").run()
    errs = [e.value for e in at.sidebar.error]
    assert any("Encoder not loaded" in e and "broken.onnx" in e and "not a loadable ONNX model" in e for e in errs)
    assert not at.exception
    at.selectbox(key="w_encoder_id").set_value("model:r50.onnx").run()
    assert not at.exception and not [e for e in at.sidebar.error if "Encoder not loaded" in e.value]
    qs = [float(m.value) for m in at.metric if m.label.startswith("quality q")]
    assert len(qs) == 2 and all(q > 0 for q in qs)  # the Compare page ran the registered model


@pytest.mark.slow
def test_embedding_quality_head_for_a_model_without_one(model, tmp_path):
    """qmag train-quality --onnx MODEL: a utility head on the embedding alone, trained on
    identity-disjoint folders, written beside the model and picked up by its key; its q
    falls with degradation on identities it never saw."""
    import shutil

    from qmag_core.encoders import open_onnx
    from qmag_core.quality.degrade import degrade
    from qmag_core.quality.embedding_head import head_path_for, load_embedding_head
    from qmag_core.vision.images import load_image

    glint = need_shared("glint24")
    people = sorted(p for p in glint.iterdir() if p.is_dir())
    data = tmp_path / "train"
    for person in people[:8]:
        (data / person.name).mkdir(parents=True)
        for f in sorted(person.glob("*.jpg"))[:8]:
            shutil.copy(f, data / person.name / f.name)
    m = tmp_path / "models" / "r50.onnx"
    m.parent.mkdir()
    shutil.copy(model, m)
    plain = open_onnx(m, device="cpu")
    r = subprocess.run(
        [sys.executable, "-m", "qmag_core", "train-quality", "--onnx", str(m), "--data", str(data), "--aligned",
         "--family", "crop", "--degraded", "3"], capture_output=True, text=True, cwd=str(ROOT),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    head = load_embedding_head(head_path_for(m))
    assert head.encoder_key == plain.key and head.meta["identities"] == [6, 2]
    enc = open_onnx(m, device="cpu")
    assert enc.head is not None and enc.key != plain.key and "utility head" in enc.quality
    unseen = [load_image(f) for p in people[12:18] for f in sorted(p.glob("*.jpg"))[:4]]
    crops = np.stack([c for c in unseen])
    rng = np.random.default_rng(0)
    worse = np.stack([degrade(c, "blur", 1.0, rng) for c in crops])
    q_clean, q_blur = np.linalg.norm(enc.embed(crops), axis=1), np.linalg.norm(enc.embed(worse), axis=1)
    assert (q_clean > q_blur).mean() > 0.8, q_clean - q_blur
    e, raw = enc.embed_with_raw(crops)
    assert np.allclose(np.linalg.norm(e, axis=1), q_clean, rtol=1e-5)
    assert np.allclose(raw, np.linalg.norm(plain.embed(crops), axis=1), rtol=1e-5)
    cos = np.sum(e * plain.embed(crops), 1) / np.linalg.norm(e, axis=1) / raw
    assert cos.min() > 0.99999  # the head changes the length only, never the direction


def test_shipped_graphs_skip_the_external_data_scan_only_because_they_have_none(tmp_path):
    """The package's own graphs are not read with onnx to look for external data (half a
    second per process); they hold none, so nothing is lost; a copy elsewhere is read."""
    pytest.importorskip("onnx")
    from qmag_core.encoders.foreign import _locations, model_files, shipped_asset
    from qmag_core.encoders.onnx import SHIPPED_MODEL

    assert shipped_asset(SHIPPED_MODEL) and not shipped_asset(tmp_path / "builtin.onnx")
    st = SHIPPED_MODEL.stat()
    assert _locations(str(SHIPPED_MODEL), SHIPPED_MODEL.name, st.st_size, st.st_mtime_ns) == ()
    copy = tmp_path / "builtin.onnx"
    copy.write_bytes(SHIPPED_MODEL.read_bytes())
    before = _locations.cache_info().misses
    assert model_files(copy) == [copy]
    assert _locations.cache_info().misses == before + 1  # the user's copy was read
