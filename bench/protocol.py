"""The experiment protocol every bench and tool shares: where the real data lies, the
identity-disjoint splits of the LFW dev persons (folds 1–3 fit, fold 4 chooses, folds 5–7
test), cached degraded samples, cross-quality pairs, and the EDC ratio with its paired
bootstrap margins."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from qmag_core.encoders import BUILTIN_HEAD, load_encoder
from qmag_core.evaluation import edc as E
from qmag_core.evaluation import metrics as M
from qmag_core.evaluation.protocol import edc_ratio as edc_ratio_of
from qmag_core.io.pairs import read_lfw_pairs
from qmag_core.outputs import save_npz
from qmag_core.quality.utility import utility_samples

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PHOTOS = SHARED / "lfw_photos" / "images"
TRAIN_FOLDS, VAL_FOLDS, TEST_FOLDS = (0, 1, 2), (3,), (4, 5, 6)


def split_paths() -> dict:
    """Photo paths per split; asserts that no person crosses splits."""
    pairs = read_lfw_pairs(SHARED / "lfw_photos" / "pairs_dev.txt")

    def paths(folds):
        m = np.isin(pairs.fold, folds)
        return sorted(set(pairs.path1[m].tolist()) | set(pairs.path2[m].tolist()))

    out = {"train": paths(TRAIN_FOLDS), "val": paths(VAL_FOLDS), "test": paths(TEST_FOLDS)}
    ids = {k: {p.split("/")[0] for p in v} for k, v in out.items()}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"]), (
        "folds share persons"
    )
    return out


def code_key(path) -> str:
    """Fingerprint of a module's code: its syntax tree without docstrings and comments, so
    a documentation edit keeps the cache while any change of what the code does drops it."""
    import ast

    tree = ast.parse(Path(path).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if doc and isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return hashlib.blake2b(ast.dump(tree).encode(), digest_size=8).hexdigest()


def samples(enc, paths, family: str, n_deg: int, seed: int, cache: Path) -> dict:
    """Cached ``utility_samples`` of one family ('crop' or 'capture')."""
    import qmag_core.quality.degrade as D

    recipe = "ast-" + code_key(D.__file__)  # the degradations' code
    key = hashlib.blake2b(
        ("\n".join(paths) + f"|{family}|{n_deg}|{seed}|{enc.key}|{recipe}").encode(), digest_size=8
    ).hexdigest()
    f = cache / f"{family}-{key}.npz"
    if f.is_file():
        z = np.load(f)
        return {k: z[k] for k in z.files}
    t0 = time.time()
    d = utility_samples(enc, [str(PHOTOS / p) for p in paths], family=family, n_degraded=n_deg, seed=seed)
    print(
        f"  {family}: {len(paths)} photos -> {len(d['target'])} samples, {len(d['failed'])} without a face, "
        f"{d['lost']} degraded versions lost their face; {time.time() - t0:.0f} s",
        flush=True,
    )
    d = {k: np.asarray(v) for k, v in d.items() if k not in ("failed", "lost")}
    save_npz(f, **d)
    return d


def stack(parts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets of several families' samples, each clean photo once."""
    X, y = [parts[0]["features"]], [parts[0]["target"]]
    for p in parts[1:]:
        m = p["family"] != "clean"
        X.append(p["features"][m])
        y.append(p["target"][m])  # noqa: E702
    return np.concatenate(X), np.concatenate(y)


def cross_quality_pairs(n_deg: int = 2, seed: int = 0, n_imposter: int = 100_000, test: bool = False):
    """(s, q_min, labels, n photos) of cross-quality pairs of the folds 1–4 persons (see
    module doc); ``test``: the same pairs of the folds 5–7 persons (the benches' test)."""
    from qmag_core.quality.head import backbone_directions, head_quality, load_quality_head

    enc = load_encoder("builtin-raw", device="cpu")
    head = load_quality_head(BUILTIN_HEAD)[0]
    sp = split_paths()
    cache = Path.home() / ".cache" / "qmag" / "utility"
    cache.mkdir(parents=True, exist_ok=True)
    rows = []  # per sample: (photo path, is clean, unit, q)
    for split, sd in (("test", seed + 9),) if test else (("train", seed + 7), ("val", seed + 8)):
        for fam in ("crop", "capture"):
            d = samples(enc, sp[split], fam, n_deg, sd, cache)
            keep = np.ones(len(d["target"]), bool) if fam == "crop" else d["family"] != "clean"
            u = backbone_directions(enc, d["features"][keep])
            q = head_quality(head, d["features"][keep])
            paths = np.asarray(sp[split])[d["source"][keep]]
            rows.append((paths, d["family"][keep] == "clean", u / np.linalg.norm(u, axis=1, keepdims=True), q))
    photo = np.concatenate([r[0] for r in rows])
    clean = np.concatenate([r[1] for r in rows])
    unit = np.concatenate([r[2] for r in rows])
    q = np.concatenate([r[3] for r in rows])
    names = sorted(set(photo[clean].tolist()))
    pid = {p: k for k, p in enumerate(names)}
    clean_ix = np.full(len(names), -1)
    clean_ix[[pid[p] for p in photo[clean]]] = np.flatnonzero(clean)
    versions = [[] for _ in names]
    for k in np.flatnonzero(~clean):
        versions[pid[photo[k]]].append(k)
    ident = np.array([p.split("/")[0] for p in names])
    rng = np.random.default_rng(seed)
    by = {}
    for k, n in enumerate(ident):
        by.setdefault(n, []).append(k)
    gen = [(a, b) for ks in by.values() for a in ks for b in ks if a != b]
    a_i = rng.integers(len(names), size=3 * n_imposter)
    b_i = rng.integers(len(names), size=3 * n_imposter)
    imp = np.c_[a_i, b_i][ident[a_i] != ident[b_i]][:n_imposter]
    ab = np.r_[np.asarray(gen), imp]
    y = np.r_[np.ones(len(gen), bool), np.zeros(len(imp), bool)]
    va = clean_ix[ab[:, 0]]
    vb = np.array([versions[b][int(rng.integers(len(versions[b])))] for b in ab[:, 1]])
    s = (unit[va] * unit[vb]).sum(1)
    return s, np.minimum(q[va], q[vb]), y, len(names)


def edc_ratio(s, y, qual, failed_y, thr, seed=0, at=0.2):
    """(EDC ratio at ``at`` per :func:`qmag_core.evaluation.protocol.edc_ratio`, FNMR at 0%, FNMR at ``at``);
    failed pairs count as non-matches and go first."""
    s_all, y_all, q_all = M.with_failures(s, y, failed_y, qual)
    e = E.edc(s_all, y_all, q_all, threshold=thr, discard=(0.0, at), n_random=200, random_state=seed)
    return edc_ratio_of(e, at), float(e.fnmr[0]), float(e.fnmr[1])


def margins(s_ok, y_ok, pair_qs: dict, failed_y, thr, seed=0, n_boot=1000, at=0.2, clusters=None) -> None:
    """How far the crop-trained head lies below each model-free baseline (failures first),
    with a paired bootstrap 95% CI over the pairs (failed ones included).  Per resample the
    ratio's denominator is the resample's FNMR at 0% discarded, which the median of random
    discards estimates (it is within 0.2 pt of it here); the threshold stays the full set's."""
    head = next(k for k in pair_qs if k.startswith("utility head, crop"))
    bases = [k for k in pair_qs if k.startswith(("sharpness", "MTCNN", "raw", "inter-eye"))]
    s_all, y_all, _ = M.with_failures(s_ok, y_ok, failed_y)
    qs = {k: M.with_failures(s_ok, y_ok, failed_y, pair_qs[k])[2] for k in [head, *bases]}
    n = s_all.size
    k_disc = int(np.floor(at * n))

    def ratio(idx, q):
        miss = y_all[idx] & ~(s_all[idx] >= thr)  # failed pairs have s = NaN: a false non-match
        f0 = miss.sum() / max(1, y_all[idx].sum())
        keep = np.argsort(q[idx], kind="stable")[k_disc:]
        f20 = miss[keep].sum() / max(1, y_all[idx][keep].sum())
        return f20 / f0 if f0 else np.nan

    rng = np.random.default_rng(seed + 11)
    # rows of each pair (all its degradation draws) in the with_failures order
    cid = np.arange(n) if clusters is None else np.asarray(clusters)
    members = np.argsort(cid, kind="stable").reshape(np.unique(cid).size, -1)
    boots = [members[rng.integers(0, len(members), len(members))].ravel() for _ in range(n_boot)]
    full = np.arange(n)
    print(f"\nmargin below each baseline of '{head.split(' (')[0]}', failures first (paired bootstrap, {n_boot}):")
    for b in bases:
        d0 = ratio(full, qs[b]) - ratio(full, qs[head])
        ds = np.array([ratio(i, qs[b]) - ratio(i, qs[head]) for i in boots])
        lo, hi = np.nanpercentile(ds, [2.5, 97.5])
        print(f"  {b:<40} {d0:+.3f}  95% CI [{lo:+.3f}, {hi:+.3f}]")
