"""QMagFace scorer and trainer.

The quality-aware comparison score of Terhörst et al. (QMagFace, 2022) is

    ŝ = ω(s) · q_min + s,        ω(s) = min(0, β·s − α)

with s the cosine similarity of two raw embeddings and q_min the smaller of their
lengths (the MagFace quality). :class:`QMagFaceTrainer` learns α and β.

Two training modes exist:

``"official"``
    Exactly the algorithm of the official code (see
    ``shared/reference/qmagface_algorithm.md``): scores σ(ω·q_min + s), sklearn's
    ``roc_curve`` semantics with ``drop_intermediate=True``, operating points with
    ``fpr < fmr`` (strict), first-index tie breaking, then an ordinary least-squares
    line ω_opt = β·t − α.  Thresholds t therefore live in sigmoid space (≈0.5–0.75)
    while ω(s) is applied to raw cosine s.
``"consistent"``
    Thresholds are found on the raw scores ω·q_min + s, i.e. in the space in which
    ω(s) is applied, with the project's metric convention (lowest FNMR among
    thresholds with FMR ≤ target, on the full ROC).

The trainer never loops over pairs or thresholds in Python: for each ω only the top
``fmr_max · #imposters`` imposter scores can set a threshold, so it selects those by
one vectorised pass, sorts that small window and counts genuine scores with
``searchsorted``.  See :func:`_operating_points` for why this reproduces sklearn's
``roc_curve(drop_intermediate=True)`` exactly, ties included.

References
----------
Terhörst, Ihlefeld, Huber, Damer, Kirchbuchner, Raja, Kuijper. "QMagFace: Simple and
Accurate Quality-Aware Face Recognition", WACV 2023 (arXiv:2111.13475).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from .errors import (
    DataFormatError,
    DegenerateFitError,
    FMRClampWarning,
    InvalidEmbeddingError,
    NotFittedError,
    QMagError,
)

__all__ = [
    "qmagface_score",
    "omega_of_s",
    "pair_similarity",
    "PairScores",
    "QMagFaceTrainer",
    "QMagFaceParams",
    "ParamsCI",
    "OFFICIAL_IRESNET100",
    "QUALITY_MEANING",
]

FloatArray = npt.NDArray[np.float64]

#: α/β published with the official code for MagFace iResNet100 (trained on Adience).
OFFICIAL_IRESNET100 = {"alpha": 0.077428, "beta": 0.125926}

#: What the quality q means for each encoder id (written into params JSON).
QUALITY_MEANING = {
    "builtin": "length of the built-in encoder's embedding (its utility quality head: ≈ 100 × predicted cosine to a clean capture)",
    "builtin-raw": "length of the raw faceRecognitionNet descriptor (weak quality proxy)",
    "magface": "MagFace embedding length ||e||",
    None: "q1, q2 as given in the scores file (embedding lengths, MagFace quality)",
}


# --------------------------------------------------------------------------- scorer
def omega_of_s(s: npt.ArrayLike, alpha: float, beta: float) -> FloatArray:
    """Quality weight ω(s) = min(0, β·s − α), elementwise; shape of ``s``."""
    s = np.asarray(s, dtype=np.float64)
    return np.minimum(0.0, beta * s - alpha)


def qmagface_score(
    s: npt.ArrayLike, q_min: npt.ArrayLike, alpha: float, beta: float
) -> FloatArray:
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
        raise QMagError(
            f"pair indices must lie in [0, {e.shape[0] - 1}], got range [{p.min()}, {p.max()}]"
        )
    norms = np.linalg.norm(e, axis=1)
    good = np.isfinite(e).all(axis=1) & (norms > 0)
    if ok is not None:
        good &= np.asarray(ok, dtype=bool)
    used = np.unique(p)
    bad_rows = used[~good[used]]
    if bad_rows.size and on_invalid == "raise":
        shown = ", ".join(map(str, bad_rows[:10])) + (" …" if bad_rows.size > 10 else "")
        raise InvalidEmbeddingError(
            f"{bad_rows.size} embedding row(s) used by pairs have zero norm, NaN/inf or "
            f"failed: rows {shown}",
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


# ------------------------------------------------------------------ exact ROC engine
def _expit(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit  # the function the official code uses

    return expit(x)


def _top_with_ties(values: np.ndarray, m0: int) -> np.ndarray:
    """``values`` sorted descending, cut after the ``m0``-th largest, ties to it kept."""
    w = np.sort(values)[::-1]
    cut = w[m0 - 1]
    return w[: np.searchsorted(-w, -cut, side="right")]


def _select_top_window(u_imp: np.ndarray, m0: int, transform: Callable | None):
    """Imposters that can set a threshold: the top ``m0`` by transformed score, with ties.

    Returns ``(window_desc, cutoff_u)``: the transformed scores of every imposter whose
    transformed score is ≥ that of the ``m0``-th largest, sorted descending, and a raw
    cutoff such that every imposter or genuine with raw score below it has a
    transformed score strictly below the window's smallest value (``-inf`` when all
    were taken).  Only the speed depends on how the cutoff is guessed, never the result.
    """
    n = u_imp.shape[0]
    tf = transform if transform is not None else (lambda x: x)
    if n <= max(4 * m0, 65536):
        return _top_with_ties(tf(u_imp), m0), -np.inf
    # Guess a raw cutoff from a deterministic strided sample, then verify it.
    stride = max(1, n // 16384)
    sample = u_imp[::stride]
    k = sample.shape[0]
    rank = int(math.ceil(2.0 * m0 / n * k)) + 32
    while rank < k:
        c = np.partition(sample, k - rank)[k - rank]
        cand = u_imp[u_imp >= c]
        if cand.shape[0] > m0:
            w = _top_with_ties(tf(cand), m0)
            # Every excluded score is < c, so (tf monotone) transforms to at most
            # tf(prev(c)); the window is exact when that is strictly below the cut.
            if tf(np.array([np.nextafter(c, -np.inf)]))[0] < w[-1]:
                return w, c
        rank *= 4
    return _top_with_ties(tf(u_imp), m0), -np.inf


def _operating_points(
    u_gen: np.ndarray,
    u_imp: np.ndarray,
    fmrs: np.ndarray,
    *,
    transform: Callable | None,
    strict: bool,
    drop_intermediate: bool,
    fmr_max: float,
) -> tuple[np.ndarray, np.ndarray]:
    """FNMR and threshold per FMR for one score set, as sklearn's ROC would give them.

    ``u_gen``/``u_imp`` are raw scores; ``transform`` (σ or None) is applied to them.
    For every ``fmr`` the operating point is: among ROC points with fpr < fmr
    (``strict``) or fpr ≤ fmr, the first point with the lowest FNMR; returns
    ``(fnmr, threshold)`` arrays of shape ``(len(fmrs),)``.

    Why a window is enough (full ROC = distinct thresholds, descending):
    the last prefix point K' and the first point J' with the same TPR are joined by
    points that each add ≥ 1 imposter, so all of them lie among the top
    ``fmr_max·n_imp + 2`` imposter scores plus the genuine scores interleaved there.
    sklearn (drop_intermediate) removes a point when its step (Δfp, Δtp) equals the
    next step.  A threshold holding imposters has step (a_i, b_i) (its own imposter
    and genuine counts), so it is dropped iff the next threshold also holds imposters
    (no genuine-only threshold between) with the same (a, b).  Genuine-only runs are
    vertical; only their last point can be an operating point and it is always kept.
    The first point of the curve (before sklearn's (0,0) is added) is always kept.
    """
    n_gen = u_gen.shape[0]
    n_imp = u_imp.shape[0]
    m0 = min(n_imp, int(math.floor(fmr_max * n_imp)) + 2)
    win, cut_u = _select_top_window(u_imp, m0, transform)
    tf = transform if transform is not None else (lambda x: x)

    # distinct imposter thresholds x (descending) with counts a
    starts = np.flatnonzero(np.r_[True, win[1:] != win[:-1]])
    x = win[starts]
    a = np.diff(np.r_[starts, win.shape[0]]).astype(np.float64)
    fps = np.cumsum(a)

    g = tf(u_gen[u_gen >= cut_u]) if np.isfinite(cut_u) else tf(u_gen)
    g = g[g >= x[-1]]
    above = g > x[0]
    n_above = int(np.count_nonzero(above))
    min_above = g[above].min() if n_above else np.inf
    gs = np.sort(g[~above])
    left = np.searchsorted(gs, x, side="left")
    right = np.searchsorted(gs, x, side="right")
    ge = n_above + (gs.shape[0] - left)  # genuines with score >= x_i
    gt = n_above + (gs.shape[0] - right)  # genuines with score >  x_i
    b = ge - gt
    ge_prev = np.r_[0, ge[:-1]]
    run = gt - ge_prev  # genuine-only thresholds strictly between x_i and x_{i-1}
    # threshold of the last point of that run: the lowest genuine score above x_i
    if gs.shape[0]:
        run_last = np.where(right < gs.shape[0], gs[np.minimum(right, gs.shape[0] - 1)], min_above)
    else:
        run_last = np.full(x.shape, min_above)

    d = x.shape[0]
    if drop_intermediate:
        kept = np.ones(d, dtype=bool)
        if d > 1:
            same_next = (run[1:] == 0) & (a[1:] == a[:-1]) & (b[1:] == b[:-1])
            kept[:-1] = ~same_next
        if run[0] == 0:
            kept[0] = True  # first point of sklearn's curve is never dropped
    else:
        kept = np.ones(d, dtype=bool)

    # interleave: [P0] + for each i: (run-last point if run_i > 0), (I_i if kept)
    has_run = run > 0
    thr = np.empty(2 * d + 1)
    fp = np.empty(2 * d + 1)
    tp = np.empty(2 * d + 1)
    use = np.zeros(2 * d + 1, dtype=bool)
    thr[0], fp[0], tp[0], use[0] = np.inf, 0.0, 0.0, True
    thr[1::2], fp[1::2], tp[1::2], use[1::2] = run_last, np.r_[0.0, fps[:-1]], gt, has_run
    thr[2::2], fp[2::2], tp[2::2], use[2::2] = x, fps, ge, kept
    thr, fp, tp = thr[use], fp[use], tp[use].astype(np.float64)

    fpr = fp / float(n_imp)
    count = np.searchsorted(fpr, fmrs, side="left" if strict else "right")
    t_best = tp[count - 1]
    j = np.searchsorted(tp, t_best, side="left")
    fnmr = 1.0 - t_best / float(n_gen)
    return fnmr, thr[j]


# ----------------------------------------------------------------------- trainer
@dataclass(frozen=True)
class ParamsCI:
    """Seeded bootstrap confidence interval of α and β (percentile method)."""

    alpha: tuple[float, float]
    beta: tuple[float, float]
    level: float
    n_boot: int
    n_failed: int
    alphas: FloatArray = field(repr=False)
    betas: FloatArray = field(repr=False)


def _as_s_qmin(X: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] not in (2, 3):
        raise QMagError(
            "X must have shape (n_pairs, 2) with columns [s, q_min] or (n_pairs, 3) with "
            f"columns [s, q1, q2], got shape {X.shape}"
        )
    if not np.isfinite(X).all():
        rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise QMagError(f"X holds NaN/inf in {rows.size} row(s), first rows {rows[:5].tolist()}")
    s = X[:, 0]
    q = X[:, 1] if X.shape[1] == 2 else np.minimum(X[:, 1], X[:, 2])
    if X.shape[0] and (np.abs(s).max() > 1 + 1e-6):
        raise QMagError(f"cosine s must lie in [-1, 1]; got {s[np.argmax(np.abs(s))]:.6g}")
    qs = X[:, 1:]
    if qs.size and (qs.min() < 0 or qs.max() > _MAX_Q):
        bad = qs.min() if qs.min() < 0 else qs.max()
        raise QMagError(f"quality q must lie in [0, {_MAX_Q:.0e}]; got {bad:.6g}")
    return s, q


#: a quality above this is refused as implausible (embedding lengths are ~1–1000)
_MAX_Q = 1e6


def _as_labels(y: npt.ArrayLike, n: int) -> npt.NDArray[np.bool_]:
    y = np.asarray(y)
    if y.shape != (n,):
        raise QMagError(f"y must have shape ({n},), got {y.shape}")
    u = np.unique(y)
    if not np.isin(u, [0, 1]).all():
        raise QMagError(f"labels must be 1 (genuine) or 0 (imposter), got values {u[:10].tolist()}")
    return y.astype(bool)


class QMagFaceTrainer:
    """Learn the QMagFace quality weighting ω(s) = min(0, β·s − α).

    Parameters
    ----------
    mode : {"official", "consistent"}
        "official" reproduces the official training algorithm exactly (thresholds in
        sigmoid space, fpr < fmr, sklearn's drop_intermediate ROC); "consistent" finds
        thresholds on raw ω·q_min + s with FMR ≤ target (see module docstring).
    fmr_min, fmr_max : float
        FMR range; ``n_fmr`` log-spaced values are used (default 1e-5 … 1e-2).
    n_fmr : int
        Number of FMRs (50).
    n_omega : int
        Size of the ω grid (20); a finer grid makes ω_opt(t) less piecewise constant.
    max_ratio : float
        ω grid extent: ω ∈ [−max_ratio/max_q, +max_ratio/max_q] (0.5), max_q being the
        largest q_min of the training pairs.
    max_imposters : int or None
        When set and there are more imposter pairs, a seeded random subset of this size
        is used (speed on very large sets).
    clamp_fmr : bool
        Narrow the FMR range to what the imposter count supports (FMR ≥ 1/#imposters)
        with a :class:`FMRClampWarning`; when False the range is used as given (the
        official code's behaviour).
    random_state : int, numpy Generator or None
        Seeds imposter sub-sampling and bootstrap; the grid search itself is
        deterministic.

    Attributes
    ----------
    alpha_, beta_ : float
        The learned parameters.
    fmrs_ : ndarray of shape (n_fmr,)
        FMRs actually used (after clamping).
    omegas_ : ndarray of shape (n_omega,)
        The ω grid.
    thresholds_, omega_opt_, fnmr_opt_ : ndarray of shape (n_fmr,)
        Per FMR: threshold t of the best ω, that ω, and its FNMR (fraction).
    fnmr_grid_, threshold_grid_ : ndarray of shape (n_omega, n_fmr)
        FNMR and threshold of every ω at every FMR.
    n_ties_ : ndarray of int, shape (n_fmr,)
        How many ω reach the lowest FNMR at each FMR (first one is chosen).
    max_q_ : float
    n_genuine_, n_imposter_ : int
        Pair counts used for training.
    fmr_clamped_ : bool
    warnings_ : list of str
        Human-readable notes about the fit (clamping, ties).

    References
    ----------
    Terhörst et al., "QMagFace: Simple and Accurate Quality-Aware Face Recognition",
    arXiv:2111.13475.
    """

    _MODES = ("official", "consistent")

    def __init__(
        self,
        *,
        mode: str = "official",
        fmr_min: float = 1e-5,
        fmr_max: float = 1e-2,
        n_fmr: int = 50,
        n_omega: int = 20,
        max_ratio: float = 0.5,
        max_imposters: int | None = None,
        clamp_fmr: bool = True,
        random_state: int | np.random.Generator | None = 0,
    ):
        self.mode = mode
        self.fmr_min = fmr_min
        self.fmr_max = fmr_max
        self.n_fmr = n_fmr
        self.n_omega = n_omega
        self.max_ratio = max_ratio
        self.max_imposters = max_imposters
        self.clamp_fmr = clamp_fmr
        self.random_state = random_state

    # sklearn-style parameter access ------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params) -> "QMagFaceTrainer":
        for k, v in params.items():
            if k not in self._param_names():
                raise QMagError(f"unknown parameter {k!r}; valid: {self._param_names()}")
            setattr(self, k, v)
        return self

    @staticmethod
    def _param_names() -> list[str]:
        import inspect

        sig = inspect.signature(QMagFaceTrainer.__init__)
        return [p for p in sig.parameters if p != "self"]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"QMagFaceTrainer({args})"

    def _validate_params(self) -> None:
        if self.mode not in self._MODES:
            raise QMagError(f"mode must be one of {self._MODES}, got {self.mode!r}")
        if not (0 < self.fmr_min <= self.fmr_max < 1):
            raise QMagError(
                f"need 0 < fmr_min <= fmr_max < 1, got fmr_min={self.fmr_min}, fmr_max={self.fmr_max}"
            )
        if int(self.n_fmr) < 2:
            raise QMagError(f"n_fmr must be >= 2 to fit a line, got {self.n_fmr}")
        if int(self.n_omega) < 2:
            raise QMagError(f"n_omega must be >= 2, got {self.n_omega}")
        if not self.max_ratio > 0:
            raise QMagError(f"max_ratio must be > 0, got {self.max_ratio}")
        if self.max_imposters is not None and int(self.max_imposters) < 1:
            raise QMagError(f"max_imposters must be >= 1 or None, got {self.max_imposters}")

    # fitting ------------------------------------------------------------------------
    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> "QMagFaceTrainer":
        """Learn α, β from pairs.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2) [s, q_min] or (n_pairs, 3) [s, q1, q2]
            Cosine similarity and qualities; converted to float64.
        y : array-like of shape (n_pairs,)
            1 for genuine (same identity), 0 for imposter.

        Returns
        -------
        self

        Raises
        ------
        QMagError
            Malformed input, no genuine or no imposter pairs, FMR range not supported.
        DegenerateFitError
            All selected thresholds are equal (zero variance in t) or infinite.
        """
        self._validate_params()
        for k in list(self.__dict__):
            if k.endswith("_") and not k.startswith("_"):
                delattr(self, k)  # a refit forgets the earlier one
        s, q = _as_s_qmin(X)
        lab = _as_labels(y, s.shape[0])
        notes: list[str] = []
        gen = np.flatnonzero(lab)
        imp = np.flatnonzero(~lab)
        if gen.size == 0 or imp.size == 0:
            raise QMagError(
                f"training needs genuine and imposter pairs; got {gen.size} genuine and "
                f"{imp.size} imposter pairs"
            )
        if self.max_imposters is not None and imp.size > int(self.max_imposters):
            rng = np.random.default_rng(self.random_state)
            imp = np.sort(rng.choice(imp, size=int(self.max_imposters), replace=False))
            notes.append(f"used a seeded random subset of {imp.size} imposter pairs")
            keep = np.sort(np.r_[gen, imp])
            s, q, lab = s[keep], q[keep], lab[keep]
            gen = np.flatnonzero(lab)
            imp = np.flatnonzero(~lab)
        n_imp = imp.size
        fmr_min, fmr_max = float(self.fmr_min), float(self.fmr_max)
        self.fmr_clamped_ = False
        floor = 1.0 / n_imp
        if self.clamp_fmr and fmr_min < floor:
            if fmr_max <= floor:
                raise QMagError(
                    f"fmr_max={fmr_max:g} needs more than {math.ceil(1 / fmr_max):,} imposter "
                    f"pairs; the data has {n_imp:,}. Raise fmr_max above {floor:.3g} or add "
                    "imposter pairs"
                )
            msg = (
                f"fmr_min={fmr_min:g} needs {math.ceil(1 / fmr_min):,} imposter pairs but the "
                f"data has {n_imp:,}: FMR range clamped to [{floor:.3g}, {fmr_max:g}]"
            )
            warnings.warn(msg, FMRClampWarning, stacklevel=2)
            notes.append(msg)
            fmr_min = floor
            self.fmr_clamped_ = True

        fmrs = np.logspace(np.log10(fmr_min), np.log10(fmr_max), num=int(self.n_fmr))
        max_q = float(np.max(q))
        if not max_q > 0:
            raise QMagError(f"the largest q_min must be > 0, got {max_q}")
        max_omega = self.max_ratio / max_q
        omegas = np.linspace(-max_omega, max_omega, num=int(self.n_omega))

        official = self.mode == "official"
        fn_grid, thr_grid = self._grid(s, q, gen, imp, omegas, fmrs, fmr_max, official)
        best = np.argmin(fn_grid, axis=0)
        cols = np.arange(fmrs.size)
        ts = thr_grid[best, cols]
        omega_opt = omegas[best]
        fnmr_opt = fn_grid[best, cols]
        n_ties = np.count_nonzero(fn_grid == fnmr_opt[None, :], axis=0)

        if not np.isfinite(ts).all():
            bad = fmrs[~np.isfinite(ts)]
            raise DegenerateFitError(
                f"at FMR {bad[0]:.3g} no genuine pair scores above any admissible threshold "
                "(FNMR = 100%); raise fmr_min or use pairs where the model can verify"
            )
        if np.ptp(ts) == 0:
            raise DegenerateFitError(
                f"all {ts.size} selected thresholds are equal (t = {ts[0]:.6g}): the line "
                "ω_opt(t) has zero variance in t. This happens when genuine and imposter "
                "scores separate perfectly or the FMR range lies below 1/#imposters; widen "
                "the FMR range or add harder/more imposter pairs"
            )
        beta, alpha = self._fit_line(ts, omega_opt)
        if np.any(n_ties > 1):
            notes.append(
                f"ω ties at {int(np.count_nonzero(n_ties > 1))} of {fmrs.size} FMRs "
                f"(up to {int(n_ties.max())} ω share the lowest FNMR; the first is used)"
            )
        self.alpha_ = float(alpha)
        self.beta_ = float(beta)
        self.fmrs_ = fmrs
        self.omegas_ = omegas
        self.thresholds_ = ts
        self.omega_opt_ = omega_opt
        self.fnmr_opt_ = fnmr_opt
        self.fnmr_grid_ = fn_grid
        self.threshold_grid_ = thr_grid
        self.n_ties_ = n_ties
        self.max_q_ = max_q
        self.n_genuine_ = int(gen.size)
        self.n_imposter_ = int(n_imp)
        self.warnings_ = notes
        return self

    @staticmethod
    def _grid(s, q, gen, imp, omegas, fmrs, fmr_max, official):
        s_g, q_g, s_i, q_i = s[gen], q[gen], s[imp], q[imp]
        fn = np.empty((omegas.size, fmrs.size))
        th = np.empty((omegas.size, fmrs.size))
        buf_g = np.empty_like(s_g)
        buf_i = np.empty_like(s_i)
        for k, w in enumerate(omegas):  # loop over the (few) ω only
            np.multiply(w, q_g, out=buf_g)
            np.add(buf_g, s_g, out=buf_g)
            np.multiply(w, q_i, out=buf_i)
            np.add(buf_i, s_i, out=buf_i)
            fn[k], th[k] = _operating_points(
                buf_g, buf_i, fmrs,
                transform=_expit if official else None,
                strict=official, drop_intermediate=official, fmr_max=fmr_max,
            )
        return fn, th

    @staticmethod
    def _fit_line(t: FloatArray, w: FloatArray) -> tuple[float, float]:
        """Ordinary least squares w = m·t + b; returns (m, −b) = (β, α)."""
        tc = t - t.mean()
        wc = w - w.mean()
        m = float(np.dot(tc, wc) / np.dot(tc, tc))
        b = float(w.mean() - m * t.mean())
        return m, -b

    # using the fit ------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "alpha_"):
            raise NotFittedError(
                "this QMagFaceTrainer is not fitted yet; call fit(X, y) first (an unfitted "
                "model would silently return plain cosine scores)"
            )

    def transform(self, X: npt.ArrayLike) -> FloatArray:
        """Quality-aware scores ŝ for X of shape (n, 2) [s, q_min] or (n, 3) [s, q1, q2]."""
        self._check_fitted()
        s, q = _as_s_qmin(X)
        return qmagface_score(s, q, self.alpha_, self.beta_)

    def fit_transform(self, X: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:
        return self.fit(X, y).transform(X)

    def params(self, *, encoder: str | None = None, trained_on: dict | None = None,
               quality: str | None = None) -> "QMagFaceParams":
        """The fitted parameters as a :class:`QMagFaceParams` record."""
        self._check_fitted()
        return QMagFaceParams(
            alpha=self.alpha_,
            beta=self.beta_,
            mode=self.mode,
            fmrs=self.fmrs_.tolist(),
            thresholds=self.thresholds_.tolist(),
            omega_opt=self.omega_opt_.tolist(),
            options=self.cli_options(),
            encoder=encoder,
            quality=quality if quality is not None else QUALITY_MEANING.get(encoder, QUALITY_MEANING[None]),
            trained_on=trained_on or {},
            n_ties=self.n_ties_.tolist(),
            notes=list(self.warnings_),
        )

    def cli_options(self) -> dict[str, Any]:
        """Every option under its CLI name."""
        rs = self.random_state
        return {
            "mode": self.mode,
            "fmr-min": float(self.fmr_min),
            "fmr-max": float(self.fmr_max),
            "n-fmr": int(self.n_fmr),
            "n-omega": int(self.n_omega),
            "max-ratio": float(self.max_ratio),
            "max-imposters": None if self.max_imposters is None else int(self.max_imposters),
            "clamp-fmr": bool(self.clamp_fmr),
            "seed": rs if isinstance(rs, (int, type(None))) else None,
        }

    def bootstrap(self, X: npt.ArrayLike, y: npt.ArrayLike, *, n_boot: int = 100,
                  level: float = 0.95, random_state=None) -> ParamsCI:
        """Seeded bootstrap CI of α and β: refit on pairs resampled with replacement
        (stratified by label).  Fits that fail (degenerate) are counted, not used."""
        s, q = _as_s_qmin(X)
        lab = _as_labels(y, s.shape[0])
        rng = np.random.default_rng(self.random_state if random_state is None else random_state)
        gen, imp = np.flatnonzero(lab), np.flatnonzero(~lab)
        alphas, betas = [], []
        failed = 0
        clone = QMagFaceTrainer(**{**self.get_params(), "random_state": 0})
        Xq = np.column_stack([s, q])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FMRClampWarning)
            for _ in range(int(n_boot)):
                idx = np.r_[rng.choice(gen, gen.size), rng.choice(imp, imp.size)]
                try:
                    clone.fit(Xq[idx], lab[idx])
                except DegenerateFitError:
                    failed += 1
                    continue
                alphas.append(clone.alpha_)
                betas.append(clone.beta_)
        a, b = np.asarray(alphas), np.asarray(betas)
        lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
        ci = lambda v: (float(np.percentile(v, lo)), float(np.percentile(v, hi))) if v.size else (math.nan, math.nan)  # noqa: E731
        return ParamsCI(alpha=ci(a), beta=ci(b), level=level, n_boot=int(n_boot),
                        n_failed=failed, alphas=a, betas=b)


# ------------------------------------------------------------------- params record
@dataclass
class QMagFaceParams:
    """A trained QMagFace parameter set, as stored in params JSON files."""

    alpha: float
    beta: float
    mode: str = "official"
    fmrs: list = field(default_factory=list)
    thresholds: list = field(default_factory=list)
    omega_opt: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    encoder: str | None = None
    quality: str = QUALITY_MEANING[None]
    trained_on: dict = field(default_factory=dict)
    n_ties: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    #: thresholds on s and ŝ per FMR measured on labelled pairs (for decisions)
    operating_points: list = field(default_factory=list)

    def score(self, s: npt.ArrayLike, q_min: npt.ArrayLike) -> FloatArray:
        return qmagface_score(s, q_min, self.alpha, self.beta)

    @property
    def s0(self) -> float:
        """Zero crossing α/β: pairs with s ≥ s0 are left unchanged (scale-free)."""
        return self.alpha / self.beta if self.beta != 0 else math.inf

    def max_correction(self, s_low: float, q: float) -> float:
        """Correction ω(s_low)·q at a low cosine s_low and quality q (≤ 0)."""
        return float(min(0.0, self.beta * s_low - self.alpha) * q)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path) -> None:
        """Write the JSON atomically."""
        from .safeio import atomic_write

        with atomic_write(path) as fh:
            json.dump(self.to_dict(), fh, indent=2)
            fh.write("\n")

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "params") -> "QMagFaceParams":
        """Validate a params mapping: α/β real numbers (not booleans), known fields of
        the right type; anything else is a :class:`DataFormatError` naming the key."""
        if not isinstance(d, dict):
            raise DataFormatError("expected a JSON object with 'alpha' and 'beta'", path=source)
        missing = [k for k in ("alpha", "beta") if k not in d]
        if missing:
            raise DataFormatError(f"missing key(s) {missing}; expected 'alpha' and 'beta'", path=source)
        for k in ("alpha", "beta"):
            if not _is_real(d[k]):
                raise DataFormatError(f"'{k}' must be a finite number, got {d[k]!r}", path=source)
        alpha, beta = float(d["alpha"]), float(d["beta"])
        known = {f for f in cls.__dataclass_fields__}
        rest = {k: v for k, v in d.items() if k in known and k not in ("alpha", "beta")}
        _check_param_fields(rest, source)
        return cls(alpha=alpha, beta=beta, **rest)

    @classmethod
    def load(cls, path) -> "QMagFaceParams":
        """Read a params JSON (at most 16 MiB of UTF-8)."""
        from .safeio import read_text

        text = read_text(path, expected="a params JSON", max_bytes=16 << 20)
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"not valid JSON ({e.msg})", path=str(path), line=e.lineno) from None
        except RecursionError:
            raise DataFormatError("JSON nested too deeply", path=str(path)) from None
        return cls.from_dict(d, source=str(path))


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_param_fields(d: dict, source: str) -> None:
    """Types of the optional fields of a params JSON (those code reads back)."""
    def bad(key, what):
        raise DataFormatError(f"'{key}' must be {what}", path=source)

    if "mode" in d and d["mode"] not in ("official", "consistent"):
        bad("mode", "'official' or 'consistent'")
    for key in ("fmrs", "thresholds", "omega_opt", "n_ties"):
        if key in d and not (isinstance(d[key], list) and all(v is None or _is_real(v) for v in d[key])):
            bad(key, "a list of numbers")
    for key in ("options", "trained_on"):
        if key in d and not isinstance(d[key], dict):
            bad(key, "an object")
    if "notes" in d and not isinstance(d["notes"], list):
        bad("notes", "a list")
    for key in ("encoder", "quality"):
        if key in d and d[key] is not None and not isinstance(d[key], str):
            bad(key, "a string")
    if "operating_points" in d:
        ops = d["operating_points"]
        if not isinstance(ops, list):
            bad("operating_points", "a list of {fmr, threshold_s, threshold_s_hat} objects")
        for k, op in enumerate(ops):
            if not (isinstance(op, dict) and all(_is_real(op.get(f)) for f in ("fmr", "threshold_s", "threshold_s_hat"))
                    and 0 < op["fmr"] <= 1):
                raise DataFormatError(f"operating_points[{k}] must be an object with numbers fmr in (0, 1], "
                                      f"threshold_s and threshold_s_hat; got {op!r}"[:300], path=source)
