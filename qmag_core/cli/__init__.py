"""Command line: ``python -m qmag_core`` (installed as ``qmag``); the parser and the
dispatch are in :mod:`qmag_core.cli.main`, the commands in ``scores``, ``vision`` and
``train``.  Nothing inside the package imports this layer."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
