"""The embedding pipeline on Ray Data: the same decode → detect → align → encode steps
as :func:`qmag_core.pipeline.embed.embed_files`, as two ``map_batches`` stages with stateful
actors — detection + alignment (MTCNN loaded once per actor, CPU) and encoding (the
encoder loaded once per actor; one GPU per actor when the cluster has GPUs) — so more
machines can share a large image set.  Without an address a local Ray instance starts,
so the same call works on a laptop and on a cluster (``address="auto"`` or
``ray://host:10001``).

The driver reads every file's bytes once to look it up in the content-keyed embedding
cache; only images not cached are sent to Ray, and their results are cached in the
same chunks as the local engine writes, so a run resumes.  Rows come back in input
order with the same ``ok`` / ``error`` as the local engine.  Ray is an optional extra
(``pip install .[ray]``) imported only here.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from ..encoders.foreign import ForeignOnnxEncoder
from ..errors import QMagError, one_line

__all__ = ["embed_files_ray"]


def _threads(n: int) -> None:
    """Use the driver's intra-op thread count: float reductions (and so MTCNN's boxes)
    depend on it, and Ray starts workers with one thread."""
    from ..vision.runtime import torch_available

    if torch_available():
        import torch

        torch.set_num_threads(max(1, int(n)))


def _node_id() -> str:
    """The Ray node this worker runs on."""
    import ray

    return ray.get_runtime_context().get_node_id()


class _DetectAlign:
    """Ray actor: paths → aligned crops (zeros where failed), error, detector
    probability and inter-eye distance, exactly as the local engine computes them."""

    def __init__(self, spec_name: str, face: str, threads: int, device: str = "cpu", runtime: str = "torch"):
        from ..vision.align import FaceDetector, crop_spec

        _threads(threads)
        self.spec = crop_spec(spec_name)
        self.face = face
        self.det = FaceDetector(device=device, runtime=runtime)

    def __call__(self, batch: dict) -> dict:
        """``batch``: chunks (one item each: ``rows``, ``paths``, ``labels`` lists), each
        detected as one MTCNN batch like a batch of the local engine; one output row per image."""
        out = [self._chunk(r, p, lab) for r, p, lab in zip(batch["rows"], batch["paths"], batch["labels"], strict=True)]
        return {k: np.concatenate([o[k] for o in out]) for k in ("row", "crop", "error", "det", "node")}

    def _chunk(self, rows, paths, labels) -> dict:
        from ..vision.images import ImageError, load_image
        from .embed import detect_align, read_image_file

        n, s = len(rows), self.spec.size
        crops = np.zeros((n, s, s, 3), np.uint8)
        err = np.full(n, "", dtype=object)
        det = np.full((n, 2), np.nan)
        images, idx = [], []
        for k, (path, label) in enumerate(zip(paths, labels, strict=True)):
            data, e = read_image_file(Path(str(path)), str(label))
            if data is None:
                err[k] = e
                continue
            try:
                images.append(load_image(data, name=str(label)))
                idx.append(k)
            except ImageError as ex:
                err[k] = str(ex)
        found = detect_align(self.det, images, [str(labels[k]) for k in idx], self.spec, self.face)
        for k, (crop, e, prob, ied) in zip(idx, found, strict=True):
            if crop is None:
                err[k] = e
            else:
                crops[k], det[k] = crop, (prob, ied)
        node = np.full(n, _node_id(), dtype=object).astype(str)
        return {"row": np.asarray(rows, np.int64), "crop": crops, "error": err.astype(str), "det": det, "node": node}


class _Encode:
    """Ray actor: aligned crops → raw embeddings and measures (``encode_into``)."""

    def __init__(self, encoder_id: str, options: dict, batch_size: int, threads: int):
        _threads(threads)
        if options.get("onnx"):  # the ONNX runtime: each actor opens the model file
            from ..encoders import open_onnx
            from ..encoders.foreign import InputLayout

            o = options
            layout = InputLayout.from_dict(o["layout"]) if o.get("layout") else None
            self.enc = open_onnx(
                o["onnx"], device=o.get("device", "cpu"), descriptor=o["descriptor"], flip=o["flip"], layout=layout
            )
        else:
            from ..encoders import load_encoder

            self.enc = load_encoder(encoder_id, **options)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        from ..quality.baselines import MEASURES
        from .embed import encode_into

        n = len(batch["row"])
        emb = np.full((n, self.enc.dim), np.nan, np.float32)
        ok = np.zeros(n, bool)
        err = np.asarray(batch["error"], dtype=object)
        meas = np.full((n, len(MEASURES)), np.nan)
        todo = np.flatnonzero(err == "")
        if todo.size:
            encode_into(
                self.enc,
                list(batch["crop"][todo]),
                todo,
                emb,
                ok,
                err,
                meas,
                batch_size=self.batch_size,
                detections=np.asarray(batch["det"])[todo],
            )
        out = {"row": batch["row"], "embedding": emb, "ok": ok, "error": err.astype(str), "measures": meas}
        return {**out, "node": batch["node"]}


def start_ray(address: str | None, num_cpus: int | None):
    """Ray, started locally or joined to the cluster at ``address`` (checked first: an
    address nobody answers at is refused in seconds, not retried without end)."""
    try:
        import ray
    except ImportError:
        raise QMagError("--engine ray needs Ray: pip install 'qmag-studio[ray]'") from None
    if not ray.is_initialized():
        import logging

        quiet = logging.DEBUG if os.environ.get("QMAG_DEBUG") else logging.ERROR  # no INFO lines before ours
        kw = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True, "logging_level": quiet}
        if address:
            check_ray_address(address)
            try:
                ray.init(address=address, **kw)
            except Exception as e:  # noqa: BLE001 - Ray's own types; the user gets one line
                raise QMagError(f"--address {address}: could not join the Ray cluster ({one_line(e)[:200]})") from None
        else:
            ray.init(num_cpus=num_cpus, **kw)
    return ray


def check_ray_address(address: str, timeout: float = 3.0) -> None:
    """``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` with a listener there (a TCP
    connection within ``timeout`` seconds); :class:`QMagError` naming ``--address``."""
    import re
    import socket

    if address == "auto":
        return
    m = re.fullmatch(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]{1,253}):(\d{1,5})", address)
    if m is None or not 0 < int(m.group(2)) < 65536:
        raise QMagError(f"--address {address[:80]!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    host, port = m.group(1).strip("[]"), int(m.group(2))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise QMagError(
            f"--address {address}: no Ray cluster answers there ({why}); start one with 'ray start --head' "
            "or leave --address out for a local one"
        ) from None


def embed_files_ray(
    paths,
    root,
    encoder,
    *,
    encoder_options: dict | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    batch_size: int = 32,
    cache_dir="default",
    face: str = "best",
    progress=None,
    stats=None,
    keep_alive: bool = False,
):
    """:func:`~qmag_core.pipeline.embed.embed_files` (not ``aligned``) on Ray Data; same rows,
    ``ok``, errors and measures.  ``encoder`` is the local encoder (its id, key and
    dimension); each actor loads its own copy from ``encoder_options`` (the keyword
    options of :func:`~qmag_core.encoders.load_encoder`), or opens the same model file
    when ``encoder`` is an :class:`~qmag_core.encoders.onnx.OnnxEncoder`.  ``keep_alive``
    leaves Ray running for the next call (shards of one run)."""
    from ..quality.baselines import MEASURES
    from ..safeio import confine_paths
    from .embed import EmbeddingCache, EmbedStats, cache_key, default_cache_dir, finish_embeddings, read_image_file

    t0 = time.perf_counter()
    files = confine_paths([str(p) for p in paths], Path(root)) if root is not None else [Path(p) for p in paths]
    n = len(files)
    st = stats if stats is not None else EmbedStats()
    st.n_images = n
    emb = np.full((n, encoder.dim), np.nan, np.float32)
    ok = np.zeros(n, bool)
    err = np.full(n, "", dtype=object)
    meas = np.full((n, len(MEASURES)), np.nan)
    cache = None
    if cache_dir is not None:
        cdir = default_cache_dir() if cache_dir == "default" else Path(cache_dir)
        cache = EmbeddingCache(cdir, cache_key(encoder, face=face), dim=encoder.dim)
        st.cache_damaged.extend(cache.damaged)
    hashes: dict[int, str] = {}
    todo = []
    for k, f in enumerate(files):
        data, e = read_image_file(f, str(paths[k]))
        if data is None:
            err[k] = e
            continue
        h = hashes[k] = hashlib.sha1(data).hexdigest()
        if cache is not None and h in cache:
            emb[k], ok[k], err[k], meas[k] = cache.get(h)
            st.n_cached += 1
        else:
            todo.append(k)
    if todo:
        _run_ray(
            todo,
            files,
            paths,
            encoder,
            encoder_options or {},
            address,
            num_cpus,
            batch_size,
            face,
            (emb, ok, err, meas),
            cache,
            hashes,
            progress,
            n - len(todo),
            keep_alive,
            st.nodes,
        )
        st.n_embedded = len(todo)
    elif progress is not None:
        progress(n, n)
    st.n_failed = int((~ok).sum())
    st.seconds = time.perf_counter() - t0
    return finish_embeddings(emb, ok, err, meas, paths, encoder.id, encoder.key)


def _worker_threads() -> int:
    """Threads each actor may use: torch's own count where torch is installed."""
    from ..vision.runtime import torch_available

    if torch_available():
        import torch

        return torch.get_num_threads()
    return os.cpu_count() or 1


def _batch_items(todo, files, paths, batch_size: int) -> list[dict]:
    """One item per batch of the local engine (rows k // batch_size), so MTCNN sees the
    same image batches and gives the same detections (its results depend on the batch)."""
    chunks: dict[int, list[int]] = {}
    for k in todo:
        chunks.setdefault(k // batch_size, []).append(k)
    return [
        {"rows": c, "paths": [str(files[k]) for k in c], "labels": [str(paths[k]) for k in c]}
        for _, c in sorted(chunks.items())
    ]


def _encoder_options(encoder, options: dict, device: str) -> dict:
    """How each encoder actor rebuilds ``encoder`` (an ONNX file is opened by path)."""
    if encoder.runtime != "onnx":
        return {**options, "device": device}
    opts = {"onnx": encoder.path, "device": device, "descriptor": encoder.descriptor, "flip": encoder.flip}
    if isinstance(encoder, ForeignOnnxEncoder):  # a third-party model: the same preprocessing in every actor
        opts["layout"] = encoder.layout.to_dict()
    return opts


def _run_ray(
    todo,
    files,
    paths,
    encoder,
    options,
    address,
    num_cpus,
    batch_size,
    face,
    out,
    cache,
    hashes,
    progress,
    done0,
    keep_alive=False,
    nodes=None,
):
    """Send the rows ``todo`` through the two actor stages; fill ``out`` and the cache."""
    threads = _worker_threads()
    ray = start_ray(address, num_cpus)
    emb, ok, err, meas = out
    gpus = ray.cluster_resources().get("GPU", 0)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    items = _batch_items(todo, files, paths, batch_size)
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * cpus)))
    ds = ds.map_batches(
        _DetectAlign,
        fn_constructor_kwargs={
            "spec_name": encoder.spec.name,
            "face": face,
            "threads": threads,
            "runtime": encoder.runtime,
        },
        batch_size=1,
        concurrency=max(1, cpus - (0 if gpus else 1)),
        batch_format="numpy",
    )
    opts = _encoder_options(encoder, options, "cuda" if gpus else "cpu")
    ds = ds.map_batches(
        _Encode,
        fn_constructor_kwargs={"encoder_id": encoder.id, "options": opts, "batch_size": batch_size, "threads": threads},
        batch_size=batch_size,
        concurrency=max(1, int(gpus)) if gpus else 1,
        num_gpus=1 if gpus else 0,
        batch_format="numpy",
    )
    done = done0
    for b in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        rows = np.asarray(b["row"], np.int64)
        emb[rows], ok[rows], err[rows], meas[rows] = b["embedding"], b["ok"], b["error"], b["measures"]
        if nodes is not None:
            for node, c in zip(*np.unique(b["node"].astype(str), return_counts=True), strict=True):
                nodes[node] = nodes.get(node, 0) + int(c)
        if cache is not None:
            cache.add(
                [hashes[int(r)] for r in rows], b["embedding"], b["ok"].tolist(), b["error"].tolist(), b["measures"]
            )
        done += len(rows)
        if progress is not None:
            progress(done, len(files))
    if not (keep_alive or os.environ.get("QMAG_RAY_KEEP")):  # tests keep one local instance for several calls
        ray.shutdown()
