"""Cosine vs QMagFace (official and consistent trainer modes) on held-out pairs.

Each synthetic set is split in two seeded, label-stratified halves; α/β are trained on
one half and EER / FNMR@1e-3 measured on the other.  Prints a Markdown table.

    python -m bench.compare_modes
"""

from __future__ import annotations

import numpy as np

from qmag_core.evaluation import metrics as M
from qmag_core.scores import QMagFaceTrainer, qmagface_score
from qmag_core.scores.synthetic import synthetic_pairs

SETS = {
    "synthetic, imposters independent of q": dict(imposter_sd_slope=0.0),
    "synthetic, low-q imposters spread less": dict(imposter_sd=0.05, imposter_sd_slope=0.0015),
    "synthetic, low-q imposters spread more": dict(imposter_sd=0.05, imposter_sd_slope=-0.002),
    "synthetic, quantised to 0.01 (ties)": dict(quantize=0.01),
}


def pct(x):
    return f"{100 * x:.2f}%"


def main(n_gen=20000, n_imp=400000, seed=0):
    print(
        "| data (test half) | cosine EER | official EER | consistent EER | cosine FNMR@1e-3 | official "
        "FNMR@1e-3 | consistent FNMR@1e-3 |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, kw in SETS.items():
        s, q1, q2, y = synthetic_pairs(n_gen, n_imp, random_state=seed, **kw)
        qm = np.minimum(q1, q2)
        rng = np.random.default_rng(seed)
        train = np.zeros(s.size, bool)
        for lab in (0, 1):
            idx = np.flatnonzero(y == lab)
            train[rng.choice(idx, idx.size // 2, replace=False)] = True
        test = ~train
        res = {}
        g, i = M.split_scores(s[test], y[test])
        res["cosine"] = (M.eer(g, i).value, M.fnmr_at_fmr(g, i, (1e-3,))[0].fnmr)
        for mode in ("official", "consistent"):
            tr = QMagFaceTrainer(mode=mode).fit(np.c_[s, qm][train], y[train])
            sh = qmagface_score(s[test], qm[test], tr.alpha_, tr.beta_)
            g, i = M.split_scores(sh, y[test])
            res[mode] = (M.eer(g, i).value, M.fnmr_at_fmr(g, i, (1e-3,))[0].fnmr)
        print(
            f"| {name} | "
            + " | ".join(pct(res[m][0]) for m in ("cosine", "official", "consistent"))
            + " | "
            + " | ".join(pct(res[m][1]) for m in ("cosine", "official", "consistent"))
            + " |"
        )


if __name__ == "__main__":
    main()
