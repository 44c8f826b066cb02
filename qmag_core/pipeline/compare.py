"""Compare face images: quality per image, cosine s and QMagFace ŝ per pair, and the
accept/reject decision at an FMR operating point of a parameter set.

Used by ``python -m qmag_core compare`` and the dashboard's compare page.  A failed image
(unreadable, no face) is reported on its own; the others are still compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from ..errors import QMagError
from ..scores.params import QMagFaceParams
from ..scores.scoring import omega_of_s, qmagface_score
from ..vision.align import DEFAULT_FACE_RULE, AlignedFace, FaceDetector, NoFaceError, detect_and_align
from ..vision.images import ImageError, load_image

__all__ = [
    "ImageResult",
    "PairResult",
    "ComparisonResult",
    "compare_images",
    "embed_images",
    "compare_embedded",
]


@dataclass
class ImageResult:
    name: str
    ok: bool
    error: str = ""
    quality: float = math.nan
    embedding: np.ndarray | None = field(default=None, repr=False)
    aligned: AlignedFace | None = field(default=None, repr=False)
    image: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_faces(self) -> int:
        return self.aligned.n_faces if self.aligned is not None else 0


@dataclass
class PairResult:
    i: int
    j: int
    s: float
    s_hat: float
    q_min: float
    accept_s: bool | None
    accept_s_hat: bool | None


@dataclass
class ComparisonResult:
    images: list[ImageResult]
    pairs: list[PairResult]
    fmr: float
    threshold_s: float | None
    threshold_s_hat: float | None
    params: QMagFaceParams | None

    def matrix(self, which: str = "s") -> np.ndarray:
        """(n, n) similarity matrix of ``which`` ("s" or "s_hat"); NaN for failed images."""
        n = len(self.images)
        m = np.full((n, n), np.nan)
        for p in self.pairs:
            m[p.i, p.j] = m[p.j, p.i] = getattr(p, which)
        for k, r in enumerate(self.images):
            if r.ok:
                m[k, k] = 1.0
        return m


#: FMRs a shipped parameter set carries thresholds for: 13 log-spaced from 1e-4 to 1e-1
def embed_images(
    images,
    encoder,
    *,
    detector: FaceDetector | None = None,
    names=None,
    aligned: bool = False,
    face: str = DEFAULT_FACE_RULE,
    choose: dict[int, int] | None = None,
) -> list[ImageResult]:
    """Detect, align and embed each image's subject (the slow half of a comparison).

    ``images``: paths, bytes, PIL images or arrays; ``names`` label them.  ``face`` is
    the rule that picks the subject of a photo with several faces; ``choose`` maps an
    image's position to the index of the face to use instead (detections are ordered
    largest first, as in ``ImageResult.aligned.faces``).  Errors on one image
    (ImageError, NoFaceError) are kept in its :class:`ImageResult`.
    """
    images = list(images)
    names = (
        list(names)
        if names is not None
        else [getattr(x, "name", None) or (x if isinstance(x, str) else f"image {k + 1}") for k, x in enumerate(images)]
    )
    if detector is None and not aligned:
        detector = FaceDetector.for_encoder(encoder)
    results: list[ImageResult] = []
    crops, idx = [], []
    for k, (src, name) in enumerate(zip(images, names, strict=True)):
        try:
            img = load_image(src, name=str(name))
            a = detect_and_align(
                img, detector, encoder.spec, aligned=aligned, name=str(name), face=(choose or {}).get(k, face)
            )
        except (ImageError, NoFaceError, QMagError) as e:
            results.append(ImageResult(str(name), False, str(e)))
            continue
        results.append(ImageResult(str(name), True, "", aligned=a, image=img))
        crops.append(a.crop)
        idx.append(k)
    if crops:
        emb = encoder.embed(np.stack(crops))
        for k, e in zip(idx, emb, strict=True):
            q = float(np.linalg.norm(e))
            if not (np.isfinite(e).all() and q > 0):
                results[k].ok, results[k].error = False, f"{results[k].name}: encoder returned an unusable embedding"
                continue
            results[k].embedding, results[k].quality = e, q
    return results


def compare_embedded(
    results: list[ImageResult], *, params: QMagFaceParams | None = None, fmr: float = 1e-3
) -> ComparisonResult:
    """Score every pair of embedded images and decide at ``fmr`` (the fast half: no
    network runs, so moving an FMR slider only calls this)."""
    fmr_used, t_s, t_h = params.threshold_at(fmr) if params is not None else (None, None, None)
    pairs = []
    good = [k for k, r in enumerate(results) if r.ok]
    for i, j in combinations(good, 2):
        ei, ej = results[i].embedding.astype(np.float64), results[j].embedding.astype(np.float64)
        s = float(np.clip(ei @ ej / (np.linalg.norm(ei) * np.linalg.norm(ej)), -1, 1))
        qm = min(results[i].quality, results[j].quality)
        sh = float(qmagface_score(np.array([s]), np.array([qm]), params.alpha, params.beta)[0]) if params else s
        pairs.append(PairResult(i, j, s, sh, qm, None if t_s is None else s >= t_s, None if t_h is None else sh >= t_h))
    return ComparisonResult(list(results), pairs, fmr_used if fmr_used is not None else fmr, t_s, t_h, params)


def compare_images(
    images,
    encoder,
    *,
    detector: FaceDetector | None = None,
    names=None,
    params: QMagFaceParams | None = None,
    fmr: float = 1e-3,
    aligned: bool = False,
    face: str = DEFAULT_FACE_RULE,
    choose: dict[int, int] | None = None,
) -> ComparisonResult:
    """Embed each image's subject (:func:`embed_images`) and compare every pair
    (:func:`compare_embedded`)."""
    results = embed_images(images, encoder, detector=detector, names=names, aligned=aligned, face=face, choose=choose)
    return compare_embedded(results, params=params, fmr=fmr)


def explain_pairs(pairs: list[PairResult], params: QMagFaceParams | None) -> str:
    """One plain sentence on what QMagFace did to these pairs and why."""
    if params is None or not pairs:
        return "No QMagFace parameters for this encoder: ŝ = s."
    s0 = params.s0
    omega = omega_of_s(np.array([p.s for p in pairs]), params.alpha, params.beta)
    moved = int((omega < 0).sum())
    # with β > 0 (every trained set so far) ω(s) < 0 exactly below s0 = α/β; say it that way
    where = f"below s0 = α/β = {s0:.3f}" if params.beta > 0 else f"where ω(s) < 0 (β = {params.beta:.4g} ≤ 0)"
    flipped = [p for p in pairs if p.accept_s is not None and p.accept_s != p.accept_s_hat]
    if len(pairs) == 1:
        p, w = pairs[0], float(omega[0])
        if not moved:
            above = f"is above s0 = α/β = {s0:.3f}, where" if params.beta > 0 else "gives"
            why = f"ŝ = s: the cosine {p.s:.4f} {above} ω(s) = 0 — QMagFace leaves comparisons this similar unchanged."
        else:
            why = (
                f"ŝ = s + ω(s)·q_min = {p.s:.4f} {w * p.q_min:+.4f}: the cosine is {where}, so "
                f"ω(s) = {w:.4g} < 0 and the correction grows with the worse image's quality q_min = {p.q_min:.4g}."
            )
    else:
        why = (
            f"{moved} of {len(pairs)} pairs have a cosine {where} and are moved down by ω(s)·q_min; "
            "the others keep ŝ = s."
        )
    if any(p.accept_s is not None for p in pairs):
        why += (
            f" {len(flipped)} decision{'s' if len(flipped) != 1 else ''} differ{'s' if len(flipped) == 1 else ''} "
            "from cosine alone at this FMR."
            if flipped
            else " The decision is the same as with cosine alone at this FMR."
        )
    return why
