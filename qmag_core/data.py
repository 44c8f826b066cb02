"""Data formats: embeddings (.npz/.npy/MagFace feat.list), pairs (LFW pairs.txt, CSV),
score tables (CSV) and a seeded pair maker for folder-per-identity image sets.

Every reader validates vectorised and raises :class:`~qmag_core.errors.DataFormatError`
naming the file, the 1-based line and what was expected.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .errors import DataFormatError, QMagError
from .quality import pair_measures
from .safeio import atomic_write, load_npy, load_npz, read_head, read_text, save_npz

__all__ = [
    "Embeddings",
    "Pairs",
    "ScoreTable",
    "FailedPairs",
    "save_embeddings",
    "load_embeddings",
    "read_feat_list",
    "write_feat_list",
    "read_lfw_pairs",
    "read_pairs_csv",
    "write_pairs_csv",
    "read_pairs",
    "confine_pairs",
    "read_scores_csv",
    "write_scores_csv",
    "add_scores_column",
    "parse_labels",
    "make_pairs",
    "pairs_to_indices",
    "scores_from_embeddings",
    "sha256_file",
    "IMAGE_EXTENSIONS",
    "MAX_QUALITY",
    "MAX_FOLD",
]

#: a quality (embedding length) above this is refused as implausible
MAX_QUALITY = 1e6
#: fold ids must lie in [-1, MAX_FOLD]
MAX_FOLD = 1_000_000

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".ppm", ".tif", ".tiff")

_POS = {"1", "1.0", "+1", "true", "t", "yes", "y", "same", "genuine", "match", "matched", "mated"}
_NEG = {"0", "0.0", "-1", "-1.0", "false", "f", "no", "n", "different", "diff", "imposter",
        "impostor", "mismatch", "mismatched", "nonmated", "non-mated"}


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _norm_path(p: str) -> str:
    p = p.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


# ---------------------------------------------------------------------- embeddings
@dataclass
class Embeddings:
    """Raw embeddings of images, one row per image.

    Attributes
    ----------
    embeddings : (N, D) float32, raw (not normalised); failed rows hold NaN
    quality : (N,) float32, the L2 norm of each row (NaN when failed)
    paths : (N,) str, image paths as given
    ok : (N,) bool
    error : (N,) str, '' when ok
    encoder : str, encoder id ('' when unknown)
    measures : {name: (N,) float64}, model-free quality measures per image
        (:mod:`qmag_core.quality`; NaN where unknown)
    """

    embeddings: npt.NDArray[np.float32]
    quality: npt.NDArray[np.float32]
    paths: npt.NDArray[np.str_]
    ok: npt.NDArray[np.bool_]
    error: npt.NDArray[np.str_]
    encoder: str = ""
    measures: dict = field(default_factory=dict)

    def __post_init__(self):
        e = np.asarray(self.embeddings)
        n = e.shape[0] if e.ndim == 2 else -1
        if e.ndim != 2:
            raise QMagError(f"embeddings must have shape (N, D), got {e.shape}")
        for name in ("quality", "paths", "ok", "error"):
            v = np.asarray(getattr(self, name))
            if v.shape != (n,):
                raise QMagError(f"'{name}' must have shape ({n},), got {v.shape}")
        for name, v in self.measures.items():
            if np.asarray(v).shape != (n,):
                raise QMagError(f"measure '{name}' must have shape ({n},), got {np.asarray(v).shape}")

    @classmethod
    def from_array(cls, e: npt.ArrayLike, paths=None, encoder: str = "") -> "Embeddings":
        """Wrap raw (N, D) real vectors; rows with zero norm or NaN/inf are marked failed."""
        e = np.asarray(e)
        if e.dtype.kind not in "fiu":
            raise QMagError(f"embeddings must be real numbers (float or int), got dtype {e.dtype}")
        e = e.astype(np.float32)
        if e.ndim != 2:
            raise QMagError(f"embeddings must have shape (N, D), got {e.shape}")
        n = e.shape[0]
        finite = np.isfinite(e).all(axis=1)
        norm = np.linalg.norm(np.where(finite[:, None], e, 0), axis=1).astype(np.float32)
        ok = finite & (norm > 0)
        err = np.where(~finite, "non-finite embedding", np.where(norm > 0, "", "zero-norm embedding"))
        e = e.copy()
        e[~ok] = np.nan
        q = np.where(ok, norm, np.nan).astype(np.float32)
        p = np.asarray([str(i) for i in range(n)] if paths is None else [str(x) for x in paths])
        return cls(e, q, p.astype(str), ok, err.astype(str), encoder)

    def index_of(self) -> dict[str, int]:
        return {_norm_path(p): k for k, p in enumerate(self.paths.tolist())}


def save_embeddings(path: str | os.PathLike, emb: Embeddings) -> str:
    """Write the .npz layout (readable with ``allow_pickle=False``) atomically; like
    ``np.savez`` a missing ``.npz`` suffix is added.  Returns the path written."""
    path = str(path)
    if not path.lower().endswith(".npz"):
        path += ".npz"
    save_npz(
        path,
        embeddings=np.asarray(emb.embeddings, dtype=np.float32),
        quality=np.asarray(emb.quality, dtype=np.float32),
        paths=np.asarray(emb.paths, dtype=str),
        ok=np.asarray(emb.ok, dtype=bool),
        error=np.asarray(emb.error, dtype=str),
        encoder=np.asarray(emb.encoder, dtype=str),
        **{f"measure_{k}": np.asarray(v, np.float64) for k, v in emb.measures.items()},
    )
    return path


def load_embeddings(path: str | os.PathLike) -> Embeddings:
    """Read embeddings from .npz (our layout), .npy (N, D) or a MagFace feat.list."""
    p = str(path)
    low = p.lower()
    if low.endswith(".npz"):
        return _load_npz(p)
    if low.endswith(".npy"):
        arr = load_npy(p)
        if arr.ndim != 2 or arr.dtype.kind not in "fiu":
            raise DataFormatError(f"expected a real numeric array of shape (N, D), got {arr.dtype} {arr.shape}", path=p)
        return Embeddings.from_array(arr)
    return read_feat_list(p)


def _load_npz(p: str) -> Embeddings:
    z = load_npz(p)
    if "embeddings" not in z:
        raise DataFormatError(f"missing array 'embeddings' (found {sorted(z)})", path=p)
    e = z["embeddings"]
    if e.ndim != 2 or e.dtype.kind not in "fiu":
        raise DataFormatError(f"'embeddings' must be real numbers of shape (N, D), got {e.dtype} {e.shape}", path=p)
    n = e.shape[0]
    base = Embeddings.from_array(e)
    kinds = {"paths": "U", "error": "U", "encoder": "U", "ok": "b?", "quality": "fiu"}

    def get(name, default):
        if name not in z:
            return default
        v = z[name]
        if v.dtype.kind not in kinds[name] and not (kinds[name] == "U" and v.dtype.kind == "S"):
            raise DataFormatError(f"'{name}' has dtype {v.dtype}; expected {kinds[name]!r} kind", path=p)
        if name == "encoder":
            if v.size != 1:
                raise DataFormatError(f"'encoder' must be one string, got shape {v.shape}", path=p)
            return str(v.reshape(()).item())
        if v.shape != (n,):
            raise DataFormatError(f"'{name}' must have shape ({n},), got {v.shape}", path=p)
        return v

    paths = get("paths", base.paths).astype(str)
    ok_in = get("ok", base.ok)
    if ok_in.dtype.kind != "b":
        raise DataFormatError(f"'ok' must be booleans, got {ok_in.dtype}", path=p)
    ok = ok_in.astype(bool) & base.ok
    error = get("error", base.error).astype(str)
    error = np.where(ok, "", np.where(error == "", base.error, error))
    error = np.where(~ok & (error == ""), "failed", error)
    stored_q = get("quality", None)
    if stored_q is not None:
        sq = stored_q.astype(np.float64)
        both = ok & np.isfinite(sq)
        off = np.flatnonzero(both & ~np.isclose(sq, base.quality, rtol=1e-3, atol=1e-4))
        if off.size:
            k = int(off[0])
            raise DataFormatError(
                f"'quality' must equal the embedding lengths; row {k}: stored {sq[k]:.6g}, "
                f"norm {float(base.quality[k]):.6g}", path=p)
    emb = base.embeddings.copy()
    emb[~ok] = np.nan
    q = np.where(ok, base.quality, np.nan).astype(np.float32)
    measures = {}
    for key, v in z.items():
        if key.startswith("measure_"):
            if v.shape != (n,) or v.dtype.kind not in "fiu":
                raise DataFormatError(f"'{key}' must be numbers of shape ({n},), got {v.dtype} {v.shape}", path=p)
            measures[key[len("measure_"):]] = v.astype(np.float64)
    return Embeddings(emb, q, paths, ok, error.astype(str), get("encoder", ""), measures)


def read_feat_list(path: str | os.PathLike) -> Embeddings:
    """MagFace ``feat.list``: each line ``path v1 v2 … vD`` (space separated)."""
    p = str(path)
    lines = read_text(p, expected="'path v1 … vD' lines").splitlines()
    rows = [(k + 1, ln) for k, ln in enumerate(lines) if ln.strip()]
    if not rows:
        raise DataFormatError("empty file (expected 'path v1 … vD' lines)", path=p)
    heads, rests = [], []
    for _, ln in rows:
        parts = ln.strip().split(None, 1)
        heads.append(parts[0])
        rests.append(parts[1] if len(parts) > 1 else "")
    counts = np.fromiter((r.count(" ") + 1 if r.strip() else 0 for r in (" ".join(x.split()) for x in rests)), dtype=np.int64, count=len(rests))
    dim = int(np.bincount(counts).argmax())
    bad = np.flatnonzero(counts != dim)
    if dim == 0:
        raise DataFormatError("no feature values after the path", path=p, line=rows[0][0])
    if bad.size:
        ln = rows[bad[0]][0]
        raise DataFormatError(f"expected a path and {dim} feature values, got {counts[bad[0]]} values", path=p, line=ln)
    try:
        vals = np.array(" ".join(rests).split(), dtype=np.float64)
    except ValueError:
        for (ln, _), r in zip(rows, rests):
            try:
                np.array(r.split(), dtype=np.float64)
            except ValueError:
                tok = next(t for t in r.split() if not _is_float(t))
                raise DataFormatError(f"feature value {tok!r} is not a number", path=p, line=ln) from None
        raise
    return Embeddings.from_array(vals.reshape(len(rows), dim), paths=heads)


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def write_feat_list(path: str | os.PathLike, emb: Embeddings) -> None:
    """Write MagFace feat.list lines (path, then each value followed by a space)."""
    with atomic_write(path) as fh:
        for p, row in zip(emb.paths.tolist(), np.asarray(emb.embeddings, np.float64)):
            fh.write(p + " " + "".join(f"{float(v)!r} " for v in row) + "\n")


# ---------------------------------------------------------------------------- pairs
@dataclass
class Pairs:
    """Image pairs with labels.

    Attributes
    ----------
    path1, path2 : (n,) str
    label : (n,) int8, 1 genuine / 0 imposter
    fold : (n,) int64, -1 when the file defines no folds
    line : (n,) int64, 1-based source line of each pair
    source : str, file the pairs came from
    """

    path1: npt.NDArray[np.str_]
    path2: npt.NDArray[np.str_]
    label: npt.NDArray[np.int8]
    fold: npt.NDArray[np.int64]
    line: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    source: str = ""

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def has_folds(self) -> bool:
        return bool(self.fold.size) and bool((self.fold >= 0).all())


def _check_pairs(pairs: Pairs) -> Pairs:
    """Refuse a pair listed twice (in either order): it would be counted twice."""
    a = np.char.replace(pairs.path1.astype(str), "\\", "/")
    b = np.char.replace(pairs.path2.astype(str), "\\", "/")
    first_ab = a <= b
    lo, hi = np.where(first_ab, a, b), np.where(first_ab, b, a)
    key = np.char.add(np.char.add(lo, "\x00"), hi)
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    dup = np.flatnonzero(first[inv.ravel()] != np.arange(key.size))
    if dup.size:
        k = int(dup[0])
        j = int(first[inv.ravel()[k]])
        ln = pairs.line[k] if pairs.line.size else None
        ln0 = int(pairs.line[j]) if pairs.line.size else j + 1
        raise DataFormatError(f"the pair {str(pairs.path1[k])!r} ~ {str(pairs.path2[k])!r} is listed again "
                              f"(first on line {ln0}); each pair may appear once", path=pairs.source,
                              line=None if ln is None else int(ln))
    return pairs


def _parse_folds(fv, *, path, lines) -> np.ndarray:
    """Fold ids from strings: integers in [-1, MAX_FOLD]."""
    fv = np.char.strip(np.asarray(fv, dtype=str))
    okf = np.char.isdigit(np.char.lstrip(fv, "-")) & (np.char.count(fv, "-") <= 1) & (np.char.str_len(fv) <= 8)
    if okf.all():
        fold = fv.astype(np.int64)
        okf = (fold >= -1) & (fold <= MAX_FOLD)
    if not okf.all():
        k = int(np.flatnonzero(~okf)[0])
        raise DataFormatError(f"fold must be an integer from -1 to {MAX_FOLD:,}, got {str(fv[k])[:40]!r}", path=path,
                              line=None if lines is None else int(lines[k]))
    return fold


def parse_labels(values, *, path: str | None = None, lines=None) -> npt.NDArray[np.int8]:
    """Map label strings (1/0, 1/-1, true/false, yes/no, same/different, …) to 1/0."""
    arr = np.char.lower(np.char.strip(np.asarray(values, dtype=str)))
    pos = np.isin(arr, list(_POS))
    neg = np.isin(arr, list(_NEG))
    bad = np.flatnonzero(~(pos | neg))
    if bad.size:
        ln = None if lines is None else int(lines[bad[0]])
        raise DataFormatError(
            f"label {str(values[bad[0]])!r} not understood; expected 1/0, 1/-1, true/false, yes/no "
            "or same/different", path=path, line=ln)
    uniq = set(arr[neg].tolist())
    if {"0", "0.0"} & uniq and {"-1", "-1.0"} & uniq:
        raise DataFormatError("labels mix 0 and -1 as 'different'; use one coding", path=path)
    return pos.astype(np.int8)


def read_lfw_pairs(path: str | os.PathLike, *, template: str = "{name}/{name}_{num:04d}.jpg") -> Pairs:
    """LFW ``pairs.txt``: optional header ``folds<TAB>n``, then matched lines
    ``name n1 n2`` and mismatched lines ``name1 n1 name2 n2``.

    With a header each fold is ``n`` matched then ``n`` mismatched lines.  Without one,
    a fold starts wherever a matched line follows a mismatched one (the layout of
    XQLFW-style lists); ``fold`` is -1 when no fold structure can be seen.
    """
    p = str(path)
    lines = read_text(p, expected="an LFW pairs.txt").splitlines()
    recs = [(k + 1, ln.split()) for k, ln in enumerate(lines) if ln.strip()]
    if not recs:
        raise DataFormatError("empty pairs file", path=p)
    header = None
    first = recs[0][1]
    if len(first) == 2 and all(t.isdigit() and len(t) <= 7 for t in first):
        header = (int(first[0]), int(first[1]))
        recs = recs[1:]
    p1, p2, lab, lno = [], [], [], []
    for ln, t in recs:
        try:
            if any(len(t[j]) > 9 for j in ((1, 2) if len(t) == 3 else (1, 3) if len(t) == 4 else ())):
                raise ValueError  # an image number of 10+ digits is not an LFW number
            if len(t) == 3:
                n1, n2 = int(t[1]), int(t[2])
                p1.append(template.format(name=t[0], num=n1))
                p2.append(template.format(name=t[0], num=n2))
                lab.append(1)
            elif len(t) == 4:
                n1, n2 = int(t[1]), int(t[3])
                p1.append(template.format(name=t[0], num=n1))
                p2.append(template.format(name=t[2], num=n2))
                lab.append(0)
            else:
                raise DataFormatError(
                    f"expected 3 fields (name n1 n2) or 4 fields (name1 n1 name2 n2), got {len(t)}",
                    path=p, line=ln)
        except ValueError as e:
            if isinstance(e, DataFormatError):
                raise
            raise DataFormatError(f"image numbers must be integers, got {' '.join(t)!r}", path=p, line=ln) from None
        lno.append(ln)
    label = np.asarray(lab, dtype=np.int8)
    n = label.size
    if header is not None:
        nf, per = header
        if n != 2 * nf * per:
            raise DataFormatError(
                f"header says {nf} folds of {per}+{per} pairs ({2 * nf * per} lines) but the file has {n} pair lines",
                path=p, line=1)
        fold = np.repeat(np.arange(nf), 2 * per)
        expect = np.tile(np.r_[np.ones(per), np.zeros(per)], nf).astype(np.int8)
        bad = np.flatnonzero(expect != label)
        if bad.size:
            kind = "matched (3 fields)" if expect[bad[0]] else "mismatched (4 fields)"
            raise DataFormatError(f"expected a {kind} line here (fold {fold[bad[0]] + 1})", path=p, line=lno[bad[0]])
    else:
        starts = np.r_[True, (label[1:] == 1) & (label[:-1] == 0)]
        fold = np.cumsum(starts) - 1
        if fold.max() == 0:  # one block: the file defines no folds
            fold = np.full(n, -1)
    return _check_pairs(Pairs(np.asarray(p1, dtype=str), np.asarray(p2, dtype=str), label,
                              fold.astype(np.int64), np.asarray(lno, np.int64), p))


_ALIASES = {
    "path1": ("path1", "file_x", "img1", "image1", "file1", "a", "left", "probe"),
    "path2": ("path2", "file_y", "img2", "image2", "file2", "b", "right", "reference"),
    "label": ("label", "decision", "same", "is_same", "issame", "genuine", "y", "target"),
    "fold": ("fold", "folds", "split"),
}


#: a leading metadata line of our CSVs: ``# key=value`` (optionally ``# qmag: key=value``)
_META_RE = re.compile(r"#\s*(?:qmag:)?\s*([\w-]+)\s*=\s*(.*?)\s*$")


def _read_csv_table(p: str, *, comment: bool = True):
    """(header, rows as list of lists, line numbers, metadata) via the csv module;
    accepts CRLF and a missing final newline.  Lines starting with '#' before the
    header are metadata (``# key=value``)."""
    text = read_text(p, expected="a CSV file")
    meta = {}
    lines = text.splitlines()
    start = 0
    while comment and start < len(lines) and (lines[start].startswith("#") or not lines[start].strip()):
        m = _META_RE.match(lines[start])
        if m:
            meta[m.group(1)] = m.group(2).strip()
        start += 1
    if start >= len(lines):
        raise DataFormatError("empty file: expected a header line", path=p)
    reader = csv.reader(lines[start:])
    try:
        header = [h.strip() for h in next(reader)]
        _check_header(header, p, start + 1)
        rows, lnos = [], []
        for k, r in enumerate(reader):
            if not r or all(not c.strip() for c in r):
                continue
            rows.append(r)
            lnos.append(start + 2 + k)
    except csv.Error as e:
        raise DataFormatError(f"malformed CSV ({e})", path=p, line=start + 1 + reader.line_num) from None
    return header, rows, lnos, meta


def _check_header(header, p, line) -> None:
    """Refuse duplicate (case-insensitive) column names: one of them would be ignored."""
    seen = {}
    for h in header:
        k = str(h).strip().lower()
        if k in seen and k:
            raise DataFormatError(f"column {h!r} appears twice in the header", path=p, line=line)
        seen[k] = True


def _map_columns(header, required, optional, columns, p):
    low = [h.lower() for h in header]
    out = {}
    for key in required + optional:
        if columns and key in columns:
            name = columns[key]
            if name not in header:
                raise DataFormatError(f"column {name!r} (mapped to {key}) not in header {header}", path=p, line=1)
            out[key] = header.index(name)
            continue
        for alias in _ALIASES.get(key, (key,)):
            if alias in low:
                out[key] = low.index(alias)
                break
        else:
            if key in required:
                raise DataFormatError(
                    f"no column for {key!r}; header is {header}. Expected one of "
                    f"{list(_ALIASES.get(key, (key,)))} or a column mapping", path=p, line=1)
    return out


def read_pairs_csv(path: str | os.PathLike, *, columns: dict[str, str] | None = None) -> Pairs:
    """Pairs CSV ``path1,path2,label[,fold]``; column names mappable (``columns=
    {"path1": "file_x", "path2": "file_y", "label": "Decision"}``) and common aliases
    (deepface's file_x, file_y, Decision) recognised."""
    p = str(path)
    header, rows, lnos, _ = _read_csv_table(p)
    col = _map_columns(header, ["path1", "path2", "label"], ["fold"], columns, p)
    width = len(header)
    lens = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(lens != width)
    if bad.size:
        raise DataFormatError(f"expected {width} fields like the header, got {lens[bad[0]]}", path=p, line=lnos[bad[0]])
    if not rows:
        raise DataFormatError("no pairs after the header", path=p)
    table = np.asarray(rows, dtype=str)
    label = parse_labels(table[:, col["label"]], path=p, lines=lnos)
    if "fold" in col:
        fold = _parse_folds(table[:, col["fold"]], path=p, lines=lnos)
    else:
        fold = np.full(len(rows), -1, np.int64)
    p1 = np.char.strip(table[:, col["path1"]])
    p2 = np.char.strip(table[:, col["path2"]])
    empty = np.flatnonzero((np.char.str_len(p1) == 0) | (np.char.str_len(p2) == 0))
    if empty.size:
        raise DataFormatError("empty image path", path=p, line=lnos[empty[0]])
    return _check_pairs(Pairs(p1, p2, label, fold, np.asarray(lnos, np.int64), p))


def confine_pairs(pairs: Pairs, root: str | os.PathLike) -> None:
    """Refuse the whole pairs file when any image path in it escapes ``root`` (absolute
    paths elsewhere, ``..``, symlinks leading out); the error names the file and line."""
    from .safeio import confine_paths

    lines = pairs.line if pairs.line.size == len(pairs) else None
    for col in (pairs.path1, pairs.path2):
        confine_paths(col.tolist(), root, source=pairs.source or None, lines=lines)


def write_pairs_csv(path: str | os.PathLike, pairs: Pairs) -> None:
    """Write ``path1,path2,label,fold`` (atomically)."""
    with atomic_write(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path1", "path2", "label", "fold"])
        for a, b, l, f in zip(pairs.path1.tolist(), pairs.path2.tolist(), pairs.label.tolist(), pairs.fold.tolist()):
            w.writerow([a, b, int(l), int(f)])


def read_pairs(path: str | os.PathLike, **kw) -> Pairs:
    """Dispatch on the file: CSV (by extension or a comma in the header) or LFW pairs.txt."""
    p = str(path)
    if p.lower().endswith(".csv"):
        return read_pairs_csv(p, **kw)
    # the first non-blank line decides; the parser then reads (and checks) the whole file
    head = read_head(p).lstrip().split(b"\n", 1)[0]
    if b"," in head:
        return read_pairs_csv(p, **kw)
    return read_lfw_pairs(p)


# ---------------------------------------------------------------------- score table
@dataclass
class FailedPairs:
    """Pairs that could not be scored because an image failed (missing, unreadable, no
    face).  Generalized metrics count them: a failed genuine pair as a false non-match,
    a failed imposter pair as a correct non-match.

    label : (k,) int8 · fold : (k,) int64 · line : (k,) int64 (source line, 0 unknown)
    """

    label: npt.NDArray[np.int8]
    fold: npt.NDArray[np.int64]
    line: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.label.shape[0])


@dataclass
class ScoreTable:
    """Per-pair scores: cosine s, qualities q1, q2 (or q_min only), label, fold.

    ``q1``/``q2`` equal ``q_min`` when the file gave only q_min.  ``fold`` is -1
    when absent.  ``meta`` holds ``# key=value`` lines (e.g. ``encoder``).
    """

    s: npt.NDArray[np.float64]
    q1: npt.NDArray[np.float64]
    q2: npt.NDArray[np.float64]
    label: npt.NDArray[np.int8]
    fold: npt.NDArray[np.int64]
    meta: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    source: str = ""
    #: pairs of the source that could not be scored (None: none known)
    failed: FailedPairs | None = None

    def __len__(self):
        return int(self.s.shape[0])

    @property
    def n_folds(self) -> int:
        """How many folds the table defines (0 when some pair has none)."""
        return int(np.unique(self.fold).size) if self.has_folds else 0

    @property
    def n_failed(self) -> int:
        return 0 if self.failed is None else len(self.failed)

    @property
    def q_min(self):
        return np.minimum(self.q1, self.q2)

    @property
    def has_folds(self) -> bool:
        return bool(self.fold.size) and bool((self.fold >= 0).all())

    @property
    def encoder(self) -> str | None:
        return self.meta.get("encoder") or None

    def X(self) -> np.ndarray:
        return np.column_stack([self.s, self.q_min])


def _split_metadata(p: str) -> tuple[dict, str, int]:
    """``(meta, body, n_lines_before_header)``: leading ``# key=value`` and blank lines."""
    text = read_text(p, expected="a CSV with s,q1,q2,label")
    meta, pos, line_no = {}, 0, 0
    while pos < len(text):
        nl = text.find("\n", pos)
        ln = text[pos: (nl if nl >= 0 else len(text))]
        if not (ln.startswith("#") or not ln.strip()):
            break
        m = _META_RE.match(ln)
        if m:
            meta[m.group(1)] = m.group(2)
        line_no += 1
        if nl < 0:
            pos = len(text)
            break
        pos = nl + 1
    body = text[pos:]
    if not body.strip():
        raise DataFormatError("empty file: expected a header s,q1,q2,label[,fold]", path=p)
    return meta, body, line_no


def _score_columns(columns, p, header_line):
    _check_header(columns, p, header_line)
    cols = {str(c).strip().lower(): c for c in columns}
    if "s" not in cols or "label" not in cols:
        raise DataFormatError(
            f"header must have columns s, q1, q2, label[, fold] (or q_min instead of q1, q2); got {list(columns)}",
            path=p, line=header_line)
    if not (("q1" in cols and "q2" in cols) or "q_min" in cols):
        raise DataFormatError(f"need columns q1 and q2, or q_min; got {list(columns)}", path=p, line=header_line)
    return cols


class _NeedSlowPath(Exception):
    pass


def read_scores_csv(path: str | os.PathLike) -> ScoreTable:
    """Score table CSV ``s,q1,q2,label[,fold]`` (or ``s,q_min,label[,fold]``).

    Fast path: pandas' C parser with native numeric columns and vectorised checks.  If
    anything is off, a second, string-based pass finds the first offending line and
    raises a :class:`DataFormatError` naming it.  Labels accept the same codings as
    pairs files; leading ``# key=value`` lines are metadata (e.g. ``encoder``).
    """
    p = str(path)
    meta, body, n_before = _split_metadata(p)
    header_line = n_before + 1
    try:
        raw_header = next(csv.reader([body.split("\n", 1)[0]]))
    except (csv.Error, StopIteration):
        raw_header = []
    _check_header([h.strip() for h in raw_header], p, header_line)
    return _check_rows(_read_scores_body(p, meta, body, header_line), meta)


def _check_rows(t: "ScoreTable", meta: dict) -> "ScoreTable":
    """Values a parser accepts but a QMagFace fit must not: absurd qualities; and a row
    count that disagrees with the ``# rows=N`` line our writers add (a truncated file)."""
    q = np.maximum(t.q1, t.q2)
    bad = np.flatnonzero(q > MAX_QUALITY)
    if bad.size:
        raise DataFormatError(f"quality {q[bad[0]]:.3g} is implausibly large (limit {MAX_QUALITY:.0e}); "
                              f"data row {bad[0] + 1}", path=t.source)
    declared = meta.get("rows")
    if declared is not None and declared.strip().isdigit() and int(declared) != len(t):
        raise DataFormatError(f"the file says it has {int(declared):,} rows ('# rows=') but holds {len(t):,}: "
                              "truncated or edited", path=t.source)
    return t


def _read_scores_body(p: str, meta: dict, body: str, header_line: int) -> "ScoreTable":
    import pandas as pd

    try:
        df = pd.read_csv(io.StringIO(body), skipinitialspace=True)
        cols = _score_columns(df.columns, p, header_line)
        if len(df) == 0:
            raise DataFormatError("no score rows after the header", path=p)
        num = {}
        for name in ("s", "q1", "q2", "q_min", "fold"):
            if name in cols:
                c = df[cols[name]]
                if not pd.api.types.is_numeric_dtype(c):
                    raise _NeedSlowPath
                num[name] = c.to_numpy(dtype=np.float64)
                if not np.isfinite(num[name]).all():
                    raise _NeedSlowPath
        if np.any(np.abs(num["s"]) > 1 + 1e-6):
            raise _NeedSlowPath
        q1 = num.get("q1", num.get("q_min"))
        q2 = num.get("q2", num.get("q_min"))
        if np.any(q1 < 0) or np.any(q2 < 0):
            raise _NeedSlowPath
        lab = df[cols["label"]]
        if pd.api.types.is_numeric_dtype(lab):
            lv = lab.to_numpy(dtype=np.float64)
            u = np.unique(lv)
            if not (np.isin(u, [0, 1]).all() or np.isin(u, [-1, 1]).all()):
                raise _NeedSlowPath
            label = (lv == 1).astype(np.int8)
        else:
            label = parse_labels(lab.astype(str).to_numpy(dtype=str), path=p)
        if "fold" in num:
            fv = num["fold"]
            if np.any(fv != np.round(fv)) or np.any(fv < -1) or np.any(fv > MAX_FOLD):
                raise _NeedSlowPath
            fold = fv.astype(np.int64)
        else:
            fold = np.full(len(df), -1, np.int64)
        known = {"s", "q1", "q2", "q_min", "label", "fold"}
        extra = {orig: df[orig].to_numpy() for low, orig in cols.items() if low not in known}
        return ScoreTable(num["s"], q1, q2, label, fold, meta, extra, p)
    except (_NeedSlowPath, pd.errors.ParserError, DataFormatError, ValueError):
        pass
    return _read_scores_csv_strict(p, meta, body, header_line)


def _read_scores_csv_strict(p, meta, body, header_line) -> ScoreTable:
    """String-based pass that names the first offending line (also parses valid files)."""
    import pandas as pd

    try:
        df = pd.read_csv(io.StringIO(body), dtype=str, keep_default_na=False, skip_blank_lines=False,
                         skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataFormatError("empty file: expected a header s,q1,q2,label[,fold]", path=p) from None
    except pd.errors.ParserError as e:
        m = re.search(r"line (\d+)", str(e))
        ln = int(m.group(1)) + header_line - 1 if m else None
        raise DataFormatError(f"malformed CSV ({str(e).splitlines()[0]})", path=p, line=ln) from None
    cols = _score_columns(df.columns, p, header_line)
    # rows map to physical lines header_line+1+k (blank lines are kept as rows here)
    blank = np.ones(len(df), dtype=bool)
    for c in df.columns:
        blank &= (df[c].str.strip() == "").to_numpy()
    lines = header_line + 1 + np.arange(len(df))
    df = df[~blank]
    lines = lines[~blank]
    if len(df) == 0:
        raise DataFormatError("no score rows after the header", path=p)

    def num(name):
        v = df[cols[name]].str.strip()
        x = pd.to_numeric(v, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(x))
        if bad.size:
            raise DataFormatError(f"column '{name}' expected a finite number, got {v.iloc[bad[0]]!r}",
                                  path=p, line=int(lines[bad[0]]))
        return x

    s = num("s")
    bad = np.flatnonzero(np.abs(s) > 1 + 1e-6)
    if bad.size:
        raise DataFormatError(f"cosine s must lie in [-1, 1], got {s[bad[0]]}", path=p, line=int(lines[bad[0]]))
    if "q1" in cols and "q2" in cols:
        q1, q2 = num("q1"), num("q2")
    else:
        q1 = q2 = num("q_min")
    bad = np.flatnonzero((q1 < 0) | (q2 < 0))
    if bad.size:
        raise DataFormatError(f"quality must be ≥ 0, got {min(q1[bad[0]], q2[bad[0]])}", path=p, line=int(lines[bad[0]]))
    label = parse_labels(df[cols["label"]].to_numpy(dtype=str), path=p, lines=lines)
    if "fold" in cols:
        fold = _parse_folds(df[cols["fold"]].to_numpy(dtype=str), path=p, lines=lines)
    else:
        fold = np.full(len(df), -1, np.int64)
    known = {"s", "q1", "q2", "q_min", "label", "fold"}
    extra = {orig: df[orig].to_numpy(dtype=str) for low, orig in cols.items() if low not in known}
    return ScoreTable(s, q1, q2, label, fold, meta, extra, p)


def write_scores_csv(path: str | os.PathLike, table: ScoreTable, *, s_hat=None,
                     meta: dict | None = None) -> None:
    """Write a score table (optionally with an ``s_hat`` column); ``meta`` and the
    table's own metadata go into leading ``# key=value`` lines."""
    import pandas as pd

    cols = {"s": table.s, "q1": table.q1, "q2": table.q2, "label": table.label.astype(int)}
    if table.has_folds:
        cols["fold"] = table.fold
    for k, v in table.extra.items():
        cols[k] = v
    if s_hat is not None:
        cols["s_hat"] = np.asarray(s_hat, dtype=np.float64)
    allmeta = {**table.meta, **(meta or {}), "rows": len(table)}
    with atomic_write(path, newline="") as fh:
        for k, v in allmeta.items():
            if v is not None and v != "":
                fh.write(f"# {k}={v}\n")
        pd.DataFrame(cols).to_csv(fh, index=False, float_format="%.9g", lineterminator="\n")


def add_scores_column(src: str | os.PathLike, dst: str | os.PathLike, values, *, name: str = "s_hat",
                      meta: dict | None = None) -> int:
    """Copy the scores CSV ``src`` to ``dst`` (atomically; ``dst`` may be ``src``) with
    one column ``name`` set to ``values`` — appended, or replaced where it exists.

    Everything else round-trips: comment and metadata lines, blank lines, line endings,
    every other field as written (no re-rounding, no label recoding, every fold kept).
    ``meta`` adds or updates ``# key=value`` lines.  ``values`` must have one entry
    per data row of :func:`read_scores_csv`; returns the number of rows written."""
    p = str(src)
    text = read_text(p, expected="a CSV with s,q1,q2,label")
    values = np.asarray(values, dtype=np.float64)
    lines = text.splitlines(keepends=True)
    eol = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    head, k = [], 0
    while k < len(lines) and (lines[k].startswith("#") or not lines[k].strip()):
        head.append(lines[k])
        k += 1
    if k >= len(lines):
        raise DataFormatError("empty file: expected a header s,q1,q2,label[,fold]", path=p)
    meta = dict(meta or {})
    out_head = []
    for ln in head:  # update metadata lines in place, keep every other comment
        m = _META_RE.match(ln.rstrip("\r\n"))
        if m and m.group(1) in meta:
            v = meta.pop(m.group(1))
            if v is not None and v != "":
                out_head.append(f"# {m.group(1)}={v}{eol}")
            continue
        out_head.append(ln)
    out_head += [f"# {kk}={v}{eol}" for kk, v in meta.items() if v is not None and v != ""]
    body = lines[k:]
    rows = list(csv.reader([ln.rstrip("\r\n") for ln in body]))
    header = [h.strip() for h in rows[0]]
    _check_header(header, p, len(head) + 1)
    col = next((j for j, h in enumerate(header) if h.lower() == name.lower()), None)
    data_idx = [j for j in range(1, len(body)) if body[j].strip()]
    if len(data_idx) != values.size:
        raise DataFormatError(f"{values.size} values for {len(data_idx)} data rows", path=p)
    fmt = [repr(float(v)) if math.isfinite(v) else "nan" for v in values.tolist()]
    out = list(out_head)
    if col is None:  # append: each data line as written plus ",value"; blank lines stay
        vi = iter(fmt)
        out += [ln.rstrip("\r\n") + "," + (name if j == 0 else next(vi)) + _eol_of(ln, eol)
                if j == 0 or ln.strip() else ln for j, ln in enumerate(body)]
    else:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator=eol)
        w.writerow(rows[0])
        vi = iter(fmt)
        for j in range(1, len(body)):
            if not body[j].strip():
                buf.write(body[j])
                continue
            r = list(rows[j])
            r[col] = next(vi)
            w.writerow(r)
        out.append(buf.getvalue())
    with atomic_write(dst, newline="") as fh:
        fh.write("".join(out))
    return len(data_idx)


def _eol_of(line: str, default: str) -> str:
    return line[len(line.rstrip("\r\n")):] or default


# ----------------------------------------------------------- embeddings + pairs
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
    t = ScoreTable(ps.s[valid], ps.q1[valid], ps.q2[valid], pairs.label[valid],
                   pairs.fold[valid], meta, extra, pairs.source, failed)
    return t, report


# ---------------------------------------------------------------------- pair maker
def _list_identities(root: Path) -> dict[str, list[str]]:
    ids = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f.name for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            ids[d.name] = [f"{d.name}/{f}" for f in files]
    return ids


def make_pairs(images: str | os.PathLike, *, n_genuine: int, n_imposter: int, n_folds: int = 10,
               random_state=0) -> Pairs:
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
        sizes = np.array([len(ids[m]) for m in members])
        multi = members[sizes >= 2]
        n_possible = int(sum(len(ids[m]) * (len(ids[m]) - 1) // 2 for m in multi))
        if gen_per[f] > n_possible:
            raise QMagError(f"fold {f}: {gen_per[f]} genuine pairs requested but only {n_possible} exist; lower --genuine")
        got: set[tuple[str, str]] = set()
        n_imp_possible = (sizes.sum() ** 2 - (sizes ** 2).sum()) // 2
        if imp_per[f] > n_imp_possible:
            raise QMagError(f"fold {f}: {imp_per[f]} imposter pairs requested but only {n_imp_possible} exist; lower --imposter")
        wsize = np.array([len(ids[m]) for m in multi], float)
        w = wsize * (wsize - 1)
        w = w / w.sum() if w.sum() > 0 else w
        while len(got) < gen_per[f] and gen_per[f] > 0:
            need = gen_per[f] - len(got)
            who = rng.choice(multi, size=2 * need + 8, p=w)
            for m in who:
                a, b = rng.choice(len(ids[m]), 2, replace=False)
                a, b = sorted((int(a), int(b)))
                got.add((ids[m][a], ids[m][b]))
                if len(got) == gen_per[f]:
                    break
        gen_pairs = sorted(got)
        imps: set[tuple[str, str]] = set()
        while len(imps) < imp_per[f]:
            need = imp_per[f] - len(imps)
            i1 = rng.integers(0, members.size, 2 * need + 8)
            i2 = rng.integers(0, members.size, 2 * need + 8)
            for x, y in zip(i1, i2):
                if x == y:
                    continue
                a = ids[members[x]][rng.integers(len(ids[members[x]]))]
                b = ids[members[y]][rng.integers(len(ids[members[y]]))]
                imps.add(tuple(sorted((a, b))))
                if len(imps) == imp_per[f]:
                    break
        imp_pairs = sorted(imps)
        for a, b in gen_pairs:
            P1.append(a); P2.append(b); L.append(1); F.append(f)  # noqa: E702
        for a, b in imp_pairs:
            P1.append(a); P2.append(b); L.append(0); F.append(f)  # noqa: E702
    n = len(L)
    return Pairs(np.asarray(P1, str), np.asarray(P2, str), np.asarray(L, np.int8), np.asarray(F, np.int64),
                 np.arange(2, n + 2, dtype=np.int64), str(root))
