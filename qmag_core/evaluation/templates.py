"""Template verification: the IJB-B / IJB-C 1:1 protocol as distributed with insightface.

A *template* is a set of images of one subject, grouped into *media* (the frames of one
video or one still).  Features are pooled per media, then per template, and templates
are compared pair by pair.  Layout of a protocol folder ``DIR``::

    DIR/meta/<name>_face_tid_mid.txt         image  template-id  media-id      (one per image)
    DIR/meta/<name>_template_pair_label.txt  template-id  template-id  label (1 same subject)
    DIR/meta/<name>_name_5pts_score.txt      image  x1 y1 … x5 y5  detector-score   (optional)
    DIR/loose_crop/<image>

Pooling rules (each named in every report):

``mean``      unit vectors; mean per media, mean of the media per template; the
              template's q is the mean of its media's mean q.
``magface``   raw features (length = MagFace quality) averaged per media and per
              template, so longer (better) features weigh more; q = the length of the
              pooled feature.
``qmagface``  quality-weighted: per media f = Σ qᵢ·uᵢ (uᵢ unit vectors) and
              q = Σ qᵢ² / Σ qᵢ; the same rule again over the media of a template.
``softmax``   weight concentrated on the best images: per media f = Σ wᵢ·uᵢ with
              wᵢ = softmax(qᵢ / T) and q = Σ wᵢ·qᵢ; the same again over the media.
              T (``temperature``, in q units) is chosen on development data
              (:data:`SOFTMAX_T`; ``qmag evaluate --ijb --pool-temperature``): T → ∞ is
              ``mean``, T → 0 keeps the best image only.  With q ≈ 100 ± a few, the
              linear weights of ``qmagface`` are nearly the plain mean; softmax is not.

Pairs are scored with the cosine of the pooled directions and with QMagFace on the
templates' q.  TAR is reported at FAR 1e-6 … 1e-1 in both conventions in use: the
highest TAR whose FAR ≤ the target (``tar_at_far``) and the TAR at the ROC point whose
FAR is closest to the target (``tar_at_far_closest``, as the insightface and MagFace
scripts compute it).  A pair with a template that has no usable image counts as a
non-match.  Scoring runs in chunks of pairs, so IJB-C's 15.7 M pairs fit in bounded
memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import QMagError
from ..io.templates import TemplateProtocol, read_protocol
from . import metrics as M

__all__ = [
    "POOLINGS",
    "SOFTMAX_T",
    "TAR_FARS",
    "TemplateProtocol",
    "Templates",
    "read_protocol",
    "protocol_features",
    "pool_templates",
    "score_template_pairs",
    "tar_at_far",
    "evaluate_templates",
    "format_template_report",
    "template_table",
]

POOLINGS = ("mean", "magface", "qmagface", "softmax")
#: softmax pooling's temperature in q units of ``builtin`` (bench/bench_pooling.py chose it
#: on LFW dev folds 1–4 persons)
SOFTMAX_T = 1.0
TAR_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


# ------------------------------------------------------------------------ pooling
@dataclass(frozen=True)
class Templates:
    """Pooled templates: ``ids`` (T,) sorted, ``features`` (T, D) unit directions,
    ``quality`` (T,), ``ok`` (T,) False where no image of the template was usable."""

    ids: np.ndarray
    features: np.ndarray
    quality: np.ndarray
    ok: np.ndarray
    pooling: str


def _row_norms(x: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """L2 norms (n,) float64 of the rows of ``x``, a chunk at a time (no full-size copy)."""
    out = np.empty(len(x), np.float64)
    for a in range(0, len(x), chunk):
        c = np.asarray(x[a : a + chunk], np.float64)
        out[a : a + chunk] = np.sqrt(np.einsum("ij,ij->i", c, c))
    return out


def _weighted_sum(group: np.ndarray, n_groups: int, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Σ wᵢ·xᵢ per group (G, D) as one sparse product: no scaled copy of ``x`` is made."""
    from scipy import sparse

    agg = sparse.csr_matrix((w.astype(x.dtype), (group, np.arange(group.size))), shape=(n_groups, group.size))
    return np.asarray(agg @ x)


def _softmax_weights(group, n_groups: int, q: np.ndarray, use: np.ndarray, temperature: float) -> np.ndarray:
    """Per-group softmax of q / T over the used items (n,), summing to 1 in each group."""
    qs = np.where(use, q, -np.inf)
    top = np.full(n_groups, -np.inf)
    np.maximum.at(top, group, qs)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.where(use, np.exp((qs - top[group]) / temperature), 0.0)
    tot = np.bincount(group, e, n_groups)
    return e / np.where(tot > 0, tot, 1.0)[group]


def _pool_level(
    group, n_groups: int, x: np.ndarray, q: np.ndarray, use: np.ndarray, rule: str, unit: bool, temperature: float = 1.0
):
    """One pooling level: items (n, D) with quality (n,) → groups (G, D), (G,).  Items
    with ``use`` False weigh 0; ``unit`` turns the items into unit vectors first."""
    norms = _row_norms(x) if unit else None
    w = np.where(use, 1.0 / np.where(norms > 0, norms, 1.0), 0.0) if unit else use.astype(np.float64)
    qu = np.where(use, q, 0.0)
    if rule == "softmax":
        sw = _softmax_weights(group, n_groups, q, use, temperature)
        return _weighted_sum(group, n_groups, w * sw, x), np.bincount(group, sw * qu, n_groups)
    if rule == "qmagface":
        sq = np.bincount(group, qu, n_groups)
        return _weighted_sum(group, n_groups, w * qu, x), np.bincount(group, qu * qu, n_groups) / sq
    count = np.bincount(group, use.astype(np.float64), n_groups)
    return _weighted_sum(group, n_groups, w / count[group], x), np.bincount(group, qu, n_groups) / count


def pool_templates(features, ok, tid, mid, pooling: str = "mean", *, temperature: float = SOFTMAX_T) -> Templates:
    """Pool raw image ``features`` (N, D) (length = quality) into templates by media
    ``mid`` and template ``tid`` (N,) under one of :data:`POOLINGS`; images with
    ``ok`` False or a non-finite / zero feature are left out.  ``temperature``: the
    softmax rule's T in q units."""
    if pooling not in POOLINGS:
        raise QMagError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise QMagError(f"the softmax pooling temperature must be a positive number, got {temperature}")
    x = np.asarray(features, np.float32)  # float32 throughout, no full-size copies: IJB-C is 469k × 512
    q = _row_norms(x)
    use = np.asarray(ok, bool) & np.isfinite(q) & (q > 0)
    if not np.isfinite(q).all():  # weight 0 does not cancel NaN in a sum: zero those rows
        x = np.where(use[:, None], x, np.float32(0))
    ids = np.unique(np.asarray(tid, np.int64))
    media, m_of_img = np.unique(np.c_[tid, mid], axis=0, return_inverse=True)
    m_of_img = m_of_img.ravel()
    with np.errstate(invalid="ignore", divide="ignore"):  # media / templates without a usable image: NaN
        # image level: unit vectors for mean and qmagface, raw features for magface
        fm, qm = _pool_level(m_of_img, len(media), x, q, use, pooling, pooling != "magface", temperature)
        m_use = np.bincount(m_of_img, use, len(media)) > 0
        fm[~m_use], qm[~m_use] = 0, 0
        # media level: media means as they are for mean and magface, unit directions for qmagface
        t_of_media = np.searchsorted(ids, media[:, 0])
        unit_media = pooling in ("qmagface", "softmax")
        ft, qt = _pool_level(t_of_media, ids.size, fm, qm, m_use, pooling, unit_media, temperature)
    norm = np.nan_to_num(_row_norms(ft))
    if pooling == "magface":
        qt = norm  # the MagFace magnitude of the pooled feature
    good = (np.bincount(t_of_media, m_use, ids.size) > 0) & (norm > 0)
    unit = np.where(good[:, None], ft / np.where(norm > 0, norm, 1)[:, None], np.nan)
    return Templates(ids, unit.astype(np.float32), np.where(good, qt, np.nan), good, pooling)


def score_template_pairs(t: Templates, pairs: npt.ArrayLike, *, chunk: int | None = None, method: str = "auto"):
    """Cosine ``s`` (P,), ``q_min`` (P,) and ``ok`` (P,) of template-id pairs (P, 2).

    ``method``: ``gather`` fetches both templates of ``chunk`` pairs at a time (default
    16 M floats per side; memory-bound); ``blocks`` multiplies a block of templates by
    all of them (≤ 64 M similarities per block) and reads each pair's entry — faster when
    the pairs are dense, as in IJB-C (15.7 M of 267 M possible); ``auto`` picks
    ``blocks`` when there are more than T²/64 pairs."""
    pairs = np.asarray(pairs, np.int64)
    pos = np.clip(np.searchsorted(t.ids, pairs), 0, t.ids.size - 1)
    ok = (t.ids[pos] == pairs).all(axis=1) & t.ok[pos].all(axis=1)
    f = np.nan_to_num(t.features)
    n_t = len(f)
    if method == "auto":
        method = "blocks" if len(pairs) > n_t * n_t / 64 else "gather"
    s = _scores_blocks(f, pos) if method == "blocks" else _scores_gather(f, pos, chunk)
    q = np.nan_to_num(t.quality, nan=0.0)
    return np.where(ok, np.clip(s, -1, 1), np.nan), np.where(ok, np.minimum(q[pos[:, 0]], q[pos[:, 1]]), np.nan), ok


def _scores_gather(f: np.ndarray, pos: np.ndarray, chunk: int | None) -> np.ndarray:
    chunk = chunk or max(1024, (16 << 20) // max(f.shape[1], 1))
    s = np.empty(len(pos), np.float64)
    for a in range(0, len(pos), chunk):
        p = pos[a : a + chunk]
        s[a : a + chunk] = np.einsum("ij,ij->i", f[p[:, 0]], f[p[:, 1]])
    return s


#: similarities computed per block by the ``blocks`` scorer (float32: 256 MB)
_BLOCK_FLOATS = 64 << 20


def _scores_blocks(f: np.ndarray, pos: np.ndarray) -> np.ndarray:
    s = np.empty(len(pos), np.float64)
    order = np.argsort(pos[:, 0], kind="stable")
    first = pos[order, 0]
    rows = max(1, _BLOCK_FLOATS // max(len(f), 1))
    for a in range(0, len(f), rows):
        lo, hi = np.searchsorted(first, [a, a + rows])
        if lo == hi:
            continue
        sim = f[a : a + rows] @ f.T
        sel = order[lo:hi]
        s[sel] = sim[pos[sel, 0] - a, pos[sel, 1]]
    return s


def template_table(protocol: TemplateProtocol, features, ok, pooling: str = "qmagface", *, meta=None):
    """The template pairs as a :class:`~qmag_core.io.scores.ScoreTable` (s, q1, q2 = the two
    templates' q, label) under one pooling rule, so everything that reads score tables
    (training α/β, curves, the dashboard) works on templates; pairs with an unusable
    template become the table's failed pairs."""
    from ..io.scores import FailedPairs, ScoreTable

    t = pool_templates(features, ok, protocol.tid, protocol.mid, pooling)
    s, _, good = score_template_pairs(t, protocol.pairs)
    pos = np.clip(np.searchsorted(t.ids, protocol.pairs), 0, t.ids.size - 1)
    q = t.quality[pos]
    n = len(protocol.label)
    fold = np.full(n, -1, np.int64)
    failed = FailedPairs(protocol.label[~good], fold[~good], np.flatnonzero(~good) + 1)
    info = {"encoder": "", **(meta or {}), "pooling": pooling, "protocol": protocol.name}
    return ScoreTable(
        s[good], q[good, 0], q[good, 1], protocol.label[good], fold[good], info, {}, protocol.source, failed
    )


# ------------------------------------------------------------------------ metrics
def tar_at_far(genuine, imposter, fars=TAR_FARS, *, roc_points: int = 200) -> dict:
    """TAR at each FAR in both conventions, the EER and a decimated ROC (keys by
    :func:`~qmag_core.evaluation.metrics.fmr_key`; null with a reason where there are fewer than
    1/FAR imposter pairs)."""
    curve = M.roc(genuine, imposter)
    tpr, fmr = curve.tpr, curve.fmr
    le, closest, why = {}, {}, {}
    for f in fars:
        key = M.fmr_key(f)
        if not M.supports_fmr(curve.n_imposter, f):
            le[key] = closest[key] = None
            why[key] = f"{curve.n_imposter:,} imposter pairs cannot measure FAR {f:g} (needs {int(np.ceil(1 / f)):,})"
            continue
        le[key] = float(tpr[np.searchsorted(fmr, f, side="right") - 1])
        closest[key] = float(tpr[int(np.argmin(np.abs(fmr - f)))])
    dec = curve.decimate(roc_points)
    return {
        "tar_at_far": le,
        "tar_at_far_closest": closest,
        "tar_at_far_null_reason": why,
        "eer": curve.eer().value,
        "roc": {"far": dec.fmr.tolist(), "tar": dec.tpr.tolist()},
    }


def evaluate_templates(
    protocol: TemplateProtocol,
    features,
    ok,
    *,
    params=None,
    poolings=POOLINGS,
    fars=TAR_FARS,
    chunk=None,
    temperature: float = SOFTMAX_T,
) -> dict:
    """The template-verification report: for each pooling, cosine and (with ``params``)
    QMagFace scores; a pair with an unusable template counts as a non-match.
    ``temperature``: the softmax pooling's T (q units)."""
    from ..scores.scoring import qmagface_score

    y = protocol.label.astype(bool)
    rep = {
        "protocol": protocol.name,
        "n_images": int(len(protocol.images)),
        "n_images_failed": int((~np.asarray(ok, bool)).sum()),
        "n_templates": protocol.n_templates,
        "n_pairs": int(len(y)),
        "n_genuine": int(y.sum()),
        "n_imposter": int((~y).sum()),
        "params": None if params is None else {"alpha": params.alpha, "beta": params.beta, "mode": params.mode},
        "pooling": {},
        "softmax_temperature": float(temperature),
    }
    for rule in poolings:
        t = pool_templates(features, ok, protocol.tid, protocol.mid, rule, temperature=temperature)
        s, q_min, good = score_template_pairs(t, protocol.pairs, chunk=chunk)
        scores = {"cosine": s}
        if params is not None:
            scores["qmagface"] = np.where(
                good, qmagface_score(np.nan_to_num(s), np.nan_to_num(q_min), params.alpha, params.beta), np.nan
            )
        block = {"n_pairs_failed": int((~good).sum())}
        for name, sc in scores.items():
            sc = np.where(good, sc, M.FAILED_SCORE)  # failed pairs never match
            block[name] = tar_at_far(sc[y], sc[~y], fars)
        rep["pooling"][rule] = block
    return rep


def format_template_report(rep: dict) -> str:
    """The report as a text table: one row per pooling and score."""
    fars = list(next(iter(rep["pooling"].values()))["cosine"]["tar_at_far"])
    head = f"{'pooling':9s} {'score':9s} " + " ".join(f"{'TAR@' + k:>12s}" for k in fars) + f" {'EER':>8s}"
    lines = [
        f"{rep['protocol']}: {rep['n_templates']:,} templates, {rep['n_pairs']:,} pairs "
        f"({rep['n_genuine']:,} genuine), {rep['n_images']:,} images ({rep['n_images_failed']:,} failed)",
        head,
    ]
    for rule, b in rep["pooling"].items():
        for name in ("cosine", "qmagface"):
            if name in b:
                r = b[name]
                cells = " ".join(f"{'n/a' if v is None else f'{100 * v:.2f}%':>12s}" for v in r["tar_at_far"].values())
                lines.append(f"{rule:9s} {name:9s} {cells} {100 * r['eer']:7.3f}%")
    lines.append("TAR@FAR: highest TAR with FAR <= target (JSON also has tar_at_far_closest, the nearest ROC point)")
    return "\n".join(lines)


def protocol_features(emb, protocol: TemplateProtocol) -> tuple[np.ndarray, np.ndarray]:
    """Raw features (N, D) float32 and ok (N,) in protocol order from precomputed
    :class:`~qmag_core.io.embeddings.Embeddings`: matched by image name when it has paths, else
    row by row (then it must have exactly one row per image)."""
    from .pairing import pairs_to_indices

    n = len(protocol.images)
    named = emb.paths.size and not all(p == str(k) for k, p in enumerate(emb.paths.tolist()[:3]))
    if named:
        from ..io.pairs import Pairs

        fake = Pairs(protocol.images, protocol.images, np.zeros(n, np.int8), np.zeros(n, np.int64), np.arange(n), "")
        idx, found = pairs_to_indices(fake, emb)
        if not found.all():
            miss = protocol.images[~found]
            raise QMagError(f"{int((~found).sum())} protocol images have no features (first: {miss[0]!r})")
        rows = idx[:, 0]
    elif len(emb.ok) == n:
        rows = np.arange(n)
    else:
        raise QMagError(f"the features have {len(emb.ok)} rows and no image names; the protocol has {n} images")
    return np.asarray(emb.embeddings, np.float32)[rows], np.asarray(emb.ok, bool)[rows]
