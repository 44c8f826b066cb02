"""insightface validation sets (``lfw.bin``, ``agedb_30.bin``, ``cfp_fp.bin``, ``calfw.bin``,
``cplfw.bin``): ``(bins, issame_list)`` pickled, ``bins`` the encoded 112×112 aligned
ArcFace crops (JPEG/PNG bytes, or numpy uint8 arrays of those bytes), image 2k and
2k + 1 forming pair k, ``issame_list`` one bool per pair.

A pickle can run code, so these files are read with a restricted unpickler that
resolves only what such files hold — numpy's array reconstruction for uint8/bool arrays
and latin-1 ``_codecs.encode`` (how protocol-2 pickles store bytes) — and refuses
every other global *before* it is called.  The file is size-capped and the structure
is checked after loading.  Accuracy follows the insightface protocol: 10 consecutive
folds of equal size.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from dataclasses import dataclass

import numpy as np

from ..errors import DataFormatError
from ..limits import limit
from ..safeio import read_bytes

__all__ = ["BinSet", "read_bin", "write_bin", "bin_folds", "bin_pairs", "MAX_BIN_IMAGES"]

#: a .bin holding more images than this is refused (the largest insightface sets hold 14,000)
MAX_BIN_IMAGES = 1_000_000


@dataclass
class BinSet:
    """images: list of encoded image bytes (2·n_pairs); issame: (n_pairs,) bool."""

    images: list
    issame: np.ndarray
    source: str = ""

    @property
    def n_pairs(self) -> int:
        return int(self.issame.size)


def _latin1_encode(obj, encoding="latin1", errors="strict"):
    import codecs

    if not isinstance(obj, str) or encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not allowed")
    return codecs.encode(obj, "latin1", errors if errors in ("strict",) else "strict")


#: no array built while unpickling may exceed this (an encoded 112×112 crop is a few kB)
_MAX_PICKLED_ARRAY = 64 << 20


def _check_alloc(shape, dtype) -> None:
    try:
        dims = [int(d) for d in np.atleast_1d(shape)]
        itemsize = np.dtype(dtype).itemsize
    except (TypeError, ValueError):
        return  # numpy itself will refuse it
    if any(d < 0 for d in dims) or math.prod(dims) * itemsize > _MAX_PICKLED_ARRAY:
        raise pickle.UnpicklingError(f"refused: an array of shape {tuple(dims)} is far larger than any image of a .bin")


class _BoundedArray(np.ndarray):
    """``numpy.ndarray`` as a pickle may call it, with the allocation bounded."""

    def __new__(cls, shape=(), dtype=float, *args, **kw):
        _check_alloc(shape, dtype)
        return np.ndarray.__new__(cls, shape, dtype, *args, **kw)


def _bounded_reconstruct(subtype, shape, dtype):
    from numpy._core.multiarray import _reconstruct

    _check_alloc(shape, dtype)
    return _reconstruct(subtype, shape, dtype)


class _BinUnpickler(pickle.Unpickler):
    """Resolves only the globals an insightface .bin needs; anything else is refused."""

    def find_class(self, module, name):
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            return _bounded_reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return _BoundedArray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"refused: the file asks for {module}.{name}, which an insightface .bin "
            "never contains (a pickle that would run code)"
        )


def read_bin(path: str | os.PathLike, *, max_bytes: int | None = None) -> BinSet:
    """Read an insightface ``.bin`` safely (see the module docstring); raises
    :class:`DataFormatError` naming the file and the problem."""
    p = str(path)
    data = read_bytes(
        p, max_bytes=limit("QMAG_MAX_ARRAY_BYTES") if max_bytes is None else max_bytes, what=".bin file", name=p
    )
    try:
        obj = _BinUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DataFormatError(
            str(e) if str(e).startswith("refused") else f"not a readable .bin pickle ({e})", path=p
        ) from None
    except (
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        MemoryError,
        RecursionError,
        UnicodeError,
    ) as e:
        raise DataFormatError(f"not a readable .bin pickle ({type(e).__name__}: {str(e)[:120]})", path=p) from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise DataFormatError(f"expected a pickled pair (bins, issame_list), got {type(obj).__name__}", path=p)
    bins, issame = obj
    images = _bin_images(bins, p)
    same = _bin_issame(issame, p)
    if len(images) != 2 * same.size:
        raise DataFormatError(f"{len(images)} images for {same.size} pairs; expected two images per pair", path=p)
    return BinSet(images, same.astype(bool), p)


def _bin_images(bins, p: str) -> list[bytes]:
    """The encoded images of a .bin's ``bins`` (bytes or 1-d uint8 arrays)."""
    if isinstance(bins, np.ndarray) and bins.dtype == object:
        bins = list(bins)
    if not isinstance(bins, (list, tuple)) or not bins:
        raise DataFormatError("'bins' must be a non-empty list of encoded images", path=p)
    if len(bins) > MAX_BIN_IMAGES:
        raise DataFormatError(f"{len(bins):,} images; at most {MAX_BIN_IMAGES:,} are accepted", path=p)
    images = []
    for k, b in enumerate(bins):
        if isinstance(b, (bytes, bytearray)):
            images.append(bytes(b))
        elif isinstance(b, np.ndarray) and b.dtype == np.uint8 and b.ndim == 1:
            images.append(np.asarray(b).tobytes())
        else:
            what = f"{b.dtype} array of shape {b.shape}" if isinstance(b, np.ndarray) else type(b).__name__
            raise DataFormatError(f"image {k} is a {what}; expected encoded image bytes", path=p)
    return images


def _bin_issame(issame, p: str) -> np.ndarray:
    """``issame_list`` as a flat bool array: a list of booleans (or 0/1) or a 1-d array,
    checked element by element before numpy sees it (a nested or self-referencing list
    would make numpy explore it without bound)."""
    flat = (bool, int, np.bool_, np.integer)
    if isinstance(issame, np.ndarray) and issame.dtype != object:
        same = issame
    elif isinstance(issame, (list, tuple)):
        if len(issame) > MAX_BIN_IMAGES // 2:
            raise DataFormatError(f"{len(issame):,} pairs; at most {MAX_BIN_IMAGES // 2:,} are accepted", path=p)
        bad = next((k for k, x in enumerate(issame) if not isinstance(x, flat)), None)
        if bad is not None:
            what = type(issame[bad]).__name__
            raise DataFormatError(f"'issame_list' item {bad} is a {what}; expected a flat list of booleans", path=p)
        same = np.asarray(issame)
    else:
        raise DataFormatError(f"'issame_list' must be a list of booleans, got {type(issame).__name__}", path=p)
    if same.ndim != 1 or not (same.dtype == bool or (same.dtype.kind in "iu" and np.isin(same, [0, 1]).all())):
        raise DataFormatError(f"'issame_list' must be a list of booleans, got {same.dtype} {same.shape}", path=p)
    return same


def write_bin(path: str | os.PathLike, images: list[bytes], issame) -> None:
    """Write ``(images, issame)`` in the insightface layout (atomically)."""
    from ..outputs import atomic_write

    with atomic_write(path, "wb") as fh:
        pickle.dump((list(images), [bool(x) for x in issame]), fh, protocol=2)


def bin_folds(n_pairs: int, n_folds: int = 10) -> np.ndarray:
    """Fold of each pair: ``n_folds`` consecutive blocks of (nearly) equal size, as
    insightface's verification (KFold without shuffling)."""
    if n_pairs < n_folds:
        raise DataFormatError(f"{n_pairs} pairs cannot be split into {n_folds} folds")
    return np.minimum(np.arange(n_pairs) * n_folds // n_pairs, n_folds - 1)


def bin_pairs(binset: BinSet, n_folds: int = 10):
    """The pairs of a .bin as :class:`~qmag_core.io.pairs.Pairs` over image indices."""
    from .pairs import Pairs

    k = np.arange(binset.n_pairs)
    return Pairs(
        (2 * k).astype(str),
        (2 * k + 1).astype(str),
        binset.issame.astype(np.int8),
        bin_folds(binset.n_pairs, n_folds).astype(np.int64),
        k + 1,
        binset.source,
    )
