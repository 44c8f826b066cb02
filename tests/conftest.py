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
