"""Embeddings files: .npz (ours), a folder of .npz shards with a manifest (very large
sets), .npy (N, D) and MagFace feat.list."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..errors import DataFormatError, QMagError, shown
from ..outputs import atomic_write, save_npz
from ..safeio import load_npy, load_npz, read_json, read_text, sha256_file
from .common import norm_path


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
    encoder_key : str, the encoder's weights + quality head fingerprint ('' when unknown):
        q depends on it, so α/β trained on these qualities record it
    measures : {name: (N,) float64}, model-free quality measures per image
        (:mod:`qmag_core.quality.baselines`; NaN where unknown)
    """

    embeddings: npt.NDArray[np.float32]
    quality: npt.NDArray[np.float32]
    paths: npt.NDArray[np.str_]
    ok: npt.NDArray[np.bool_]
    error: npt.NDArray[np.str_]
    encoder: str = ""
    measures: dict = field(default_factory=dict)
    encoder_key: str = ""

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
    def from_array(cls, e: npt.ArrayLike, paths=None, encoder: str = "") -> Embeddings:
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
        return {norm_path(p): k for k, p in enumerate(self.paths.tolist())}


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
        encoder_key=np.asarray(emb.encoder_key, dtype=str),
        **{f"measure_{k}": np.asarray(v, np.float64) for k, v in emb.measures.items()},
    )
    return path


#: the manifest of a sharded embeddings folder
MANIFEST = "manifest.json"
SHARDS_FORMAT = "qmag-embedding-shards/1"


def shard_name(index: int) -> str:
    return f"part-{index:05d}.npz"


def write_shard_manifest(folder: str | os.PathLike, parts: list[dict], *, total: int, complete: bool) -> None:
    """(Re)write ``folder/manifest.json`` atomically: the shards written so far (``file``,
    ``rows``, ``ok``, ``sha256``), in row order; ``complete`` once every row is there."""
    import json

    doc = {"format": SHARDS_FORMAT, "rows": int(total), "complete": bool(complete), "parts": parts}
    with atomic_write(os.path.join(folder, MANIFEST)) as fh:
        json.dump(doc, fh, indent=1)


def save_shard(folder: str | os.PathLike, index: int, emb: Embeddings) -> dict:
    """Write one shard (the .npz layout) atomically; returns its manifest entry."""
    f = os.path.join(folder, shard_name(index))
    save_embeddings(f, emb)
    digest = sha256_file(f)
    return {"file": shard_name(index), "rows": len(emb.paths), "ok": int(emb.ok.sum()), "sha256": digest}


def read_shard_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of a shard folder, checked: known format, shard names of the form
    ``part-NNNNN.npz`` (nothing outside the folder is ever read), row counts adding up."""
    import re

    label = os.path.join(str(folder), MANIFEST)
    doc = read_json(label, expected="a shard manifest (JSON)")
    if not isinstance(doc, dict) or doc.get("format") != SHARDS_FORMAT:
        raise DataFormatError(f"not a {SHARDS_FORMAT} manifest", path=label)
    if not isinstance(doc.get("rows"), int) or doc["rows"] < 0:
        raise DataFormatError("'rows' must be the number of images (a whole number)", path=label)
    parts = doc.get("parts")
    if not isinstance(parts, list) or not all(isinstance(x, dict) for x in parts):
        raise DataFormatError("'parts' must be a list of shard entries", path=label)
    for k, x in enumerate(parts):
        if not re.fullmatch(r"part-\d{5,}\.npz", str(x.get("file", ""))) or not isinstance(x.get("rows"), int):
            raise DataFormatError(f"part {k}: needs 'file' (part-NNNNN.npz) and 'rows'", path=label)
    written = sum(x["rows"] for x in parts)
    if written > doc["rows"] or (doc.get("complete") and written != doc["rows"]):
        raise DataFormatError(f"the parts hold {written:,} rows, the manifest says {doc['rows']:,}", path=label)
    return doc


def _load_shards(folder: str) -> Embeddings:
    """All shards of a folder written by ``qmag embed --shard-size``, in row order."""
    doc = read_shard_manifest(folder)
    if not doc.get("complete"):
        done = sum(x["rows"] for x in doc["parts"])
        raise DataFormatError(
            f"incomplete: {done:,} of {doc['rows']:,} rows written; run the same qmag embed command "
            "again to finish it (finished shards are kept)",
            path=folder,
        )
    parts = []
    real = os.path.realpath(folder)
    for x in doc["parts"]:
        f = os.path.join(folder, x["file"])
        if os.path.dirname(os.path.realpath(f)) != real:
            raise DataFormatError("is a link leading out of the shard folder; refused", path=f)
        if "sha256" in x:
            if sha256_file(f, name=f) != x["sha256"]:
                raise DataFormatError("changed since it was written (checksum differs from the manifest)", path=f)
        e = _load_npz(f)
        if len(e.paths) != x["rows"]:
            raise DataFormatError(f"{len(e.paths)} rows, the manifest says {x['rows']}", path=f)
        parts.append(e)
    if not parts:
        raise DataFormatError("no shards", path=folder)
    first = parts[0]
    for e, x in zip(parts, doc["parts"], strict=True):
        if e.embeddings.shape[1] != first.embeddings.shape[1] or (e.encoder_key, e.encoder) != (
            first.encoder_key,
            first.encoder,
        ):
            raise DataFormatError("shards from different encoders or dimensions", path=os.path.join(folder, x["file"]))
    names = set.intersection(*(set(e.measures) for e in parts))
    return Embeddings(
        np.concatenate([e.embeddings for e in parts]),
        np.concatenate([e.quality for e in parts]),
        np.concatenate([e.paths for e in parts]),
        np.concatenate([e.ok for e in parts]),
        np.concatenate([e.error for e in parts]),
        first.encoder,
        {k: np.concatenate([e.measures[k] for e in parts]) for k in sorted(names)},
        first.encoder_key,
    )


def load_embeddings(path: str | os.PathLike) -> Embeddings:
    """Read embeddings from .npz (our layout), a shard folder (``qmag embed
    --shard-size``), .npy (N, D) or a MagFace feat.list."""
    p = str(path)
    if os.path.isdir(p):
        if not os.path.isfile(os.path.join(p, MANIFEST)):
            raise DataFormatError(f"a folder of embeddings needs {MANIFEST} (qmag embed --shard-size)", path=p)
        return _load_shards(p)
    low = p.lower()
    if low.endswith(".npz"):
        return _load_npz(p)
    if low.endswith(".npy"):
        arr = load_npy(p)
        if arr.ndim != 2 or arr.dtype.kind not in "fiu":
            raise DataFormatError(f"expected a real numeric array of shape (N, D), got {arr.dtype} {arr.shape}", path=p)
        return Embeddings.from_array(arr)
    return read_feat_list(p)


_NPZ_KINDS = {"paths": "U", "error": "U", "encoder": "U", "encoder_key": "U", "ok": "b?", "quality": "fiu"}


def _npz_member(z, name: str, default, n: int, p: str):
    """Optional member ``name`` of an embeddings .npz, dtype and shape checked."""
    if name not in z:
        return default
    v = z[name]
    if v.dtype.kind not in _NPZ_KINDS[name] and not (_NPZ_KINDS[name] == "U" and v.dtype.kind == "S"):
        raise DataFormatError(f"'{name}' has dtype {v.dtype}; expected {_NPZ_KINDS[name]!r} kind", path=p)
    if name in ("encoder", "encoder_key"):
        if v.size != 1:
            raise DataFormatError(f"'{name}' must be one string, got shape {v.shape}", path=p)
        return str(v.reshape(()).item())
    if v.shape != (n,):
        raise DataFormatError(f"'{name}' must have shape ({n},), got {v.shape}", path=p)
    return v


def _check_stored_quality(stored_q, ok, lengths, p: str) -> None:
    """A stored 'quality' must equal the embedding lengths where both are known."""
    if stored_q is None:
        return
    sq = stored_q.astype(np.float64)
    off = np.flatnonzero(ok & np.isfinite(sq) & ~np.isclose(sq, lengths, rtol=1e-3, atol=1e-4))
    if off.size:
        k = int(off[0])
        raise DataFormatError(
            f"'quality' must equal the embedding lengths; row {k}: stored {sq[k]:.6g}, norm {float(lengths[k]):.6g}",
            path=p,
        )


def _npz_measures(z, n: int, p: str) -> dict:
    measures = {}
    for key, v in z.items():
        if key.startswith("measure_"):
            if v.shape != (n,) or v.dtype.kind not in "fiu":
                raise DataFormatError(f"'{key}' must be numbers of shape ({n},), got {v.dtype} {v.shape}", path=p)
            measures[key[len("measure_") :]] = v.astype(np.float64)
    return measures


def load_embeddings_npz(path: str | os.PathLike) -> Embeddings:
    """One .npz of our layout (a single file or one shard)."""
    return _load_npz(str(path))


def _load_npz(p: str) -> Embeddings:
    z = load_npz(p)
    if "embeddings" not in z:
        raise DataFormatError(f"missing array 'embeddings' (found {sorted(z)})", path=p)
    e = z["embeddings"]
    if e.ndim != 2 or e.dtype.kind not in "fiu":
        raise DataFormatError(f"'embeddings' must be real numbers of shape (N, D), got {e.dtype} {e.shape}", path=p)
    n = e.shape[0]
    base = Embeddings.from_array(e)
    paths = _npz_member(z, "paths", base.paths, n, p).astype(str)
    ok_in = _npz_member(z, "ok", base.ok, n, p)
    if ok_in.dtype.kind != "b":
        raise DataFormatError(f"'ok' must be booleans, got {ok_in.dtype}", path=p)
    ok = ok_in.astype(bool) & base.ok
    error = _npz_member(z, "error", base.error, n, p).astype(str)
    error = np.where(ok, "", np.where(error == "", base.error, error))
    error = np.where(~ok & (error == ""), "failed", error)
    _check_stored_quality(_npz_member(z, "quality", None, n, p), ok, base.quality, p)
    emb = base.embeddings.copy()
    emb[~ok] = np.nan
    q = np.where(ok, base.quality, np.nan).astype(np.float32)
    encoder = _npz_member(z, "encoder", "", n, p)
    key = _npz_member(z, "encoder_key", "", n, p)
    return Embeddings(emb, q, paths, ok, error.astype(str), encoder, _npz_measures(z, n, p), key)


def read_feat_list(path: str | os.PathLike, *, chunk: int = 1 << 16) -> Embeddings:
    """MagFace ``feat.list``: each line ``path v1 v2 … vD`` (space separated), validated
    ``chunk`` lines at a time (a bad file fails at its first bad chunk; memory stays
    that of the features)."""
    p = str(path)
    lines = read_text(p, expected="'path v1 … vD' lines", lines=True).splitlines()
    rows = [(k + 1, ln) for k, ln in enumerate(lines) if ln.strip()]
    del lines
    if not rows:
        raise DataFormatError("empty file (expected 'path v1 … vD' lines)", path=p)
    heads, feats, dim = [], [], None
    for s0 in range(0, len(rows), chunk):
        h, v, dim = _feat_chunk(rows[s0 : s0 + chunk], dim, p)
        heads += h
        feats.append(v)
    return Embeddings.from_array(np.concatenate(feats), paths=heads)


def _feat_chunk(rows: list, dim: int | None, p: str):
    """Paths, (n, D) float64 values and D of one chunk of ``(line number, line)``; D is
    the most common count of the first chunk."""
    heads, rests = [], []
    for _, ln in rows:
        parts = ln.strip().split(None, 1)
        heads.append(parts[0])
        rests.append(parts[1] if len(parts) > 1 else "")
    counts = np.fromiter((len(r.split()) for r in rests), dtype=np.int64, count=len(rests))
    if dim is None:
        dim = int(np.bincount(counts).argmax())
        if dim == 0:
            raise DataFormatError("no feature values after the path", path=p, line=rows[0][0])
    bad = np.flatnonzero(counts != dim)
    if bad.size:
        ln = rows[bad[0]][0]
        raise DataFormatError(f"expected a path and {dim} feature values, got {counts[bad[0]]} values", path=p, line=ln)
    try:
        vals = np.array(" ".join(rests).split(), dtype=np.float64)
    except ValueError:
        for (ln, _), r in zip(rows, rests, strict=True):
            try:
                np.array(r.split(), dtype=np.float64)
            except ValueError:
                tok = next(t for t in r.split() if not _is_float(t))
                raise DataFormatError(f"feature value {shown(tok)} is not a number", path=p, line=ln) from None
        raise
    return heads, vals.reshape(len(rows), dim), dim


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def write_feat_list(path: str | os.PathLike, emb: Embeddings) -> None:
    """Write MagFace feat.list lines (path, then each value followed by a space)."""
    with atomic_write(path) as fh:
        for p, row in zip(emb.paths.tolist(), np.asarray(emb.embeddings, np.float64), strict=True):
            fh.write(p + " " + "".join(f"{float(v)!r} " for v in row) + "\n")
