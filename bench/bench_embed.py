"""CPU throughput of the image pipeline (images/s): detection + alignment alone, the
encoder alone, and end to end (decode → detect → align → encode) at batch 32.
Target: end to end ≥ 0.8× the slower stage alone.  Needs ../shared/data/lfw.

    python bench/bench_embed.py [--n 512] [--encoder builtin] [--runtime auto|torch|onnx|fast] [--onnx FILE]

``--onnx FILE`` measures an ONNX model (an int8 export, a third-party model) with the
ONNX MTCNN twin; detection uses the pipeline's one detect -> choose -> align step.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from qmag_core.encoders import load_encoder, open_onnx
from qmag_core.pipeline.embed import embed_files
from qmag_core.vision.align import FaceDetector, detect_and_align_batch
from qmag_core.vision.images import list_images, load_image

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "images"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--encoder", default="builtin")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runtime", default="auto", help="load_encoder's runtime (fast: the command line's auto)")
    ap.add_argument("--onnx", default=None, help="an ONNX model file instead of --encoder")
    a = ap.parse_args()
    if not LFW.is_dir():
        sys.exit(f"needs {LFW}")
    paths = list_images(LFW)[:: max(1, 9502 // a.n)][: a.n]
    enc = open_onnx(a.onnx, device="cpu") if a.onnx else load_encoder(a.encoder, device="cpu", runtime=a.runtime)
    det = FaceDetector.for_encoder(enc)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; encoder {enc.key} on "
        f"{getattr(enc, 'runtime', 'torch')}, detector on {det.runtime}; {len(paths)} LFW images 250x250; "
        f"batch {a.batch}"
    )
    imgs = [load_image(LFW / p) for p in paths]
    det.detect_batch(imgs[:4])  # warm-up
    t0 = time.perf_counter()
    crops = []
    for k in range(0, len(imgs), a.batch):
        crops += [f.crop for f in detect_and_align_batch(imgs[k : k + a.batch], det, enc.spec) if f is not None]
    t_det = time.perf_counter() - t0
    crops = np.stack(crops)
    enc.embed(crops[:8])
    t0 = time.perf_counter()
    enc.embed(crops, batch_size=a.batch)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    embed_files(paths, LFW, enc, detector=det, batch_size=a.batch, cache_dir=None)
    t_e2e = time.perf_counter() - t0
    r_det, r_enc, r_e2e = len(imgs) / t_det, len(crops) / t_enc, len(imgs) / t_e2e
    slower = min(r_det, r_enc)
    print(f"detection + alignment alone : {r_det:7.1f} images/s")
    print(f"encoder ({enc.id}) alone     : {r_enc:7.1f} images/s")
    print(f"end to end (decode, detect, align, encode): {r_e2e:7.1f} images/s")
    print(
        f"end to end / slower stage = {r_e2e / slower:.2f}  (target >= 0.8; the stages add up: "
        f"1/(1/{r_det:.0f}+1/{r_enc:.0f}) = {1 / (1 / r_det + 1 / r_enc):.1f} images/s)"
    )


if __name__ == "__main__":
    main()
