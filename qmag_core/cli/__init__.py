"""Command line ``qmag`` / ``python -m qmag_core`` (map: docs/development.md)."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv=None) -> int:
    """The ``qmag`` entry point: :func:`qmag_core.cli.run.run_command`, behind a check of the
    ``QMAG_*`` limits made before any command module loads (a bad value is exit 2 with
    one line naming the variable, never a traceback)."""
    from ..errors import QMagError, one_line
    from ..limits import check_environment

    try:
        check_environment()
    except QMagError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    from .run import run_command

    return run_command(argv)
