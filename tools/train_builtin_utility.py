"""Train (and with --write, ship) the utility quality head of the built-in encoder.

Data: the original LFW photos of the dev pairs (../shared/data/lfw_photos), split by
the pairs' folds, which are identity-disjoint: folds 1–3 persons fit the ridge, fold 4
persons choose its strength, folds 5–7 are never read here (they are the test of
bench/bench_capture.py and bench/bench_quality.py).  Each photo: clean (target 1) and
``--degraded`` seeded degraded versions per family (target = cosine to the clean
descriptor): crop level (``qmag_core.quality.degrade.degrade``) and capture level
(``degrade_photo``, before detection).  Samples are cached per family and split.

    python -m tools.train_builtin_utility [--family both|crop|capture] [--degraded 2] [--write]
    python -m tools.train_builtin_utility --params consistent|official [--write]   # α/β with the shipped head
    python -m tools.train_builtin_utility --spearman     # does q track crop-level degradation (folds 5–7)?
    python -m tools.train_builtin_utility --calibrate    # capture family: face lost %, 1 − cos per severity

α/β (``--params``) are trained on cross-quality pairs of the same folds 1–4 persons (never
folds 5–7): every same-person photo pair (both orders) and 100,000 seeded pairs of
different persons; the first photo clean, the second one of its degraded versions of
either family (uniform), q from the shipped head, directions from the backbone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.protocol import (
    PHOTOS,
    SHARED,
    TEST_FOLDS,
    TRAIN_FOLDS,
    VAL_FOLDS,
    cross_quality_pairs,
    samples,
    split_paths,
    stack,
)
from qmag_core.encoders import BUILTIN_HEAD, load_encoder
from qmag_core.io.pairs import read_lfw_pairs
from qmag_core.quality.head import save_quality_head
from qmag_core.quality.utility import fit_utility_head

ROOT = Path(__file__).resolve().parents[1]


def train(family: str = "both", n_deg: int = 2, seed: int = 0, cache: Path | None = None, max_train: int | None = None):
    """(UtilityFit, meta) of a head trained on folds 1–3, λ chosen on fold 4."""
    cache = cache or Path.home() / ".cache" / "qmag" / "utility"
    cache.mkdir(parents=True, exist_ok=True)
    enc = load_encoder("builtin-raw", device="cpu")
    sp = split_paths()
    tr = sp["train"]
    if max_train and len(tr) > max_train:
        tr = sorted(np.random.default_rng(seed).choice(tr, max_train, replace=False).tolist())
    fams = ("crop", "capture") if family == "both" else (family,)
    X, y = stack([samples(enc, tr, f, n_deg, seed + 7, cache) for f in fams])
    Xv, yv = stack([samples(enc, sp["val"], f, n_deg, seed + 8, cache) for f in fams])
    fit = fit_utility_head(X, y, Xv, yv)
    meta = {
        "kind": "utility",
        "features": "multi",
        "family": family,
        "degraded_per_photo": n_deg,
        "seed": seed,
        "data": "lfw_photos dev pairs: folds 1-3 fit, fold 4 selects lambda",
        "n_train_photos": len(tr),
        "n_val_photos": len(sp["val"]),
        **fit.meta(),
    }
    return fit, meta


def train_params(mode: str, seed: int, write: bool, n_deg: int = 2):
    from qmag_core.evaluation.metrics import operating_points
    from qmag_core.scores import QMagFaceTrainer, qmagface_score

    s, q, y, n_photos = cross_quality_pairs(n_deg, seed)
    tr = QMagFaceTrainer(mode=mode, random_state=seed).fit(np.c_[s, q, q], y)
    print(
        f"{mode}: alpha {tr.alpha_:.5g} beta {tr.beta_:.5g} (s0 {tr.alpha_ / tr.beta_:.3f}) on "
        f"{int(y.sum())} genuine + "
        f"{int((~y).sum())} imposter cross-quality pairs of {n_photos} photos (LFW dev folds 1-4 persons)"
    )
    if write:
        p = tr.params(
            encoder="builtin",
            encoder_key=load_encoder("builtin", device="cpu").key,  # the shipped head: q's scale
            trained_on={
                "data": "original LFW photos of the dev pairs' folds 1-4 persons (../shared/data/lfw_photos); "
                "never folds 5-7, the test of the benches",
                "pairs": "every same-person photo pair (both orders) + 100,000 seeded different-person "
                "pairs; first photo "
                f"clean, second one of its {n_deg}+{n_deg} seeded degraded versions (crop and capture family), "
                f"severity U(0.1, 1), seed {seed}",
                "n_genuine": tr.n_genuine_,
                "n_imposter": tr.n_imposter_,
                "protocol": "lfw-dev",  # machine-readable: the Dataset page marks rows of these persons
                "persons_of_folds": [f + 1 for f in TRAIN_FOLDS + VAL_FOLDS],  # 1-based, as LFW numbers them
                "command": f"python -m tools.train_builtin_utility --params {mode} --write",
            },
        )
        p.operating_points = operating_points(s, qmagface_score(s, q, tr.alpha_, tr.beta_), y)
        p.notes = list(p.notes) + [
            "q = the shipped utility quality head (qmag_core/assets/quality_head/builtin_head.pt)",
            "operating points measured on the cross-quality training pairs",
        ]
        out = ROOT / "qmag_core" / "assets" / "params" / "builtin.json"
        p.save(out)
        print(f"wrote {out}")


def calibrate(n: int = 120, seed: int = 0, kinds=None):
    """Per capture kind and severity on ``n`` training-fold photos: the share of photos whose
    degraded version loses its face, and mean 1 − cos(clean, degraded) of the faces kept
    (the crop family's footing: 0.06–0.10 at s = 1)."""
    from qmag_core.quality.degrade import CAPTURE_KINDS, degrade_photo
    from qmag_core.vision.align import FaceDetector, NoFaceError, detect_and_align
    from qmag_core.vision.images import load_image

    enc = load_encoder("builtin-raw", device="cpu")
    det = FaceDetector()
    train_paths = split_paths()["train"]
    paths = train_paths[:: max(1, len(train_paths) // n)][:n]

    def unit_of(img):  # the pipeline's detect -> choose (best) -> align, then encode
        try:
            a = detect_and_align(img, det, enc.spec, face="best")
        except NoFaceError:
            return None, None
        e = enc.embed(a.crop[None])[0]
        return e / np.linalg.norm(e), a.face.landmarks

    base = []
    for p in paths:
        img = load_image(PHOTOS / p)
        u, lm = unit_of(img)
        if u is not None:
            base.append((img, u, lm))
    print(
        f"{len(base)} photos (folds 1-3); per severity 0.25 / 0.5 / 0.75 / 1: face lost %, mean 1 - cos of kept faces"
    )
    for kind in kinds or CAPTURE_KINDS:
        cells = []
        for sv in (0.25, 0.5, 0.75, 1.0):
            rng = np.random.default_rng(seed)
            lost, d = 0, []
            for img, u, lm in base:
                v, _ = unit_of(degrade_photo(img, kind, sv, rng, landmarks=lm))
                if v is None:
                    lost += 1
                else:
                    d.append(1 - float(u @ v))
            cells.append(f"{100 * lost / len(base):4.0f}% {np.mean(d) if d else np.nan:.3f}")
        print(f"  {kind:12s} " + " | ".join(cells), flush=True)


def spearman(seed: int = 0):
    """Spearman(q, −severity) on the LFW dev folds 5–7 crops (persons no head saw), each clean
    and once per crop-level kind at a seeded severity U(0.1, 1), pooled and per kind, for
    the shipped head, the MagFace-loss head and the raw descriptor length."""
    from scipy.stats import spearmanr

    from qmag_core.encoders import MAGFACE_HEAD
    from qmag_core.quality.degrade import KINDS, degrade
    from qmag_core.quality.head import backbone_directions, backbone_features, head_quality, load_quality_head
    from qmag_core.vision.align import FaceDetector, NoFaceError, detect_and_align

    enc = load_encoder("builtin-raw", device="cpu")
    pairs = read_lfw_pairs(SHARED / "lfw" / "pairs_dev.txt")
    m = np.isin(pairs.fold, TEST_FOLDS)
    paths = sorted(set(pairs.path1[m].tolist()) | set(pairs.path2[m].tolist()))
    det, rng = FaceDetector(), np.random.default_rng(100 + seed)
    feats, sev, kind = [], [], []
    for k in range(0, len(paths), 64):
        batch = []
        for p in paths[k : k + 64]:
            try:
                crop = detect_and_align(str(SHARED / "lfw" / "images" / p), det, enc.spec).crop
            except NoFaceError:
                continue
            batch.append(crop)
            sev.append(0.0)
            kind.append("")  # noqa: E702
            for kd in KINDS:
                sv = float(rng.uniform(0.1, 1.0))
                batch.append(degrade(crop, kd, sv, rng))
                sev.append(sv)
                kind.append(kd)  # noqa: E702
        feats.append(backbone_features(enc, np.stack(batch), kind="multi"))
    f, sev, kind = np.concatenate(feats), np.asarray(sev), np.asarray(kind)
    qs = {"raw descriptor length": np.linalg.norm(backbone_directions(enc, f), axis=1)}
    for name, path in (("utility head (shipped)", BUILTIN_HEAD), ("MagFace-loss head", MAGFACE_HEAD)):
        qs[name] = head_quality(load_quality_head(path)[0], f)
    print(f"{int((kind == '').sum())} LFW folds 5-7 crops, clean + one per kind; Spearman(q, -severity)")
    print(f"{'q':<26}{'pooled':>8}" + "".join(f"{k:>11}" for k in KINDS))
    for name, q in qs.items():
        row = [spearmanr(q, -sev)[0]] + [
            spearmanr(q[(kind == k) | (kind == "")], -sev[(kind == k) | (kind == "")])[0] for k in KINDS
        ]
        print(f"{name:<26}{row[0]:>8.3f}" + "".join(f"{v:>11.2f}" for v in row[1:]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=("both", "crop", "capture"), default="both")
    ap.add_argument("--degraded", type=int, default=2, help="seeded degraded versions per photo and family")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="head file (default: not written unless --write)")
    ap.add_argument("--write", action="store_true", help=f"ship it: write {BUILTIN_HEAD} (with --params: builtin.json)")
    ap.add_argument(
        "--params",
        choices=("consistent", "official"),
        default=None,
        help="train QMagFace α/β for the shipped head instead of a head",
    )
    ap.add_argument("--calibrate", action="store_true", help="print the capture family's severity calibration")
    ap.add_argument("--kinds", nargs="*", help="with --calibrate: only these capture kinds")
    ap.add_argument("--n-photos", type=int, default=120, help="with --calibrate: photos of folds 1-3")
    ap.add_argument("--spearman", action="store_true", help="Spearman(q, -severity) on folds 5-7 crops, crop family")
    a = ap.parse_args(argv)
    t0 = time.time()
    if a.calibrate:
        calibrate(a.n_photos, seed=a.seed, kinds=a.kinds)
        return 0
    if a.spearman:
        spearman(a.seed)
        return 0
    if a.params:
        train_params(a.params, a.seed, a.write, a.degraded)
        return 0
    fit, meta = train(a.family, a.degraded, a.seed)
    print(
        f"{a.family}: {fit.n_train} training + {fit.n_val} validation samples; λ = {fit.lam:g}; validation "
        f"Spearman(pred, target) by λ: "
        + ", ".join(f"{k:g}: {v:.3f}" for k, v in fit.val_spearman.items())
        + f"; {time.time() - t0:.0f} s"
    )
    out = BUILTIN_HEAD if a.write else a.out
    if out:
        save_quality_head(fit.head, out, meta)
        print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
