"""Datasets as the dashboard opens them — the bundled samples, uploads, server-side
folders under the data roots — and the FMR slider's grid.  No Streamlit here (the
widgets live in :mod:`studio.ui`); every computation is a :mod:`qmag_core` call."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qmag_core.errors import QMagError
from qmag_core.io.pairs import read_pairs
from qmag_core.io.scores import ScoreTable, read_scores_csv
from qmag_core.safeio import kind_of
from qmag_core.scores.roc_window import lowest_fmr

__all__ = [
    "fingerprint",
    "public_message",
    "staged_uploads",
    "ROOT",
    "SAMPLE_DIR",
    "data_roots",
    "resolve_under_roots",
    "SAMPLE_DATASETS",
    "Dataset",
    "load_sample_dataset",
    "dataset_from_scores",
    "dataset_from_folder",
    "dataset_from_bin",
    "dataset_from_embeddings",
    "dataset_from_templates",
    "fmr_bounds",
    "fmr_grid",
    "registered_models",
    "MODELS_DIR",
]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "sample_data"


def data_roots() -> list[Path]:
    """Folders the app may read server-side paths from: ``$QMAG_DATA_ROOT``
    (os.pathsep-separated) or, by default, sample_data/ and the working directory."""
    env = os.environ.get("QMAG_DATA_ROOT")
    roots = [Path(p) for p in env.split(os.pathsep) if p] if env else [SAMPLE_DIR, Path.cwd()]
    return [r.resolve() for r in roots]


#: the folder under each data root whose ``*.onnx`` files the dashboard offers as encoders
MODELS_DIR = "models"


def registered_models() -> dict[str, Path]:
    """``{name: path}`` of the ONNX face models in ``<data root>/models/`` (regular files
    only, resolved inside their root, at most ``QMAG_MAX_MODEL_BYTES``); the name is the
    file's, with its root's folder name when two roots hold the same name."""
    from qmag_core.limits import limit

    cap, out = limit("QMAG_MAX_MODEL_BYTES"), {}
    for root in data_roots():
        d = root / MODELS_DIR
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.onnx")):
            r = f.resolve()
            if not (r.is_file() and root in r.parents and r.stat().st_size <= cap):
                continue  # links out of the root, folders, FIFOs and oversized files are not offered
            name = f.name if f.name not in out else f"{root.name}/{f.name}"
            out[name] = r
    return out


def resolve_under_roots(path: str | os.PathLike, *, kind: str | None = None) -> Path:
    """Resolve a user-typed path (symlinks followed); refuse anything outside the
    configured data roots, and (``kind="file"``/``"dir"``) anything that is not a
    regular file / folder.  Messages never show the server's absolute paths."""
    if not str(path).strip():
        raise QMagError("empty path: type a path under the data root")
    if "\x00" in str(path):
        raise QMagError("the path contains a NUL byte")
    p = Path(path).expanduser()
    roots = data_roots()
    cands = [p.resolve()] if p.is_absolute() else [(r / p).resolve() for r in roots]
    inside = [c for c in cands if any(c == r or r in c.parents for r in roots)]
    for c in inside:
        if c.exists():
            if kind == "file" and not c.is_file():
                raise QMagError(f"{path}: {kind_of(c.stat().st_mode)}, not a regular file")
            if kind == "dir" and not c.is_dir():
                raise QMagError(f"{path}: not a folder")
            return c
    if inside:
        raise QMagError(f"{path}: not found under the data root")
    raise QMagError(f"{path}: outside the data root the server allows (QMAG_DATA_ROOT); refused")


def fingerprint(*arrays) -> str:
    """Content hash (BLAKE2b, 16 bytes hex) of arrays: the cache key of anything
    computed from a user's data — never a file name or a row count."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes() if a.dtype.kind != "O" else repr(a.tolist()).encode())
    return h.hexdigest()


def public_message(e: BaseException, replace: dict[str, str] | None = None) -> str:
    """An error's message fit for a browser: staged-upload paths become the upload's
    name and absolute server paths (data roots, temp folders, home) are cut."""
    msg = str(e) if not (isinstance(e, OSError) and e.filename) else f"{e.filename}: {e.strerror}"
    for old, new in sorted((replace or {}).items(), key=lambda kv: -len(kv[0])):
        msg = msg.replace(old, new)
    prefixes = [str(r) + os.sep for r in data_roots()] + [tempfile.gettempdir() + os.sep, str(Path.home()) + os.sep]
    for pre in sorted(prefixes, key=len, reverse=True):
        msg = msg.replace(pre, "")
    return msg


@dataclass(frozen=True)
class SampleDataset:
    id: str
    name: str
    scores: str | None = None  # scores CSV relative to sample_data
    images: str | None = None  # image folder (for galleries / embedding)
    pairs: str | None = None  # pairs file relative to sample_data
    description: str = ""
    embeddings: str | None = None  # precomputed embeddings .npz (with ``pairs``)
    #: the pair protocol its rows come from (``lfw-dev``: LFW pairs_dev, folds 1–7), and
    #: the folds of that protocol all its rows belong to (None: each row's ``fold`` + 1)
    protocol: str | None = None
    folds: tuple | None = None


SAMPLE_DATASETS = {
    d.id: d
    for d in [
        SampleDataset(
            "lfw-dev",
            "LFW-dev · built-in encoder (4,200 pairs)",
            scores="lfw_dev_builtin/scores.csv",
            description="LFW pairs_dev (7 folds) embedded by the built-in encoder (numbers only).",
            protocol="lfw-dev",
        ),
        SampleDataset(
            "lfw-dev-ext",
            "LFW-dev + 60k imposters · built-in encoder",
            scores="lfw_dev_builtin/scores_extended.csv",
            description="The 2,100 genuine LFW-dev pairs + 59,997 seeded imposter pairs within folds: "
            "enough imposters for FMR down to 1.7e-5.",
            protocol="lfw-dev",
        ),
        SampleDataset(
            "lfw-cross-quality",
            "LFW-dev folds 5–7 · one photo degraded (1,800 pairs)",
            embeddings="lfw_cross_quality/embeddings.npz",
            pairs="lfw_cross_quality/pairs.csv",
            description="The dev pairs of folds 5–7 on the original photos, the second photo of each pair degraded "
            "before detection (blur, low resolution, low light, compression, exposure, occluders; numbers only). "
            "Quality varies here: see the Quality page's EDC; pairs whose degraded photo lost its face count as "
            "failures.",
            protocol="lfw-dev",
            folds=(5, 6, 7),
        ),
        SampleDataset(
            "deepface",
            "deepface photos · embedded on demand (300 pairs)",
            images="faces/deepface",
            pairs="faces/deepface/master.csv",
            description="25 photos of public figures (MIT), 38 genuine + 262 imposter pairs; embedded "
            "with the active encoder when opened.",
        ),
    ]
}


@dataclass
class Dataset:
    """A dataset as the pages use it."""

    name: str
    table: ScoreTable
    image_root: Path | None = None
    image_quality: dict = field(default_factory=dict)  # image path -> q (for galleries)
    encoder: str | None = None
    notes: list = field(default_factory=list)
    #: the pair protocol of its rows (``lfw-dev``) and the folds of it they come from:
    #: per row (1-based) when known, else the set of folds of the whole dataset
    protocol: str | None = None
    row_folds: np.ndarray | None = None
    fold_set: tuple | None = None

    @property
    def n_genuine(self) -> int:
        return int(self.table.label.sum())

    @property
    def n_imposter(self) -> int:
        return int((self.table.label == 0).sum())

    @property
    def one_class(self) -> str | None:
        """Why verification metrics cannot be computed (None when both classes exist)."""
        if self.n_genuine and self.n_imposter:
            return None
        have, lack = ("genuine", "imposter") if self.n_genuine else ("imposter", "genuine")
        return (
            f"{self.name} holds only {have} pairs ({len(self.table):,}); error rates, curves and α/β need "
            f"{lack} pairs too. Load a file with both labels."
        )

    @property
    def key(self) -> str:
        """Content fingerprint of the pairs (for caches)."""
        t = self.table
        return fingerprint(t.s, t.q1, t.q2, t.label, t.fold)


@contextmanager
def staged_uploads(*uploads):
    """Write uploaded files (objects with ``.name`` and ``.getvalue()``, e.g. Streamlit's
    UploadedFile) to a private temporary folder for the loaders, which read them
    completely; yields their paths and removes the folder afterwards, also on errors.
    An error inside the block comes out as a :class:`QMagError` whose message names the
    upload, never the server's temporary path."""
    d = tempfile.mkdtemp(prefix="qmag-upload-")
    names = {}
    try:
        paths = []
        for k, up in enumerate(uploads):
            sub = os.path.join(d, str(k))  # two uploads may share a name
            os.mkdir(sub)
            base = os.path.basename(up.name) or "upload"
            p = os.path.join(sub, base)
            with open(p, "wb") as fh:
                fh.write(up.getvalue())
            paths.append(p)
            names[p] = base
        try:
            yield paths
        except (QMagError, OSError, MemoryError) as e:
            if isinstance(e, MemoryError):
                raise QMagError("not enough memory to load this upload") from None
            raise QMagError(public_message(e, {**names, d + os.sep: ""})) from None
    finally:
        shutil.rmtree(d, ignore_errors=True)


def dataset_from_folder(folder: str, pairs_file: str, encoder, *, progress=None) -> Dataset:
    """Embed a server-side image folder for a pairs file.  Both paths must lie under
    the data roots, and every image path inside the pairs file under the folder (else
    the whole file is refused, naming the line)."""
    from qmag_core.pipeline.datasets import score_image_pairs
    from qmag_core.pipeline.embed import embed_files

    root = resolve_under_roots(folder, kind="dir")
    pairs = read_pairs(resolve_under_roots(pairs_file, kind="file"))
    pairs.source = str(pairs_file)
    t, rep, emb = score_image_pairs(pairs, root, lambda paths: embed_files(paths, root, encoder, progress=progress))
    q = {p: float(v) for p, v, ok in zip(emb.paths.tolist(), emb.quality.tolist(), emb.ok.tolist(), strict=True) if ok}
    return Dataset(
        root.name, t, root, q, encoder.id, [f"{rep['n_pairs'] - rep['n_scored']} pairs skipped (missing/failed images)"]
    )


def dataset_from_bin(path: str | os.PathLike, encoder, *, name: str | None = None, progress=None) -> Dataset:
    """Open an insightface ``.bin`` validation set (read without running its pickle),
    embedded with ``encoder``; folds are the protocol's 10 consecutive blocks."""
    from qmag_core.io.binsets import read_bin
    from qmag_core.pipeline.datasets import bin_scores

    bs = read_bin(path)
    if name:
        bs.source = name
    t, rep = bin_scores(bs, encoder, progress=progress)
    notes = [f"{rep['source']['n_images']:,} aligned crops, {rep['source']['n_folds']} folds"]
    return Dataset(name or Path(path).name, t, encoder=encoder.id, notes=notes)


def dataset_from_templates(folder: str, encoder, *, pooling: str = "qmagface", progress=None) -> Dataset:
    """A template protocol in the IJB layout under the data roots, embedded with
    ``encoder`` (aligned from its 5-point file when it has one): one row per template
    pair, q = the templates' pooled quality."""
    from qmag_core.evaluation.templates import read_protocol, template_table
    from qmag_core.pipeline.datasets import embed_protocol

    root = resolve_under_roots(folder, kind="dir")
    prot = read_protocol(root)
    feats, ok, _ = embed_protocol(prot, encoder, progress=progress)
    t = template_table(prot, feats, ok, pooling, meta={"encoder": encoder.id, "encoder_key": encoder.key})
    notes = [
        f"{prot.n_templates:,} templates from {len(prot.images):,} images ({int((~ok).sum())} failed), "
        f"pooled by rule '{pooling}'"
    ]
    if t.n_failed:
        notes.append(f"{t.n_failed} pairs have a template without a usable image; they count as failures")
    return Dataset(f"{root.name} ({prot.name}, {pooling})", t, encoder=encoder.id, notes=notes)


def dataset_from_scores(path: str | os.PathLike, name: str | None = None) -> Dataset:
    t = read_scores_csv(path)
    return Dataset(name or Path(path).name, t, encoder=t.encoder)


def dataset_from_embeddings(emb_path, pairs_path, name: str) -> Dataset:
    """Precomputed embeddings + a pairs file.  Pairs with an image that is missing from
    the embeddings or failed there count as failures (noted); none matched is an error."""
    from qmag_core.evaluation.pairing import scores_from_embeddings
    from qmag_core.io.embeddings import load_embeddings

    emb = load_embeddings(emb_path)
    t, rep = scores_from_embeddings(emb, read_pairs(pairs_path), encoder=emb.encoder or None)
    if rep["n_scored"] == 0:
        raise QMagError("no pair could be matched to the embeddings' paths")
    n_failed = rep["n_pairs"] - rep["n_scored"]
    notes = [f"{n_failed} pairs have an image that is missing or failed in the embeddings; they count as failures"]
    return Dataset(name, t, None, {}, emb.encoder or None, notes if n_failed else [])


def load_sample_dataset(ds_id: str, *, encoder=None, progress=None) -> Dataset:
    """Open a bundled dataset; image datasets are embedded with ``encoder``."""
    if ds_id not in SAMPLE_DATASETS:
        raise QMagError(f"unknown sample dataset {ds_id!r}")
    d = SAMPLE_DATASETS[ds_id]
    if d.scores or d.embeddings:
        ds = (
            dataset_from_scores(SAMPLE_DIR / d.scores, d.name)
            if d.scores
            else dataset_from_embeddings(SAMPLE_DIR / d.embeddings, SAMPLE_DIR / d.pairs, d.name)
        )
        ds.protocol, ds.fold_set = d.protocol, d.folds
        if d.protocol and d.folds is None:
            ds.row_folds = ds.table.fold + 1
        return ds
    from qmag_core.evaluation.pairing import scores_from_embeddings
    from qmag_core.pipeline.embed import embed_files

    if encoder is None:
        raise QMagError(f"{d.name} needs an encoder to embed its images")
    pairs = read_pairs(SAMPLE_DIR / d.pairs)
    paths = sorted(set(pairs.path1.tolist()) | set(pairs.path2.tolist()))
    root = SAMPLE_DIR / d.images
    emb = embed_files(paths, root, encoder, progress=progress)
    t, rep = scores_from_embeddings(emb, pairs, encoder=encoder.id)
    notes = []
    if rep["n_scored"] < rep["n_pairs"]:
        notes.append(f"{rep['n_pairs'] - rep['n_scored']} pairs skipped (missing image or failed embedding)")
    q = {p: float(v) for p, v, ok in zip(emb.paths.tolist(), emb.quality.tolist(), emb.ok.tolist(), strict=True) if ok}
    return Dataset(d.name, t, root, q, encoder.id, notes)


# ------------------------------------------------------------------ provenance
def training_overlap(ds: Dataset, trained_on: dict) -> tuple[np.ndarray | None, str]:
    """Which rows of ``ds`` come from persons the active α/β were trained on, from the
    params file's ``trained_on`` (``protocol``, ``persons_of_folds``): ``(in-sample mask
    or None when it cannot be told, a sentence for the page)``."""
    what = trained_on.get("data") or trained_on.get("pairs") or "pairs this page cannot identify"
    folds = set(trained_on.get("persons_of_folds") or ())
    said = f"The active α/β were trained on {what}."
    if not folds or not ds.protocol or trained_on.get("protocol") != ds.protocol:
        return None, said + " Whether this dataset shares persons with them is not recorded."
    if ds.row_folds is not None:
        mask = np.isin(ds.row_folds, sorted(folds))
        return mask, said + f" {int(mask.sum()):,} of {mask.size:,} pairs here are of those persons (in-sample)."
    if ds.fold_set is not None and not folds & set(ds.fold_set):
        return np.zeros(len(ds.table), bool), said + " No pair here is of those persons: every metric is held out."
    return None, said + " This dataset mixes those persons with others; pairs cannot be told apart."


# ------------------------------------------------------------------ FMR slider
def fmr_bounds(n_imposter: int, lo: float = 1e-5, hi: float = 1e-2) -> tuple[float, float, str]:
    """Lowest and highest FMR a slider should offer for ``n_imposter`` imposters, and why.

    The lower end is 1/#imposters (a smaller FMR cannot be measured); the upper end at
    least 10× above it so a line can be fitted over a range."""
    floor = lowest_fmr(n_imposter)
    reason = ""
    if lo < floor:
        reason = (
            f"FMR below 1/#imposters = {floor:.2g} cannot be measured with {n_imposter:,} imposter pairs; "
            f"the range starts at {floor:.2g}"
        )
        lo = floor
    hi = max(hi, min(0.5, lo * 10))
    return lo, hi, reason


def fmr_grid(n_imposter: int) -> tuple[list[float], tuple[float, float], str]:
    """Options of the FMR range slider: a 0.1-decade lattice aligned to decades (1e-4,
    1e-3 … are options) between the bounds of :func:`fmr_bounds`, plus its exact ends;
    returns ``(grid, default_range, reason)``."""
    lo, hi, reason = fmr_bounds(n_imposter)
    lattice = 10.0 ** (np.arange(np.floor(10 * np.log10(lo)), np.ceil(10 * np.log10(hi)) + 1) / 10)
    grid = sorted({float(f"{g:.3g}") for g in np.r_[lo, hi, lattice] if lo * (1 - 1e-9) <= g <= hi * (1 + 1e-9)})
    default = (grid[0], min(grid, key=lambda g: abs(np.log10(g) + 2)))
    return grid, default, reason
