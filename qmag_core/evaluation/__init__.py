"""The numbers side, part 2: how good the scores are (numpy only).

``metrics`` (ROC/DET, FNMR@FMR, EER, accuracy), ``edc`` (error-versus-discard curves),
``bootstrap`` (seeded CIs), ``measures`` (model-free quality columns of a score table),
``pairing`` (pairs joined to embedding rows), ``protocol`` (the evaluation report of a
score table: folds, held-out α/β, CIs), ``templates`` (IJB 1:1 template verification).

The report functions of ``protocol`` are also reachable here
(``qmag_core.evaluation.evaluate_table``), as before the package existed.
"""

from __future__ import annotations

_PROTOCOL = (
    "REPORT_FMRS",
    "evaluate_table",
    "format_report",
    "jsonable",
    "summary_metrics",
    "heldout_effect",
    "qmagface_effect",
    "edc_ratio",
)
__all__ = list(_PROTOCOL)


def __getattr__(name: str):
    """``protocol``'s public names, imported on first use (the submodules stay light)."""
    if name in _PROTOCOL:
        import importlib

        return getattr(importlib.import_module(".protocol", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
