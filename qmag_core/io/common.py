"""Shared pieces of the file readers: limits, label and fold parsing, the CSV table reader."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import numpy.typing as npt

from ..errors import DataFormatError, shown
from ..limits import limit
from ..safeio import read_text

#: a quality (embedding length) above this is refused as implausible
MAX_QUALITY = 1e6
#: fold ids must lie in [-1, MAX_FOLD]
MAX_FOLD = 1_000_000

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".ppm", ".tif", ".tiff")

_POS = {"1", "1.0", "+1", "true", "t", "yes", "y", "same", "genuine", "match", "matched", "mated"}
_NEG = {
    "0",
    "0.0",
    "-1",
    "-1.0",
    "false",
    "f",
    "no",
    "n",
    "different",
    "diff",
    "imposter",
    "impostor",
    "mismatch",
    "mismatched",
    "nonmated",
    "non-mated",
}


#: a cell starting with one of these is run as a formula by spreadsheets (OWASP "CSV
#: injection"), also after leading quotes
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _formula_like(a: np.ndarray) -> np.ndarray:
    body = np.char.lstrip(a, "'")
    hit = np.zeros(a.shape, bool)
    for t in FORMULA_TRIGGERS:
        hit |= np.char.startswith(body, t)
    return hit


def spreadsheet_safe(values) -> np.ndarray:
    """Text cells made safe to open in a spreadsheet: a cell that would run as a formula
    (its first character after any leading ``'`` is ``= + - @`` TAB or CR) gets one more
    leading ``'``; numbers such as ``-0.5`` are left as they are.
    :func:`spreadsheet_unescape` undoes it exactly, so our readers get the value back."""
    import pandas as pd

    a = np.asarray(values, dtype=str)
    hit = _formula_like(a)
    if hit.any():
        hit &= pd.to_numeric(pd.Series(a.ravel()), errors="coerce").isna().to_numpy().reshape(a.shape)
    return np.where(hit, np.char.add("'", a), a)


def spreadsheet_unescape(values) -> np.ndarray:
    """The inverse of :func:`spreadsheet_safe` (cells written by other tools are left as
    they are unless they carry exactly that escape); the array's dtype is kept."""
    v = np.asarray(values)
    a = v.astype(str)
    hit = np.char.startswith(a, "'") & _formula_like(a)
    if not hit.any():
        return v
    out = v.astype(object)
    out[hit] = [x[1:] for x in a[hit].tolist()]  # only the escaped cells, rare
    return out if v.dtype.kind == "O" else out.astype(str)


def norm_path(p: str) -> str:
    p = p.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def parse_folds(fv, *, path, lines) -> np.ndarray:
    """Fold ids from strings: integers in [-1, MAX_FOLD]."""
    fv = np.char.strip(np.asarray(fv, dtype=str))
    okf = np.char.isdigit(np.char.lstrip(fv, "-")) & (np.char.count(fv, "-") <= 1) & (np.char.str_len(fv) <= 8)
    if okf.all():
        fold = fv.astype(np.int64)
        okf = (fold >= -1) & (fold <= MAX_FOLD)
    if not okf.all():
        k = int(np.flatnonzero(~okf)[0])
        raise DataFormatError(
            f"fold must be an integer from -1 to {MAX_FOLD:,}, got {shown(fv[k])}",
            path=path,
            line=None if lines is None else int(lines[k]),
        )
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
            f"label {shown(values[bad[0]])} not understood; expected 1/0, 1/-1, true/false, yes/no or same/different",
            path=path,
            line=ln,
        )
    uniq = set(arr[neg].tolist())
    if {"0", "0.0"} & uniq and {"-1", "-1.0"} & uniq:
        raise DataFormatError("labels mix 0 and -1 as 'different'; use one coding", path=path)
    return pos.astype(np.int8)


_ALIASES = {
    "path1": ("path1", "file_x", "img1", "image1", "file1", "a", "left", "probe"),
    "path2": ("path2", "file_y", "img2", "image2", "file2", "b", "right", "reference"),
    "label": ("label", "decision", "same", "is_same", "issame", "genuine", "y", "target"),
    "fold": ("fold", "folds", "split"),
}


#: a leading metadata line of our CSVs: ``# key=value`` (optionally ``# qmag: key=value``)
META_RE = re.compile(r"#\s*(?:qmag:)?\s*([\w-]+)\s*=\s*(.*?)\s*$")


#: rows validated at a time: a bad file fails at its first bad chunk, and memory stays
#: bounded by the arrays of the rows kept
CHUNK_ROWS = 1 << 16


def read_csv_table(p: str, *, comment: bool = True, chunk: int = CHUNK_ROWS):
    """``(header, chunks, metadata)`` of a CSV via the csv module, where ``chunks`` yields
    ``(rows, line numbers)`` of at most ``chunk`` non-blank rows; accepts CRLF and a
    missing final newline.  Lines starting with '#' before the header are metadata
    (``# key=value``)."""
    text = read_text(p, expected="a CSV file", lines=True)
    meta = {}
    buf = io.StringIO(text, newline=None)
    start = 0
    pos = 0
    while True:
        ln = buf.readline()
        if not ln:
            raise DataFormatError("empty file: expected a header line", path=p)
        if not (comment and (ln.startswith("#") or not ln.strip())):
            break
        m = META_RE.match(ln.rstrip("\n"))
        if m:
            meta[m.group(1)] = m.group(2).strip()
        start += 1
        pos = buf.tell()
    buf.seek(pos)
    reader = csv.reader(buf)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as e:
        raise DataFormatError(f"malformed CSV ({e})", path=p, line=start + 1) from None
    check_header(header, p, start + 1)

    def chunks():
        rows, lnos = [], []
        try:
            for r in reader:
                if not r or all(not c.strip() for c in r):
                    continue
                rows.append(r)
                lnos.append(start + reader.line_num)
                if len(rows) >= chunk:
                    yield rows, lnos
                    rows, lnos = [], []
        except csv.Error as e:
            raise DataFormatError(f"malformed CSV ({e})", path=p, line=start + 1 + reader.line_num) from None
        if rows:
            yield rows, lnos

    return header, chunks(), meta


def check_header(header, p, line) -> None:
    """Refuse a header wider than ``QMAG_MAX_COLUMNS``, a column name longer than
    ``QMAG_MAX_FIELD_CHARS`` and duplicate (case-insensitive) names: one of them would be
    ignored."""
    cap, field = limit("QMAG_MAX_COLUMNS"), limit("QMAG_MAX_FIELD_CHARS")
    if len(header) > cap:
        raise DataFormatError(
            f"header has {len(header):,} columns, above the limit of {cap:,} (QMAG_MAX_COLUMNS)", path=p, line=line
        )
    seen = {}
    for h in header:
        if len(str(h)) > field:
            raise DataFormatError(
                f"column name {shown(h)} is above the limit of {field:,} characters (QMAG_MAX_FIELD_CHARS)",
                path=p,
                line=line,
            )
        k = str(h).strip().lower()
        if k in seen and k:
            raise DataFormatError(f"column {shown(h)} appears twice in the header", path=p, line=line)
        seen[k] = True


def header_words(header) -> str:
    """A header for a message: its first 8 names (each cut to 60 characters) and how many more."""
    names = [shown(h) for h in list(header)[:8]]
    more = f" … ({len(header):,} columns)" if len(header) > 8 else ""
    return "[" + ", ".join(names) + more + "]"


def map_columns(header, required, optional, columns, p):
    low = [h.lower() for h in header]
    out = {}
    for key in required + optional:
        if columns and key in columns:
            name = columns[key]
            if name not in header:
                raise DataFormatError(
                    f"column {shown(name)} (mapped to {key}) not in header {header_words(header)}", path=p, line=1
                )
            out[key] = header.index(name)
            continue
        for alias in _ALIASES.get(key, (key,)):
            if alias in low:
                out[key] = low.index(alias)
                break
        else:
            if key in required:
                raise DataFormatError(
                    f"no column for {key!r}; header is {header_words(header)}. Expected one of "
                    f"{list(_ALIASES.get(key, (key,)))} or a column mapping",
                    path=p,
                    line=1,
                )
    return out
