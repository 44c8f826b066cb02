"""Training samples for utility quality heads, torch-free: a face's degraded versions
and the recognition utility each has left — the cosine between its embedding (or the
backbone descriptor) and that of the same face clean (1 for the clean one), in the
spirit of the SDD-FIQA / CR-FIQA pseudo-labels; no identity labels are needed.

Two degradation families feed the targets (:mod:`qmag_core.quality.degrade`): ``crop``
degrades the aligned crop, ``capture`` degrades the whole photo before detection and
alignment (a degraded photo that loses its face gives no sample).  The ridge fit that
turns samples into a head (:func:`ridge_utility`) is closed form: the same inputs give
the same head.
"""

from __future__ import annotations

import numpy as np

from ..errors import QMagError

__all__ = ["TRAIN_FAMILIES", "DEFAULT_LAMBDAS", "utility_samples", "split_by_identity", "ridge_utility", "FEATURES"]

TRAIN_FAMILIES = ("crop", "capture", "both")
DEFAULT_LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
#: what a head reads: the backbone's per-stage statistics (needs the torch network) or
#: the encoder's embedding alone (any encoder: its unit direction and log length)
FEATURES = ("backbone", "embedding")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    r = spearmanr(a, b)[0]
    return float(r) if np.isfinite(r) else -1.0


def embedding_features(e: np.ndarray) -> np.ndarray:
    """Head features of raw embeddings (N, D): the unit direction and the log length,
    (N, D + 1) float64 — all a model without a quality head gives."""
    e = np.asarray(e, np.float64)
    n = np.linalg.norm(e, axis=1, keepdims=True)
    return np.hstack([e / np.maximum(n, 1e-12), np.log(np.maximum(n, 1e-12))])


def _encode(encoder, crops: list, features: str = "backbone") -> tuple[np.ndarray, np.ndarray]:
    """Head features (N, F) and unit descriptors (N, D) of aligned crops: the backbone's
    768 per-stage statistics and its descriptor (torch network), or the embedding's."""
    if features == "embedding":
        if not crops:
            return np.zeros((0, encoder.dim + 1)), np.zeros((0, encoder.dim), np.float32)
        e = encoder.embed(np.stack(crops))
        return embedding_features(e), e / np.linalg.norm(e, axis=1, keepdims=True)
    from .head import backbone_directions, backbone_features

    if not crops:
        return np.zeros((0, 768), np.float32), np.zeros((0, encoder.dim), np.float32)
    f = backbone_features(encoder, np.stack(crops), kind="multi")
    d = backbone_directions(encoder, f)
    return f, d / np.linalg.norm(d, axis=1, keepdims=True)


class _Subject:
    """The subject's landmarks in a photo (``face`` rule among several faces), or None."""

    def __init__(self, detector, face: str):
        self.detector, self.face = detector, face

    def __call__(self, img: np.ndarray):
        from ..vision.align import choose_face

        faces = self.detector.detect(img)
        if not faces:
            return None
        return faces[choose_face(faces, (img.shape[1], img.shape[0]), self.face)].landmarks


def _clean_face(src, k: int, encoder, subject, aligned: bool):
    """(photo, subject landmarks or None, aligned clean crop) of one input; raises
    ImageError / NoFaceError."""
    from ..vision.align import ARCFACE_112, NoFaceError, align, realign_aligned
    from ..vision.images import load_image

    img = load_image(src) if isinstance(src, str) else np.asarray(src)
    if aligned:
        return img, None, realign_aligned(img, ARCFACE_112, encoder.spec).crop
    lm = subject(img)
    if lm is None:
        raise NoFaceError(f"{src if isinstance(src, str) else f'photo {k}'}: no face found")
    return img, lm, align(img, lm, encoder.spec).crop


def _degraded_versions(img, lm, base, fams, n: int, rng, encoder, subject):
    """[(crop, family, kind, severity)] of one photo's degraded versions and how many
    capture versions lost the face."""
    from ..vision.align import align
    from .degrade import CAPTURE_KINDS, random_degradations, random_photo_degradations

    out, lost = [], 0
    if "crop" in fams:
        out += [(im, "crop", kd, sv) for im, kd, sv in random_degradations(base, n, rng)]
    if "capture" in fams:
        for im, kd, sv in random_photo_degradations(img, n, rng, CAPTURE_KINDS, landmarks=lm):
            dlm = subject(im)
            if dlm is None:
                lost += 1
            else:
                out.append((align(im, dlm, encoder.spec).crop, "capture", kd, sv))
    return out, lost


def utility_samples(
    encoder,
    photos,
    *,
    family: str = "both",
    n_degraded: int = 2,
    seed: int = 0,
    detector=None,
    aligned: bool = False,
    face: str = "best",
    progress=None,
    features: str = "backbone",
) -> dict:
    """Training samples for a utility head from ``photos`` (a list of paths or (H, W, 3)
    uint8 arrays): each photo clean (target 1) and ``n_degraded`` seeded degraded versions
    per family (target = cosine to the clean descriptor).  ``aligned``: the photos are
    aligned crops (crop family only).  Returns ``features`` (N, 768), ``target`` (N,),
    ``family``, ``kind``, ``severity``, ``source`` (photo index) and ``failed`` (messages
    of photos without a usable clean face; degraded versions that lose the face are
    counted in ``lost``).  ``features``: ``backbone`` (the torch network's statistics) or
    ``embedding`` (any encoder's embedding alone, see :func:`embedding_features`)."""
    if features not in FEATURES:
        raise QMagError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
    from ..vision.align import FaceDetector, NoFaceError
    from ..vision.images import ImageError

    if family not in TRAIN_FAMILIES:
        raise QMagError(f"family must be one of {', '.join(TRAIN_FAMILIES)}, got {family!r}")
    if aligned and family != "crop":
        raise QMagError("aligned crops can only be degraded at crop level (family 'crop')")
    fams = ("crop", "capture") if family == "both" else (family,)
    if detector is None and not aligned:
        detector = FaceDetector.for_encoder(encoder)
    subject = _Subject(detector, face)
    rng = np.random.default_rng(seed)
    rows, failed, lost = [], [], 0  # rows: (photo index, crop, family, kind, severity)
    for k, src in enumerate(photos):
        try:
            img, lm, base = _clean_face(src, k, encoder, subject, aligned)
        except (ImageError, NoFaceError) as e:
            failed.append(str(e))
            continue
        versions, n_lost = _degraded_versions(img, lm, base, fams, n_degraded, rng, encoder, subject)
        rows += [(k, base, "clean", "", 0.0)] + [(k, *v) for v in versions]
        lost += n_lost
        if progress is not None:
            progress(k + 1, len(photos))
    if not rows:
        raise QMagError(f"no usable faces among {len(photos)} photos" + (f" (e.g. {failed[0]})" if failed else ""))
    return {**_targets(encoder, rows, features), "failed": failed, "lost": lost}


def _targets(encoder, rows, features: str = "backbone") -> dict:
    """Features, utility targets and labels of the sample rows (clean rows first per photo)."""
    crops = [r[1] for r in rows]
    parts = [_encode(encoder, crops[k : k + 256], features) for k in range(0, len(crops), 256)]
    feats, units = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    source = np.array([r[0] for r in rows])
    fam = np.array([r[2] for r in rows])
    clean_of = {s: i for i, (s, f) in enumerate(zip(source, fam, strict=True)) if f == "clean"}
    ref = units[[clean_of[s] for s in source]]
    target = np.where(fam == "clean", 1.0, (units * ref).sum(1))
    return {
        "features": feats,
        "target": target,
        "family": fam,
        "kind": np.array([r[3] for r in rows]),
        "severity": np.array([r[4] for r in rows]),
        "source": source,
    }


def split_by_identity(paths: list[str], val_fraction: float = 0.25, seed: int = 0) -> tuple[list[str], list[str]]:
    """Seeded split of image paths ``identity/file`` into (fit, validation) with no identity
    in both; at least one identity on each side.  Needs two or more identity folders."""
    if not 0 < val_fraction < 1:
        raise QMagError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ids = sorted({p.split("/")[0] for p in paths if "/" in p})
    if len(ids) < 2:
        raise QMagError("need images in two or more identity sub-folders to hold identities out for validation")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = min(len(ids) - 1, max(1, int(round(val_fraction * len(ids)))))
    val = {ids[k] for k in order[:n_val]}
    fit = [p for p in paths if "/" in p and p.split("/")[0] not in val]
    return fit, [p for p in paths if "/" in p and p.split("/")[0] in val]


def ridge_utility(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, lambdas=DEFAULT_LAMBDAS):
    """Ridge regression of utilities ``y`` (N,) on standardised features ``X`` (N, F), λ
    (relative to N) chosen by Spearman on ``Xv``, ``yv``, refitted on train ∪ validation.
    Returns ``(mean (F,), scale (F,), weight (F,), bias, λ, {λ: validation Spearman})``."""
    X, Xv = np.asarray(X, np.float64), np.asarray(Xv, np.float64)
    y, yv = np.asarray(y, np.float64).ravel(), np.asarray(yv, np.float64).ravel()
    if X.ndim != 2 or Xv.ndim != 2 or X.shape[1] != Xv.shape[1]:
        raise QMagError(f"features must be (N, F) with the same F, got {X.shape} and {Xv.shape}")
    if len(X) != len(y) or len(Xv) != len(yv):
        raise QMagError("features and targets differ in length")
    if len(X) < 10 or len(Xv) < 5:
        raise QMagError(f"too few samples to fit a utility head ({len(X)} training, {len(Xv)} validation)")
    if not (np.isfinite(X).all() and np.isfinite(y).all() and np.isfinite(Xv).all() and np.isfinite(yv).all()):
        raise QMagError("features or targets contain NaN/inf")

    def solve(A, t, lam):
        mu, sd = A.mean(0), A.std(0) + 1e-6
        Z = (A - mu) / sd
        w = np.linalg.solve(Z.T @ Z + lam * len(Z) * np.eye(Z.shape[1]), Z.T @ (t - t.mean()))
        return mu, sd, w, t.mean()

    scores = {}
    for lam in lambdas:
        mu, sd, w, b = solve(X, y, lam)
        scores[float(lam)] = _spearman(((Xv - mu) / sd) @ w + b, yv)
    lam = max(scores, key=lambda k: (scores[k], k))  # ties: the stronger regulariser
    mu, sd, w, b = solve(np.r_[X, Xv], np.r_[y, yv], lam)
    return mu, sd, w, float(b), lam, scores
