"""Interactive latency: rescoring + ROC/DET for 100,000 pairs (what a slider move costs).

Per run: ŝ with new α/β, ROC of cosine and of ŝ, both decimated to ≤ 2,000 points,
FNMR at 1e-2/1e-3/1e-4 and EER of both.  Target < 0.2 s on this machine.

    python -m bench.bench_rescore [--pairs 100000] [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from qmag_core.evaluation import metrics as M
from qmag_core.scores.scoring import qmagface_score
from qmag_core.scores.synthetic import synthetic_pairs


def rescore_and_curves(s, qm, y, alpha, beta):
    """What the dataset page does: one sorted curve per score set serves the plot,
    FNMR@FMR and EER."""
    s_hat = qmagface_score(s, qm, alpha, beta)
    out = {}
    for name, sc in (("cosine", s), ("qmagface", s_hat)):
        c = M.roc(*M.split_scores(sc, y))
        out[name] = (c.decimate(2000), c.fnmr_at_fmr(), c.eer())
    return out


def rescore_separate_sorts(s, qm, y, alpha, beta):
    """Baseline: the same numbers with each metric sorting the scores again."""
    s_hat = qmagface_score(s, qm, alpha, beta)
    out = {}
    for name, sc in (("cosine", s), ("qmagface", s_hat)):
        g, i = M.split_scores(sc, y)
        out[name] = (M.roc(g, i).decimate(2000), M.fnmr_at_fmr(g, i), M.eer(g, i))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    n_gen = a.pairs // 10
    s, q1, q2, y = synthetic_pairs(n_gen, a.pairs - n_gen, random_state=0)
    qm = np.minimum(q1, q2)
    rng = np.random.default_rng(0)
    times, base = [], []
    for _ in range(a.runs):
        alpha, beta = rng.uniform(0.05, 0.1), rng.uniform(0.1, 0.15)
        t0 = time.perf_counter()
        out = rescore_and_curves(s, qm, y, alpha, beta)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = rescore_separate_sorts(s, qm, y, alpha, beta)
        base.append(time.perf_counter() - t0)
        assert all(out[k][1:] == ref[k][1:] for k in out)  # same numbers
    pts = max(out["cosine"][0].fmr.size, out["qmagface"][0].fmr.size)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; pairs {a.pairs:,}; curve points plotted <= {pts}")
    print(
        f"rescore + ROC/DET (x2) + FNMR@FMR + EER: median {np.median(times) * 1e3:.1f} ms, "
        f"max {np.max(times) * 1e3:.1f} ms over {a.runs} runs (target < 200 ms)"
    )
    print(
        f"baseline with one sort per metric: median {np.median(base) * 1e3:.1f} ms; "
        f"speed-up x{np.median(base) / np.median(times):.2f} (same process, interleaved)"
    )


if __name__ == "__main__":
    main()
