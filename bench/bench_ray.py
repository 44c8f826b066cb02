"""Embedding throughput on the same real photos, same process, no cache: the local
engine and the Ray engine (one node, local instance), each with the torch runtime and
with the ONNX runtime (MTCNN and encoder in onnxruntime, as the light install runs);
images/s end to end (decode, detect, align, encode) and the ratio to local torch.

    python -m bench.bench_ray [--n 1000] [--cpus 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from qmag_core.encoders import load_encoder
from qmag_core.pipeline.embed import embed_files
from qmag_core.pipeline.ray import embed_files_ray

ROOT = Path(__file__).resolve().parents[1]

PHOTOS = ROOT.parent / "shared" / "data" / "lfw_photos" / "images"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    a = ap.parse_args()
    paths = [str(p.relative_to(PHOTOS)) for p in sorted(PHOTOS.rglob("*.jpg"))[: a.n]]
    enc = load_encoder("builtin", runtime="torch", device="cpu")
    onx = load_encoder("builtin", runtime="onnx", device="cpu")  # the graph shipped in the package
    os.environ["QMAG_RAY_KEEP"] = "1"  # one Ray instance for both Ray runs (its start is timed once, below)
    t0 = time.perf_counter()
    import ray

    ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False)
    t_start = time.perf_counter() - t0
    runs = {}
    for name, fn in (
        ("local engine (torch)", lambda: embed_files(paths, PHOTOS, enc, cache_dir=None)),
        ("local engine (ONNX runtime)", lambda: embed_files(paths, PHOTOS, onx, cache_dir=None)),
        ("Ray, 1 node (torch)", lambda: embed_files_ray(paths, PHOTOS, enc, cache_dir=None)),
        ("Ray, 1 node (ONNX runtime)", lambda: embed_files_ray(paths, PHOTOS, onx, cache_dir=None)),
    ):
        t = time.perf_counter()
        e = fn()
        runs[name] = (len(paths) / (time.perf_counter() - t), e)
    ray.shutdown()
    base = runs["local engine (torch)"]
    print(f"{len(paths)} LFW photos (250x250, uncropped), {a.cpus} CPUs; Ray start {t_start:.1f} s (not counted)")
    for name, (r, e) in runs.items():
        same = np.array_equal(e.ok, base[1].ok)
        ref = base[1].embeddings[base[1].ok]
        rel = np.linalg.norm(e.embeddings[e.ok] - ref, axis=1) / np.linalg.norm(ref, axis=1) if same else [np.nan]
        print(
            f"  {name:28s} {r:6.1f} images/s  ratio {r / base[0]:.2f}  same ok rows: {same}, "
            f"relative difference median {np.median(rel):.1e} max {np.max(rel):.1e}"
        )


if __name__ == "__main__":
    main()
