#!/usr/bin/env bash
# Fresh-venv check of the light install: `pip install .[onnx,app]` (no torch) runs
# compare, embed, evaluate, explain --method occlusion and check on real photos and the
# dashboard's pages (AppTest, with a photo uploaded to the Compare page), and says what
# needs torch instead of failing.  Prints the venv size.
#
# Usage: bash tools/check_light_install.sh [OUT_DIR]
#   OUT_DIR (default: a temporary folder) receives imgs/ (the photos used), embed.npz,
#   report.json and venv_mb.txt, which tests/test_light_install.py compares with the
#   torch pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${1:-$(mktemp -d)}
mkdir -p "$out"
venv=$(mktemp -d)/venv
photos=$repo/../shared/data/lfw_photos
[ -d "$photos/images" ] || { echo "missing $photos (see ../shared/data/SOURCES.md)" >&2; exit 3; }
t0=$SECONDS
python -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check ".[onnx,app]" 2>"$out/pip.log" || { cat "$out/pip.log" >&2; exit 1; }
echo "installed in $((SECONDS - t0)) s"
"$venv/bin/python" - <<'PY'
import importlib.util, sys
bad = [m for m in ("torch", "torchvision", "facenet_pytorch") if importlib.util.find_spec(m)]
sys.exit(f"the light install pulled in {bad}" if bad else 0)
PY
qmag=$venv/bin/qmag
work=$(mktemp -d)
cd "$work"  # run the installed package, not the checkout
# 50 photos of the dev pairs (uncropped, some with several people) + a file that is no image
"$venv/bin/python" - "$photos" "$work/imgs" <<'PY'
import shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
lines = (src / "pairs_dev.txt").read_text().splitlines()[1:]
pairs = [l.split("\t") for l in lines[:15]] + [l.split("\t") for l in lines[300:315]]
out = []
for f in pairs:
    for n, i in ([(f[0], f[1]), (f[0], f[2])] if len(f) == 3 else [(f[0], f[1]), (f[2], f[3])]):
        p = dst / n / f"{n}_{int(i):04d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "images" / n / p.name, p)
    out.append(f)
(dst / "Not_A_Face").mkdir()
(dst / "Not_A_Face" / "Not_A_Face_0001.jpg").write_bytes(b"this is not a jpeg")
with open(dst.parent / "pairs.txt", "w") as fh:
    fh.write("1\t16\n" + "".join("\t".join(f) + "\n" for f in out[:15]))
    fh.write("Not_A_Face\t1\t1\n")  # a pair whose image fails: counted, not dropped
    fh.write("".join("\t".join(f) + "\n" for f in out[15:]) + "Not_A_Face\t1\tAJ_Lamas\t1\n")
PY
mkdir -p imgs/AJ_Lamas && cp "$photos/images/AJ_Lamas/AJ_Lamas_0001.jpg" imgs/AJ_Lamas/
a=$(ls imgs/*/*.jpg | grep -v Not_A_Face | head -1); b=$(ls imgs/*/*.jpg | grep -v Not_A_Face | sed -n 2p)
"$qmag" compare "$a" "$b"
"$qmag" embed --images imgs --out "$out/embed.npz" --no-cache
"$qmag" evaluate --images imgs --pairs pairs.txt --json "$out/report.json" --no-cache | tail -3
"$qmag" explain "$a" --out map.png --method occlusion
"$qmag" check "$a" --json "$out/check.json"
set +e
msg=$("$qmag" explain "$a" --out map.png 2>&1); rc=$?
set -e
echo "$msg"
[ "$rc" -eq 2 ] && grep -q "torch" <<<"$msg"
set +e
msg=$("$qmag" train-quality --data imgs --out head.pt 2>&1); rc=$?
set -e
echo "$msg"
[ "$rc" -eq 2 ] && grep -q "qmag-studio\[vision\]" <<<"$msg"
# the dashboard from a copy of the app outside the checkout: every page, and a photo on Compare
cp -r "$repo/app.py" "$repo/views" "$repo/studio" "$repo/sample_data" "$repo/assets" "$work/" 2>/dev/null || true
"$venv/bin/python" - "$work/app.py" "$a" "$b" <<'PY'
import sys
from streamlit.testing.v1 import AppTest
app, pa, pb = sys.argv[1:4]
at = AppTest.from_file(app, default_timeout=300).run()
assert not at.exception, [e.message for e in at.exception]
assert not at.error, [e.value for e in at.error]
qs = [m.value for m in at.metric if m.label.startswith("quality")]
assert len(qs) >= 2, [m.label for m in at.metric]
at.file_uploader[0].set_value([(f"p{k}.jpg", open(p, "rb").read(), "image/jpeg") for k, p in enumerate((pa, pb))]).run()
assert not at.exception, [e.message for e in at.exception]
df = at.dataframe[0].value
assert list(df["image 1"]) == ["p0.jpg"], df
print("compare page: q", [m.value for m in at.metric if m.label.startswith("quality")], "s", df["s"].iloc[0])
for page in ("dataset", "quality", "train", "check"):
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, (page, [e.message for e in at.exception])
    print(f"{page} page: ok, {len(at.metric)} metrics")
    if page == "check":
        assert [m.label for m in at.metric][:3] == ["verdict", "quality scale", "band"], at.metric
import importlib.util
assert importlib.util.find_spec("torch") is None
PY
size=$(du -sm "$venv" | cut -f1)
echo "light install OK in $((SECONDS - t0)) s; venv $size MB ($venv)"
echo "$size" >"$out/venv_mb.txt"
cp -r "$work/imgs" "$out/"
rm -rf "$venv" "$work"
