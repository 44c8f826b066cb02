"""Does a MagFace quality head on the built-in backbone make q track quality?

Train: glint24 (aligned crops) + ORL + LFW identities of dev folds 1–4, each image with
4 seeded degraded copies (one degradation kind is held OUT of training).  Evaluate on LFW
dev folds 5–7 only (identity-disjoint): Spearman(q, −severity) pooled and per kind
(including the held-out kind) for each head variant vs the raw descriptor length.

    python bench/quality_head_experiment.py [--held-out exposure] [--epochs 30]
        [--variants linear:0,mlp:512] [--features pooled|multi] [--cache feats.npz]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from qmag_core.align import FaceDetector, detect_and_align
from qmag_core.data import read_lfw_pairs
from qmag_core.degrade import KINDS, degrade
from qmag_core.encoders import load_encoder
from qmag_core.magface import backbone_features, build_training_set, train_quality_head

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def build(a, enc):
    t0 = time.time()
    pairs = read_lfw_pairs(SHARED / "lfw" / "pairs_dev.txt")
    kinds = tuple(k for k in KINDS if k != a.held_out)
    with tempfile.TemporaryDirectory() as d:
        train_dir = Path(d) / "lfw14"
        train_dir.mkdir()
        m = pairs.fold <= 3
        for n in sorted({p.split("/")[0] for p in np.r_[pairs.path1[m], pairs.path2[m]]}):
            shutil.copytree(SHARED / "lfw" / "images" / n, train_dir / n)  # rglob does not follow dir symlinks
        kw = dict(kinds=kinds, feature_kind=a.features)
        parts = [build_training_set(SHARED / "glint24", enc, aligned=True, seed=a.seed, **kw),
                 build_training_set(SHARED / "orl", enc, seed=a.seed + 1, **kw),
                 build_training_set(train_dir, enc, seed=a.seed + 2, **kw)]
    off, feats, labels = 0, [], []
    for p in parts:
        feats.append(p["features"])
        labels.append(p["labels"] + off)
        off += len(p["identities"])
    X, Y = np.concatenate(feats), np.concatenate(labels)
    m = pairs.fold >= 4
    ev_paths = sorted(set(pairs.path1[m]) | set(pairs.path2[m]))
    det = FaceDetector()
    rng = np.random.default_rng(100 + a.seed)
    imgs, sev, kind = [], [], []
    for p in ev_paths:
        crop = detect_and_align(str(SHARED / "lfw" / "images" / p), det, enc.spec).crop
        imgs.append(crop); sev.append(0.0); kind.append("")  # noqa: E702
        for k in KINDS:
            s = float(rng.uniform(0.1, 1.0))
            imgs.append(degrade(crop, k, s, rng)); sev.append(s); kind.append(k)  # noqa: E702
    imgs = np.stack(imgs)
    f = backbone_features(enc, imgs, kind=a.features)
    q_raw = np.linalg.norm(enc.embed(imgs), axis=1)
    print(f"features built in {time.time() - t0:.0f} s")
    return X, Y, f, np.asarray(sev), np.asarray(kind), q_raw


def report(name, q, sev, kind, held_out):
    rho = spearmanr(q, -sev).correlation
    per = {k: spearmanr(q[(kind == k) | (kind == "")], -sev[(kind == k) | (kind == "")]).correlation for k in KINDS}
    print(f"  {name:12s} Spearman(q, -severity) pooled {rho:.3f}; " +
          ", ".join(f"{k} {v:.2f}{' (held out)' if k == held_out else ''}" for k, v in per.items()), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--held-out", default="exposure")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="npz with train/eval features (reused when present)")
    ap.add_argument("--features", choices=("pooled", "multi"), default="pooled",
                    help="head input: the 256-d pooled layer, or per-stage mean/std + pooled (704-d)")
    ap.add_argument("--variants", default="linear:0,mlp:512", help="head variants name:hidden[,...]")
    a = ap.parse_args()
    enc = load_encoder("builtin-raw", device="cpu")
    if a.cache and Path(a.cache).is_file():
        z = np.load(a.cache)
        X, Y, f, sev, kind, q_raw = z["X"], z["Y"], z["f"], z["sev"], z["kind"], z["q_raw"]
    else:
        X, Y, f, sev, kind, q_raw = build(a, enc)
        if a.cache:
            np.savez(a.cache, X=X, Y=Y, f=f, sev=sev, kind=kind, q_raw=q_raw)
    print(f"training set: {len(np.unique(Y))} identities, {len(Y)} samples (held-out kind: {a.held_out}); "
          f"evaluation: LFW folds 5-7, {int((kind == '').sum())} images x (clean + {len(KINDS)} kinds)")
    report("raw length", q_raw, sev, kind, a.held_out)
    for spec in a.variants.split(","):
        name, hidden = spec.split(":")
        t0 = time.time()
        head, hist = train_quality_head(X, Y, epochs=a.epochs, seed=a.seed, hidden=int(hidden))
        with torch.no_grad():
            q = head(torch.from_numpy(f)).norm(dim=1).numpy()
        print(f"  [{name}] loss {hist[0]['loss']:.2f} -> {hist[-1]['loss']:.2f}, mean q {hist[-1]['mean_a']:.1f}, "
              f"{time.time() - t0:.0f} s")
        report(f"head {name}", q, sev, kind, a.held_out)


if __name__ == "__main__":
    main()
