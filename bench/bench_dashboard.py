"""Interactive latency of the dashboard: time an AppTest rerun of the Train page after the
FMR range slider moves, on a 100,000-pair dataset (target < 1 s), and of the Dataset
page when the sidebar switches between the shipped datasets (first visit: metrics,
bootstrap CIs and bands computed; later visits: cached; target <= 1 s median).  Prints
seconds and the machine.

    python -m bench.bench_dashboard [--pairs 100000] [--moves 6] [--switch-only]
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
    ap.add_argument("--switch-only", action="store_true", help="time only the dataset switches")
    a = ap.parse_args()
    switch_times()
    if a.switch_only:
        return
    n_gen = a.pairs // 10
    s, q1, q2, y = synthetic_pairs(n_gen, a.pairs - n_gen, random_state=0)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "big.csv")
        write_scores_csv(f, ScoreTable(s, q1, q2, y, np.arange(s.size) % 5))
        data = Path(f).read_bytes()
    at = AppTest.from_file(APP, default_timeout=600).run()
    at.switch_page("views/dataset.py").run()
    at.file_uploader(key="up_scores").set_value(("big.csv", data, "text/csv")).run()
    at.button(key="load_scores").click().run()
    t0 = time.perf_counter()
    at.switch_page("views/train.py").run()
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


def switch_times(rounds: int = 3) -> None:
    """Dataset page reruns when the sidebar's active dataset changes among the shipped
    score sets (numbers only: lfw-dev, lfw-dev-ext, lfw-cross-quality)."""
    at = AppTest.from_file(APP, default_timeout=600).run()
    at.switch_page("views/dataset.py").run()
    ids = ["lfw-dev-ext", "lfw-cross-quality", "lfw-dev"]
    first, later = [], []
    for r in range(rounds):
        for ds_id in ids:
            t0 = time.perf_counter()
            at.selectbox(key="w_dataset_id").set_value(ds_id).run()
            (first if r == 0 else later).append(time.perf_counter() - t0)
            assert not at.exception, at.exception
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores")
    print("dataset page, switching the active dataset (" + ", ".join(ids) + "):")
    print(f"  first visit: {', '.join(f'{x:.2f}' for x in first)} s")
    print(f"  later visits: median {np.median(later):.2f} s, max {np.max(later):.2f} s (target <= 1 s median)")


if __name__ == "__main__":
    main()
