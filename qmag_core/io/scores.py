"""Score tables (CSV): s, q1, q2, label[, fold], failed pairs, measures; and writing them back."""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..errors import DataFormatError, shown
from ..outputs import atomic_write
from ..safeio import read_text
from .common import (
    MAX_FOLD,
    MAX_QUALITY,
    META_RE,
    check_header,
    header_words,
    parse_folds,
    parse_labels,
    spreadsheet_safe,
    spreadsheet_unescape,
)


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

    @property
    def encoder_key(self) -> str | None:
        """Fingerprint of the encoder + quality head that made q (None when unknown)."""
        return self.meta.get("encoder_key") or None

    def X(self) -> np.ndarray:
        return np.column_stack([self.s, self.q_min])

    def subset(self, rows: npt.ArrayLike) -> ScoreTable:
        """The pairs selected by ``rows`` (a boolean mask or indices), extra columns with
        them; failed pairs are kept (they carry no scores to select by)."""
        from dataclasses import replace

        return replace(
            self,
            s=self.s[rows],
            q1=self.q1[rows],
            q2=self.q2[rows],
            label=self.label[rows],
            fold=self.fold[rows],
            extra={k: np.asarray(v)[rows] for k, v in self.extra.items()},
        )


def _split_metadata(p: str) -> tuple[dict, str, int]:
    """``(meta, body, n_lines_before_header)``: leading ``# key=value`` and blank lines."""
    text = read_text(p, expected="a CSV with s,q1,q2,label", lines=True)
    meta, pos, line_no = {}, 0, 0
    while pos < len(text):
        nl = text.find("\n", pos)
        ln = text[pos : (nl if nl >= 0 else len(text))]
        if not (ln.startswith("#") or not ln.strip()):
            break
        m = META_RE.match(ln)
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
    check_header(columns, p, header_line)
    cols = {str(c).strip().lower(): c for c in columns}
    if "s" not in cols or "label" not in cols:
        raise DataFormatError(
            "header must have columns s, q1, q2, label[, fold] (or q_min instead of q1, q2); "
            f"got {header_words(columns)}",
            path=p,
            line=header_line,
        )
    if not (("q1" in cols and "q2" in cols) or "q_min" in cols):
        raise DataFormatError(
            f"need columns q1 and q2, or q_min; got {header_words(columns)}", path=p, line=header_line
        )
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
    check_header([h.strip() for h in raw_header], p, header_line)
    return _check_rows(_read_scores_body(p, meta, body, header_line), meta)


def _check_rows(t: ScoreTable, meta: dict) -> ScoreTable:
    """Values a parser accepts but a QMagFace fit must not: absurd qualities; and a row
    count that disagrees with the ``# rows=N`` line our writers add (a truncated file)."""
    q = np.maximum(t.q1, t.q2)
    bad = np.flatnonzero(q > MAX_QUALITY)
    if bad.size:
        raise DataFormatError(
            f"quality {q[bad[0]]:.3g} is implausibly large (limit {MAX_QUALITY:.0e}); data row {bad[0] + 1}",
            path=t.source,
        )
    declared = meta.get("rows")
    if declared is not None and declared.strip().isdigit() and int(declared) != len(t):
        raise DataFormatError(
            f"the file says it has {int(declared):,} rows ('# rows=') but holds {len(t):,}: truncated or edited",
            path=t.source,
        )
    return t


def _read_scores_body(p: str, meta: dict, body: str, header_line: int) -> ScoreTable:
    """The fast (pandas) reader; anything it does not accept as clean goes to the strict
    reader, which returns the same types and names the line of the first problem."""
    import pandas as pd

    try:
        df = pd.read_csv(io.StringIO(body), skipinitialspace=True)
        cols = _score_columns(df.columns, p, header_line)
        if len(df) == 0:
            raise DataFormatError("no score rows after the header", path=p)
        num = _fast_numbers(df, cols)
        q1 = num.get("q1", num.get("q_min"))
        q2 = num.get("q2", num.get("q_min"))
        if np.any(q1 < 0) or np.any(q2 < 0):
            raise _NeedSlowPath
        label = _fast_labels(df[cols["label"]], p)
        fold = _fast_folds(num.get("fold"), len(df))
        known = {"s", "q1", "q2", "q_min", "label", "fold"}
        extra = {orig: _text_back(df[orig].to_numpy()) for low, orig in cols.items() if low not in known}
        return ScoreTable(num["s"], q1, q2, label, fold, meta, extra, p)
    except (_NeedSlowPath, pd.errors.ParserError, DataFormatError, ValueError):
        pass
    return _read_scores_csv_strict(p, meta, body, header_line)


def _fast_numbers(df, cols) -> dict:
    """Finite float columns s, q1, q2, q_min, fold (those present), s within [-1, 1]."""
    import pandas as pd

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
    return num


def _fast_labels(lab, p: str) -> np.ndarray:
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(lab):
        return parse_labels(lab.astype(str).to_numpy(dtype=str), path=p)
    lv = lab.to_numpy(dtype=np.float64)
    u = np.unique(lv)
    if not (np.isin(u, [0, 1]).all() or np.isin(u, [-1, 1]).all()):
        raise _NeedSlowPath
    return (lv == 1).astype(np.int8)


def _fast_folds(fv, n: int) -> np.ndarray:
    if fv is None:
        return np.full(n, -1, np.int64)
    if np.any(fv != np.round(fv)) or np.any(fv < -1) or np.any(fv > MAX_FOLD):
        raise _NeedSlowPath
    return fv.astype(np.int64)


def _read_scores_csv_strict(p, meta, body, header_line) -> ScoreTable:
    """String-based pass that names the first offending line (also parses valid files)."""
    import pandas as pd

    try:
        df = pd.read_csv(
            io.StringIO(body), dtype=str, keep_default_na=False, skip_blank_lines=False, skipinitialspace=True
        )
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
            raise DataFormatError(
                f"column '{name}' expected a finite number, got {shown(v.iloc[bad[0]])}",
                path=p,
                line=int(lines[bad[0]]),
            )
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
        raise DataFormatError(
            f"quality must be ≥ 0, got {min(q1[bad[0]], q2[bad[0]])}", path=p, line=int(lines[bad[0]])
        )
    label = parse_labels(df[cols["label"]].to_numpy(dtype=str), path=p, lines=lines)
    if "fold" in cols:
        fold = parse_folds(df[cols["fold"]].to_numpy(dtype=str), path=p, lines=lines)
    else:
        fold = np.full(len(df), -1, np.int64)
    known = {"s", "q1", "q2", "q_min", "label", "fold"}
    extra = {orig: _text_back(df[orig].to_numpy(dtype=str)) for low, orig in cols.items() if low not in known}
    return ScoreTable(s, q1, q2, label, fold, meta, extra, p)


def _text_back(v: np.ndarray) -> np.ndarray:
    """A text column as written (the spreadsheet escape of our writers undone)."""
    return spreadsheet_unescape(v) if v.dtype.kind in "OUS" else v


def write_scores_csv(path: str | os.PathLike, table: ScoreTable, *, s_hat=None, meta: dict | None = None) -> None:
    """Write a score table (optionally with an ``s_hat`` column); ``meta`` and the
    table's own metadata go into leading ``# key=value`` lines."""
    import pandas as pd

    cols = {"s": table.s, "q1": table.q1, "q2": table.q2, "label": table.label.astype(int)}
    if table.has_folds:
        cols["fold"] = table.fold
    for k, v in table.extra.items():  # text columns (paths) spreadsheet-safe, numbers as they are
        v = np.asarray(v)
        cols[k] = spreadsheet_safe(v) if v.dtype.kind in "OUS" else v
    if s_hat is not None:
        cols["s_hat"] = np.asarray(s_hat, dtype=np.float64)
    allmeta = {**table.meta, **(meta or {}), "rows": len(table)}
    with atomic_write(path, newline="") as fh:
        for k, v in allmeta.items():
            if v is not None and v != "":
                fh.write(f"# {k}={v}\n")
        pd.DataFrame(cols).to_csv(fh, index=False, float_format="%.9g", lineterminator="\n")


def add_scores_column(
    src: str | os.PathLike, dst: str | os.PathLike, values, *, name: str = "s_hat", meta: dict | None = None
) -> int:
    """Copy the scores CSV ``src`` to ``dst`` (atomically; ``dst`` may be ``src``) with
    one column ``name`` set to ``values`` — appended, or replaced where it exists.

    Everything else round-trips: comment and metadata lines, blank lines, line endings,
    every other field as written (no re-rounding, no label recoding, every fold kept).
    ``meta`` adds or updates ``# key=value`` lines.  ``values`` must have one entry
    per data row of :func:`read_scores_csv`; returns the number of rows written."""
    p = str(src)
    text = read_text(p, expected="a CSV with s,q1,q2,label", lines=True)
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
        m = META_RE.match(ln.rstrip("\r\n"))
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
    check_header(header, p, len(head) + 1)
    col = next((j for j, h in enumerate(header) if h.lower() == name.lower()), None)
    data_idx = [j for j in range(1, len(body)) if body[j].strip()]
    if len(data_idx) != values.size:
        raise DataFormatError(f"{values.size} values for {len(data_idx)} data rows", path=p)
    fmt = [repr(float(v)) if math.isfinite(v) else "nan" for v in values.tolist()]
    out = list(out_head)
    if col is None:  # append: each data line as written plus ",value"; blank lines stay
        vi = iter(fmt)
        out += [
            ln.rstrip("\r\n") + "," + (name if j == 0 else next(vi)) + _eol_of(ln, eol) if j == 0 or ln.strip() else ln
            for j, ln in enumerate(body)
        ]
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
    return line[len(line.rstrip("\r\n")) :] or default
