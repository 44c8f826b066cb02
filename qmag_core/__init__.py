"""QMagFace Studio core: quality-aware face recognition.

The package is organised by concern (``docs/development.md`` has the map): the numbers
side ``scores``, ``evaluation`` and ``io`` (numpy and pandas only); the vision side
``vision``, ``encoders`` and ``pipeline``; the quality side ``quality``; the command
line ``cli`` on top.  ``errors`` and ``safeio`` serve them all.

Importing the package is cheap: sub-packages load on first use and nothing here imports
torch or streamlit.  ``qmag_core.scoring``, ``qmag_core.metrics`` and ``qmag_core.data``
still work for one release, with a DeprecationWarning.
"""

from __future__ import annotations

__version__ = "0.1.0"

_SUBPACKAGES = (
    "scores",
    "evaluation",
    "io",
    "vision",
    "encoders",
    "quality",
    "pipeline",
    "errors",
    "limits",
    "safeio",
    "outputs",
)
_DEPRECATED = ("scoring", "metrics", "data")
__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name):  # lazy sub-package access: qmag_core.evaluation etc.
    import importlib

    if name in _SUBPACKAGES or name in _DEPRECATED:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'qmag_core' has no attribute {name!r}")
