"""ONNX runtime vs torch, same process: images/s of ``encoder.embed`` on the same real
crops for builtin and builtin-raw (the graph shipped in the package; batch 64, CPU
threads as configured) with the largest relative difference of the embeddings; and
MTCNN (facenet-pytorch vs the numpy + onnxruntime twin) on the same uncropped LFW
photos, one photo at a time and in batches of 32 (torch: one batched network call;
ONNX: the photos in parallel threads), with the largest box/landmark difference.

    python -m bench.bench_onnx [--n 512] [--photos 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from qmag_core.encoders import load_encoder
from qmag_core.vision.align import ARCFACE_112, DLIB_150, FaceDetector, realign_aligned
from qmag_core.vision.images import load_image

ROOT = Path(__file__).resolve().parents[1]

GLINT = ROOT.parent / "shared" / "data" / "glint24"
PHOTOS = ROOT.parent / "shared" / "data" / "lfw_photos" / "images"


def detectors(n: int, repeats: int) -> None:
    imgs = [load_image(f) for f in sorted(PHOTOS.rglob("*.jpg"))[::3][:n]]
    out, rates = {}, {}
    for rt in ("torch", "onnx"):
        det = FaceDetector(runtime=rt)
        det.detect(imgs[0])  # warm-up
        for mode, fn in (
            ("one at a time", lambda d=det: [d.detect(im) for im in imgs]),
            ("batches of 32", lambda d=det: sum((d.detect_batch(imgs[k : k + 32]) for k in range(0, n, 32)), [])),
        ):
            best = np.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                got = fn()
                best = min(best, time.perf_counter() - t0)
            rates[rt, mode] = len(imgs) / best
            out.setdefault(rt, got)  # one photo at a time: facenet's boxes move with the batch
    same = all(len(a) == len(b) for a, b in zip(out["torch"], out["onnx"], strict=True))
    worst = max(
        max(np.abs(x.box - y.box).max(), np.abs(x.landmarks - y.landmarks).max())
        for a, b in zip(out["torch"], out["onnx"], strict=True)
        for x, y in zip(a, b, strict=True)
    )
    n_faces = sum(len(a) for a in out["torch"])
    print(f"MTCNN on {len(imgs)} uncropped LFW photos ({n_faces} faces), images/s (best of {repeats}):")
    for mode in ("one at a time", "batches of 32"):
        t, o = rates["torch", mode], rates["onnx", mode]
        print(f"  {mode:14s} facenet-pytorch {t:6.1f}   numpy + onnxruntime {o:6.1f}   ratio {o / t:.2f}x")
    print(f"  one at a time: same face counts {same}, max box/landmark difference {worst:.1e} px")


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
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    detectors(a.photos, a.repeats)
    files = sorted(GLINT.rglob("*.jpg"))[: a.n]
    crops = np.stack([realign_aligned(load_image(f), ARCFACE_112, DLIB_150).crop for f in files])
    print(f"{len(crops)} real crops (glint24, re-warped to dlib-150); best of {a.repeats} runs each")
    for enc_id in ("builtin", "builtin-raw"):
        enc = load_encoder(enc_id, runtime="torch", device="cpu")
        onx = load_encoder(enc_id, runtime="onnx", device="cpu")
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
