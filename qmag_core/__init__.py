"""QMagFace Studio core: quality-aware face recognition (scoring, training, metrics, data).

Importing the package is cheap: sub-modules load on first use and nothing here imports
torch or streamlit.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "scoring", "metrics", "data", "errors", "synthetic"]


def __getattr__(name):  # lazy sub-module access: qmag_core.metrics etc.
    import importlib

    if name in __all__[1:]:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'qmag_core' has no attribute {name!r}")
