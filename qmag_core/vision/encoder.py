"""The face-encoder interface: what every encoder offers the layers that use one (the
quality side, the pipeline, the app).  Implementations live in :mod:`qmag_core.encoders`
(one file per kind); callers rely on these members only, never on probing attributes."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .align import CropSpec

__all__ = ["FaceEncoder", "DifferentiableEncoder"]


@runtime_checkable
class FaceEncoder(Protocol):
    """Aligned RGB crops (B, S, S, 3) → raw embeddings (B, dim) whose L2 norm is q."""

    #: registry id (``builtin``, ``builtin-raw``, ``magface``) or ``onnx-<sha12>``
    id: str
    #: the encoder's key: weights, quality head and options (params files, quality scales, .npz);
    #: an ONNX export states it in its metadata
    key: str
    #: a key of bytes this package hashed itself (weights, external data, options): names the
    #: embedding-cache folder, so no model file can claim another model's cache
    content_key: str
    #: the aligned crop the network expects
    spec: CropSpec
    dim: int
    #: what the embedding length q means, in words
    quality: str
    #: ``cpu`` or ``cuda[:N]``
    device: str
    #: ``torch`` or ``onnx``
    runtime: str
    #: embeddings are the mean with the mirrored crop's
    flip: bool
    #: q can be differentiated with respect to the pixels (gradient PLQ maps)
    differentiable: bool

    def embed(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Raw float32 embeddings (B, dim) of uint8 crops (B, S, S, 3)."""
        ...

    def embed_with_raw(self, crops: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings (B, dim), the backbone descriptor's own length (B,))``."""
        ...

    def quality_of(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """q (B,) of crops (B, S, S, 3), float pixels 0–255 allowed (maps and repairs)."""
        ...


@runtime_checkable
class DifferentiableEncoder(FaceEncoder, Protocol):
    """A torch encoder: q as a differentiable function of the pixels."""

    def torch_input(self, px):
        """RGB pixel tensor (B, 3, S, S) in 0–255 → network input (differentiable)."""
        ...

    def embedding(self, x):
        """Raw embedding tensor (B, dim) of a network input (differentiable)."""
        ...
