"""The torch runtime of the built-in and MagFace networks: one class for every network
(the model files :mod:`~qmag_core.encoders.faceapi` and :mod:`~qmag_core.encoders.iresnet`
build it); torch is imported when one is built."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import QMagError
from ..vision.align import CropSpec
from ..vision.runtime import resolve_device

__all__ = ["TorchEncoder"]


class TorchEncoder:
    """A torch face network wrapped for inference: a
    :class:`~qmag_core.vision.encoder.DifferentiableEncoder`.  ``separate_head``: the
    network has a quality head beside its descriptor (``descriptor_and_quality``)."""

    runtime = "torch"
    differentiable = True

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
        separate_head: bool = False,
    ):
        import torch

        self.id, self.spec, self.dim, self.quality, self.key = id, spec, dim, quality, key
        self.device = resolve_device(device)
        self.fp16 = bool(fp16) and self.device.startswith("cuda")
        self.flip = flip
        self.separate_head = bool(separate_head)
        self._pre = preprocess
        self._torch_pre = torch_pre
        self.net = net.to(self.device).eval()
        if self.fp16:
            self.net = self.net.half()
        self._torch = torch

    @property
    def content_key(self) -> str:
        """The key: the package computes it from the weight and head files themselves."""
        return self.key

    def __repr__(self) -> str:
        return f"TorchEncoder(id={self.id!r}, crop={self.spec.name}, dim={self.dim}, device={self.device!r})"

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
        if not self.separate_head or self.flip:
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

    def quality_of(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """q (B,) of crops (B, S, S, 3), float pixels allowed: the norm of the same
        differentiable embedding the gradient maps explain."""
        crops = np.asarray(crops, dtype=np.float32)
        out = []
        with self._torch.inference_mode():
            for k in range(0, crops.shape[0], batch_size):
                px = np.ascontiguousarray(crops[k : k + batch_size].transpose(0, 3, 1, 2))
                x = self.torch_input(self._torch.from_numpy(px).to(self.device))
                out.append(self.embedding(x).norm(dim=1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)
