"""Face encoders behind one registry, with stable ids and content keys (map: docs/development.md)."""

from ..vision.encoder import DifferentiableEncoder, FaceEncoder
from ..vision.runtime import resolve_device, resolve_runtime
from .keys import BUILTIN_HEAD, MAGFACE_HEAD, WEIGHTS_SHA256, builtin_key, file_key
from .registry import ENCODERS, encoder_ids, fast_runtime, load_encoder, open_onnx

__all__ = [
    "FaceEncoder",
    "DifferentiableEncoder",
    "ENCODERS",
    "encoder_ids",
    "fast_runtime",
    "load_encoder",
    "open_onnx",
    "resolve_device",
    "resolve_runtime",
    "BUILTIN_HEAD",
    "MAGFACE_HEAD",
    "WEIGHTS_SHA256",
    "builtin_key",
    "file_key",
]
