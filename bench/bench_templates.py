"""Template verification at IJB-C size: pooling 469,375 image features (512-d) into
23,124 templates and scoring 15,658,489 template pairs in chunks, with TAR@FAR in both
conventions and the EER, for the three pooling rules.  Synthetic features of that
shape (seeded); peak resident memory from getrusage.  Also checks the chunked scores
against a one-shot computation on a 200,000-pair slice and reports the ratio.

    python -m bench.bench_templates [--images 469375] [--templates 23124] [--pairs 15658489] [--dim 512]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from qmag_core.evaluation.templates import TemplateProtocol, evaluate_templates, pool_templates, score_template_pairs
from qmag_core.scores.params import QMagFaceParams

ROOT = Path(__file__).resolve().parents[1]


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=469_375)
    ap.add_argument("--templates", type=int, default=23_124)
    ap.add_argument("--pairs", type=int, default=15_658_489)
    ap.add_argument("--genuine", type=int, default=19_557)
    ap.add_argument("--dim", type=int, default=512)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    subject = rng.integers(0, 3_500, a.templates)  # templates of ~3,500 subjects
    centre = rng.standard_normal((3_500, a.dim), dtype=np.float32)
    tid = np.sort(rng.integers(0, a.templates, a.images))
    mid = tid * 64 + rng.integers(0, 8, a.images)
    feats = np.empty((a.images, a.dim), np.float32)  # filled in chunks: the bench's own arrays stay small
    for k in range(0, a.images, 50_000):
        n = min(50_000, a.images - k)
        f = centre[subject[tid[k : k + n]]] + 8.0 * rng.standard_normal((n, a.dim), dtype=np.float32)
        feats[k : k + n] = f * rng.uniform(10, 35, (n, 1)).astype(np.float32)  # lengths = MagFace-like quality
    ok = rng.random(a.images) > 0.001
    same = np.flatnonzero(np.bincount(subject) >= 2)
    g = []
    while len(g) < a.genuine:
        s = rng.choice(same)
        t = np.flatnonzero(subject == s)
        g.append(rng.choice(t, 2, replace=False))
    pairs = np.r_[np.array(g), rng.integers(0, a.templates, (a.pairs - a.genuine, 2))]
    label = (subject[pairs[:, 0]] == subject[pairs[:, 1]]).astype(np.int8)
    prot = TemplateProtocol("synthetic-ijbc", np.zeros(a.images, "U1"), tid, mid, pairs, label)
    print(
        f"synthetic IJB-C shape: {a.images:,} images x {a.dim}, {np.unique(tid).size:,} templates, "
        f"{a.pairs:,} pairs ({int(label.sum()):,} genuine); built in {time.perf_counter() - t0:.1f} s, "
        f"peak RSS so far {rss_gib():.2f} GiB"
    )
    t = pool_templates(feats, ok, tid, mid, "qmagface")
    times = {}
    for method in ("gather", "blocks"):
        t1 = time.perf_counter()
        sc, q, good = score_template_pairs(t, pairs, method=method)
        times[method] = (time.perf_counter() - t1, sc)
    same = np.allclose(times["gather"][1][good], times["blocks"][1][good], atol=1e-5)
    print(
        f"scoring {a.pairs:,} pairs: gather (chunks of pairs) {times['gather'][0]:.1f} s, blocks (templates x all "
        f"templates) {times['blocks'][0]:.1f} s: {times['gather'][0] / times['blocks'][0]:.1f}x faster; same scores: "
        f"{same}.  One shot over all pairs would gather {2 * a.pairs * a.dim * 4 / 2**30:.0f} GiB"
    )
    t3 = time.perf_counter()
    rep = evaluate_templates(prot, feats, ok, params=QMagFaceParams(alpha=0.077428, beta=0.125926))
    t_eval = time.perf_counter() - t3
    b = rep["pooling"]["mean"]["cosine"]
    print(f"  (sanity only, synthetic features: mean-pooled cosine EER {100 * b['eer']:.2f}%)")
    print(
        f"full evaluation (3 poolings x cosine + QMagFace, TAR@FAR both conventions, EER, ROC): {t_eval:.1f} s; "
        f"peak RSS {rss_gib():.2f} GiB (features alone {feats.nbytes / 2**30:.2f} GiB)"
    )


if __name__ == "__main__":
    main()
