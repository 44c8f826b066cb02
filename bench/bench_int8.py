"""int8 vs float graph of ``builtin``: throughput, LFW accuracy and q agreement.

The int8 graph is calibrated on glint24 crops (24 identities disjoint from LFW); the
test is LFW-dev (4,200 pairs, 7 folds), every photo detected and aligned once and the
same crops fed to both graphs.  Throughput is images/s of the encoder alone on the same
crops, both graphs in this process, best of 3 runs.

    python -m bench.bench_int8 [--n-speed 512] [--variants]

``--variants`` also quantizes the alternatives (every layer int8; convolutions only;
percentile ranges) and prints their speed and q agreement: the trade-off behind the
shipped choice (the layers after the last convolution — pooling, projection, quality
head — stay float).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qmag_core.encoders import load_encoder
from qmag_core.encoders.onnx import OnnxEncoder, export_onnx
from qmag_core.encoders.quantize import quantize_int8
from qmag_core.evaluation import metrics as M
from qmag_core.evaluation.pairing import pairs_to_indices
from qmag_core.io import Embeddings, read_lfw_pairs
from qmag_core.pipeline.datasets import folder_crops
from qmag_core.vision.align import FaceDetector, detect_and_align_batch
from qmag_core.vision.images import load_image

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data"


def images_per_s(encs: list, crops: np.ndarray, repeats: int = 7) -> list[float]:
    """Images/s of each encoder, best of ``repeats`` runs taken in turn (A B A B …), so a
    slow spell of this shared machine hits every encoder alike."""
    for enc in encs:
        enc.embed(crops[:32])  # warm-up
    best = [np.inf] * len(encs)
    for _ in range(repeats):
        for j, enc in enumerate(encs):
            t0 = time.perf_counter()
            enc.embed(crops, batch_size=64)
            best[j] = min(best[j], time.perf_counter() - t0)
    return [len(crops) / b for b in best]


def lfw_crops(spec):
    pairs = read_lfw_pairs(SHARED / "lfw" / "pairs_dev.txt")
    paths = sorted(set(pairs.path1.tolist()) | set(pairs.path2.tolist()))
    det = FaceDetector(runtime="onnx")
    photos = [load_image(SHARED / "lfw" / "images" / p) for p in paths]
    aligned = []
    for k in range(0, len(photos), 32):
        aligned += detect_and_align_batch(photos[k : k + 32], det, spec)
    ok = np.array([a is not None for a in aligned])
    crops = np.stack([a.crop for a in aligned if a is not None])
    return pairs, np.asarray(paths)[ok], crops


def scores(emb: np.ndarray, names, pairs):
    e = Embeddings.from_array(emb, paths=list(names))
    idx, found = pairs_to_indices(pairs, e)
    u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    s = np.einsum("ij,ij->i", u[idx[found, 0]], u[idx[found, 1]])
    return s, pairs.label[found], pairs.fold[found]


VARIANTS = {
    "every layer int8 (MinMax)": {"float_tail": False},
    "every layer int8 (percentile)": {"float_tail": False, "method": "percentile"},
    "convolutions only (MinMax)": {"float_tail": False, "op_types": ("Conv",)},
    "float tail (percentile)": {"method": "percentile"},
}


def variants(fp32_path, fp32, calib, crops, speed, e32) -> None:
    from scipy.stats import spearmanr

    q32 = np.linalg.norm(e32, axis=1)
    for name, kw in VARIANTS.items():
        out = fp32_path.with_name("variant.onnx")
        quantize_int8(fp32_path, out, calib, **kw)
        enc = OnnxEncoder(out, device="cpu")
        v_float, v = images_per_s([fp32, enc], speed)
        rho = spearmanr(np.linalg.norm(enc.embed(crops), axis=1), q32).statistic
        print(f"  variant {name:<32} {v / v_float:.2f}x float (timed in turn), Spearman(q) {rho:.4f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-speed", type=int, default=512)
    ap.add_argument("--variants", action="store_true")
    a = ap.parse_args()
    torch_enc = load_encoder("builtin", device="cpu", runtime="torch")
    calib = folder_crops(str(SHARED / "glint24"), torch_enc, 256, aligned=True)
    with tempfile.TemporaryDirectory() as d:
        fp32_path, int8_path = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        export_onnx(torch_enc, fp32_path)
        quantize_int8(fp32_path, int8_path, calib)
        fp32, int8 = OnnxEncoder(fp32_path, device="cpu"), OnnxEncoder(int8_path, device="cpu")
        print(f"graphs: float {fp32_path.stat().st_size / 1e6:.1f} MB, int8 {int8_path.stat().st_size / 1e6:.1f} MB")
        pairs, names, crops = lfw_crops(fp32.spec)
        speed = crops[: a.n_speed]
        v32, v8 = images_per_s([fp32, int8], speed)
        print(f"encoder alone, {len(speed)} LFW crops: float {v32:.1f} img/s, int8 {v8:.1f} img/s ({v8 / v32:.2f}x)")
        e32, e8 = fp32.embed(crops), int8.embed(crops)
        if a.variants:
            variants(fp32_path, fp32, calib, crops, speed, e32)
    from scipy.stats import spearmanr

    q32, q8 = np.linalg.norm(e32, axis=1), np.linalg.norm(e8, axis=1)
    rho = spearmanr(q32, q8).statistic
    print(
        f"q on {len(crops)} LFW crops: Spearman(q_int8, q_fp32) {rho:.4f}, |dq| median {np.median(abs(q8 - q32)):.3f}"
    )
    for name, e in (("float", e32), ("int8", e8)):
        s, y, f = scores(e, names, pairs)
        acc = M.kfold_accuracy(s, y, f)
        g, i = M.split_scores(s, y)
        print(f"LFW-dev {len(s)} pairs, {name}: 7-fold accuracy {100 * acc.mean:.3f}% ± {100 * acc.std:.2f}, "
              f"EER {100 * M.eer(g, i).value:.3f}%")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
