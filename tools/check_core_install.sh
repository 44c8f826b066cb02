#!/usr/bin/env bash
# Fresh-venv check of the core install: `pip install .` (no torch, no streamlit) gives a
# working `qmag` for scores, parameters and metrics, and a one-line message naming the
# extra for the commands that need a network.  Usage: bash tools/check_core_install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check .
"$venv/bin/qmag" --help >/dev/null
tmp=$(mktemp -d)
"$venv/bin/python" - "$tmp/scores.csv" <<'PY'
import sys
import numpy as np
rng = np.random.default_rng(0)
n = 4000
y = rng.random(n) < 0.2
s = np.clip(np.where(y, rng.normal(0.6, 0.15, n), rng.normal(0.05, 0.1, n)), -1, 1)
q = rng.uniform(15, 35, (n, 2))
with open(sys.argv[1], "w") as fh:
    fh.write("s,q1,q2,label\n")
    for a, b, c, d in zip(s, q[:, 0], q[:, 1], y.astype(int), strict=True):
        fh.write(f"{a:.6f},{b:.4f},{c:.4f},{d}\n")
PY
"$venv/bin/qmag" train --scores "$tmp/scores.csv" --out "$tmp/params.json"
"$venv/bin/qmag" evaluate --scores "$tmp/scores.csv" --params "$tmp/params.json" >"$tmp/report.txt"; head -2 "$tmp/report.txt"
set +e
msg=$("$venv/bin/qmag" compare a.jpg b.jpg 2>&1); rc=$?
set -e
echo "$msg"
[ "$rc" -eq 2 ] && grep -q "qmag-studio\[vision\]" <<<"$msg"
"$venv/bin/python" -c "import sys, qmag_core.cli; assert 'torch' not in sys.modules"
echo "core install OK ($venv)"
