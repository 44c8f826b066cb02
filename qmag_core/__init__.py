"""QMagFace Studio core: quality-aware face recognition (package map: docs/development.md).

Importing the package is cheap: sub-packages load on first use; nothing here imports torch or streamlit.
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
__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name):  # lazy sub-package access: qmag_core.evaluation etc.
    import importlib

    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'qmag_core' has no attribute {name!r}")
