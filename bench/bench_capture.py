"""Quality where capture varies: the capture-level cross-quality protocol.

LFW-dev original photos (../shared/data/lfw_photos), identity-disjoint by fold:
folds 1–3 train, fold 4 validation (selects every recipe), folds 5–7 test (reported).
Test pairs: the dev pairs of folds 5–7 with the second photo of each pair degraded as
a whole photograph *before* detection (qmag_core.quality.degrade.degrade_photo: a capture kind
drawn per pair, severity U(0.5, 1)), seeded; ``--draws`` independent draws per pair
(default 3), pooled.  Pairs whose degraded photo yields no face
count as non-matches and are discarded first.  EDC ratio = FNMR at the full set's EER
threshold after discarding the 20% lowest-quality pairs, over the median FNMR of 200
random discards of the same size.

Quality measures compared: the shipped q (utility head), the MagFace-loss head shipped
before it, the model-free baselines (raw descriptor length, sharpness, MTCNN
probability, inter-eye distance) and utility heads per training family (crop-level
only, capture-level only, both = the shipped recipe), each fitted on folds 1–3 persons
with the ridge strength chosen on fold 4 persons (tools/train_builtin_utility.py).

    python -m bench.bench_capture [--seed 0] [--max-train N] [--limit-test N] [--draws 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.protocol import PHOTOS, SHARED, edc_ratio, margins
from qmag_core.encoders import MAGFACE_HEAD, load_encoder
from qmag_core.evaluation import bootstrap as B
from qmag_core.evaluation import metrics as M
from qmag_core.io.pairs import read_lfw_pairs
from qmag_core.quality.baselines import inter_eye_distance, sharpness
from qmag_core.quality.degrade import CAPTURE_KINDS, degrade_photo
from qmag_core.quality.head import head_quality
from qmag_core.vision.align import FaceDetector, detect_and_align_batch
from qmag_core.vision.images import load_image

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "bench" / "out"


class Pipeline:
    """detect (best rule) → align → encode, returning everything a quality measure needs."""

    def __init__(self):
        self.enc = load_encoder("builtin", device="cpu")
        self.det = FaceDetector()
        self.net = self.enc.net

    def run(self, photos: list[np.ndarray]) -> dict:
        aligned = []
        for k in range(0, len(photos), 64):  # the pipeline's detect -> choose (best) -> align, in batches
            aligned += detect_and_align_batch(photos[k : k + 64], self.det, self.enc.spec)
        ok = np.array([a is not None for a in aligned])
        faces = [a for a in aligned if a is not None]
        crops = [a.crop for a in faces]
        prob = [a.face.score for a in faces]
        lms = [a.face.landmarks for a in faces]
        ied = [float(x) for x in inter_eye_distance(np.array(lms))] if lms else []
        return {
            "ok": ok,
            **self.encode(np.stack(crops) if crops else np.zeros((0, 150, 150, 3), np.uint8)),
            "prob": np.array(prob),
            "ied": np.array(ied),
            "landmarks": np.array(lms),
        }

    def encode(self, crops: np.ndarray) -> dict:
        import torch

        unit, q, raw, feats = [], [], [], []
        with torch.inference_mode():
            for k in range(0, len(crops), 64):
                x = self.enc.tensor(crops[k : k + 64])
                f = self.net.backbone.quality_features(x)
                d = self.net.backbone.fc(f[:, -self.net.backbone.fc.in_features :])
                qq = self.net.head(f.float()).norm(dim=1)
                r = d.norm(dim=1)
                unit.append((d / r[:, None]).numpy())
                q.append(qq.numpy())
                raw.append(r.numpy())  # noqa: E702
                feats.append(f.numpy())

        def cat(a, d):
            return np.concatenate(a) if a else np.zeros((0,) + d)

        return {
            "unit": cat(unit, (128,)),
            "q": cat(q, ()),
            "raw": cat(raw, ()),
            "feats": cat(feats, (768,)),
            "sharp": sharpness(crops) if len(crops) else np.zeros(0),
        }


def _scatter(res: dict, key: str, fill=np.nan) -> np.ndarray:
    """Per-photo values of ``key`` (failed photos: ``fill``)."""
    v = res[key]
    out = np.full((res["ok"].size,) + v.shape[1:], fill, dtype=np.float64)
    out[res["ok"]] = v
    return out


def head_q(head, feats: np.ndarray) -> np.ndarray:
    """q of a quality head on per-photo features (NaN rows stay NaN)."""
    out = np.full(len(feats), np.nan)
    ok = np.isfinite(feats).all(1)
    out[ok] = head_quality(head, feats[ok])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-deg", type=int, default=2, help="degraded versions per training photo and family")
    ap.add_argument("--max-train", type=int, default=None, help="training photos (folds 1-3), seeded subset")
    ap.add_argument("--limit-test", type=int, default=None, help="only the first N test pairs (smoke run)")
    ap.add_argument(
        "--draws",
        type=int,
        default=3,
        help="independent degradation draws per test pair, pooled (draw 0 is the default run's); the bootstrap "
        "resamples pairs with all their draws",
    )
    a = ap.parse_args(argv)
    pairs = read_lfw_pairs(SHARED / "lfw_photos" / "pairs_dev.txt")
    pipe = Pipeline()
    t0 = time.perf_counter()

    # ---- test: folds 5-7, second photo of each pair degraded before detection
    test = np.isin(pairs.fold, [4, 5, 6])
    if a.limit_test:  # a seeded subset of the test pairs (both labels)
        keep = np.random.default_rng(a.seed).choice(np.flatnonzero(test), a.limit_test, replace=False)
        test = np.isin(np.arange(test.size), keep)
    p1, p2, y = pairs.path1[test], pairs.path2[test], pairs.label[test].astype(bool)
    tpaths = sorted(set(p1.tolist()) | set(p2.tolist()))
    tix = {p: k for k, p in enumerate(tpaths)}
    clean = pipe.run([load_image(PHOTOS / p) for p in tpaths])
    lms = _scatter(clean, "landmarks")
    kinds, sevs, runs = [], [], []
    for d in range(a.draws):  # draw 0 is the protocol's; more draws pool more degraded versions of the pairs
        drng = np.random.default_rng(a.seed + 1000 + d)
        deg_photos = []
        for b in p2:
            kind = CAPTURE_KINDS[int(drng.integers(len(CAPTURE_KINDS)))]
            sev = float(drng.uniform(0.5, 1.0))
            lm = lms[tix[b]] if np.isfinite(lms[tix[b]]).all() else None
            deg_photos.append(degrade_photo(load_image(PHOTOS / b), kind, sev, drng, landmarks=lm))
            kinds.append(kind)
            sevs.append(sev)  # noqa: E702
        runs.append(pipe.run(deg_photos))
    deg = {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}
    kinds, sevs = np.array(kinds), np.array(sevs)
    n_test = len(p1)
    pair_id = np.tile(np.arange(n_test), a.draws)  # the bootstrap resamples a pair with all its draws
    p1, y, fold_t = np.tile(p1, a.draws), np.tile(y, a.draws), np.tile(pairs.fold[test], a.draws)
    i1 = np.array([tix[p] for p in p1])
    ok = clean["ok"][i1] & deg["ok"]
    print(
        f"test: {len(tpaths)} photos, {n_test} pairs x {a.draws} degradation draw(s); degraded photo without a "
        f"face: {(~deg['ok']).sum()} ({100 * (~deg['ok']).mean():.1f}%); {time.perf_counter() - t0:.0f} s"
    )
    cu1 = _scatter(clean, "unit")[i1]
    du = _scatter(deg, "unit")
    s = np.where(ok, (cu1 * du).sum(1), np.nan)
    failed_y = y[~ok]
    s_ok, y_ok = s[ok], y[ok]
    s_all, y_all, _ = M.with_failures(s_ok, y_ok, failed_y)
    thr = M.eer(s_all[y_all], s_all[~y_all]).threshold
    # name -> (per-photo value of the clean test photos, of the degraded photos)
    measures = {
        name: (_scatter(clean, key), _scatter(deg, key))
        for name, key in (
            ("q, shipped head (builtin)", "q"),
            ("raw descriptor length", "raw"),
            ("sharpness (Laplacian var.)", "sharp"),
            ("MTCNN probability", "prob"),
            ("inter-eye distance (px)", "ied"),
        )
    }

    # ---- heads: the previous MagFace-loss head and utility heads per training family (folds 1-3 fit,
    # fold 4 chooses the ridge strength: tools/train_builtin_utility.py; "both" is the shipped recipe)
    from qmag_core.quality.head import load_quality_head
    from tools.train_builtin_utility import train

    feats1, feats2 = _scatter(clean, "feats"), _scatter(deg, "feats")
    prev = load_quality_head(MAGFACE_HEAD)[0]
    measures["q, MagFace-loss head (shipped before)"] = (head_q(prev, feats1), head_q(prev, feats2))
    for fam, label in (
        ("crop", "crop family only (capture held out)"),
        ("capture", "capture family only"),
        ("both", "both families"),
    ):
        fit, _ = train(fam, a.n_deg, a.seed, max_train=a.max_train)
        measures[f"utility head, {label} (λ={fit.lam:g}, val ρ={fit.val_spearman[fit.lam]:.2f})"] = (
            head_q(fit.head, feats1),
            head_q(fit.head, feats2),
        )
    print(f"heads trained; {time.perf_counter() - t0:.0f} s")

    from scipy.stats import spearmanr

    print(
        f"\nEDC on capture-degraded cross-quality pairs (folds 5-7, {len(s)} pairs, {failed_y.size} failed "
        f"first), EER threshold {thr:.4f}; FNMR at 0% = {100 * edc_ratio(s_ok, y_ok, s_ok, failed_y, thr)[1]:.2f}%"
    )
    thr_ok = M.eer(s_ok[y_ok], s_ok[~y_ok]).threshold
    print(
        "ratio: failures counted and discarded first (the protocol); ratio w/o: failures dropped, EER threshold "
        f"of the rest ({thr_ok:.4f}) — how well a measure ranks the pairs that kept their faces"
    )
    print(f"{'quality measure':<58}{'FNMR@20%':>10}{'ratio':>8}{'ratio w/o':>11}{'Spearman(q, -severity)':>24}")
    # reference rows: what discarding the failed pairs alone gives (the rest random), and the floor
    # (an oracle that discards false non-matches first); every measure lies between these two
    rq = np.random.default_rng(a.seed + 3).random(s_ok.size)
    oracle = np.where(y_ok & (s_ok < thr), 0.0, 1.0) + 1e-3 * rq
    oracle_wo = np.where(y_ok & (s_ok < thr_ok), 0.0, 1.0) + 1e-3 * rq
    for name, qq, qw in (
        ("(failures first, rest random)", rq, rq),
        ("(oracle: false non-matches first)", oracle, oracle_wo),
    ):
        r, _, f20 = edc_ratio(s_ok, y_ok, qq, failed_y, thr, seed=a.seed)
        r_wo = edc_ratio(s_ok, y_ok, qw, failed_y[:0], thr_ok, seed=a.seed)[0]
        print(f"{name:<58}{100 * f20:>9.2f}%{r:>8.2f}{r_wo:>11.2f}{'':>24}")
    pair_qs = {}
    for name, (vc, vd) in measures.items():
        pair_q = np.minimum(vc[i1], vd)
        pair_qs[name] = pair_q[ok]
        r, _, f20 = edc_ratio(s_ok, y_ok, pair_q[ok], failed_y, thr, seed=a.seed)
        r_wo = edc_ratio(s_ok, y_ok, pair_q[ok], failed_y[:0], thr_ok, seed=a.seed)[0]
        # pooled over the clean test photos (severity 0) and the degraded ones that kept a face
        vals = np.r_[vc[clean["ok"]], vd[deg["ok"]]]
        sev = np.r_[np.zeros(int(clean["ok"].sum())), sevs[deg["ok"]]]
        rho = spearmanr(vals, -sev)[0]
        print(f"{name:<58}{100 * f20:>9.2f}%{r:>8.2f}{r_wo:>11.2f}{rho:>24.2f}")
    margins(s_ok, y_ok, pair_qs, failed_y, thr, seed=a.seed, clusters=np.r_[pair_id[ok], pair_id[~ok]])
    # ---- QMagFace vs cosine on these pairs: shipped α/β (and q), failures counted
    from qmag_core.scores.params import QMagFaceParams

    p = QMagFaceParams.shipped("builtin")
    q_pair = np.minimum(_scatter(clean, "q")[i1], _scatter(deg, "q"))
    s_hat = p.score(s_ok, q_pair[ok])
    sa, ya, _ = M.with_failures(s_ok, y_ok, failed_y)
    sb, _, _ = M.with_failures(s_hat, y_ok, failed_y)
    folds = np.r_[fold_t[ok], fold_t[~ok]]
    print(
        f"\nQMagFace (shipped α={p.alpha:.4g}, β={p.beta:.4g}, {p.mode}) − cosine, failures counted, paired "
        "bootstrap 1,000 resamples, 95% CI:"
    )
    for d in B.paired_bootstrap(ya, sa, sb, fmrs=(1e-2,), folds=folds, n_boot=1000, random_state=a.seed):
        print(
            f"  {d.metric:<16} {100 * d.a:7.3f}% → {100 * d.b:7.3f}%  Δ {100 * d.diff:+.3f} pt "
            f"[{100 * d.lo:+.3f}, {100 * d.hi:+.3f}]"
        )
    print(f"\nrandom discard ratio is 1.00 by construction; total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
