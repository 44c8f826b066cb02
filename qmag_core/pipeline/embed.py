"""Embedding images at scale: decode → detect → align → encode, with a resumable cache.

Images are decoded in a background thread while the previous batch is detected and
encoded; MTCNN runs batched on same-size images.  Results are cached per file content
(SHA-1 of the bytes) and encoder key, one atomic chunk file per batch, so an
interrupted run loses at most one batch and a re-run only embeds new files.  Failed
images (unreadable, no face) become rows with ``ok=False`` and their error — a failure
never stops the run.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, QMagError
from ..io.embeddings import Embeddings
from ..limits import limit
from ..outputs import save_npz
from ..quality.baselines import MEASURES, inter_eye_distance, sharpness
from ..safeio import confine_paths, load_npz, read_bytes
from ..vision.align import ARCFACE_112, DEFAULT_FACE_RULE, FaceDetector, detect_and_align_batch, realign_aligned
from ..vision.images import ImageError, load_image

_NO_MEASURES = np.full(len(MEASURES), np.nan)
#: the error of a row whose encoder output cannot be used
BAD_EMBEDDING = "encoder returned a zero or non-finite embedding"


def encode_into(encoder, crops, rows, emb, ok, err, meas, *, batch_size: int = 64, detections=None):
    """Embed aligned ``crops`` and record them at ``rows`` of the result arrays: the
    embedding, ``ok`` (finite and non-zero), the error, and the measures raw_length and
    sharpness (+ detector_prob, ied_px from ``detections`` (B, 2) when given), in the
    order of :data:`~qmag_core.quality.baselines.MEASURES`."""
    batch = np.stack(crops)
    out, raw = encoder.embed_with_raw(batch, batch_size=batch_size)
    good = np.isfinite(out).all(axis=1) & (np.linalg.norm(np.nan_to_num(out), axis=1) > 0)
    rows = np.asarray(rows)
    emb[rows], ok[rows] = out, good
    err[rows] = np.where(good, "", BAD_EMBEDDING)
    meas[rows, 0], meas[rows, 1] = raw, sharpness(batch)
    if detections is not None:
        meas[rows, 2:] = detections
    return out, good


def finish_embeddings(emb, ok, err, meas, paths, encoder_id: str, encoder_key: str = "") -> Embeddings:
    """The :class:`Embeddings` of filled result arrays (failed rows: NaN, their error)."""
    emb[~ok] = np.nan
    meas[~ok] = np.nan
    q = np.where(ok, np.linalg.norm(np.nan_to_num(emb), axis=1), np.nan).astype(np.float32)
    return Embeddings(
        emb,
        q,
        np.asarray([str(p) for p in paths], str),
        ok,
        err.astype(str),
        encoder_id,
        {name: meas[:, j] for j, name in enumerate(MEASURES)},
        encoder_key,
    )


__all__ = ["EmbeddingCache", "embed_files", "default_cache_dir", "EmbedStats"]


def default_cache_dir() -> Path:
    return Path(os.environ.get("QMAG_CACHE", Path.home() / ".cache" / "qmag")) / "embeddings"


class EmbeddingCache:
    """Content-addressed cache of embeddings for one encoder configuration (``key``).

    A damaged chunk (truncated, not an .npz, wrong arrays) is skipped, listed in
    ``damaged`` and deleted, so its images are embedded again and cached anew."""

    def __init__(self, root: str | os.PathLike, key: str, *, dim: int | None = None):
        from ..encoders.keys import path_safe

        self.dir = Path(root) / path_safe(key)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._mem: dict[str, tuple[np.ndarray, bool, str, np.ndarray]] = {}
        self.damaged: list[str] = []
        for f in sorted(self.dir.glob("chunk-*.npz")):
            try:
                z = load_npz(f, name=f.name)
                sha, e, ok, err = z["sha1"], z["embeddings"], z["ok"], z["error"]
                n = sha.shape[0] if sha.ndim == 1 else -1
                # per-image quality measures (chunks written before they existed have none)
                m = z.get("measures", np.full((n, len(MEASURES)), np.nan))
                if (
                    e.ndim != 2
                    or e.shape[0] != n
                    or ok.shape != (n,)
                    or err.shape != (n,)
                    or (dim is not None and e.shape[1] != dim)
                    or e.dtype.kind != "f"
                    or m.shape != (n, len(MEASURES))
                    or m.dtype.kind != "f"
                ):
                    raise DataFormatError("arrays of the wrong shape", path=f.name)
            except (QMagError, KeyError, OSError) as ex:
                self.damaged.append(f"{f.name}: {ex}" if f.name not in str(ex) else str(ex))
                try:
                    f.unlink()
                except OSError:
                    pass
                continue
            for h, row, o, r, mm in zip(sha.tolist(), e, ok.tolist(), err.tolist(), m, strict=True):
                self._mem[h] = (row, bool(o), str(r), mm)
        self._n = len(list(self.dir.glob("chunk-*.npz")))

    def __contains__(self, h: str) -> bool:
        return h in self._mem

    def __len__(self) -> int:
        return len(self._mem)

    def get(self, h: str):
        return self._mem[h]

    def add(
        self,
        hashes: Sequence[str],
        emb: np.ndarray,
        ok: Sequence[bool],
        err: Sequence[str],
        measures: np.ndarray | None = None,
    ) -> None:
        """Store one batch as one atomic chunk; ``measures`` (B, len(MEASURES)) or NaN."""
        if not len(hashes):
            return
        m = (
            np.full((len(hashes), len(MEASURES)), np.nan)
            if measures is None
            else np.asarray(measures, np.float64).reshape(len(hashes), len(MEASURES))
        )
        save_npz(
            self.dir / f"chunk-{time.time_ns()}-{os.getpid()}-{self._n:06d}.npz",
            sha1=np.asarray(hashes, str),
            embeddings=np.asarray(emb, np.float32),
            ok=np.asarray(ok, bool),
            error=np.asarray(err, str),
            measures=m,
        )
        self._n += 1
        for h, e, o, r, mm in zip(hashes, emb, ok, err, m, strict=True):
            self._mem[h] = (e, bool(o), str(r), mm)


@dataclass
class EmbedStats:
    n_images: int = 0
    n_cached: int = 0
    n_embedded: int = 0
    n_failed: int = 0
    seconds: float = 0.0
    #: messages about damaged cache chunks (skipped, deleted, their images embedded again)
    cache_damaged: list = field(default_factory=list)
    #: Ray engine: images detected and aligned per cluster node (node id → count)
    nodes: dict = field(default_factory=dict)


def _pad_edges(img: np.ndarray, frac: float) -> np.ndarray:
    ph, pw = int(round(img.shape[0] * frac)), int(round(img.shape[1] * frac))
    return np.pad(img, ((ph, ph), (pw, pw), (0, 0)), mode="edge")


def read_image_file(path: Path, label: str) -> tuple[bytes | None, str]:
    """Bytes of one image file (regular files only, at most ``QMAG_MAX_IMAGE_BYTES``)."""
    if not path.exists():
        return None, f"{label}: file not found"
    try:
        return read_bytes(path, max_bytes=limit("QMAG_MAX_IMAGE_BYTES"), what="image file", name=label), ""
    except QMagError as e:
        return None, str(e)


def cache_key(encoder, aligned: bool = False, aligned_spec=ARCFACE_112, detect_pad: float = 0.0, face: str = "best"):
    """The embedding-cache folder name of one encoder configuration (shared by the local
    and the Ray engine, so either reads the other's results): the encoder's
    ``content_key`` (bytes we hashed ourselves, never what a model file says of itself)."""
    mode = f"aligned-{aligned_spec.name}" if aligned else f"mtcnn{f'-pad{detect_pad:g}' if detect_pad else ''}"
    if not aligned and face != "largest":  # 'largest' keeps the key of caches made before face rules
        mode += f"-{face}"
    return f"{encoder.content_key}-{mode}"


def detect_align(detector, images: list, labels: list, spec, face: str) -> list:
    """Detect (one MTCNN batch), choose the subject by ``face`` and align each image
    (:func:`~qmag_core.vision.align.detect_and_align_batch`): ``(crop or None, error,
    detector probability, inter-eye px)`` per image."""
    out = []
    for label, img, a in zip(labels, images, detect_and_align_batch(images, detector, spec, face=face), strict=True):
        if a is None:
            out.append((None, f"{label}: {detector.why_no_face(img)}", np.nan, np.nan))
        else:
            out.append((a.crop, "", a.face.score, float(inter_eye_distance(a.face.landmarks)[0])))
    return out


def embed_files(
    paths: Sequence[str],
    root: str | os.PathLike | None,
    encoder,
    *,
    detector: FaceDetector | None = None,
    aligned: bool = False,
    aligned_spec=ARCFACE_112,
    detect_pad: float = 0.0,
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = "default",
    progress: Callable[[int, int], None] | None = None,
    stats: EmbedStats | None = None,
    face: str = DEFAULT_FACE_RULE,
) -> Embeddings:
    """Embed ``paths`` (relative to ``root`` when given) with ``encoder``.

    Returns :class:`Embeddings` in the order of ``paths`` (failed rows: ok=False, NaN,
    with the error).  ``progress(done, total)`` is called after every batch.
    ``cache_dir=None`` disables caching; "default" uses :func:`default_cache_dir`.
    ``detect_pad`` (fraction of the image size, each side) pads tight crops by
    replicating their edges before detection, so MTCNN sees a whole face.
    ``face`` is the rule that picks the subject of a photo with several faces
    (:func:`~qmag_core.vision.align.choose_face`).
    With ``root`` every path must resolve (symlinks included) under it, or nothing is
    embedded (:class:`~qmag_core.errors.DataFormatError`).
    """
    t0 = time.perf_counter()
    files = confine_paths([str(p) for p in paths], Path(root)) if root is not None else [Path(p) for p in paths]
    cache = None
    if cache_dir is not None:
        cdir = default_cache_dir() if cache_dir == "default" else Path(cache_dir)
        cache = EmbeddingCache(cdir, cache_key(encoder, aligned, aligned_spec, detect_pad, face), dim=encoder.dim)
    if detector is None and not aligned:
        detector = FaceDetector.for_encoder(encoder)
    st = stats if stats is not None else EmbedStats()
    st.n_images = n = len(files)
    if cache is not None:
        st.cache_damaged.extend(cache.damaged)
    run = _EmbedRun(
        paths,
        files,
        encoder,
        detector,
        cache,
        st,
        aligned=aligned,
        aligned_spec=aligned_spec,
        detect_pad=detect_pad,
        batch_size=batch_size,
        face=face,
    )
    done = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        chunks = [list(range(s, min(n, s + batch_size))) for s in range(0, n, batch_size)]
        for decoded in pool.map(lambda c: [run.decode(k) for k in c], chunks) if chunks else ():
            run.batch(decoded)
            done += len(decoded)
            if progress is not None:
                progress(done, n)
    st.n_failed = int((~run.ok).sum())
    st.seconds = time.perf_counter() - t0
    return finish_embeddings(run.emb, run.ok, run.err, run.meas, paths, encoder.id, encoder.key)


@dataclass
class _CacheRows:
    """What one batch adds to the embedding cache, in order."""

    hashes: list = field(default_factory=list)
    emb: list = field(default_factory=list)
    ok: list = field(default_factory=list)
    err: list = field(default_factory=list)
    meas: list = field(default_factory=list)

    def failure(self, h: str, e: str, dim: int) -> None:
        self.hashes.append(h)
        self.emb.append(np.full(dim, np.nan, np.float32))
        self.ok.append(False)
        self.err.append(e)
        self.meas.append(_NO_MEASURES)

    def write(self, cache, dim: int) -> None:
        cache.add(
            self.hashes,
            np.asarray(self.emb, np.float32).reshape(-1, dim),
            self.ok,
            self.err,
            np.asarray(self.meas, np.float64).reshape(-1, len(MEASURES)),
        )


class _EmbedRun:
    """The result arrays of one :func:`embed_files` call and its stages per batch:
    decode (or find in the cache) → detect and align → encode → cache."""

    def __init__(
        self, paths, files, encoder, detector, cache, stats, *, aligned, aligned_spec, detect_pad, batch_size, face
    ):
        n = len(files)
        self.paths, self.files, self.encoder, self.detector, self.cache, self.st = (
            paths,
            files,
            encoder,
            detector,
            cache,
            stats,
        )
        self.aligned, self.aligned_spec, self.detect_pad = aligned, aligned_spec, detect_pad
        self.batch_size, self.face = batch_size, face
        self.emb = np.full((n, encoder.dim), np.nan, np.float32)
        self.ok = np.zeros(n, bool)
        self.err = np.full(n, "", dtype=object)
        self.meas = np.full((n, len(MEASURES)), np.nan)

    def decode(self, k: int):
        """(row, sha1 or None, image or None, error; 'cached' when the cache has it)."""
        data, e = read_image_file(self.files[k], str(self.paths[k]))
        if data is None:
            return k, None, None, e
        h = hashlib.sha1(data).hexdigest()
        if self.cache is not None and h in self.cache:
            return k, h, None, "cached"
        try:
            return k, h, load_image(data, name=str(self.paths[k])), ""
        except ImageError as ex:
            return k, h, None, str(ex)

    def batch(self, decoded) -> None:
        rows = _CacheRows()
        todo = []
        for k, h, img, e in decoded:
            if e == "cached":
                self.emb[k], self.ok[k], self.err[k], self.meas[k] = self.cache.get(h)
                self.st.n_cached += 1
            elif img is None:
                self.err[k] = e
                if h is not None:
                    rows.failure(h, e, self.encoder.dim)
            else:
                todo.append((k, h, img))
        crops = []
        for (k, h, _), (crop, e, prob, ied) in zip(
            todo, self._align([t[2] for t in todo], [t[0] for t in todo]), strict=True
        ):
            if crop is None:
                self.err[k] = e
                rows.failure(h, e, self.encoder.dim)
            else:
                crops.append((k, h, crop, (prob, ied)))
        if crops:
            self._encode(crops, rows)
        if self.cache is not None:
            rows.write(self.cache, self.encoder.dim)

    def _align(self, images: list, rows: list) -> list:
        """(crop or None, error, detector probability, inter-eye px) per image."""
        if self.aligned:
            out = []
            for img in images:
                try:
                    out.append((realign_aligned(img, self.aligned_spec, self.encoder.spec).crop, "", np.nan, np.nan))
                except QMagError as ex:
                    out.append((None, str(ex), np.nan, np.nan))
            return out
        if self.detect_pad:
            images = [_pad_edges(im, self.detect_pad) for im in images]
        return detect_align(self.detector, images, [self.paths[k] for k in rows], self.encoder.spec, self.face)

    def _encode(self, crops: list, rows: _CacheRows) -> None:
        ks = [c[0] for c in crops]
        out, good = encode_into(
            self.encoder,
            [c[2] for c in crops],
            ks,
            self.emb,
            self.ok,
            self.err,
            self.meas,
            batch_size=self.batch_size,
            detections=np.asarray([c[3] for c in crops], np.float64),
        )
        rows.hashes += [c[1] for c in crops]
        rows.emb += list(out)
        rows.ok += good.tolist()
        rows.err += self.err[ks].tolist()
        rows.meas += list(self.meas[ks])
        self.st.n_embedded += len(crops)
