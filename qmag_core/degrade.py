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
0.06–0.09 on 160 LFW fold 1–4 faces, ``tools/train_builtin_head.py --calibrate``),
so severities of different kinds can be ranked together.  Downscale, JPEG and exposure
use geometric scales because their effect only starts near the strong end.
"""
from __future__ import annotations

import io

import numpy as np

from .align import warp_affine
from .errors import QMagError

__all__ = ["KINDS", "MAX_SEVERITY", "degrade", "random_degradations"]

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
