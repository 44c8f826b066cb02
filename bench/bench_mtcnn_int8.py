"""int8 MTCNN: the three networks of the numpy + onnxruntime twin quantized (static QDQ,
per-channel int8 weights, uint8 activations), calibrated on the inputs each network
sees when the float twin detects development photos (LFW dev folds 1–4 persons), and
compared on photos of the folds 5–7 persons: same faces found, box and landmark
differences in pixels, and photos/s of batched detection (float and int8 timed in turn,
best of 3).

    python -m bench.bench_mtcnn_int8 [--calib 64] [--test 200] [--nets pnet,rnet,onet]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qmag_core.vision.images import load_image
from qmag_core.vision.mtcnn_onnx import MODEL_DIR, OnnxMTCNN

ROOT = Path(__file__).resolve().parents[1]

PHOTOS = ROOT.parent / "shared" / "data" / "lfw_photos" / "images"


class _Recorder(OnnxMTCNN):
    """The float twin, keeping every input each network is run on."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = {"pnet": [], "rnet": [], "onet": []}

    def _net(self, name, x):
        self.seen[name].append(np.array(x))
        return super()._net(name, x)


class _Reader:
    def __init__(self, arrays):
        self.arrays, self.k = arrays, 0

    def get_next(self):
        if self.k >= len(self.arrays):
            return None
        self.k += 1
        return {"input": self.arrays[self.k - 1]}

    def rewind(self):
        self.k = 0


def quantize(out_dir: Path, seen: dict, nets) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    for name in ("pnet", "rnet", "onet"):
        src = MODEL_DIR / f"mtcnn_{name}.onnx"
        if name not in nets:
            shutil.copy(src, out_dir / src.name)
            continue
        rng = np.random.default_rng(0)
        arrays = seen[name]
        if len(arrays) > 200:  # P-Net: many scales per photo; a seeded sample of them
            arrays = [arrays[k] for k in sorted(rng.choice(len(arrays), 200, replace=False))]
        quantize_static(
            str(src),
            str(out_dir / src.name),
            _Reader(arrays),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )


def compare(a: OnnxMTCNN, b: OnnxMTCNN, photos) -> dict:
    same, worst, diffs, n_faces = 0, 0.0, [], 0
    for img in photos:
        ba, _, la = a.detect_one(img)
        bb, _, lb = b.detect_one(img)
        if len(ba) != len(bb):
            continue
        same += 1
        if len(ba):
            n_faces += len(ba)
            d = np.maximum(np.abs(ba - bb).max(1), np.abs(la - lb).reshape(len(la), -1).max(1))
            diffs += d.tolist()
            worst = max(worst, float(d.max()))
    d = np.asarray(diffs)
    return {
        "same_count": same,
        "n": len(photos),
        "faces": n_faces,
        "worst_px": worst,
        "median_px": float(np.median(d)) if d.size else 0.0,
        "within_0.5px": float((d <= 0.5).mean()) if d.size else 1.0,
    }


def speed(det: OnnxMTCNN, photos, reps: int = 3) -> float:
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        for k in range(0, len(photos), 32):
            det.detect(photos[k : k + 32])
        best = min(best, time.perf_counter() - t0)
    return len(photos) / best


def main(argv=None) -> int:
    from bench import protocol as T

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--nets", default="pnet,rnet,onet", help="which networks to quantize (the rest stay float)")
    a = ap.parse_args(argv)
    nets = set(a.nets.split(","))
    sp = T.split_paths()
    rng = np.random.default_rng(0)
    calib = [load_image(PHOTOS / p) for p in rng.choice(sp["train"], a.calib, replace=False)]
    test = [load_image(PHOTOS / p) for p in rng.choice(sp["test"], a.test, replace=False)]
    rec = _Recorder()
    for img in calib:
        rec.detect_one(img)
    with tempfile.TemporaryDirectory() as tmp:
        quantize(Path(tmp), rec.seen, nets)
        fp, q8 = OnnxMTCNN(), OnnxMTCNN(model_dir=tmp)
        r = compare(fp, q8, test)
        f_speed, q_speed = [], []
        for _ in range(2):  # in turn, so a slow spell of the machine hits both
            f_speed.append(speed(fp, test))
            q_speed.append(speed(q8, test))
    print(
        f"int8 {'+'.join(sorted(nets))} vs float, {r['n']} test photos: same face count in {r['same_count']}, "
        f"{r['faces']} faces: box/landmark difference median {r['median_px']:.2f} px, worst {r['worst_px']:.2f} px, "
        f"{100 * r['within_0.5px']:.1f}% of faces within 0.5 px; batched detection {max(f_speed):.1f} -> "
        f"{max(q_speed):.1f} photos/s ({max(q_speed) / max(f_speed):.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
