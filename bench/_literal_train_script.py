"""The literal seed algorithm run as a script on a scores CSV (bench baseline for the CLI).

Usage: python -m bench._literal_train_script scores.csv
"""

import sys

import numpy as np
import pandas as pd

from qmag_core.scores.reference import seed_fit_line, seed_thresholds_omegas

df = pd.read_csv(sys.argv[1], comment="#")
s = df["s"].to_numpy(np.float64)
q = np.minimum(df["q1"].to_numpy(np.float64), df["q2"].to_numpy(np.float64))
y = df["label"].to_numpy()
ts, om, _, _ = seed_thresholds_omegas(s, q, y)
m, b = seed_fit_line(ts, om)
print(f"alpha={float(-b)!r} beta={float(m)!r}")
