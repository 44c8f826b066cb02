"""Seeded image degradations with a known severity in [0, 1] (for quality training and
evaluation).  Each takes an aligned RGB uint8 crop and returns one of the same shape;
severity 0 leaves the crop (nearly) unchanged, 1 is the strongest setting.

======================  ========================================================
kind                    severity s → effect
======================  ========================================================
``downscale``           shrink to 8^(−s) of the size and back (bilinear): 150 → 19 px
``blur``                Gaussian blur, σ = 5·s px
``jpeg``                JPEG quality 95·(3/95)^s: 95 → 3
``noise``               Gaussian noise, σ = 60·s grey levels
``occlusion``           grey rectangle over 45·s % of the face (random place)
``exposure``            gamma 2^(±3·s) with contrast × (1 − 0.6·s)
``pose``                rotation ±30·s°, shift ±12·s %, scale × (1 ± 0.25·s)
======================  ========================================================

The scales are calibrated on one common footing: at severity 1 every kind costs the
built-in network about the same identity information (mean 1 − cos(clean, degraded)
0.06–0.10 on 160 LFW fold 1–4 faces, ``tools/train_builtin_head.py --calibrate``),
so severities of different kinds can be ranked together.  Downscale, JPEG and exposure
use geometric scales because their effect only starts near the strong end.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .align import warp_affine
from .errors import QMagError

__all__ = ["KINDS", "MAX_SEVERITY", "degrade", "random_degradations", "with_degraded_copies", "DegradedBank",
           "degraded_bank", "identity_pairs", "cross_versions"]

KINDS = ("downscale", "blur", "jpeg", "noise", "occlusion", "exposure", "pose")


#: largest severity :func:`degrade` accepts: beyond 1 the scales extrapolate (training
#: augmentation may span a wider range than the evaluation's [0, 1])
MAX_SEVERITY = 2.0


def degrade(crop: np.ndarray, kind: str, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Degrade ``crop`` (S, S, 3) uint8 by ``kind`` at ``severity`` (random parts from ``rng``)."""
    from PIL import Image

    s = float(np.clip(severity, 0.0, MAX_SEVERITY))
    x = np.asarray(crop, np.uint8)
    h, w = x.shape[:2]
    if kind == "downscale":
        f = 8.0 ** -s
        small = Image.fromarray(x).resize((max(4, round(w * f)), max(4, round(h * f))), Image.BILINEAR)
        return np.asarray(small.resize((w, h), Image.BILINEAR))
    if kind == "blur":
        from .explain import blur

        return np.clip(np.round(blur(x, 5 * s)), 0, 255).astype(np.uint8) if s > 0 else x.copy()
    if kind == "jpeg":
        b = io.BytesIO()
        Image.fromarray(x).save(b, "JPEG", quality=max(1, int(round(95 * (3 / 95) ** s))))
        return np.asarray(Image.open(io.BytesIO(b.getvalue())).convert("RGB"))
    if kind == "noise":
        return np.clip(x + rng.normal(0, 60 * s, x.shape), 0, 255).astype(np.uint8)
    if kind == "occlusion":
        area = min(0.45 * s, 0.9) * h * w
        ar = rng.uniform(0.5, 2.0)
        rh, rw = int(min(h, np.sqrt(area / ar))), int(min(w, np.sqrt(area * ar)))
        out = x.copy()
        if rh > 0 and rw > 0:
            r0 = int(rng.integers(int(0.15 * h), max(int(0.15 * h) + 1, h - rh - int(0.05 * h) + 1)))
            c0 = int(rng.integers(0, max(1, w - rw + 1)))
            out[r0:r0 + rh, c0:c0 + rw] = rng.integers(40, 200)
        return out
    if kind == "exposure":
        gamma = 2.0 ** (3 * s * rng.choice([-1.0, 1.0]))
        y = 255.0 * (x / 255.0) ** gamma
        y = (y - y.mean()) * max(1 - 0.6 * s, 0.05) + y.mean()
        return np.clip(np.round(y), 0, 255).astype(np.uint8)
    if kind == "pose":
        ang = np.deg2rad(30 * s * rng.uniform(-1, 1))
        sc = 1 + 0.25 * s * rng.uniform(-1, 1)
        t = 0.12 * s * rng.uniform(-1, 1, 2) * np.array([w, h])
        c = np.array([w - 1, h - 1]) / 2
        R = sc * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        M = np.hstack([R, (c - R @ c + t)[:, None]])
        return warp_affine(x, M, (w, h))
    raise QMagError(f"unknown degradation {kind!r}; choose one of {KINDS}")


def random_degradations(crop: np.ndarray, n: int, rng: np.random.Generator, kinds=KINDS,
                        max_severity: float = 1.0):
    """``n`` degraded copies: list of (image, kind, severity) with severity ~ U(0.1, max_severity)."""
    if not 0.1 < max_severity <= MAX_SEVERITY:
        raise QMagError(f"max_severity must be in (0.1, {MAX_SEVERITY}], got {max_severity}")
    out = []
    for _ in range(n):
        kind = kinds[int(rng.integers(len(kinds)))]
        sev = float(rng.uniform(0.1, max_severity))
        out.append((degrade(crop, kind, sev, rng), kind, sev))
    return out


def with_degraded_copies(crops, n: int, rng: np.random.Generator, kinds=KINDS, max_severity: float = 1.0):
    """Each crop followed by its ``n`` :func:`random_degradations` (``rng`` consumed crop
    by crop, so chunked calls give the same copies as one call).  Returns lists
    (images, kinds, severities) of length len(crops)·(1 + n); clean: kind '', severity 0."""
    images, kds, sevs = [], [], []
    for crop in crops:
        images.append(crop); kds.append(""); sevs.append(0.0)  # noqa: E702
        for img, kd, sv in random_degradations(crop, n, rng, kinds, max_severity):
            images.append(img); kds.append(kd); sevs.append(sv)  # noqa: E702
    return images, kds, sevs


# --- cross-quality protocol: every image clean + seeded degraded versions, pairs whose
# --- sides may come from different versions (e.g. one side degraded, the other clean)

@dataclass
class DegradedBank:
    """Embeddings of N images, each as version 0 (clean) and V − 1 seeded degraded versions.

    ``unit`` (N, V, D) unit descriptors; ``q`` (N, V) quality (the embedding length);
    ``raw`` (N, V) the backbone descriptor's own length (= ``q`` for encoders without a
    separate quality head); ``kind`` (N, V) degradation ('' for clean); ``severity``
    (N, V) in [0, 1] (0 for clean).
    """

    unit: np.ndarray
    q: np.ndarray
    raw: np.ndarray
    kind: np.ndarray
    severity: np.ndarray

    def pair_scores(self, ij: np.ndarray, versions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cosine s, q_min and raw-length minimum (each (P,)) of pairs ``ij`` (P, 2) of
        image indices, side k taken at version ``versions[:, k]`` (0 = clean)."""
        ij, v = np.asarray(ij), np.asarray(versions)
        if ij.shape != v.shape or ij.ndim != 2 or ij.shape[1] != 2:
            raise QMagError(f"ij and versions must both be (P, 2), got {ij.shape} and {v.shape}")
        a, b = (ij[:, 0], v[:, 0]), (ij[:, 1], v[:, 1])
        s = np.einsum("pd,pd->p", self.unit[a], self.unit[b])
        return s, np.minimum(self.q[a], self.q[b]), np.minimum(self.raw[a], self.raw[b])

    def save(self, path: str | Path) -> None:
        """Write the bank as .npz, atomically."""
        from .safeio import save_npz

        save_npz(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: str | Path) -> "DegradedBank":
        from .safeio import load_npz

        z = load_npz(path)
        missing = [f.name for f in fields(cls) if f.name not in z]
        if missing:
            raise QMagError(f"{path}: not a degraded bank (missing {', '.join(missing)})")
        return cls(**{f.name: z[f.name] for f in fields(cls)})


def degraded_bank(encoder, crops: np.ndarray, n_degraded: int, seed: int = 0, *,
                  batch_size: int = 32) -> DegradedBank:
    """Embed each aligned crop (N, S, S, 3) clean and in ``n_degraded`` seeded degraded
    versions (kind uniform over :data:`KINDS`, severity U(0.1, 1), one generator seeded
    with ``seed`` consumed image by image, see :func:`with_degraded_copies`)."""
    import torch

    rng = np.random.default_rng(seed)
    net = encoder.net
    both = callable(getattr(net, "descriptor_and_quality", None)) and not getattr(encoder, "flip", False)
    U, Q, R, K, S = [], [], [], [], []
    for k in range(0, len(crops), batch_size):
        batch, kds, sevs = with_degraded_copies(crops[k:k + batch_size], n_degraded, rng)
        K += kds
        S += sevs
        if both:  # unit direction, head q and the raw descriptor length from one pass
            with torch.inference_mode():
                d, q = net.descriptor_and_quality(encoder.tensor(np.stack(batch)))
            d, q = d.float().cpu().numpy(), q.float().cpu().numpy()
            r = np.linalg.norm(d, axis=1)
        else:
            d = encoder.embed(np.stack(batch))
            q = r = np.linalg.norm(d, axis=1)
        U.append(d / np.maximum(r, 1e-12)[:, None]); Q.append(q); R.append(r)  # noqa: E702
    v = 1 + n_degraded
    n = len(crops)
    return DegradedBank(np.concatenate(U).reshape(n, v, -1), np.concatenate(Q).reshape(n, v),
                        np.concatenate(R).reshape(n, v), np.asarray(K).reshape(n, v),
                        np.asarray(S, np.float32).reshape(n, v))


def identity_pairs(identity: np.ndarray, rng: np.random.Generator, n_genuine_max: int,
                   n_imposter: int) -> tuple[np.ndarray, np.ndarray]:
    """Every genuine pair of ``identity`` (N,) (a seeded subset when there are more than
    ``n_genuine_max``) and up to ``n_imposter`` seeded random imposter pairs.  Returns
    ``ij`` (P, 2) image indices and ``is_genuine`` (P,) bool, genuine pairs first."""
    identity = np.asarray(identity)
    order = np.argsort(identity, kind="stable")
    sorted_ids = identity[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    ends = np.r_[starts[1:], len(order)]
    gen = []
    for a0, a1 in zip(starts, ends):
        if a1 - a0 > 1:
            a, b = np.triu_indices(a1 - a0, 1)
            gen.append(np.c_[order[a0 + a], order[a0 + b]])
    gen = np.concatenate(gen) if gen else np.zeros((0, 2), np.int64)
    if len(gen) > n_genuine_max:
        gen = gen[np.sort(rng.choice(len(gen), n_genuine_max, replace=False))]
    imp = rng.integers(0, identity.size, (n_imposter * 2, 2))
    imp = imp[identity[imp[:, 0]] != identity[imp[:, 1]]][:n_imposter]
    return np.r_[gen, imp], np.r_[np.ones(len(gen), bool), np.zeros(len(imp), bool)]


def cross_versions(n: int, n_degraded: int, rng: np.random.Generator) -> np.ndarray:
    """Versions (n, 2) for cross-quality pairs: one seeded side of each pair takes a
    seeded degraded version in 1..``n_degraded``, the other stays clean (0)."""
    v = np.zeros((n, 2), np.int64)
    side = rng.integers(0, 2, n)
    v[np.arange(n), side] = rng.integers(1, n_degraded + 1, n)
    return v
