"""The numbers side, part 3: every file format, one import for all of them (map: docs/development.md)."""

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
