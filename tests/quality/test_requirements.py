"""Requirement profiles (qmag_core.quality.requirements): the shipped ICAO profile names a
source for every threshold, rules pass and fail at their levels, bad profiles are
refused field by field, and the advice states the measured value and the direction of
the fix."""

import json

import pytest

from qmag_core.errors import QMagError
from qmag_core.quality.components import COMPONENTS, Component, scalar
from qmag_core.quality.requirements import REGION_OF, advice, default_profile, load_profile


def _c(name, native):
    return Component(name, native, scalar(name, native))


def test_the_shipped_profile_has_a_source_for_every_requirement():
    p = default_profile()
    assert len(p.requirements) >= 15
    assert all(n in COMPONENTS and len(src) > 20 for n, (_, _, src) in p.requirements.items())
    assert set(REGION_OF) <= set(p.requirements)


@pytest.mark.parametrize(
    ("name", "ok", "bad"),
    [
        ("HeadPoseYaw", -4.9, 5.1),  # abs_max 5
        ("HeadPoseRoll", 7.9, -8.1),  # abs_max 8
        ("InterEyeDistance", 90.0, 89.0),  # min 90
        ("MouthClosed", 0.19, 0.21),  # max 0.2
        ("EyesOpen", 0.048, 0.046),  # min 0.047
        ("LuminanceMean", 0.5, 0.1),  # scalar_min 50
    ],
)
def test_rules_pass_and_fail_at_their_levels(name, ok, bad):
    p = default_profile()
    assert p.passes(_c(name, ok)) is True and p.passes(_c(name, bad)) is False
    assert p.passes(_c(name, None)) is None  # not assessed: neither pass nor fail
    assert p.passes(_c("DynamicRange", 1.0)) is None  # no requirement


def _write(tmp_path, doc):
    f = tmp_path / "p.json"
    f.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return f


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ("{not json", "not a JSON requirement profile"),
        ({"requirements": []}, '"requirements"'),
        ({"requirements": {"EyesShut": {"min": 1}}}, "unknown component 'EyesShut'"),
        ({"requirements": {"EyesOpen": {"min": 1, "max": 2}}}, "exactly one of"),
        ({"requirements": {"EyesOpen": {"min": "0.02"}}}, "finite number"),
        ({"requirements": {"EyesOpen": {"min": True}}}, "finite number"),
        ({"requirements": {"EyesOpen": {"scalar_min": 150}}}, "0-100"),
        ({"requirements": {"EyesOpen": {"min": 0.02, "source": 7}}}, "source must be a text"),
    ],
    ids=["json", "list", "unknown", "two-rules", "string", "bool", "scalar-range", "source"],
)
def test_bad_profiles_are_refused_naming_the_file_and_field(tmp_path, doc, needle):
    f = _write(tmp_path, doc)
    with pytest.raises(QMagError) as e:
        load_profile(f)
    assert str(f) in str(e.value) and needle in str(e.value)


def test_an_edited_profile_changes_the_outcome(tmp_path):
    f = _write(tmp_path, {"name": "lenient", "requirements": {"HeadPoseYaw": {"abs_max": 30, "source": "ours"}}})
    p = load_profile(f)
    assert p.name == "lenient" and p.passes(_c("HeadPoseYaw", 20.0)) is True
    assert p.passes(_c("InterEyeDistance", 10.0)) is None


@pytest.mark.parametrize(
    ("name", "native", "needles"),
    [
        ("HeadPoseYaw", 12.4, ("12°", "to your left", "turn it 12° to your right")),
        ("HeadPoseYaw", -7.0, ("to your right", "7° to your left")),
        ("HeadPosePitch", 9.0, ("chin raised 9°", "lower")),
        ("HeadPoseRoll", -10.0, ("right shoulder",)),
        ("InterEyeDistance", 48.0, ("48 px between the eyes", "90 needed", "move closer")),
        ("EyesOpen", 0.008, ("open both eyes", "0.008", "≥ 0.047")),
        ("MouthClosed", 0.31, ("close your mouth", "0.31")),
        ("LuminanceMean", 0.12, ("too dark", "0.12", "add light")),
        ("EyesVisible", 0.9, ("90%", "sunglasses")),
        ("NoHeadCoverings", 0.8, ("80%", "cap")),
        ("HeadSize", 0.2, ("too small", "20%")),
    ],
)
def test_advice_states_the_measured_value_and_the_fix(name, native, needles):
    text = advice(_c(name, native), default_profile())
    for n in needles:
        assert n in text, (n, text)


def test_a_profile_written_as_json_reads_back_the_same_and_size_is_bounded():
    from qmag_core.quality.requirements import parse_profile, profile_json

    p = default_profile()
    assert parse_profile(profile_json(p).encode(), "p.json") == p
    with pytest.raises(QMagError, match=r"^big.json: a requirement profile is at most 1 MiB"):
        parse_profile(b" " * ((1 << 20) + 1), "big.json")
