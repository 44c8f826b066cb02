"""Does the built-in encoder's quality head help verification?

All evaluation on LFW dev folds 5–7 (identities never seen by the head or by α/β):

A. accuracy of ``builtin`` vs ``builtin-raw`` on clean pairs (same direction by
   construction: identical cosines, so identical decisions);
B. natural-quality EDC on clean pairs (no synthetic degradation);
C. EDC on cross-quality pairs (one image of each pair degraded, seeded kind and
   severity): FNMR after discarding the 20% lowest-q_min pairs, EER threshold fixed on
   the full set, vs the median of 200 seeded random discards (target ≤ 0.4×);
D. QMagFace vs cosine on cross-quality pairs, α/β trained on cross-quality pairs of LFW
   folds 1–4 in both trainer modes, plus the shipped parameters: accuracy (LFW
   protocol, 3 folds, official pairs), EER and FNMR@FMR (extended pairs) with paired
   bootstrap 95% CIs of the difference.

    python -m bench.bench_quality [--n-boot 1000] [--imposters 100000] [--centre]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from qmag_core.encoders import load_encoder
from qmag_core.evaluation import bootstrap as B
from qmag_core.evaluation import edc as E
from qmag_core.evaluation import metrics as M
from qmag_core.evaluation.pairing import sample_pairs
from qmag_core.io.pairs import read_lfw_pairs
from qmag_core.outputs import save_npz
from qmag_core.quality.degrade import KINDS, DegradedBank, cross_versions, degraded_bank
from qmag_core.scores import QMagFaceTrainer, qmagface_score
from qmag_core.scores.params import QMagFaceParams
from qmag_core.vision.align import FaceDetector, detect_and_align

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data"


def crops_for(paths, cache: Path, spec):
    f = cache / "lfw_dev_crops.npz"
    if f.is_file():
        z = np.load(f)
        if list(z["paths"]) == list(paths):
            return z["crops"]
    det = FaceDetector()
    crops = np.stack([detect_and_align(str(SHARED / "lfw" / "images" / p), det, spec).crop for p in paths])
    cache.mkdir(parents=True, exist_ok=True)
    save_npz(f, paths=np.asarray(paths), crops=crops)
    return crops


def pct(x):
    return "n/a" if x is None else f"{100 * x:.2f}%"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--imposters", type=int, default=100_000)
    ap.add_argument("--genuine", type=int, default=20_000)
    ap.add_argument("--degraded", type=int, default=3, help="degraded versions per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--centre", action="store_true", help="also try descriptors centred on the training mean")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "qmag" / "bench_quality"))
    a = ap.parse_args()
    t0 = time.time()
    enc = load_encoder("builtin", device="cpu")
    pairs = read_lfw_pairs(SHARED / "lfw" / "pairs_dev.txt")
    paths = sorted(set(pairs.path1) | set(pairs.path2))
    pidx = {p: k for k, p in enumerate(paths)}
    ident = np.asarray([p.split("/")[0] for p in paths])
    crops = crops_for(paths, Path(a.cache), enc.spec)
    bk_file = Path(a.cache) / f"degraded_bank_{enc.key}_{a.degraded}_{a.seed}.npz"
    if bk_file.is_file():
        bk = DegradedBank.load(bk_file)
    else:
        bk = degraded_bank(enc, crops, a.degraded, a.seed)
        bk.save(bk_file)
    print(f"{len(paths)} LFW-dev images x (clean + {a.degraded} degraded), {time.time() - t0:.0f} s")
    ij_all = np.c_[[pidx[p] for p in pairs.path1], [pidx[p] for p in pairs.path2]]
    ev_img = np.zeros(len(paths), bool)
    ev_img[ij_all[pairs.fold >= 4].ravel()] = True
    rng = np.random.default_rng(a.seed)

    # A. accuracy on clean pairs: builtin (unit direction x head q) vs builtin-raw
    raw = load_encoder("builtin-raw", device="cpu")
    m = pairs.fold >= 4
    e_raw = raw.embed(crops[:64])
    e_b = enc.embed(crops[:64])
    nr = e_raw / np.linalg.norm(e_raw, axis=1, keepdims=True)
    nb = e_b / np.linalg.norm(e_b, axis=1, keepdims=True)
    dir_diff = np.abs(nr - bk.unit[:64, 0]).max()
    cos_b = np.einsum("pd,pd->p", bk.unit[ij_all[:, 0], 0], bk.unit[ij_all[:, 1], 0])
    print("\nA. clean pairs: builtin vs builtin-raw")
    print(
        f"  max |unit(builtin) - unit(builtin-raw)| over 64 images {max(dir_diff, np.abs(nr - nb).max()):.1e}; "
        f"embed() q = head q: {np.allclose(np.linalg.norm(e_b, axis=1), bk.q[:64, 0], rtol=1e-4)}"
    )
    for name, sel in (("folds 5-7", m), ("all 7 folds", np.ones_like(m))):
        acc = M.kfold_accuracy(cos_b[sel], pairs.label[sel], pairs.fold[sel])
        print(
            f"  {name}: accuracy {100 * acc.mean:.2f}% +/- {100 * acc.std:.2f} for both "
            f"(identical cosines, so identical decisions on all {int(sel.sum())} pairs)"
        )

    # B. natural quality: clean extended pairs of folds 5-7
    ev = np.flatnonzero(ev_img)
    ij_e, y_e = sample_pairs(ident[ev], n_genuine=a.genuine, n_imposter=a.imposters, rng=rng)
    ij_e = ev[ij_e]
    s_c, q_c, r_c = bk.pair_scores(ij_e, np.zeros_like(ij_e))
    print(
        f"\nB. natural quality, clean pairs of folds 5-7 ({int(y_e.sum())} genuine, {int((~y_e).sum())} imposter); "
        "FNMR at the EER threshold of the full set"
    )
    thr = M.eer(s_c[y_e], s_c[~y_e]).threshold
    for name, q in (("head q", q_c), ("raw length", r_c)):
        r = E.edc(s_c, y_e, q, discard=(0.0, 0.1, 0.2, 0.3), threshold=thr, random_state=a.seed)
        print(
            f"  {name:10s} "
            + "  ".join(
                f"{int(100 * d)}%: {pct(f)} (random {pct(fr)})"
                for d, f, fr in zip(r.discard, r.fnmr, r.fnmr_random_median, strict=True)
            )
        )

    # C. cross-quality EDC: official pairs (folds 5-7) and extended pairs
    print(
        "\nC. cross-quality pairs (one side degraded; kinds uniform over "
        f"{', '.join(KINDS)}; severity U(0.1, 1)); discard 20% lowest q_min, EER threshold of the full set"
    )
    v_off = cross_versions(int(m.sum()), a.degraded, rng)
    v_e = cross_versions(len(ij_e), a.degraded, rng)
    sets = {
        "official pairs": (bk.pair_scores(ij_all[m], v_off), pairs.label[m].astype(bool)),
        "extended pairs": (bk.pair_scores(ij_e, v_e), y_e),
    }
    for sname, ((s, q, r), y) in sets.items():
        thr = M.eer(s[y], s[~y]).threshold
        for name, qq in (("head q", q), ("raw length", r)):
            e = E.edc(s, y, qq, discard=(0.0, 0.2), threshold=thr, n_random=200, random_state=a.seed)
            print(
                f"  {sname} ({int(y.sum())}+{int((~y).sum())}), {name:10s}: FNMR {pct(e.fnmr[0])} -> {pct(e.fnmr[1])} "
                f"vs random median {pct(e.fnmr_random_median[1])}: ratio {e.fnmr[1] / e.fnmr_random_median[1]:.2f}"
            )
    kinds_e = bk.kind[ij_e[np.arange(len(ij_e)), v_e.argmax(1)], v_e.max(1)]
    (s, q, _), y = sets["extended pairs"]
    thr = M.eer(s[y], s[~y]).threshold
    per = []
    for kd in KINDS:
        sel = kinds_e == kd
        e = E.edc(s[sel], y[sel], q[sel], discard=(0.0, 0.2), threshold=thr, n_random=200, random_state=a.seed)
        per.append(f"{kd} {e.fnmr[1] / e.fnmr_random_median[1]:.2f}")
    print("  per degraded kind (extended pairs), ratio: " + ", ".join(per))

    # D. QMagFace vs cosine on cross-quality pairs
    tr_img = np.flatnonzero(~ev_img)
    ij_t, y_t = sample_pairs(ident[tr_img], n_genuine=a.genuine, n_imposter=a.imposters, rng=rng)
    ij_t = tr_img[ij_t]
    v_t = cross_versions(len(ij_t), a.degraded, rng)
    variants = [("backbone direction (shipped)", bk)]
    if a.centre:
        d = bk.unit * bk.raw[..., None]
        mu = d[tr_img, 0].mean(axis=0)
        dc = d - mu
        variants.append(
            (
                "descriptors centred on the mean of the folds 1-4 images",
                dataclasses.replace(bk, unit=dc / np.linalg.norm(dc, axis=2, keepdims=True)),
            )
        )
    shipped = QMagFaceParams.shipped("builtin")
    for vname, bkv in variants:
        s_t, q_t, _ = bkv.pair_scores(ij_t, v_t)
        X_t = np.c_[s_t, q_t, q_t]
        sets = {
            "official pairs": (bkv.pair_scores(ij_all[m], v_off), pairs.label[m].astype(bool)),
            "extended pairs": (bkv.pair_scores(ij_e, v_e), y_e),
        }
        if bkv is bk:
            shipped_sets = sets
        print(
            f"\nD. [{vname}] QMagFace vs cosine, cross-quality pairs of folds 5-7; α/β trained on cross-quality "
            f"pairs of folds 1-4 ({int(y_t.sum())}+{int((~y_t).sum())}); paired bootstrap {a.n_boot} resamples, "
            "95% CI of QMagFace - cosine (* = excludes 0)"
        )
        if bkv is not bk:
            so0 = np.einsum("pd,pd->p", bk.unit[ij_all[m, 0], 0], bk.unit[ij_all[m, 1], 0])
            so1 = np.einsum("pd,pd->p", bkv.unit[ij_all[m, 0], 0], bkv.unit[ij_all[m, 1], 0])
            d0 = B.paired_bootstrap(
                pairs.label[m], so0, so1, fmrs=(), folds=pairs.fold[m], n_boot=a.n_boot, random_state=a.seed
            )[-1]
            print(
                f"  clean accuracy, folds 5-7: uncentred {pct(d0.a)}, centred {pct(d0.b)}, diff "
                f"{100 * d0.diff:+.2f} pt "
                f"[{100 * d0.lo:+.2f}, {100 * d0.hi:+.2f}]"
            )
        trainers = {
            mode: QMagFaceTrainer(mode=mode, random_state=a.seed).fit(X_t, y_t) for mode in ("official", "consistent")
        }
        cand = {f"{k} (folds 1-4)": (t.alpha_, t.beta_) for k, t in trainers.items()}
        if shipped is not None and bkv is bk:
            cand[f"shipped {shipped.mode} (folds 1-4 persons, both families)"] = (shipped.alpha, shipped.beta)
        for name, (al, be) in cand.items():
            print(f"  {name}: alpha {al:.4g} beta {be:.4g} (s0 {al / be:.3f})")
            (so, qo, _), yo = sets["official pairs"]
            acc = B.paired_bootstrap(
                yo,
                so,
                qmagface_score(so, qo, al, be),
                fmrs=(),
                folds=pairs.fold[m],
                n_boot=a.n_boot,
                random_state=a.seed,
            )[-1]
            (se, qe, _), ye = sets["extended pairs"]
            res = B.paired_bootstrap(
                ye, se, qmagface_score(se, qe, al, be), fmrs=(1e-2, 1e-3), n_boot=a.n_boot, random_state=a.seed
            )
            for dd in [acc] + res:
                print(
                    f"    {dd.metric:15s} cosine {pct(dd.a)}  QMagFace {pct(dd.b)}  diff {100 * dd.diff:+.2f} pt "
                    f"[{100 * dd.lo:+.2f}, {100 * dd.hi:+.2f}]{'  *' if dd.excludes_zero else ''}"
                )
    # E. why QMagFace gains little here: where low- and high-quality pairs would want
    # their thresholds (QMagFace with omega <= 0 lowers the threshold of low-q_min pairs)
    (s, q, _), y = shipped_sets["extended pairs"]
    cuts = np.quantile(q, [1 / 3, 2 / 3])
    b = np.digitize(q, cuts)
    t_all = M.fnmr_at_fmr(s[y], s[~y], (1e-2,))[0]
    print(
        f"\nE. cross-quality extended pairs by q_min tercile (global threshold at FMR 1e-2: s = {t_all.threshold:.4f})"
    )
    fn_glob, fn_bin, n_g = 0.0, 0.0, int(y.sum())
    for k, nm in enumerate(("low", "mid", "high")):
        sel = b == k
        g, i = s[sel & y], s[sel & ~y]
        op = M.fnmr_at_fmr(g, i, (1e-2,))[0]
        print(
            f"  {nm:4s} q_min {q[sel].min():.1f}-{q[sel].max():.1f}: genuine s {g.mean():.3f} ± "
            f"{g.std():.3f}, imposter s "
            f"{i.mean():.3f} ± {i.std():.3f}; own threshold at FMR 1e-2 {op.threshold:.4f}; FNMR own {pct(op.fnmr)} "
            f"vs global threshold {pct(float(np.mean(g < t_all.threshold)))}"
        )
        fn_glob += float(np.sum(g < t_all.threshold))
        fn_bin += op.fnmr * g.size
    print(
        f"  one threshold per tercile, each at FMR 1e-2: FNMR {pct(fn_bin / n_g)} vs {pct(fn_glob / n_g)} with one "
        "threshold.  QMagFace (omega <= 0) can only LOWER the effective threshold of low-q_min pairs; a tercile "
        "whose own threshold is higher than the global one needs the opposite"
    )
    print(f"\ntotal {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
