"""Build sample_data/ (what the dashboard opens with, offline).  Run from the repo root:

    python tools/make_sample_data.py

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from qmag_core.data import (
    ScoreTable,
    read_lfw_pairs,
    save_embeddings,  # noqa: E402
    scores_from_embeddings,
    write_scores_csv,
)
from qmag_core.embed import embed_files  # noqa: E402
from qmag_core.encoders import load_encoder  # noqa: E402
from qmag_core.scoring import pair_similarity  # noqa: E402

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
    # extended imposters: seeded cross-identity pairs within each fold
    rng = np.random.default_rng(seed)
    idx = {p: k for k, p in enumerate(emb.paths.tolist())}
    fold_imgs = {}
    for p1, p2, f in zip(pairs.path1, pairs.path2, pairs.fold, strict=True):
        fold_imgs.setdefault(int(f), set()).update((idx[p1], idx[p2]))
    ident = np.array([p.split("/")[0] for p in emb.paths.tolist()])
    I1, I2, F = [], [], []
    per = n_imposter // len(fold_imgs)
    for f, imgs in sorted(fold_imgs.items()):
        imgs = np.array(sorted(imgs))
        got = set()
        while len(got) < per:
            a, b = rng.choice(imgs, 2, replace=False)
            if ident[a] != ident[b] and emb.ok[a] and emb.ok[b]:
                got.add((min(a, b), max(a, b)))
        for a, b in sorted(got):
            I1.append(a)
            I2.append(b)
            F.append(f)  # noqa: E702
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


if __name__ == "__main__":
    faces()
    lfw()
    print(sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file()) / 1e6, "MB")
