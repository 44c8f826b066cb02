"""The QMagFace α/β trainer, a scikit-learn-style estimator.

Two training modes:

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

No Python loop runs over pairs or thresholds (:mod:`qmag_core.scores.roc_window`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import DegenerateFitError, FMRClampWarning, NotFittedError, QMagError
from .params import QUALITY_MEANING, ParamsCI, QMagFaceParams
from .roc_window import lowest_fmr, window_operating_points
from .scoring import qmagface_score

__all__ = ["QMagFaceTrainer"]

FloatArray = npt.NDArray[np.float64]


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

    def set_params(self, **params) -> QMagFaceTrainer:
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
            raise QMagError(f"need 0 < fmr_min <= fmr_max < 1, got fmr_min={self.fmr_min}, fmr_max={self.fmr_max}")
        if int(self.n_fmr) < 2:
            raise QMagError(f"n_fmr must be >= 2 to fit a line, got {self.n_fmr}")
        if int(self.n_omega) < 2:
            raise QMagError(f"n_omega must be >= 2, got {self.n_omega}")
        if not self.max_ratio > 0:
            raise QMagError(f"max_ratio must be > 0, got {self.max_ratio}")
        if self.max_imposters is not None and int(self.max_imposters) < 1:
            raise QMagError(f"max_imposters must be >= 1 or None, got {self.max_imposters}")

    # fitting ------------------------------------------------------------------------
    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> QMagFaceTrainer:
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
                f"training needs genuine and imposter pairs; got {gen.size} genuine and {imp.size} imposter pairs"
            )
        if self.max_imposters is not None and imp.size > int(self.max_imposters):
            s, q, lab = self._imposter_subset(s, q, lab, imp)
            gen, imp = np.flatnonzero(lab), np.flatnonzero(~lab)
            notes.append(f"used a seeded random subset of {imp.size} imposter pairs")
        n_imp = imp.size
        fmr_min, fmr_max = self._fmr_range(n_imp, notes)

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

        _check_thresholds(fmrs, ts)
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

    def _imposter_subset(self, s, q, lab, imp):
        """``(s, q, labels)`` with a seeded random ``max_imposters`` of the imposters."""
        rng = np.random.default_rng(self.random_state)
        imp = np.sort(rng.choice(imp, size=int(self.max_imposters), replace=False))
        keep = np.sort(np.r_[np.flatnonzero(lab), imp])
        return s[keep], q[keep], lab[keep]

    def _fmr_range(self, n_imp: int, notes: list[str]) -> tuple[float, float]:
        """The FMR range of the fit: ``fmr_min`` raised to 1/#imposters with a warning
        when ``clamp_fmr`` (sets ``fmr_clamped_``)."""
        fmr_min, fmr_max = float(self.fmr_min), float(self.fmr_max)
        self.fmr_clamped_ = False
        floor = lowest_fmr(n_imp)
        if not (self.clamp_fmr and fmr_min < floor):
            return fmr_min, fmr_max
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
        warnings.warn(msg, FMRClampWarning, stacklevel=3)
        notes.append(msg)
        self.fmr_clamped_ = True
        return floor, fmr_max

    @staticmethod
    def _grid(s, q, gen, imp, omegas, fmrs, fmr_max, official):
        from scipy.special import expit  # the function the official code uses

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
            fn[k], th[k] = window_operating_points(
                buf_g,
                buf_i,
                fmrs,
                transform=expit if official else None,
                strict=official,
                drop_intermediate=official,
                fmr_max=fmr_max,
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

    def params(
        self,
        *,
        encoder: str | None = None,
        trained_on: dict | None = None,
        quality: str | None = None,
        encoder_key: str | None = None,
    ) -> QMagFaceParams:
        """The fitted parameters as a :class:`QMagFaceParams` record (``encoder_key``:
        the fingerprint of the encoder + quality head that made q, when known)."""
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
            encoder_key=encoder_key,
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

    def bootstrap(
        self, X: npt.ArrayLike, y: npt.ArrayLike, *, n_boot: int = 100, level: float = 0.95, random_state=None
    ) -> ParamsCI:
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
        return ParamsCI(alpha=ci(a), beta=ci(b), level=level, n_boot=int(n_boot), n_failed=failed, alphas=a, betas=b)


def _check_thresholds(fmrs: FloatArray, ts: FloatArray) -> None:
    """Refuse a selection the line ω_opt(t) cannot be fitted to."""
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
