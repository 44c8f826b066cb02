"""Resource bounds on hostile-size input, each measured in a fresh process.

* peak memory (VmHWM) of decoding a 79-megapixel JPEG with `load_image` (downscaled
  once while decoding) against a full decode of the same file;
* bytes of figure JSON for a 14-megapixel photo (`face_overlay`, sent as a JPEG at
  display size instead of the JSON of every pixel);
* hostile tables given to `qmag evaluate` (a header of 1,000,000 columns, a line of
  10,000,000 characters, 1,000,000 rows of garbage as scores CSV, pairs CSV and
  feat.list): exit status, wall time and peak memory of the process (goal: exit 2 in
  <= 10 s and <= 500 MB);
* hostile models and sets (bench/hostile.py): an ONNX graph of 1 kB naming 2.25 GiB of
  external weights, one whose metadata dims are text or lie, a .bin whose issame list
  holds itself or 2**40 nested booleans, an IJB meta file with an id beyond int64 or a
  2,000,000-character line, a quality scale with NaN band edges (goal: exit 2 in
  <= 10 s and <= 1 GB).

    python -m bench.bench_limits [--tables-only | --hostile-only]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

PEAK = "int([ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1])"
DECODERS = {
    "load_image (downscaled while decoding)": "from qmag_core.vision.align import load_image\na = load_image(P)\n",
    "full decode (PIL + numpy copy)": (
        "from PIL import Image\nimport numpy as np\nim = Image.open(P); im.load()\n"
        "a = np.asarray(im.convert('RGB')).copy()\n"
    ),
}


def peak_mib(code: str, path: Path) -> tuple[float, str]:
    src = f"P = {str(path)!r}\n{code}print({PEAK} / 1024, a.shape)"
    out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, cwd=str(ROOT), check=True)
    mib, shape = out.stdout.split(" ", 1)
    return float(mib), shape.strip()


WRAP = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run([sys.executable, '-m', 'qmag_core', *sys.argv[1:]], capture_output=True, text=True)\n"
    "dt = time.perf_counter() - t\n"
    "print(r.returncode, f'{dt:.2f}', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
    "r.stderr.strip().splitlines()[-1][:90] if r.stderr.strip() else '')\n"
)


def hostile_tables(d: Path) -> dict[str, list[str]]:
    """The files and the command arguments that read them."""
    rng = np.random.default_rng(0)
    (d / "wide.csv").write_text(",".join(f"c{k}" for k in range(1_000_000)) + "\n1\n")
    (d / "long.csv").write_text("s,q1,q2,label\n" + "9" * 10_000_000 + ",1,1,1\n")
    n = 1_000_000
    s, q = rng.random(n), rng.random(n) * 100
    with open(d / "garbage_scores.csv", "w") as f:
        f.write("s,q1,q2,label\n")
        f.writelines(f"{a:.6f},x{k},{b:.2f},maybe\n" for k, (a, b) in enumerate(zip(s, q, strict=True)))
    with open(d / "garbage_pairs.csv", "w") as f:
        f.write("path1,path2,label\n")
        f.writelines(f"a{k}.jpg,b{k}.jpg,perhaps\n" for k in range(n))
    with open(d / "garbage_feat.list", "w") as f:
        f.writelines(f"img{k}.jpg 0.1 0.2 zz\n" for k in range(n))
    return {
        "scores CSV, header of 1,000,000 columns": ["evaluate", "--scores", str(d / "wide.csv")],
        "scores CSV, a 10,000,000-character line": ["evaluate", "--scores", str(d / "long.csv")],
        "scores CSV, 1,000,000 rows of garbage": ["evaluate", "--scores", str(d / "garbage_scores.csv")],
        "pairs CSV, 1,000,000 rows of garbage": [
            "evaluate",
            "--images",
            str(d),
            "--pairs",
            str(d / "garbage_pairs.csv"),
        ],
        "feat.list, 1,000,000 rows of garbage": [
            "evaluate",
            "--features",
            str(d / "garbage_feat.list"),
            "--pairs",
            str(d / "garbage_pairs.csv"),
        ],
    }


def hostile_models(d: Path) -> dict[str, list[str]]:
    """Hostile models and sets (bench/hostile.py) and the commands that read them."""
    import json

    from bench.hostile import forged_onnx, self_referencing_bin, shipped_meta
    from qmag_core.quality.scale import SCALE_DIR

    face = str(ROOT / "sample_data" / "faces" / "deepface" / "img1.jpg")
    with open(d / "weights.bin", "wb") as fh:
        fh.truncate(2_415_919_104)  # sparse
    forged_onnx(d / "external.onnx", {}, external=("weights.bin", 1536))
    forged_onnx(d / "text_dim.onnx", {**shipped_meta(), "qmag.dim": "abc"})
    forged_onnx(d / "lying_dim.onnx", {**shipped_meta(), "qmag.dim": "512"})
    self_referencing_bin(d / "self.bin")
    self_referencing_bin(d / "nested.bin", depth=40)
    for name, line in (("int", "1.jpg 99999999999999999999999 1\n"), ("line", "1.jpg 1 1 " + "x" * 2_000_000 + "\n")):
        (d / name / "meta").mkdir(parents=True)
        (d / name / "meta" / "x_face_tid_mid.txt").write_text(line)
        (d / name / "meta" / "x_template_pair_label.txt").write_text("1 1 1\n")
    scale = json.loads((SCALE_DIR / "builtin.json").read_text())
    scale["edges"][0] = float("nan")
    (d / "nan_scale.json").write_text(json.dumps(scale))
    return {
        "ONNX 1 kB naming 2.25 GiB external data": ["compare", face, face, "--onnx", str(d / "external.onnx")],
        "ONNX metadata dim 'abc'": ["compare", face, face, "--onnx", str(d / "text_dim.onnx")],
        "ONNX metadata dim 512, output 128": ["compare", face, face, "--onnx", str(d / "lying_dim.onnx")],
        ".bin, issame list holding itself": ["evaluate", "--bin", str(d / "self.bin")],
        ".bin, 2**40 nested booleans": ["evaluate", "--bin", str(d / "nested.bin")],
        "IJB meta, template id beyond int64": ["evaluate", "--ijb", str(d / "int")],
        "IJB meta, a 2,000,000-character line": ["evaluate", "--ijb", str(d / "line")],
        "quality scale, NaN band edge": ["check", face, "--scale", str(d / "nan_scale.json")],
    }


def run_tables(cases=hostile_tables, title: str = "hostile tables, qmag evaluate") -> None:
    import platform

    print(f"{title} as a process ({platform.machine()}, {os.cpu_count()} cores):")
    with tempfile.TemporaryDirectory() as d:
        for name, args in cases(Path(d)).items():
            out = subprocess.run([sys.executable, "-c", WRAP, *args], capture_output=True, text=True, cwd=str(ROOT))
            rc, sec, kib, msg = out.stdout.strip().split(" ", 3)
            print(f"  {name:<42} exit {rc}  {float(sec):5.2f} s  {int(kib) / 1024:6.0f} MiB   {msg}")


def main() -> int:
    if "--hostile-only" not in sys.argv:
        run_tables()
    if "--tables-only" not in sys.argv:
        run_tables(hostile_models, "hostile models and sets, qmag")
    if "--tables-only" in sys.argv or "--hostile-only" in sys.argv:
        return 0
    from PIL import Image

    with tempfile.TemporaryDirectory() as d:
        big = Path(d) / "big.jpg"
        Image.new("RGB", (8900, 8900), (120, 100, 90)).save(big, "JPEG", quality=50)
        print(f"79-megapixel JPEG ({big.stat().st_size / 1e6:.1f} MB file), peak process memory (VmHWM):")
        for name, code in DECODERS.items():
            mib, shape = peak_mib(code, big)
            print(f"  {name:<40} {mib:7.0f} MiB   array {shape}")
    from studio.face_figures import face_overlay

    photo = np.random.default_rng(0).integers(0, 256, (3264, 4352, 3), dtype=np.uint8)  # 14 MP
    fig = face_overlay(photo, [1000, 800, 2000, 2200], np.full((5, 2), 1500.0))
    print(
        f"14-megapixel photo (random pixels, the worst case for JPEG) in a figure: "
        f"{len(fig.to_json()) / 1e3:.0f} kB of JSON"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
