"""Template protocol files (IJB-B / IJB-C 1:1 layout as distributed with insightface):
the face/template/media list, the template pair list and the optional 5-point landmark
list, read and checked (see :mod:`qmag_core.evaluation.templates` for the layout)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, QMagError, shown
from ..limits import limit
from ..safeio import check_line_lengths

__all__ = ["TemplateProtocol", "read_protocol"]


@dataclass(frozen=True)
class TemplateProtocol:
    """One template protocol: ``images`` (N,) names under the image folder, ``tid`` and
    ``mid`` (N,) their template and media ids, ``pairs`` (P, 2) template ids with
    ``label`` (P,) int8, optional ``landmarks`` (N, 5, 2) and ``det_score`` (N,)."""

    name: str
    images: np.ndarray
    tid: np.ndarray
    mid: np.ndarray
    pairs: np.ndarray
    label: np.ndarray
    landmarks: np.ndarray | None = None
    det_score: np.ndarray | None = None
    source: str = ""

    @property
    def n_templates(self) -> int:
        return int(np.unique(self.tid).size)


def _read_table(path: Path, names: list[str], dtypes: dict, what: str):
    """A space-separated text table, every row complete and typed, as a DataFrame."""
    import pandas as pd

    if not path.exists():
        raise DataFormatError(f"missing {what} (expected {path.name})", path=str(path))
    if not path.is_file():
        from ..safeio import kind_of

        raise DataFormatError(f"{kind_of(path.stat().st_mode)}, expected a {what}", path=str(path))
    size, cap = path.stat().st_size, limit("QMAG_MAX_META_BYTES")  # IJB-C's pair list is ≈ 0.3 GB
    if size > cap:
        raise DataFormatError(
            f"{size:,} bytes: larger than the {cap:,} allowed for a {what} (QMAG_MAX_META_BYTES)", path=str(path)
        )
    check_line_lengths(path)
    try:
        df = pd.read_csv(path, sep=" ", header=None, names=names, dtype=dtypes, engine="c", skipinitialspace=True)
    except OverflowError:
        raise DataFormatError(f"a number beyond 64-bit integers; expected a {what}", path=str(path)) from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataFormatError(f"not a {what}: {first}", path=str(path)) from None
    bad = df.isna().any(axis=1).to_numpy()
    if bad.any():
        line = int(np.flatnonzero(bad)[0]) + 1
        raise DataFormatError(
            f"a {what} needs {len(names)} fields per line: {', '.join(names)}", path=str(path), line=line
        )
    return df


def read_protocol(root: str | os.PathLike, name: str | None = None) -> TemplateProtocol:
    """Read ``root/meta/<name>_*.txt``; ``name`` may be omitted when ``meta/`` holds one
    protocol.  Every image named must lie under ``root/loose_crop`` (checked lexically
    here; the embedding step resolves symlinks too), every paired template must exist."""
    root = Path(root)
    meta = root / "meta"
    if not meta.is_dir():
        raise QMagError(f"{root}: no meta/ folder (expected the IJB layout: meta/<name>_face_tid_mid.txt …)")
    if name is None:
        found = sorted(p.name[: -len("_face_tid_mid.txt")] for p in meta.glob("*_face_tid_mid.txt"))
        if len(found) != 1:
            raise QMagError(
                f"{meta}: {len(found)} protocols ({', '.join(found) or 'none'}); choose one with --ijb-name"
            )
        name = found[0]
    faces = _read_table(
        meta / f"{name}_face_tid_mid.txt",
        ["image", "tid", "mid"],
        {"image": str, "tid": "Int64", "mid": "Int64"},
        "face/template/media list",
    )
    pairs = _read_table(
        meta / f"{name}_template_pair_label.txt",
        ["t1", "t2", "label"],
        {"t1": "Int64", "t2": "Int64", "label": "Int64"},
        "template pair list",
    )
    images = faces["image"].to_numpy(str)
    for k, im in enumerate(images.tolist()):
        if os.path.isabs(im) or ".." in Path(im).parts or "\x00" in im:
            raise DataFormatError(
                f"image path {shown(im)} lies outside loose_crop/; the whole file is refused",
                path=str(meta / f"{name}_face_tid_mid.txt"),
                line=k + 1,
            )
    tid, mid = faces["tid"].to_numpy(np.int64), faces["mid"].to_numpy(np.int64)
    pt = pairs[["t1", "t2"]].to_numpy(np.int64)
    label = pairs["label"].to_numpy(np.int64)
    if not np.isin(label, (0, 1)).all():
        line = int(np.flatnonzero(~np.isin(label, (0, 1)))[0]) + 1
        raise DataFormatError("labels must be 0 or 1", path=str(meta / f"{name}_template_pair_label.txt"), line=line)
    known = np.unique(tid)
    missing = ~np.isin(pt, known).all(axis=1)
    if missing.any():
        k = int(np.flatnonzero(missing)[0])
        raise DataFormatError(
            f"{int(missing.sum())} pairs name a template with no image (first: {pt[k].tolist()})",
            path=str(meta / f"{name}_template_pair_label.txt"),
            line=k + 1,
        )
    lm, score = _read_landmarks(meta / f"{name}_name_5pts_score.txt", images)
    return TemplateProtocol(name, images, tid, mid, pt, label.astype(np.int8), lm, score, str(root))


def _read_landmarks(path: Path, images: np.ndarray):
    """(landmarks (N, 5, 2), score (N,)) from the optional 5-point file, in the order of
    ``images``; (None, None) when the file is absent."""
    if not path.exists():
        return None, None
    cols = ["image"] + [f"{a}{k}" for k in range(1, 6) for a in "xy"] + ["score"]
    df = _read_table(path, cols, {c: (str if c == "image" else np.float64) for c in cols}, "5-point landmark list")
    pos = {im: k for k, im in enumerate(df["image"].to_numpy(str))}
    idx = np.array([pos.get(im, -1) for im in images.tolist()])
    if (idx < 0).any():
        raise DataFormatError(
            f"no landmarks for {int((idx < 0).sum())} images (first: {shown(images[idx < 0][0])})", path=str(path)
        )
    pts = df[cols[1:11]].to_numpy(np.float64)[idx].reshape(-1, 5, 2)
    if not np.isfinite(pts).all():
        raise DataFormatError("landmarks must be finite numbers", path=str(path))
    return pts.astype(np.float32), df["score"].to_numpy(np.float64)[idx]
