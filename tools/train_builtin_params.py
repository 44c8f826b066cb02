"""Train and ship the default QMagFace parameters of the ``builtin-raw`` encoder (the
``builtin`` encoder's, which use its quality head: ``tools/train_builtin_utility.py --params``).

Training data is disjoint from LFW: seeded pairs of the 24 glint24 identities
(../shared/data/glint24, 112×112 ArcFace crops).  Steps (all seeded):

1. make-pairs on glint24: 4 identity-disjoint folds, 6,000 genuine + 60,000 imposter.
2. Geometry check: embed glint24 (a) re-warped from the ArcFace template onto dlib's
   150 chip (the chin rows fall outside the source) and (b) padded by replicated edges
   and run through the same MTCNN pipeline as LFW; compare EER and score levels.
3. Train α/β on glint24 pairs (both trainer modes), evaluate cosine vs QMagFace on the
   LFW-dev pairs (7 folds), and write qmag_core/assets/params/builtin-raw.json
   with operating points measured on the glint24 pairs.

    python -m tools.train_builtin_params [--mode official|consistent] [--write]
"""

import argparse
import sys
from pathlib import Path

from qmag_core.encoders import load_encoder
from qmag_core.evaluation import metrics as M
from qmag_core.evaluation.metrics import operating_points
from qmag_core.evaluation.pairing import make_pairs, scores_from_embeddings
from qmag_core.evaluation.protocol import summary_metrics
from qmag_core.io.pairs import read_lfw_pairs
from qmag_core.pipeline.embed import embed_files
from qmag_core.scores import QMagFaceTrainer, qmagface_score
from qmag_core.vision.images import list_images

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data"


def summary(name, t):
    m = summary_metrics(t.s, t.label)  # the evaluation module's summary (EER, FNMR@1e-3, …)
    g, i = M.split_scores(t.s, t.label)
    acc = M.kfold_accuracy(t.s, t.label, t.fold) if t.has_folds else None
    print(
        f"  {name}: EER {100 * m['eer']:.3f}%  FNMR@1e-3 {100 * m['fnmr@0.001']:.2f}%"
        f"  genuine s {g.mean():.3f}±{g.std():.3f}  imposter s {i.mean():.3f}±{i.std():.3f}"
        + (f"  acc {100 * acc.mean:.2f}%" if acc else "")
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--cache-dir", default="default")
    a = ap.parse_args()
    enc = load_encoder("builtin-raw", device="cpu")
    gl = SHARED / "glint24"
    pairs = make_pairs(gl, n_genuine=6000, n_imposter=60000, n_folds=4, random_state=0)
    paths = list_images(gl)
    print(f"glint24: {len(paths)} images, {len(pairs)} pairs")
    emb_a = embed_files(paths, gl, enc, aligned=True, cache_dir=a.cache_dir)
    emb_b = embed_files(paths, gl, enc, detect_pad=0.25, cache_dir=a.cache_dir)
    ta, _ = scores_from_embeddings(emb_a, pairs, encoder="builtin-raw")
    tb, rb = scores_from_embeddings(emb_b, pairs, encoder="builtin-raw")
    print("geometry check on glint24 pairs:")
    summary("(a) ArcFace crop re-warped to dlib-150", ta)
    summary(f"(b) padded + MTCNN ({int(emb_b.ok.sum())}/{len(paths)} detected)", tb)
    lfw_pairs = read_lfw_pairs(SHARED / "lfw" / "pairs_dev.txt")
    lp = sorted(set(lfw_pairs.path1.tolist()) | set(lfw_pairs.path2.tolist()))
    emb_l = embed_files(lp, SHARED / "lfw" / "images", enc, cache_dir=a.cache_dir)
    tl, _ = scores_from_embeddings(emb_l, lfw_pairs, encoder="builtin-raw")
    summary("LFW-dev (MTCNN)", tl)
    g_a, _ = M.split_scores(ta.s, ta.label)
    train = tb if M.eer(*M.split_scores(tb.s, tb.label)).value <= M.eer(*M.split_scores(ta.s, ta.label)).value else ta
    print(f"training on {'(b) padded + MTCNN' if train is tb else '(a) re-warped crops'}")
    y = tl.label.astype(bool)
    res = {}
    for mode in ("official", "consistent"):
        tr = QMagFaceTrainer(mode=mode, random_state=0).fit(train.X(), train.label)
        sh = qmagface_score(tl.s, tl.q_min, tr.alpha_, tr.beta_)
        g, i = M.split_scores(sh, y)
        acc = M.kfold_accuracy(sh, y, tl.fold)
        res[mode] = tr
        print(
            f"  {mode:10s} alpha={tr.alpha_:.5g} beta={tr.beta_:.5g} s0={tr.alpha_ / tr.beta_:.3f}: LFW EER "
            f"{100 * M.eer(g, i).value:.3f}%  FNMR@1e-3 {100 * M.fnmr_at_fmr(g, i, (1e-3,))[0].fnmr:.2f}%  "
            f"acc {100 * acc.mean:.2f}% ± {100 * acc.std:.2f}"
        )
    return res, train, pairs


def write(res, train, pairs, mode="consistent"):
    tr = res[mode]
    ci = tr.bootstrap(train.X(), train.label, n_boot=50, random_state=0)
    sh = qmagface_score(train.s, train.q_min, tr.alpha_, tr.beta_)
    out_dir = ROOT / "qmag_core" / "assets" / "params"
    out_dir.mkdir(parents=True, exist_ok=True)
    for enc_id in ("builtin-raw",):  # builtin (with its quality head): tools/train_builtin_utility.py --params
        p = tr.params(
            encoder=enc_id,
            encoder_key=load_encoder(enc_id, device="cpu").key,
            trained_on={
                "data": "glint24 (../shared/data/glint24), 24 identities, ArcFace crops re-warped to dlib-150",
                "pairs": "make_pairs(n_genuine=6000, n_imposter=60000, n_folds=4, random_state=0)",
                "n_genuine": tr.n_genuine_,
                "n_imposter": tr.n_imposter_,
                "command": "python -m tools.train_builtin_params --write",
            },
        )
        p.operating_points = operating_points(train.s, sh, train.label)
        p.notes = list(p.notes) + [
            f"bootstrap 95% CI (50 resamples): alpha {ci.alpha[0]:.4g}..{ci.alpha[1]:.4g}, beta "
            f"{ci.beta[0]:.4g}..{ci.beta[1]:.4g}",
            "mode 'consistent': in 'official' mode the zero crossing s0 = alpha/beta lies below this network's "
            "imposter cosines (~0.84), so omega(s) = 0 for all pairs and QMagFace equals cosine",
            "operating points measured on the glint24 training pairs",
        ]
        p.save(out_dir / f"{enc_id}.json")
        print(f"wrote {out_dir / (enc_id + '.json')}")


if __name__ == "__main__":
    a_res, a_train, a_pairs = main()
    if "--write" in sys.argv:
        write(a_res, a_train, a_pairs)
