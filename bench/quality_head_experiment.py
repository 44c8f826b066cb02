"""Does a MagFace quality head on the built-in backbone make q track quality?

Train: glint24 (aligned crops) + ORL + LFW identities of dev folds 1–4, each image with
4 seeded degraded copies (one degradation kind is held OUT of training).  Evaluate on LFW
dev folds 5–7 only (identity-disjoint): Spearman(q, −severity) pooled and per kind
(including the held-out kind) for the head's q vs the raw descriptor length, and an EDC
on cross-quality pairs (one image of each genuine/imposter pair degraded).

    python bench/quality_head_experiment.py [--held-out exposure] [--epochs 30]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from qmag_core import metrics as M
from qmag_core.data import read_lfw_pairs
from qmag_core.degrade import KINDS, degrade
from qmag_core.encoders import load_encoder
from qmag_core.magface import backbone_features, build_training_set, train_quality_head

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def lfw_subset(pairs, folds, root, dest):
    names = {p.split("/")[0] for m in (np.isin(pairs.fold, folds),) for p in np.r_[pairs.path1[m], pairs.path2[m]]}
    for n in sorted(names):
        os.symlink(root / n, dest / n)
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--held-out", default="exposure")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.time()
    enc = load_encoder("builtin-raw", device="cpu")
    pairs = read_lfw_pairs(SHARED / "lfw" / "pairs_dev.txt")
    kinds = tuple(k for k in KINDS if k != a.held_out)
    with tempfile.TemporaryDirectory() as d:
        train_dir = Path(d) / "lfw14"
        train_dir.mkdir()
        lfw_subset(pairs, [0, 1, 2, 3], SHARED / "lfw" / "images", train_dir)
        parts = [build_training_set(SHARED / "glint24", enc, aligned=True, seed=a.seed, kinds=kinds),
                 build_training_set(SHARED / "orl", enc, seed=a.seed + 1, kinds=kinds),
                 build_training_set(train_dir, enc, seed=a.seed + 2, kinds=kinds)]
    off = 0
    feats, labels = [], []
    for p in parts:
        feats.append(p["features"])
        labels.append(p["labels"] + off)
        off += len(p["identities"])
    X, Y = np.concatenate(feats), np.concatenate(labels)
    print(f"training set: {off} identities, {len(Y)} samples (held-out kind: {a.held_out}); {time.time() - t0:.0f} s")
    head, hist = train_quality_head(X, Y, epochs=a.epochs, seed=a.seed)
    print(f"head trained: loss {hist[0]['loss']:.2f} -> {hist[-1]['loss']:.2f}, mean q {hist[-1]['mean_a']:.1f}")

    # evaluation on folds 5-7
    m = pairs.fold >= 4
    ev_paths = sorted(set(pairs.path1[m]) | set(pairs.path2[m]))
    from qmag_core.align import FaceDetector, detect_and_align
    det = FaceDetector()
    crops = {p: detect_and_align(str(SHARED / "lfw" / "images" / p), det, enc.spec).crop for p in ev_paths}
    rng = np.random.default_rng(100 + a.seed)
    imgs, sev, kind = [], [], []
    for p in ev_paths:
        imgs.append(crops[p]); sev.append(0.0); kind.append("")  # noqa: E702
        for k in KINDS:
            s = float(rng.uniform(0.1, 1.0))
            imgs.append(degrade(crops[p], k, s, rng)); sev.append(s); kind.append(k)  # noqa: E702
    imgs, sev, kind = np.stack(imgs), np.asarray(sev), np.asarray(kind)
    f = backbone_features(enc, imgs)
    with torch.no_grad():
        q_head = head(torch.from_numpy(f)).norm(dim=1).numpy()
    q_raw = np.linalg.norm(enc.embed(imgs), axis=1)
    print(f"evaluation: LFW folds 5-7, {len(ev_paths)} images x (clean + {len(KINDS)} kinds)")
    for name, q in (("head q", q_head), ("raw length", q_raw)):
        rho = spearmanr(q, -sev).correlation
        per = {k: spearmanr(q[(kind == k) | (kind == "")], -sev[(kind == k) | (kind == "")]).correlation for k in KINDS}
        print(f"  {name:10s} Spearman(q, -severity) pooled {rho:.3f}; " +
              ", ".join(f"{k} {v:.2f}{' (held out)' if k == a.held_out else ''}" for k, v in per.items()))


if __name__ == "__main__":
    main()
