"""Hostile ONNX files: a model cannot claim another model's embedding cache, write outside
the cache folder, or pass the model size cap with external data.  The forged models are
tiny graphs built with onnx.helper that carry the shipped graph's own ``qmag.*`` metadata."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import FACES, qmag

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from bench.hostile import forged_onnx as _forged  # noqa: E402
from bench.hostile import shipped_meta as _shipped_meta  # noqa: E402
from qmag_core.encoders.onnx import SHIPPED_MODEL  # noqa: E402


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for k in (1, 2, 3):
        (d / f"{k}.jpg").write_bytes((FACES / f"img{k}.jpg").read_bytes())
    return d


def test_a_forged_model_cannot_fill_the_builtin_models_cache(tmp_path, photos):
    """The forged graph says it is the shipped builtin export; what it embeds goes to its
    own cache folder, and the real model then embeds every photo itself (0 from cache)
    and gets the real embeddings."""
    forged = _forged(tmp_path / "forged.onnx", _shipped_meta())
    cache = tmp_path / "cache"
    r = qmag("embed", "--images", photos, "--out", tmp_path / "f.npz", "--onnx", forged, "--cache-dir", cache)
    assert r.returncode == 0, r.stderr
    real = qmag("embed", "--images", photos, "--out", tmp_path / "r.npz", "--runtime", "onnx", "--cache-dir", cache)
    assert real.returncode == 0, real.stderr
    assert "0 from cache" in real.stderr, real.stderr
    ref = qmag("embed", "--images", photos, "--out", tmp_path / "ref.npz", "--runtime", "onnx", "--no-cache")
    assert ref.returncode == 0
    a, b, c = (np.load(tmp_path / f"{n}.npz") for n in ("f", "r", "ref"))
    np.testing.assert_array_equal(b["embeddings"], c["embeddings"])
    assert not np.allclose(a["embeddings"], b["embeddings"])


def test_a_model_key_cannot_name_a_path_outside_the_cache(tmp_path, photos):
    meta = {**_shipped_meta(), "qmag.encoder_key": "../../../escaped", "qmag.descriptor.encoder_key": "../../x"}
    (tmp_path / "m").mkdir()
    forged = _forged(tmp_path / "m" / "forged.onnx", meta)
    cache = tmp_path / "deep" / "er" / "cache"
    r = qmag("embed", "--images", photos, "--out", tmp_path / "f.npz", "--onnx", forged, "--cache-dir", cache)
    assert r.returncode == 0, r.stderr
    made = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    outside = [p for p in made if not str(p).startswith(("deep", "m", "photos", "f.npz"))]
    assert not outside, outside
    assert all(".." not in c.name for c in cache.iterdir())


def test_external_data_counts_against_the_model_cap(tmp_path):
    """A 1 kB graph that names 2.25 GiB of external weights is refused before loading:
    exit 2, one line naming the model, in well under the time a load would take."""
    import time

    big = tmp_path / "weights.bin"
    with open(big, "wb") as fh:  # sparse: no disk is used
        fh.truncate(2_415_919_104)
    m = _forged(tmp_path / "small.onnx", {}, external=("weights.bin", 1536))
    assert m.stat().st_size < 4096
    t0 = time.perf_counter()
    r = qmag("compare", FACES / "img1.jpg", FACES / "img2.jpg", "--onnx", m, "--aligned")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "small.onnx" in r.stderr and "QMAG_MAX_MODEL_BYTES" in r.stderr
    assert time.perf_counter() - t0 < 10
    outside = _forged(tmp_path / "trav.onnx", {}, external=("../../etc/passwd", 16))
    r = qmag("compare", FACES / "img1.jpg", FACES / "img2.jpg", "--onnx", outside, "--aligned")
    assert r.returncode == 2 and "external data" in r.stderr, r.stderr


def test_the_content_key_follows_the_bytes_not_the_metadata(tmp_path):
    from qmag_core.encoders import open_onnx

    meta = _shipped_meta()
    a = open_onnx(_forged(tmp_path / "a.onnx", meta), device="cpu")
    real = open_onnx(SHIPPED_MODEL, device="cpu")
    assert a.key == real.key  # what the file claims (α/β and scale matching warn on it)
    assert a.content_key != real.content_key  # what names its cache
    b = open_onnx(_forged(tmp_path / "b.onnx", {**meta, "qmag.encoder_key": "other"}), device="cpu")
    assert b.key != a.key and b.content_key not in (a.content_key, real.content_key)  # metadata is bytes too
    assert json.dumps(a.content_key).isascii() and os.sep not in a.content_key


@pytest.mark.parametrize(("dim", "needle"), [("abc", "qmag.dim"), ("1e9", "qmag.dim"), ("512", "metadata states")])
def test_metadata_that_is_text_or_lies_about_the_output_is_refused(tmp_path, dim, needle):
    """Before: an internal error (int('abc')) or a shape error deep in the pipeline."""
    m = _forged(tmp_path / "m.onnx", {**_shipped_meta(), "qmag.dim": dim})
    r = qmag("compare", FACES / "img1.jpg", FACES / "img2.jpg", "--onnx", m)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert "m.onnx" in r.stderr and "Traceback" not in r.stderr
