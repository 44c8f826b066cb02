"""Face encoders behind one registry, with stable ids used everywhere (CLI, params, .npz, UI).

=============  ==============================================================  ==========
id             network                                                         crop
=============  ==============================================================  ==========
``builtin``    the shipped faceRecognitionNet port + its utility quality head:  dlib-150
               unit(descriptor) × q_head (same cosines as builtin-raw)
``builtin-raw``the faceRecognitionNet port alone (128-d, length = weak proxy)  dlib-150
``magface``    an official MagFace checkpoint + iResNet architecture (512-d)    arcface-112
=============  ==============================================================  ==========

Every encoder maps aligned RGB uint8 crops (B, S, S, 3) to raw float32 embeddings
(B, D) whose L2 norm is the quality q.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..align import ARCFACE_112, DLIB_150, CropSpec
from ..errors import QMagError

__all__ = ["Encoder", "ENCODERS", "load_encoder", "resolve_device", "resolve_runtime", "encoder_ids", "builtin_key"]

#: SHA-256 of the shipped faceRecognitionNet weights (checked when they are read)
WEIGHTS_SHA256 = "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"
RUNTIMES = ("auto", "torch", "onnx")


def torch_available() -> bool:
    """True when torch and facenet-pytorch can be imported (the full install)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "facenet_pytorch"))
    except (ImportError, ValueError):
        return False


def resolve_runtime(runtime: str = "auto") -> str:
    """ "auto" → "torch" in the full install, "onnx" without torch (``pip install .[onnx]``)."""
    if runtime not in RUNTIMES:
        raise QMagError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "auto":
        if torch_available():
            return "torch"
        if importlib.util.find_spec("onnxruntime") is None:
            raise QMagError(
                "this needs a network runtime, and neither torch nor onnxruntime is installed: "
                "pip install 'qmag-studio[onnx]' (light, CPU) or 'qmag-studio[vision]' (torch, training, GPU)"
            )
        return "onnx"
    if runtime == "torch" and not torch_available():
        raise QMagError(
            "the torch runtime needs torch and facenet-pytorch: pip install 'qmag-studio[vision]' "
            "(or use --runtime onnx)"
        )
    return runtime


def resolve_device(device: str = "auto") -> str:
    """ "auto" → "cuda" when a GPU is available, else "cpu"."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise QMagError(f"device {device!r} requested but no CUDA GPU is available; use 'cpu' or 'auto'")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise QMagError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return device


class Encoder:
    """A face network wrapped for inference.

    Attributes: ``id`` (registry id), ``spec`` (the aligned crop it expects), ``dim``,
    ``quality`` (what the embedding length means), ``key`` (identifies weights and
    options, for caches), ``device``.
    """

    id: str
    spec: CropSpec
    dim: int
    quality: str

    def __init__(
        self,
        net,
        *,
        id: str,
        spec: CropSpec,
        dim: int,
        quality: str,
        key: str,
        preprocess: Callable,
        torch_pre: Callable,
        device: str = "cpu",
        fp16: bool = False,
        flip: bool = False,
    ):
        import torch

        self.id, self.spec, self.dim, self.quality, self.key = id, spec, dim, quality, key
        self.device = resolve_device(device)
        self.fp16 = bool(fp16) and self.device.startswith("cuda")
        self.flip = flip
        self._pre = preprocess
        self._torch_pre = torch_pre
        self.net = net.to(self.device).eval()
        if self.fp16:
            self.net = self.net.half()
        self._torch = torch

    def __repr__(self) -> str:
        return f"Encoder(id={self.id!r}, crop={self.spec.name}, dim={self.dim}, device={self.device!r})"

    def tensor(self, crops: np.ndarray):
        """Preprocessed input tensor (B, 3, S, S) on the encoder's device."""
        x = self._pre(np.asarray(crops))
        x = self._torch.from_numpy(x).to(self.device)
        return x.half() if self.fp16 else x

    def torch_input(self, px):
        """Differentiable preprocessing: RGB pixels (B, 3, S, S) in 0–255 → network input."""
        x = self._torch_pre(px)
        return x.half() if self.fp16 else x

    def embedding(self, x):
        """Raw embedding tensor (B, dim) of a network input (differentiable); the
        quality q is its L2 norm."""
        e = self.net(x).float()
        if self.flip:
            e = 0.5 * (e + self.net(self._torch.flip(x, dims=[3])).float())
        return e

    def embed(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Raw embeddings (B, dim) float32 of aligned RGB uint8 crops (B, S, S, 3).

        With ``flip`` the mean with the mirrored crop's embedding is returned (same
        direction as their sum, length on the same scale as without flip)."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.spec.size, self.spec.size, 3):
            raise QMagError(
                f"{self.id} expects crops of shape (B, {self.spec.size}, {self.spec.size}, 3), got {crops.shape}"
            )
        out = []
        with self._torch.inference_mode():
            for k in range(0, crops.shape[0], batch_size):
                out.append(self.embedding(self.tensor(crops[k : k + batch_size])).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    def embed_with_raw(self, crops: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings (B, dim), raw descriptor length (B,))``: for a network with a
        separate quality head (``builtin``) the backbone descriptor's own length, else the
        embedding's length."""
        net = self.net
        if not callable(getattr(net, "descriptor_and_quality", None)) or self.flip:
            e = self.embed(crops, batch_size)
            return e, np.linalg.norm(e, axis=1)
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.spec.size, self.spec.size, 3):
            raise QMagError(
                f"{self.id} expects crops of shape (B, {self.spec.size}, {self.spec.size}, 3), got {crops.shape}"
            )
        es, rs = [], []
        with self._torch.inference_mode():
            for k in range(0, crops.shape[0], batch_size):
                d, q = net.descriptor_and_quality(self.tensor(crops[k : k + batch_size]))
                d, q = d.float(), q.float()
                r = d.norm(dim=1)
                es.append((d / r.clamp_min(1e-12)[:, None] * q[:, None]).cpu().numpy())
                rs.append(r.cpu().numpy())
        if not es:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32)
        return np.concatenate(es).astype(np.float32), np.concatenate(rs).astype(np.float32)


# --------------------------------------------------------------------- preprocessing
def _faceapi_pre(crops: np.ndarray) -> np.ndarray:
    """RGB float pixels 0–255, NCHW (the network normalises internally)."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)


def _magface_pre(crops: np.ndarray) -> np.ndarray:
    """MagFace inference: BGR channel order, ToTensor scaling to [0, 1], no mean/std."""
    return np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def _faceapi_torch(px):
    return px


def _magface_torch(px):
    return px.flip(1) / 255.0  # RGB -> BGR, [0, 1]


# ------------------------------------------------------------------------- factories
def _file_key(*paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def builtin_key(encoder_id: str, *, flip: bool = False, head=None) -> str:
    """The cache/provenance key of ``builtin`` / ``builtin-raw`` (weights and quality
    head hashes), computed without loading a network."""
    tail = "-flip" if flip else ""
    if encoder_id == "builtin-raw":
        return f"builtin-raw-{WEIGHTS_SHA256[:16]}{tail}"
    if encoder_id == "builtin":
        return f"builtin-{WEIGHTS_SHA256[:16]}-{_file_key(Path(head) if head else BUILTIN_HEAD)}{tail}"
    raise QMagError(f"{encoder_id!r} is not a built-in encoder")


def _builtin_raw(*, device="auto", fp16=False, flip=False, **_):
    from .faceapi import load_faceapi_net

    return Encoder(
        load_faceapi_net(),
        id="builtin-raw",
        spec=DLIB_150,
        dim=128,
        quality="length of the raw faceRecognitionNet descriptor (weak quality proxy)",
        key=builtin_key("builtin-raw", flip=flip),
        preprocess=_faceapi_pre,
        torch_pre=_faceapi_torch,
        device=device,
        fp16=fp16,
        flip=flip,
    )


#: the shipped quality head of the built-in encoder: a utility head (q ≈ 100 × predicted
#: cosine to the clean capture; ``tools/train_builtin_utility.py``)
BUILTIN_HEAD = Path(__file__).resolve().parents[1] / "assets" / "quality_head" / "builtin_head.pt"
#: the MagFace-loss head shipped before it, kept for comparison (``--head``; ``tools/train_builtin_head.py``)
MAGFACE_HEAD = BUILTIN_HEAD.with_name("builtin_magface_head.pt")
_HEAD_WORDS = {
    "utility": "utility quality head (q ≈ 100 × predicted cosine to the clean capture)",
    "magface": "MagFace quality head (q = head output length)",
}


def _builtin(*, device="auto", fp16=False, flip=False, head=None, **_):
    from ..magface import QualityModel, load_quality_head
    from .faceapi import load_faceapi_net

    head_path = Path(head) if head else BUILTIN_HEAD
    if not head_path.is_file():
        raise QMagError(
            f"quality head {head_path} is missing; reinstall the package or run tools/train_builtin_utility.py"
        )
    qhead, meta = load_quality_head(head_path)
    net = QualityModel(load_faceapi_net(), qhead, meta.get("features", "multi"))
    return Encoder(
        net,
        id="builtin",
        spec=DLIB_150,
        dim=128,
        quality=f"{_HEAD_WORDS[getattr(qhead, 'kind', 'magface')]} on the faceRecognitionNet port",
        key=builtin_key("builtin", flip=flip, head=head_path),
        preprocess=_faceapi_pre,
        torch_pre=_faceapi_torch,
        device=device,
        fp16=fp16,
        flip=flip,
    )


def _magface(*, checkpoint=None, arch="iresnet100", device="auto", fp16=False, flip=False, **_):
    from .iresnet import load_magface_checkpoint

    if not checkpoint:
        raise QMagError("the 'magface' encoder needs a checkpoint path (--checkpoint) and an architecture (--arch)")
    net = load_magface_checkpoint(checkpoint, arch)
    return Encoder(
        net,
        id="magface",
        spec=ARCFACE_112,
        dim=512,
        quality="MagFace embedding length ||e||",
        key=f"magface-{arch}-{_file_key(checkpoint)}{'-flip' if flip else ''}",
        preprocess=_magface_pre,
        torch_pre=_magface_torch,
        device=device,
        fp16=fp16,
        flip=flip,
    )


ENCODERS: dict[str, Callable[..., Encoder]] = {
    "builtin": _builtin,
    "builtin-raw": _builtin_raw,
    "magface": _magface,
}


def encoder_ids() -> list[str]:
    return list(ENCODERS)


def load_encoder(encoder_id: str = "builtin", *, runtime: str = "auto", **kw):
    """Build an encoder by registry id (keyword options: checkpoint, arch, device, fp16,
    flip, head).

    ``runtime``: ``auto`` (default: torch when installed, else onnx), ``torch``, or
    ``onnx`` (onnxruntime: the graphs shipped for ``builtin``/``builtin-raw``; any other
    encoder is exported once into the cache, which needs torch)."""
    if encoder_id not in ENCODERS:
        raise QMagError(f"unknown encoder {encoder_id!r}; choose one of {encoder_ids()}")
    runtime = resolve_runtime(runtime)
    if runtime == "torch":
        return ENCODERS[encoder_id](**kw)
    from ..runtime_onnx import OnnxEncoder, onnx_for, shipped_encoder

    device, flip = kw.get("device", "auto"), bool(kw.get("flip", False))
    if kw.get("fp16"):
        raise QMagError("--fp16 is for the torch runtime")
    if encoder_id in ("builtin", "builtin-raw") and not kw.get("head"):
        return shipped_encoder(encoder_id, device=device, flip=flip)
    if not torch_available():
        raise QMagError(
            f"encoder {encoder_id!r}{' with --head' if kw.get('head') else ''} is built with torch, which this "
            "install lacks: export it with qmag export-onnx where torch is installed and pass --onnx FILE, or "
            "pip install 'qmag-studio[vision]'"
        )
    cache_dir = kw.pop("cache_dir", None)
    return OnnxEncoder(onnx_for(ENCODERS[encoder_id](**{**kw, "device": "cpu"}), cache_dir), device=device)
