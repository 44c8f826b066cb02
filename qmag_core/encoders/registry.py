"""The encoder router: registry ids to the model file that builds each encoder, the
runtime choice, and ONNX files (our exports or any face model)."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import QMagError
from ..vision.encoder import FaceEncoder
from ..vision.runtime import gpu_present, onnxruntime_available, resolve_runtime, torch_available

__all__ = ["ENCODERS", "encoder_ids", "fast_runtime", "load_encoder", "open_onnx"]

#: registry id → (model file in this package, its function that builds the encoder with torch)
ENCODERS: dict[str, tuple[str, str]] = {
    "builtin": ("faceapi", "faceapi_encoder"),
    "builtin-raw": ("faceapi", "faceapi_encoder"),
    "magface": ("iresnet", "magface_encoder"),
}


def encoder_ids() -> list[str]:
    return list(ENCODERS)


def _build_torch(encoder_id: str, **kw) -> FaceEncoder:
    module, factory = ENCODERS[encoder_id]
    build = vars(importlib.import_module(f".{module}", __package__))[factory]
    return build(encoder_id, **kw)


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


def load_encoder(encoder_id: str = "builtin", *, runtime: str = "auto", **kw) -> FaceEncoder:
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
        return _build_torch(encoder_id, **kw)
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
    return OnnxEncoder(onnx_for(_build_torch(encoder_id, **{**kw, "device": "cpu"}), cache_dir), device=device)


def open_onnx(
    path,
    *,
    device: str = "auto",
    flip: bool = False,
    descriptor: bool = False,
    layout=None,
    quality_head: bool = True,
) -> FaceEncoder:
    """The encoder of an ONNX file: our own export (``qmag.*`` metadata: everything from
    the file) or any other face model (:class:`ForeignOnnxEncoder`, layout from the graph
    and ``layout``)."""
    from .foreign import ForeignOnnxEncoder, InputLayout, onnx_session
    from .onnx import OnnxEncoder

    p = Path(path)
    session = onnx_session(p, device)
    if "qmag.encoder_id" in session.get_modelmeta().custom_metadata_map:
        if layout is not None and layout != InputLayout():
            raise QMagError(f"{p.name} is a QMagFace Studio export: its layout is in the file (drop the layout flags)")
        return OnnxEncoder(p, device=device, descriptor=descriptor, flip=flip, session=session)
    if descriptor:
        raise QMagError(f"{p.name}: has no descriptor output (not a QMagFace Studio export)")
    return ForeignOnnxEncoder(p, layout=layout, device=device, flip=flip, session=session, quality_head=quality_head)
