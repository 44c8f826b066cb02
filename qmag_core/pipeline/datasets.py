"""Embedding the images of evaluation sets that come without detection: insightface
``.bin`` sets (aligned ArcFace-112 crops) and IJB template protocols (aligned from their
5-point landmarks, or detected like ``qmag embed`` when they have none).  Reading the
files is :mod:`qmag_core.io.binsets` / :mod:`qmag_core.io.templates`; scoring is
:mod:`qmag_core.evaluation`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, QMagError
from ..io.binsets import BinSet, bin_pairs
from ..io.templates import TemplateProtocol

__all__ = ["folder_crops", "score_image_pairs", "embed_bin", "bin_scores", "embed_protocol", "content_key"]


def folder_crops(folder, encoder, n: int, *, aligned: bool = False, seed: int = 0, label: str = "folder") -> np.ndarray:
    """Aligned crops (N, S, S, 3) of up to ``n`` photos under ``folder`` (a seeded sample,
    confined to the folder) through the pipeline's detect -> choose -> align step, or
    re-warped ArcFace-112 crops with ``aligned``; unreadable photos and photos without a
    face are skipped.  ``label`` names the folder in errors (e.g. the CLI option)."""
    from ..safeio import confine_paths
    from ..vision.align import ARCFACE_112, FaceDetector, detect_and_align_batch, realign_aligned
    from ..vision.images import ImageError, list_images, load_image

    paths = list_images(folder)
    if not paths:
        raise QMagError(f"{label} {folder}: no images in this folder")
    pick = sorted(np.random.default_rng(seed).permutation(len(paths))[:n].tolist())
    files = confine_paths([paths[k] for k in pick], folder)  # a folder scan: only a symlink can lead out
    photos = []
    for f, p in zip(files, (paths[k] for k in pick), strict=True):
        try:
            photos.append(load_image(f, name=p))
        except ImageError:
            continue
    if aligned:
        crops = [realign_aligned(p, ARCFACE_112, encoder.spec).crop for p in photos]
    else:
        det = FaceDetector.for_encoder(encoder)
        crops = [
            a.crop
            for s in range(0, len(photos), 32)
            for a in detect_and_align_batch(photos[s : s + 32], det, encoder.spec)
            if a is not None
        ]
    if len(crops) < 8:
        raise QMagError(f"{label} {folder}: {len(crops)} faces found; at least 8 are needed")
    return np.stack(crops)


def score_image_pairs(pairs, root: str | os.PathLike, embed):
    """Score the pairs of an image folder: every path of ``pairs`` must lie under ``root``
    (one that escapes refuses the whole file, naming its line), each image is embedded
    once by ``embed(paths) -> Embeddings`` (the caller picks the engine and the progress
    display) and the pairs are scored from the embeddings.  Returns ``(ScoreTable,
    report, Embeddings)``; :class:`DataFormatError` naming the pairs file when no pair
    can be scored (every image missing or failed)."""
    from ..evaluation.pairing import scores_from_embeddings
    from ..io.pairs import confine_pairs

    confine_pairs(pairs, root)
    emb = embed(sorted(set(pairs.path1.tolist()) | set(pairs.path2.tolist())))
    table, rep = scores_from_embeddings(emb, pairs, encoder=emb.encoder)
    if rep["n_scored"] == 0:
        raise DataFormatError("no pair could be scored (missing or failed images)", path=pairs.source)
    return table, rep, emb


def embed_bin(binset: BinSet, encoder, *, batch_size: int = 64, progress=None):
    """Embed every image of a .bin (aligned ArcFace-112 crops, re-warped onto the
    encoder's template; no detection).  Returns :class:`~qmag_core.io.embeddings.Embeddings`
    with paths "0", "1", …; an image that cannot be decoded is a failed row."""
    from ..errors import QMagError
    from ..quality.baselines import MEASURES
    from ..vision.align import ARCFACE_112, realign_aligned
    from ..vision.images import load_image
    from .embed import encode_into, finish_embeddings

    n = len(binset.images)
    emb = np.full((n, encoder.dim), np.nan, np.float32)
    ok = np.zeros(n, bool)
    err = np.full(n, "", dtype=object)
    meas = np.full((n, len(MEASURES)), np.nan)  # no detector on aligned crops: its measures stay unknown
    for s0 in range(0, n, batch_size):
        crops, ks = [], []
        for k in range(s0, min(n, s0 + batch_size)):
            try:
                img = load_image(binset.images[k], name=f"image {k}")
                crops.append(realign_aligned(img, ARCFACE_112, encoder.spec).crop)
                ks.append(k)
            except QMagError as e:
                err[k] = str(e)
        if crops:
            encode_into(encoder, crops, ks, emb, ok, err, meas, batch_size=batch_size)
        if progress is not None:
            progress(min(n, s0 + batch_size), n)
    out = finish_embeddings(emb, ok, err, meas, np.arange(n).astype(str), encoder.id, encoder.key)
    out.measures = {k: v for k, v in out.measures.items() if np.isfinite(v).any()}
    return out


def bin_scores(binset: BinSet, encoder, *, batch_size: int = 64, progress=None, n_folds: int = 10):
    """Embed and score a read .bin: ``(ScoreTable, report)`` as
    :func:`~qmag_core.evaluation.pairing.scores_from_embeddings` gives them, the report with a
    ``source`` entry; :class:`DataFormatError` when no pair can be scored."""
    from ..evaluation.pairing import scores_from_embeddings

    emb = embed_bin(binset, encoder, batch_size=batch_size, progress=progress)
    table, rep = scores_from_embeddings(emb, bin_pairs(binset, n_folds), encoder=encoder.id)
    if rep["n_scored"] == 0:
        raise DataFormatError("no pair could be scored", path=binset.source)
    rep["source"] = {"format": "insightface .bin", "n_images": len(binset.images), "n_folds": n_folds}
    return table, rep


def content_key(data: bytes, landmarks: np.ndarray) -> str:
    """Cache key of an image aligned from given landmarks: its bytes and the points."""
    return hashlib.sha1(data + np.asarray(landmarks, np.float32).tobytes()).hexdigest()


def embed_protocol(
    protocol: TemplateProtocol,
    encoder,
    *,
    image_root: str | os.PathLike | None = None,
    cache_dir="default",
    batch_size: int = 32,
    progress=None,
):
    """Raw features (N, D), ok (N,) and error (N,) of the protocol's images under
    ``image_root`` (default ``DIR/loose_crop``): aligned from the protocol's 5-point
    landmarks when it has them (no detection), else detected like ``qmag embed``.
    Resumable: results are cached by image content (and landmarks) per encoder."""
    root = Path(image_root) if image_root is not None else Path(protocol.source) / "loose_crop"
    if not root.is_dir():
        raise QMagError(f"{root}: image folder not found")
    if protocol.landmarks is None:
        from .embed import embed_files

        e = embed_files(
            protocol.images.tolist(), root, encoder, cache_dir=cache_dir, batch_size=batch_size, progress=progress
        )
        return e.embeddings, e.ok, e.error
    return _embed_landmarks(protocol, root, encoder, cache_dir, batch_size, progress)


def _embed_landmarks(protocol, root, encoder, cache_dir, batch_size, progress):
    from ..quality.baselines import MEASURES
    from ..safeio import confine_paths
    from ..vision.align import align
    from ..vision.images import ImageError, load_image
    from .embed import EmbeddingCache, default_cache_dir, encode_into, read_image_file

    images = protocol.images.tolist()
    files = confine_paths(images, root, source=f"{protocol.name}_face_tid_mid.txt", lines=range(1, len(images) + 1))
    cache = None
    if cache_dir is not None:
        cdir = default_cache_dir() if cache_dir == "default" else Path(cache_dir)
        cache = EmbeddingCache(cdir, f"{encoder.content_key}-landmarks", dim=encoder.dim)
    n = len(files)
    feats = np.full((n, encoder.dim), np.nan, np.float32)
    ok = np.zeros(n, bool)
    err = np.full(n, "", dtype=object)
    meas = np.full((n, len(MEASURES)), np.nan)
    for start in range(0, n, batch_size):
        crops, rows, keys = [], [], []
        for k in range(start, min(n, start + batch_size)):
            data, e = read_image_file(files[k], images[k])
            if data is None:
                err[k] = e
                continue
            h = content_key(data, protocol.landmarks[k])
            if cache is not None and h in cache:
                feats[k], ok[k], err[k], _ = cache.get(h)
                continue
            try:
                crops.append(align(load_image(data, name=images[k]), protocol.landmarks[k], encoder.spec).crop)
            except ImageError as ex:
                err[k] = str(ex)
                continue
            rows.append(k)
            keys.append(h)
        if crops:  # the local engine's encoder step: embedding, ok, error, measures
            encode_into(encoder, crops, rows, feats, ok, err, meas, batch_size=batch_size)
            if cache is not None:
                cache.add(keys, feats[rows], ok[rows].tolist(), err[rows].tolist(), meas[rows])
        if progress is not None:
            progress(min(n, start + batch_size), n)
    return feats, ok, err.astype(str)
