"""Rebuild what ships in qmag_core/assets/quality_scale/ for ``builtin``: the calibrated
quality scale, the fixed PLQ units, the check's reference faces and the enrolment check's
calibration.  Reference data: the original LFW photos of the dev pairs' folds 1–4
persons (../shared/data/lfw_photos) — never folds 5–7, which the benches test on.

* scale: cross-quality pairs of those persons (tools/train_builtin_utility.py: every
  same-person pair with one photo clean and the other one of its seeded crop- or
  capture-degraded versions, + 100,000 different-person pairs), FMR 1e-3;
* reference faces (the check's ``reference`` repair): 8 clean, sharp dlib-150 crops of
  distinct persons from the licence-clean deepface sample (sample_data/faces/deepface,
  MIT): per identity the photo with the highest q, eyewear left out;
* check: ``--n`` photos of those persons, clean and with the *development* occluders
  (blindfold, scarf, headband: never the sunglasses, masks and caps the bench tests);
  per region the repair (inpaint, reference or both) that names the occluded part best,
  the clean photos' median and spread of the gain, and the flag edge (a clean percentile
  of z, the lowest of 95, 97.5, 99, 99.5 at which at most 5 % of the clean photos are
  flagged);
* PLQ units: the 99th percentile of |map| on 32 clean crops per map method.

Held-out check (``--test``): the shipped scale's bands on the same kind of pairs of the
folds 5–7 persons: FNMR per band at the scale's threshold, and the good/poor ratio.

    python -m tools.build_quality_scale [--n 240] [--seed 0] [--write]
    python -m tools.build_quality_scale --test
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from qmag_core.encoders import load_encoder
from qmag_core.outputs import atomic_path
from qmag_core.pipeline.occluded import occluded_faces
from qmag_core.quality.check import clean_stats, gain_z, repair_gains
from qmag_core.quality.occluders import DEV_OCCLUDERS, PART_OF, PART_REGIONS
from qmag_core.quality.regions import REGIONS, REPAIRS, reference_faces
from qmag_core.quality.scale import REFERENCES, SCALE_DIR, fit_scale

ROOT = Path(__file__).resolve().parents[1]

PHOTOS = ROOT.parent / "shared" / "data" / "lfw_photos" / "images"
CACHE = Path.home() / ".cache" / "qmag" / "scale"
DEEPFACE = ROOT / "sample_data" / "faces" / "deepface"
#: deepface photos kept out of the reference bank: glasses over the eyes (looked at)
EYEWEAR = ("img24.jpg", "img25.jpg")
N_REFERENCES = 8
EDGE_LEVELS = (95.0, 97.5, 99.0, 99.5)


def dev_paths() -> list[str]:
    from bench import protocol as T

    sp = T.split_paths()
    return sorted(sp["train"] + sp["val"])


def reference_bank(enc) -> tuple[np.ndarray, list[str]]:
    """The check's reference faces: of the licence-clean deepface sample photos
    (sample_data/faces/deepface, MIT), per identity (the connected groups of master.csv's
    same-person pairs) the photo with the highest q, photos with eyewear left out; the
    :data:`N_REFERENCES` highest of those.  (K, 150, 150, 3) uint8 dlib-150 crops, names."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from qmag_core.io.pairs import read_pairs_csv
    from qmag_core.vision.align import DLIB_150, FaceDetector, detect_and_align

    pairs = read_pairs_csv(DEEPFACE / "master.csv")
    names, photo = np.unique(np.r_[pairs.path1, pairs.path2], return_inverse=True)
    n, same = len(pairs), pairs.label == 1
    a, b = photo[:n][same], photo[n:][same]
    graph = coo_matrix((np.ones(a.size), (a, b)), shape=(len(names), len(names)))
    _, identity = connected_components(graph, directed=False)
    det = FaceDetector.for_encoder(enc)
    best: dict[int, tuple[float, str, np.ndarray]] = {}
    for n, who in zip(names.tolist(), identity.tolist(), strict=True):
        if n in EYEWEAR:
            continue
        al = detect_and_align(str(DEEPFACE / n), det, DLIB_150, face="best")
        q = float(enc.quality_of(al.crop[None])[0])
        if who not in best or q > best[who][0]:
            best[who] = (q, n, al.crop)
    top = sorted(best.values(), key=lambda t: (-t[0], t[1]))[:N_REFERENCES]
    return np.stack([t[2] for t in top]), [t[1] for t in top]


def dev_gains(enc, paths, n: int, seed: int, refs: np.ndarray) -> dict:
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(paths), min(n, len(paths)), replace=False).tolist())
    import qmag_core.quality.check as C
    import qmag_core.quality.occluders as O
    import qmag_core.quality.regions as R
    from bench import protocol as T

    code = "|".join(T.code_key(m.__file__) for m in (C, O, R))  # the repairs' and occluders' code
    bank = hashlib.blake2b(np.ascontiguousarray(refs, np.uint8).tobytes(), digest_size=6).hexdigest()
    key = hashlib.blake2b(f"{pick}|{seed}|{enc.key}|{code}|{bank}".encode(), digest_size=6).hexdigest()
    f = CACHE / f"dev-{key}.npz"
    if f.is_file():
        z = np.load(f)
        return {k: z[k] for k in z.files}
    t0 = time.time()
    d = occluded_faces([str(PHOTOS / paths[k]) for k in pick], DEV_OCCLUDERS, enc, seed=seed)
    g = repair_gains(enc, d["crop"], reference_faces(enc.spec, refs))
    out = {"kind": d["kind"], "source": d["source"], "q": g["q"], "gain": g["gain"]}
    np.savez(f, **out)
    print(f"  dev check data: {len(pick)} photos, {len(d['kind'])} crops, lost {d['lost']}; {time.time() - t0:.0f} s")
    return out


def choose_check(d: dict) -> tuple[dict, dict]:
    """Per-region repairs (inpaint, reference or both: the larger z) and flag edges from
    development data (see module doc): the choice that names the occluded part most
    often, averaged over the development occluders; choices less than one photo (1 / n
    clean photos) apart are ties, decided by the larger median margin between the
    occluded part's z and the best other region's z (averaged over the occluders)."""
    kind, gain = d["kind"], d["gain"]  # gain (N, repairs, regions)
    clean = kind == "clean"
    med, spread = clean_stats(gain[clean])
    z = gain_z(gain, med, spread)
    zc = np.concatenate([z, z.max(axis=1, keepdims=True)], axis=1)  # index 2: both (the larger z)
    choices = REPAIRS + ("both",)
    cols = np.arange(len(REGIONS))
    names = np.asarray(REGIONS)
    scored = []  # (mean accuracy, mean of the kinds' median z margins, assignment, accuracies)
    for assign in itertools.product(range(len(choices)), repeat=len(REGIONS)):
        a = np.asarray(assign)
        za = zc[:, a, cols]
        acc, margin = [], []
        for k in DEV_OCCLUDERS:
            m, part = kind == k, np.isin(names, PART_REGIONS[PART_OF[k]])
            z_in, z_out = za[m][:, part].max(1), za[m][:, ~part].max(1)
            acc.append(float((z_in > z_out).mean()))
            margin.append(float(np.median(z_in - z_out)))
        scored.append((float(np.mean(acc)), float(np.mean(margin)), a, acc))
    # accuracies closer than one photo (1 / n) are ties: the larger median margin decides
    top_acc = max(t[0] for t in scored)
    _, _, a, acc = max((t for t in scored if t[0] >= top_acc - 1.0 / clean.sum()), key=lambda t: t[1])
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
    from qmag_core.quality.explain import gradient_map, occlusion_map

    out = {
        "occlusion": float(np.percentile(np.abs([occlusion_map(enc, c).raw for c in crops]), 99)),
        "check": float(np.percentile(np.abs([check_map(enc, c) for c in crops]), 99)),
    }
    if enc.differentiable:
        out["gradient"] = float(np.percentile(np.abs([gradient_map(enc, c).raw for c in crops]), 99))
    return {k: round(v, 6) for k, v in out.items()}


def held_out(seed: int) -> int:
    from bench import protocol as T
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
    from PIL import Image

    from bench import protocol as T

    if a.test:
        return held_out(a.seed)

    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    enc = load_encoder("builtin", device="cpu")  # torch: gradient maps' units too
    paths = dev_paths()
    refs, ref_names = reference_bank(enc)
    print(f"reference faces: {', '.join(ref_names)}")
    if a.write:
        with atomic_path(REFERENCES) as tmp:
            Image.fromarray(np.concatenate(list(refs), axis=1)).save(tmp, format="PNG")
        with atomic_path(SCALE_DIR / "LICENSE-deepface") as tmp:
            shutil.copyfile(DEEPFACE / "LICENSE", tmp)
    s, q, y, n_photos = T.cross_quality_pairs(2, a.seed)
    sc = fit_scale(
        s,
        y,
        q,
        q,
        fmr=1e-3,
        encoder="builtin",
        encoder_key=enc.key,
        source=f"cross-quality pairs of {n_photos} LFW dev folds 1-4 photos (python -m tools.build_quality_scale)",
    )
    print(f"scale: threshold {sc.threshold:.4f}, FNMR {sc.fnmr_overall:.4f}, edges {np.round(sc.edges, 2)}")
    d = dev_gains(enc, paths, a.n, a.seed, refs)
    check, rep = choose_check(d)
    print("check:", check, rep)
    crops = occluded_faces([str(PHOTOS / p) for p in paths[:: max(1, len(paths) // 32)][:32]], (), enc)["crop"]
    sc = sc.with_check({**check, "development": rep}).with_plq(plq_units(enc, crops))
    print("plq units:", sc.plq, f"; {time.time() - t0:.0f} s")
    if a.write:
        sc.save(SCALE_DIR / "builtin.json")
        print(f"wrote {SCALE_DIR / 'builtin.json'} and {REFERENCES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
