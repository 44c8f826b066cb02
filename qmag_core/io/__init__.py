"""File formats, one import for all of them (numpy and pandas only): embeddings
(.npz / .npy / MagFace feat.list / shard folders), pairs (LFW pairs.txt, CSV), score
tables (CSV), insightface ``.bin`` sets and IJB template protocols.

Every reader validates vectorised and raises :class:`~qmag_core.errors.DataFormatError`
naming the file, the 1-based line and what was expected.  Joining pairs to embeddings
and making pairs is :mod:`qmag_core.evaluation.pairing`.
"""

from __future__ import annotations

from .common import IMAGE_EXTENSIONS, MAX_FOLD, MAX_QUALITY, parse_labels
from .embeddings import Embeddings, load_embeddings, read_feat_list, save_embeddings, write_feat_list
from .pairs import Pairs, confine_pairs, read_lfw_pairs, read_pairs, read_pairs_csv, write_pairs_csv
from .scores import FailedPairs, ScoreTable, add_scores_column, read_scores_csv, write_scores_csv

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
    "IMAGE_EXTENSIONS",
    "MAX_QUALITY",
    "MAX_FOLD",
]
