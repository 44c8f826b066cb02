"""Shared fixtures.  ../shared/data holds real face data: on a user's clone tests that
need it skip with a reason; under CI=true its absence is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("QMAG_SHARED_DATA", ROOT.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_shared(*parts: str) -> Path:
    """Path under ../shared/data; skip (or fail under CI) when it is missing."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        msg = f"real face data not found at {p} (../shared/data is not part of the repository)"
        if IN_CI:
            pytest.fail("CI=true but " + msg)
        pytest.skip(msg)
    return p


@pytest.fixture
def shared_data():
    return need_shared()


def _calls_need_shared(fn) -> bool:
    import inspect

    try:
        return "need_shared(" in inspect.getsource(fn)
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config, items):
    """Mark every test that reads ../shared/data (itself or through a fixture) as
    ``shared_data``, so ``-m "not shared_data"`` runs without the real face data."""
    for item in items:
        fns = [getattr(item, "function", None)]
        info = getattr(item, "_fixtureinfo", None)
        for defs in info.name2fixturedefs.values() if info else ():
            fns += [d.func for d in defs]
        if any(fn is not None and _calls_need_shared(fn) for fn in fns):
            item.add_marker(pytest.mark.shared_data)


def run_cli(*args, check: bool = True):
    """``python -m qmag_core ARGS`` in a subprocess; with ``check`` a non-zero exit fails
    the test, showing the exit status and stderr."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "qmag_core", *map(str, args)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}: {r.stderr}")
    return r
