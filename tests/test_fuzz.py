"""Fuzzing the parsers (Hypothesis, fixed budget, derandomized): every input gives a
valid result or a typed project error (:class:`QMagError`) — never another exception
— and parsing a small file stays within a small memory budget."""

import io
import json
import os
import tempfile
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qmag_core import io as D
from qmag_core.errors import QMagError
from qmag_core.scores import QMagFaceParams

FUZZ = settings(
    max_examples=int(os.environ.get("QMAG_FUZZ_EXAMPLES", 150)),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PEAK_BYTES = 64 << 20  # for inputs of a few kB


def parse(fn, payload: bytes, suffix: str):
    """Write ``payload`` to a temp file and parse it; return the result or the QMagError."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "input" + suffix)
        with open(p, "wb") as fh:
            fh.write(payload)
        tracemalloc.start()
        try:
            return fn(p)
        except QMagError as e:
            assert str(e), "a project error must say what is wrong"
            return e
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < PEAK_BYTES, f"parsing {len(payload)} bytes peaked at {peak / 2**20:.0f} MiB"


TOKENS = st.one_of(
    st.sampled_from(
        [
            "s",
            "q1",
            "q2",
            "q_min",
            "label",
            "fold",
            "path1",
            "path2",
            "S",
            "0.5",
            "-0.3",
            "1",
            "0",
            "-1",
            "2",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "1e300",
            "same",
            "different",
            "true",
            "",
            " ",
            '"',
            '""',
            "#",
            "# encoder=x",
            "# rows=3",
            "\r",
            "99999999999999999999",
            "a/1.jpg",
            "../x.jpg",
            "/etc/passwd",
            "Ann",
            "\x00",
            "\ufeff",
            "é",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**25), 10**25).map(str),
    st.text(max_size=6),
)
ROWS = st.lists(st.lists(TOKENS, max_size=7), max_size=25)
HEADERS = st.sampled_from(
    [
        "s,q1,q2,label",
        "s,q1,q2,label,fold",
        "s,q_min,label",
        "path1,path2,label",
        "path1,path2,label,fold",
        "",
        "# encoder=builtin\ns,q1,q2,label",
        "7\t300",
    ]
)


@st.composite
def csv_like(draw, sep=","):
    head = draw(HEADERS)
    body = "\n".join(sep.join(r) for r in draw(ROWS))
    text = head + "\n" + body
    enc = draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16"]))
    try:
        return text.encode(enc)
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


@given(csv_like())
@FUZZ
@pytest.mark.slow
def test_scores_csv(payload):
    r = parse(D.read_scores_csv, payload, ".csv")
    if not isinstance(r, QMagError):
        n = len(r)
        assert n > 0 and r.s.shape == r.q1.shape == r.q2.shape == r.label.shape == r.fold.shape == (n,)
        assert np.isfinite(r.s).all() and (np.abs(r.s) <= 1 + 1e-6).all()
        assert (r.q_min >= 0).all() and (r.q_min <= D.MAX_QUALITY).all()
        assert set(np.unique(r.label).tolist()) <= {0, 1}
        assert ((r.fold >= -1) & (r.fold <= D.MAX_FOLD)).all()


def _check_pairs(r):
    if not isinstance(r, QMagError):
        n = len(r)
        assert n > 0 and r.path1.shape == r.path2.shape == r.label.shape == r.fold.shape == (n,)
        assert set(np.unique(r.label).tolist()) <= {0, 1}
        keys = {tuple(sorted(k)) for k in zip(r.path1.tolist(), r.path2.tolist(), strict=True)}
        assert len(keys) == n  # no pair twice


@given(st.one_of(csv_like(), csv_like(sep="\t"), csv_like(sep=" ")))
@FUZZ
@pytest.mark.slow
def test_pairs_files(payload):
    _check_pairs(parse(D.read_pairs, payload, ".csv"))
    _check_pairs(parse(D.read_pairs, payload, ".txt"))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers(-(10**30), 10**30) | st.text(max_size=8),
    lambda c: (
        st.lists(c, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "alpha",
                    "beta",
                    "mode",
                    "fmrs",
                    "operating_points",
                    "fmr",
                    "threshold_s",
                    "threshold_s_hat",
                    "options",
                    "encoder",
                    "notes",
                    "x",
                ]
            )
            | st.text(max_size=4),
            c,
            max_size=6,
        )
    ),
    max_leaves=25,
)


@st.composite
def params_json(draw):
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=200))
    d = draw(JSON_VALUES)
    if kind >= 2 and isinstance(d, dict):
        d.setdefault("alpha", draw(st.floats(-1, 1)))
        d.setdefault("beta", draw(st.floats(-1, 1)))
    text = json.dumps(d, allow_nan=True)
    if kind == 3:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=3)) + text[cut:]
    return text.encode("utf-8", "replace")


@given(params_json())
@FUZZ
def test_params_json(payload):
    r = parse(QMagFaceParams.load, payload, ".json")
    if not isinstance(r, QMagError):
        assert np.isfinite([r.alpha, r.beta]).all()
        assert not isinstance(r.alpha, bool) and not isinstance(r.beta, bool)
        r.threshold_at(1e-3)  # what the compare page does with it must not fail
        r.score(np.array([0.1, 0.5]), np.array([20.0, 30.0]))


def _npz_bytes(arrays: dict) -> bytes:
    b = io.BytesIO()
    np.savez(b, **arrays)
    return b.getvalue()


@st.composite
def npz_like(draw):
    n = draw(st.integers(0, 5))
    d = draw(st.integers(0, 4))
    dtype = draw(st.sampled_from(["<f4", "<f8", "<i4", "<c8", "<U5", "|b1", "<f2", "|u1"]))
    arrays = {"embeddings": np.ones((n, d), dtype=dtype) if dtype != "<U5" else np.full((n, d), "x")}
    for name in draw(
        st.lists(st.sampled_from(["paths", "ok", "error", "quality", "encoder", "junk"]), max_size=4, unique=True)
    ):
        m = draw(st.integers(0, 6))
        arrays[name] = draw(
            st.sampled_from([np.arange(m), np.ones(m, bool), np.array(["a"] * m), np.array("enc"), np.zeros((m, 2))])
        )
    raw = bytearray(_npz_bytes(arrays))
    for _ in range(draw(st.integers(0, 4))):
        if not raw:
            break
        k = draw(st.integers(0, len(raw) - 1))
        raw[k] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


def _check_embeddings(r):
    if not isinstance(r, QMagError):
        n = r.embeddings.shape[0]
        assert r.embeddings.ndim == 2 and r.ok.shape == r.quality.shape == r.paths.shape == (n,)
        assert np.isfinite(r.embeddings[r.ok]).all() and (r.quality[r.ok] > 0).all()


@given(npz_like())
@FUZZ
def test_npz(payload):
    _check_embeddings(parse(D.load_embeddings, payload, ".npz"))


@given(st.one_of(npz_like(), st.binary(max_size=300)))
@FUZZ
def test_npy(payload):
    if payload[:2] == b"PK":  # an npz's first member as a raw .npy, headers and all
        try:
            with zipfile.ZipFile(io.BytesIO(payload)) as z:
                payload = z.read(z.namelist()[0])
        except Exception:  # noqa: BLE001 - a broken zip: fuzz its bytes as they are
            pass
    _check_embeddings(parse(D.load_embeddings, payload, ".npy"))


@given(st.lists(st.lists(TOKENS, max_size=6), max_size=15), st.sampled_from([" ", "\t", "  "]))
@FUZZ
@pytest.mark.slow
def test_feat_list(rows, sep):
    payload = "\n".join(sep.join(r) for r in rows).encode("utf-8", "replace")
    _check_embeddings(parse(D.read_feat_list, payload, ".list"))


def test_fuzz_budget_is_fixed():
    """The suite is reproducible: derandomized, a fixed number of examples per parser."""
    assert FUZZ.derandomize and FUZZ.max_examples >= 100
    assert isinstance(parse(D.read_scores_csv, b"not,a,scores\nfile", ".csv"), QMagError)


@st.composite
def bin_like(draw):
    """Valid-looking .bin pickles, mutated, and hand-made pickles naming other globals."""
    import pickle

    n = draw(st.integers(0, 4))
    imgs = [draw(st.binary(max_size=20)) for _ in range(2 * n)]
    same = draw(st.lists(st.booleans(), min_size=n, max_size=n + draw(st.integers(0, 1))))
    kind = draw(st.integers(0, 3))
    if kind == 1:
        imgs = [np.frombuffer(b, np.uint8) if draw(st.booleans()) else b for b in imgs]
    raw = bytearray(pickle.dumps((imgs, same), protocol=draw(st.sampled_from([2, 4]))))
    if kind == 2:
        mod = draw(st.sampled_from(["os", "builtins", "numpy", "subprocess", "_codecs", "numpy._core.multiarray"]))
        name = draw(st.sampled_from(["system", "eval", "frombuffer", "Popen", "encode", "_reconstruct", "load"]))
        raw = bytearray(f"c{mod}\n{name}\n".encode() + b"(X\x01\x00\x00\x00xtR.")
    for _ in range(draw(st.integers(0, 3))):
        if raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    if kind == 3 and raw:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


@given(bin_like())
@FUZZ
def test_bin(payload):
    from qmag_core.io.binsets import read_bin

    r = parse(read_bin, payload, ".bin")
    if not isinstance(r, QMagError):
        assert len(r.images) == 2 * r.n_pairs and all(isinstance(b, bytes) for b in r.images)
        assert r.issame.dtype == bool
