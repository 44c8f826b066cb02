"""Command line: ``python -m qmag_core`` (installed as ``qmag``); the parser and the
dispatch are in :mod:`qmag_core.cli.run`, the commands in ``scores``, ``vision`` and
``train``.  Nothing inside the package imports this layer."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv=None) -> int:
    """The ``qmag`` entry point: :func:`qmag_core.cli.run.main`, behind a check of the
    ``QMAG_*`` limits made before any command module loads (a bad value is exit 2 with
    one line naming the variable, never a traceback)."""
    from ..errors import QMagError, one_line
    from ..limits import check_environment

    try:
        check_environment()
    except QMagError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    from .run import main as run

    return run(argv)
