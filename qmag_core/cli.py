"""Command line: ``python -m qmag_core`` (installed as ``qmag``).

Sub-commands ``train``, ``evaluate``, ``score`` and ``make-pairs`` import neither torch
nor sklearn (fast start).  Bad input exits with status 2 and a one-line message.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import FMRClampWarning, QMagError

EXIT_BAD_INPUT = 2
REPORT_FMRS = (1e-2, 1e-3, 1e-4)


def _jsonable(x):
    """Plain JSON values: NaN/inf become null, numpy scalars/arrays become Python."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _fmr_key(f: float) -> str:
    return f"{f:g}" if f >= 1e-3 else f"{f:.4f}".rstrip("0")


# ------------------------------------------------------------------------ train
def _add_trainer_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trainer options")
    g.add_argument("--mode", choices=("official", "consistent"), default="official",
                   help="official: the published algorithm exactly; consistent: thresholds in raw score space")
    g.add_argument("--fmr-min", type=float, default=1e-5)
    g.add_argument("--fmr-max", type=float, default=1e-2)
    g.add_argument("--n-fmr", type=int, default=50)
    g.add_argument("--n-omega", type=int, default=20)
    g.add_argument("--max-ratio", type=float, default=0.5)
    g.add_argument("--max-imposters", type=int, default=None,
                   help="use a seeded random subset of this many imposter pairs")
    g.add_argument("--no-clamp-fmr", action="store_true",
                   help="keep FMRs below 1/#imposters (official behaviour) instead of clamping")
    g.add_argument("--seed", type=int, default=0)


def _trainer_from_args(a):
    from .scoring import QMagFaceTrainer

    return QMagFaceTrainer(mode=a.mode, fmr_min=a.fmr_min, fmr_max=a.fmr_max, n_fmr=a.n_fmr,
                           n_omega=a.n_omega, max_ratio=a.max_ratio, max_imposters=a.max_imposters,
                           clamp_fmr=not a.no_clamp_fmr, random_state=a.seed)


def _load_scores(path: str):
    from .data import read_scores_csv

    if not Path(path).is_file():
        raise QMagError(f"{path}: no such file")
    return read_scores_csv(path)


def cmd_train(a) -> int:
    from .data import sha256_file
    from .scoring import QUALITY_MEANING

    table = _load_scores(a.scores)
    encoder = a.encoder or table.encoder
    tr = _trainer_from_args(a)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FMRClampWarning)
        tr.fit(table.X(), table.label)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    trained_on = {
        "file": os.path.basename(a.scores),
        "sha256": sha256_file(a.scores),
        "n_pairs": len(table),
        "n_genuine": tr.n_genuine_,
        "n_imposter": tr.n_imposter_,
    }
    params = tr.params(encoder=encoder, trained_on=trained_on,
                       quality=QUALITY_MEANING.get(encoder, QUALITY_MEANING[None]))
    d = _jsonable(params.to_dict())
    if a.bootstrap:
        ci = tr.bootstrap(table.X(), table.label, n_boot=a.bootstrap, random_state=a.seed)
        d["bootstrap"] = _jsonable({"alpha_ci95": ci.alpha, "beta_ci95": ci.beta,
                                    "n_boot": ci.n_boot, "n_failed": ci.n_failed})
    with open(a.out, "w", encoding="utf-8") as fh:
        json.dump(d, fh, indent=2)
        fh.write("\n")
    print(f"alpha={tr.alpha_:.6g} beta={tr.beta_:.6g} mode={tr.mode} "
          f"s0=alpha/beta={params.s0:.4g} pairs={tr.n_genuine_} genuine + {tr.n_imposter_} imposter "
          f"ties(max)={int(tr.n_ties_.max())} -> {a.out}")
    if a.bootstrap:
        print(f"bootstrap 95% CI: alpha {d['bootstrap']['alpha_ci95']}, beta {d['bootstrap']['beta_ci95']}")
    return 0


# --------------------------------------------------------------------- evaluate
def metric_block(genuine, imposter, scores, labels, folds, *, n_boot: int, seed: int) -> dict:
    """The metrics dict M of the evaluate JSON."""
    from . import metrics as M

    e = M.eer(genuine, imposter)
    ops = M.fnmr_at_fmr(genuine, imposter, REPORT_FMRS)
    out = {
        "eer": e.value,
        "eer_threshold": e.threshold,
        "auc": M.auc(genuine, imposter),
        "dprime": M.dprime(genuine, imposter),
        "fnmr_at_fmr": {_fmr_key(o.target_fmr): o.fnmr for o in ops},
        "threshold_at_fmr": {_fmr_key(o.target_fmr): o.threshold for o in ops},
        "accuracy": None,
        "accuracy_std": None,
    }
    if folds is not None:
        acc = M.kfold_accuracy(scores, labels, folds)
        out["accuracy"], out["accuracy_std"] = acc.mean, acc.std
    ci = M.bootstrap_ci(genuine, imposter, fmrs=REPORT_FMRS, n_boot=n_boot, random_state=seed)
    out["ci95"] = {"eer": list(ci["eer"]),
                   "fnmr_at_fmr": {_fmr_key(k): (list(v) if v else None) for k, v in ci["fnmr_at_fmr"].items()}}
    return out


def cross_fit(table, trainer, *, n_folds_default: int = 2, seed: int = 0):
    """ŝ for every pair, each fold scored with α/β trained on the other folds.

    Uses the table's folds, or ``n_folds_default`` seeded folds (stratified by label)
    when it has none.  Returns ``(s_hat, folds, per_fold)`` where ``per_fold`` lists
    ``{"fold", "alpha", "beta", "train_rows"}`` (train_rows: the rows it was fitted on).
    """
    from .scoring import qmagface_score

    if table.has_folds:
        folds = table.fold
    else:
        rng = np.random.default_rng(seed)
        folds = np.empty(len(table), np.int64)
        for lab in (0, 1):
            idx = np.flatnonzero(table.label == lab)
            folds[idx] = rng.permutation(idx.size) % n_folds_default
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
        per_fold.append({"fold": int(f), "alpha": trainer.alpha_, "beta": trainer.beta_,
                         "train_rows": np.flatnonzero(train)})
    return s_hat, folds, per_fold


def evaluate_table(table, *, params=None, trainer=None, n_boot: int = 200, seed: int = 0,
                   n_random: int = 200) -> dict:
    """Baseline vs QMagFace metrics, EDC and pair counts as the evaluate JSON dict."""
    from . import metrics as M
    from .scoring import qmagface_score

    if params is not None:
        s_hat = qmagface_score(table.s, table.q_min, params.alpha, params.beta)
        folds = table.fold if table.has_folds else None
        pinfo = {"source": "file", **params.to_dict()}
    else:
        s_hat, cf_folds, per_fold = cross_fit(table, trainer, seed=seed)
        folds = cf_folds
        pinfo = {"source": "cross-fit", "mode": trainer.mode, "options": trainer.cli_options(),
                 "n_folds": len(per_fold), "folds_from": "file" if table.has_folds else f"{len(per_fold)} seeded folds",
                 "per_fold": [{k: v for k, v in d.items() if k != "train_rows"} for d in per_fold]}
    y = table.label.astype(bool)
    base = metric_block(table.s[y], table.s[~y], table.s, y, folds, n_boot=n_boot, seed=seed)
    qmag = metric_block(s_hat[y], s_hat[~y], s_hat, y, folds, n_boot=n_boot, seed=seed)
    e = M.edc(table.s, y, table.q_min, n_random=n_random, random_state=seed)
    return {
        "baseline": base,
        "qmagface": qmag,
        "n_genuine": int(y.sum()),
        "n_imposter": int((~y).sum()),
        "params": pinfo,
        "edc": {"rule": e.rule, "threshold": e.threshold, "discard": e.discard.tolist(),
                "fnmr": e.fnmr.tolist(), "fnmr_random_median": e.fnmr_random_median.tolist(),
                "n_random": e.n_random},
    }, s_hat


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.3f}%"


def format_report(rep: dict) -> str:
    b, q = rep["baseline"], rep["qmagface"]
    rows = [("EER", _pct(b["eer"]), _pct(q["eer"])), ("AUC", f"{b['auc']:.6f}", f"{q['auc']:.6f}"),
            ("d'", f"{b['dprime']:.3f}", f"{q['dprime']:.3f}")]
    for k in b["fnmr_at_fmr"]:
        rows.append((f"FNMR@FMR={k}", _pct(b["fnmr_at_fmr"][k]), _pct(q["fnmr_at_fmr"][k])))
    if b["accuracy"] is not None:
        rows.append(("accuracy", f"{_pct(b['accuracy'])} ± {_pct(b['accuracy_std'])}",
                     f"{_pct(q['accuracy'])} ± {_pct(q['accuracy_std'])}"))
    w = max(len(r[0]) for r in rows) + 2
    lines = [f"{'metric':<{w}}{'cosine':>22}{'QMagFace':>22}"]
    lines += [f"{r[0]:<{w}}{r[1]:>22}{r[2]:>22}" for r in rows]
    lines.append(f"pairs: {rep['n_genuine']} genuine, {rep['n_imposter']} imposter")
    return "\n".join(lines)


def cmd_evaluate(a) -> int:
    from .scoring import QMagFaceParams

    table = _load_scores(a.scores)
    if a.params:
        params = QMagFaceParams.load(a.params)
        data_enc = a.encoder or table.encoder
        if params.encoder and data_enc and params.encoder != data_enc:
            print(f"warning: params were trained for encoder '{params.encoder}' but the scores come "
                  f"from '{data_enc}'; α/β depend on the encoder's quality scale", file=sys.stderr)
        rep, _ = evaluate_table(table, params=params, n_boot=a.n_boot, seed=a.seed)
    else:
        tr = _trainer_from_args(a)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FMRClampWarning)
            rep, _ = evaluate_table(table, trainer=tr, n_boot=a.n_boot, seed=a.seed)
        print(f"note: no --params given: α/β cross-fitted ({rep['params']['folds_from']}); "
              "each fold scored with α/β trained on the other folds", file=sys.stderr)
    print(format_report(rep))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(_jsonable(rep), fh, indent=2)
            fh.write("\n")
    return 0


# ------------------------------------------------------------------------ score
def cmd_score(a) -> int:
    from .data import write_scores_csv
    from .scoring import QMagFaceParams

    table = _load_scores(a.scores)
    params = QMagFaceParams.load(a.params)
    s_hat = params.score(table.s, table.q_min)
    out = a.out or a.scores
    write_scores_csv(out, table, s_hat=s_hat, meta={"params_alpha": params.alpha, "params_beta": params.beta})
    print(f"scored {len(table)} pairs with alpha={params.alpha:.6g} beta={params.beta:.6g} -> {out}")
    return 0


# ------------------------------------------------------------------- make-pairs
def cmd_make_pairs(a) -> int:
    from .data import make_pairs, write_pairs_csv

    pairs = make_pairs(a.images, n_genuine=a.genuine, n_imposter=a.imposter, n_folds=a.folds,
                       random_state=a.seed)
    write_pairs_csv(a.out, pairs)
    print(f"{int(pairs.label.sum())} genuine + {int((pairs.label == 0).sum())} imposter pairs in "
          f"{a.folds} identity-disjoint folds -> {a.out}")
    return 0


# ------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qmag", description="QMagFace Studio command line")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="learn alpha/beta from a scores CSV (s,q1,q2,label[,fold])")
    p.add_argument("--scores", required=True)
    p.add_argument("--out", required=True, help="params JSON to write")
    p.add_argument("--encoder", default=None, help="encoder id of the scores (overrides the file's '# encoder=')")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N", help="add a seeded bootstrap 95%% CI of alpha/beta (N resamples)")
    _add_trainer_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="cosine vs QMagFace metrics on a scores CSV")
    p.add_argument("--scores", required=True)
    p.add_argument("--params", default=None, help="params JSON; without it alpha/beta are cross-fitted over folds")
    p.add_argument("--json", default=None, help="write the full report as JSON")
    p.add_argument("--encoder", default=None)
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for the 95%% CIs")
    _add_trainer_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("score", help="add an s_hat column to a scores CSV")
    p.add_argument("--scores", required=True)
    p.add_argument("--params", required=True)
    p.add_argument("--out", default=None, help="output CSV (default: overwrite --scores)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("make-pairs", help="seeded genuine/imposter pairs for a folder-per-identity image set")
    p.add_argument("--images", required=True)
    p.add_argument("--genuine", type=int, required=True)
    p.add_argument("--imposter", type=int, required=True)
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_make_pairs)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        return int(a.func(a) or 0)
    except (QMagError, OSError) as e:
        msg = str(e) if not isinstance(e, OSError) or not e.filename else f"{e.filename}: {e.strerror}"
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
