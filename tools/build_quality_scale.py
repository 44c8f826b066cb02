"""Rebuild what ships in qmag_core/assets/quality_scale/ for ``builtin``: the calibrated
quality scale, the fixed PLQ units, the mean reference face and the enrolment check's
calibration.  Reference data: the original LFW photos of the dev pairs' folds 1–4
persons (../shared/data/lfw_photos) — never folds 5–7, which the benches test on.

* scale: cross-quality pairs of those persons (tools/train_builtin_utility.py: every
  same-person pair with one photo clean and the other one of its seeded crop- or
  capture-degraded versions, + 100,000 different-person pairs), FMR 1e-3;
* mean face: the mean dlib-150 crop of the clean photos (best-face rule);
* check: ``--n`` photos of those persons, clean and with the *development* occluders
  (blindfold, scarf, headband: never the sunglasses, masks and caps the bench tests);
  per region the repair (inpaint, reference or both) that names the occluded part best,
  the clean photos' median and spread of the gain, and the flag edge (a clean percentile
  of z, the lowest of 95, 97.5, 99, 99.5 at which at most 5 % of the clean photos are
  flagged);
* PLQ units: the 99th percentile of |map| on 32 clean crops per map method.

Held-out check (``--test``): the shipped scale's bands on the same kind of pairs of the
folds 5–7 persons: FNMR per band at the scale's threshold, and the good/poor ratio.

    python tools/build_quality_scale.py [--n 240] [--seed 0] [--write]
    python tools/build_quality_scale.py --test
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from qmag_core.encoders import load_encoder
from qmag_core.pipeline.occluded import occluded_faces
from qmag_core.quality.check import clean_stats, gain_z, repair_gains
from qmag_core.quality.occluders import DEV_OCCLUDERS, PART_OF, PART_REGIONS
from qmag_core.quality.regions import REGIONS, REPAIRS
from qmag_core.quality.scale import MEAN_FACE, SCALE_DIR, fit_scale

PHOTOS = ROOT.parent / "shared" / "data" / "lfw_photos" / "images"
CACHE = Path.home() / ".cache" / "qmag" / "scale"
EDGE_LEVELS = (95.0, 97.5, 99.0, 99.5)


def dev_paths() -> list[str]:
    import train_builtin_utility as T

    sp = T.split_paths()
    return sorted(sp["train"] + sp["val"])


def mean_face(enc, paths) -> np.ndarray:
    f = CACHE / f"mean-{hashlib.blake2b('|'.join(paths).encode(), digest_size=6).hexdigest()}.npy"
    if f.is_file():
        return np.load(f)
    d = occluded_faces([str(PHOTOS / p) for p in paths], (), enc)
    m = d["crop"].astype(np.float64).mean(0)
    np.save(f, m)
    return m


def dev_gains(enc, paths, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(paths), min(n, len(paths)), replace=False).tolist())
    import train_builtin_utility as T

    import qmag_core.quality.occluders as O
    import qmag_core.quality.regions as R

    code = "|".join(T.code_key(m.__file__) for m in (O, R))  # the repairs' and occluders' code
    key = hashlib.blake2b(f"{pick}|{seed}|{enc.key}|{code}".encode(), digest_size=6).hexdigest()
    f = CACHE / f"dev-{key}.npz"
    if f.is_file():
        z = np.load(f)
        return {k: z[k] for k in z.files}
    t0 = time.time()
    d = occluded_faces([str(PHOTOS / paths[k]) for k in pick], DEV_OCCLUDERS, enc, seed=seed)
    g = repair_gains(enc, d["crop"])
    out = {"kind": d["kind"], "source": d["source"], "q": g["q"], "gain": g["gain"]}
    np.savez(f, **out)
    print(f"  dev check data: {len(pick)} photos, {len(d['kind'])} crops, lost {d['lost']}; {time.time() - t0:.0f} s")
    return out


def choose_check(d: dict) -> tuple[dict, dict]:
    """Per-region repairs (inpaint, reference or both: the larger z) and flag edges from
    development data (see module doc): the choice that names the occluded part most
    often, averaged over the development occluders."""
    kind, gain = d["kind"], d["gain"]  # gain (N, repairs, regions)
    clean = kind == "clean"
    med, spread = clean_stats(gain[clean])
    z = gain_z(gain, med, spread)
    zc = np.concatenate([z, z.max(axis=1, keepdims=True)], axis=1)  # index 2: both (the larger z)
    choices = REPAIRS + ("both",)
    cols = np.arange(len(REGIONS))
    best = None
    for assign in itertools.product(range(len(choices)), repeat=len(REGIONS)):
        a = np.asarray(assign)
        top = np.asarray(REGIONS)[zc[:, a, cols].argmax(1)]
        acc = [float(np.isin(top[kind == k], PART_REGIONS[PART_OF[k]]).mean()) for k in DEV_OCCLUDERS]
        if best is None or np.mean(acc) > best[0] + 1e-12:
            best = (float(np.mean(acc)), a, acc)
    _, a, acc = best
    zr = zc[:, a, cols]
    for level in EDGE_LEVELS:
        edge = np.percentile(zr[clean], level, axis=0)
        rate = float((zr[clean] > edge).any(1).mean())
        if rate <= 0.05:
            break
    check = {
        "repairs": {r: choices[a[i]] for i, r in enumerate(REGIONS)},
        "clean_median": {
            r: {m: round(float(med[j, i]), 5) for j, m in enumerate(REPAIRS)} for i, r in enumerate(REGIONS)
        },
        "clean_spread": {
            r: {m: round(float(spread[j, i]), 5) for j, m in enumerate(REPAIRS)} for i, r in enumerate(REGIONS)
        },
        "edge": {r: round(float(edge[i]), 4) for i, r in enumerate(REGIONS)},
        "edge_percentile": level,
    }
    report = {
        "occluders": list(DEV_OCCLUDERS),
        "top_region_accuracy": dict(zip(DEV_OCCLUDERS, np.round(acc, 3).tolist(), strict=True)),
        "clean_flagged": round(rate, 3),
        "occluded_flagged": {k: round(float((zr[kind == k] > edge).any(1).mean()), 3) for k in DEV_OCCLUDERS},
        "n_photos": int(clean.sum()),
    }
    return check, report


def plq_units(enc, crops: np.ndarray) -> dict:
    from qmag_core.quality.check import check_map
    from qmag_core.quality.explain import gradient_map, has_gradients, occlusion_map

    out = {
        "occlusion": float(np.percentile(np.abs([occlusion_map(enc, c).raw for c in crops]), 99)),
        "check": float(np.percentile(np.abs([check_map(enc, c) for c in crops]), 99)),
    }
    if has_gradients(enc):
        out["gradient"] = float(np.percentile(np.abs([gradient_map(enc, c).raw for c in crops]), 99))
    return {k: round(v, 6) for k, v in out.items()}


def held_out(seed: int) -> int:
    import train_builtin_utility as T

    from qmag_core.quality.scale import shipped_scale

    sc = shipped_scale("builtin")
    s, q, y, n_photos = T.cross_quality_pairs(2, seed, test=True)
    band = sc.band(q)
    g = y.astype(bool)
    miss = s <= sc.threshold
    imp_fmr = float((~miss[~g]).mean())
    rows = {b: (int((g & (band == b)).sum()), float(miss[g & (band == b)].mean())) for b in ("good", "usable", "poor")}
    print(
        f"held-out cross-quality pairs of {n_photos} LFW dev folds 5-7 photos: {int(g.sum())} genuine, "
        f"{int((~g).sum())} imposter (FMR at the scale's threshold {imp_fmr:.2e})"
    )
    for b, (n, f) in rows.items():
        print(f"  {b:<7} {n:>6} genuine pairs  FNMR {100 * f:6.2f}%")
    print(f"  poor / good FNMR ratio: {rows['poor'][1] / max(rows['good'][1], 1e-9):.1f}")
    v = sc.value(np.sort(q))
    print(f"  scale monotone in q: {bool(np.all(np.diff(v) >= -1e-9))}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=240, help="development photos for the check's calibration")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help=f"write the files in {SCALE_DIR}")
    ap.add_argument("--test", action="store_true", help="the shipped scale's bands on folds 5-7 pairs")
    a = ap.parse_args(argv)
    import train_builtin_utility as T
    from PIL import Image

    if a.test:
        return held_out(a.seed)

    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    enc = load_encoder("builtin", device="cpu")  # torch: gradient maps' units too
    paths = dev_paths()
    mf = mean_face(enc, paths)
    if a.write:
        Image.fromarray(np.clip(np.round(mf), 0, 255).astype(np.uint8)).save(MEAN_FACE)
    s, q, y, n_photos = T.cross_quality_pairs(2, a.seed)
    sc = fit_scale(
        s,
        y,
        q,
        q,
        fmr=1e-3,
        encoder="builtin",
        encoder_key=enc.key,
        source=f"cross-quality pairs of {n_photos} LFW dev folds 1-4 photos (python tools/build_quality_scale.py)",
    )
    print(f"scale: threshold {sc.threshold:.4f}, FNMR {sc.fnmr_overall:.4f}, edges {np.round(sc.edges, 2)}")
    d = dev_gains(enc, paths, a.n, a.seed)
    check, rep = choose_check(d)
    print("check:", check, rep)
    crops = occluded_faces([str(PHOTOS / p) for p in paths[:: max(1, len(paths) // 32)][:32]], (), enc)["crop"]
    sc = sc.with_check({**check, "development": rep}).with_plq(plq_units(enc, crops))
    print("plq units:", sc.plq, f"; {time.time() - t0:.0f} s")
    if a.write:
        sc.save(SCALE_DIR / "builtin.json")
        print(f"wrote {SCALE_DIR / 'builtin.json'} and {MEAN_FACE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
