"""The PLQ paper's experiments, on photos and identities nothing here was tuned on.

Test data: original LFW photos of the dev pairs' folds 5–7 persons (../shared/data/
lfw_photos); encoder ``builtin`` (the shipped ONNX graph); map = the enrolment check's
PLQ map (coarse occlusion sensitivity of q), drawn on the encoder's fixed scale.

1. **Before/after repair** (figure): clean photos and the same photos with sunglasses, a
   surgical mask, a cap, a hand (painted before detection) and a random mask (a
   rectangle of random colour on the aligned face): crop, map, the check's repair of its top region,
   the map after, with q — docs/results/figures/plq_repair.png.
2. **Random masks**: how much of the map's lost quality falls inside the mask, over the
   mask's share of the face (1 = no better than chance), for the PLQ map and the
   model-free local-variance map (its rank, flattest = most lost), with bootstrap 95%
   intervals.
3. **Deletion / insertion**: the second photo of each genuine test pair loses (deletion)
   or gains (insertion, from mid-grey) its pixels in the order a map ranks them (PLQ: most
   quality-raising first; local variance: most textured first; random); FNMR at the
   threshold for FMR 1e-3 on clean cross-person pairs, per fraction; area under the
   curve over 0–50 % with bootstrap intervals of the differences (pairs resampled).

    python -m bench.bench_plq [--pairs 300] [--seed 2] [--figure]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from qmag_core.encoders import load_encoder
from qmag_core.evaluation.metrics import threshold_at_fmr
from qmag_core.io.pairs import read_lfw_pairs
from qmag_core.quality.check import check_crop, check_map
from qmag_core.quality.explain import local_variance_map
from qmag_core.quality.occluders import EXTRA_TEST_OCCLUDERS, TEST_OCCLUDERS
from qmag_core.quality.regions import region_labels
from qmag_core.quality.scale import scale_for
from qmag_core.vision.align import FaceDetector, detect_and_align_batch
from qmag_core.vision.images import load_image

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data" / "lfw_photos"
FIG = ROOT / "docs" / "results" / "figures"
FRACS = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5])


def crops_of(paths, enc, det) -> list:
    out = []
    for k in range(0, len(paths), 32):
        photos = [load_image(SHARED / "images" / p) for p in paths[k : k + 32]]
        out += detect_and_align_batch(photos, det, enc.spec, face="best")
    return out


def random_mask(lab: np.ndarray, rng) -> np.ndarray:
    """A rectangle of 8–20 % of the crop at a random place over the face's regions
    (``lab``: the crop spec's region labels)."""
    S = lab.shape[0]
    r, c = np.nonzero(lab >= 0)
    area = rng.uniform(0.08, 0.2) * S * S
    h = int(np.clip(np.sqrt(area * rng.uniform(0.5, 2)), 6, r.max() - r.min()))
    w = int(np.clip(area / h, 6, c.max() - c.min()))
    top, left = int(rng.integers(r.min(), r.max() - h + 1)), int(rng.integers(c.min(), c.max() - w + 1))
    m = np.zeros((S, S), bool)
    m[top : top + h, left : left + w] = True
    return m


def boot_ci(values: np.ndarray, rng, n: int = 1000) -> tuple[float, float]:
    idx = rng.integers(0, len(values), (n, len(values)))
    return tuple(np.percentile(values[idx].mean(1), [2.5, 97.5]).tolist())


def masks_experiment(enc, crops, rng) -> None:
    lab = region_labels(enc.spec)
    face = lab >= 0
    ratios = {"PLQ map": [], "local variance": []}
    for x in crops:
        m = random_mask(lab, rng)
        y = x.copy()
        y[m] = rng.integers(0, 256, 3)
        share_area = (m & face).sum() / face.sum()
        lost = np.maximum(-check_map(enc, y), 0)
        lv = local_variance_map(y)
        lv_lost = 1.0 - np.argsort(np.argsort(lv.ravel())).reshape(lv.shape) / lv.size  # flattest = most lost
        for name, v in (("PLQ map", lost), ("local variance", lv_lost)):
            tot = v[face].sum()
            ratios[name].append(((v[m & face].sum() / tot) if tot > 0 else 0) / share_area)
    print(f"\nrandom masks on {len(crops)} test faces: share of 'lost' map mass inside the mask / its area share")
    for name, r in ratios.items():
        r = np.asarray(r)
        lo, hi = boot_ci(r, rng)
        print(f"  {name:<16} {r.mean():.2f} [{lo:.2f}, {hi:.2f}]  (1 = chance)")


def fill_order(x: np.ndarray, score: np.ndarray, fracs, insert: bool) -> np.ndarray:
    """Copies of crop x (len(fracs), S, S, 3): the top-``f`` pixels by ``score`` set to
    mid-grey (deletion) or kept over a mid-grey crop (insertion)."""
    order = np.argsort(-score.ravel(), kind="stable")
    out = np.empty((len(fracs),) + x.shape, np.uint8)
    for k, f in enumerate(fracs):
        m = np.zeros(order.size, bool)
        m[order[: int(round(f * order.size))]] = True
        m = m.reshape(score.shape)[..., None]
        out[k] = np.where(m, x, 128) if insert else np.where(m, 128, x)
    return out


def deletion_experiment(enc, pairs_crops, threshold, rng) -> None:
    maps = {"PLQ map": [], "local variance": [], "random": []}
    first, second = zip(*pairs_crops, strict=True)
    e1 = enc.embed(np.stack(first))
    u1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    for x in second:
        maps["PLQ map"].append(check_map(enc, x))
        maps["local variance"].append(local_variance_map(x))
        maps["random"].append(rng.random(x.shape[:2]))
    n = len(second)
    print(f"\ndeletion / insertion on {n} genuine test pairs (threshold {threshold:.4f} = FMR 1e-3)")
    print(f"{'':<10}{'order':<16}" + "".join(f"{f:>7.0%}" for f in FRACS) + "   AUC")
    miss = {}
    for mode in ("deletion", "insertion"):
        for name, ms in maps.items():
            s = np.zeros((n, len(FRACS)))
            for i, (x, sc) in enumerate(zip(second, ms, strict=True)):
                e = enc.embed(fill_order(x, sc, FRACS, mode == "insertion"))
                s[i] = (e / np.linalg.norm(e, axis=1, keepdims=True)) @ u1[i]
            mm = (s <= threshold).astype(float)
            miss[mode, name] = mm
            auc = np.trapezoid(mm.mean(0), FRACS)
            print(f"{mode:<10}{name:<16}" + "".join(f"{v:>7.1%}" for v in mm.mean(0)) + f"  {auc:.4f}")
    for mode, sign in (("deletion", 1), ("insertion", -1)):
        for other in ("random", "local variance"):
            auc = {k: np.trapezoid(miss[mode, k], FRACS, axis=1) for k in ("PLQ map", other)}
            d = sign * (auc["PLQ map"] - auc[other])
            lo, hi = boot_ci(d, rng)
            better = "higher" if mode == "deletion" else "lower"
            print(f"  {mode}: PLQ AUC {better} than {other} by {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]")


def figure(enc, det, scale, photos) -> None:
    from PIL import Image, ImageDraw

    from qmag_core.pipeline.occluded import occluded_faces
    from qmag_core.quality.explain import QualityMap, render_overlay

    unit = scale.plq.get("check")
    kinds = TEST_OCCLUDERS + EXTRA_TEST_OCCLUDERS
    d = occluded_faces([str(SHARED / "images" / p) for p in photos], kinds, enc, seed=5)
    rng = np.random.default_rng(5)
    rows = []
    for x, kind in zip(d["crop"], d["kind"], strict=True):
        if kind == "clean" and rng.random() < 0.5:
            y = x.copy()
            y[random_mask(region_labels(enc.spec), rng)] = rng.integers(0, 256, 3)
            x, kind = y, "random mask"
        rep = check_crop(enc, x, scale)
        qm = QualityMap(x, rep.q, rep.map, rep.map, "occlusion", enc.id, {}, 0)
        after = check_map(enc, rep.repaired)
        qa = QualityMap(rep.repaired, rep.q_after, after, after, "occlusion", enc.id, {}, 0)
        row = np.concatenate([render_overlay(qm, scale=1, unit=unit), render_overlay(qa, scale=1, unit=unit)], 1)
        im = Image.fromarray(np.pad(row, ((18, 0), (0, 0), (0, 0)), constant_values=255))
        ImageDraw.Draw(im).text(
            (4, 3), f"{kind}: q {rep.q:.2f} | {rep.top} repaired: q {rep.q_after:.2f}", fill=(0, 0, 0)
        )
        rows.append(np.asarray(im))
    FIG.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows[: 3 * (1 + len(kinds))], 0)).save(FIG / "plq_repair.png", optimize=True)
    print(f"figure -> {FIG / 'plq_repair.png'}")


def main(argv=None) -> int:
    from bench import protocol as T

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=300, help="genuine test pairs for deletion/insertion")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--figure", action="store_true", help="write docs/results/figures/plq_repair.png")
    a = ap.parse_args(argv)
    t0 = time.time()
    rng = np.random.default_rng(a.seed)
    enc = load_encoder("builtin", runtime="fast")
    det = FaceDetector.for_encoder(enc)
    scale = scale_for(enc)
    pairs = read_lfw_pairs(SHARED / "pairs_dev.txt")
    test = np.isin(pairs.fold, T.TEST_FOLDS)
    gen = np.flatnonzero(test & (pairs.label == 1))
    gen = np.sort(rng.choice(gen, min(a.pairs, gen.size), replace=False))
    paths = sorted(set(pairs.path1[gen].tolist()) | set(pairs.path2[gen].tolist()))
    al = dict(zip(paths, crops_of(paths, enc, det), strict=True))
    ok = [k for k in gen if al[pairs.path1[k]] is not None and al[pairs.path2[k]] is not None]
    # the threshold: FMR 1e-3 over clean cross-person pairs of the test photos
    names = [p for p in paths if al[p] is not None]
    e = enc.embed(np.stack([al[p].crop for p in names]))
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    who = np.array([p.split("/")[0] for p in names])
    i, j = np.triu_indices(len(names), 1)
    diff = who[i] != who[j]
    imp = np.einsum("ij,ij->i", u[i[diff]], u[j[diff]])
    thr = threshold_at_fmr(imp, 1e-3)
    print(f"{len(ok)} genuine test pairs; {imp.size} cross-person pairs for the threshold")
    masks_experiment(enc, [al[p].crop for p in names[:200]], rng)
    deletion_experiment(enc, [(al[pairs.path1[k]].crop, al[pairs.path2[k]].crop) for k in ok], thr, rng)
    if a.figure:
        figure(enc, det, scale, sorted(rng.choice(names, 4, replace=False).tolist()))
    print(f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
