"""Deprecated: ``qmag_core.scoring`` moved to :mod:`qmag_core.scores` (the scores,
the trainer and the params record).  This module re-exports the old names for one
release and warns on import."""

from __future__ import annotations

import warnings

from .scores import *  # noqa: F403
from .scores import __all__  # noqa: F401

warnings.warn("qmag_core.scoring is deprecated: import from qmag_core.scores", DeprecationWarning, stacklevel=2)
