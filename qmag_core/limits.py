"""Every bound a user can set, read from the environment like an argument.

Each limit is a ``QMAG_*`` variable with a default.  Values are whole numbers (``_``
allowed, ``1e3`` read as 1000 when it is whole); byte limits also take ``K``/``M``/``G``
(×1000) and ``KiB``/``MiB``/``GiB`` (×1024).  Anything else — text, zero, a negative
number, a fraction — is refused with a :class:`~qmag_core.errors.QMagError` naming the
variable, never silently replaced by the default.  Limits are read when used, so a bad
value fails the work that needs it (the CLI checks them all before it starts).
"""

from __future__ import annotations

import math
import os
import re

from .errors import QMagError, shown

__all__ = ["LIMITS", "limit", "check_environment", "parse_limit"]

#: name → (default, unit, what it bounds)
LIMITS: dict[str, tuple[int, str, str]] = {
    "QMAG_MAX_TEXT_BYTES": (2 << 30, "bytes", "one text input (CSV, pairs, list, JSON)"),
    "QMAG_MAX_LINE_BYTES": (1 << 20, "bytes", "one line of a table or list file"),
    "QMAG_MAX_COLUMNS": (256, "columns", "the header of a CSV table"),
    "QMAG_MAX_FIELD_CHARS": (4096, "chars", "one cell of a CSV table (a path is at most 4096)"),
    "QMAG_MAX_ARRAY_BYTES": (4 << 30, "bytes", "one .npy / .npz array"),
    "QMAG_MAX_IMAGE_BYTES": (64 << 20, "bytes", "one image file"),
    "QMAG_MAX_PIXELS": (80_000_000, "pixels", "the declared size of one image"),
    "QMAG_WORK_SIDE": (2048, "px", "photos with a longer side are downscaled once while decoding"),
    "QMAG_MAX_FULL_DECODE_PIXELS": (40_000_000, "pixels", "an image that cannot decode at reduced size"),
    "QMAG_MAX_META_BYTES": (4 << 30, "bytes", "one IJB protocol meta file"),
    "QMAG_MAX_MODEL_BYTES": (2 << 30, "bytes", "one ONNX model"),
    "QMAG_MAX_CHECKPOINT_BYTES": (4 << 30, "bytes", "one MagFace checkpoint"),
}

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
_NUMBER = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9_]*)?(?:e\+?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
#: larger values are surely a typo (and would overflow the arrays they size)
_MAX_VALUE = 1 << 62


def parse_limit(name: str, raw: str) -> int:
    """The value of limit ``name`` written as ``raw``; :class:`QMagError` naming the
    variable and what it expects when ``raw`` is not a positive whole number."""
    default, unit, what = LIMITS[name]
    m = _NUMBER.match(raw)
    suffix = m.group(2).lower() if m else ""
    value = None
    if m and len(raw) <= 40 and (suffix == "" or (unit == "bytes" and suffix in _UNITS)):
        number = m.group(1).replace("_", "")
        try:
            v = float(number) if any(c in number for c in ".eE") else int(number)
        except ValueError:
            v = None
        if v is not None and math.isfinite(v) and v == int(v):
            value = int(v) * _UNITS[suffix]
    if value is None or not 1 <= value <= _MAX_VALUE:
        also = " (or with K, M, G, KiB, MiB, GiB)" if unit == "bytes" else ""
        raise QMagError(
            f"{name}={shown(raw)}: expected a positive whole number of {unit}{also}; it bounds {what} "
            f"(default {default:,}; unset it to use the default)"
        )
    return value


def limit(name: str) -> int:
    """The limit ``name`` (a key of :data:`LIMITS`): the environment's value, checked,
    or the default."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return LIMITS[name][0]
    return parse_limit(name, raw)


def check_environment() -> None:
    """Refuse the first bad ``QMAG_*`` limit (the CLI calls this before any work)."""
    for name in LIMITS:
        limit(name)
