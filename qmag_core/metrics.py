"""Deprecated: ``qmag_core.metrics`` moved to :mod:`qmag_core.evaluation.metrics`.
This module re-exports its names for one release and warns on import."""

from __future__ import annotations

import warnings

from .evaluation.metrics import *  # noqa: F403
from .evaluation.metrics import __all__  # noqa: F401

warnings.warn("qmag_core.metrics is deprecated: import qmag_core.evaluation.metrics", DeprecationWarning, stacklevel=2)
