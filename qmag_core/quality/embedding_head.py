"""A utility quality head on the embedding alone, for any encoder (numpy, no torch).

A model without a quality head gives only its embedding; for ArcFace-type models its
length is a weak quality signal.  This head predicts the recognition utility a capture
has left (the cosine between its embedding and that of the same face clean, see
:mod:`qmag_core.quality.samples`) by a ridge regression on the embedding's unit
direction and log length, and maps it to q = 100 · softplus(20·u) / 20 like the shipped
head.  It is trained with the shipped head's recipe (identity-disjoint fit and
validation folders, seeded degradations) by ``qmag train-quality --onnx MODEL``, saved
next to the model as ``MODEL.quality.npz`` with the model's key, and picked up by that
key whenever the model is opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import QMagError

__all__ = ["EmbeddingHead", "fit_embedding_head", "head_path_for", "load_embedding_head"]

#: what the model's q means once this head is attached
HEAD_QUALITY = "utility head on the embedding (q ≈ 100 × predicted cosine to a clean capture)"


@dataclass(frozen=True)
class EmbeddingHead:
    """Ridge weights on :func:`~qmag_core.quality.samples.embedding_features` and the key
    of the encoder they were fitted for."""

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: float
    encoder_key: str
    meta: dict = field(default_factory=dict)

    def utility(self, embeddings: np.ndarray) -> np.ndarray:
        """(N,) predicted cosine to the clean capture of raw embeddings (N, D)."""
        from .samples import embedding_features

        f = embedding_features(embeddings)
        if f.shape[1] != self.weight.shape[0]:
            raise QMagError(f"the head reads {self.weight.shape[0] - 1}-d embeddings, got {f.shape[1] - 1}-d")
        return ((f - self.mean) / self.scale) @ self.weight + self.bias

    def quality(self, embeddings: np.ndarray) -> np.ndarray:
        """(N,) q of raw embeddings: 100 · softplus(20·u) / 20, u the predicted utility."""
        return 100.0 / 20.0 * np.logaddexp(0.0, 20.0 * self.utility(embeddings))

    def file_key(self) -> str:
        """A digest of the weights (part of the encoder's key once attached)."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.mean, self.scale, self.weight, np.asarray([self.bias])):
            h.update(np.ascontiguousarray(a, np.float64).tobytes())
        return h.hexdigest()[:8]

    def save(self, path: str | os.PathLike) -> None:
        """Write the head as a plain .npz (no pickle), atomically."""
        import json

        from ..outputs import save_npz

        save_npz(
            path,
            mean=self.mean,
            scale=self.scale,
            weight=self.weight,
            bias=np.float64(self.bias),
            encoder_key=np.asarray(self.encoder_key),
            meta=np.asarray(json.dumps(self.meta)),
        )


def head_path_for(model_path: str | os.PathLike) -> Path:
    """Where the embedding head of a model file lives: ``MODEL.quality.npz`` beside it."""
    p = Path(model_path)
    return p.with_name(p.stem + ".quality.npz")


def load_embedding_head(path: str | os.PathLike) -> EmbeddingHead:
    """Read a head written by :meth:`EmbeddingHead.save` (bounded, no pickle)."""
    import json

    from ..errors import DataFormatError
    from ..safeio import load_npz

    z = load_npz(path)
    try:
        head = EmbeddingHead(
            np.asarray(z["mean"], np.float64),
            np.asarray(z["scale"], np.float64),
            np.asarray(z["weight"], np.float64),
            float(z["bias"]),
            str(z["encoder_key"]),
            json.loads(str(z["meta"])),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise DataFormatError(f"not an embedding quality head ({e})", path=str(path)) from None
    n = head.weight.shape
    if head.mean.shape != n or head.scale.shape != n or len(n) != 1 or not (head.scale > 0).all():
        raise DataFormatError("not an embedding quality head (arrays of different shapes)", path=str(path))
    return head


def fit_embedding_head(fit: dict, val: dict, encoder_key: str, meta: dict | None = None) -> EmbeddingHead:
    """The head from :func:`~qmag_core.quality.samples.utility_samples` of fit and
    validation identities (``features="embedding"``)."""
    from .samples import ridge_utility

    mu, sd, w, b, lam, scores = ridge_utility(fit["features"], fit["target"], val["features"], val["target"])
    info = {
        "lambda": lam,
        "val_spearman": {f"{k:g}": round(v, 4) for k, v in scores.items()},
        "n_train": len(fit["target"]),
        "n_val": len(val["target"]),
        **(meta or {}),
    }
    return EmbeddingHead(mu, sd, w, b, encoder_key, info)
