"""The Ray engine gives the local engine's rows: same ok / error, embeddings within
1e-5, on real photos with failures; resumable through the same cache."""

import io
import shutil

import numpy as np
import pytest
from conftest import need_shared

pytest.importorskip("ray", reason="Ray is not installed (pip install .[ray])")


@pytest.mark.slow
def test_ray_engine_equals_local_engine_on_real_photos(tmp_path):
    from PIL import Image

    from qmag_core.encoders import load_encoder
    from qmag_core.pipeline.embed import EmbedStats, embed_files
    from qmag_core.pipeline.ray import embed_files_ray

    photos = need_shared("lfw_photos", "images")
    root = tmp_path / "imgs"
    root.mkdir()
    files = sorted(photos.rglob("*.jpg"))[::7][:200]
    for f in files:
        shutil.copy(f, root / f"{f.parent.name}__{f.name}")
    Image.new("RGB", (300, 300), (120, 120, 120)).save(root / "wall.png")  # no face
    (root / "notes.jpg").write_bytes(b"not an image")
    b = io.BytesIO()
    Image.open(files[0]).save(b, "JPEG")
    (root / "truncated.jpg").write_bytes(b.getvalue()[:300])
    paths = sorted(p.name for p in root.iterdir()) + ["missing.jpg"]
    enc = load_encoder("builtin", device="cpu")
    local = embed_files(paths, root, enc, cache_dir=None)
    st = EmbedStats()
    cache = tmp_path / "cache"
    ray_ = embed_files_ray(paths, root, enc, encoder_options={}, num_cpus=2, cache_dir=cache, stats=st)
    assert ray_.paths.tolist() == local.paths.tolist()
    assert np.array_equal(ray_.ok, local.ok) and local.ok.sum() >= 190 and (~local.ok).sum() >= 4
    assert ray_.error.tolist() == local.error.tolist()
    d = np.abs(ray_.embeddings[local.ok] - local.embeddings[local.ok]).max()
    assert d < 1e-5, d
    np.testing.assert_allclose(ray_.measures["sharpness"], local.measures["sharpness"], rtol=1e-6)
    assert st.n_embedded == len(paths) - 1  # the missing file never reaches Ray
    # resumable: a second run finds every readable image in the cache and starts no Ray job
    st2 = EmbedStats()
    again = embed_files_ray(paths, root, enc, cache_dir=cache, stats=st2)
    assert st2.n_cached == len(paths) - 1 and st2.n_embedded == 0
    assert np.array_equal(again.ok, local.ok)
    # the local engine reads the Ray engine's cache too (same key, same chunks)
    st3 = EmbedStats()
    embed_files(paths, root, enc, cache_dir=cache, stats=st3)
    assert st3.n_cached == len(paths) - 1
