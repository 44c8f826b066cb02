"""Face models that were not exported here: ONNX graphs in the insightface model-zoo
convention (or told otherwise), run by onnxruntime without torch.

The layout is read from the graph — its one input (``(N, 3, S, S)`` NCHW or
``(N, S, S, 3)`` NHWC, float) and the first output of rank 2 (the embedding) — with the
insightface convention as the default for what the graph cannot say: RGB,
``(x − 127.5) / 127.5``, an ArcFace aligned crop of the input's size (112 when the size
is dynamic).  :class:`InputLayout` overrides any of it (``--input-size``, ``--mean``,
``--std``, ``--bgr``, ``--crop``).  A graph whose input cannot be a face crop is refused
with what was found.

Such a model has no quality head: q is the embedding length, as in MagFace — a weak
quality signal for ArcFace-type models trained with a normalised softmax.  Its id is
``onnx-<first 12 hex digits of the file's SHA-256>`` and its key adds the layout, so
caches and params files never mix two models or two preprocessings.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import QMagError
from ..limits import limit
from ..vision.runtime import session_threads
from .keys import file_key

__all__ = ["InputLayout", "ForeignOnnxEncoder", "WEAK_QUALITY"]

#: what q means for a model without a quality head (said wherever it is used)
WEAK_QUALITY = (
    "embedding length (no quality head; for ArcFace-type models a weak quality signal: "
    "train one with qmag train-quality-head)"
)


@dataclass(frozen=True)
class InputLayout:
    """How aligned RGB uint8 crops become the graph's input.  ``size`` None: the graph's
    fixed size, else 112; ``mean``/``std`` per RGB channel, in 0–255 units; ``bgr``:
    channels reversed; ``crop``: the template family (``arcface`` or ``dlib``)."""

    size: int | None = None
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    bgr: bool = False
    crop: str = "arcface"

    def fingerprint(self, size: int) -> str:
        """A short stable digest of everything that changes the embeddings."""
        text = f"{self.crop}-{size}|{self.mean}|{self.std}|{'bgr' if self.bgr else 'rgb'}"
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def to_dict(self) -> dict:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std), "bgr": self.bgr, "crop": self.crop}

    @classmethod
    def from_dict(cls, d: dict | None) -> InputLayout:
        d = d or {}
        return cls(
            size=d.get("size"),
            mean=tuple(d.get("mean", cls.mean)),
            std=tuple(d.get("std", cls.std)),
            bgr=bool(d.get("bgr", False)),
            crop=d.get("crop", "arcface"),
        )


def onnx_session(p: Path, device: str):
    """An onnxruntime session of a model whose file and external data together fit the
    model cap (``QMAG_MAX_MODEL_BYTES``, summed before anything is loaded), on CUDA when
    asked and there."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise QMagError("the onnx runtime needs onnxruntime: pip install 'qmag-studio[onnx]'") from None
    model_files(p)  # exists, regular, within the cap with its external data
    providers = ["CPUExecutionProvider"]
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    elif device == "cuda":
        raise QMagError("device 'cuda' requested but onnxruntime has no CUDA provider here")
    opts = ort.SessionOptions()
    opts.log_severity_level = 1 if os.environ.get("QMAG_DEBUG") else 3  # its coloured warnings: QMAG_DEBUG only
    opts.intra_op_num_threads = session_threads()
    ort.set_default_logger_severity(opts.log_severity_level)
    try:
        return ort.InferenceSession(str(p), sess_options=opts, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        raise QMagError(f"{p.name}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None


def model_files(p: Path) -> list[Path]:
    """The model file and the external-data files its tensors name, in order, refused
    unless each lies in the model's folder and all of them together fit
    ``QMAG_MAX_MODEL_BYTES``."""
    from ..safeio import kind_of

    p = Path(p)
    if not p.exists():
        raise QMagError(f"{p}: ONNX model not found")
    if not p.is_file():
        raise QMagError(f"{p}: {kind_of(p.stat().st_mode)}, not an ONNX model file")
    cap = limit("QMAG_MAX_MODEL_BYTES")
    total = p.stat().st_size
    if total > cap:
        raise QMagError(f"{p}: larger than the {cap:,} bytes allowed for a model (QMAG_MAX_MODEL_BYTES)")
    files = [p]
    for name in () if shipped_asset(p) else _external_locations(p):
        f = (p.parent / name).resolve()
        if p.parent.resolve() not in f.parents or not f.is_file():
            raise QMagError(f"{p.name}: external data {name[:80]!r} is not a file in the model's folder")
        if f not in files:
            files.append(f)
            total += f.stat().st_size
        if total > cap:
            raise QMagError(
                f"{p.name}: with its external data larger than the {cap:,} bytes allowed for a model "
                "(QMAG_MAX_MODEL_BYTES)"
            )
    return files


def shipped_asset(p: Path) -> bool:
    """Whether ``p`` is one of the package's own assets (graphs built by
    tools/export_light_models.py with no external data, tested: reading them with onnx
    only to learn that would cost the check half a second per process)."""
    from importlib import resources

    assets = Path(str(resources.files("qmag_core") / "assets")).resolve()
    return assets in Path(p).resolve().parents


def _external_locations(p: Path) -> tuple[str, ...]:
    """File names of the tensors a model keeps outside its file (onnx's own reader, the
    weights left where they are); read once per file version (path, size, mtime)."""
    st = p.stat()
    return _locations(str(p.resolve()), p.name, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _locations(path: str, name: str, size: int, mtime_ns: int) -> tuple[str, ...]:
    try:
        import onnx
    except ImportError:  # onnxruntime alone: it refuses external data outside the folder itself
        return ()
    try:
        m = onnx.load(path, load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's own errors
        raise QMagError(f"{name}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
    tensors = list(m.graph.initializer) + [
        a.t for n in m.graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR
    ]
    return tuple(
        e.value
        for t in tensors
        if t.data_location == onnx.TensorProto.EXTERNAL
        for e in t.external_data
        if e.key == "location"
    )


def model_key(p: Path) -> str:
    """First 16 hex digits of the SHA-256 of a model's file and external data (what the
    embedding cache is keyed on: content we hashed, never the model's own metadata);
    hashed once per version of the files (path, size, mtime)."""
    return _files_key(tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in model_files(p)))


@functools.lru_cache(maxsize=64)
def _files_key(files: tuple) -> str:
    return file_key(*(f for f, _, _ in files))


def _dim(v) -> int | None:
    return v if isinstance(v, int) and v > 0 else None


class ForeignOnnxEncoder:
    """An ONNX face model without our metadata: ``id``, ``key``, ``spec``, ``dim``,
    ``quality`` and ``embed`` like every encoder here (no torch)."""

    runtime = "onnx"
    descriptor = False
    differentiable = False

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        layout: InputLayout | None = None,
        device: str = "auto",
        flip: bool = False,
        session=None,
        quality_head: bool = True,
    ):
        from ..quality.embedding_head import HEAD_QUALITY, head_path_for, load_embedding_head
        from ..vision.align import crop_spec

        p = Path(path)
        self.session = session if session is not None else onnx_session(p, device)
        self.layout = layout or InputLayout()
        self.path, self.flip = str(p), bool(flip)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise QMagError(f"{p.name}: the graph has {len(inputs)} inputs; a face model takes one image batch")
        inp = inputs[0]
        shape = list(inp.shape)
        if len(shape) != 4 or not ({shape[1], shape[3]} & {3}) or "float" not in inp.type:
            raise QMagError(
                f"{p.name}: input {inp.name!r} is {inp.type} of shape {shape}; a face crop is a float "
                "(N, 3, S, S) or (N, S, S, 3) batch"
            )
        self.input_name, self.nhwc = inp.name, shape[1] != 3 and shape[3] == 3
        self._fp16 = "float16" in inp.type
        hw = (shape[1], shape[2]) if self.nhwc else (shape[2], shape[3])
        fixed = [_dim(v) for v in hw]
        if all(fixed) and fixed[0] != fixed[1]:
            raise QMagError(f"{p.name}: input {inp.name!r} is {fixed[1]}×{fixed[0]}; aligned face crops are square")
        size = self.layout.size or fixed[0] or 112
        if fixed[0] and size != fixed[0]:
            raise QMagError(f"{p.name}: the graph takes {fixed[0]}×{fixed[0]} crops, not --input-size {size}")
        if not 32 <= size <= 1024:
            raise QMagError(f"{p.name}: input size {size} px cannot be an aligned face crop (32 to 1024)")
        self.spec = crop_spec(f"{self.layout.crop}-{size}")
        outs = [o for o in self.session.get_outputs() if len(o.shape) == 2]
        if not outs:
            raise QMagError(f"{p.name}: no output of shape (N, D); a face model returns one embedding per crop")
        self.output_name = outs[0].name
        probe = self._forward(np.zeros((1, size, size, 3), np.uint8))  # a graph that cannot run is refused now
        self.dim = int(probe.shape[1])
        sha = model_key(p)[:12]
        self.id = f"onnx-{sha}"
        self.key = f"{self.id}-{self.layout.fingerprint(size)}" + ("-flip" if self.flip else "")
        self.quality = WEAK_QUALITY
        self.head = None  # an embedding quality head beside the model, fitted for this key
        hp = head_path_for(p)
        if quality_head and hp.is_file():
            head = load_embedding_head(hp)
            if head.encoder_key == self.key:
                self.head, self.quality = head, HEAD_QUALITY
                self.key += f"-q{head.file_key()}"
        self.device = "cuda" if self.session.get_providers()[0].startswith("CUDA") else "cpu"
        self.metadata = {"source": p.name, "input": f"{inp.name} {shape}", "output": self.output_name}

    @property
    def content_key(self) -> str:
        """The key: computed from the model's bytes and the layout, nothing the file says."""
        return self.key

    def __repr__(self) -> str:
        return f"ForeignOnnxEncoder(id={self.id!r}, crop={self.spec.name}, dim={self.dim})"

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """Aligned RGB uint8 crops (B, S, S, 3) → the graph's input array."""
        x = np.asarray(crops, np.float32)
        if self.layout.bgr:
            x = x[..., ::-1]
        x = (x - np.asarray(self.layout.mean, np.float32)) / np.asarray(self.layout.std, np.float32)
        if not self.nhwc:
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, np.float16 if self._fp16 else np.float32)

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        try:
            (e,) = self.session.run([self.output_name], {self.input_name: self.preprocess(crops)})
        except Exception as ex:  # onnxruntime's own types: a graph that does not take this input
            why = str(ex).splitlines()[0][:200] if str(ex) else type(ex).__name__
            raise QMagError(f"{Path(self.path).name}: the graph failed on a crop batch ({why})") from None
        e = np.asarray(e, np.float32)
        if e.ndim != 2 or e.shape[0] != len(crops):
            raise QMagError(f"{Path(self.path).name}: output {self.output_name!r} has shape {e.shape}, not (N, D)")
        return e

    def embed(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Raw embeddings (B, dim) float32 of aligned RGB uint8 crops (B, S, S, 3)."""
        crops = np.asarray(crops)
        s = self.spec.size
        if crops.ndim != 4 or crops.shape[1:] != (s, s, 3):
            raise QMagError(f"{self.id} expects crops of shape (B, {s}, {s}, 3), got {crops.shape}")
        parts = []
        for k in range(0, len(crops), batch_size):
            b = crops[k : k + batch_size]
            e = self._forward(b)
            if self.flip:
                e = 0.5 * (e + self._forward(b[:, :, ::-1]))
            parts.append(e)
        e = np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
        return self._with_head(e)

    def _with_head(self, e: np.ndarray) -> np.ndarray:
        """The embedding's direction with the head's q as its length (no head: as it is)."""
        if self.head is None or not len(e):
            return e
        n = np.linalg.norm(e, axis=1, keepdims=True)
        return (e / np.maximum(n, 1e-12) * self.head.quality(e)[:, None]).astype(np.float32)

    def quality_of(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """q (B,) of crops (B, S, S, 3): the length of their embeddings."""
        return np.linalg.norm(self.embed(crops, batch_size), axis=1)

    def embed_with_raw(self, crops: np.ndarray, batch_size: int = 64):
        """``(embeddings, the raw embedding's length)``: without a head the raw length is q."""
        head, self.head = self.head, None
        try:
            raw = self.embed(crops, batch_size)
        finally:
            self.head = head
        return self._with_head(raw), np.linalg.norm(raw, axis=1)
