"""Checking a folder of photos (qmag_core.pipeline.checks, `qmag check --images`): one row
per photo in input order, failures as rows, the same rows from 1 or 2 worker processes,
and a run killed midway resumes from the report cache with identical output and no
leftover files."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import FACES, ROOT, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "photos"
    (d / "b").mkdir(parents=True)
    for k in (1, 2, 3, 4):
        (d / ("b" if k > 2 else "") / f"img{k}.jpg").write_bytes((FACES / f"img{k}.jpg").read_bytes())
    (d / "b" / "broken.jpg").write_bytes(b"not a photo")
    return d


def _run(folder, out, *extra):
    r = run_cli("check", "--images", folder, "--csv", out / "r.csv", "--json", out / "r.json", *extra, check=False)
    assert r.returncode == 1 and "broken.jpg" in r.stderr.splitlines()[-1], r.stderr  # one photo failed
    return (out / "r.csv").read_text(), json.loads((out / "r.json").read_text())


def test_rows_in_order_failures_kept_same_with_two_workers(folder, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    csv1, js1 = _run(folder, tmp_path / "one", "--workers", "1", "--no-cache")
    csv2, js2 = _run(folder, tmp_path / "two", "--workers", "2", "--no-cache")
    assert csv1 == csv2 and js1 == js2
    rows = [r.split(";") for r in csv1.strip().splitlines()]
    assert rows[0][:2] == ["Filename", "Verdict"] and len(rows) == 6
    names = [os.path.relpath(r[0], folder) for r in rows[1:]]
    assert names == ["b/broken.jpg", "b/img3.jpg", "b/img4.jpg", "img1.jpg", "img2.jpg"]  # the folder's order
    assert rows[1][1] == "failed" and "not an image" in rows[1][rows[0].index("Error")]
    assert all(r[1] in ("accept", "reject") for r in rows[2:])
    assert [r["image"] for r in js1["reports"]] == [r[0] for r in rows[1:]]


def test_a_killed_run_resumes_with_identical_output_and_no_leftovers(folder, tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    want_csv, want_js = _run(folder, ref, "--workers", "1", "--no-cache")
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    cmd = [sys.executable, "-m", "qmag_core", "check", "--images", str(folder), "--csv", str(out / "r.csv")]
    cmd += ["--json", str(out / "r.json"), "--workers", "1", "--cache-dir", str(cache)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 120
    while time.monotonic() < end and len(list(cache.rglob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # killed outright, two reports in
    proc.wait()
    assert not (out / "r.csv").exists() and not (out / "r.json").exists()  # nothing half-written
    got_csv, got_js = _run(folder, out, "--workers", "1", "--cache-dir", cache)
    assert got_csv == want_csv and got_js == want_js
    assert sorted(p.name for p in out.iterdir()) == ["r.csv", "r.json"]  # the killed run's temp files are gone


def test_the_ray_engine_gives_the_local_rows(folder, tmp_path):
    pytest.importorskip("ray")
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    want = _run(folder, tmp_path / "local", "--workers", "1", "--no-cache")
    got = _run(folder, tmp_path / "ray", "--engine", "ray", "--workers", "2", "--no-cache")
    assert got == want


def test_failed_requirements_reject_with_advice_and_a_profile_changes_them(tmp_path):
    """The shipped ICAO profile fails the tight deepface crop for its framing (head size,
    margin above) and says so; an empty profile leaves the verdict to the band and the
    regions; every component's ``pass`` follows the profile."""
    img = FACES / "img1.jpg"
    run_cli("check", img, "--json", tmp_path / "icao.json", "--no-cache", "--no-map")
    rep = json.loads((tmp_path / "icao.json").read_text())["reports"][0]
    assert rep["profile"] == "icao-portrait" and rep["verdict"] == "reject"
    failed = rep["requirements_failed"]
    assert "HeadSize" in failed and all(rep["components"][n]["pass"] is False for n in failed)
    assert rep["components"]["HeadPoseRoll"]["pass"] is True  # an upright face
    assert rep["components"]["BackgroundUniformity"] == {"native": None, "scalar": None, "pass": None}
    assert all(set(a) == {"component", "region", "advice", "cost"} for a in rep["advice"])  # one schema
    lines = {a["component"]: a["advice"] for a in rep["advice"]}
    assert "head too small" in lines["HeadSize"]
    empty = tmp_path / "none.json"
    empty.write_text(json.dumps({"name": "none", "requirements": {}}))
    run_cli("check", img, "--json", tmp_path / "none-out.json", "--no-cache", "--no-map", "--profile", empty)
    rep2 = json.loads((tmp_path / "none-out.json").read_text())["reports"][0]
    assert rep2["requirements_failed"] == [] and rep2["profile"] == "none"
    assert all(c["pass"] is None for c in rep2["components"].values())
    flagged = any(g["flagged"] for g in rep2["regions"])
    assert rep2["verdict"] == ("reject" if rep2["band"] == "poor" or flagged else "accept")
    assert rep2["components"]["HeadSize"]["native"] == rep["components"]["HeadSize"]["native"]


def test_a_bad_profile_is_refused_before_any_work(tmp_path):
    from conftest import one_line_error, qmag

    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"requirements": {"EyesOpen": {"min": float("nan")}}}).replace("NaN", '"x"'))
    out = tmp_path / "r.csv"
    r = qmag("check", FACES / "img1.jpg", "--csv", out, "--profile", bad)
    one_line_error(r, str(bad), "EyesOpen")
    assert not out.exists()


def test_the_report_cache_keys_on_the_whole_profile_name_included():
    """Two profiles with the same rules but other names give reports that name them:
    they must not share cached reports."""
    from qmag_core.encoders import load_encoder
    from qmag_core.pipeline.checks import settings_key
    from qmag_core.quality.requirements import Profile, default_profile
    from qmag_core.quality.scale import scale_for

    enc = load_encoder("builtin", runtime="fast")
    icao = default_profile()
    renamed = Profile("my-office", icao.description, dict(icao.requirements))
    looser = Profile(icao.name, icao.description, {**icao.requirements, "HeadPoseYaw": ("abs_max", 30.0, "")})
    keys = {
        settings_key(enc, scale_for(enc), face="best", aligned=False, with_map=True, profile=p)
        for p in (icao, renamed, looser, None)
    }
    assert len(keys) == 4
