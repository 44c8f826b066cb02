#!/usr/bin/env bash
# Fresh-venv check of the full install from a non-editable build: `pip install
# .[vision,app]` (pins from requirements.txt as constraints), then every `qmag` command
# on real photos, and the dashboard run from a copy of app.py, views/, studio/ and
# sample_data/ outside the source tree, so qmag_core comes from site-packages.
# Downloads torch (several GB) unless pip's cache has it.  Usage:
#     bash tools/check_full_install.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
venv=${1:-$work/venv}
python -m venv "$venv"
grep -E '^(torch|torchvision|facenet-pytorch)==' requirements.txt >"$work/constraints.txt"
"$venv/bin/pip" install -q --disable-pip-version-check -c "$work/constraints.txt" ".[vision,app]"
py="$venv/bin/python"
qmag="$venv/bin/qmag"
faces="$repo/sample_data/faces/deepface"
cd "$work"  # nothing below may import from the checkout
"$py" -c "import qmag_core, sys; assert '$repo' not in qmag_core.__file__, qmag_core.__file__"
"$qmag" --help >/dev/null
"$qmag" compare "$faces/img1.jpg" "$faces/img2.jpg" "$faces/couple.jpg" --face best | tee compare.txt
grep -q "img1.jpg" compare.txt
"$qmag" embed --images "$faces" --out emb.npz >/dev/null
"$py" -c "import numpy as np; z = np.load('emb.npz'); assert z['ok'].sum() >= 20, z['ok'].sum()"
"$qmag" evaluate --images "$faces" --pairs "$faces/master.csv" --json report.json >/dev/null
"$py" -c "import json; r = json.load(open('report.json')); assert r['pairs_report']['n_pairs'] > 0, r['pairs_report']"
"$qmag" explain "$faces/img1.jpg" --method occlusion --out plq.png >/dev/null
test -s plq.png
# the dashboard: AppTest of each page from a copy of the app files, core from site-packages
mkdir app && cp -r "$repo"/app.py "$repo"/views "$repo"/studio "$repo"/sample_data "$repo"/assets app/
"$py" - <<'PY'
from streamlit.testing.v1 import AppTest

at = AppTest.from_file("app/app.py", default_timeout=300).run()
assert not at.exception, [e.message for e in at.exception]
assert any(m.label.startswith("quality") for m in at.metric), "compare page shows no quality"
for page in ("dataset", "train", "quality"):
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, (page, [e.message for e in at.exception])
    assert at.title and not at.error, (page, [e.value for e in at.error])
print("dashboard pages OK")
PY
echo "full install OK ($venv, $(du -sh "$venv" | cut -f1))"
