"""The QMAG_* limits (qmag_core.limits): every value is parsed like an argument."""

import pytest
from conftest import qmag

from qmag_core.errors import QMagError
from qmag_core.limits import parse_limit


@pytest.mark.parametrize("raw", ["1e400", "inf", "nan", "-5", "0", "1.5", "12 MiB!", "9" * 60])
def test_a_bad_limit_is_one_line_naming_the_variable(raw):
    with pytest.raises(QMagError, match="QMAG_MAX_LINE_BYTES"):
        parse_limit("QMAG_MAX_LINE_BYTES", raw)


def test_a_bad_limit_in_the_environment_ends_the_command_with_one_line(tmp_path):
    """Before: QMAG_MAX_LINE_BYTES=1e400 was a full traceback (float infinity to int)."""
    r = qmag(
        "train", "--scores", tmp_path / "s.csv", "--out", tmp_path / "p.json", env={"QMAG_MAX_LINE_BYTES": "1e400"}
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "QMAG_MAX_LINE_BYTES" in r.stderr, r.stderr


@pytest.mark.parametrize(("raw", "value"), [("2MiB", 2 << 20), ("1_000", 1000), ("1e3", 1000)])
def test_good_limits_parse(raw, value):
    assert parse_limit("QMAG_MAX_LINE_BYTES", raw) == value
