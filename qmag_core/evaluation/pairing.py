"""Pairs over embeddings: joining pairs to embedding rows, cosines + qualities of pairs,
and the one seeded pair sampler (:func:`sample_pairs`, on identity labels) that the pair
maker for folder-per-identity image sets, the benches and the sample-data tool share."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import QMagError
from ..io.common import IMAGE_EXTENSIONS, norm_path
from ..io.embeddings import Embeddings
from ..io.pairs import Pairs
from ..io.scores import FailedPairs, ScoreTable
from .measures import pair_measures


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
        q = norm_path(pth)
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
    from ..scores.scoring import pair_similarity

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
    if emb.encoder_key:
        meta["encoder_key"] = emb.encoder_key
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


# ---------------------------------------------------------------------- pair sampler
def _all_genuine(identity: np.ndarray) -> np.ndarray:
    """Every same-identity index pair (i < j in sorted-identity order), (G, 2) int64."""
    order = np.argsort(identity, kind="stable")
    sorted_ids = identity[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    ends = np.r_[starts[1:], len(order)]
    gen = []
    for a0, a1 in zip(starts, ends, strict=True):
        if a1 - a0 > 1:
            a, b = np.triu_indices(a1 - a0, 1)
            gen.append(np.c_[order[a0 + a], order[a0 + b]])
    return np.concatenate(gen).astype(np.int64) if gen else np.zeros((0, 2), np.int64)


def _distinct_imposters(identity: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct unordered index pairs of two identities, uniformly at random, (n, 2)."""
    got = np.zeros((0, 2), np.int64)
    while len(got) < n:
        m = 2 * (n - len(got)) + 16
        c = rng.integers(0, identity.size, (m, 2))
        c = np.sort(c[identity[c[:, 0]] != identity[c[:, 1]]], axis=1)
        allp = np.r_[got, c]
        _, first = np.unique(allp, axis=0, return_index=True)
        got = allp[np.sort(first)][:n]  # first draws win: a uniform sample without replacement
    return got


def sample_pairs(
    identity,
    *,
    n_genuine: int,
    n_imposter: int,
    rng: np.random.Generator,
    groups=None,
    exact_genuine: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The seeded pair sampler.  ``identity`` (N,) labels N items (images).

    Genuine pairs: every same-identity pair when there are at most ``n_genuine`` (an
    error instead with ``exact_genuine``), else a seeded uniform subset of them.
    Imposter pairs: ``n_imposter`` distinct pairs of two identities, uniformly at
    random (an error when fewer exist).  With ``groups`` (N,), e.g. identity-disjoint
    folds, pairs stay within a group and the counts are split evenly over the groups
    in sorted order.  Returns ``ij`` (P, 2) item indices and ``is_genuine`` (P,) bool,
    each group's genuine pairs then its imposters."""
    identity = np.asarray(identity)
    groups = np.zeros(identity.size, np.int64) if groups is None else np.asarray(groups)
    labels = np.unique(groups)
    share = lambda n: np.full(labels.size, n // labels.size) + (np.arange(labels.size) < n % labels.size)  # noqa: E731
    ij, gen = [], []
    for g, n_g, n_i in zip(labels, share(n_genuine), share(n_imposter), strict=True):
        members = np.flatnonzero(groups == g)
        ids = identity[members]
        where = f"fold {g}: " if labels.size > 1 else ""
        all_gen = _all_genuine(ids)
        if n_g > len(all_gen) and exact_genuine:
            raise QMagError(f"{where}{n_g} genuine pairs requested but only {len(all_gen)} exist; ask for fewer")
        if len(all_gen) > n_g:
            all_gen = all_gen[np.sort(rng.choice(len(all_gen), n_g, replace=False))]
        _, counts = np.unique(ids, return_counts=True)
        n_possible = (int(counts.sum()) ** 2 - int((counts.astype(np.int64) ** 2).sum())) // 2
        if n_i > n_possible:
            raise QMagError(f"{where}{n_i} imposter pairs requested but only {n_possible} exist; ask for fewer")
        imp = _distinct_imposters(ids, int(n_i), rng)
        ij += [members[all_gen], members[imp]]
        gen += [np.ones(len(all_gen), bool), np.zeros(len(imp), bool)]
    return np.concatenate(ij).reshape(-1, 2), np.concatenate(gen)


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
    imposter pairs (images of two identities of that fold), without duplicates
    (:func:`sample_pairs`).  Paths are relative to ``images``.
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
    paths = np.array([p for m in names for p in ids[m]])
    identity = np.repeat(np.arange(names.size), [len(ids[m]) for m in names])
    ij, gen = sample_pairs(
        identity, n_genuine=n_genuine, n_imposter=n_imposter, rng=rng, groups=fold_of[identity], exact_genuine=True
    )
    return Pairs(
        paths[ij[:, 0]],
        paths[ij[:, 1]],
        gen.astype(np.int8),
        fold_of[identity[ij[:, 0]]].astype(np.int64),
        np.arange(2, len(ij) + 2, dtype=np.int64),
        str(root),
    )
