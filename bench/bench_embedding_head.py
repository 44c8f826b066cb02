"""Quality for a model without a quality head: the embedding-only utility head against
the embedding length and sharpness, on capture-degraded pairs it never saw.

The model: the shipped network as an insightface-style ONNX graph without metadata
(tools/make_insightface_model.py), opened as a third-party model.  The protocol is
bench_capture.py's: LFW-dev original photos, identity-disjoint folds (1–3 fit the head,
4 chooses its ridge strength, 5–7 test); the head is trained on **crop-level**
degradations only, so the capture-level degradations of the test pairs (the second
photo of each pair degraded as a whole photograph before detection, a kind drawn per
pair, severity U(0.5, 1)) are a family it never saw.  Pairs whose degraded photo gives
no face count as non-matches and go first.  EDC ratio = FNMR at the EER threshold after
discarding the 20% lowest-quality pairs over that of random discards; margins with a
paired bootstrap 95% CI.

    python -m bench.bench_embedding_head [--max-train 900] [--draws 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.protocol import PHOTOS, SHARED, edc_ratio, margins
from qmag_core.encoders import open_onnx
from qmag_core.evaluation import metrics as M
from qmag_core.io.pairs import read_lfw_pairs
from qmag_core.quality.baselines import sharpness
from qmag_core.quality.degrade import CAPTURE_KINDS, degrade_photo
from qmag_core.quality.embedding_head import fit_embedding_head
from qmag_core.quality.samples import utility_samples
from qmag_core.vision.align import FaceDetector, detect_and_align_batch
from qmag_core.vision.images import load_image
from tools.make_insightface_model import make

ROOT = Path(__file__).resolve().parents[1]


def run(enc, det, photos):
    """Per photo: ok, raw embedding, sharpness of the crop, landmarks."""
    aligned = []
    for k in range(0, len(photos), 32):
        aligned += detect_and_align_batch(photos[k : k + 32], det, enc.spec)
    ok = np.array([a is not None for a in aligned])
    crops = np.stack([a.crop for a in aligned if a is not None])
    e = np.full((len(photos), enc.dim), np.nan)
    e[ok] = enc.embed(crops)
    sh = np.full(len(photos), np.nan)
    sh[ok] = sharpness(crops)
    lm = [a.face.landmarks if a is not None else None for a in aligned]
    return ok, e, sh, lm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-train", type=int, default=900, help="training photos of folds 1-3 (seeded subset)")
    ap.add_argument("--draws", type=int, default=1, help="degradation draws per test pair, pooled")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    pairs = read_lfw_pairs(SHARED / "lfw_photos" / "pairs_dev.txt")
    with tempfile.TemporaryDirectory() as d:
        model = make(Path(d) / "r50.onnx")
        enc = open_onnx(model, device="cpu", quality_head=False)
        det = FaceDetector(runtime="onnx")
        # ---- the head: crop family only, folds 1-3 fit, fold 4 validation (identity-disjoint)
        rng = np.random.default_rng(a.seed)
        parts = []
        for folds, n in (([0, 1, 2], a.max_train), ([3], a.max_train // 3)):
            sel = np.isin(pairs.fold, folds)
            paths = sorted(set(pairs.path1[sel].tolist()) | set(pairs.path2[sel].tolist()))
            paths = [paths[k] for k in sorted(rng.permutation(len(paths))[:n])]
            parts.append(
                utility_samples(
                    enc,
                    [str(PHOTOS / p) for p in paths],
                    family="crop",
                    n_degraded=2,
                    seed=a.seed,
                    detector=det,
                    features="embedding",
                )
            )
        head = fit_embedding_head(parts[0], parts[1], enc.key)
        lam = f"{head.meta['lambda']:g}"
        print(
            f"head: {head.meta['n_train']} + {head.meta['n_val']} samples (crop family; folds 1-3 fit, fold 4 "
            f"validation), λ {lam}, validation Spearman {head.meta['val_spearman'][lam]:.3f}; "
            f"{time.perf_counter() - t0:.0f} s"
        )
        # ---- test: folds 5-7, the second photo of each pair degraded before detection
        test = np.isin(pairs.fold, [4, 5, 6])
        p1, p2, y = pairs.path1[test], pairs.path2[test], pairs.label[test].astype(bool)
        tpaths = sorted(set(p1.tolist()) | set(p2.tolist()))
        tix = {p: k for k, p in enumerate(tpaths)}
        ok_c, e_c, sh_c, lm_c = run(enc, det, [load_image(PHOTOS / p) for p in tpaths])
        runs = []
        for dr in range(a.draws):
            drng = np.random.default_rng(a.seed + 1000 + dr)
            deg = []
            for b in p2:
                kind = CAPTURE_KINDS[int(drng.integers(len(CAPTURE_KINDS)))]
                sev = float(drng.uniform(0.5, 1.0))
                deg.append(degrade_photo(load_image(PHOTOS / b), kind, sev, drng, landmarks=lm_c[tix[b]]))
            runs.append(run(enc, det, deg))
    ok_d = np.concatenate([r[0] for r in runs])
    e_d = np.concatenate([r[1] for r in runs])
    sh_d = np.concatenate([r[2] for r in runs])
    i1 = np.tile([tix[p] for p in p1], a.draws)
    y = np.tile(y, a.draws)
    pair_id = np.tile(np.arange(len(p1)), a.draws)
    ok = ok_c[i1] & ok_d
    u1 = e_c[i1] / np.linalg.norm(e_c[i1], axis=1, keepdims=True)
    u2 = e_d / np.linalg.norm(e_d, axis=1, keepdims=True)
    s_ok, y_ok, failed_y = np.sum(u1 * u2, 1)[ok], y[ok], y[~ok]
    s_all, y_all, _ = M.with_failures(s_ok, y_ok, failed_y)
    thr = M.eer(s_all[y_all], s_all[~y_all]).threshold
    length = np.minimum(np.linalg.norm(e_c[i1], axis=1), np.linalg.norm(e_d, axis=1))[ok]
    qh_c = np.full(len(e_c), np.nan)
    qh_c[ok_c] = head.quality(e_c[ok_c])
    qh_d = np.full(len(e_d), np.nan)
    qh_d[ok_d] = head.quality(e_d[ok_d])
    pair_qs = {
        "utility head, crop family only (embedding alone)": np.minimum(qh_c[i1], qh_d)[ok],
        "raw embedding length": length,
        "sharpness (Laplacian var.)": np.minimum(sh_c[i1], sh_d)[ok],
    }
    print(
        f"test: {len(tpaths)} photos, {len(p1)} pairs x {a.draws} draw(s), {failed_y.size} failed first, EER "
        f"threshold {thr:.4f}; {time.perf_counter() - t0:.0f} s"
    )
    print(f"{'quality measure':<52}{'FNMR@20%':>10}{'EDC ratio':>11}")
    for name, q in pair_qs.items():
        r, _, f20 = edc_ratio(s_ok, y_ok, q, failed_y, thr, seed=a.seed)
        print(f"{name:<52}{100 * f20:>9.2f}%{r:>11.2f}")
    margins(s_ok, y_ok, pair_qs, failed_y, thr, seed=a.seed, clusters=np.r_[pair_id[ok], pair_id[~ok]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
