"""Pairs files: LFW pairs.txt and pairs CSV."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..errors import DataFormatError, shown
from ..limits import limit
from ..outputs import atomic_write
from ..safeio import read_head, read_text
from .common import map_columns, parse_folds, parse_labels, read_csv_table, spreadsheet_safe, spreadsheet_unescape


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
        raise DataFormatError(
            f"the pair {shown(pairs.path1[k])} ~ {shown(pairs.path2[k])} is listed again "
            f"(first on line {ln0}); each pair may appear once",
            path=pairs.source,
            line=None if ln is None else int(ln),
        )
    return pairs


def read_lfw_pairs(path: str | os.PathLike, *, template: str = "{name}/{name}_{num:04d}.jpg") -> Pairs:
    """LFW ``pairs.txt``: optional header ``folds<TAB>n``, then matched lines
    ``name n1 n2`` and mismatched lines ``name1 n1 name2 n2``.

    With a header each fold is ``n`` matched then ``n`` mismatched lines.  Without one,
    a fold starts wherever a matched line follows a mismatched one (the layout of
    XQLFW-style lists); ``fold`` is -1 when no fold structure can be seen.
    """
    p = str(path)
    lines = read_text(p, expected="an LFW pairs.txt", lines=True).splitlines()
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
        a, b, y = _lfw_line(t, template, p, ln)
        p1.append(a)
        p2.append(b)
        lab.append(y)
        lno.append(ln)
    label = np.asarray(lab, dtype=np.int8)
    fold = _lfw_folds(label, header, lno, p)
    return _check_pairs(
        Pairs(
            np.asarray(p1, dtype=str),
            np.asarray(p2, dtype=str),
            label,
            fold.astype(np.int64),
            np.asarray(lno, np.int64),
            p,
        )
    )


def _lfw_line(t: list[str], template: str, p: str, ln: int) -> tuple[str, str, int]:
    """(path1, path2, label) of one pairs.txt line split into fields."""
    if len(t) not in (3, 4):
        raise DataFormatError(
            f"expected 3 fields (name n1 n2) or 4 fields (name1 n1 name2 n2), got {len(t)}", path=p, line=ln
        )
    nums = (t[1], t[2]) if len(t) == 3 else (t[1], t[3])
    try:
        if any(len(x) > 9 for x in nums):  # an image number of 10+ digits is not an LFW number
            raise ValueError
        n1, n2 = int(nums[0]), int(nums[1])
    except ValueError:
        raise DataFormatError(f"image numbers must be integers, got {shown(' '.join(t))}", path=p, line=ln) from None
    if len(t) == 3:
        return template.format(name=t[0], num=n1), template.format(name=t[0], num=n2), 1
    return template.format(name=t[0], num=n1), template.format(name=t[2], num=n2), 0


def _lfw_folds(label: np.ndarray, header, lno: list, p: str) -> np.ndarray:
    """Fold per pair: from the header (checked against the lines) or from where matched
    lines follow mismatched ones; -1 when no fold structure can be seen."""
    n = label.size
    if header is None:
        starts = np.r_[True, (label[1:] == 1) & (label[:-1] == 0)]
        fold = np.cumsum(starts) - 1
        return np.full(n, -1) if fold.max() == 0 else fold  # one block: the file defines no folds
    nf, per = header
    if n != 2 * nf * per:
        raise DataFormatError(
            f"header says {nf} folds of {per}+{per} pairs ({2 * nf * per} lines) but the file has {n} pair lines",
            path=p,
            line=1,
        )
    fold = np.repeat(np.arange(nf), 2 * per)
    expect = np.tile(np.r_[np.ones(per), np.zeros(per)], nf).astype(np.int8)
    bad = np.flatnonzero(expect != label)
    if bad.size:
        kind = "matched (3 fields)" if expect[bad[0]] else "mismatched (4 fields)"
        raise DataFormatError(f"expected a {kind} line here (fold {fold[bad[0]] + 1})", path=p, line=lno[bad[0]])
    return fold


def read_pairs_csv(path: str | os.PathLike, *, columns: dict[str, str] | None = None) -> Pairs:
    """Pairs CSV ``path1,path2,label[,fold]``; column names mappable (``columns=
    {"path1": "file_x", "path2": "file_y", "label": "Decision"}``) and common aliases
    (deepface's file_x, file_y, Decision) recognised."""
    p = str(path)
    header, chunks, _ = read_csv_table(p)
    col = map_columns(header, ["path1", "path2", "label"], ["fold"], columns, p)
    parts = [_pairs_chunk(rows, lnos, header, col, p) for rows, lnos in chunks]
    if not parts:
        raise DataFormatError("no pairs after the header", path=p)
    p1, p2, label, fold, lnos = (np.concatenate(x) for x in zip(*parts, strict=True))
    return _check_pairs(Pairs(p1, p2, label, fold, lnos, p))


def _pairs_chunk(rows: list, lnos: list, header: list, col: dict, p: str):
    """``(path1, path2, label, fold, lines)`` of one chunk of rows, validated."""
    width = len(header)
    lens = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(lens != width)
    if bad.size:
        raise DataFormatError(f"expected {width} fields like the header, got {lens[bad[0]]}", path=p, line=lnos[bad[0]])
    table = np.asarray(rows, dtype=str)
    label = parse_labels(table[:, col["label"]], path=p, lines=lnos)
    if "fold" in col:
        fold = parse_folds(table[:, col["fold"]], path=p, lines=lnos)
    else:
        fold = np.full(len(rows), -1, np.int64)
    p1 = spreadsheet_unescape(np.char.strip(table[:, col["path1"]]))
    p2 = spreadsheet_unescape(np.char.strip(table[:, col["path2"]]))
    n1, n2 = np.char.str_len(p1), np.char.str_len(p2)
    empty = np.flatnonzero((n1 == 0) | (n2 == 0))
    if empty.size:
        raise DataFormatError("empty image path", path=p, line=lnos[empty[0]])
    cap = limit("QMAG_MAX_FIELD_CHARS")
    long = np.flatnonzero(np.maximum(n1, n2) > cap)
    if long.size:
        k = int(long[0])
        raise DataFormatError(
            f"image path of {max(n1[k], n2[k]):,} characters, above the limit of {cap:,} (QMAG_MAX_FIELD_CHARS)",
            path=p,
            line=lnos[k],
        )
    return p1, p2, label, fold, np.asarray(lnos, np.int64)


def confine_pairs(pairs: Pairs, root: str | os.PathLike) -> None:
    """Refuse the whole pairs file when any image path in it escapes ``root`` (absolute
    paths elsewhere, ``..``, symlinks leading out); the error names the file and line."""
    from ..safeio import confine_paths

    lines = pairs.line if pairs.line.size == len(pairs) else None
    for col in (pairs.path1, pairs.path2):
        confine_paths(col.tolist(), root, source=pairs.source or None, lines=lines)


def write_pairs_csv(path: str | os.PathLike, pairs: Pairs) -> None:
    """Write ``path1,path2,label,fold`` (atomically; paths spreadsheet-safe, see
    :func:`~qmag_core.io.common.spreadsheet_safe`, and read back unchanged)."""
    p1, p2 = spreadsheet_safe(pairs.path1), spreadsheet_safe(pairs.path2)
    with atomic_write(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path1", "path2", "label", "fold"])
        for a, b, lab, f in zip(p1.tolist(), p2.tolist(), pairs.label.tolist(), pairs.fold.tolist(), strict=True):
            w.writerow([a, b, int(lab), int(f)])


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
