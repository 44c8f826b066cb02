"""The commands on score tables and pairs: ``train``, ``evaluate`` (all its data
sources), ``score`` and ``make-pairs``.  They import neither torch nor sklearn: the
image, ``.bin`` and template sources of ``evaluate`` import them inside
:mod:`qmag_core.cli.vision`."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from ..errors import FMRClampWarning, QMagError
from ..evaluation.protocol import evaluate_table, format_report, jsonable
from ..evaluation.templates import format_template_report
from .options import (
    add_encoder_options,
    batch_int,
    int_in,
    positive_float,
    positive_int,
    probability,
    seed_int,
    write_json,
)
from .vision import evaluate_ijb, scores_from_bin, scores_from_images


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
    g.add_argument("--n-fmr", type=int_in(2, 1000), default=50)
    g.add_argument("--n-omega", type=int_in(2, 1000), default=20)
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
    g.add_argument("--seed", type=seed_int, default=0)


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


def load_scores(path: str, *, needs_both: str | None = None):
    """A scores CSV; ``needs_both``: what needs genuine and imposter pairs (a file with
    one class is then refused, naming the file, before any work)."""
    from ..io.scores import read_scores_csv

    if not os.path.lexists(path):
        raise QMagError(f"{path}: no such file")
    table = read_scores_csv(path)
    n_gen = int((table.label == 1).sum())
    if needs_both and (n_gen == 0 or n_gen == len(table.label)):
        raise QMagError(
            f"{path}: {n_gen:,} genuine and {len(table.label) - n_gen:,} imposter pairs; {needs_both} needs both"
        )
    return table


def cmd_train(a) -> int:
    from ..safeio import sha256_file
    from ..scores.params import QUALITY_MEANING

    table = load_scores(a.scores, needs_both="training α/β")
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
    write_json(a.out, d)
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


def warn_params_mismatch(params, encoder_id: str | None, encoder_key: str | None) -> None:
    """The one warning every command gives when a params file was trained on another
    encoder's q than the scores it is applied to."""
    if why := params.mismatch(encoder_id, encoder_key):
        print(f"warning: {why}", file=sys.stderr)


def cmd_evaluate(a) -> int:
    from ..scores.params import QMagFaceParams

    _check_evaluate_sources(a)
    if a.ijb:
        return _finish_evaluate(a, evaluate_ijb(a), fmt=format_template_report)
    rep_pairs = None
    if a.bin or a.images or a.features:
        if a.features:
            table, rep_pairs, enc_id = _scores_from_features(a)
        else:
            table, rep_pairs, enc = scores_from_bin(a) if a.bin else scores_from_images(a)
            enc_id = enc.id
        if not a.params:
            shipped = QMagFaceParams.shipped(enc_id) if enc_id else None
            if shipped is not None:
                print(f"note: using the parameters shipped for encoder '{enc_id}'", file=sys.stderr)
                rep, _ = evaluate_table(table, params=shipped, n_boot=a.n_boot, seed=a.seed)
                rep["pairs_report"] = rep_pairs
                return _finish_evaluate(a, rep)
    else:
        table = load_scores(a.scores, needs_both="evaluation")
    if a.params:
        params = QMagFaceParams.load(a.params)
        warn_params_mismatch(params, table.encoder or (a.encoder if a.images else None), table.encoder_key)
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
        write_json(a.json, rep)
    return 0


# ------------------------------------------------------------------------ score
def cmd_score(a) -> int:
    from ..io.scores import add_scores_column
    from ..scores.params import QMagFaceParams

    if bool(a.out) == bool(a.in_place):
        raise QMagError("give --out FILE, or --in-place to add s_hat to --scores itself")
    out = a.scores if a.in_place else a.out  # --out is not --scores: run.check_outputs refused that
    table = load_scores(a.scores)
    params = QMagFaceParams.load(a.params)
    warn_params_mismatch(params, table.encoder, table.encoder_key)
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


# ---------------------------------------------------------------- the parser
def _parser_train(sub) -> None:
    p = sub.add_parser("train", help="learn alpha/beta from a scores CSV (s,q1,q2,label[,fold])")
    p.add_argument("--scores", required=True)
    p.add_argument("--out", required=True, help="params JSON to write")
    p.add_argument("--encoder", default=None, help="encoder id of the scores (overrides the file's '# encoder=')")
    p.add_argument(
        "--bootstrap",
        type=int_in(0, 100_000),
        default=0,
        metavar="N",
        help="add a seeded bootstrap 95%% CI of alpha/beta (N resamples)",
    )
    _add_trainer_options(p)
    p.set_defaults(func=cmd_train, writes=("out",), reads=("scores",))


def _parser_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="cosine vs QMagFace metrics on a scores CSV, or on images + pairs")
    p.add_argument("--scores", default=None)
    p.add_argument("--images", default=None, help="image folder the pairs refer to (embeds what the pairs need)")
    p.add_argument("--pairs", default=None, help="LFW pairs.txt or pairs CSV (with --images or --features)")
    p.add_argument(
        "--bin",
        default=None,
        help="insightface validation set (lfw.bin, agedb_30.bin, …): aligned "
        "112x112 crops, 10-fold accuracy; read without running its pickle",
    )
    p.add_argument(
        "--ijb",
        default=None,
        metavar="DIR",
        help="template verification (IJB-B/C layout: DIR/meta/<name>_face_tid_mid.txt, "
        "<name>_template_pair_label.txt, optional <name>_name_5pts_score.txt, DIR/loose_crop/)",
    )
    p.add_argument("--ijb-name", default=None, help="protocol name in DIR/meta (ijbb, ijbc; default: the only one)")
    p.add_argument(
        "--pool-temperature",
        type=positive_float,
        default=None,
        help="with --ijb: T of the softmax pooling rule, in q units (default: chosen on development data for "
        "builtin, see docs/results/explainable.md)",
    )
    p.add_argument(
        "--features",
        default=None,
        help="precomputed embeddings (.npz, a shard folder, .npy, feat.list): with --pairs (paths as in the "
        "embeddings) or --ijb",
    )
    p.add_argument("--batch-size", type=batch_int, default=32)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--params", default=None, help="params JSON; without it alpha/beta are cross-fitted over folds")
    p.add_argument("--json", default=None, help="write the full report as JSON")
    add_encoder_options(p)
    p.add_argument("--n-boot", type=int_in(1, 100_000), default=200, help="bootstrap resamples for the 95%% CIs")
    _add_trainer_options(p)
    p.set_defaults(
        func=cmd_evaluate,
        writes=("json",),
        reads=("scores", "pairs", "bin", "features", "params", "images", "ijb"),
        image_folders=("images",),
    )


def _parser_score(sub) -> None:
    p = sub.add_parser("score", help="add an s_hat column to a scores CSV")
    p.add_argument("--scores", required=True)
    p.add_argument("--params", required=True)
    p.add_argument("--out", default=None, help="output CSV (the input is never overwritten without --in-place)")
    p.add_argument(
        "--in-place", action="store_true", help="add (or replace) the s_hat column in --scores itself, atomically"
    )
    p.set_defaults(func=cmd_score, writes=("out",), reads=("scores", "params"))


def _parser_make_pairs(sub) -> None:
    p = sub.add_parser("make-pairs", help="seeded genuine/imposter pairs for a folder-per-identity image set")
    p.add_argument("--images", required=True)
    p.add_argument("--genuine", type=int_in(0, 10_000_000), required=True)
    p.add_argument("--imposter", type=int_in(0, 10_000_000), required=True)
    p.add_argument("--folds", type=int_in(1, 100), default=10)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_make_pairs, writes=("out",), reads=("images",), image_folders=("images",))


def add_scores_commands(sub) -> None:
    """Add ``train``, ``evaluate``, ``score`` and ``make-pairs`` to the ``qmag`` sub-parsers."""
    _parser_train(sub)
    _parser_evaluate(sub)
    _parser_score(sub)
    _parser_make_pairs(sub)
