"""CPU throughput of the image pipeline (images/s): detection + alignment alone, the
encoder alone, and end to end (decode → detect → align → encode) at batch 32, each the
best of ``--repeats`` runs taken in turn.  Targets: end to end ≥ 0.8× the slower stage
alone and ≥ 0.9× the serial-stage limit 1/(1/det + 1/enc) (the two stages share the
cores).  Needs ../shared/data/lfw.

    python -m bench.bench_embed [--n 512] [--encoder builtin] [--runtime auto|torch|onnx|fast] [--onnx FILE]
                                [--repeats 3]

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
    ap.add_argument("--repeats", type=int, default=3, help="each stage timed this many times in turn; best kept")
    a = ap.parse_args()
    if not LFW.is_dir():
        sys.exit(f"needs {LFW}")
    paths = list_images(LFW)[:: max(1, 9502 // a.n)][: a.n]
    enc = open_onnx(a.onnx, device="cpu") if a.onnx else load_encoder(a.encoder, device="cpu", runtime=a.runtime)
    det = FaceDetector.for_encoder(enc)
    imgs = [load_image(LFW / p) for p in paths]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; encoder {enc.key} on "
        f"{getattr(enc, 'runtime', 'torch')}, detector on {det.runtime}; {len(paths)} LFW images "
        f"{imgs[0].shape[1]}x{imgs[0].shape[0]}; batch {a.batch}"
    )
    det.detect_batch(imgs[:4])  # warm-up

    def detect_all():
        out = []
        for k in range(0, len(imgs), a.batch):
            out += [f.crop for f in detect_and_align_batch(imgs[k : k + a.batch], det, enc.spec) if f is not None]
        return np.stack(out)

    crops = detect_all()
    enc.embed(crops[:8])
    stages = {
        "det": detect_all,
        "enc": lambda: enc.embed(crops, batch_size=a.batch),
        "e2e": lambda: embed_files(paths, LFW, enc, detector=det, batch_size=a.batch, cache_dir=None),
    }
    best = dict.fromkeys(stages, np.inf)
    for _ in range(a.repeats):  # in turn, so a slow spell of the machine hits every stage alike
        for name, fn in stages.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    t_det, t_enc, t_e2e = best["det"], best["enc"], best["e2e"]
    r_det, r_enc, r_e2e = len(imgs) / t_det, len(crops) / t_enc, len(imgs) / t_e2e
    slower = min(r_det, r_enc)
    print(f"detection + alignment alone : {r_det:7.1f} images/s")
    print(f"encoder ({enc.id}) alone     : {r_enc:7.1f} images/s")
    print(f"end to end (decode, detect, align, encode): {r_e2e:7.1f} images/s")
    limit = 1 / (1 / r_det + 1 / r_enc)
    print(f"end to end / slower stage = {r_e2e / slower:.2f}  (target >= 0.8)")
    print(
        f"end to end / serial limit 1/(1/{r_det:.1f}+1/{r_enc:.1f}) = {limit:.1f} images/s: "
        f"{r_e2e / limit:.2f}  (target >= 0.9); best of {a.repeats} runs each"
    )


if __name__ == "__main__":
    main()
