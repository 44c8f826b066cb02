"""ONNX export and the onnxruntime encoder: same embeddings and q as torch on real
crops, self-describing model files, the CLI runtime switch, bad model files."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import need_shared, run_cli

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install .[onnx])")

from qmag_core.encoders import load_encoder  # noqa: E402
from qmag_core.encoders.onnx import OnnxEncoder, export_onnx  # noqa: E402
from qmag_core.errors import QMagError  # noqa: E402
from qmag_core.vision.align import ARCFACE_112, DLIB_150, realign_aligned  # noqa: E402
from qmag_core.vision.images import load_image  # noqa: E402


@pytest.fixture(scope="module")
def glint_crops():
    """120 real aligned face crops (glint24 ArcFace-112, several identities)."""
    root = need_shared("glint24")
    files = sorted(root.rglob("*.jpg"))[::23][:120]
    assert len(files) >= 100
    return np.stack([load_image(f) for f in files])


def _rel(a, b):
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("enc_id", ["builtin", "builtin-raw"])
def test_onnx_matches_torch_on_real_crops(enc_id, glint_crops, tmp_path):
    enc = load_encoder(enc_id, device="cpu")
    crops = np.stack([realign_aligned(c, ARCFACE_112, DLIB_150).crop for c in glint_crops])
    meta = export_onnx(enc, tmp_path / "m.onnx")
    onx = OnnxEncoder(tmp_path / "m.onnx", device="cpu")
    assert (onx.id, onx.spec, onx.dim) == (enc.id, enc.spec, enc.dim) and onx.key == enc.key + "-onnx"
    assert meta["qmag.encoder_key"] == enc.key and "RGB, 0-255" in onx.metadata["qmag.input"]
    ref, got = enc.embed(crops), onx.embed(crops, batch_size=37)  # batch axis is dynamic
    assert _rel(got, ref).max() < 1e-4
    q_ref, q_got = np.linalg.norm(ref, axis=1), np.linalg.norm(got, axis=1)
    assert np.max(np.abs(q_got - q_ref) / q_ref) < 1e-4
    out = onx.session.run(["quality"], {"pixels": crops[:3].transpose(0, 3, 1, 2).astype(np.float32)})[0]
    np.testing.assert_allclose(out, q_ref[:3], rtol=1e-4)
    # the model-free baseline "raw length" is the backbone's own, as with torch
    _, raw_ref = enc.embed_with_raw(crops[:40])
    _, raw_got = onx.embed_with_raw(crops[:40], batch_size=16)
    np.testing.assert_allclose(raw_got, raw_ref, rtol=1e-4)
    if enc_id == "builtin":
        assert np.abs(raw_ref - q_ref[:40]).max() > 1  # the head's q is not the descriptor length


@pytest.mark.slow
def test_onnx_magface_checkpoint(glint_crops, tmp_path):
    """A MagFace checkpoint in the official layout exports and runs the same."""
    import torch

    from qmag_core.encoders.iresnet import build_iresnet

    torch.manual_seed(0)
    m = build_iresnet("iresnet18").eval()
    sd = {"features.module." + k: v.clone() for k, v in m.state_dict().items()}
    torch.save({"epoch": 1, "arch": "iresnet18", "state_dict": sd}, tmp_path / "mf.pth")
    enc = load_encoder("magface", checkpoint=str(tmp_path / "mf.pth"), arch="iresnet18", device="cpu")
    export_onnx(enc, tmp_path / "mf.onnx")
    onx = OnnxEncoder(tmp_path / "mf.onnx", device="cpu")
    assert onx.spec == ARCFACE_112 and onx.dim == 512
    assert _rel(onx.embed(glint_crops[:24]), enc.embed(glint_crops[:24])).max() < 1e-4


@pytest.mark.slow
def test_cli_runtime_onnx_embeds_like_torch(tmp_path):
    from qmag_core.io.embeddings import load_embeddings

    faces = need_shared("deepface")
    model = tmp_path / "b.onnx"
    r = run_cli("export-onnx", "--encoder", "builtin", "--out", model)
    assert "max relative difference" in r.stdout
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    # torch detects one photo at a time (facenet's boxes move with the batch); --runtime onnx
    # runs MTCNN in onnxruntime too: landmarks agree to ~5e-5 px, which flips a few pixels
    # of the uint8 crop by one level, hence ~1e-4 here against ~1e-6 on identical crops
    run_cli("embed", "--images", faces, "--out", a, "--no-cache", "--batch-size", "1", "--runtime", "torch")
    run_cli("embed", "--images", faces, "--out", b, "--no-cache", "--runtime", "onnx", "--onnx", model)
    ea, eb = load_embeddings(a), load_embeddings(b)
    assert ea.paths.tolist() == eb.paths.tolist() and np.array_equal(ea.ok, eb.ok) and ea.ok.sum() >= 10
    rel = _rel(eb.embeddings[eb.ok], ea.embeddings[ea.ok])
    assert np.median(rel) < 1e-4 and rel.max() < 1e-3
    assert eb.encoder == "builtin" and eb.encoder_key.endswith("-onnx")
    # compare with the shipped α/β: no mismatch warning (same weights and head)
    imgs = sorted(faces.glob("*.jpg"))[:2]
    c = run_cli("compare", *imgs, "--runtime", "onnx", "--onnx", model, "--json")
    assert "trained on q" not in c.stderr and len(json.loads(c.stdout)["pairs"]) == 1


@pytest.mark.slow
def test_bad_model_files_are_refused(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model at all")
    with pytest.raises(QMagError, match="not a loadable ONNX model"):
        OnnxEncoder(junk, device="cpu")
    with pytest.raises(QMagError, match="ONNX model not found"):
        OnnxEncoder(tmp_path / "missing.onnx", device="cpu")
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(g), tmp_path / "plain.onnx")
    with pytest.raises(QMagError, match="not a QMagFace Studio export"):
        OnnxEncoder(tmp_path / "plain.onnx", device="cpu")
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    r = run_cli("compare", tmp_path / "a.png", tmp_path / "a.png", "--runtime", "onnx", "--onnx", junk, check=False)
    assert r.returncode == 2 and "not a loadable ONNX model" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("explain", junk, "--out", tmp_path / "m.png", "--runtime", "torch", "--onnx", junk, check=False)
    assert r.returncode == 2 and "--onnx FILE runs with onnxruntime: leave out --runtime torch" in r.stderr


@pytest.mark.slow
def test_int8_export_is_calibrated_on_photos_and_keyed_apart(tmp_path):
    """qmag export-onnx --int8: a QDQ graph calibrated on the faces of real photos; its
    key says int8 (caches and params keep it apart) and it agrees with the float graph
    on faces it was not calibrated on."""
    import subprocess
    import sys

    from qmag_core.encoders.onnx import shipped_encoder

    root = Path(__file__).resolve().parents[2]
    faces = root / "sample_data" / "faces" / "deepface"
    base = [sys.executable, "-m", "qmag_core", "export-onnx", "--encoder", "builtin", "--out", tmp_path / "b8.onnx"]
    r = subprocess.run([*map(str, base), "--int8"], capture_output=True, text=True, cwd=str(root))
    assert r.returncode == 2 and "--calibration" in r.stderr
    r = subprocess.run(
        [*map(str, base), "--int8", "--calibration", str(faces)], capture_output=True, text=True, cwd=str(root)
    )
    assert r.returncode == 0, r.stderr
    int8 = OnnxEncoder(tmp_path / "b8.onnx", device="cpu")
    fp32 = shipped_encoder("builtin", device="cpu")
    assert int8.key.endswith("-int8-onnx") and int8.key.replace("-int8", "") == fp32.key
    glint = need_shared("glint24")
    crops = np.stack(
        [realign_aligned(load_image(f), ARCFACE_112, DLIB_150).crop for f in sorted(glint.glob("*/*.jpg"))[::7][:48]]
    )
    a, b = int8.embed(crops), fp32.embed(crops)
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.995, cos.min()
    qa, qb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    assert np.abs(qa - qb).max() < 1.0 and np.corrcoef(qa, qb)[0, 1] > 0.98
