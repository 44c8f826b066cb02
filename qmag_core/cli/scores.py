"""The commands on score tables and pairs: ``train``, ``evaluate`` (all its data
sources), ``score`` and ``make-pairs``.  They import neither torch nor sklearn: the
image, ``.bin`` and template sources of ``evaluate`` import them inside
:mod:`qmag_core.cli.vision`."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

from ..errors import FMRClampWarning, QMagError
from ..evaluation.protocol import evaluate_table, format_report, jsonable
from ..evaluation.templates import format_template_report
from .vision import _evaluate_ijb, _scores_from_bin, _scores_from_images


# ------------------------------------------------------------- argument types
def _int_type(lo: int, what: str):
    def parse(v: str) -> int:
        try:
            x = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v!r}") from None
        if x < lo:
            raise argparse.ArgumentTypeError(f"expected {what}, got {x}")
        return x

    parse.__name__ = what
    return parse


positive_int = _int_type(1, "a positive integer")
nonneg_int = _int_type(0, "an integer >= 0")
at_least_two = _int_type(2, "an integer >= 2")


def probability(v: str) -> float:
    """A number strictly between 0 and 1 (an FMR)."""
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1), got {v!r}") from None
    if not 0 < x < 1:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1), got {v}")
    return x


def positive_float(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v}")
    return x


def _write_json(path: str, d: dict) -> None:
    from ..outputs import atomic_write

    with atomic_write(path) as fh:
        json.dump(jsonable(d), fh, indent=2)
        fh.write("\n")


# ------------------------------------------------------------------------ train
def _add_trainer_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trainer options")
    g.add_argument(
        "--mode",
        choices=("official", "consistent"),
        default="official",
        help="official: the published algorithm exactly; consistent: thresholds in raw score space",
    )
    g.add_argument("--fmr-min", type=probability, default=1e-5)
    g.add_argument("--fmr-max", type=probability, default=1e-2)
    g.add_argument("--n-fmr", type=at_least_two, default=50)
    g.add_argument("--n-omega", type=at_least_two, default=20)
    g.add_argument("--max-ratio", type=positive_float, default=0.5)
    g.add_argument(
        "--max-imposters",
        type=positive_int,
        default=None,
        help="use a seeded random subset of this many imposter pairs",
    )
    g.add_argument(
        "--no-clamp-fmr",
        action="store_true",
        help="keep FMRs below 1/#imposters (official behaviour) instead of clamping",
    )
    g.add_argument("--seed", type=nonneg_int, default=0)


def _trainer_from_args(a):
    from ..scores.trainer import QMagFaceTrainer

    return QMagFaceTrainer(
        mode=a.mode,
        fmr_min=a.fmr_min,
        fmr_max=a.fmr_max,
        n_fmr=a.n_fmr,
        n_omega=a.n_omega,
        max_ratio=a.max_ratio,
        max_imposters=a.max_imposters,
        clamp_fmr=not a.no_clamp_fmr,
        random_state=a.seed,
    )


def _load_scores(path: str):
    from ..io.scores import read_scores_csv

    if not os.path.lexists(path):
        raise QMagError(f"{path}: no such file")
    return read_scores_csv(path)


def cmd_train(a) -> int:
    from ..safeio import sha256_file
    from ..scores.params import QUALITY_MEANING

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
    params = tr.params(
        encoder=encoder,
        trained_on=trained_on,
        quality=QUALITY_MEANING.get(encoder, QUALITY_MEANING[None]),
        encoder_key=table.encoder_key,
    )
    d = jsonable(params.to_dict())
    if a.bootstrap:
        ci = tr.bootstrap(table.X(), table.label, n_boot=a.bootstrap, random_state=a.seed)
        d["bootstrap"] = jsonable(
            {"alpha_ci95": ci.alpha, "beta_ci95": ci.beta, "n_boot": ci.n_boot, "n_failed": ci.n_failed}
        )
    _write_json(a.out, d)
    print(
        f"alpha={tr.alpha_:.6g} beta={tr.beta_:.6g} mode={tr.mode} "
        f"s0=alpha/beta={params.s0:.4g} pairs={tr.n_genuine_} genuine + {tr.n_imposter_} imposter "
        f"ties(max)={int(tr.n_ties_.max())} -> {a.out}"
    )
    if a.bootstrap:
        print(f"bootstrap 95% CI: alpha {d['bootstrap']['alpha_ci95']}, beta {d['bootstrap']['beta_ci95']}")
    return 0


def _check_evaluate_sources(a) -> None:
    """One data source per run: --ijb [--features], --bin, --images + --pairs,
    --features + --pairs, or --scores."""
    if a.features and not (a.ijb or a.pairs):
        raise QMagError("--features goes with --pairs (precomputed embeddings) or --ijb (the protocol's features)")
    if a.features and a.images:
        raise QMagError("give --images (embedded now) or --features (precomputed), not both")
    if a.ijb and (a.scores or a.images or a.pairs or a.bin):
        raise QMagError("--ijb goes alone: not with --scores, --images, --pairs or --bin")
    if a.bin and (a.scores or a.images or a.pairs):
        raise QMagError("--bin goes alone: not with --scores, --images or --pairs")
    if a.images and not a.pairs:
        raise QMagError("--images and --pairs go together")
    if a.pairs and not (a.images or a.features):
        raise QMagError("--pairs needs --images (embedded now) or --features (precomputed embeddings)")
    if not (a.ijb or a.bin or a.images or a.scores or a.features):
        raise QMagError("give --scores, --images or --features with --pairs, --bin, or --ijb")


def _scores_from_features(a):
    """Precomputed embeddings (.npz, shard folder, .npy, feat.list) + a pairs file; pairs
    whose image is missing or failed there count as failures."""
    from ..evaluation.pairing import scores_from_embeddings
    from ..io.embeddings import load_embeddings
    from ..io.pairs import read_pairs

    emb = load_embeddings(a.features)
    table, rep = scores_from_embeddings(emb, read_pairs(a.pairs), encoder=emb.encoder or None)
    left = rep["n_pairs"] - rep["n_scored"]
    if rep["n_scored"] == 0:
        raise QMagError(f"no pair of {a.pairs} could be matched to the paths in {a.features}")
    if left:
        print(
            f"warning: {left} of {rep['n_pairs']} pairs not scored ({rep['n_missing_image']} image not in the "
            f"embeddings, {rep['n_failed_embedding']} failed embedding); they count as failures",
            file=sys.stderr,
        )
    return table, rep, emb.encoder


def _warn_params_mismatch(params, table, a) -> None:
    data_enc = table.encoder or (a.encoder if a.images else None)
    if params.encoder and data_enc and params.encoder != data_enc:
        print(
            f"warning: params were trained for encoder '{params.encoder}' but the scores come "
            f"from '{data_enc}'; α/β depend on the encoder's quality scale",
            file=sys.stderr,
        )
    elif why := params.quality_mismatch(table.encoder_key):
        print(f"warning: {why}", file=sys.stderr)


def cmd_evaluate(a) -> int:
    from ..scores.params import QMagFaceParams

    _check_evaluate_sources(a)
    if a.ijb:
        return _finish_evaluate(a, _evaluate_ijb(a), fmt=format_template_report)
    rep_pairs = None
    if a.bin or a.images or a.features:
        if a.features:
            table, rep_pairs, enc_id = _scores_from_features(a)
        else:
            table, rep_pairs, enc = _scores_from_bin(a) if a.bin else _scores_from_images(a)
            enc_id = enc.id
        if not a.params:
            from ..pipeline.compare import default_params

            shipped = default_params(enc_id) if enc_id else None
            if shipped is not None:
                print(f"note: using the parameters shipped for encoder '{enc_id}'", file=sys.stderr)
                rep, _ = evaluate_table(table, params=shipped, n_boot=a.n_boot, seed=a.seed)
                rep["pairs_report"] = rep_pairs
                return _finish_evaluate(a, rep)
    else:
        table = _load_scores(a.scores)
    if a.params:
        params = QMagFaceParams.load(a.params)
        _warn_params_mismatch(params, table, a)
        rep, _ = evaluate_table(table, params=params, n_boot=a.n_boot, seed=a.seed)
    else:
        tr = _trainer_from_args(a)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FMRClampWarning)
            rep, _ = evaluate_table(table, trainer=tr, n_boot=a.n_boot, seed=a.seed)
        if not rep["params"].get("error"):
            print(
                f"note: no --params given: α/β cross-fitted ({rep['params']['folds_from']}); "
                "each fold scored with α/β trained on the other folds",
                file=sys.stderr,
            )
    if rep_pairs is not None:
        rep["pairs_report"] = rep_pairs
    return _finish_evaluate(a, rep)


def _finish_evaluate(a, rep, fmt=format_report) -> int:
    print(fmt(rep))
    if a.json:
        _write_json(a.json, rep)
    return 0


# ------------------------------------------------------------------------ score
def cmd_score(a) -> int:
    from ..io.scores import add_scores_column
    from ..scores.params import QMagFaceParams

    if bool(a.out) == bool(a.in_place):
        raise QMagError("give --out FILE, or --in-place to add s_hat to --scores itself")
    out = a.scores if a.in_place else a.out  # --out is not --scores: run.check_outputs refused that
    table = _load_scores(a.scores)
    params = QMagFaceParams.load(a.params)
    s_hat = params.score(table.s, table.q_min)
    n = add_scores_column(a.scores, out, s_hat, meta={"params_alpha": params.alpha, "params_beta": params.beta})
    print(f"scored {n} pairs with alpha={params.alpha:.6g} beta={params.beta:.6g} -> {out}")
    return 0


# ------------------------------------------------------------------- make-pairs
def cmd_make_pairs(a) -> int:
    from ..evaluation.pairing import make_pairs
    from ..io.pairs import write_pairs_csv

    pairs = make_pairs(a.images, n_genuine=a.genuine, n_imposter=a.imposter, n_folds=a.folds, random_state=a.seed)
    write_pairs_csv(a.out, pairs)
    print(
        f"{int(pairs.label.sum())} genuine + {int((pairs.label == 0).sum())} imposter pairs in "
        f"{a.folds} identity-disjoint folds -> {a.out}"
    )
    return 0
