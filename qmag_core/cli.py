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
    from .safeio import atomic_write

    with atomic_write(path) as fh:
        json.dump(_jsonable(d), fh, indent=2)
        fh.write("\n")


def _fmr_key(f: float) -> str:
    return f"{f:g}" if f >= 1e-3 else f"{f:.4f}".rstrip("0")


# ------------------------------------------------------------------------ train
def _add_trainer_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trainer options")
    g.add_argument("--mode", choices=("official", "consistent"), default="official",
                   help="official: the published algorithm exactly; consistent: thresholds in raw score space")
    g.add_argument("--fmr-min", type=probability, default=1e-5)
    g.add_argument("--fmr-max", type=probability, default=1e-2)
    g.add_argument("--n-fmr", type=at_least_two, default=50)
    g.add_argument("--n-omega", type=at_least_two, default=20)
    g.add_argument("--max-ratio", type=positive_float, default=0.5)
    g.add_argument("--max-imposters", type=positive_int, default=None,
                   help="use a seeded random subset of this many imposter pairs")
    g.add_argument("--no-clamp-fmr", action="store_true",
                   help="keep FMRs below 1/#imposters (official behaviour) instead of clamping")
    g.add_argument("--seed", type=nonneg_int, default=0)


def _trainer_from_args(a):
    from .trainer import QMagFaceTrainer

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
    from .params import QUALITY_MEANING

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
    _write_json(a.out, d)
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

    curve = M.roc(genuine, imposter)  # one sort for EER, AUC and FNMR@FMR
    e = curve.eer()
    ops = curve.fnmr_at_fmr(REPORT_FMRS)
    out = {
        "eer": e.value,
        "eer_threshold": e.threshold,
        "auc": curve.auc(),
        "dprime": M.dprime(genuine, imposter),
        "fnmr_at_fmr": {_fmr_key(o.target_fmr): o.fnmr for o in ops},
        "threshold_at_fmr": {_fmr_key(o.target_fmr): o.threshold for o in ops},
        "accuracy": None,
        "accuracy_std": None,
    }
    if folds is not None and np.unique(folds).size >= 2:
        acc = M.kfold_accuracy(scores, labels, folds)
        out["accuracy"], out["accuracy_std"] = acc.mean, acc.std
    elif folds is not None:
        out["accuracy_note"] = "k-fold accuracy needs at least 2 folds; the file has 1"
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

    if table.n_folds >= 2:
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
    from .quality import measure_columns, measure_edcs
    from .scoring import qmagface_score

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
        pinfo = {"source": "cross-fit", "mode": trainer.mode, "options": trainer.cli_options(),
                 "n_folds": len(per_fold), "folds_from": folds_from, "error": error,
                 "per_fold": [{k: v for k, v in d.items() if k != "train_rows"} for d in per_fold]}
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
    baselines = {name: {"fnmr": o.fnmr.tolist(), "ratio_at_20": _edc_ratio(o)} for name, o in others.items()}
    edc_iso = _iso_edc(table, y, fl)
    return {
        "baseline": base,
        "qmagface": qmag,
        "n_genuine": int(y.sum()),
        "n_imposter": int((~y).sum()),
        "params": pinfo,
        "edc": {"rule": e.rule, "threshold": e.threshold, "discard": e.discard.tolist(),
                "fnmr": e.fnmr.tolist(), "fnmr_random_median": e.fnmr_random_median.tolist(),
                "n_random": e.n_random, "n_failed": int(fl.size),
                "failed": "pairs with a failed image count as non-matches and are discarded first",
                "ratio_at_20": _edc_ratio(e), "baselines": baselines},
        "edc_iso": edc_iso,
    }, s_hat


def _edc_ratio(e, at: float = 0.2):
    """FNMR after discarding ``at`` of the pairs, over the median of random discards."""
    k = int(np.argmin(np.abs(np.asarray(e.discard) - at)))
    r = e.fnmr_random_median[k]
    return None if not r else float(e.fnmr[k] / r)


def _iso_edc(table, y, failed_labels, *, starting_error: float = 0.05, limit: float = 0.2) -> dict:
    """ISO/IEC 29794-1:2024 EDC of q and of every qm_* measure: FNMR-side (mated pairs)
    and FMR-side (non-mated), threshold at the starting error of the scored pairs,
    pAUC up to ``limit`` minus the theoretical best; failed pairs are errors (mated) or
    correct rejections (non-mated) and are discarded first."""
    from .quality import iso_edcs, measure_columns

    qualities = {"q": table.q_min, **measure_columns(table.extra)}
    out = {}
    for side in ("fnmr", "fmr"):
        if not (y if side == "fnmr" else ~y).any():
            continue
        edcs = iso_edcs(table.s, y, qualities, failed_labels, error=side, starting_error=starting_error)
        out[side] = {"starting_error": starting_error, "threshold": edcs["q"].threshold, "pauc_limit": limit,
                     "pauc": {name: e.pauc(limit) for name, e in edcs.items()},
                     "actual_starting_error": edcs["q"].starting_error}
    return out


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.3f}%"


def format_report(rep: dict) -> str:
    b, q = rep["baseline"], rep["qmagface"]
    if q is None:  # QMagFace could not be fitted: show the baseline alone
        q = {k: (None if not isinstance(v, dict) else {kk: None for kk in v}) for k, v in b.items()}
        q["auc"] = q["dprime"] = float("nan")
    rows = [("EER", _pct(b["eer"]), _pct(q["eer"])), ("AUC", f"{b['auc']:.6f}", f"{q['auc']:.6f}"),
            ("d'", f"{b['dprime']:.3f}", f"{q['dprime']:.3f}")]
    for k in b["fnmr_at_fmr"]:
        rows.append((f"FNMR@FMR={k}", _pct(b["fnmr_at_fmr"][k]), _pct(q["fnmr_at_fmr"][k])))
    if b["accuracy"] is not None:
        rows.append(("accuracy", f"{_pct(b['accuracy'])} ± {_pct(b['accuracy_std'])}",
                     "n/a" if q["accuracy"] is None else f"{_pct(q['accuracy'])} ± {_pct(q['accuracy_std'])}"))
    bg, qg = b.get("generalized"), (q or {}).get("generalized") or {}
    if bg:  # the same metrics with every pair: failed images count as non-matches
        rows.append(("generalized (failures count):", "", ""))
        rows.append(("  EER", _pct(bg["eer"]), _pct(qg.get("eer"))))
        for k in bg["fnmr_at_fmr"]:
            rows.append((f"  FNMR@FMR={k}", _pct(bg["fnmr_at_fmr"][k]), _pct((qg.get("fnmr_at_fmr") or {}).get(k))))
        if bg["accuracy"] is not None:
            rows.append(("  accuracy", _pct(bg["accuracy"]), _pct(qg.get("accuracy"))))
    w = max(len(r[0]) for r in rows) + 2
    lines = [f"{'metric':<{w}}{'cosine':>22}{'QMagFace':>22}"]
    lines += [f"{r[0]:<{w}}{r[1]:>22}{r[2]:>22}" for r in rows]
    lines.append(f"pairs: {rep['n_genuine']} genuine, {rep['n_imposter']} imposter")
    ed = rep.get("edc") or {}
    if ed.get("ratio_at_20") is not None:
        parts = [f"q {ed['ratio_at_20']:.2f}"] + [f"{k} {v['ratio_at_20']:.2f}" for k, v in
                                                   (ed.get("baselines") or {}).items() if v["ratio_at_20"] is not None]
        lines.append("EDC, FNMR after discarding the 20% lowest-quality pairs / random discards (lower is better): "
                     + ", ".join(parts))
    iso = (rep.get("edc_iso") or {}).get("fnmr")
    if iso:
        lines.append(f"ISO/IEC 29794-1 EDC, FNMR side (starting error {iso['actual_starting_error']:.3f}): pAUC up to "
                     f"{iso['pauc_limit']:.0%} discarded minus the theoretical best (lower is better): "
                     + ", ".join(f"{k} {v:.4f}" for k, v in iso["pauc"].items()))
    pr = rep.get("pairs_report")
    if pr and pr.get("n_pairs"):
        lines.append(f"failure to acquire: {pr['n_pairs'] - pr['n_scored']} of {pr['n_pairs']} pairs "
                     f"({_pct(pr['fta_rate'])}) have an image that could not be embedded "
                     f"({pr['n_failed_genuine']} genuine, {pr['n_failed_imposter']} imposter)")
    if rep["params"].get("error"):
        lines.append(f"QMagFace not evaluated: {rep['params']['error']}")
    return "\n".join(lines)


def _add_encoder_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encoder")
    g.add_argument("--encoder", default="builtin", help="builtin | builtin-raw | magface (default builtin)")
    g.add_argument("--checkpoint", default=None, help="MagFace checkpoint (with --encoder magface)")
    g.add_argument("--arch", default="iresnet100", help="iresnet18|34|50|100 (with --encoder magface)")
    g.add_argument("--head", default=None, help="quality head from train-magface (with --encoder builtin; "
                   "default: the shipped head)")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto (GPU when available) | cpu | cuda")
    g.add_argument("--fp16", action="store_true", help="half precision on GPU")
    g.add_argument("--flip", action="store_true", help="add the descriptor of the mirrored face")
    g.add_argument("--aligned", action="store_true",
                   help="inputs are already aligned ArcFace-112 crops: skip detection (never done silently)")
    g.add_argument("--face", choices=("best", "largest", "center"), default="best",
                   help="which face of a photo with several is the subject: best (default: a large face near "
                        "the centre, area - 2 x squared centre offset), largest, or center")


def _encoder_from_args(a):
    from .encoders import load_encoder

    if a.head and a.encoder != "builtin":
        raise QMagError("--head is for --encoder builtin")
    return load_encoder(a.encoder, checkpoint=a.checkpoint, arch=a.arch, device=a.device, fp16=a.fp16, flip=a.flip,
                        head=a.head)


def _progress_bar(total: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None)

    def cb(done, n):
        bar.n = done
        bar.refresh()
        if done >= n:
            bar.close()
    return cb


def _embed_paths(a, paths, root):
    from .embed import EmbedStats, embed_files

    enc = _encoder_from_args(a)
    st = EmbedStats()
    emb = embed_files(paths, root, enc, aligned=a.aligned, batch_size=a.batch_size, face=a.face,
                      cache_dir=None if a.no_cache else (a.cache_dir or "default"),
                      progress=_progress_bar(len(paths), f"embedding ({enc.id})"), stats=st)
    print(f"{st.n_images} images: {st.n_embedded} embedded, {st.n_cached} from cache, {st.n_failed} failed "
          f"({st.seconds:.1f} s)", file=sys.stderr)
    for msg in st.cache_damaged:
        print(f"warning: embedding cache: {msg}; its images were embedded again", file=sys.stderr)
    for p, e in list(zip(emb.paths[~emb.ok], emb.error[~emb.ok]))[:10]:
        print(f"  failed: {e if p in e else f'{p}: {e}'}", file=sys.stderr)
    return emb, enc


def cmd_embed(a) -> int:
    from .data import save_embeddings
    from .embed import list_images

    from .safeio import confine_paths, read_text

    if bool(a.images) == bool(a.list):
        raise QMagError("give either --images DIR or --list FILE")
    if a.images:
        root, paths = a.images, list_images(a.images)
    else:
        text = read_text(a.list, expected="one image path per line")
        rows = [(k + 1, ln.strip()) for k, ln in enumerate(text.splitlines())
                if ln.strip() and not ln.lstrip().startswith("#")]
        paths = [r[1] for r in rows]
        root = a.root or (os.path.dirname(os.path.abspath(a.list)))
        if not Path(root).is_dir():
            raise QMagError(f"--root {root}: not a folder")
        confine_paths(paths, root, source=a.list, lines=[r[0] for r in rows])
    if not paths:
        raise QMagError("no images found")
    emb, _ = _embed_paths(a, paths, root)
    out = save_embeddings(a.out, emb)
    print(f"{int(emb.ok.sum())}/{len(paths)} embedded -> {out}")
    return 0


def cmd_compare(a) -> int:
    from .compare import compare_images, default_params
    from .params import QMagFaceParams

    enc = _encoder_from_args(a)
    params = QMagFaceParams.load(a.params) if a.params else default_params(enc.id)
    res = compare_images(a.images, enc, names=[os.path.basename(x) for x in a.images], params=params, fmr=a.fmr,
                         aligned=a.aligned, face=a.face)
    out = {"encoder": enc.id, "fmr": res.fmr, "threshold_s": res.threshold_s, "threshold_s_hat": res.threshold_s_hat,
           "alpha": params.alpha if params else None, "beta": params.beta if params else None,
           "face_rule": a.face,
           "images": [{"name": r.name, "ok": r.ok, "error": r.error, "quality": r.quality, "n_faces": r.n_faces,
                       "face_index": None if r.aligned is None else r.aligned.face_index,
                       "box": None if r.aligned is None or r.aligned.face is None else r.aligned.face.box}
                      for r in res.images],
           "pairs": [{"image1": res.images[p.i].name, "image2": res.images[p.j].name, "s": p.s, "s_hat": p.s_hat,
                      "q_min": p.q_min, "accept_s": p.accept_s, "accept_s_hat": p.accept_s_hat} for p in res.pairs]}
    if a.json:
        print(json.dumps(_jsonable(out), indent=2))
        return 0 if all(r.ok for r in res.images) else 1
    for r in res.images:
        extra = (f"  ({r.n_faces} faces; face {r.aligned.face_index + 1} by size chosen by rule '{a.face}')"
                 if r.n_faces > 1 else "")
        print(f"{r.name}: q={r.quality:.3f}{extra}" if r.ok else f"{r.name}: FAILED: {r.error}")
    if params is None:
        print("note: no params for this encoder: s_hat = s and no decision (give --params)")
    else:
        ts = "n/a" if res.threshold_s is None else f"{res.threshold_s:.4f}"
        th = "n/a" if res.threshold_s_hat is None else f"{res.threshold_s_hat:.4f}"
        print(f"operating point FMR={res.fmr:g}: threshold s>={ts}, s_hat>={th} (alpha={params.alpha:.5g}, beta={params.beta:.5g})")
    for p in res.pairs:
        dec = "" if p.accept_s_hat is None else ("  ACCEPT" if p.accept_s_hat else "  reject")
        print(f"{res.images[p.i].name} ~ {res.images[p.j].name}: s={p.s:.4f} s_hat={p.s_hat:.4f}{dec}")
    return 0 if all(r.ok for r in res.images) else 1


def cmd_explain(a) -> int:
    from PIL import Image

    from .explain import explain, render_overlay

    from .safeio import atomic_path, atomic_write

    ext = os.path.splitext(a.out)[1].lower()
    if ext not in Image.registered_extensions():
        raise QMagError(f"--out {a.out}: unknown image type {ext or '(no extension)'!r}; use .png or .jpg")
    npy = a.npy or os.path.splitext(a.out)[0] + ".npy"
    if not npy.lower().endswith(".npy"):
        raise QMagError(f"--npy {npy}: the raw map is written as .npy")
    for out in (a.out, npy):
        if not Path(out).resolve().parent.is_dir():
            raise QMagError(f"{out}: its folder does not exist")
    enc = _encoder_from_args(a)
    kw = {"steps": a.steps} if a.method == "gradient" else {"patch": a.patch, "stride": a.stride, "fill": a.fill}
    qm = explain(a.image, enc, method=a.method, aligned=a.aligned, name=os.path.basename(a.image), face=a.face, **kw)
    with atomic_path(a.out) as tmp:
        Image.fromarray(render_overlay(qm)).save(tmp, format=Image.registered_extensions()[ext])
    with atomic_write(npy, "wb") as fh:
        np.save(fh, qm.raw)
    print(f"{os.path.basename(a.image)}: q={qm.quality:.4f} ({enc.id}; {enc.quality})")
    print(f"{a.method} map in {qm.seconds:.2f} s -> {a.out} (crop | overlay: red lowers q, blue raises it), raw map -> {npy}")
    return 0


def cmd_train_magface(a) -> int:
    from tqdm import tqdm

    from .encoders import load_encoder
    from .magface import MagFaceConfig, backbone_directions, build_training_set, save_quality_head, train_quality_head

    enc = load_encoder("builtin-raw", device=a.device)
    bar = tqdm(desc="aligning + degrading", unit="img", file=sys.stderr, disable=None)

    def prog(done, n):
        bar.total = n
        bar.n = done
        bar.refresh()

    data = build_training_set(a.data, enc, n_degraded=a.degraded, seed=a.seed, aligned=a.aligned, progress=prog,
                              feature_kind=a.features, max_severity=a.max_severity)
    bar.close()
    if data["failed"]:
        print(f"{len(data['failed'])} images skipped, e.g. {data['failed'][0]}", file=sys.stderr)
    ebar = tqdm(total=a.epochs, desc="training quality head", unit="epoch", file=sys.stderr, disable=None)

    def eprog(ep, n, rec):
        ebar.n = ep
        ebar.set_postfix(loss=f"{rec['loss']:.3f}", mean_q=f"{rec['mean_a']:.1f}")
        ebar.refresh()

    dirs = backbone_directions(enc, data["features"]) if a.direction == "fixed" else None
    cfg = MagFaceConfig(u_a=a.u_a)
    head, hist = train_quality_head(data["features"], data["labels"], directions=dirs, epochs=a.epochs, lr=a.lr,
                                    dim=a.dim, seed=a.seed, cfg=cfg, device=a.device if a.device != "auto" else "cpu",
                                    checkpoint=a.checkpoint or a.out + ".ckpt", log=a.log or a.out + ".log.json",
                                    progress=eprog)
    ebar.close()
    save_quality_head(head, a.out, {"features": a.features, "data": os.path.abspath(a.data), "direction": a.direction,
                                    "magface": {k: float(v) for k, v in vars(cfg).items()},
                                    "n_identities": len(data["identities"]), "max_severity": a.max_severity,
                                    "n_samples": int(len(data["labels"])), "degraded_per_image": a.degraded,
                                    "seed": a.seed, "epochs": a.epochs, "final_loss": hist[-1]["loss"]})
    print(f"{len(data['identities'])} identities, {len(data['labels'])} samples (clean + {a.degraded} degraded each); "
          f"final loss {hist[-1]['loss']:.4f}, mean q {hist[-1]['mean_a']:.2f} -> {a.out}")
    return 0


def cmd_train_quality(a) -> int:
    from tqdm import tqdm

    from .embed import list_images
    from .encoders import load_encoder
    from .magface import save_quality_head
    from .safeio import confine_paths
    from .utility import fit_utility_head, split_by_identity, utility_samples

    fit_paths, val_paths = split_by_identity(list_images(a.data), a.val_fraction, a.seed)
    confine_paths(fit_paths + val_paths, a.data, source=a.data)
    enc = load_encoder("builtin-raw", device=a.device)
    parts = []
    for name, paths, seed in (("fit", fit_paths, a.seed), ("validation", val_paths, a.seed + 1)):
        bar = tqdm(total=len(paths), desc=f"degrading + encoding ({name} identities)", unit="img", file=sys.stderr,
                   disable=None)

        def prog(done, n, bar=bar):
            bar.n = done
            bar.refresh()

        d = utility_samples(enc, [os.path.join(a.data, p) for p in paths], family=a.family, n_degraded=a.degraded,
                            seed=seed, aligned=a.aligned, progress=prog)
        bar.close()
        if d["failed"]:
            print(f"{name}: {len(d['failed'])} images skipped, e.g. {d['failed'][0]}", file=sys.stderr)
        parts.append(d)
    fit = fit_utility_head(parts[0]["features"], parts[0]["target"], parts[1]["features"], parts[1]["target"])
    n_ids = len({p.split("/")[0] for p in fit_paths}), len({p.split("/")[0] for p in val_paths})
    save_quality_head(fit.head, a.out, {"kind": "utility", "features": "multi", "family": a.family,
                                        "data": os.path.abspath(a.data), "degraded_per_photo": a.degraded,
                                        "seed": a.seed, "identities": {"fit": n_ids[0], "validation": n_ids[1]},
                                        "lost_faces": int(parts[0]["lost"] + parts[1]["lost"]), **fit.meta()})
    print(f"{n_ids[0]} + {n_ids[1]} identities (fit + validation), {fit.n_train} + {fit.n_val} samples "
          f"({a.family} family, {a.degraded} degraded per image and family); ridge λ {fit.lam:g}, validation "
          f"Spearman {fit.val_spearman[fit.lam]:.3f} -> {a.out}")
    return 0


def _scores_from_images(a):
    from .data import confine_pairs, read_pairs, scores_from_embeddings

    if not Path(a.images).is_dir():
        raise QMagError(f"--images {a.images}: not a folder")
    pairs = read_pairs(a.pairs)
    confine_pairs(pairs, a.images)
    paths = sorted(set(pairs.path1.tolist()) | set(pairs.path2.tolist()))
    emb, enc = _embed_paths(a, paths, a.images)
    table, rep = scores_from_embeddings(emb, pairs, encoder=enc.id)
    left = rep["n_pairs"] - rep["n_scored"]
    if left:
        print(f"warning: {left} of {rep['n_pairs']} pairs not scored ({rep['n_missing_image']} missing image, "
              f"{rep['n_failed_embedding']} failed embedding); first lines {rep['failed_lines'][:5]}", file=sys.stderr)
    if rep["n_scored"] == 0:
        raise QMagError("no pair could be scored")
    return table, rep, enc


def _scores_from_bin(a):
    from .binsets import bin_scores, read_bin

    bs = read_bin(a.bin)  # refused before the encoder is even loaded
    enc = _encoder_from_args(a)
    bar = _progress_bar(len(bs.images), f"embedding {os.path.basename(a.bin)} ({enc.id})")
    table, rep = bin_scores(bs, enc, batch_size=a.batch_size, progress=bar)
    rep["source"]["flip"] = bool(a.flip)
    return table, rep, enc


def cmd_evaluate(a) -> int:
    from .params import QMagFaceParams

    if a.bin and (a.scores or a.images or a.pairs):
        raise QMagError("--bin goes alone: not with --scores, --images or --pairs")
    if a.bin or a.images or a.pairs:
        if not a.bin and not (a.images and a.pairs):
            raise QMagError("--images and --pairs go together")
        table, rep_pairs, enc = _scores_from_bin(a) if a.bin else _scores_from_images(a)
        if not a.params:
            from .compare import default_params

            shipped = default_params(enc.id)
            if shipped is not None:
                print(f"note: using the parameters shipped for encoder '{enc.id}'", file=sys.stderr)
                rep, _ = evaluate_table(table, params=shipped, n_boot=a.n_boot, seed=a.seed)
                rep["pairs_report"] = rep_pairs
                return _finish_evaluate(a, rep)
    elif not a.scores:
        raise QMagError("give --scores, --images with --pairs, or --bin")
    else:
        table = _load_scores(a.scores)
        rep_pairs = None
    if a.params:
        params = QMagFaceParams.load(a.params)
        data_enc = table.encoder or (a.encoder if a.images else None)
        if params.encoder and data_enc and params.encoder != data_enc:
            print(f"warning: params were trained for encoder '{params.encoder}' but the scores come "
                  f"from '{data_enc}'; α/β depend on the encoder's quality scale", file=sys.stderr)
        rep, _ = evaluate_table(table, params=params, n_boot=a.n_boot, seed=a.seed)
    else:
        tr = _trainer_from_args(a)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FMRClampWarning)
            rep, _ = evaluate_table(table, trainer=tr, n_boot=a.n_boot, seed=a.seed)
        if not rep["params"].get("error"):
            print(f"note: no --params given: α/β cross-fitted ({rep['params']['folds_from']}); "
                  "each fold scored with α/β trained on the other folds", file=sys.stderr)
    if rep_pairs is not None:
        rep["pairs_report"] = rep_pairs
    return _finish_evaluate(a, rep)


def _finish_evaluate(a, rep) -> int:
    print(format_report(rep))
    if a.json:
        _write_json(a.json, rep)
    return 0


# ------------------------------------------------------------------------ score
def cmd_score(a) -> int:
    from .data import add_scores_column
    from .params import QMagFaceParams

    if bool(a.out) == bool(a.in_place):
        raise QMagError("give --out FILE, or --in-place to add s_hat to --scores itself")
    out = a.scores if a.in_place else a.out
    if not a.in_place and Path(out).resolve() == Path(a.scores).resolve():
        raise QMagError(f"--out {out} is the input file; use --in-place to overwrite it")
    table = _load_scores(a.scores)
    params = QMagFaceParams.load(a.params)
    s_hat = params.score(table.s, table.q_min)
    n = add_scores_column(a.scores, out, s_hat, meta={"params_alpha": params.alpha, "params_beta": params.beta})
    print(f"scored {n} pairs with alpha={params.alpha:.6g} beta={params.beta:.6g} -> {out}")
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
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), like every other bad-input message."""

    def error(self, message):  # noqa: D401
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {_one_line(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="qmag", description="QMagFace Studio command line")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="learn alpha/beta from a scores CSV (s,q1,q2,label[,fold])")
    p.add_argument("--scores", required=True)
    p.add_argument("--out", required=True, help="params JSON to write")
    p.add_argument("--encoder", default=None, help="encoder id of the scores (overrides the file's '# encoder=')")
    p.add_argument("--bootstrap", type=nonneg_int, default=0, metavar="N", help="add a seeded bootstrap 95%% CI of alpha/beta (N resamples)")
    _add_trainer_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="cosine vs QMagFace metrics on a scores CSV, or on images + pairs")
    p.add_argument("--scores", default=None)
    p.add_argument("--images", default=None, help="image folder the pairs refer to (embeds what the pairs need)")
    p.add_argument("--pairs", default=None, help="LFW pairs.txt or pairs CSV (with --images)")
    p.add_argument("--bin", default=None, help="insightface validation set (lfw.bin, agedb_30.bin, …): aligned "
                                               "112x112 crops, 10-fold accuracy; read without running its pickle")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--params", default=None, help="params JSON; without it alpha/beta are cross-fitted over folds")
    p.add_argument("--json", default=None, help="write the full report as JSON")
    _add_encoder_options(p)
    p.add_argument("--n-boot", type=positive_int, default=200, help="bootstrap resamples for the 95%% CIs")
    _add_trainer_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("score", help="add an s_hat column to a scores CSV")
    p.add_argument("--scores", required=True)
    p.add_argument("--params", required=True)
    p.add_argument("--out", default=None, help="output CSV (the input is never overwritten without --in-place)")
    p.add_argument("--in-place", action="store_true",
                   help="add (or replace) the s_hat column in --scores itself, atomically")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("embed", help="embed images into an .npz (failed images kept as rows)")
    p.add_argument("--images", default=None, help="folder of images (recursive)")
    p.add_argument("--list", default=None, help="text file with one image path per line")
    p.add_argument("--root", default=None, help="folder the --list paths are relative to")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--cache-dir", default=None, help="embedding cache (default ~/.cache/qmag or $QMAG_CACHE)")
    p.add_argument("--no-cache", action="store_true")
    _add_encoder_options(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("compare", help="quality per image, s and s_hat per pair, decision at an FMR")
    p.add_argument("images", nargs="+")
    p.add_argument("--params", default=None, help="params JSON (default: the encoder's shipped parameters)")
    p.add_argument("--fmr", type=probability, default=1e-3, help="operating point for the accept/reject decision")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_encoder_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("explain", help="pixel-level quality map of one face (PNG overlay + raw .npy)")
    p.add_argument("image")
    p.add_argument("--out", required=True, help="PNG: aligned crop | heatmap overlay")
    p.add_argument("--npy", default=None, help="raw map (default: next to --out)")
    p.add_argument("--method", choices=("gradient", "occlusion"), default="gradient")
    p.add_argument("--steps", type=positive_int, default=64, help="integration steps (gradient)")
    p.add_argument("--patch", type=positive_int, default=16, help="patch size in px (occlusion)")
    p.add_argument("--stride", type=positive_int, default=8, help="patch stride in px (occlusion)")
    p.add_argument("--fill", choices=("blur", "grey"), default="blur",
                   help="occlusion: replace each patch by the blurred crop (detail) or mid-grey (content)")
    _add_encoder_options(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("train-magface", help="train a MagFace quality head on the built-in backbone")
    p.add_argument("--data", required=True, help="folder with one sub-folder of images per identity")
    p.add_argument("--out", required=True, help="quality head file (.pt, tensors only)")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--lr", type=positive_float, default=0.05)
    p.add_argument("--dim", type=positive_int, default=128)
    p.add_argument("--degraded", type=nonneg_int, default=6, help="seeded degraded copies per image")
    p.add_argument("--max-severity", type=positive_float, default=1.0, help="degradation severities ~ U(0.1, this)")
    p.add_argument("--features", choices=("multi", "pooled"), default="multi",
                   help="head input: per-stage statistics + pooled layer (768-d), or the pooled layer (256-d)")
    p.add_argument("--direction", choices=("fixed", "free"), default="fixed",
                   help="MagFace embedding: the backbone's own direction x the head's length (default; q then "
                        "measures how well the direction the encoder matches with fits its identity) or the head's output")
    p.add_argument("--u-a", type=positive_float, default=110.0, help="MagFace upper magnitude u_a (l_a 10)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--aligned", action="store_true", help="images are aligned ArcFace-112 crops")
    p.add_argument("--checkpoint", default=None, help="resumable checkpoint (default OUT.ckpt)")
    p.add_argument("--log", default=None, help="JSON training log (default OUT.log.json)")
    p.set_defaults(func=cmd_train_magface)

    p = sub.add_parser("train-quality", help="train a utility quality head (q = predicted cosine to the clean "
                       "capture x 100) on the built-in backbone; no identity labels needed beyond the folders")
    p.add_argument("--data", required=True, help="folder with one sub-folder of images per identity (photos or crops)")
    p.add_argument("--out", required=True, help="quality head file (.pt, tensors only); use with --head")
    p.add_argument("--family", choices=("both", "crop", "capture"), default="both",
                   help="degradations for the targets: of the aligned crop, of the whole photo before detection, or both")
    p.add_argument("--degraded", type=positive_int, default=2, help="seeded degraded versions per image and family")
    p.add_argument("--val-fraction", type=probability, default=0.25,
                   help="identities held out to choose the ridge strength")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--aligned", action="store_true", help="images are aligned ArcFace-112 crops (crop family only)")
    p.set_defaults(func=cmd_train_quality)

    p = sub.add_parser("make-pairs", help="seeded genuine/imposter pairs for a folder-per-identity image set")
    p.add_argument("--images", required=True)
    p.add_argument("--genuine", type=nonneg_int, required=True)
    p.add_argument("--imposter", type=nonneg_int, required=True)
    p.add_argument("--folds", type=positive_int, default=10)
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_make_pairs)
    return ap


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def main(argv=None) -> int:
    """Run one command.  Bad input exits 2 with one line on stderr; an internal error
    exits 1 with one line (``QMAG_DEBUG=1`` shows its traceback)."""
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        return int(a.func(a) or 0)
    except (QMagError, OSError) as e:
        msg = str(e) if not isinstance(e, OSError) or not e.filename else f"{e.filename}: {e.strerror}"
        print(f"error: {_one_line(msg)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("error: not enough memory for this input (see the size limits in the README)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - never a traceback for a user
        if os.environ.get("QMAG_DEBUG"):
            raise
        print(f"error: internal error ({type(e).__name__}: {_one_line(e)[:300]}); "
              "rerun with QMAG_DEBUG=1 for the traceback and please report it", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
