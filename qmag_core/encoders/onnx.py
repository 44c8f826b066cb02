"""ONNX export of an encoder and an onnxruntime encoder with the same interface.

The exported graph takes aligned crops and returns the raw embedding (whose length is
q) and q itself; for ``builtin`` the utility quality head is inside the graph::

    input   pixels     float32 (B, 3, S, S): RGB, 0–255, the encoder's aligned crop
                       (dlib-150 for builtin / builtin-raw, arcface-112 for magface),
                       dynamic batch axis
    output  embedding  float32 (B, D)
            quality    float32 (B,)  = ‖embedding‖
            raw_length float32 (B,)  the backbone descriptor's own length
            descriptor float32 (B, D) optional: the backbone descriptor alone, so one
                       file serves ``builtin`` and ``builtin-raw`` (``qmag.descriptor.*``)

Metadata in the model (``qmag.*`` keys): encoder id and key, crop spec, dimension,
what q means, input layout, opset.  ``OnnxEncoder`` reads them back, so a model file
is self-describing; it needs onnxruntime (``pip install .[onnx]``) but not torch.

The package ships ``builtin`` (with the ``builtin-raw`` descriptor output) in
``qmag_core/assets/onnx`` (``tools/export_light_models.py``): :func:`shipped_encoder`
opens it, so the built-in encoders run without torch.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import QMagError, shown
from .keys import path_safe

__all__ = ["OPSET", "export_onnx", "OnnxEncoder", "load_onnx_encoder", "onnx_for", "shipped_encoder", "SHIPPED_MODEL"]

OPSET = 17
#: largest model file read (the built-in network is ≈ 25 MB, iResNet100 ≈ 250 MB)
#: the shipped graph of ``builtin`` (also serves ``builtin-raw`` through its descriptor output)
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "assets" / "onnx" / "builtin.onnx"
_INPUT = "pixels float32 (B, 3, S, S), RGB, 0-255, aligned crop {spec} (S = {size})"


def trace_to_onnx(module, example, path, *, inputs: list[str], outputs: list[str], axes: dict, opset: int = OPSET):
    """``torch.onnx.export`` by the TorchScript tracer (no dynamo) of ``module`` on
    ``example`` to ``path``; tracer warnings are silenced (shape checks inside a network
    become constants of the graph, right for the layout it is traced with)."""
    import torch

    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (example,),
            path,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def export_onnx(encoder, path: str | os.PathLike, *, opset: int = OPSET, descriptor_encoder=None) -> dict:
    """Write ``encoder`` (a :class:`~qmag_core.encoders.torch_encoder.TorchEncoder`) as one ONNX graph
    to ``path`` (atomically); returns the metadata written into it.

    ``descriptor_encoder``: the encoder whose embedding is ``encoder``'s backbone
    descriptor (``builtin-raw`` for ``builtin``); the graph then also outputs
    ``descriptor`` and names that encoder in ``qmag.descriptor.*``."""
    import torch

    from ..outputs import atomic_path

    class _Graph(torch.nn.Module):
        def __init__(self, enc):
            super().__init__()
            self.enc = enc
            self.net = enc.net  # registered, so the weights are exported

        def forward(self, px):
            x = self.enc._torch_pre(px)
            e = self.enc.embedding(x).float()
            if self.enc.separate_head and not self.enc.flip:  # a quality head: the backbone's own length too
                d = self.net.descriptor_and_quality(x)[0].float()
            else:
                d = e
            out = (e, torch.linalg.vector_norm(e, dim=1), torch.linalg.vector_norm(d, dim=1))
            return out + (d,) if descriptor_encoder is not None else out

    if encoder.fp16:
        raise QMagError("export a float32 encoder (without --fp16)")
    if descriptor_encoder is not None and not encoder.separate_head:
        raise QMagError(f"{encoder.id} has no separate backbone descriptor to export")
    s = encoder.spec.size
    meta = {
        "qmag.encoder_id": encoder.id,
        "qmag.encoder_key": encoder.key,
        "qmag.crop": encoder.spec.name,
        "qmag.crop_size": str(s),
        "qmag.dim": str(encoder.dim),
        "qmag.quality": encoder.quality,
        "qmag.input": _INPUT.format(spec=encoder.spec.name, size=s),
        "qmag.outputs": "embedding float32 (B, D) raw, its L2 norm is q; quality float32 (B,); raw_length "
        "float32 (B,): the backbone descriptor's own length (= quality without a separate head)",
        "qmag.opset": str(opset),
    }
    names = ["embedding", "quality", "raw_length"]
    if descriptor_encoder is not None:
        names.append("descriptor")
        meta["qmag.descriptor.encoder_id"] = descriptor_encoder.id
        meta["qmag.descriptor.encoder_key"] = descriptor_encoder.key
        meta["qmag.descriptor.quality"] = descriptor_encoder.quality
    graph = _Graph(encoder).to("cpu").eval()
    x = torch.rand(2, 3, s, s) * 255
    axes = {n: {0: "batch"} for n in ["pixels", *names]}
    with atomic_path(path) as tmp:
        trace_to_onnx(graph, x, tmp, inputs=["pixels"], outputs=names, axes=axes, opset=opset)
        import onnx

        model = onnx.load(tmp)
        for k, v in meta.items():
            p = model.metadata_props.add()
            p.key, p.value = k, v
        onnx.save(model, tmp)
    encoder.net.to(encoder.device)
    return meta


class OnnxEncoder:
    """An exported encoder run by onnxruntime: ``id``, ``spec``, ``dim``, ``quality``,
    ``key`` and ``embed`` of a :class:`~qmag_core.vision.encoder.FaceEncoder` (no torch).  Its key
    is the exported encoder's with ``-onnx`` appended (outputs agree to ~1e-6, but the
    embedding cache keeps the runtimes apart).

    ``descriptor=True`` runs the encoder named in the file's ``qmag.descriptor.*``
    (``builtin-raw`` inside the shipped ``builtin`` graph); ``flip=True`` averages each
    crop's embedding with its mirror's, as the torch encoder's ``flip``."""

    runtime = "onnx"
    differentiable = False

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "auto",
        descriptor: bool = False,
        flip: bool = False,
        session=None,
    ):
        from ..vision.align import crop_spec
        from .foreign import model_key, onnx_session

        p = Path(path)
        self.session = session if session is not None else onnx_session(p, device)
        meta = self.session.get_modelmeta().custom_metadata_map
        need = ("qmag.encoder_id", "qmag.encoder_key", "qmag.crop", "qmag.dim")
        if any(k not in meta for k in need):
            raise QMagError(f"{p.name}: not a QMagFace Studio export (no qmag.* metadata); open it with open_onnx")
        try:
            spec = crop_spec(meta["qmag.crop"])
        except QMagError:
            raise QMagError(f"{p.name}: unknown crop spec {meta['qmag.crop']!r}") from None
        outputs = {o.name for o in self.session.get_outputs()}
        self.descriptor = bool(descriptor)
        if self.descriptor:
            if "descriptor" not in outputs or "qmag.descriptor.encoder_key" not in meta:
                raise QMagError(f"{p.name}: has no descriptor output (export with a descriptor encoder)")
            self.id = meta["qmag.descriptor.encoder_id"]
            self.quality = meta.get("qmag.descriptor.quality", "")
            base_key = meta["qmag.descriptor.encoder_key"]
        else:
            self.id = meta["qmag.encoder_id"]
            self.quality = meta.get("qmag.quality", "")
            base_key = meta["qmag.encoder_key"]
        self.spec = spec
        dim = meta["qmag.dim"]
        if not (dim.isdigit() and len(dim) <= 6 and 1 <= int(dim) <= 65536):
            raise QMagError(f"{p.name}: metadata qmag.dim is {shown(dim)}; expected the embedding size, 1 to 65536")
        self.dim = int(dim)
        self.flip = bool(flip)
        self.key = base_key + ("-flip" if self.flip and not base_key.endswith("-flip") else "") + "-onnx"
        self.content_key = (
            f"onnx-{model_key(p)}" + ("-descriptor" if self.descriptor else "") + ("-flip" if self.flip else "")
        )
        self._has_raw = "raw_length" in outputs
        self.metadata = dict(meta)
        self.device = "cuda" if self.session.get_providers()[0].startswith("CUDA") else "cpu"
        self.path = str(p)
        self._probe(p.name)

    def _probe(self, name: str) -> None:
        """Run one blank crop: a graph that cannot take its stated input, or whose outputs
        are not the (1, dim) and (1,) its metadata states, is refused now, with a line."""
        s = self.spec.size
        outs = ["embedding", "quality"] + (["descriptor"] if self.descriptor else [])
        try:
            got = self.session.run(outs, {"pixels": np.zeros((1, 3, s, s), np.float32)})
        except Exception as ex:  # noqa: BLE001 - onnxruntime's own types
            why = str(ex).splitlines()[0][:200] if str(ex) else type(ex).__name__
            raise QMagError(f"{name}: the graph does not run on a {s}×{s} crop as its metadata says ({why})") from None
        want = [(1, self.dim), (1,)] + ([(1, self.dim)] if self.descriptor else [])
        shapes = [tuple(np.shape(g)) for g in got]
        if shapes != want:
            raise QMagError(f"{name}: outputs {dict(zip(outs, shapes, strict=True))}, but the metadata states {want}")

    def __repr__(self) -> str:
        return f"OnnxEncoder(id={self.id!r}, crop={self.spec.name}, dim={self.dim}, device={self.device!r})"

    def _run(self, crops: np.ndarray, names: list[str], batch_size: int) -> list[np.ndarray]:
        """The model's outputs ``names`` over aligned RGB uint8 crops (B, S, S, 3), batched."""
        crops = np.asarray(crops)
        s = self.spec.size
        if crops.ndim != 4 or crops.shape[1:] != (s, s, 3):
            raise QMagError(f"{self.id} expects crops of shape (B, {s}, {s}, 3), got {crops.shape}")
        parts = []
        for k in range(0, crops.shape[0], batch_size):
            px = np.ascontiguousarray(crops[k : k + batch_size].transpose(0, 3, 1, 2), dtype=np.float32)
            parts.append(self.session.run(names, {"pixels": px}))
        return [np.concatenate([p[j] for p in parts]) if parts else None for j in range(len(names))]

    def _embedding(self, crops: np.ndarray, batch_size: int) -> np.ndarray | None:
        name = "descriptor" if self.descriptor else "embedding"
        (e,) = self._run(crops, [name], batch_size)
        if e is not None and self.flip:  # mean with the mirrored crop's embedding
            (m,) = self._run(np.asarray(crops)[:, :, ::-1], [name], batch_size)
            e = 0.5 * (e + m)
        return e

    def embed(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Raw embeddings (B, dim) float32 of aligned RGB uint8 crops (B, S, S, 3)."""
        e = self._embedding(crops, batch_size)
        return np.zeros((0, self.dim), np.float32) if e is None else e.astype(np.float32)

    def quality_of(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """q (B,) of crops (B, S, S, 3): the length of their embeddings."""
        return np.linalg.norm(self.embed(crops, batch_size), axis=1)

    def embed_with_raw(self, crops: np.ndarray, batch_size: int = 64):
        """``(embeddings (B, dim), the backbone descriptor's own length (B,))`` as the torch
        encoder gives them (models exported without ``raw_length``, the descriptor, or
        with ``flip``: the embedding length)."""
        if not self._has_raw or self.descriptor or self.flip:
            e = self.embed(crops, batch_size)
            return e, np.linalg.norm(e, axis=1)
        e, r = self._run(crops, ["embedding", "raw_length"], batch_size)
        if e is None:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32)
        return e.astype(np.float32), r.astype(np.float32)


def shipped_encoder(encoder_id: str, *, device: str = "auto", flip: bool = False) -> OnnxEncoder:
    """``builtin`` or ``builtin-raw`` from the graph shipped in the package (no torch).

    Refuses a stale file: its key must name the quality head the package ships."""
    if encoder_id not in ("builtin", "builtin-raw"):
        raise QMagError(
            f"only builtin and builtin-raw ship as ONNX; export {encoder_id!r} with qmag export-onnx "
            "(needs torch) and pass --onnx FILE"
        )
    if not SHIPPED_MODEL.is_file():
        raise QMagError(f"{SHIPPED_MODEL} is missing; reinstall the package or run tools/export_light_models.py")
    enc = OnnxEncoder(SHIPPED_MODEL, device=device, descriptor=encoder_id == "builtin-raw", flip=flip)
    from .keys import builtin_key

    want = builtin_key(encoder_id, flip=flip) + "-onnx"
    if enc.key != want:
        raise QMagError(
            f"{SHIPPED_MODEL.name} was exported for {enc.key!r}, but the package's {encoder_id} is {want!r}: "
            "run tools/export_light_models.py"
        )
    return enc


def onnx_for(encoder, cache_dir: str | os.PathLike | None = None) -> Path:
    """The ONNX file of a torch ``encoder``, exported once into the cache (keyed by
    the encoder's key, which names its weights and head)."""
    root = Path(cache_dir) if cache_dir else Path(os.environ.get("QMAG_CACHE", Path.home() / ".cache" / "qmag"))
    f = root / "onnx" / path_safe(f"{encoder.key}-opset{OPSET}-v2.onnx")  # v2: with raw_length
    if not f.is_file():
        f.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(encoder, f)
    return f


def load_onnx_encoder(path: str | os.PathLike, *, device: str = "auto") -> OnnxEncoder:
    return OnnxEncoder(path, device=device)


def describe(path: str | os.PathLike) -> str:
    """The model's qmag metadata as JSON text (for ``qmag export-onnx`` output)."""
    return json.dumps(OnnxEncoder(path, device="cpu").metadata, indent=2)
