"""Interactive latency of the dashboard: time an AppTest rerun of the Train page after the
FMR range slider moves, on a 100,000-pair dataset (target < 1 s), and of the Dataset
page after the active parameters change.  Prints seconds and the machine.

    python -m bench.bench_dashboard [--pairs 100000] [--moves 6]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from qmag_core.io.scores import ScoreTable, write_scores_csv
from qmag_core.scores.synthetic import synthetic_pairs

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--moves", type=int, default=6)
    a = ap.parse_args()
    n_gen = a.pairs // 10
    s, q1, q2, y = synthetic_pairs(n_gen, a.pairs - n_gen, random_state=0)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "big.csv")
        write_scores_csv(f, ScoreTable(s, q1, q2, y, np.arange(s.size) % 5))
        data = Path(f).read_bytes()
    at = AppTest.from_file(APP, default_timeout=600).run()
    at.switch_page("pages/dataset.py").run()
    at.file_uploader(key="up_scores").set_value(("big.csv", data, "text/csv")).run()
    at.button(key="load_scores").click().run()
    t0 = time.perf_counter()
    at.switch_page("pages/train.py").run()
    first = time.perf_counter() - t0
    sl = at.select_slider(key="w_fmr_range")
    opts = [float(o) for o in sl.options]
    times, alphas = [], []
    for k in range(a.moves):
        lo = opts[min(len(opts) - 12, 2 * k + 1)]
        t0 = time.perf_counter()
        at.select_slider(key="w_fmr_range").set_range(lo, 1e-2).run()
        times.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
        alphas.append(next(m.value for m in at.metric if m.label == "α"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; dataset {a.pairs:,} pairs (synthetic)")
    print(f"train page first render (fit + held-out evaluation): {first:.2f} s")
    print(
        f"train page rerun after moving the FMR slider: median {np.median(times):.3f} s, max {np.max(times):.3f} s "
        f"over {a.moves} moves (target < 1 s); α shown per move: {', '.join(alphas)}"
    )


if __name__ == "__main__":
    main()
