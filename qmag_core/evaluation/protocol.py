"""Evaluation of a score table: cosine vs QMagFace metrics, cross-fitting, EDCs, the report.

One home for what ``qmag evaluate``, the dashboard and the benches compute, and one
format for FMR keys (:func:`fmr_key`).  No torch, no sklearn.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import QMagError
from .metrics import fmr_key

__all__ = [
    "REPORT_FMRS",
    "fmr_key",
    "stratified_folds",
    "seeded_half",
    "summary_metrics",
    "heldout_effect",
    "qmagface_effect",
    "jsonable",
    "metric_block",
    "cross_fit",
    "evaluate_table",
    "edc_ratio",
    "iso_edc",
    "pct",
    "format_report",
]

#: FMRs every report gives FNMR at
REPORT_FMRS = (1e-2, 1e-3, 1e-4)


def jsonable(x):
    """Plain JSON values: NaN/inf become null, numpy scalars/arrays become Python."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def metric_block(genuine, imposter, scores, labels, folds, *, n_boot: int, seed: int) -> dict:
    """The metrics dict M of the evaluate JSON."""
    from . import metrics as M

    curve = M.roc(genuine, imposter)  # one sort for EER, AUC and FNMR@FMR
    e = curve.eer()
    ops = curve.fnmr_at_fmr(REPORT_FMRS)
    out = {
        "eer": e.value,
        "eer_threshold": e.threshold,
        "auc": curve.auc(),
        "dprime": M.dprime(genuine, imposter),
        "fnmr_at_fmr": {fmr_key(o.target_fmr): o.fnmr for o in ops},
        "threshold_at_fmr": {fmr_key(o.target_fmr): o.threshold for o in ops},
        "accuracy": None,
        "accuracy_std": None,
    }
    if folds is not None and np.unique(folds).size >= 2:
        acc = M.kfold_accuracy(scores, labels, folds)
        out["accuracy"], out["accuracy_std"] = acc.mean, acc.std
    elif folds is not None:
        out["accuracy_note"] = "k-fold accuracy needs at least 2 folds; the file has 1"
    from .bootstrap import bootstrap_ci

    ci = bootstrap_ci(genuine, imposter, fmrs=REPORT_FMRS, n_boot=n_boot, random_state=seed)
    out["ci95"] = {
        "eer": list(ci["eer"]),
        "fnmr_at_fmr": {fmr_key(k): (list(v) if v else None) for k, v in ci["fnmr_at_fmr"].items()},
    }
    return out


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """(N,) fold index per pair: each label's pairs dealt round-robin over ``n_folds``
    in a seeded random order (the folds cross-fitting uses when a file has none)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    folds = np.empty(len(labels), np.int64)
    for lab in (0, 1):
        idx = np.flatnonzero(labels == lab)
        folds[idx] = rng.permutation(idx.size) % n_folds
    return folds


def seeded_half(labels: np.ndarray, seed: int) -> np.ndarray:
    """Seeded, label-stratified 50/50 split: True = training half."""
    rng = np.random.default_rng(seed)
    train = np.zeros(len(labels), bool)
    for lab in (0, 1):
        idx = np.flatnonzero(np.asarray(labels) == lab)
        train[rng.choice(idx, idx.size // 2, replace=False)] = True
    return train


def summary_metrics(s, labels) -> dict:
    """EER, AUC, d′ and FNMR at the report FMRs of scores ``s`` (N,) with 0/1 ``labels``."""
    from . import metrics as M

    g, i = M.split_scores(s, labels)
    c = M.roc(g, i)  # one sort for EER, AUC and FNMR@FMR
    return {
        "eer": c.eer().value,
        "auc": c.auc(),
        "dprime": M.dprime(g, i),
        **{f"fnmr@{M.fmr_key(o.target_fmr)}": o.fnmr for o in c.fnmr_at_fmr(REPORT_FMRS)},
    }


def heldout_effect(table, trainer, seed: int = 0) -> dict:
    """Before/after metrics on held-out pairs: α/β trained on a seeded half, measured on
    the other half (never on the pairs they were trained on)."""
    from ..scores.scoring import qmagface_score
    from ..scores.trainer import QMagFaceTrainer

    train = seeded_half(table.label, seed)
    test = ~train
    tr = QMagFaceTrainer(**trainer.get_params()).fit(table.X()[train], table.label[train])
    sh = qmagface_score(table.s[test], table.q_min[test], tr.alpha_, tr.beta_)
    return {
        "alpha": tr.alpha_,
        "beta": tr.beta_,
        "n_train": int(train.sum()),
        "n_test": int(test.sum()),
        "cosine": summary_metrics(table.s[test], table.label[test]),
        "qmagface": summary_metrics(sh, table.label[test]),
    }


def qmagface_effect(s, q_min, labels, alpha: float, beta: float, *, n_boot: int = 200, seed: int = 0) -> dict:
    """What QMagFace does to a dataset, in numbers and one plain sentence.

    ``changed``: fraction of pairs with ω(s) < 0 (s below the zero crossing s0 = α/β);
    the paired-bootstrap 95% CI of the EER difference (QMagFace − cosine);
    ``significant``: the CI excludes 0; ``sentence``: what a page says."""
    s = np.asarray(s, np.float64)
    y = np.asarray(labels).astype(bool)
    s0 = alpha / beta if beta else math.inf
    changed = float(np.mean(s < s0)) if (alpha or beta) else 0.0
    out = {"s0": s0, "changed": changed, "eer_diff": 0.0, "ci": (0.0, 0.0), "significant": False}
    if changed == 0.0:
        out["sentence"] = (
            f"QMagFace changes nothing here: ω(s) = 0 for every pair, because its zero crossing "
            f"s0 = α/β = {s0:.3f} lies below the lowest cosine of this dataset ({s.min():.3f}); "
            "ŝ = s."
        )
        return out
    from ..scores.scoring import qmagface_score
    from .bootstrap import paired_bootstrap

    s_hat = qmagface_score(s, q_min, alpha, beta)
    d = next(x for x in paired_bootstrap(y, s, s_hat, fmrs=(), n_boot=n_boot, random_state=seed) if x.metric == "eer")
    out.update(eer_diff=d.diff, ci=(d.lo, d.hi), significant=d.excludes_zero)
    imp_above = float(np.mean(s[~y] >= s0)) if (~y).any() else 0.0
    where = f"{100 * changed:.0f}% of the pairs lie below s0 = α/β = {s0:.3f} and are moved" + (
        f"; {100 * imp_above:.0f}% of the imposters lie above it and are left as they are" if imp_above else ""
    )
    if d.excludes_zero:
        verb = "lowers" if d.diff < 0 else "raises"
        out["sentence"] = (
            f"QMagFace {verb} the EER by {100 * abs(d.diff):.3f} pt (95% CI of the difference "
            f"[{100 * d.lo:+.3f}, {100 * d.hi:+.3f}] pt, paired bootstrap, {n_boot} resamples): {where}."
        )
    else:
        out["sentence"] = (
            f"QMagFace does not change the errors significantly here: EER difference "
            f"{100 * d.diff:+.3f} pt, 95% CI [{100 * d.lo:+.3f}, {100 * d.hi:+.3f}] pt (paired "
            f"bootstrap, {n_boot} resamples). {where[0].upper() + where[1:]}; the pairs that decide the "
            "EER are not among them or barely move."
        )
    return out


def cross_fit(table, trainer, *, n_folds_default: int = 2, seed: int = 0):
    """ŝ for every pair, each fold scored with α/β trained on the other folds.

    Uses the table's folds, or ``n_folds_default`` seeded folds (stratified by label)
    when it has none.  Returns ``(s_hat, folds, per_fold)`` where ``per_fold`` lists
    ``{"fold", "alpha", "beta", "train_rows"}`` (train_rows: the rows it was fitted on).
    """
    from ..scores.scoring import qmagface_score

    folds = table.fold if table.n_folds >= 2 else stratified_folds(table.label, n_folds_default, seed)
    s_hat = np.full(len(table), np.nan)
    per_fold = []
    X = table.X()
    for f in np.unique(folds):
        test = folds == f
        train = ~test
        try:
            trainer.fit(X[train], table.label[train])
        except QMagError as e:
            raise QMagError(f"cross-fitting: training on the folds other than {f} failed: {e}") from None
        s_hat[test] = qmagface_score(table.s[test], table.q_min[test], trainer.alpha_, trainer.beta_)
        per_fold.append(
            {"fold": int(f), "alpha": trainer.alpha_, "beta": trainer.beta_, "train_rows": np.flatnonzero(train)}
        )
    return s_hat, folds, per_fold


def evaluate_table(table, *, params=None, trainer=None, n_boot: int = 200, seed: int = 0, n_random: int = 200) -> dict:
    """Baseline vs QMagFace metrics, EDC and pair counts as the evaluate JSON dict."""
    from ..scores.scoring import qmagface_score
    from . import metrics as M
    from .measures import measure_columns, measure_edcs

    if params is not None:
        s_hat = qmagface_score(table.s, table.q_min, params.alpha, params.beta)
        folds = table.fold if table.has_folds else None
        pinfo = {"source": "file", **params.to_dict()}
    else:
        folds_from = "file" if table.n_folds >= 2 else "2 seeded folds"
        try:
            s_hat, cf_folds, per_fold = cross_fit(table, trainer, seed=seed)
        except QMagError as e:  # degenerate data: still report the baseline
            s_hat, per_fold, error = None, [], str(e)
            folds = table.fold if table.has_folds else None
        else:
            folds, error = cf_folds, None
        pinfo = {
            "source": "cross-fit",
            "mode": trainer.mode,
            "options": trainer.cli_options(),
            "n_folds": len(per_fold),
            "folds_from": folds_from,
            "error": error,
            "per_fold": [{k: v for k, v in d.items() if k != "train_rows"} for d in per_fold],
        }
    y = table.label.astype(bool)
    base = metric_block(table.s[y], table.s[~y], table.s, y, folds, n_boot=n_boot, seed=seed)
    qmag = None if s_hat is None else metric_block(s_hat[y], s_hat[~y], s_hat, y, folds, n_boot=n_boot, seed=seed)
    fl = np.zeros(0, bool) if table.failed is None else table.failed.label.astype(bool)
    if fl.size:  # generalized rates: every pair counts, a failed image never matches
        if folds is None:
            ffolds = None
        elif table.has_folds and folds is table.fold:
            ffolds = table.failed.fold
        else:  # seeded cross-fitting folds: spread the failed pairs over them the same way
            ffolds = np.arange(fl.size) % max(1, np.unique(folds).size)

        def generalized(v):
            sv, yv, _ = M.with_failures(v, y, fl)
            fv = None if folds is None else np.r_[folds, ffolds]
            blk = metric_block(sv[yv], sv[~yv], sv, yv, fv, n_boot=n_boot, seed=seed)
            blk["dprime"] = None  # not defined once failures sit at the sentinel score
            return blk

        base["generalized"] = generalized(table.s)
        if qmag is not None:
            qmag["generalized"] = generalized(s_hat)
    e, others = measure_edcs(table.s, y, table.q_min, measure_columns(table.extra), fl, n_random=n_random, seed=seed)
    baselines = {name: {"fnmr": o.fnmr.tolist(), "ratio_at_20": edc_ratio(o)} for name, o in others.items()}
    edc_iso = iso_edc(table, y, fl)
    return {
        "baseline": base,
        "qmagface": qmag,
        "n_genuine": int(y.sum()),
        "n_imposter": int((~y).sum()),
        "params": pinfo,
        "edc": {
            "rule": e.rule,
            "threshold": e.threshold,
            "discard": e.discard.tolist(),
            "fnmr": e.fnmr.tolist(),
            "fnmr_random_median": e.fnmr_random_median.tolist(),
            "n_random": e.n_random,
            "n_failed": int(fl.size),
            "failed": "pairs with a failed image count as non-matches and are discarded first",
            "ratio_at_20": edc_ratio(e),
            "baselines": baselines,
        },
        "edc_iso": edc_iso,
    }, s_hat


def edc_ratio(e, at: float = 0.2):
    """FNMR after discarding ``at`` of the pairs, over the median of random discards."""
    k = int(np.argmin(np.abs(np.asarray(e.discard) - at)))
    r = e.fnmr_random_median[k]
    return None if not r else float(e.fnmr[k] / r)


def iso_edc(table, y, failed_labels, *, starting_error: float = 0.05, limit: float = 0.2) -> dict:
    """ISO/IEC 29794-1:2024 EDC of q and of every qm_* measure: FNMR-side (mated pairs)
    and FMR-side (non-mated), threshold at the starting error of the scored pairs,
    pAUC up to ``limit`` minus the theoretical best; failed pairs are errors (mated) or
    correct rejections (non-mated) and are discarded first."""
    from .measures import iso_edcs, measure_columns

    qualities = {"q": table.q_min, **measure_columns(table.extra)}
    out = {}
    for side in ("fnmr", "fmr"):
        if not (y if side == "fnmr" else ~y).any():
            continue
        edcs = iso_edcs(table.s, y, qualities, failed_labels, error=side, starting_error=starting_error)
        out[side] = {
            "starting_error": starting_error,
            "threshold": edcs["q"].threshold,
            "pauc_limit": limit,
            "pauc": {name: e.pauc(limit) for name, e in edcs.items()},
            "actual_starting_error": edcs["q"].starting_error,
        }
    return out


def pct(x):
    return "n/a" if x is None else f"{100 * x:.3f}%"


def format_report(rep: dict) -> str:
    b, q = rep["baseline"], rep["qmagface"]
    if q is None:  # QMagFace could not be fitted: show the baseline alone
        q = {k: (None if not isinstance(v, dict) else {kk: None for kk in v}) for k, v in b.items()}
        q["auc"] = q["dprime"] = float("nan")
    rows = [
        ("EER", pct(b["eer"]), pct(q["eer"])),
        ("AUC", f"{b['auc']:.6f}", f"{q['auc']:.6f}"),
        ("d'", f"{b['dprime']:.3f}", f"{q['dprime']:.3f}"),
    ]
    for k in b["fnmr_at_fmr"]:
        rows.append((f"FNMR@FMR={k}", pct(b["fnmr_at_fmr"][k]), pct(q["fnmr_at_fmr"][k])))
    if b["accuracy"] is not None:
        rows.append(
            (
                "accuracy",
                f"{pct(b['accuracy'])} ± {pct(b['accuracy_std'])}",
                "n/a" if q["accuracy"] is None else f"{pct(q['accuracy'])} ± {pct(q['accuracy_std'])}",
            )
        )
    bg, qg = b.get("generalized"), (q or {}).get("generalized") or {}
    if bg:  # the same metrics with every pair: failed images count as non-matches
        rows.append(("generalized (failures count):", "", ""))
        rows.append(("  EER", pct(bg["eer"]), pct(qg.get("eer"))))
        for k in bg["fnmr_at_fmr"]:
            rows.append((f"  FNMR@FMR={k}", pct(bg["fnmr_at_fmr"][k]), pct((qg.get("fnmr_at_fmr") or {}).get(k))))
        if bg["accuracy"] is not None:
            rows.append(("  accuracy", pct(bg["accuracy"]), pct(qg.get("accuracy"))))
    w = max(len(r[0]) for r in rows) + 2
    lines = [f"{'metric':<{w}}{'cosine':>22}{'QMagFace':>22}"]
    lines += [f"{r[0]:<{w}}{r[1]:>22}{r[2]:>22}" for r in rows]
    lines.append(f"pairs: {rep['n_genuine']} genuine, {rep['n_imposter']} imposter")
    ed = rep.get("edc") or {}
    if ed.get("ratio_at_20") is not None:
        parts = [f"q {ed['ratio_at_20']:.2f}"] + [
            f"{k} {v['ratio_at_20']:.2f}"
            for k, v in (ed.get("baselines") or {}).items()
            if v["ratio_at_20"] is not None
        ]
        lines.append(
            "EDC, FNMR after discarding the 20% lowest-quality pairs / random discards (lower is better): "
            + ", ".join(parts)
        )
    iso = (rep.get("edc_iso") or {}).get("fnmr")
    if iso:
        lines.append(
            f"ISO/IEC 29794-1 EDC, FNMR side (starting error {iso['actual_starting_error']:.3f}): pAUC up to "
            f"{iso['pauc_limit']:.0%} discarded minus the theoretical best (lower is better): "
            + ", ".join(f"{k} {v:.4f}" for k, v in iso["pauc"].items())
        )
    pr = rep.get("pairs_report")
    if pr and pr.get("n_pairs"):
        lines.append(
            f"failure to acquire: {pr['n_pairs'] - pr['n_scored']} of {pr['n_pairs']} pairs "
            f"({pct(pr['fta_rate'])}) have an image that could not be embedded "
            f"({pr['n_failed_genuine']} genuine, {pr['n_failed_imposter']} imposter)"
        )
    if rep["params"].get("error"):
        lines.append(f"QMagFace not evaluated: {rep['params']['error']}")
    return "\n".join(lines)
