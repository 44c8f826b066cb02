"""Build sample_data/ (what the dashboard opens with, offline).  Run from the repo root:

    python -m tools.make_sample_data [faces] [lfw] [cross-quality]   (default: all three)

* sample_data/faces/deepface/: the deepface unit-test photos (MIT, serengil/deepface),
  longer side shrunk to 640 px (JPEG q90), with master.csv (pairs) and LICENSE.
* sample_data/faces/magface_toy/: the MagFace toy crops (Apache-2.0), unchanged, with
  LICENSE, LICENSE-NOTICE, img.list and feat.list (official iResNet100 features).
* sample_data/lfw_dev_builtin/: LFW-dev pairs embedded by the built-in encoder — numbers
  only, no LFW images: embeddings.npz (paths are LFW names), scores.csv (the 4,200
  pairs, 7 folds) and scores_extended.csv (the 2,100 genuine pairs + 60,000 seeded
  imposter pairs drawn within folds between different identities).
"""

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from qmag_core.encoders import load_encoder
from qmag_core.evaluation.pairing import (
    sample_pairs,
    scores_from_embeddings,
)
from qmag_core.io.embeddings import save_embeddings
from qmag_core.io.pairs import read_lfw_pairs
from qmag_core.io.scores import ScoreTable, write_scores_csv
from qmag_core.pipeline.embed import embed_files
from qmag_core.scores.scoring import pair_similarity

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "sample_data"


def faces():
    d = OUT / "faces" / "deepface"
    d.mkdir(parents=True, exist_ok=True)
    for f in sorted((SHARED / "deepface").glob("*.jpg")):
        im = Image.open(f)
        im = im.convert("RGB")
        s = 640 / max(im.size)
        if s < 1:
            im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.LANCZOS)
        im.save(d / f.name, "JPEG", quality=90)
    shutil.copy(SHARED / "deepface" / "master.csv", d / "master.csv")
    shutil.copy(SHARED / "deepface" / "LICENSE", d / "LICENSE")
    m = OUT / "faces" / "magface_toy"
    if m.exists():
        shutil.rmtree(m)
    shutil.copytree(SHARED / "magface_toy", m)


def lfw(n_imposter=60000, seed=0):
    d = OUT / "lfw_dev_builtin"
    d.mkdir(parents=True, exist_ok=True)
    pairs = read_lfw_pairs(SHARED / "lfw" / "pairs_dev.txt")
    paths = sorted(set(pairs.path1.tolist()) | set(pairs.path2.tolist()))
    enc = load_encoder("builtin", device="cpu")
    emb = embed_files(paths, SHARED / "lfw" / "images", enc)
    save_embeddings(d / "embeddings.npz", emb)
    t, rep = scores_from_embeddings(emb, pairs, encoder="builtin")
    write_scores_csv(d / "scores.csv", t, meta={"source": "LFW pairs_dev.txt (folds 1-7), builtin encoder"})
    # extended imposters: seeded distinct cross-identity pairs within each fold, of embedded images
    idx = {p: k for k, p in enumerate(emb.paths.tolist())}
    fold_imgs = {}
    for p1, p2, f in zip(pairs.path1, pairs.path2, pairs.fold, strict=True):
        fold_imgs.setdefault(int(f), set()).update(k for k in (idx[p1], idx[p2]) if emb.ok[k])
    items = np.concatenate([sorted(v) for _, v in sorted(fold_imgs.items())])
    grp = np.concatenate([[f] * len(v) for f, v in sorted(fold_imgs.items())])
    ident = np.array([p.split("/")[0] for p in emb.paths.tolist()])
    per = n_imposter // len(fold_imgs)
    ij, _ = sample_pairs(
        ident[items], n_genuine=0, n_imposter=per * len(fold_imgs), rng=np.random.default_rng(seed), groups=grp
    )
    I1, I2, F = items[ij[:, 0]], items[ij[:, 1]], grp[ij[:, 0]]
    ps = pair_similarity(emb.embeddings, np.c_[I1, I2])
    g = t.label == 1
    ext = ScoreTable(
        np.r_[t.s[g], ps.s],
        np.r_[t.q1[g], ps.q1],
        np.r_[t.q2[g], ps.q2],
        np.r_[t.label[g], np.zeros(len(I1), np.int8)],
        np.r_[t.fold[g], F],
        {"encoder": "builtin"},
    )
    write_scores_csv(
        d / "scores_extended.csv",
        ext,
        meta={"source": f"LFW-dev genuine pairs + {len(I1)} seeded imposter pairs within folds (seed {seed})"},
    )
    print(rep, len(ext))


def lfw_cross_quality(seed=0):
    """Numbers only: the dev pairs of folds 5–7 (persons no shipped head or α/β saw) on the
    original LFW photos, the second photo of each pair degraded as a whole photograph
    before detection (capture kind uniform, severity U(0.1, 1), seeded); photos whose
    degraded version loses its face stay as failed rows (ok=False)."""
    import tempfile

    from qmag_core.io.embeddings import Embeddings
    from qmag_core.io.pairs import Pairs, write_pairs_csv
    from qmag_core.quality.degrade import CAPTURE_KINDS, degrade_photo
    from qmag_core.vision.images import load_image

    d = OUT / "lfw_cross_quality"
    d.mkdir(parents=True, exist_ok=True)
    photos = SHARED / "lfw_photos" / "images"
    pairs = read_lfw_pairs(SHARED / "lfw_photos" / "pairs_dev.txt")
    m = np.isin(pairs.fold, [4, 5, 6])
    p1, p2, y, f = pairs.path1[m], pairs.path2[m], pairs.label[m], pairs.fold[m]
    rng = np.random.default_rng(seed)
    enc = load_encoder("builtin", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        deg_names = []
        for k, b in enumerate(p2):
            kind = CAPTURE_KINDS[int(rng.integers(len(CAPTURE_KINDS)))]
            sev = float(rng.uniform(0.1, 1.0))
            name = f"{b}#{kind}-{sev:.2f}"
            out = Path(tmp) / f"{k:04d}.png"
            Image.fromarray(degrade_photo(load_image(photos / b), kind, sev, rng)).save(out)
            deg_names.append(name)
        clean = sorted(set(p1.tolist()))
        e1 = embed_files(clean, photos, enc)
        e2 = embed_files([f"{k:04d}.png" for k in range(len(p2))], tmp, enc)
    emb = Embeddings(
        np.r_[e1.embeddings, e2.embeddings],
        np.r_[e1.quality, e2.quality],
        np.r_[e1.paths, np.asarray(deg_names)],
        np.r_[e1.ok, e2.ok],
        np.r_[
            e1.error, np.where(e2.ok, "", [f"{n.split('#')[0]}: no face after {n.split('#')[1]}" for n in deg_names])
        ],
        "builtin",
        {k: np.r_[e1.measures[k], e2.measures[k]] for k in e1.measures},
        enc.key,
    )
    save_embeddings(d / "embeddings.npz", emb)
    pp = Pairs(p1, np.asarray(deg_names), y, f - 4, np.arange(2, len(y) + 2), "pairs.csv")
    write_pairs_csv(d / "pairs.csv", pp)
    print(f"cross-quality: {len(y)} pairs, {int((~e2.ok).sum())} degraded photos without a face")


if __name__ == "__main__":
    parts = {"faces": faces, "lfw": lfw, "cross-quality": lfw_cross_quality}
    chosen = sys.argv[1:] or list(parts)  # e.g. python -m tools.make_sample_data lfw
    for name in chosen:
        parts[name]()
    print(sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file()) / 1e6, "MB")
