"""Data formats (one import for all of them): embeddings (.npz/.npy/MagFace feat.list), pairs (LFW pairs.txt, CSV),
score tables (CSV) and a seeded pair maker for folder-per-identity image sets.

Every reader validates vectorised and raises :class:`~qmag_core.errors.DataFormatError`
naming the file, the 1-based line and what was expected.

The code lives in :mod:`qmag_core.io` (``embeddings``, ``pairs``, ``scores``, ``common``)
and :mod:`qmag_core.pairing`; this module re-exports it.
"""

from __future__ import annotations

from .io.common import (
    IMAGE_EXTENSIONS,
    MAX_FOLD,
    MAX_QUALITY,
    parse_labels,
)
from .io.embeddings import (
    Embeddings,
    load_embeddings,
    read_feat_list,
    save_embeddings,
    write_feat_list,
)
from .io.pairs import (
    Pairs,
    confine_pairs,
    read_lfw_pairs,
    read_pairs,
    read_pairs_csv,
    write_pairs_csv,
)
from .io.scores import (
    FailedPairs,
    ScoreTable,
    add_scores_column,
    read_scores_csv,
    write_scores_csv,
)
from .pairing import make_pairs, pairs_to_indices, scores_from_embeddings
from .safeio import sha256_file

__all__ = [
    "Embeddings",
    "Pairs",
    "ScoreTable",
    "FailedPairs",
    "save_embeddings",
    "load_embeddings",
    "read_feat_list",
    "write_feat_list",
    "read_lfw_pairs",
    "read_pairs_csv",
    "write_pairs_csv",
    "read_pairs",
    "confine_pairs",
    "read_scores_csv",
    "write_scores_csv",
    "add_scores_column",
    "parse_labels",
    "make_pairs",
    "pairs_to_indices",
    "scores_from_embeddings",
    "sha256_file",
    "IMAGE_EXTENSIONS",
    "MAX_QUALITY",
    "MAX_FOLD",
]
