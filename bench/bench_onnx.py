"""ONNX runtime vs torch on the same real crops, same process: images/s of
``encoder.embed`` for builtin and builtin-raw (batch 64, CPU threads as configured),
and the largest relative difference of the embeddings.

    python bench/bench_onnx.py [--n 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qmag_core.align import ARCFACE_112, DLIB_150, load_image, realign_aligned  # noqa: E402
from qmag_core.encoders import load_encoder  # noqa: E402
from qmag_core.runtime_onnx import OnnxEncoder, export_onnx  # noqa: E402

GLINT = ROOT.parent / "shared" / "data" / "glint24"


def rate(fn, crops, repeats: int) -> float:
    fn(crops[:64])  # warm-up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(crops)
        best = min(best, time.perf_counter() - t0)
    return len(crops) / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    files = sorted(GLINT.rglob("*.jpg"))[: a.n]
    crops = np.stack([realign_aligned(load_image(f), ARCFACE_112, DLIB_150).crop for f in files])
    print(f"{len(crops)} real crops (glint24, re-warped to dlib-150); best of {a.repeats} runs each")
    with tempfile.TemporaryDirectory() as d:
        for enc_id in ("builtin", "builtin-raw"):
            enc = load_encoder(enc_id, device="cpu")
            export_onnx(enc, Path(d) / f"{enc_id}.onnx")
            onx = OnnxEncoder(Path(d) / f"{enc_id}.onnx", device="cpu")
            r_t = rate(lambda c, e=enc: e.embed(c, batch_size=64), crops, a.repeats)
            r_o = rate(lambda c, e=onx: e.embed(c, batch_size=64), crops, a.repeats)
            ref, got = enc.embed(crops), onx.embed(crops)
            rel = np.max(np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1))
            print(
                f"  {enc_id:12s} torch {r_t:6.1f} img/s   onnxruntime {r_o:6.1f} img/s   "
                f"ratio {r_o / r_t:.2f}x   max relative difference {rel:.1e}"
            )


if __name__ == "__main__":
    main()
