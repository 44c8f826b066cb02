"""The torch-free path (``pip install .[onnx,app]``): MTCNN in numpy + onnxruntime against
facenet-pytorch, the shipped ONNX encoders against torch, the commands with torch made
unimportable, and (in CI) a real fresh venv without torch."""

import json
import os
import subprocess

import numpy as np
import pytest
from conftest import IN_CI, ROOT, need_shared, run_cli

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install .[onnx])")

from qmag_core.encoders import builtin_key, load_encoder  # noqa: E402
from qmag_core.encoders.onnx import SHIPPED_MODEL, OnnxEncoder, shipped_encoder  # noqa: E402
from qmag_core.errors import QMagError  # noqa: E402
from qmag_core.vision.align import FaceDetector  # noqa: E402
from qmag_core.vision.images import load_image  # noqa: E402
from qmag_core.vision.mtcnn_onnx import OnnxMTCNN, area_resize, nms  # noqa: E402

FACES = ROOT / "sample_data" / "faces" / "deepface"


def _rel(a, b):
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize(
    "shape,size", [((250, 250), (150, 150)), ((97, 131), (24, 24)), ((31, 20), (48, 48)), ((13, 17), (13, 17))]
)
def test_area_resize_is_torch_area_interpolation(shape, size):
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ref = torch.nn.functional.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None].float(), size=size, mode="area")
    np.testing.assert_allclose(area_resize(img, size), ref[0].permute(1, 2, 0).numpy(), atol=2e-4)


def test_nms_matches_torchvision_and_min_overlap():
    tv = pytest.importorskip("torchvision")
    import torch

    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 200, (300, 2))
    b = np.c_[xy, xy + rng.uniform(5, 60, (300, 2))].astype(np.float32)
    s = rng.random(300).astype(np.float32)
    for t in (0.3, 0.5, 0.7):
        ref = tv.ops.nms(torch.from_numpy(b), torch.from_numpy(s), t).numpy()
        np.testing.assert_array_equal(nms(b, s, t), ref)
    # "Min": a box inside a bigger one overlaps it fully, whatever the IoU
    inner = np.array([[0, 0, 100, 100], [10, 10, 30, 30]], np.float32)
    assert nms(inner, np.array([0.9, 0.8]), 0.7, "min").tolist() == [0]
    assert nms(inner, np.array([0.9, 0.8]), 0.7).tolist() == [0, 1]


def _facenet():
    pytest.importorskip("facenet_pytorch")
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.7], post_process=False)


def _compare_detectors(files):
    """Worst box and landmark difference (px) over ``files``; counts must agree."""
    import torch

    ref, onx = _facenet(), OnnxMTCNN()
    worst, faces = 0.0, 0
    for f in files:
        img = load_image(f)
        with torch.inference_mode():
            bb, pp, ll = ref.detect(img, landmarks=True)
        b, p, lm = onx.detect_one(img)
        if bb is None:
            assert len(b) == 0, f
            continue
        bb, pp, ll = (np.asarray(np.stack([np.asarray(x, float) for x in v]), float) for v in (bb, pp, ll))
        assert len(b) == len(bb), f
        worst = max(worst, np.abs(b - bb).max(), np.abs(lm - ll).max())
        np.testing.assert_allclose(p, pp, atol=1e-4)
        faces += len(b)
    return worst, faces


@pytest.mark.slow
def test_onnx_mtcnn_matches_facenet_on_sample_photos():
    files = sorted(FACES.glob("*.jpg"))  # includes couple.jpg (two faces)
    worst, faces = _compare_detectors(files)
    assert faces > len(files) and worst < 0.5


@pytest.mark.slow
def test_onnx_mtcnn_matches_facenet_on_uncropped_lfw_photos():
    """Boxes, probabilities and landmarks within 0.5 px of facenet-pytorch on 200 original
    LFW photos (250×250, often several people)."""
    files = sorted(need_shared("lfw_photos", "images").rglob("*.jpg"))[::3][:200]
    worst, faces = _compare_detectors(files)
    assert len(files) == 200 and faces > 220 and worst < 0.5


def test_detector_runtime_follows_the_encoder():
    onx = load_encoder("builtin", runtime="onnx", device="cpu")
    assert FaceDetector.for_encoder(onx).runtime == "onnx"
    with pytest.raises(QMagError, match="runtime must be one of"):
        FaceDetector(runtime="tensorflow")


def test_shipped_onnx_names_the_current_encoders():
    """A retrained head without a re-export is caught: the shipped graph's keys are the
    package's (tools/export_light_models.py writes them)."""
    for enc_id in ("builtin", "builtin-raw"):
        enc = shipped_encoder(enc_id, device="cpu")
        assert enc.key == builtin_key(enc_id) + "-onnx" and enc.id == enc_id
    assert shipped_encoder("builtin", flip=True, device="cpu").key == builtin_key("builtin", flip=True) + "-onnx"
    assert SHIPPED_MODEL.stat().st_size < 8_000_000  # weights stored as uint8 lookups, not float32


def test_stale_shipped_model_is_refused(monkeypatch):
    import qmag_core.encoders.keys as K

    monkeypatch.setattr(K, "builtin_key", lambda *a, **k: "builtin-0000-1111")
    with pytest.raises(QMagError, match="run tools/export_light_models.py"):
        shipped_encoder("builtin", device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("enc_id", ["builtin", "builtin-raw"])
def test_shipped_onnx_matches_torch_on_real_crops(enc_id):
    from qmag_core.vision.align import ARCFACE_112, DLIB_150, realign_aligned

    files = sorted(need_shared("glint24").rglob("*.jpg"))[::23][:120]
    crops = np.stack([realign_aligned(load_image(f), ARCFACE_112, DLIB_150).crop for f in files])
    ref = load_encoder(enc_id, runtime="torch", device="cpu")
    got = load_encoder(enc_id, runtime="onnx", device="cpu")
    assert isinstance(got, OnnxEncoder) and (got.id, got.dim, got.spec) == (ref.id, ref.dim, ref.spec)
    assert _rel(got.embed(crops, 50), ref.embed(crops)).max() < 1e-4
    e1, r1 = ref.embed_with_raw(crops[:30])
    e2, r2 = got.embed_with_raw(crops[:30])
    np.testing.assert_allclose(r2, r1, rtol=1e-4)
    flip_ref = load_encoder(enc_id, runtime="torch", device="cpu", flip=True).embed(crops[:20])
    flip_got = load_encoder(enc_id, runtime="onnx", device="cpu", flip=True).embed(crops[:20])
    assert _rel(flip_got, flip_ref).max() < 1e-4


def _photo_set(tmp_path, n_pairs=12):
    """Original LFW photos of the first dev pairs (both kinds) plus a file that is no
    image, under ``tmp_path/imgs``, and an LFW pairs file that uses the broken one."""
    import shutil

    src = need_shared("lfw_photos")
    lines = (src / "pairs_dev.txt").read_text().splitlines()[1:]
    pos = [x.split("\t") for x in lines[:n_pairs]]
    neg = [x.split("\t") for x in lines[300 : 300 + n_pairs]]
    for f in pos + neg:
        ids = [(f[0], f[1]), (f[0], f[2])] if len(f) == 3 else [(f[0], f[1]), (f[2], f[3])]
        for name, i in ids:
            p = tmp_path / "imgs" / name / f"{name}_{int(i):04d}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / "images" / name / p.name, p)
    bad = tmp_path / "imgs" / "Broken" / "Broken_0001.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"not a jpeg at all")
    rows = [f"1\t{n_pairs + 1}"] + ["\t".join(f) for f in pos] + ["Broken\t1\t1"]
    rows += ["\t".join(f) for f in neg] + [f"Broken\t1\t{pos[0][0]}\t{pos[0][1]}"]
    (tmp_path / "pairs.txt").write_text("\n".join(rows) + "\n")
    return tmp_path / "imgs", tmp_path / "pairs.txt"


def _same_as_torch(npz, images):
    """The torch pipeline (facenet MTCNN + torch encoder) on the same files gives the
    same rows and failures, and the same embeddings: on identical crops the encoders agree
    to 1e-6 (test above); from photos the landmarks differ by ~5e-5 px, which flips a few
    pixels of the uint8 aligned crop by one level, so the typical relative difference is
    ~5e-5 (median < 1e-4) and the worst few ~3e-4 (cosine > 1 − 1e-7).  The reference
    detects one image at a time: facenet-pytorch's boxes move with the batch an image is
    in (float reductions; 3.7 px on one of these photos), the ONNX detector's do not."""
    from qmag_core.io.embeddings import load_embeddings
    from qmag_core.pipeline.embed import embed_files

    got = load_embeddings(npz)
    enc = load_encoder("builtin", runtime="torch", device="cpu")
    ref = embed_files(list(got.paths), images, enc, cache_dir=None, batch_size=1)
    np.testing.assert_array_equal(got.ok, ref.ok)
    assert [bool(e) for e in got.error] == [bool(e) for e in ref.error]
    assert got.ok.sum() >= 40 and (~got.ok).sum() >= 1
    rel = _rel(got.embeddings[got.ok], ref.embeddings[ref.ok])
    assert np.median(rel) < 1e-4 and rel.max() < 1e-3, np.sort(rel)[-5:]
    assert got.encoder_key == ref.encoder_key + "-onnx"


@pytest.mark.slow
def test_commands_run_without_torch(tmp_path):
    """compare, embed, evaluate, check and explain --method occlusion with torch unimportable
    (as in the light install); what needs torch says so."""
    images, pairs = _photo_set(tmp_path)
    a, b = sorted(images.rglob("*_0001.jpg"))[:2]
    r = run_cli("compare", a, b, "--json", no_torch=True)
    rep = json.loads(r.stdout)
    ref = json.loads(run_cli("compare", a, b, "--json").stdout)
    assert rep["pairs"][0]["s"] == pytest.approx(ref["pairs"][0]["s"], abs=1e-4)
    run_cli("embed", "--images", images, "--out", tmp_path / "e.npz", "--no-cache", no_torch=True)
    _same_as_torch(tmp_path / "e.npz", images)
    out = tmp_path / "r.json"
    run_cli("evaluate", "--images", images, "--pairs", pairs, "--json", out, "--no-cache", no_torch=True)
    report = json.loads(out.read_text())
    assert report["pairs_report"]["fta_rate"] == pytest.approx(2 / 26)
    run_cli("explain", a, "--out", tmp_path / "m.png", "--method", "occlusion", no_torch=True)
    assert (tmp_path / "m.png").stat().st_size > 1000
    r = run_cli("explain", a, "--out", tmp_path / "m2.png", no_torch=True)  # the default here is occlusion
    assert "occlusion map" in r.stdout and (tmp_path / "m2.png").is_file()
    r = run_cli("check", a, "--json", tmp_path / "c.json", no_torch=True)  # OpenCV repairs, ONNX map
    rep = json.loads((tmp_path / "c.json").read_text())["reports"][0]
    ref = json.loads(run_cli("check", a, "--json", tmp_path / "c2.json").stdout and (tmp_path / "c2.json").read_text())
    assert rep["q"] == pytest.approx(ref["reports"][0]["q"], abs=1e-3) and rep["verdict"] in ("accept", "reject")
    # the components without torch: the face mesh runs in OpenCV, on the same detections
    for name in ("HeadPoseYaw", "EyesOpen", "InterEyeDistance", "EyesVisible", "Sharpness"):
        got, want = rep["components"][name]["native"], ref["reports"][0]["components"][name]["native"]
        assert got is not None and got == pytest.approx(want, rel=1e-2, abs=1e-2), name
    assert rep["requirements_failed"] == ref["reports"][0]["requirements_failed"]
    r = run_cli("explain", a, "--out", tmp_path / "m.png", "--method", "gradient", check=False, no_torch=True)
    assert r.returncode == 2 and "gradient maps need torch, which is not installed" in r.stderr
    r = run_cli("compare", a, b, "--runtime", "torch", check=False, no_torch=True)
    assert r.returncode == 2 and "pip install 'qmag-studio[vision]'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train-quality", "--data", images, "--out", tmp_path / "h.pt", check=False, no_torch=True)
    assert r.returncode == 2 and "needs torch, which is not installed" in r.stderr


@pytest.mark.slow
def test_fresh_light_venv(tmp_path):
    """``pip install .[onnx,app]`` in a new venv: no torch, the commands and the dashboard
    run on real photos (tools/check_light_install.sh), with the torch pipeline's results."""
    if not (IN_CI or os.environ.get("QMAG_INSTALL_TESTS")):
        pytest.skip("builds a fresh venv from the registry (~1 min, 0.8 GB): set CI=true or QMAG_INSTALL_TESTS=1")
    need_shared("lfw_photos")
    script = ROOT / "tools" / "check_light_install.sh"
    r = subprocess.run(["bash", str(script), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "light install OK" in r.stdout and "compare page: q" in r.stdout
    _same_as_torch(tmp_path / "embed.npz", tmp_path / "imgs")
    assert 100 < int((tmp_path / "venv_mb.txt").read_text()) < 2000
