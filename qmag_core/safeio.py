"""Safe file access on behalf of a user.

* **Confinement**: every path read for a user is resolved (symlinks included) and must
  lie under an allowed root; only regular files are read, each up to a byte cap.
* Writing (atomically, outputs checked before the work) is :mod:`qmag_core.outputs`.
* **Bounded arrays**: ``.npy`` / ``.npz`` members are checked against their declared
  shape × dtype *before* anything is allocated, against a byte cap, and against the
  size the archive declares (zip bombs, lying headers and pickles are refused).

Caps come from the environment, read and checked when used (:mod:`qmag_core.limits`):
``QMAG_MAX_TEXT_BYTES`` (text inputs, default 2 GiB), ``QMAG_MAX_LINE_BYTES`` (one line
of a table or list, 1 MiB), ``QMAG_MAX_ARRAY_BYTES`` (one .npy/.npz, 4 GiB),
``QMAG_MAX_IMAGE_BYTES`` (one image file, 64 MiB).
"""

from __future__ import annotations

import math
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np

from .errors import DataFormatError, QMagError, shown
from .limits import limit

__all__ = [
    "PathError",
    "confine_paths",
    "read_bytes",
    "read_head",
    "sha256_file",
    "kind_of",
    "read_text",
    "read_json",
    "load_npy",
    "load_npz",
    "is_real",
    "check_line_lengths",
    "real_list",
]


#: a compressed .npz member that inflates more than this many times (and past 64 MiB)
#: is refused: float embeddings compress about 1.1×, a zip bomb about 1000×
MAX_INFLATION = 200
_MAX_NPZ_MEMBERS = 64


#: what zipfile and numpy raise for damaged archives and members
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
    struct.error,
    KeyError,
    IndexError,
    OverflowError,
)


def is_real(v) -> bool:
    """A JSON number that is a finite real (not a boolean, not NaN or ±inf)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def real_list(v, *, lo: float = -math.inf, hi: float = math.inf, n: tuple[int, int] = (0, 1 << 20)) -> bool:
    """A JSON list of ``n[0]``…``n[1]`` finite numbers, each in [lo, hi]."""
    return isinstance(v, list) and n[0] <= len(v) <= n[1] and all(is_real(x) and lo <= x <= hi for x in v)


class PathError(QMagError):
    """A user-named path lies outside its allowed root, or is not a regular file."""


def _fmt_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _under(p: Path, root: Path) -> bool:
    return p == root or root in p.parents


def confine_paths(
    paths: Sequence[str], root: str | os.PathLike, *, source: str | None = None, lines: Sequence[int] | None = None
) -> list[Path]:
    """Resolve every path of a pairs or list file (``source``), or of a folder scan
    (no ``source``), under ``root``.  The first path that escapes (absolute elsewhere,
    ``..``, a symlink leading out) refuses them all with a :class:`DataFormatError`
    naming the file and line.  Missing files are *not* an error here (they become
    failed rows later)."""
    r = Path(root).resolve()
    out = []
    for k, s in enumerate(paths):
        s = str(s)
        p = Path(s)
        full = p if p.is_absolute() else r / p
        # lexical check first (cheap), then the symlink-resolving one
        norm = Path(os.path.normpath(full))
        bad = not _under(norm, r) or "\x00" in s
        if not bad:
            full = full.resolve()
            bad = not _under(full, r)
        if bad:
            ln = None if lines is None or k >= len(lines) else int(lines[k])
            raise DataFormatError(
                f"image path {shown(s)} lies outside the image folder ({r.name or r}/); "
                + ("the whole file is refused" if source else "nothing is read"),
                path=source,
                line=ln,
            )
        out.append(full)
    return out


def _open_regular(path: str | os.PathLike, label: str, what: str = "file") -> tuple[IO[bytes], os.stat_result]:
    """``(binary file object, its stat)`` of a regular file.  The open does not block
    (a FIFO would wait for a writer forever) and the type is checked on the open
    handle, so devices and FIFOs are refused even if swapped in after a check."""
    try:
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise PathError(f"{label}: cannot read {what} ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise PathError(f"{label}: {kind_of(st.st_mode)}, not a regular file")
    return os.fdopen(fd, "rb"), st


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words (``stat.st_mode``)."""
    if stat.S_ISDIR(mode):
        return "is a folder"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is a special file"


def sha256_file(path: str | os.PathLike, *, name: str | None = None) -> str:
    """SHA-256 (hex) of a regular file, read in chunks; FIFOs and devices are refused
    like every other read here (a plain ``open`` of a FIFO would wait forever)."""
    import hashlib

    fh, _ = _open_regular(path, name or os.path.basename(str(path)) or str(path))
    h = hashlib.sha256()
    with fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_bytes(path: str | os.PathLike, *, max_bytes: int, what: str = "file", name: str | None = None) -> bytes:
    """All bytes of a regular file, refusing devices, FIFOs and files above ``max_bytes``
    (checked on the open handle, so a file swapped after a check is still bounded)."""
    label = name or os.path.basename(str(path)) or str(path)
    fh, st = _open_regular(path, label, what)
    with fh:
        if st.st_size > max_bytes:
            raise DataFormatError(
                f"{what} is {_fmt_bytes(st.st_size)}, above the limit of {_fmt_bytes(max_bytes)}", path=label
            )
        parts = [fh.read(st.st_size + 1)]  # read(n) reserves n bytes: ask for what stat says
        total = len(parts[0])
        while total > st.st_size:  # the file grew after fstat: keep reading, up to the cap
            more = fh.read(1 << 20)
            if not more:
                break
            parts.append(more)
            total += len(more)
            if total > max_bytes:
                raise DataFormatError(f"{what} is above the limit of {_fmt_bytes(max_bytes)}", path=label)
    return b"".join(parts) if len(parts) > 1 else parts[0]


def read_head(path: str | os.PathLike, n: int = 64 << 10) -> bytes:
    """The first ``n`` bytes of a regular file (to tell formats apart without reading
    the whole file)."""
    fh, _ = _open_regular(path, str(path))
    with fh:
        return fh.read(n)


def read_text(path: str | os.PathLike, *, expected: str, max_bytes: int | None = None, lines: bool = False) -> str:
    """UTF-8 text of a regular file (BOM dropped), or a :class:`DataFormatError` saying
    what was expected.  ``lines``: a table or list, whose lines must each fit
    ``QMAG_MAX_LINE_BYTES`` (checked on the bytes, before anything parses them)."""
    data = read_bytes(path, max_bytes=limit("QMAG_MAX_TEXT_BYTES") if max_bytes is None else max_bytes, name=str(path))
    if lines:
        _check_lines(data, str(path), limit("QMAG_MAX_LINE_BYTES"))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(
            f"not a text file (not UTF-8 at byte {e.start}); expected {expected}", path=str(path)
        ) from None


def read_json(path: str | os.PathLike, *, expected: str, max_bytes: int | None = None):
    """A JSON document of a regular UTF-8 file; every way it can be bad — syntax, nesting
    too deep, an integer of thousands of digits — is a :class:`DataFormatError` naming
    the file (and the line where JSON says)."""
    import json

    label = str(path)

    def bounded_int(s: str) -> int:
        if len(s.lstrip("-")) > 30:
            raise DataFormatError(f"a number of {len(s):,} digits; expected {expected}", path=label)
        return int(s)

    text = read_text(path, expected=expected, max_bytes=max_bytes)
    try:
        return json.loads(text, parse_int=bounded_int)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"not valid JSON ({e.msg}); expected {expected}", path=label, line=e.lineno) from None
    except RecursionError:
        raise DataFormatError(f"JSON nested too deeply; expected {expected}", path=label) from None


def check_line_lengths(path: str | os.PathLike, *, label: str | None = None) -> None:
    """Refuse a text file with a line longer than ``QMAG_MAX_LINE_BYTES``, naming the
    line, without reading the file into memory (it is mapped a chunk at a time)."""
    p = str(path)
    cap = limit("QMAG_MAX_LINE_BYTES")
    if os.path.getsize(p) > cap:
        _check_lines(np.memmap(p, np.uint8, mode="r"), label or p, cap)


def _check_lines(data, label: str, cap: int, chunk: int = 64 << 20) -> None:
    """Refuse ``data`` when a line is longer than ``cap`` bytes, naming the line: newline
    positions found with numpy, a chunk at a time (no copy of the text is made)."""
    if len(data) <= cap:
        return
    buf = np.frombuffer(data, np.uint8)
    prev, n_lines = -1, 0  # offset of the last newline seen, newlines before the chunk
    for start in range(0, len(buf), chunk):
        nl = np.flatnonzero(buf[start : start + chunk] == 10) + start
        ends = np.append(nl, len(buf)) if start + chunk >= len(buf) else nl
        lengths = np.diff(ends, prepend=prev) - 1
        long = np.flatnonzero(lengths > cap)
        if long.size:
            k = int(long[0])
            raise DataFormatError(
                f"line is {_fmt_bytes(int(lengths[k]))} long, above the limit of {_fmt_bytes(cap)} "
                "(QMAG_MAX_LINE_BYTES); expected one record per line",
                path=label,
                line=n_lines + k + 1,
            )
        if nl.size:
            prev = int(nl[-1])
        elif start + chunk < len(buf) and start + chunk - prev - 1 > cap:  # one line spans the chunk
            raise DataFormatError(
                f"line is longer than the limit of {_fmt_bytes(cap)} (QMAG_MAX_LINE_BYTES)",
                path=label,
                line=n_lines + 1,
            )
        n_lines += nl.size


# ------------------------------------------------------------------------ arrays
def _read_header(fp, label: str):
    """(shape, fortran_order, dtype) of an .npy stream, validated."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except _ZIP_ERRORS + (SyntaxError, TypeError) as e:
        raise DataFormatError(
            f"not an .npy array ({(str(e).splitlines() or [type(e).__name__])[0][:120]})", path=label
        ) from None
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise DataFormatError(f"not an .npy array (shape {shape!r})", path=label)
    if dtype.hasobject:
        raise DataFormatError(
            "is an object array (pickled Python objects); only plain numeric/string arrays are accepted", path=label
        )
    return shape, fortran, dtype


def _nbytes(shape, dtype) -> int:
    return int(math.prod(int(d) for d in shape)) * int(dtype.itemsize)


def load_npy(path: str | os.PathLike, *, max_bytes: int | None = None, name: str | None = None) -> np.ndarray:
    """A plain .npy array; its header is checked against the file size and the cap
    before the data is read."""
    cap = limit("QMAG_MAX_ARRAY_BYTES") if max_bytes is None else max_bytes
    label = name or str(path)
    fh, st = _open_regular(path, label)
    with fh:
        shape, fortran, dtype = _read_header(fh, label)
        need = _nbytes(shape, dtype)
        if need > cap:
            raise DataFormatError(
                f"declares {shape} {dtype} = {_fmt_bytes(need)}, above the limit of "
                f"{_fmt_bytes(cap)} (QMAG_MAX_ARRAY_BYTES)",
                path=label,
            )
        have = st.st_size - fh.tell()
        if have < need:
            raise DataFormatError(
                f"declares {shape} {dtype} ({_fmt_bytes(need)}) but holds only {_fmt_bytes(have)}: "
                "truncated or not what it says",
                path=label,
            )
        fh.seek(0)
        try:
            return np.lib.format.read_array(fh, allow_pickle=False)
        except _ZIP_ERRORS + (TypeError,) as e:
            raise DataFormatError(f"cannot read the array ({str(e).splitlines()[0][:120]})", path=label) from None


def load_npz(
    path: str | os.PathLike, *, max_bytes: int | None = None, name: str | None = None
) -> dict[str, np.ndarray]:
    """All members of an .npz as ``{name: array}``.  Each member must be a plain .npy
    whose declared shape × dtype matches the size the archive declares for it; the
    total is capped and highly compressed large members (zip bombs) are refused, all
    before anything is inflated."""
    cap = limit("QMAG_MAX_ARRAY_BYTES") if max_bytes is None else max_bytes
    label = name or str(path)
    fh, _ = _open_regular(path, label)
    try:
        zf = zipfile.ZipFile(fh)  # a passed file object stays open: closed below with the archive
    except _ZIP_ERRORS as e:
        fh.close()
        raise DataFormatError(
            f"cannot read as .npz ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})", path=label
        ) from None
    out: dict[str, np.ndarray] = {}
    with fh, zf:
        infos = zf.infolist()
        if len(infos) > _MAX_NPZ_MEMBERS:
            raise DataFormatError(f"{len(infos)} members; at most {_MAX_NPZ_MEMBERS} are accepted", path=label)
        total = 0
        plan = []
        for info in infos:
            key = info.filename
            if not key.endswith(".npy"):
                raise DataFormatError(f"member {key!r} is not an .npy array", path=label)
            mlabel = f"{label}[{key[:-4]}]"
            try:
                with zf.open(info) as fp:
                    shape, _, dtype = _read_header(fp, mlabel)
                    header_len = fp.tell()
            except _ZIP_ERRORS as e:
                raise DataFormatError(f"damaged member ({str(e)[:120] or type(e).__name__})", path=mlabel) from None
            need = _nbytes(shape, dtype)
            if info.file_size != header_len + need:
                raise DataFormatError(
                    f"declares {shape} {dtype} ({_fmt_bytes(need)}) but the archive stores "
                    f"{_fmt_bytes(max(0, info.file_size - header_len))}: not what it says",
                    path=mlabel,
                )
            if need > (64 << 20) and need > MAX_INFLATION * max(info.compress_size, 1):
                raise DataFormatError(
                    f"inflates {need / max(info.compress_size, 1):.0f}× to {_fmt_bytes(need)}: "
                    "refused as a likely zip bomb",
                    path=mlabel,
                )
            total += need
            if total > cap:
                raise DataFormatError(
                    f"arrays add up to more than {_fmt_bytes(cap)} (QMAG_MAX_ARRAY_BYTES)", path=label
                )
            plan.append((info, key[:-4], mlabel))
        for info, key, mlabel in plan:
            try:
                with zf.open(info) as fp:
                    out[key] = np.lib.format.read_array(fp, allow_pickle=False)
            except _ZIP_ERRORS + (TypeError,) as e:
                raise DataFormatError(
                    f"damaged member ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})", path=mlabel
                ) from None
    return out
