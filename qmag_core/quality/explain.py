"""Pixel-level quality (PLQ) maps: where in a face the model-specific quality q is lost.

Training-free and model-specific (after Terhörst et al., "Pixel-Level Face Image Quality
Assessment for Explainable Face Recognition"): q is the encoder's own quality (the
embedding length; for ``builtin`` the length its utility quality head gives, for
``builtin-raw`` the descriptor length) and the map says how much each pixel of the aligned crop adds to or
takes from q.

Methods
-------
``gradient``
    Integrated gradients of q from a blurred copy of the crop to the crop (``steps``
    points, midpoint rule): attribution = (x − x_blur) ⊙ mean ∇q.  The attributions of
    all pixels sum to q(x) − q(x_blur) up to the integration error (completeness;
    within ≈ ±10 % at 64 steps on this network), so a
    pixel's value is the quality its fine detail contributes; summed over colour
    channels and smoothed by a Gaussian (``sigma`` px).
``occlusion``
    Gradient-free: each ``patch``×``patch`` window (``stride`` apart) is replaced by the
    blurred crop and the quality change q − q_occluded is spread over the window's
    pixels (averaged where windows overlap).  Costs ((S − patch)/stride + 1)² forward
    passes, batched.

``magnitude``
    The published PLQ formulation: |∂q/∂x| per pixel, channel mean (≥ 0).

Gradient and occlusion maps are signed: high = the pixel's content raises q, low
(negative) = it lowers q.  ``map`` is normalised by its own largest magnitude; for
figures that must compare photos (before/after a repair, photo A vs B) draw
:func:`display_values` with the encoder's fixed ``unit`` (its quality scale's ``plq``:
the 99th percentile of |raw| on clean reference crops), one colour scale everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import QMagError
from ..vision.align import ARCFACE_112, DEFAULT_FACE_RULE, AlignedFace, FaceDetector, detect_and_align
from ..vision.images import blur

#: map methods (module docstring); ``magnitude`` is the published PLQ formulation
METHODS = ("gradient", "occlusion", "magnitude")

__all__ = [
    "METHODS",
    "magnitude_map",
    "QualityMap",
    "quality_gradient",
    "gradient_map",
    "occlusion_map",
    "explain",
    "local_variance_map",
    "render_overlay",
    "display_values",
    "deletion_drops",
    "patch_region",
]


@dataclass(frozen=True)
class QualityMap:
    """A PLQ map of one aligned face.

    Attributes
    ----------
    crop : (S, S, 3) uint8 aligned RGB face
    quality : float, q of the crop
    map : (S, S) float32 in [−1, 1]; low = hurts quality
    raw : (S, S) float32 un-normalised attribution (units of q)
    method : "gradient" or "occlusion"
    encoder : encoder id
    seconds : compute time
    """

    crop: np.ndarray = field(repr=False)
    quality: float
    map: np.ndarray = field(repr=False)
    raw: np.ndarray = field(repr=False)
    method: str
    encoder: str
    options: dict
    seconds: float
    aligned: AlignedFace | None = field(default=None, repr=False)


def _torch_q(encoder, px):
    """q for pixel tensor(s) (B, 3, S, S), RGB 0–255, differentiable."""
    return encoder.embedding(encoder.torch_input(px)).norm(dim=1)


def quality_gradient(encoder, crop: np.ndarray) -> tuple[float, np.ndarray]:
    """``(q, ∂q/∂x)`` with the gradient per pixel and channel, shape (S, S, 3), in q per
    grey level (x in 0–255)."""
    import torch

    px = torch.from_numpy(np.ascontiguousarray(np.asarray(crop, np.float32).transpose(2, 0, 1))[None]).to(
        encoder.device
    )
    px.requires_grad_(True)
    q = _torch_q(encoder, px)
    (g,) = torch.autograd.grad(q.sum(), px)
    return float(q.detach()[0]), g[0].permute(1, 2, 0).cpu().numpy()


def _normalise(raw: np.ndarray) -> np.ndarray:
    m = float(np.max(np.abs(raw)))
    return (raw / m).astype(np.float32) if m > 0 else np.zeros_like(raw, dtype=np.float32)


def gradient_map(
    encoder,
    crop: np.ndarray,
    *,
    steps: int = 64,
    baseline_sigma: float = 4.0,
    sigma: float = 1.5,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> QualityMap:
    """Integrated-gradients PLQ map from a blurred baseline (see module docstring);
    ``progress(done, steps)`` after each batch of integration steps."""
    if not encoder.differentiable:
        from ..vision.runtime import torch_available

        why = "the torch runtime"
        if not torch_available():
            why = "torch, which is not installed (pip install 'qmag-studio[vision]')"
        raise QMagError(f"gradient maps need {why}: they differentiate q; use the occlusion method here")
    import torch
    from scipy.ndimage import gaussian_filter

    if int(steps) < 1:
        raise QMagError(f"steps must be a positive integer, got {steps}")
    t0 = time.perf_counter()
    x = np.asarray(crop, np.float32)
    base = blur(x, baseline_sigma)
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps  # midpoint rule
    grads = np.zeros_like(x)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).to(encoder.device)
    bt = torch.from_numpy(np.ascontiguousarray(base.transpose(2, 0, 1))).to(encoder.device)
    for k in range(0, steps, batch_size):
        a = torch.from_numpy(alphas[k : k + batch_size]).to(encoder.device).view(-1, 1, 1, 1)
        px = (bt + a * (xt - bt)).requires_grad_(True)
        q = _torch_q(encoder, px)
        (g,) = torch.autograd.grad(q.sum(), px)
        grads += g.sum(0).permute(1, 2, 0).cpu().numpy()
        if progress is not None:
            progress(min(k + batch_size, steps), steps)
    attr = (x - base) * grads / steps
    raw = gaussian_filter(attr.sum(axis=2), sigma) if sigma > 0 else attr.sum(axis=2)
    q0 = float(encoder.quality_of(x[None])[0])
    return QualityMap(
        np.asarray(crop, np.uint8),
        q0,
        _normalise(raw),
        raw.astype(np.float32),
        "gradient",
        encoder.id,
        {"steps": steps, "baseline_sigma": baseline_sigma, "sigma": sigma},
        time.perf_counter() - t0,
    )


def occlusion_map(
    encoder,
    crop: np.ndarray,
    *,
    patch: int = 16,
    stride: int = 8,
    baseline_sigma: float = 4.0,
    fill: str = "blur",
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> QualityMap:
    """Occlusion-sensitivity PLQ map (see module docstring).  ``fill``: what replaces each
    patch — ``blur`` (the crop blurred by ``baseline_sigma``: removes detail only) or
    ``grey`` (mid-grey 128: removes the content, classic occlusion sensitivity);
    ``progress(done, n_patches)`` after each batch of patches."""
    t0 = time.perf_counter()
    x = np.asarray(crop, np.float32)
    S = x.shape[0]
    if not (0 < patch <= S and stride > 0):
        raise QMagError(f"need 0 < patch <= {S} and stride > 0, got patch={patch}, stride={stride}")
    if fill not in ("blur", "grey"):
        raise QMagError(f"fill must be 'blur' or 'grey', got {fill!r}")
    base = blur(x, baseline_sigma) if fill == "blur" else np.full_like(x, 128.0)
    starts = list(range(0, S - patch + 1, stride))
    if starts[-1] != S - patch:
        starts.append(S - patch)
    windows = [(r, c) for r in starts for c in starts]
    q0 = float(encoder.quality_of(x[None])[0])
    acc = np.zeros((S, S), np.float64)
    cnt = np.zeros((S, S), np.float64)
    for k in range(0, len(windows), batch_size):
        chunk = windows[k : k + batch_size]
        batch = np.repeat(x[None], len(chunk), axis=0)
        for b, (r, c) in enumerate(chunk):
            batch[b, r : r + patch, c : c + patch] = base[r : r + patch, c : c + patch]
        dq = q0 - encoder.quality_of(batch)
        for (r, c), d in zip(chunk, dq, strict=True):
            acc[r : r + patch, c : c + patch] += d
            cnt[r : r + patch, c : c + patch] += 1
        if progress is not None:
            progress(min(k + batch_size, len(windows)), len(windows))
    raw = (acc / np.maximum(cnt, 1)).astype(np.float32)
    return QualityMap(
        np.asarray(crop, np.uint8),
        q0,
        _normalise(raw),
        raw,
        "occlusion",
        encoder.id,
        {"patch": patch, "stride": stride, "fill": fill, "baseline_sigma": baseline_sigma, "n_forward": len(windows)},
        time.perf_counter() - t0,
    )


def magnitude_map(encoder, crop: np.ndarray) -> QualityMap:
    """The published PLQ formulation: the magnitude of ∂q/∂x per pixel, averaged over the
    colour channels (q per grey level, ≥ 0: how strongly q depends on the pixel).  Shown
    on the encoder's fixed scale as tanh(raw / unit) (:func:`display_values`)."""
    if not encoder.differentiable:
        raise QMagError("magnitude maps need the torch runtime: they differentiate q; use the occlusion method here")
    t0 = time.perf_counter()
    q0, g = quality_gradient(encoder, crop)
    raw = np.abs(g).mean(axis=2).astype(np.float32)
    return QualityMap(
        np.asarray(crop, np.uint8), q0, _normalise(raw), raw, "magnitude", encoder.id, {}, time.perf_counter() - t0
    )


def local_variance_map(crop: np.ndarray, size: int = 7) -> np.ndarray:
    """Model-free baseline: local variance of the grey image (high = textured)."""
    from scipy.ndimage import uniform_filter

    g = np.asarray(crop, np.float32).mean(axis=2)
    m = uniform_filter(g, size)
    return (uniform_filter(g * g, size) - m * m).astype(np.float32)


def deletion_drops(
    encoder, crop: np.ndarray, score: np.ndarray, *, frac: float = 0.1, baseline_sigma: float = 4.0
) -> tuple[float, float, float]:
    """Deletion test: ``(q, q − q(blur top frac), q − q(blur bottom frac))`` where the
    pixels rated highest / lowest by ``score`` (S, S) are replaced by the blurred crop."""
    x = np.asarray(crop, np.float32)
    base = blur(x, baseline_sigma)
    order = np.argsort(score.ravel(), kind="stable")
    k = int(round(frac * order.size))
    out = []
    for idx in (order[-k:], order[:k]):
        m = np.zeros(order.size, bool)
        m[idx] = True
        m = m.reshape(score.shape)[..., None]
        out.append(np.where(m, base, x))
    q0, qh, ql = encoder.quality_of(np.stack([x] + out))
    return float(q0), float(q0 - qh), float(q0 - ql)


def explain(
    image,
    encoder,
    *,
    method: str = "gradient",
    detector: FaceDetector | None = None,
    aligned: bool = False,
    name: str | None = None,
    face: str | int = DEFAULT_FACE_RULE,
    **kw,
) -> QualityMap:
    """Detect, align (``face``: the subject rule or a face index) and explain one image
    (same errors as the rest of the pipeline)."""
    if method not in METHODS:
        raise QMagError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if detector is None and not aligned:
        detector = FaceDetector.for_encoder(encoder)
    a = detect_and_align(image, detector, encoder.spec, aligned=aligned, aligned_spec=ARCFACE_112, name=name, face=face)
    m = {"gradient": gradient_map, "occlusion": occlusion_map, "magnitude": magnitude_map}[method](
        encoder, a.crop, **kw
    )
    return QualityMap(m.crop, m.quality, m.map, m.raw, m.method, m.encoder, m.options, m.seconds, a)


def patch_region(spec, part: str, size: int | None = None) -> tuple[slice, slice]:
    """Square around the eyes or the mouth of a crop spec's template: (rows, cols)."""
    t = spec.template
    c = (t[0] + t[1]) / 2 if part == "eyes" else (t[3] + t[4]) / 2
    half_w = (
        (abs(t[1, 0] - t[0, 0]) / 2 + spec.size * 0.08)
        if part == "eyes"
        else (abs(t[4, 0] - t[3, 0]) / 2 + spec.size * 0.06)
    )
    half_h = size / 2 if size else spec.size * 0.09
    r0, r1 = int(round(c[1] - half_h)), int(round(c[1] + half_h))
    c0, c1 = int(round(c[0] - half_w)), int(round(c[0] + half_w))
    return slice(max(r0, 0), min(r1, spec.size)), slice(max(c0, 0), min(c1, spec.size))


def render_overlay(qm: QualityMap, *, scale: int = 2, unit: float | None = None) -> np.ndarray:
    """[crop | heatmap over crop] as RGB uint8: red = lowers quality, blue = raises it.
    Colours follow :func:`display_values` (``unit``: the fixed scale) and are blended in
    proportion to the magnitude, so the face stays visible where the map is near zero."""
    v = display_values(qm, unit)[..., None]
    red, blue = np.array([215, 48, 39.0]), np.array([33, 102, 172.0])
    colour = np.where(v < 0, red, blue)
    a = 0.85 * np.abs(v) ** 0.7
    grey = np.repeat(qm.crop.astype(np.float64).mean(axis=2, keepdims=True), 3, axis=2)
    over = (1 - a) * (0.6 * grey + 0.4 * 255) + a * colour
    img = np.concatenate([qm.crop.astype(np.float64), over], axis=1)
    img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    return np.clip(img, 0, 255).astype(np.uint8)


def display_values(qm: QualityMap, unit: float | None = None) -> np.ndarray:
    """The map on one colour scale, clipped to [−1, 1]: ``unit`` (q per pixel that maps to
    ±1) fixes it across photos and before/after a repair — the encoder's calibrated unit
    (:attr:`~.scale.QualityScale.plq`); without it the map's own 99th percentile of |raw|."""
    p = float(unit) if unit else float(np.percentile(np.abs(qm.raw), 99))
    if p <= 0:
        return np.zeros_like(qm.raw)
    if qm.method == "magnitude":  # non-negative: the fixed squashing of the published formulation
        return np.tanh(qm.raw / p)
    return np.clip(qm.raw / p, -1, 1)
