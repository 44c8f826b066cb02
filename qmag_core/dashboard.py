"""Logic behind the dashboard pages (no Streamlit here): datasets, safe paths, slider
bounds, held-out evaluation of a trainer, and summaries the pages display."""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import metrics as M
from .data import ScoreTable, read_pairs, read_scores_csv
from .errors import QMagError
from .scoring import QMagFaceParams, QMagFaceTrainer, qmagface_score

__all__ = ["staged_uploads", "ROOT", "SAMPLE_DIR", "data_roots", "resolve_under_roots", "SAMPLE_DATASETS", "Dataset",
           "load_sample_dataset", "dataset_from_scores", "fmr_bounds", "fmr_grid", "heldout_effect", "summary_metrics",
           "overlap", "scale_free", "OFFICIAL_PARAMS", "REPORT_FMRS"]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "sample_data"
REPORT_FMRS = (1e-2, 1e-3, 1e-4)
OFFICIAL_PARAMS = QMagFaceParams(alpha=0.077428, beta=0.125926, mode="official", encoder="magface",
                                 quality="MagFace iResNet100 embedding length (published, trained on Adience)")


def data_roots() -> list[Path]:
    """Folders the app may read server-side paths from: ``$QMAG_DATA_ROOT``
    (os.pathsep-separated) or, by default, sample_data/ and the working directory."""
    env = os.environ.get("QMAG_DATA_ROOT")
    roots = [Path(p) for p in env.split(os.pathsep) if p] if env else [SAMPLE_DIR, Path.cwd()]
    return [r.resolve() for r in roots]


def resolve_under_roots(path: str | os.PathLike) -> Path:
    """Resolve a user-typed path; refuse anything outside the configured data roots."""
    if not str(path).strip():
        raise QMagError("empty path")
    p = Path(path).expanduser()
    roots = data_roots()
    cands = [p.resolve()] if p.is_absolute() else [(r / p).resolve() for r in roots]
    for c in cands:
        if any(c == r or r in c.parents for r in roots):
            if c.exists():
                return c
    if any(any(c == r or r in c.parents for r in roots) for c in cands):
        raise QMagError(f"{path}: not found under the data roots ({', '.join(map(str, roots))})")
    raise QMagError(f"{path}: outside the allowed data roots ({', '.join(map(str, roots))}); "
                    "set QMAG_DATA_ROOT to allow other folders")


@dataclass(frozen=True)
class SampleDataset:
    id: str
    name: str
    scores: str | None = None          # scores CSV relative to sample_data
    images: str | None = None          # image folder (for galleries / embedding)
    pairs: str | None = None           # pairs file relative to sample_data
    description: str = ""


SAMPLE_DATASETS = {
    d.id: d for d in [
        SampleDataset("lfw-dev", "LFW-dev · built-in encoder (4,200 pairs)", scores="lfw_dev_builtin/scores.csv",
                      description="LFW pairs_dev (7 folds) embedded by the built-in encoder (numbers only)."),
        SampleDataset("lfw-dev-ext", "LFW-dev + 60k imposters · built-in encoder", scores="lfw_dev_builtin/scores_extended.csv",
                      description="The 2,100 genuine LFW-dev pairs + 59,997 seeded imposter pairs within folds: "
                                  "enough imposters for FMR down to 1.7e-5."),
        SampleDataset("deepface", "deepface photos · embedded on demand (300 pairs)", images="faces/deepface",
                      pairs="faces/deepface/master.csv",
                      description="25 photos of public figures (MIT), 38 genuine + 262 imposter pairs; embedded "
                                  "with the active encoder when opened."),
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

    @property
    def n_genuine(self) -> int:
        return int(self.table.label.sum())

    @property
    def n_imposter(self) -> int:
        return int((self.table.label == 0).sum())


@contextmanager
def staged_uploads(*uploads):
    """Write uploaded files (objects with ``.name`` and ``.getvalue()``, e.g. Streamlit's
    UploadedFile) to a private temporary folder for the loaders, which read them
    completely; yields their paths and removes the folder afterwards, also on errors."""
    d = tempfile.mkdtemp(prefix="qmag-upload-")
    try:
        paths = []
        for k, up in enumerate(uploads):
            sub = os.path.join(d, str(k))  # two uploads may share a name
            os.mkdir(sub)
            p = os.path.join(sub, os.path.basename(up.name) or "upload")
            with open(p, "wb") as fh:
                fh.write(up.getvalue())
            paths.append(p)
        yield paths
    finally:
        shutil.rmtree(d, ignore_errors=True)


def dataset_from_scores(path: str | os.PathLike, name: str | None = None) -> Dataset:
    t = read_scores_csv(path)
    return Dataset(name or Path(path).name, t, encoder=t.encoder)


def load_sample_dataset(ds_id: str, *, encoder=None, progress=None) -> Dataset:
    """Open a bundled dataset; image datasets are embedded with ``encoder``."""
    if ds_id not in SAMPLE_DATASETS:
        raise QMagError(f"unknown sample dataset {ds_id!r}")
    d = SAMPLE_DATASETS[ds_id]
    if d.scores:
        return dataset_from_scores(SAMPLE_DIR / d.scores, d.name)
    from .data import scores_from_embeddings
    from .embed import embed_files

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
    q = {p: float(v) for p, v, ok in zip(emb.paths.tolist(), emb.quality.tolist(), emb.ok.tolist()) if ok}
    return Dataset(d.name, t, root, q, encoder.id, notes)


# ----------------------------------------------------------------------- training
def fmr_bounds(n_imposter: int, lo: float = 1e-5, hi: float = 1e-2) -> tuple[float, float, str]:
    """Lowest and highest FMR a slider should offer for ``n_imposter`` imposters, and why.

    The lower end is 1/#imposters (a smaller FMR cannot be measured); the upper end at
    least 10× above it so a line can be fitted over a range."""
    floor = 1.0 / max(n_imposter, 1)
    reason = ""
    if lo < floor:
        reason = (f"FMR below 1/#imposters = {floor:.2g} cannot be measured with {n_imposter:,} imposter pairs; "
                  f"the range starts at {floor:.2g}")
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


def _split(table: ScoreTable, seed: int) -> np.ndarray:
    """Seeded, label-stratified 50/50 split: True = training half."""
    rng = np.random.default_rng(seed)
    train = np.zeros(len(table), bool)
    for lab in (0, 1):
        idx = np.flatnonzero(table.label == lab)
        train[rng.choice(idx, idx.size // 2, replace=False)] = True
    return train


def summary_metrics(s, labels) -> dict:
    g, i = M.split_scores(s, labels)
    c = M.roc(g, i)  # one sort for EER, AUC and FNMR@FMR
    return {"eer": c.eer().value, "auc": c.auc(), "dprime": M.dprime(g, i),
            **{f"fnmr@{o.target_fmr:g}": o.fnmr for o in c.fnmr_at_fmr(REPORT_FMRS)}}


def heldout_effect(table: ScoreTable, trainer: QMagFaceTrainer, seed: int = 0) -> dict:
    """Before/after metrics on held-out pairs: α/β trained on a seeded half, measured on
    the other half (never on the pairs they were trained on)."""
    train = _split(table, seed)
    test = ~train
    tr = QMagFaceTrainer(**trainer.get_params()).fit(table.X()[train], table.label[train])
    sh = qmagface_score(table.s[test], table.q_min[test], tr.alpha_, tr.beta_)
    return {"alpha": tr.alpha_, "beta": tr.beta_, "n_train": int(train.sum()), "n_test": int(test.sum()),
            "cosine": summary_metrics(table.s[test], table.label[test]),
            "qmagface": summary_metrics(sh, table.label[test])}


def overlap(genuine, imposter, bins: np.ndarray) -> float:
    """Overlap coefficient of the two normalised histograms on the same bins (0 = none)."""
    hg, _ = np.histogram(genuine, bins=bins)
    hi, _ = np.histogram(imposter, bins=bins)
    if hg.sum() == 0 or hi.sum() == 0:
        return math.nan
    return float(np.minimum(hg / hg.sum(), hi / hi.sum()).sum())


def scale_free(p: QMagFaceParams, *, s_low: float = 0.0, q: float | None = None) -> dict:
    """Encoder-independent view of α/β: zero crossing s0 = α/β (no correction above it)
    and the correction ω(s_low)·q at a low cosine, relative to the cosine range."""
    return {"s0": p.s0, "omega_at_s_low": min(0.0, p.beta * s_low - p.alpha),
            "correction_at_s_low": None if q is None else p.max_correction(s_low, q)}
