"""Deprecated: ``qmag_core.data`` moved to :mod:`qmag_core.io` (file formats) and
:mod:`qmag_core.evaluation.pairing` (pairs joined to embeddings, the pair maker).
This module re-exports the old names for one release and warns on import."""

from __future__ import annotations

import warnings

from .evaluation.pairing import make_pairs, pairs_to_indices, scores_from_embeddings
from .io import *  # noqa: F403
from .io import __all__ as _io_all
from .safeio import sha256_file

warnings.warn(
    "qmag_core.data is deprecated: import from qmag_core.io (formats) or qmag_core.evaluation.pairing",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [*_io_all, "make_pairs", "pairs_to_indices", "scores_from_embeddings", "sha256_file"]
