"""Pairs over embeddings: joining pairs to embedding rows, cosines + qualities of pairs, and a seeded "
"pair maker for folder-per-identity image sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import QMagError
from .io.common import IMAGE_EXTENSIONS, _norm_path
from .io.embeddings import Embeddings
from .io.pairs import Pairs
from .io.scores import FailedPairs, ScoreTable
from .quality import pair_measures


def pairs_to_indices(pairs: Pairs, emb: Embeddings) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs into ``emb`` for ``pairs`` by path; returns ``(idx (n,2), found (n,))``.
    Paths match exactly or by their trailing components (e.g. ``images/a/a_0001.jpg``
    matches ``a/a_0001.jpg``)."""
    lut = emb.index_of()
    suffix_lut: dict[str, int] = {}
    for path, k in lut.items():
        parts = path.split("/")
        for j in range(1, len(parts)):
            suffix_lut.setdefault("/".join(parts[j:]), k)

    def find(pth: str) -> int:
        q = _norm_path(pth)
        if q in lut:
            return lut[q]
        if q in suffix_lut:
            return suffix_lut[q]
        parts = q.split("/")
        for j in range(1, len(parts)):
            t = "/".join(parts[j:])
            if t in lut:
                return lut[t]
        return -1

    i1 = np.fromiter((find(x) for x in pairs.path1.tolist()), np.int64, len(pairs))
    i2 = np.fromiter((find(x) for x in pairs.path2.tolist()), np.int64, len(pairs))
    found = (i1 >= 0) & (i2 >= 0)
    return np.column_stack([i1, i2]), found


def scores_from_embeddings(emb: Embeddings, pairs: Pairs, *, encoder: str | None = None):
    """A :class:`ScoreTable` for the pairs whose two images were embedded successfully,
    plus a dict reporting the pairs left out (missing image or failed embedding)."""
    from .scoring import pair_similarity

    idx, found = pairs_to_indices(pairs, emb)
    safe = np.where(found[:, None], idx, 0)
    ps = pair_similarity(emb.embeddings, safe, ok=emb.ok, on_invalid="mask")
    valid = ps.valid & found
    n = len(pairs)
    report = {
        "n_pairs": n,
        "n_scored": int(valid.sum()),
        "n_missing_image": int((~found).sum()),
        "n_failed_embedding": int((found & ~ps.valid).sum()),
        "fta_rate": float((~valid).sum() / n) if n else 0.0,
        "n_failed_genuine": int((~valid & (pairs.label == 1)).sum()),
        "n_failed_imposter": int((~valid & (pairs.label == 0)).sum()),
        "failed_lines": pairs.line[~valid][:20].tolist() if pairs.line.size else [],
    }
    meta = {"encoder": encoder or emb.encoder or ""}
    lines = pairs.line if pairs.line.size == n else np.zeros(n, np.int64)
    failed = FailedPairs(pairs.label[~valid].astype(np.int8), pairs.fold[~valid].astype(np.int64), lines[~valid])
    extra = {k: v[valid] for k, v in pair_measures(emb.measures, safe).items()}
    t = ScoreTable(
        ps.s[valid],
        ps.q1[valid],
        ps.q2[valid],
        pairs.label[valid],
        pairs.fold[valid],
        meta,
        extra,
        pairs.source,
        failed,
    )
    return t, report


# ---------------------------------------------------------------------- pair maker
def _list_identities(root: Path) -> dict[str, list[str]]:
    ids = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f.name for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            ids[d.name] = [f"{d.name}/{f}" for f in files]
    return ids


def make_pairs(
    images: str | os.PathLike, *, n_genuine: int, n_imposter: int, n_folds: int = 10, random_state=0
) -> Pairs:
    """Seeded pairs for a folder-per-identity image set.

    Identities are assigned to ``n_folds`` identity-disjoint folds (seeded); each fold
    gets an equal share of genuine pairs (two distinct images of one identity) and
    imposter pairs (images of two identities of that fold), without duplicates.
    Paths are relative to ``images``.
    """
    root = Path(images)
    if not root.is_dir():
        raise QMagError(f"{root}: not a folder (expected one sub-folder per identity)")
    ids = _list_identities(root)
    if len(ids) < 2 * n_folds:
        raise QMagError(f"{root}: {len(ids)} identities with images; {n_folds} folds need at least {2 * n_folds}")
    rng = np.random.default_rng(random_state)
    names = np.array(sorted(ids))
    fold_of = np.empty(names.size, np.int64)
    fold_of[rng.permutation(names.size)] = np.arange(names.size) % n_folds
    gen_per = np.full(n_folds, n_genuine // n_folds)
    gen_per[: n_genuine % n_folds] += 1
    imp_per = np.full(n_folds, n_imposter // n_folds)
    imp_per[: n_imposter % n_folds] += 1
    P1, P2, L, F = [], [], [], []
    for f in range(n_folds):
        members = names[fold_of == f]
        for label, pairs in (
            (1, _genuine_pairs(ids, members, gen_per[f], rng, f)),
            (0, _imposter_pairs(ids, members, imp_per[f], rng, f)),
        ):
            P1 += [a for a, _ in pairs]
            P2 += [b for _, b in pairs]
            L += [label] * len(pairs)
            F += [f] * len(pairs)
    n = len(L)
    return Pairs(
        np.asarray(P1, str),
        np.asarray(P2, str),
        np.asarray(L, np.int8),
        np.asarray(F, np.int64),
        np.arange(2, n + 2, dtype=np.int64),
        str(root),
    )


def _genuine_pairs(ids: dict, members, n: int, rng, f: int) -> list[tuple[str, str]]:
    """``n`` distinct same-identity image pairs of a fold's ``members``, sorted; identities
    drawn in proportion to their number of image pairs."""
    sizes = np.array([len(ids[m]) for m in members])
    multi = members[sizes >= 2]
    n_possible = int(sum(len(ids[m]) * (len(ids[m]) - 1) // 2 for m in multi))
    if n > n_possible:
        raise QMagError(f"fold {f}: {n} genuine pairs requested but only {n_possible} exist; lower --genuine")
    wsize = np.array([len(ids[m]) for m in multi], float)
    w = wsize * (wsize - 1)
    w = w / w.sum() if w.sum() > 0 else w
    got: set[tuple[str, str]] = set()
    while len(got) < n and n > 0:
        for m in rng.choice(multi, size=2 * (n - len(got)) + 8, p=w):
            a, b = rng.choice(len(ids[m]), 2, replace=False)
            a, b = sorted((int(a), int(b)))
            got.add((ids[m][a], ids[m][b]))
            if len(got) == n:
                break
    return sorted(got)


def _imposter_pairs(ids: dict, members, n: int, rng, f: int) -> list[tuple[str, str]]:
    """``n`` distinct pairs of images of two different identities among ``members``, sorted."""
    sizes = np.array([len(ids[m]) for m in members])
    n_possible = (sizes.sum() ** 2 - (sizes**2).sum()) // 2
    if n > n_possible:
        raise QMagError(f"fold {f}: {n} imposter pairs requested but only {n_possible} exist; lower --imposter")
    imps: set[tuple[str, str]] = set()
    while len(imps) < n:
        need = n - len(imps)
        i1 = rng.integers(0, members.size, 2 * need + 8)
        i2 = rng.integers(0, members.size, 2 * need + 8)
        for x, y in zip(i1, i2, strict=True):
            if x == y:
                continue
            a = ids[members[x]][rng.integers(len(ids[members[x]]))]
            b = ids[members[y]][rng.integers(len(ids[members[y]]))]
            imps.add(tuple(sorted((a, b))))
            if len(imps) == n:
                break
    return sorted(imps)
