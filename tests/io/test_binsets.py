"""insightface .bin validation sets: read without running the pickle, evaluated with
10-fold accuracy; built here from real aligned crops (glint24, ArcFace-112)."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, need_shared

from qmag_core.errors import DataFormatError
from qmag_core.io.binsets import bin_folds, read_bin, write_bin


def qmag(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's qmag_core, also from another folder
    return subprocess.run(
        [sys.executable, "-m", "qmag_core", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=str(cwd or ROOT),
        env=env,
    )


def one_line_error(r, *needles):
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1, line
    for n in needles:
        assert n in line, (n, line)


@pytest.fixture(scope="module")
def real_bin(tmp_path_factory):
    """40 pairs (20 genuine, 20 imposter) of real glint24 crops, JPEG bytes as insightface stores them."""
    root = need_shared("glint24")
    people = sorted(p for p in root.iterdir() if p.is_dir())[:6]
    files = {p.name: sorted(p.glob("*.jpg"), key=lambda f: int(f.stem))[:12] for p in people}
    rng = np.random.default_rng(0)
    images, same = [], []
    names = list(files)
    for k in range(40):
        if k % 2 == 0:
            n = names[rng.integers(len(names))]
            a, b = rng.choice(len(files[n]), 2, replace=False)
            pair = (files[n][a], files[n][b])
        else:
            n1, n2 = rng.choice(len(names), 2, replace=False)
            pair = (files[names[n1]][rng.integers(12)], files[names[n2]][rng.integers(12)])
        images += [pair[0].read_bytes(), pair[1].read_bytes()]
        same.append(k % 2 == 0)
    f = tmp_path_factory.mktemp("bin") / "glint.bin"
    write_bin(f, images, same)
    return f, images, same


def test_read_real_bin_and_numpy_variant(real_bin, tmp_path):
    f, images, same = real_bin
    bs = read_bin(f)
    assert bs.images == images and bs.issame.tolist() == same and bs.n_pairs == 40
    g = tmp_path / "np.bin"  # some sets store each encoded image as a numpy uint8 array
    with open(g, "wb") as fh:
        pickle.dump(([np.frombuffer(b, np.uint8) for b in images], np.array(same)), fh, protocol=2)
    assert read_bin(g).images == images
    assert bin_folds(6000).tolist()[::600] == list(range(10)) and np.bincount(bin_folds(6000)).tolist() == [600] * 10


@pytest.mark.slow
def test_evaluate_bin_end_to_end(real_bin, tmp_path):
    f, _, _ = real_bin
    js = tmp_path / "r.json"
    r = qmag("evaluate", "--bin", f, "--json", js, "--no-cache", "--n-boot", 20)
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())
    assert rep["n_genuine"] == 20 and rep["n_imposter"] == 20
    assert rep["pairs_report"]["source"]["n_folds"] == 10 and rep["pairs_report"]["fta_rate"] == 0
    assert rep["baseline"]["accuracy"] > 0.9  # 24 celebrities, clean crops
    assert set(rep["edc"]["baselines"]) == {"raw_length", "sharpness"}


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_bin",))


def test_malicious_bin_is_refused_and_nothing_runs(tmp_path):
    f = tmp_path / "evil.bin"
    f.write_bytes(pickle.dumps(([b"x", b"y"], [True], _Evil()), protocol=2))
    r = qmag("evaluate", "--bin", f, cwd=tmp_path)
    one_line_error(r, "evil.bin", "refused", "system")
    assert not (tmp_path / "pwned_by_bin").exists()
    g = tmp_path / "codec.bin"  # _codecs.encode is allowed for latin-1 only
    g.write_bytes(
        b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x05\x00\x00\x00rot13q\x02\x86q\x03Rq\x04."
    )
    with pytest.raises(DataFormatError, match="not allowed"):
        read_bin(g)


@pytest.mark.parametrize(
    "case, needle",
    [
        ("truncated", "not a readable .bin"),
        ("odd", "two images per pair"),
        ("ints", "expected encoded image bytes"),
        ("notpair", "expected a pickled pair"),
        ("labels", "issame_list"),
    ],
)
def test_bad_bins(real_bin, tmp_path, case, needle):
    f, images, same = real_bin
    g = tmp_path / "bad.bin"
    if case == "truncated":
        g.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif case == "odd":
        write_bin(g, images[:-1], same)
    elif case == "ints":
        g.write_bytes(pickle.dumps(([1, 2], [True]), protocol=2))
    elif case == "notpair":
        g.write_bytes(pickle.dumps([b"a", b"b", b"c"], protocol=2))
    else:
        g.write_bytes(pickle.dumps(([b"a", b"b"], ["yes"]), protocol=2))
    with pytest.raises(DataFormatError, match=needle):
        read_bin(g)
    one_line_error(qmag("evaluate", "--bin", g), "bad.bin", needle)


@pytest.mark.slow
def test_undecodable_image_is_a_counted_failure(real_bin, tmp_path):
    f, images, same = real_bin
    g = tmp_path / "one_bad.bin"
    write_bin(g, [b"not a jpeg"] + images[1:], same)
    js = tmp_path / "r.json"
    r = qmag("evaluate", "--bin", g, "--json", js, "--no-cache", "--n-boot", 20)
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())
    assert rep["pairs_report"]["n_failed_genuine"] == 1 and rep["pairs_report"]["fta_rate"] == pytest.approx(1 / 40)
    assert rep["baseline"]["generalized"]["accuracy"] is not None


class _HugeArray:
    def __reduce__(self):
        return (np.ndarray, ((100000, 100000),))  # 80 GB if it were built


def test_pickled_allocations_are_bounded(tmp_path):
    f = tmp_path / "huge.bin"
    f.write_bytes(pickle.dumps(([_HugeArray(), b"x"], [True]), protocol=2))
    with pytest.raises(DataFormatError, match="far larger than any image"):
        read_bin(f)


@pytest.mark.slow
def test_dataset_page_opens_a_bin_and_refuses_a_malicious_one(real_bin, tmp_path):
    from streamlit.testing.v1 import AppTest

    f, _, _ = real_bin
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run().switch_page("views/dataset.py").run()
    evil = pickle.dumps(([b"x", b"y"], [True], _Evil()), protocol=2)
    at.file_uploader(key="up_bin").set_value(("evil.bin", evil, "application/octet-stream")).run()
    at.button(key="load_bin").click().run()
    assert any("evil.bin" in e.value and "refused" in e.value for e in at.error)
    assert at.selectbox(key="w_dataset_id").value == "lfw-dev" and not (ROOT / "pwned_by_bin").exists()
    at.file_uploader(key="up_bin").set_value(("glint.bin", f.read_bytes(), "application/octet-stream")).run()
    at.button(key="load_bin").click().run()
    assert not at.exception and at.selectbox(key="w_dataset_id").value == "glint.bin"
    assert any("20 genuine, 20 imposter" in c.value for c in at.caption)


@pytest.mark.parametrize("depth", [1, 40])
def test_nested_or_self_referencing_issame_is_refused_small_and_fast(tmp_path, depth):
    """A 9 kB .bin whose issame_list holds itself (or deeply nested lists) is refused
    before numpy explores it: exit 2 and one line, in seconds, under a 4 GiB address-space
    cap (peak memory: python -m bench.bench_limits --hostile-only, 34 MiB)."""
    import resource
    import subprocess
    import sys
    import time

    from bench.hostile import self_referencing_bin

    f = self_referencing_bin(tmp_path / "evil.bin", depth=0 if depth == 1 else depth)
    assert f.stat().st_size < 10_000
    t0 = time.perf_counter()
    cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # noqa: E731 - a bound for old code
    r = subprocess.run(
        [sys.executable, "-m", "qmag_core", "evaluate", "--bin", str(f)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        preexec_fn=cap,
        timeout=60,
    )
    assert time.perf_counter() - t0 < 10
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "evil.bin" in r.stderr, r.stderr
    assert "flat list of booleans" in r.stderr
