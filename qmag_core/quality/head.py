"""Quality heads and how they are loaded: the part of the quality side an encoder needs
at inference (training lives in :mod:`qmag_core.quality.magface` and
:mod:`qmag_core.quality.utility`).

* :class:`QualityHead`: a MagFace-trained head whose output length is q;
* :class:`UtilityHead`: a closed-form utility predictor, q = 100 · softplus(20·u) / 20;
* :class:`QualityModel`: a frozen backbone plus a head as one differentiable network
  (the identity direction is the backbone's, the length is the head's q);
* :func:`save_quality_head` / :func:`load_quality_head`: tensors-only files
  (``torch.load(weights_only=True)``);
* :func:`backbone_features`, :func:`head_quality`, :func:`backbone_directions`: run a
  backbone or a head on crops or cached features.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import QMagError
from ..outputs import atomic_write

__all__ = [
    "Q_SCALE",
    "QualityHead",
    "UtilityHead",
    "QualityModel",
    "q_from_utility",
    "save_quality_head",
    "load_quality_head",
    "backbone_features",
    "head_quality",
    "backbone_directions",
]


#: q of a sample the head rates as good as a clean capture
Q_SCALE = 100.0


_SOFT = 20.0


class UtilityHead(nn.Module):
    """Linear utility predictor on standardised features; ``forward`` (B, F) → (B, 1) q,
    so ``QualityModel``'s ‖head(f)‖ is q itself."""

    kind = "utility"

    def __init__(self, in_dim: int = 768):
        super().__init__()
        self.in_dim = int(in_dim)
        for name in ("mean", "scale", "weight"):
            self.register_buffer(name, torch.zeros(self.in_dim))
        self.register_buffer("bias", torch.zeros(()))

    def utility(self, f: torch.Tensor) -> torch.Tensor:
        """(B,) predicted cosine to the clean capture."""
        f = f.to(self.mean.dtype)
        return ((f - self.mean) / self.scale) @ self.weight + self.bias

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return (Q_SCALE / _SOFT * F.softplus(_SOFT * self.utility(f)))[:, None]


def q_from_utility(u: np.ndarray) -> np.ndarray:
    """The head's q for predicted utilities ``u`` (numpy twin of ``UtilityHead.forward``)."""
    u = np.asarray(u, np.float64)
    return Q_SCALE / _SOFT * np.logaddexp(0.0, _SOFT * u)


class QualityHead(nn.Module):
    """Head on frozen backbone features whose output length is q: Linear + BatchNorm1d,
    or with ``hidden`` > 0 an MLP (Linear → BN → PReLU → Linear → BN)."""

    kind = "magface"

    def __init__(self, in_dim: int = 256, dim: int = 128, hidden: int = 0):
        super().__init__()
        self.in_dim, self.dim, self.hidden = in_dim, dim, hidden
        if hidden:
            self.pre = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.PReLU(hidden))
        self.fc = nn.Linear(hidden or in_dim, dim)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(self.pre(f) if self.hidden else f))

    def reset(self, generator: torch.Generator) -> QualityHead:
        if self.hidden:
            nn.init.normal_(self.pre[0].weight, 0.0, 1.0 / math.sqrt(self.in_dim), generator=generator)
            nn.init.zeros_(self.pre[0].bias)
        nn.init.normal_(self.fc.weight, 0.0, 1.0 / math.sqrt(self.hidden or self.in_dim), generator=generator)
        nn.init.zeros_(self.fc.bias)
        nn.init.ones_(self.bn.weight)
        nn.init.constant_(self.bn.bias, 1.0)
        return self


class QualityModel(nn.Module):
    """A frozen backbone plus a quality head, as one network.

    ``forward(x)`` returns unit(backbone descriptor) × ‖head(features)‖: the identity
    direction is the backbone's (so cosine similarities and recognition accuracy are
    exactly the backbone's) and the length is the head's quality q (a MagFace-trained
    ``QualityHead`` or a ``utility.UtilityHead``).  One forward
    pass; differentiable, so PLQ maps explain q.  ``feature_kind`` is what the head reads:
    ``pooled`` (the layer before the backbone's final projection) or ``multi``
    (per-stage mean/std + pooled, see ``FaceRecognitionNet.quality_features``).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, feature_kind: str = "multi"):
        super().__init__()
        if feature_kind not in ("pooled", "multi"):
            raise QMagError(f"feature_kind must be 'pooled' or 'multi', got {feature_kind!r}")
        self.backbone, self.head, self.feature_kind = backbone, head, feature_kind

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(x)

    def quality_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.quality_features(x)

    def descriptor_and_quality(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) backbone descriptor and (B,) quality q of a network input."""
        if self.feature_kind == "multi":
            f = self.backbone.quality_features(x)
            pooled = f[:, -self.backbone.fc.in_features :]
        else:
            f = pooled = self.backbone.features(x)
        return self.backbone.fc(pooled), self.head(f.float()).norm(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, q = self.descriptor_and_quality(x)
        return F.normalize(d.float(), dim=1) * q[:, None]


def save_quality_head(head: nn.Module, path: str | Path, meta: dict | None = None) -> None:
    """Save a ``QualityHead`` or a ``utility.UtilityHead`` as tensors only (loadable with
    ``torch.load(..., weights_only=True)``), atomically."""
    kind = head.kind
    d = {
        "state_dict": head.state_dict(),
        "in_dim": torch.tensor(head.in_dim),
        "head_kind": torch.tensor(list(kind.encode()), dtype=torch.uint8),
        "meta": torch.tensor(list(json.dumps(meta or {}).encode()), dtype=torch.uint8),
    }
    if kind == "magface":
        d.update(dim=torch.tensor(head.dim), hidden=torch.tensor(head.hidden))
    with atomic_write(path, "wb") as fh:
        torch.save(d, fh)


def load_quality_head(path: str | Path) -> tuple[nn.Module, dict]:
    """Load a head saved by :func:`save_quality_head` (``weights_only=True``); returns
    (head in eval mode, meta dict).  Files without a ``head_kind`` are MagFace heads."""
    try:
        d = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure is a bad head file
        raise QMagError(f"{path}: not a quality-head file ({str(e).splitlines()[0][:200]})") from None
    try:
        kind = bytes(d["head_kind"].tolist()).decode() if "head_kind" in d else "magface"
        if kind == "utility":
            from .head import UtilityHead

            head = UtilityHead(int(d["in_dim"]))
        elif kind == "magface":
            head = QualityHead(int(d["in_dim"]), int(d["dim"]), int(d.get("hidden", 0)))
        else:
            raise ValueError(f"unknown head kind {kind!r}")
        head.load_state_dict(d["state_dict"])
        meta = json.loads(bytes(d["meta"].tolist()).decode())
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as e:
        raise QMagError(f"{path}: not a quality-head file ({str(e).splitlines()[0][:200]})") from None
    return head.eval(), meta


def backbone_features(encoder, crops: np.ndarray, batch_size: int = 64, kind: str = "pooled") -> np.ndarray:
    """Backbone features (N, F) for aligned crops: ``pooled`` = the layer before the final
    projection (256-d for the built-in network); ``multi`` = per-stage mean and std
    plus that layer (768-d, see ``FaceRecognitionNet.quality_features``)."""
    try:
        fn = encoder.net.features if kind == "pooled" else encoder.net.quality_features
    except AttributeError:
        raise QMagError(f"encoder {encoder.id!r} exposes no {kind!r} backbone features for a quality head") from None
    out = []
    with torch.inference_mode():
        for k in range(0, len(crops), batch_size):
            out.append(fn(encoder.tensor(np.asarray(crops[k : k + batch_size]))).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 256), np.float32)


def head_quality(head: nn.Module, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """(N,) q = ‖head(features)‖ of a quality head (MagFace or utility) on backbone
    features (N, F), as the encoder computes it, without running the backbone again."""
    f = np.asarray(features, np.float32)
    out = []
    with torch.inference_mode():
        for k in range(0, len(f), batch_size):
            out.append(head(torch.from_numpy(f[k : k + batch_size])).norm(dim=1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def backbone_directions(encoder, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Backbone descriptors (N, D) from cached head features (N, F): the final projection
    applied to their pooled part (the last ``fc.in_features`` columns of both ``pooled``
    and ``multi`` features) — the directions the shipped encoder matches with, for
    ``train_quality_head(directions=...)``."""
    try:
        fc = encoder.net.fc
    except AttributeError:
        fc = None
    if not isinstance(fc, nn.Linear):
        raise QMagError(f"encoder {encoder.id!r} has no final projection to turn features into descriptors")
    f = np.asarray(features, np.float32)
    if f.ndim != 2 or f.shape[1] < fc.in_features:
        raise QMagError(f"features must be (N, >= {fc.in_features}), got {f.shape}")
    out = []
    with torch.inference_mode():
        for k in range(0, len(f), batch_size):
            out.append(fc(torch.from_numpy(f[k : k + batch_size, -fc.in_features :])).numpy())
    return np.concatenate(out) if out else np.zeros((0, fc.out_features), np.float32)
