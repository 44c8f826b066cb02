import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from qmag_core.encoders import WEIGHTS_SHA256, load_encoder
from qmag_core.encoders.faceapi import (
    MANIFEST,
    MANIFEST_SHA256,
    WEIGHTS_BIN,
    decode_weights,
    load_faceapi_net,
)
from qmag_core.encoders.iresnet import ARCHS, CheckpointError, build_iresnet, guess_arch, load_magface_checkpoint
from qmag_core.errors import QMagError
from qmag_core.vision.align import ARCFACE_112, DLIB_150
from qmag_core.vision.runtime import resolve_device

FIXTURES = Path(__file__).parents[1] / "fixtures"


def _official_layout(model, prefix="features.module.", head_classes=10):
    """A checkpoint as MagFace training writes it: prefixed backbone + top-level head."""
    sd = {prefix + k: v.clone() for k, v in model.state_dict().items()}
    sd["fc.weight"] = torch.randn(512, head_classes)  # MagLinear head, outside the prefix
    return {"epoch": 25, "arch": "iresnet18", "state_dict": sd}


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    m = build_iresnet("iresnet18").eval()
    # non-trivial BN statistics so a wrong mapping shows
    for mod in m.modules():
        if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m


@pytest.mark.parametrize("prefix", ["features.module.", "module.features.", ""])
def test_official_checkpoint_loads_identically(tmp_path, r18, prefix):
    f = tmp_path / "magface_epoch_00025.pth"
    ckpt = _official_layout(r18, prefix) if prefix else r18.state_dict()  # plain state_dict too
    torch.save(ckpt, f)
    loaded = load_magface_checkpoint(f, "iresnet18")
    x = torch.rand(3, 3, 112, 112)
    with torch.inference_mode():
        a, b = r18(x), loaded(x)
    assert a.shape == (3, 512)
    assert torch.equal(a, b)
    # the backbone's own fc (512*7*7 -> 512) survived; the head fc (512 x classes) was dropped
    assert loaded.fc.weight.shape == (512, 512 * 7 * 7)


def test_wrong_arch_names_the_likely_one(tmp_path, r18):
    f = tmp_path / "ck.pth"
    torch.save(_official_layout(r18), f)
    with pytest.raises(CheckpointError, match=r"does not match iresnet50: .*missing keys.*looks like iresnet18"):
        load_magface_checkpoint(f, "iresnet50")
    assert guess_arch(r18.state_dict().keys()) == "iresnet18"


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo PWNED > /dev/null",))


def test_pickle_with_code_is_refused(tmp_path, capfd):
    f = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": _Evil()}}, f)  # what a malicious checkpoint looks like
    with pytest.raises(CheckpointError, match=r"refused to load: the file would run or build (posix|os)\.system"):
        load_magface_checkpoint(f, "iresnet18")
    g = tmp_path / "evil4.pth"
    with open(g, "wb") as fh:
        pickle.dump({"state_dict": {"x": _Evil()}}, fh, protocol=4)
    with pytest.raises(CheckpointError, match="evil4.pth"):
        load_magface_checkpoint(g, "iresnet18")


@pytest.mark.parametrize("content, msg", [(b"", "not a readable"), (b"garbage!", "not a readable")])
def test_garbage_checkpoint(tmp_path, content, msg):
    f = tmp_path / "x.pth"
    f.write_bytes(content)
    with pytest.raises(CheckpointError, match=msg):
        load_magface_checkpoint(f)


def test_missing_checkpoint_and_unknown_arch(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_magface_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(QMagError, match="unknown architecture"):
        build_iresnet("iresnet7")


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_iresnet_shapes(arch):
    m = build_iresnet(arch).eval()
    blocks = [len(getattr(m, f"layer{k}")) for k in (1, 2, 3, 4)]
    assert tuple(blocks) == ARCHS[arch]
    if arch == "iresnet18":
        with torch.inference_mode():
            e = m(torch.rand(2, 3, 112, 112))
        assert e.shape == (2, 512) and e.dtype == torch.float32 and (e.norm(dim=1) > 0).all()


def test_magface_encoder_preprocessing(tmp_path, r18):
    f = tmp_path / "ck.pth"
    torch.save(_official_layout(r18), f)
    enc = load_encoder("magface", checkpoint=f, arch="iresnet18", device="cpu")
    assert enc.spec is ARCFACE_112 and enc.dim == 512
    crops = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    e = enc.embed(crops)
    # MagFace inference: BGR, [0, 1], no mean/std
    x = torch.from_numpy(crops[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        ref = r18(x).numpy()
    np.testing.assert_allclose(e, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(QMagError, match=r"expects crops of shape"):
        enc.embed(crops[:, :100])
    with pytest.raises(QMagError, match="needs a checkpoint"):
        load_encoder("magface")


def test_faceapi_weights_and_manifest_unchanged():
    import hashlib

    assert hashlib.sha256(WEIGHTS_BIN.read_bytes()).hexdigest() == WEIGHTS_SHA256
    assert hashlib.sha256(MANIFEST.read_bytes()).hexdigest() == MANIFEST_SHA256
    w = decode_weights()
    assert w["fc"].shape == (256, 128) and w["conv32_down/conv/filters"].shape == (7, 7, 3, 32)
    n = sum(v.size for v in w.values())
    assert 5_500_000 < n < 5_700_000  # 5.6M parameters


def test_faceapi_port_matches_javascript_model():
    """Descriptors from face-api.js itself (tfjs cpu backend, tools/faceapi_reference.js)."""
    z = np.load(FIXTURES / "faceapi_reference.npz")
    net = load_faceapi_net()
    x = torch.from_numpy(z["inputs"]).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        d = net(x).numpy()
    assert str(z["backend"]) == "cpu"
    assert np.abs(d - z["descriptors"]).max() < 1e-5


def test_builtin_encoders_registry():
    enc = load_encoder("builtin-raw", device="cpu")
    assert enc.spec is DLIB_150 and enc.dim == 128 and enc.id == "builtin-raw"
    b = load_encoder("builtin", device="cpu")
    assert b.id == "builtin" and b.key != enc.key and b.spec is DLIB_150 and b.dim == 128
    z = np.load(FIXTURES / "faceapi_reference.npz")
    e = enc.embed(z["inputs"])
    np.testing.assert_allclose(e, z["descriptors"], atol=1e-5)
    # builtin: the same identity direction as builtin-raw, the head's quality as length
    eb = b.embed(z["inputs"])
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(unit(eb), unit(e), atol=1e-5)
    assert not np.allclose(np.linalg.norm(eb, axis=1), np.linalg.norm(e, axis=1), rtol=0.05)
    f = load_encoder("builtin-raw", device="cpu", flip=True).embed(z["inputs"][:1])
    mirrored = enc.embed(z["inputs"][:1, :, ::-1].copy())
    np.testing.assert_allclose(f, 0.5 * (e[:1] + mirrored), atol=1e-4)
    with pytest.raises(QMagError, match="unknown encoder"):
        load_encoder("nope")


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(QMagError, match="device must be"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(QMagError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the lent device machine)")
def test_gpu_matches_cpu_and_fp16():
    z = np.load(FIXTURES / "faceapi_reference.npz")
    cpu = load_encoder("builtin-raw", device="cpu").embed(z["inputs"])
    gpu = load_encoder("builtin-raw", device="cuda").embed(z["inputs"])
    np.testing.assert_allclose(gpu, cpu, atol=1e-3)
    half = load_encoder("builtin-raw", device="cuda", fp16=True).embed(z["inputs"])
    cos = (half * cpu).sum(1) / np.linalg.norm(half, axis=1) / np.linalg.norm(cpu, axis=1)
    assert cos.min() > 0.999
    torch.manual_seed(0)
    m = build_iresnet("iresnet18").eval()
    x = torch.rand(4, 3, 112, 112)
    with torch.inference_mode():
        np.testing.assert_allclose(m.cuda()(x.cuda()).cpu().numpy(), m.cpu()(x).numpy(), atol=1e-3)


def test_every_encoder_kind_declares_the_face_encoder_interface(tmp_path):
    """Torch, our ONNX export and a third-party ONNX model all offer FaceEncoder, and
    quality_of is the length of what embed returns (the q the quality side explains)."""
    from qmag_core.encoders import DifferentiableEncoder, FaceEncoder, open_onnx
    from qmag_core.encoders.onnx import SHIPPED_MODEL

    crops = np.load(Path(__file__).parents[1] / "fixtures" / "faceapi_reference.npz")["inputs"][:3].astype(np.uint8)
    torch_enc = load_encoder("builtin", runtime="torch", device="cpu")
    onnx_enc = open_onnx(SHIPPED_MODEL, device="cpu")
    assert isinstance(torch_enc, DifferentiableEncoder) and torch_enc.differentiable
    assert isinstance(onnx_enc, FaceEncoder) and not onnx_enc.differentiable
    assert (torch_enc.runtime, onnx_enc.runtime) == ("torch", "onnx")
    for enc in (torch_enc, onnx_enc):
        q = enc.quality_of(crops)
        np.testing.assert_allclose(q, np.linalg.norm(enc.embed(crops), axis=1), rtol=1e-5)
    np.testing.assert_allclose(onnx_enc.quality_of(crops), torch_enc.quality_of(crops), rtol=1e-4)
