"""QMagFace scoring: ŝ from s and q_min, and cosines of embedding pairs.

The quality-aware comparison score of Terhörst et al. (QMagFace, 2022) is

    ŝ = ω(s) · q_min + s,        ω(s) = min(0, β·s − α)

with s the cosine similarity of two raw embeddings and q_min the smaller of their
lengths (the MagFace quality). :class:`~qmag_core.scores.trainer.QMagFaceTrainer` learns α and β.

The trainer lives in :mod:`qmag_core.scores.trainer` (engine: :mod:`qmag_core.scores.roc_window`),
parameter records in :mod:`qmag_core.scores.params`; both are re-exported here.

References
----------
Terhörst, Ihlefeld, Huber, Damer, Kirchbuchner, Raja, Kuijper. "QMagFace: Simple and
Accurate Quality-Aware Face Recognition", WACV 2023 (arXiv:2111.13475).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import InvalidEmbeddingError, QMagError

__all__ = [
    "qmagface_score",
    "omega_of_s",
    "pair_similarity",
    "PairScores",
]

FloatArray = npt.NDArray[np.float64]


def omega_of_s(s: npt.ArrayLike, alpha: float, beta: float) -> FloatArray:
    """Quality weight ω(s) = min(0, β·s − α), elementwise; shape of ``s``."""
    s = np.asarray(s, dtype=np.float64)
    return np.minimum(0.0, beta * s - alpha)


def qmagface_score(s: npt.ArrayLike, q_min: npt.ArrayLike, alpha: float, beta: float) -> FloatArray:
    """Quality-aware score ŝ = min(0, β·s − α)·q_min + s.

    Parameters
    ----------
    s : array-like of shape (n_pairs,)
        Cosine similarities of the raw embeddings.
    q_min : array-like of shape (n_pairs,)
        Smaller embedding length (quality) of each pair.
    alpha, beta : float
        Learned parameters.

    Returns
    -------
    ndarray of shape (n_pairs,), float64

    Examples
    --------
    >>> qmagface_score([0.9, 0.1], [20.0, 20.0], alpha=0.077428, beta=0.125926).round(4)
    array([ 0.9   , -1.1967])
    """
    s = np.asarray(s, dtype=np.float64)
    q_min = np.asarray(q_min, dtype=np.float64)
    if s.shape != q_min.shape:
        raise QMagError(f"s and q_min must have the same shape, got {s.shape} and {q_min.shape}")
    return omega_of_s(s, alpha, beta) * q_min + s


@dataclass(frozen=True)
class PairScores:
    """Cosine and qualities of pairs computed from raw embeddings.

    Attributes
    ----------
    s : (n_pairs,) float64 cosine similarity (NaN where ``valid`` is False)
    q1, q2 : (n_pairs,) float64 embedding lengths of the two images
    valid : (n_pairs,) bool, False where an image's embedding is missing, zero or non-finite
    """

    s: FloatArray
    q1: FloatArray
    q2: FloatArray
    valid: npt.NDArray[np.bool_]

    @property
    def q_min(self) -> FloatArray:
        return np.minimum(self.q1, self.q2)


def pair_similarity(
    embeddings: npt.ArrayLike,
    pairs: npt.ArrayLike,
    *,
    ok: npt.ArrayLike | None = None,
    on_invalid: str = "raise",
) -> PairScores:
    """Cosine s and qualities q1, q2 for index pairs into raw embeddings.

    Parameters
    ----------
    embeddings : array-like of shape (n_images, dim)
        Raw (not normalised) embeddings; their L2 norms are the qualities.
    pairs : array-like of int, shape (n_pairs, 2)
        Row indices into ``embeddings``.
    ok : array-like of bool, shape (n_images,), optional
        Rows already known to have failed (e.g. the ``ok`` column of an .npz).
    on_invalid : {"raise", "mask"}
        An embedding with zero norm or NaN/inf is never silently scored: "raise"
        raises :class:`InvalidEmbeddingError` naming the rows, "mask" returns such
        pairs with ``valid=False`` and NaN scores.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise QMagError(f"embeddings must have shape (n_images, dim), got shape {e.shape}")
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2:
        raise QMagError(f"pairs must have shape (n_pairs, 2), got shape {p.shape}")
    if p.size and not np.issubdtype(p.dtype, np.integer):
        raise QMagError(f"pair indices must be integers, got dtype {p.dtype}")
    p = p.astype(np.int64, copy=False)
    if p.size and (p.min() < 0 or p.max() >= e.shape[0]):
        raise QMagError(f"pair indices must lie in [0, {e.shape[0] - 1}], got range [{p.min()}, {p.max()}]")
    norms = np.linalg.norm(e, axis=1)
    good = np.isfinite(e).all(axis=1) & (norms > 0)
    if ok is not None:
        good &= np.asarray(ok, dtype=bool)
    used = np.unique(p)
    bad_rows = used[~good[used]]
    if bad_rows.size and on_invalid == "raise":
        shown = ", ".join(map(str, bad_rows[:10])) + (" …" if bad_rows.size > 10 else "")
        raise InvalidEmbeddingError(
            f"{bad_rows.size} embedding row(s) used by pairs have zero norm, NaN/inf or failed: rows {shown}",
            bad_rows,
        )
    if on_invalid not in ("raise", "mask"):
        raise QMagError(f"on_invalid must be 'raise' or 'mask', got {on_invalid!r}")
    safe = np.where(norms > 0, norms, 1.0)
    unit = e / safe[:, None]
    valid = good[p[:, 0]] & good[p[:, 1]]
    s = np.einsum("ij,ij->i", unit[p[:, 0]], unit[p[:, 1]])
    s = np.clip(s, -1.0, 1.0)
    s[~valid] = np.nan
    q1 = np.where(valid, norms[p[:, 0]], np.nan)
    q2 = np.where(valid, norms[p[:, 1]], np.nan)
    return PairScores(s=s, q1=q1, q2=q2, valid=valid)
