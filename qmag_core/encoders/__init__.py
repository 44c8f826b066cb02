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

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import QMagError
from ..vision.align import ARCFACE_112, DLIB_150, CropSpec
from ..vision.runtime import gpu_present, onnxruntime_available, resolve_device, resolve_runtime, torch_available
from .keys import BUILTIN_HEAD, MAGFACE_HEAD, WEIGHTS_SHA256, builtin_key, file_key  # noqa: F401

__all__ = [
    "open_onnx",
    "Encoder",
    "ENCODERS",
    "load_encoder",
    "resolve_device",
    "resolve_runtime",
    "encoder_ids",
    "builtin_key",
]


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


_HEAD_WORDS = {
    "utility": "utility quality head (q ≈ 100 × predicted cosine to the clean capture)",
    "magface": "MagFace quality head (q = head output length)",
}


def _builtin(*, device="auto", fp16=False, flip=False, head=None, **_):
    from ..quality.head import QualityModel, load_quality_head
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
        key=f"magface-{arch}-{file_key(checkpoint)}{'-flip' if flip else ''}",
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


def fast_runtime(encoder_id: str, *, device: str = "auto", head=None, fp16: bool = False, **_) -> str:
    """The runtime that gives this encoder's results fastest here: ``onnx`` for
    ``builtin``/``builtin-raw`` on a CPU when the shipped graph matches the package (same
    embeddings within 1e-6 and no torch import, so a command starts in well under a
    second), else ``auto`` (torch when installed: a GPU, ``head``, ``fp16``, MagFace)."""
    from .onnx import SHIPPED_MODEL

    if encoder_id not in ("builtin", "builtin-raw") or head or fp16:
        return "auto"
    on_cpu = device == "cpu" or (device == "auto" and not gpu_present())
    return "onnx" if on_cpu and onnxruntime_available() and SHIPPED_MODEL.is_file() else "auto"


def encoder_ids() -> list[str]:
    return list(ENCODERS)


def load_encoder(encoder_id: str = "builtin", *, runtime: str = "auto", **kw):
    """Build an encoder by registry id (keyword options: checkpoint, arch, device, fp16,
    flip, head).

    ``runtime``: ``auto`` (default: torch when installed, so the network's internals —
    gradients, features — are there; else onnx), ``fast`` (what the command line and the
    dashboard use for ``--runtime auto``, see :func:`fast_runtime`), ``torch``, or
    ``onnx`` (onnxruntime: the graphs shipped for ``builtin``/``builtin-raw``; any other
    encoder is exported once into the cache, which needs torch)."""
    if encoder_id not in ENCODERS:
        raise QMagError(f"unknown encoder {encoder_id!r}; choose one of {encoder_ids()}")
    from .onnx import OnnxEncoder, onnx_for, shipped_encoder

    device, flip = kw.get("device", "auto"), bool(kw.get("flip", False))
    if runtime == "fast":
        runtime = fast_runtime(encoder_id, **kw)
        if runtime == "onnx" and torch_available():  # a stale shipped graph: torch instead of a refusal
            try:
                return shipped_encoder(encoder_id, device="cpu", flip=flip)
            except QMagError:
                runtime = "torch"
    runtime = resolve_runtime(runtime)
    if runtime == "torch":
        return ENCODERS[encoder_id](**kw)
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


def open_onnx(
    path,
    *,
    device: str = "auto",
    flip: bool = False,
    descriptor: bool = False,
    layout=None,
    quality_head: bool = True,
):
    """The encoder of an ONNX file: our own export (``qmag.*`` metadata: everything from
    the file) or any other face model (:class:`ForeignOnnxEncoder`, layout from the graph
    and ``layout``)."""
    from .foreign import ForeignOnnxEncoder, InputLayout, _session
    from .onnx import OnnxEncoder

    p = Path(path)
    session = _session(p, device)
    if "qmag.encoder_id" in session.get_modelmeta().custom_metadata_map:
        if layout is not None and layout != InputLayout():
            raise QMagError(f"{p.name} is a QMagFace Studio export: its layout is in the file (drop the layout flags)")
        return OnnxEncoder(p, device=device, descriptor=descriptor, flip=flip, session=session)
    if descriptor:
        raise QMagError(f"{p.name}: has no descriptor output (not a QMagFace Studio export)")
    return ForeignOnnxEncoder(p, layout=layout, device=device, flip=flip, session=session, quality_head=quality_head)
