"""Shared fixtures.  ../shared/data holds real face data: on a user's clone tests that
need it skip with a reason; under CI=true its absence is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("QMAG_SHARED_DATA", ROOT.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: fixture files are data, not test modules (no_torch/sitecustomize.py would block torch if imported)
collect_ignore_glob = ["fixtures/*"]


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


#: PYTHONPATH entry that makes Python behave as if torch were not installed (light install)
NO_TORCH = ROOT / "tests" / "fixtures" / "no_torch"


def run_cli(*args, check: bool = True, no_torch: bool = False):
    """``python -m qmag_core ARGS`` in a subprocess; with ``check`` a non-zero exit fails
    the test, showing the exit status and stderr.  ``no_torch``: torch, torchvision and
    facenet-pytorch cannot be imported (as in ``pip install .[onnx,app]``)."""
    import subprocess
    import sys

    env = None
    if no_torch:
        path = os.pathsep.join([str(NO_TORCH), str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "qmag_core", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}: {r.stderr}")
    return r


# ------------------------------------------------------------------ hostile-input helpers
FACES = ROOT / "sample_data" / "faces" / "deepface"


def qmag(*args, env=None):
    """``python -m qmag_core ARGS`` from the repository root, extra environment ``env``."""
    import subprocess
    import sys

    e = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "qmag_core", *map(str, args)], capture_output=True, text=True, env=e, cwd=str(ROOT)
    )


def one_line_error(r, *needles):
    """Exit 2 with one ``error:`` line on stderr holding every needle (the error contract)."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture
def image_dir(tmp_path):
    """Two real photos of one person in ``tmp_path/images/a/``."""
    d = tmp_path / "images"
    (d / "a").mkdir(parents=True)
    for k in (1, 2):
        (d / "a" / f"{k}.jpg").write_bytes((FACES / f"img{k}.jpg").read_bytes())
    return d


def toy_scores(n=60, folds=True):
    """A seeded scores table with both classes (and three folds)."""
    import numpy as np

    from qmag_core.io.scores import ScoreTable

    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    s = np.where(y == 1, rng.uniform(0.3, 0.9, n), rng.uniform(-0.2, 0.4, n))
    return ScoreTable(
        s,
        rng.uniform(15, 30, n),
        rng.uniform(15, 30, n),
        y.astype(np.int8),
        (np.arange(n) % 3) if folds else np.full(n, -1),
        {"encoder": "builtin"},
    )
