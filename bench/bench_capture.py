"""Quality where capture varies: the capture-level cross-quality protocol.

LFW-dev original photos (../shared/data/lfw_photos), identity-disjoint by fold:
folds 1–3 train, fold 4 validation (selects every recipe), folds 5–7 test (reported).
Test pairs: the dev pairs of folds 5–7 with the second photo of each pair degraded as
a whole photograph *before* detection (qmag_core.degrade.degrade_photo: a capture kind
drawn per pair, severity U(0.5, 1)), seeded.  Pairs whose degraded photo yields no face
count as non-matches and are discarded first.  EDC ratio = FNMR at the full set's EER
threshold after discarding the 20% lowest-quality pairs, over the median FNMR of 200
random discards of the same size.

Quality measures compared: the shipped q (MagFace head), the model-free baselines
(raw descriptor length, sharpness, MTCNN probability, inter-eye distance) and candidate
heads fitted on training persons (ridge regression of a utility target on the
quality features), one per training family (crop-level only, capture-level only,
both), with the ridge strength chosen on validation persons.

    python bench/bench_capture.py [--n-train 800] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qmag_core import metrics as M  # noqa: E402
from qmag_core.align import FaceDetector, align, choose_face, load_image  # noqa: E402
from qmag_core.data import read_lfw_pairs  # noqa: E402
from qmag_core.degrade import CAPTURE_KINDS, KINDS, degrade, degrade_photo  # noqa: E402
from qmag_core.encoders import load_encoder  # noqa: E402
from qmag_core.quality import inter_eye_distance, sharpness  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
PHOTOS = SHARED / "lfw_photos" / "images"
OUT = ROOT / "bench" / "out"


class Pipeline:
    """detect (best rule) → align → encode, returning everything a quality measure needs."""

    def __init__(self):
        self.enc = load_encoder("builtin", device="cpu")
        self.det = FaceDetector()
        self.net = self.enc.net

    def run(self, photos: list[np.ndarray]) -> dict:
        faces = []
        for k in range(0, len(photos), 64):
            faces += self.det.detect_batch(photos[k:k + 64])
        ok = np.array([bool(f) for f in faces])
        crops, prob, ied, lms = [], [], [], []
        for im, fs in zip(photos, faces):
            if not fs:
                continue
            f = fs[choose_face(fs, (im.shape[1], im.shape[0]))]
            crops.append(align(im, f.landmarks, self.enc.spec).crop)
            prob.append(f.score)
            ied.append(float(inter_eye_distance(f.landmarks)[0]))
            lms.append(f.landmarks)
        return {"ok": ok, **self.encode(np.stack(crops) if crops else np.zeros((0, 150, 150, 3), np.uint8)),
                "prob": np.array(prob), "ied": np.array(ied), "landmarks": np.array(lms)}

    def encode(self, crops: np.ndarray) -> dict:
        import torch

        unit, q, raw, feats = [], [], [], []
        with torch.inference_mode():
            for k in range(0, len(crops), 64):
                x = self.enc.tensor(crops[k:k + 64])
                f = self.net.backbone.quality_features(x)
                d = self.net.backbone.fc(f[:, -self.net.backbone.fc.in_features:])
                qq = self.net.head(f.float()).norm(dim=1)
                r = d.norm(dim=1)
                unit.append((d / r[:, None]).numpy()); q.append(qq.numpy()); raw.append(r.numpy())  # noqa: E702
                feats.append(f.numpy())
        cat = (lambda a, d: np.concatenate(a) if a else np.zeros((0,) + d))
        return {"unit": cat(unit, (128,)), "q": cat(q, ()), "raw": cat(raw, ()), "feats": cat(feats, (768,)),
                "sharp": sharpness(crops) if len(crops) else np.zeros(0)}


def _scatter(res: dict, key: str, fill=np.nan) -> np.ndarray:
    """Per-photo values of ``key`` (failed photos: ``fill``)."""
    v = res[key]
    out = np.full((res["ok"].size,) + v.shape[1:], fill, dtype=np.float64)
    out[res["ok"]] = v
    return out


def training_samples(pipe: Pipeline, paths, clean: dict, family: str, n_deg: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Quality features and utility targets (cosine to the same photo's clean embedding)
    of ``n_deg`` degraded versions per photo of ``family`` ('crop', 'capture')."""
    cu = _scatter(clean, "unit")
    lms = _scatter(clean, "landmarks")
    keep = np.flatnonzero(clean["ok"])
    if family == "crop":
        crops = []
        for k in keep:
            im = load_image(PHOTOS / paths[k])
            base = align(im, lms[k], pipe.enc.spec).crop
            for _ in range(n_deg):
                crops.append(degrade(base, KINDS[int(rng.integers(len(KINDS)))], rng.uniform(0.1, 1.0), rng))
        r = pipe.encode(np.stack(crops))
        src = np.repeat(keep, n_deg)
        return np.r_[_scatter(clean, "feats")[keep], r["feats"]], np.r_[np.ones(keep.size), (r["unit"] * cu[src]).sum(1)]
    photos, src = [], []
    for k in keep:
        im = load_image(PHOTOS / paths[k])
        for _ in range(n_deg):
            kind = CAPTURE_KINDS[int(rng.integers(len(CAPTURE_KINDS)))]
            photos.append(degrade_photo(im, kind, rng.uniform(0.1, 1.0), rng, landmarks=lms[k]))
            src.append(k)
    r = pipe.run(photos)
    src = np.array(src)[r["ok"]]
    return np.r_[_scatter(clean, "feats")[keep], r["feats"]], np.r_[np.ones(keep.size), (r["unit"] * cu[src]).sum(1)]


def fit_ridge(X, y, Xv, yv, lambdas=(1e-2, 1e-1, 1, 10, 100)):
    """Standardised ridge regression, λ chosen by Spearman on validation samples."""
    from scipy.stats import spearmanr

    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z, Zv = (X - mu) / sd, (Xv - mu) / sd
    best = None
    for lam in lambdas:
        w = np.linalg.solve(Z.T @ Z + lam * len(Z) * np.eye(Z.shape[1]), Z.T @ (y - y.mean()))
        rho = spearmanr(Zv @ w, yv)[0]
        if best is None or rho > best[0]:
            best = (rho, lam, w)
    rho, lam, w = best
    return (lambda F: ((F - mu) / sd) @ w + y.mean()), lam, rho


def edc_ratio(s, y, qual, failed_y, thr, seed=0, at=0.2):
    s_all, y_all, q_all = M.with_failures(s, y, failed_y, qual)
    e = M.edc(s_all, y_all, q_all, threshold=thr, discard=(0.0, at), n_random=200, random_state=seed)
    return float(e.fnmr[1] / e.fnmr_random_median[1]), float(e.fnmr[0]), float(e.fnmr[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-deg", type=int, default=2, help="degraded versions per training photo and family")
    ap.add_argument("--max-train", type=int, default=900, help="training photos (folds 1-3), seeded subset")
    ap.add_argument("--max-val", type=int, default=400, help="validation photos (fold 4)")
    ap.add_argument("--limit-test", type=int, default=None, help="only the first N test pairs (smoke run)")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
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
    drng = np.random.default_rng(a.seed + 1000)
    kinds, sevs, deg_photos = [], [], []
    for b in p2:
        kind = CAPTURE_KINDS[int(drng.integers(len(CAPTURE_KINDS)))]
        sev = float(drng.uniform(0.5, 1.0))
        lm = lms[tix[b]] if np.isfinite(lms[tix[b]]).all() else None
        deg_photos.append(degrade_photo(load_image(PHOTOS / b), kind, sev, drng, landmarks=lm))
        kinds.append(kind); sevs.append(sev)  # noqa: E702
    deg = pipe.run(deg_photos)
    kinds, sevs = np.array(kinds), np.array(sevs)
    i1 = np.array([tix[p] for p in p1])
    ok = clean["ok"][i1] & deg["ok"]
    print(f"test: {len(tpaths)} photos, {test.sum()} pairs; degraded photo without a face: {(~deg['ok']).sum()} "
          f"({100 * (~deg['ok']).mean():.1f}%); {time.perf_counter() - t0:.0f} s")
    cu1 = _scatter(clean, "unit")[i1]
    du = _scatter(deg, "unit")
    s = np.where(ok, (cu1 * du).sum(1), np.nan)
    failed_y = y[~ok]
    s_ok, y_ok = s[ok], y[ok]
    s_all, y_all, _ = M.with_failures(s_ok, y_ok, failed_y)
    thr = M.eer(s_all[y_all], s_all[~y_all]).threshold
    # name -> (per-photo value of the clean test photos, of the degraded photos)
    measures = {name: (_scatter(clean, key), _scatter(deg, key)) for name, key in (
        ("q (shipped MagFace head)", "q"), ("raw descriptor length", "raw"), ("sharpness (Laplacian var.)", "sharp"),
        ("MTCNN probability", "prob"), ("inter-eye distance (px)", "ied"))}

    # ---- candidate heads: ridge on quality features, utility target; train folds 1-3, select on fold 4
    def paths_of(folds):
        m = np.isin(pairs.fold, folds)
        return sorted(set(pairs.path1[m].tolist()) | set(pairs.path2[m].tolist()))

    tr_paths = paths_of([0, 1, 2])
    if len(tr_paths) > a.max_train:
        tr_paths = sorted(rng.choice(tr_paths, a.max_train, replace=False).tolist())
    va_paths = paths_of([3])[:a.max_val]
    tr_clean = pipe.run([load_image(PHOTOS / p) for p in tr_paths])
    va_clean = pipe.run([load_image(PHOTOS / p) for p in va_paths])
    data = {}
    for fam in ("crop", "capture"):
        data[fam] = (training_samples(pipe, tr_paths, tr_clean, fam, a.n_deg, np.random.default_rng(a.seed + 7)),
                     training_samples(pipe, va_paths, va_clean, fam, a.n_deg, np.random.default_rng(a.seed + 8)))
    print(f"training samples: crop {len(data['crop'][0][1])}, capture {len(data['capture'][0][1])}; "
          f"{time.perf_counter() - t0:.0f} s")
    feats2 = _scatter(deg, "feats")
    for name, fams in (("crop family only", ["crop"]), ("capture family only", ["capture"]),
                       ("both families", ["crop", "capture"])):
        X = np.concatenate([data[f][0][0] for f in fams])
        yy = np.concatenate([data[f][0][1] for f in fams])
        Xv = np.concatenate([data[f][1][0] for f in fams])
        yv = np.concatenate([data[f][1][1] for f in fams])
        predict, lam, rho = fit_ridge(X, yy, Xv, yv)
        qc = np.where(clean["ok"], predict(np.nan_to_num(_scatter(clean, "feats"))), np.nan)
        qd = np.where(deg["ok"], predict(np.nan_to_num(feats2)), np.nan)
        measures[f"utility ridge, {name} (λ={lam:g}, val ρ={rho:.2f})"] = (qc, qd)

    from scipy.stats import spearmanr

    print(f"\nEDC on capture-degraded cross-quality pairs (folds 5-7, {len(s)} pairs, {failed_y.size} failed "
          f"first), EER threshold {thr:.4f}; FNMR at 0% = {100 * edc_ratio(s_ok, y_ok, s_ok, failed_y, thr)[1]:.2f}%")
    thr_ok = M.eer(s_ok[y_ok], s_ok[~y_ok]).threshold
    print("ratio: failures counted and discarded first (the protocol); ratio w/o: failures dropped, EER threshold "
          f"of the rest ({thr_ok:.4f}) — how well a measure ranks the pairs that kept their faces")
    print(f"{'quality measure':<58}{'FNMR@20%':>10}{'ratio':>8}{'ratio w/o':>11}{'Spearman(q, -severity)':>24}")
    for name, (vc, vd) in measures.items():
        pair_q = np.minimum(vc[i1], vd)
        r, _, f20 = edc_ratio(s_ok, y_ok, pair_q[ok], failed_y, thr, seed=a.seed)
        r_wo = edc_ratio(s_ok, y_ok, pair_q[ok], failed_y[:0], thr_ok, seed=a.seed)[0]
        # pooled over the clean test photos (severity 0) and the degraded ones that kept a face
        vals = np.r_[vc[clean["ok"]], vd[deg["ok"]]]
        sev = np.r_[np.zeros(int(clean["ok"].sum())), sevs[deg["ok"]]]
        rho = spearmanr(vals, -sev)[0]
        print(f"{name:<58}{100 * f20:>9.2f}%{r:>8.2f}{r_wo:>11.2f}{rho:>24.2f}")
    # ---- QMagFace vs cosine on these pairs: shipped α/β (and q), failures counted
    from qmag_core.compare import default_params

    p = default_params("builtin")
    q_pair = np.minimum(_scatter(clean, "q")[i1], _scatter(deg, "q"))
    s_hat = p.score(s_ok, q_pair[ok])
    sa, ya, _ = M.with_failures(s_ok, y_ok, failed_y)
    sb, _, _ = M.with_failures(s_hat, y_ok, failed_y)
    folds = np.r_[pairs.fold[test][ok], pairs.fold[test][~ok]]
    print(f"\nQMagFace (shipped α={p.alpha:.4g}, β={p.beta:.4g}, {p.mode}) − cosine, failures counted, paired "
          "bootstrap 1,000 resamples, 95% CI:")
    for d in M.paired_bootstrap(ya, sa, sb, fmrs=(1e-2,), folds=folds, n_boot=1000, random_state=a.seed):
        print(f"  {d.metric:<16} {100 * d.a:7.3f}% → {100 * d.b:7.3f}%  Δ {100 * d.diff:+.3f} pt "
              f"[{100 * d.lo:+.3f}, {100 * d.hi:+.3f}]")
    print(f"\nrandom discard ratio is 1.00 by construction; total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
