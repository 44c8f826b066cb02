"""Resource bounds on hostile-size input, each measured in a fresh process.

* peak memory (VmHWM) of decoding a 79-megapixel JPEG with `load_image` (downscaled
  once while decoding) against a full decode of the same file;
* bytes of figure JSON for a 14-megapixel photo (`face_overlay`, sent as a JPEG at
  display size instead of the JSON of every pixel).

    python bench/bench_limits.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

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


def main() -> int:
    from PIL import Image

    with tempfile.TemporaryDirectory() as d:
        big = Path(d) / "big.jpg"
        Image.new("RGB", (8900, 8900), (120, 100, 90)).save(big, "JPEG", quality=50)
        print(f"79-megapixel JPEG ({big.stat().st_size / 1e6:.1f} MB file), peak process memory (VmHWM):")
        for name, code in DECODERS.items():
            mib, shape = peak_mib(code, big)
            print(f"  {name:<40} {mib:7.0f} MiB   array {shape}")
    import numpy as np

    from studio.figures import face_overlay

    photo = np.random.default_rng(0).integers(0, 256, (3264, 4352, 3), dtype=np.uint8)  # 14 MP
    fig = face_overlay(photo, [1000, 800, 2000, 2200], np.full((5, 2), 1500.0))
    print(
        f"14-megapixel photo (random pixels, the worst case for JPEG) in a figure: "
        f"{len(fig.to_json()) / 1e3:.0f} kB of JSON"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
