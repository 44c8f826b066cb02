"""Template pooling where quality is mixed: does weighting the best images pay?

Templates built from the original LFW photos of the dev pairs (../shared/data/lfw_photos):
per person with at least two photos, two templates, each holding one clean photo and its
seeded degraded versions (2 crop-level + 2 capture-level, severity U(0.1, 1), from
tools/train_builtin_utility.py's sample cache; a version whose face was lost is left
out).  Each image is its own media.  Genuine pairs: the person's two templates;
imposter pairs: every pair of templates of different persons.  Features: the shipped
``builtin`` encoder (direction × the utility head's q).

The softmax rule's temperature T is chosen on the folds 1–4 persons (development) and
reported on the folds 5–7 persons (test, never used to choose anything), beside
``mean``, ``magface`` and ``qmagface``; TAR at FAR = 1e-3 (highest TAR with FAR ≤ the
target) with a 95% bootstrap interval of the difference to ``mean`` (genuine and imposter
pairs resampled, 500 draws).

    python -m bench.bench_pooling [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from qmag_core.evaluation.metrics import fmr_key
from qmag_core.evaluation.templates import pool_templates, score_template_pairs, tar_at_far

ROOT = Path(__file__).resolve().parents[1]

FAR = 1e-3
T_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def split_features(split: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw features (N, D), person (N,), photo (N,), clean (N,) of one split's samples."""
    from bench import protocol as T
    from qmag_core.encoders import BUILTIN_HEAD, load_encoder
    from qmag_core.quality.head import backbone_directions, head_quality, load_quality_head

    enc = load_encoder("builtin-raw", device="cpu")
    head = load_quality_head(BUILTIN_HEAD)[0]
    sp = T.split_paths()
    cache = Path.home() / ".cache" / "qmag" / "utility"
    cache.mkdir(parents=True, exist_ok=True)
    names = sp["train"] + sp["val"] if split == "dev" else sp["test"]
    parts = (("train", seed + 7), ("val", seed + 8)) if split == "dev" else (("test", seed + 9),)
    feats, photo, clean = [], [], []
    offset = 0
    for part, sd in parts:
        for fam in ("crop", "capture"):
            d = T.samples(enc, sp[part], fam, 2, sd, cache)
            keep = np.ones(len(d["target"]), bool) if fam == "crop" else d["family"] != "clean"
            u = backbone_directions(enc, d["features"][keep])
            q = head_quality(head, d["features"][keep])
            feats.append(u / np.linalg.norm(u, axis=1, keepdims=True) * q[:, None])
            photo.append(d["source"][keep] + offset)
            clean.append(d["family"][keep] == "clean")
        offset += len(sp[part])
    photo = np.concatenate(photo)
    person = np.array([p.split("/")[0] for p in names])[photo]
    return np.concatenate(feats).astype(np.float32), person, photo, np.concatenate(clean)


def build_templates(person, photo, seed: int):
    """tid (N,) (−1: not in a template), genuine and imposter template pairs."""
    rng = np.random.default_rng(seed)
    tid = np.full(len(photo), -1, np.int64)
    owners = []
    for p in np.unique(person):
        photos = np.unique(photo[person == p])
        if photos.size < 2:
            continue
        for ph in sorted(rng.choice(photos, 2, replace=False).tolist()):
            tid[photo == ph] = len(owners)
            owners.append(p)
    owners = np.asarray(owners)
    a, b = np.triu_indices(len(owners), 1)
    same = owners[a] == owners[b]
    return tid, np.c_[a, b][same], np.c_[a, b][~same]


def tar(g, i) -> float:
    """TAR at FAR = 1e-3, highest TAR with FAR ≤ the target (the evaluate --ijb convention)."""
    return tar_at_far(g, i, (FAR,))["tar_at_far"][fmr_key(FAR)]


def evaluate(x, tid, gen, imp, rule, temperature=1.0):
    use = tid >= 0
    t = pool_templates(x[use], np.ones(use.sum(), bool), tid[use], np.arange(use.sum()), rule, temperature=temperature)
    sg, _, okg = score_template_pairs(t, t.ids[gen])
    si, _, oki = score_template_pairs(t, t.ids[imp])
    return np.where(okg, sg, -2.0), np.where(oki, si, -2.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=500)
    a = ap.parse_args(argv)
    t0 = time.time()
    res = {}
    for split in ("dev", "test"):
        x, person, photo, clean = split_features(split, a.seed)
        tid, gen, imp = build_templates(person, photo, a.seed)
        n_img = np.bincount(tid[tid >= 0])
        print(
            f"{split}: {len(np.unique(person))} persons, {tid.max() + 1} templates of {n_img.min()}-{n_img.max()} "
            f"images (median {np.median(n_img):.0f}, one clean), {len(gen)} genuine + {len(imp)} imposter pairs",
            flush=True,
        )
        res[split] = (x, tid, gen, imp)
    x, tid, gen, imp = res["dev"]
    dev = {T: tar(*evaluate(x, tid, gen, imp, "softmax", T)) for T in T_GRID}
    t_best = max(T_GRID, key=lambda T: (dev[T], -T))
    print(
        "dev TAR@FAR=1e-3 by T: " + ", ".join(f"{T:g}: {100 * v:.2f}%" for T, v in dev.items()) + f" -> T = {t_best:g}"
    )
    print(f"dev mean pooling: {100 * tar(*evaluate(x, tid, gen, imp, 'mean')):.2f}%")
    x, tid, gen, imp = res["test"]
    rng = np.random.default_rng(a.seed)
    scores = {r: evaluate(x, tid, gen, imp, r, t_best) for r in ("mean", "magface", "qmagface", "softmax")}
    bg = rng.integers(0, len(gen), (a.n_boot, len(gen)))
    bi = rng.integers(0, len(imp), (a.n_boot, len(imp)))
    print(f"\ntest (folds 5-7 persons), TAR@FAR=1e-3; softmax T = {t_best:g} (chosen on dev)")
    base = scores["mean"]
    for r, (g, i) in scores.items():
        v = tar(g, i)
        if r == "mean":
            print(f"  {r:9s} {100 * v:6.2f}%")
            continue
        d = [tar(g[bg[k]], i[bi[k]]) - tar(base[0][bg[k]], base[1][bi[k]]) for k in range(a.n_boot)]
        lo, hi = np.percentile(d, [2.5, 97.5])
        print(f"  {r:9s} {100 * v:6.2f}%   vs mean {100 * (v - tar(*base)):+.2f} pt [{100 * lo:+.2f}, {100 * hi:+.2f}]")
    print(f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
