"""Faithfulness of the pixel-level quality maps on real faces (LFW, ../shared/data).

For N faces (default 60) and both methods:
* deletion test: blurring the 10% of pixels a map rates highest must lower q more than
  blurring the 10% it rates lowest (signed drop q − q_blurred); success rate, also for a
  model-free local-variance map; the absolute-change variant is reported too;
* opaque patch over the eyes / the mouth: rate of faces where q drops and where the
  map's mean value inside the patch region drops;
* first-order check of the raw gradient: central difference along the gradient
  direction vs ‖∇q‖·t; determinism; timings.

    python -m bench.bench_explain [--n 60] [--encoder builtin]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

from qmag_core.encoders import load_encoder
from qmag_core.quality.explain import (
    deletion_drops,
    gradient_map,
    local_variance_map,
    occlusion_map,
    patch_region,
    quality_gradient,
)
from qmag_core.vision.align import FaceDetector, detect_and_align

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "images"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--encoder", default="builtin")
    a = ap.parse_args()
    if not LFW.is_dir():
        sys.exit(f"needs {LFW}")
    enc = load_encoder(a.encoder, device="cpu")
    det = FaceDetector()
    files = sorted(LFW.glob("*/*.jpg"))[7 :: max(1, 9502 // a.n)][: a.n]
    res = {
        m: {"del": [], "del_abs": [], "eyes_q": [], "eyes_map": [], "mouth_q": [], "mouth_map": []}
        for m in ("gradient", "occlusion", "occlusion-grey", "local variance")
    }
    fo, times = [], {"gradient": [], "occlusion": [], "occlusion-grey": []}
    methods = (
        ("gradient", gradient_map),
        ("occlusion", occlusion_map),
        ("occlusion-grey", lambda e, c: occlusion_map(e, c, fill="grey")),
    )
    for f in files:
        crop = detect_and_align(f, det, enc.spec).crop
        maps, raws = {}, {}
        for m, fn in methods:
            qm = fn(enc, crop)
            maps[m], raws[m] = qm.map, qm.raw
            times[m].append(qm.seconds)
        maps["local variance"] = local_variance_map(crop)
        for m, mp in maps.items():
            q0, dh, dl = deletion_drops(enc, crop, mp)
            res[m]["del"].append(dh > dl)
            res[m]["del_abs"].append(abs(dh) > abs(dl))
        for part in ("eyes", "mouth"):
            rs, cs = patch_region(enc.spec, part)
            patched = crop.copy()
            patched[rs, cs] = 128  # opaque grey patch
            q_p = enc.quality_of(np.stack([crop, patched]).astype(np.float32))
            for m, fn in methods:
                mp2 = fn(enc, patched)
                res[m][f"{part}_q"].append(q_p[1] < q_p[0])
                res[m][f"{part}_map"].append(mp2.raw[rs, cs].mean() < raws[m][rs, cs].mean())
        q, g = quality_gradient(enc, crop)
        u = g / np.linalg.norm(g)
        for t in (1.0,):
            qp, qn = enc.quality_of(np.stack([crop + t * u, crop - t * u]).astype(np.float32))
            fo.append(abs((qp - qn) / 2 - t * np.linalg.norm(g)) / (t * np.linalg.norm(g)))
    det1 = gradient_map(enc, crop).map
    det2 = gradient_map(enc, crop).map
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; encoder {enc.id}; {len(files)} LFW faces")
    print("deletion test (blur top-10% vs bottom-10% pixels; success = top lowers q more):")
    for m in res:
        print(
            f"  {m:15s} signed {100 * np.mean(res[m]['del']):5.1f}%   absolute {100 * np.mean(res[m]['del_abs']):5.1f}%"
        )
    for part in ("eyes", "mouth"):
        for m in ("gradient", "occlusion", "occlusion-grey"):
            print(
                f"opaque patch over the {part:5s} [{m:9s}]: q lower in {100 * np.mean(res[m][f'{part}_q']):5.1f}%, "
                f"map in the patch lower in {100 * np.mean(res[m][f'{part}_map']):5.1f}%, both in "
                f"{100 * np.mean(np.logical_and(res[m][f'{part}_q'], res[m][f'{part}_map'])):5.1f}% of faces"
            )
    print(
        f"first order (‖Δx‖ = 1 grey level along ∇q): relative error median {np.median(fo):.4f}, max {np.max(fo):.4f}"
    )
    print(f"deterministic: {np.array_equal(det1, det2)}")
    print(
        f"time per face: gradient {np.median(times['gradient']):.2f} s, occlusion "
        f"{np.median(times['occlusion']):.2f} s "
        f"(patch 16, stride 8: 324 forward passes)"
    )


if __name__ == "__main__":
    main()
