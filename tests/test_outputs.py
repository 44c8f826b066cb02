"""Writes (qmag_core.outputs): nothing a user gave is overwritten unless asked, every file is written atomically."""

import os

import numpy as np
import pytest
from conftest import one_line_error, qmag, toy_scores

from qmag_core import io as D
from qmag_core.errors import DataFormatError
from qmag_core.outputs import atomic_write


# ------------------------------------------------------------------ 2. data loss
def test_score_never_overwrites_input_without_in_place(tmp_path):
    f = tmp_path / "scores.csv"
    D.write_scores_csv(f, toy_scores())
    before = f.read_bytes()
    p = tmp_path / "p.json"
    p.write_text('{"alpha": 0.05, "beta": 0.08}')
    one_line_error(qmag("score", "--scores", f, "--params", p), "--in-place")
    one_line_error(qmag("score", "--scores", f, "--params", p, "--out", f), "--in-place")
    assert f.read_bytes() == before


@pytest.mark.slow
def test_score_round_trips_what_it_does_not_change(tmp_path):
    f = tmp_path / "scores.csv"
    text = (
        "# encoder=builtin\r\n# my own comment\r\n"
        "s,q1,q2,label,fold\r\n0.812345678901234,21.5,23,same,-1\r\n\r\n"
        "0.1,20.000,24,different,2\r\n-0.25,19,22.25,same,-1\r\n"
    )
    f.write_bytes(text.encode())
    p = tmp_path / "p.json"
    p.write_text('{"alpha": 0.05, "beta": 0.08}')
    r = qmag("score", "--scores", f, "--params", p, "--in-place")
    assert r.returncode == 0, r.stderr
    out = f.read_bytes().decode()
    lines = out.split("\r\n")
    assert lines[0] == "# encoder=builtin" and lines[1] == "# my own comment"
    assert lines[4] == "s,q1,q2,label,fold,s_hat"
    assert lines[5].startswith("0.812345678901234,21.5,23,same,-1,")  # values, labels, fold -1 as written
    assert lines[6] == "" and lines[7].startswith("0.1,20.000,24,different,2,")
    t = D.read_scores_csv(f)
    expect = np.minimum(0, 0.08 * t.s - 0.05) * t.q_min + t.s
    np.testing.assert_allclose(t.extra["s_hat"].astype(float), expect, rtol=0, atol=1e-15)
    r = qmag("score", "--scores", f, "--params", p, "--in-place")  # again: the column is replaced, not doubled
    assert r.returncode == 0 and f.read_text().count("s_hat") == 1


def test_interrupted_write_leaves_the_old_file(tmp_path):
    f = tmp_path / "scores.csv"
    f.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(f) as fh:
            fh.write("half of the new conte")
            raise KeyboardInterrupt
    assert f.read_text() == "old\n" and os.listdir(tmp_path) == ["scores.csv"]


def test_truncated_scores_file_is_refused(tmp_path):
    f = tmp_path / "scores.csv"
    D.write_scores_csv(f, toy_scores(200))
    lines = f.read_text().splitlines(keepends=True)
    f.write_text("".join(lines[: len(lines) // 2]))  # cut at a line boundary: still parseable CSV
    with pytest.raises(DataFormatError, match="truncated"):
        D.read_scores_csv(f)
    one_line_error(qmag("train", "--scores", f, "--out", tmp_path / "p.json"), "truncated")
