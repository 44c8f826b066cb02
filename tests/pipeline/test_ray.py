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


@pytest.mark.slow
def test_ray_cluster_spreads_over_nodes_and_survives_losing_one(tmp_path):
    """A head and two worker nodes on this machine (ray.cluster_utils.Cluster): the
    detection stage runs on more than one node; killing a worker node outright (not a
    graceful stop) while it holds work, with the cache on, the run goes on (batches
    arrive after the loss) and ends with the local engine's rows, all of them cached."""
    import ray
    from ray.cluster_utils import Cluster

    from qmag_core.encoders.onnx import shipped_encoder
    from qmag_core.pipeline.embed import EmbedStats, embed_files
    from qmag_core.pipeline.ray import embed_files_ray

    photos = need_shared("lfw_photos", "images")
    root = tmp_path / "imgs"
    root.mkdir()
    for f in sorted(photos.rglob("*.jpg"))[::11][:96]:
        shutil.copy(f, root / f"{f.parent.name}__{f.name}")
    (root / "notes.jpg").write_bytes(b"not an image")
    paths = sorted(p.name for p in root.iterdir())
    enc = shipped_encoder("builtin", device="cpu")  # light actors: no torch in the workers
    local = embed_files(paths, root, enc, cache_dir=None, batch_size=4)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        st = EmbedStats()
        spread = embed_files_ray(paths, root, enc, address=cluster.address, cache_dir=None, batch_size=4, stats=st)
        assert len(st.nodes) >= 2, st.nodes  # the work was spread over nodes
        assert sum(st.nodes.values()) == len(paths)
        assert spread.error.tolist() == local.error.tolist()

        workers = [w for w in cluster.list_all_nodes() if w is not cluster.head_node]
        killed, after = [], []
        st2 = EmbedStats()

        def kill_once(done, n):  # called after each batch, with st2.nodes already counted
            if killed:
                after.append(done)
                return
            busy = [w for w in workers if w.node_id in st2.nodes]
            if busy and done <= n // 2:  # a worker node that has been detecting, with half the run ahead
                cluster.remove_node(busy[0], allow_graceful=False)  # killed outright, its actors with it
                killed.append((busy[0].node_id, done, n))

        cache = tmp_path / "cache"
        survived = embed_files_ray(
            paths, root, enc, address=cluster.address, cache_dir=cache, batch_size=4, stats=st2, progress=kill_once
        )
        assert killed and killed[0][1] < killed[0][2], killed  # it died with work left
        assert killed[0][0] in st2.nodes and killed[0][0] not in [w.node_id for w in cluster.list_all_nodes()]
        assert after and after[-1] == len(paths) and after[0] > killed[0][1]  # batches kept arriving after the loss
        assert survived.paths.tolist() == local.paths.tolist()
        assert np.array_equal(survived.ok, local.ok) and survived.error.tolist() == local.error.tolist()
        assert np.abs(survived.embeddings[local.ok] - local.embeddings[local.ok]).max() < 1e-6
        st3 = EmbedStats()  # the cache written around the loss holds every row, as the local engine reads it
        again = embed_files(paths, root, enc, cache_dir=cache, batch_size=4, stats=st3)
        assert st3.n_cached == len(paths) and np.array_equal(again.ok, local.ok)
    finally:
        ray.shutdown()
        cluster.shutdown()
