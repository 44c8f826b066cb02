"""Which face is the subject?  LFW-dev pairs on the original, uncropped photos
(../shared/data/lfw_photos, often several people) against the same pairs' centre crops.

Detects every photo once (MTCNN), then for each subject rule aligns the chosen face,
embeds it (built-in encoder) and reports 7-fold accuracy on folds 1–4 (where a rule is
chosen) and 5–7 (reported), next to the centre crops' accuracy on the same folds.

    python -m bench.bench_subject [--limit N] [--penalties 0.5 1 2 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from qmag_core.encoders import load_encoder
from qmag_core.evaluation import metrics as M
from qmag_core.evaluation.pairing import scores_from_embeddings
from qmag_core.io.embeddings import Embeddings
from qmag_core.io.pairs import read_lfw_pairs
from qmag_core.vision.align import FaceDetector, align, choose_face
from qmag_core.vision.images import load_image

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data"


def accuracy(table, folds_keep):
    keep = np.isin(table.fold, folds_keep)
    acc = M.kfold_accuracy(table.s[keep], table.label[keep].astype(bool), table.fold[keep])
    return acc.mean, acc.std


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N pairs (smoke run)")
    ap.add_argument("--penalties", type=float, nargs="*", default=[0.5, 1.0, 2.0, 4.0])
    a = ap.parse_args(argv)
    photos = SHARED / "lfw_photos" / "images"
    pairs = read_lfw_pairs(SHARED / "lfw_photos" / "pairs_dev.txt")
    if a.limit:
        keep = np.arange(len(pairs)) < a.limit
        for f in ("path1", "path2", "label", "fold", "line"):
            setattr(pairs, f, getattr(pairs, f)[keep])
    paths = sorted(set(pairs.path1.tolist()) | set(pairs.path2.tolist()))
    enc = load_encoder("builtin", device="cpu")
    det = FaceDetector()
    t0 = time.perf_counter()
    images = [load_image(photos / p) for p in paths]
    faces = []
    for k in range(0, len(images), 64):
        faces += det.detect_batch(images[k : k + 64])
    t_det = time.perf_counter() - t0
    n_faces = np.array([len(f) for f in faces])
    print(
        f"{len(paths)} photos detected in {t_det:.0f} s; faces per photo: 0: {(n_faces == 0).sum()}, "
        f"1: {(n_faces == 1).sum()}, 2+: {(n_faces >= 2).sum()}"
    )

    # the same pairs on the centre crops, from the shipped sample embeddings
    crops = __import__("qmag_core.io", fromlist=["load_embeddings"]).load_embeddings(
        ROOT / "sample_data" / "lfw_dev_builtin" / "embeddings.npz"
    )
    t_crop, _ = scores_from_embeddings(crops, pairs)
    rows = [("centre crops (lfw/)", None, t_crop, None)]

    rules = [("largest", {}), ("center", {})] + [("best", {"penalty": p}) for p in a.penalties]
    for rule, kw in rules:
        idx = [
            choose_face(f, (im.shape[1], im.shape[0]), rule, **kw) if f else -1
            for f, im in zip(faces, images, strict=True)
        ]
        ok = np.array([k >= 0 for k in idx])
        crops_k = [
            align(im, f[k].landmarks, enc.spec).crop for im, f, k in zip(images, faces, idx, strict=True) if k >= 0
        ]
        e = np.full((len(paths), enc.dim), np.nan, np.float32)
        e[ok] = enc.embed(np.stack(crops_k))
        emb = Embeddings.from_array(e, paths=paths, encoder=enc.id)
        t, rep = scores_from_embeddings(emb, pairs)
        label = rule + (f" (penalty {kw['penalty']:g})" if kw else "")
        rows.append((label, rep, t, np.array(idx)))

    print(f"\n{'rule':<24}{'folds 1-4':>18}{'folds 5-7':>18}{'pairs lost':>12}{'differs from largest':>22}")
    largest = rows[1][3]
    for label, rep, t, idx in rows:
        a14, s14 = accuracy(t, [0, 1, 2, 3])
        a57, s57 = accuracy(t, [4, 5, 6])
        lost = "" if rep is None else str(rep["n_pairs"] - rep["n_scored"])
        diff = "" if idx is None else str(int((idx != largest).sum()))
        print(
            f"{label:<24}{100 * a14:>11.2f}% ±{100 * s14:4.2f}{100 * a57:>11.2f}% ±{100 * s57:4.2f}{lost:>12}{diff:>22}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
