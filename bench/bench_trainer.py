"""Official-mode trainer vs a literal loop implementation of the seed algorithm.

Same process, same 1,000,000 synthetic MagFace-like pairs (100k genuine, 900k imposter):
checks α/β are identical and prints the speed-up (target ≥ 20×).  Then the CLI end to
end (process start, CSV read, train) vs the literal loop run as a script (target ≥ 3×).

    python -m bench.bench_trainer [--pairs 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from qmag_core.io.scores import ScoreTable, write_scores_csv
from qmag_core.scores import QMagFaceTrainer
from qmag_core.scores.reference import seed_fit_line, seed_thresholds_omegas
from qmag_core.scores.synthetic import synthetic_pairs

HERE = os.path.dirname(os.path.abspath(__file__))


def best_of(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    n_gen = a.pairs // 10
    s, q1, q2, y = synthetic_pairs(n_gen, a.pairs - n_gen, random_state=0)
    q = np.minimum(q1, q2)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}"
    )
    print(f"pairs: {a.pairs:,} ({n_gen:,} genuine, {a.pairs - n_gen:,} imposter)")

    def literal():
        ts, om, _, _ = seed_thresholds_omegas(s, q, y)
        m, b = seed_fit_line(ts, om)
        return float(-b), float(m)

    def fast():
        tr = QMagFaceTrainer(mode="official", clamp_fmr=False).fit(np.c_[s, q], y)
        return tr.alpha_, tr.beta_

    t_lit, (a_l, b_l) = best_of(literal, max(1, a.repeats - 1))
    t_fast, (a_f, b_f) = best_of(fast, a.repeats)
    rel = max(abs(a_f - a_l) / abs(a_l), abs(b_f - b_l) / abs(b_l))
    print(f"literal seed loop : {t_lit:8.3f} s   alpha={a_l!r} beta={b_l!r}")
    print(f"QMagFaceTrainer   : {t_fast:8.3f} s   alpha={a_f!r} beta={b_f!r}")
    print(f"max relative difference of alpha/beta: {rel:.2e}  ({'identical to 1e-9' if rel <= 1e-9 else 'MISMATCH'})")
    print(f"speed-up (in-process): {t_lit / t_fast:.1f}x   (target >= 20x)")

    with tempfile.TemporaryDirectory() as d:
        csv = os.path.join(d, "scores.csv")
        write_scores_csv(csv, ScoreTable(s, q1, q2, y, np.full(s.size, -1)))

        def cli():
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "qmag_core",
                    "train",
                    "--scores",
                    csv,
                    "--out",
                    os.path.join(d, "p.json"),
                    "--no-clamp-fmr",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            return r.stdout

        def script():
            r = subprocess.run(
                [sys.executable, os.path.join(HERE, "_literal_train_script.py"), csv],
                capture_output=True,
                text=True,
                check=True,
            )
            return r.stdout

        t_cli, out_cli = best_of(cli, a.repeats)
        t_script, out_script = best_of(script, max(1, a.repeats - 1))
        import json

        a_c = json.load(open(os.path.join(d, "p.json")))["alpha"]
        a_s = float(re.search(r"alpha=(\S+)", out_script).group(1))
        print(f"CLI end to end    : {t_cli:8.3f} s   (python -m qmag_core train, CSV read included)")
        print(f"literal as script : {t_script:8.3f} s")
        print(f"alpha CLI vs script: {a_c!r} vs {a_s!r} (same CSV)")
        print(f"speed-up (end to end): {t_script / t_cli:.1f}x   (target >= 3x)")


if __name__ == "__main__":
    main()
