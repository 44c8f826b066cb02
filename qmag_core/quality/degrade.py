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

from ..errors import QMagError
from ..vision.align import warp_affine

__all__ = [
    "KINDS",
    "CAPTURE_KINDS",
    "FAMILIES",
    "MAX_SEVERITY",
    "degrade",
    "degrade_photo",
    "random_degradations",
    "random_photo_degradations",
    "with_degraded_copies",
    "DegradedBank",
    "degraded_bank",
    "cross_versions",
]

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
        f = 8.0**-s
        small = Image.fromarray(x).resize((max(4, round(w * f)), max(4, round(h * f))), Image.BILINEAR)
        return np.asarray(small.resize((w, h), Image.BILINEAR))
    if kind == "blur":
        from ..vision.images import blur

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
            out[r0 : r0 + rh, c0 : c0 + rw] = rng.integers(40, 200)
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


def random_degradations(crop: np.ndarray, n: int, rng: np.random.Generator, kinds=KINDS, max_severity: float = 1.0):
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
        images.append(crop)
        kds.append("")
        sevs.append(0.0)  # noqa: E702
        for img, kd, sv in random_degradations(crop, n, rng, kinds, max_severity):
            images.append(img)
            kds.append(kd)
            sevs.append(sv)  # noqa: E702
    return images, kds, sevs


# --- capture-level family: the whole photograph, before detection and alignment

#: degradations of a whole photo (before detection); ``chain`` applies 2–3 of the others
CAPTURE_KINDS = ("resolution", "defocus", "motion", "lowlight", "compression", "exposure", "occluder", "chain")
#: the two families: ``crop`` (aligned crops, :func:`degrade`) and ``capture`` (photos)
FAMILIES = {"crop": KINDS, "capture": CAPTURE_KINDS}
#: order in which a chain applies its parts: scene, optics, sensor, resampling, codec
_CHAIN_ORDER = ("occluder", "defocus", "motion", "exposure", "lowlight", "resolution", "compression")
_RESAMPLE = ("NEAREST", "BILINEAR", "BICUBIC", "BOX", "LANCZOS")


def _subject_geometry(shape, landmarks) -> tuple[np.ndarray, float]:
    """(5, 2) landmarks and the inter-eye distance (px) of the subject; without
    landmarks a frontal face filling the centre fifth of the photo is assumed."""
    h, w = shape[:2]
    if landmarks is None:
        c, d = np.array([w / 2, h / 2]), 0.2 * min(h, w)
        landmarks = c + d * np.array([[-0.5, -0.3], [0.5, -0.3], [0, 0.1], [-0.4, 0.55], [0.4, 0.55]])
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    return lm, max(4.0, float(np.linalg.norm(lm[1] - lm[0])))


def _convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    k = kernel / kernel.sum()
    pad = kernel.shape[0] // 2 + 1
    xp = np.pad(x.astype(np.float32), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = np.stack([fftconvolve(xp[..., c], k, mode="same") for c in range(x.shape[2])], -1)
    return np.clip(np.round(out[pad:-pad, pad:-pad]), 0, 255).astype(np.uint8)


def _occlude(x: np.ndarray, s: float, lm: np.ndarray, ied: float, rng: np.random.Generator) -> np.ndarray:
    """Sunglasses band, mask over mouth and nose, a hand-like blob or a random patch."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(x)
    draw = ImageDraw.Draw(im)
    which = ("sunglasses", "mask", "hand", "patch")[int(rng.integers(4))]
    eyes, nose, mouth = lm[:2].mean(0), lm[2], lm[3:].mean(0)
    if which == "sunglasses":
        half_h = ied * (0.12 + 0.13 * s)
        half_w = ied * (0.85 + 0.15 * s)
        draw.rounded_rectangle(
            [eyes[0] - half_w, eyes[1] - half_h, eyes[0] + half_w, eyes[1] + half_h],
            radius=half_h,
            fill=tuple(int(v) for v in rng.integers(5, 45, 3)),
        )
    elif which == "mask":
        top = nose[1] - ied * (0.25 * s - 0.15)  # from below the nose tip (s→0) to over the nose (s=1)
        bottom = mouth[1] + ied * (0.5 + 0.2 * s)
        half_w = ied * (0.85 + 0.15 * s)
        colour = tuple(int(v) for v in (rng.choice([[170, 200, 230], [235, 235, 235], [40, 40, 50]])))
        draw.polygon(
            [
                (mouth[0] - half_w, top + 0.2 * ied),
                (mouth[0], top),
                (mouth[0] + half_w, top + 0.2 * ied),
                (mouth[0] + 0.8 * half_w, bottom),
                (mouth[0] - 0.8 * half_w, bottom),
            ],
            fill=colour,
        )
    elif which == "hand":
        r = ied * (0.3 + 0.3 * s)
        c = lm[int(rng.integers(5))] + rng.normal(0, 0.25 * ied, 2)
        skin = tuple(int(v) for v in np.array([224, 172, 140]) * rng.uniform(0.55, 1.05))
        draw.ellipse([c[0] - r, c[1] - 1.3 * r, c[0] + r, c[1] + 1.3 * r], fill=skin)
        for f in range(4):  # fingers
            fx = c[0] - r + (f + 0.5) * r / 2
            draw.ellipse([fx - 0.22 * r, c[1] - 2.1 * r, fx + 0.22 * r, c[1] - 0.9 * r], fill=skin)
    else:
        side = ied * np.sqrt(0.3 + 0.8 * s)
        c = lm.mean(0) + rng.normal(0, 0.35 * ied, 2)
        draw.rectangle(
            [c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2],
            fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
        )
    return np.asarray(im)


def degrade_photo(
    photo: np.ndarray, kind: str, severity: float, rng: np.random.Generator, *, landmarks=None
) -> np.ndarray:
    """Degrade a whole photo (H, W, 3) uint8 as a camera or a channel would, *before*
    detection.  Scales follow the subject's face: ``landmarks`` (5, 2) of the subject in
    the clean photo (see :func:`_subject_geometry` without them).

    ======================  ========================================================
    kind                    severity s → effect (IED = the subject's inter-eye px)
    ======================  ========================================================
    ``resolution``          the photo shrinks until IED = IED·(12/IED)^s (12 px at
                            s = 1), random kernel; half the time upsampled back
    ``defocus``             disk blur, radius 0.3·IED·s
    ``motion``              line blur, length 0.6·IED·s, random direction
    ``lowlight``            light × 0.015^s, shot + read noise, gain back, gamma
    ``compression``         JPEG or WebP at quality 95·(2/95)^s
    ``exposure``            gain 2^(±s), contrast × (1 − 0.4·s), clipped
    ``occluder``            sunglasses, mask, hand or random patch, growing with s
    ``chain``               2–3 other kinds, each at s·U(0.4, 0.75), in capture order
    ======================  ========================================================

    The capture scales share one footing: at s = 1 the expected 1 − cos(clean, degraded)
    of the built-in network, a photo that loses its face counting as 1, is about
    0.06–0.11 for every kind (``tools/train_builtin_utility.py --calibrate``), except
    ``resolution``, which stops at the 12 px between the eyes asked for (0.02).
    """
    s = float(np.clip(severity, 0.0, MAX_SEVERITY))
    x = np.asarray(photo, np.uint8)
    if x.ndim != 3 or x.shape[2] != 3:
        raise QMagError(f"a photo must be (H, W, 3) uint8, got {x.shape}")
    fn = _CAPTURE.get(kind)
    if fn is None:
        raise QMagError(f"unknown capture degradation {kind!r}; choose one of {CAPTURE_KINDS}")
    lm, ied = _subject_geometry(x.shape, landmarks)
    return fn(x, s, lm, ied, rng)


# one function per capture kind: (photo, severity, subject landmarks, inter-eye px, rng) -> photo
def _resolution(x, s, lm, ied, rng):
    from PIL import Image

    h, w = x.shape[:2]
    f = min(1.0, (12.0 / ied) ** s) if ied > 12 else 1.0
    down = getattr(Image, _RESAMPLE[int(rng.integers(len(_RESAMPLE)))])
    small = Image.fromarray(x).resize((max(8, round(w * f)), max(8, round(h * f))), down)
    if rng.random() < 0.5:
        return np.asarray(small.resize((w, h), getattr(Image, ("BILINEAR", "BICUBIC")[int(rng.integers(2))])))
    return np.asarray(small)


def _defocus(x, s, lm, ied, rng):
    r = 0.3 * ied * s
    if r < 0.5:
        return x.copy()
    n = int(np.ceil(r))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    return _convolve(x, (xx**2 + yy**2 <= r * r).astype(np.float32))


def _motion(x, s, lm, ied, rng):
    length = 0.6 * ied * s
    if length < 1:
        return x.copy()
    n = int(np.ceil(length / 2))
    k = np.zeros((2 * n + 1, 2 * n + 1), np.float32)
    a = rng.uniform(0, np.pi)
    for t in np.linspace(-length / 2, length / 2, max(2, int(4 * length))):
        k[int(round(n + t * np.sin(a))), int(round(n + t * np.cos(a)))] = 1
    return _convolve(x, k)


def _lowlight(x, s, lm, ied, rng):
    light = 0.015 ** min(s, 1.0)  # geometric: the loss only starts below ~10% light
    e = (x.astype(np.float64) / 255.0) ** 2.2 * light * 4000  # photo-electrons at full well 4000
    e = rng.poisson(e) + rng.normal(0, 2 + 10 * s, x.shape)
    y = np.clip(e / (4000 * light), 0, 1) ** (1 / 2.2)
    return np.clip(np.round(255 * y), 0, 255).astype(np.uint8)


def _compression(x, s, lm, ied, rng):
    import io as _io

    from PIL import Image

    fmt = ("JPEG", "WEBP")[int(rng.integers(2))]
    b = _io.BytesIO()
    Image.fromarray(x).save(b, fmt, quality=max(1, int(round(95 * (2 / 95) ** s))))
    return np.asarray(Image.open(_io.BytesIO(b.getvalue())).convert("RGB"))


def _exposure(x, s, lm, ied, rng):
    gain = 2.0 ** (1.0 * s * rng.choice([-1.0, 1.0]))
    y = x.astype(np.float64) * gain
    y = (y - y.mean()) * max(1 - 0.4 * s, 0.05) + y.mean()
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def _chain(x, s, lm, ied, rng):
    w = x.shape[1]
    parts = rng.choice(len(_CHAIN_ORDER), int(rng.integers(2, 4)), replace=False)
    y = x
    for j in sorted(parts):  # landmarks follow a shrunk photo
        y = degrade_photo(y, _CHAIN_ORDER[j], s * rng.uniform(0.4, 0.75), rng, landmarks=lm * (y.shape[1] / w))
    return y


_CAPTURE = {
    "resolution": _resolution,
    "defocus": _defocus,
    "motion": _motion,
    "lowlight": _lowlight,
    "compression": _compression,
    "exposure": _exposure,
    "occluder": _occlude,
    "chain": _chain,
}


def random_photo_degradations(
    photo: np.ndarray,
    n: int,
    rng: np.random.Generator,
    kinds=CAPTURE_KINDS,
    *,
    landmarks=None,
    min_severity: float = 0.1,
    max_severity: float = 1.0,
):
    """``n`` degraded versions of a photo: list of (image, kind, severity), kind uniform
    over ``kinds``, severity ~ U(min_severity, max_severity)."""
    if not 0 <= min_severity < max_severity <= MAX_SEVERITY:
        raise QMagError(f"need 0 <= min_severity < max_severity <= {MAX_SEVERITY}")
    out = []
    for _ in range(n):
        kind = kinds[int(rng.integers(len(kinds)))]
        sev = float(rng.uniform(min_severity, max_severity))
        out.append((degrade_photo(photo, kind, sev, rng, landmarks=landmarks), kind, sev))
    return out


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
        from ..outputs import save_npz

        save_npz(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: str | Path) -> DegradedBank:
        from ..safeio import load_npz

        z = load_npz(path)
        missing = [f.name for f in fields(cls) if f.name not in z]
        if missing:
            raise QMagError(f"{path}: not a degraded bank (missing {', '.join(missing)})")
        return cls(**{f.name: z[f.name] for f in fields(cls)})


def degraded_bank(encoder, crops: np.ndarray, n_degraded: int, seed: int = 0, *, batch_size: int = 32) -> DegradedBank:
    """Embed each aligned crop (N, S, S, 3) clean and in ``n_degraded`` seeded degraded
    versions (kind uniform over :data:`KINDS`, severity U(0.1, 1), one generator seeded
    with ``seed`` consumed image by image, see :func:`with_degraded_copies`)."""
    import torch

    rng = np.random.default_rng(seed)
    net = encoder.net
    both = encoder.separate_head and not encoder.flip
    U, Q, R, K, S = [], [], [], [], []
    for k in range(0, len(crops), batch_size):
        batch, kds, sevs = with_degraded_copies(crops[k : k + batch_size], n_degraded, rng)
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
        U.append(d / np.maximum(r, 1e-12)[:, None])
        Q.append(q)
        R.append(r)  # noqa: E702
    v = 1 + n_degraded
    n = len(crops)
    return DegradedBank(
        np.concatenate(U).reshape(n, v, -1),
        np.concatenate(Q).reshape(n, v),
        np.concatenate(R).reshape(n, v),
        np.asarray(K).reshape(n, v),
        np.asarray(S, np.float32).reshape(n, v),
    )


def cross_versions(n: int, n_degraded: int, rng: np.random.Generator) -> np.ndarray:
    """Versions (n, 2) for cross-quality pairs: one seeded side of each pair takes a
    seeded degraded version in 1..``n_degraded``, the other stays clean (0)."""
    v = np.zeros((n, 2), np.int64)
    side = rng.integers(0, 2, n)
    v[np.arange(n), side] = rng.integers(1, n_degraded + 1, n)
    return v
