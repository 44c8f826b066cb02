"""Occluded versions of real photos through the real pipeline (for the enrolment-check
experiments): the subject is found on the clean photo, an occluder is painted on the
whole photo with the subject's landmarks (:func:`~qmag_core.quality.occluders.paint_occluder`),
and the painted photo goes through detect → choose → align like any user photo, so a
face the occluder hides from the detector is lost, as it would be."""

from __future__ import annotations

import numpy as np

from ..errors import QMagError
from ..quality.occluders import OCCLUDERS, paint_occluder
from ..vision.align import FaceDetector, detect_and_align_batch
from ..vision.images import ImageError, load_image

__all__ = ["occluded_faces"]


def occluded_faces(paths, kinds, encoder, *, detector=None, seed: int = 0, batch: int = 32, progress=None) -> dict:
    """Aligned crops of each photo in ``paths``, clean (kind ``"clean"``) and with each
    occluder of ``kinds`` painted on.  Seeded per (photo, kind), so a subset gives the same
    crops.  Returns ``crop`` (N, S, S, 3) uint8, ``kind`` (N,), ``source`` (N,) index into
    ``paths``, ``lost`` {kind: photos whose painted face was not found} and ``skipped``
    (photos unreadable or without a clean face)."""
    det = detector or FaceDetector.for_encoder(encoder)
    kinds = tuple(kinds)
    for k in kinds:  # refused before any photo is read (paint_occluder would say it later)
        if k not in OCCLUDERS:
            raise QMagError(f"unknown occluder {k!r}; choose one of {', '.join(OCCLUDERS)}")
    crops, kind_of, source = [], [], []
    lost = dict.fromkeys(kinds, 0)
    skipped = 0
    for start in range(0, len(paths), batch):
        idx = list(range(start, min(start + batch, len(paths))))
        photos, keep = [], []
        for i in idx:
            try:
                photos.append(load_image(paths[i]))
                keep.append(i)
            except ImageError:
                skipped += 1
        clean = detect_and_align_batch(photos, det, encoder.spec, face="best")
        painted, owner = [], []
        for i, img, a in zip(keep, photos, clean, strict=True):
            if a is None:
                skipped += 1
                continue
            crops.append(a.crop), kind_of.append("clean"), source.append(i)
            for j, k in enumerate(kinds):
                rng = np.random.default_rng([seed, i, j])
                painted.append(paint_occluder(img, k, a.face.landmarks, rng))
                owner.append((i, k))
        for (i, k), a in zip(owner, detect_and_align_batch(painted, det, encoder.spec, face="best"), strict=True):
            if a is None:
                lost[k] += 1
                continue
            crops.append(a.crop), kind_of.append(k), source.append(i)
        if progress is not None:
            progress(min(start + batch, len(paths)), len(paths))
    S = encoder.spec.size
    return {
        "crop": np.stack(crops) if crops else np.zeros((0, S, S, 3), np.uint8),
        "kind": np.asarray(kind_of),
        "source": np.asarray(source, np.int64),
        "lost": lost,
        "skipped": skipped,
    }
