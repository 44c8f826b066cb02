"""CPU throughput of the image pipeline (images/s): detection + alignment alone, the
encoder alone, and end to end (decode → detect → align → encode) at batch 32.
Target: end to end ≥ 0.8× the slower stage alone.  Needs ../shared/data/lfw.

    python bench/bench_embed.py [--n 512] [--encoder builtin]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from qmag_core.encoders import load_encoder
from qmag_core.pipeline.embed import embed_files
from qmag_core.vision.align import FaceDetector, align
from qmag_core.vision.images import list_images, load_image

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "images"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--encoder", default="builtin")
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    if not LFW.is_dir():
        sys.exit(f"needs {LFW}")
    paths = list_images(LFW)[:: max(1, 9502 // a.n)][: a.n]
    enc = load_encoder(a.encoder, device="cpu")
    det = FaceDetector()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); {len(paths)} LFW images 160x160; batch {a.batch}"
    )
    imgs = [load_image(LFW / p) for p in paths]
    det.detect_batch(imgs[:4])  # warm-up
    t0 = time.perf_counter()
    crops = []
    for k in range(0, len(imgs), a.batch):
        chunk = imgs[k : k + a.batch]
        for im, fs in zip(chunk, det.detect_batch(chunk), strict=True):
            if fs:
                crops.append(align(im, fs[0].landmarks, enc.spec).crop)
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
