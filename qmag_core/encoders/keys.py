"""Stable content keys of the encoders, computed without loading a network (torch-free):
the ids and keys used by caches, params files, ``.npz`` outputs and the dashboard."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import QMagError

__all__ = ["WEIGHTS_SHA256", "BUILTIN_HEAD", "MAGFACE_HEAD", "file_key", "builtin_key", "path_safe"]


#: SHA-256 of the shipped faceRecognitionNet weights (checked when they are read)
WEIGHTS_SHA256 = "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"


def file_key(*paths) -> str:
    """First 16 hex digits of the SHA-256 of the files' contents, in order."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def path_safe(key: str) -> str:
    """``key`` as one file-name component: itself when it is plain (letters, digits,
    ``. _ + -``, not starting with a dot, at most 160 characters), else a digest of it,
    so no key can name a path outside the folder it is used in."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,159}", key):
        return key
    return "key-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def builtin_key(encoder_id: str, *, flip: bool = False, head=None) -> str:
    """The cache/provenance key of ``builtin`` / ``builtin-raw`` (weights and quality
    head hashes), computed without loading a network."""
    tail = "-flip" if flip else ""
    if encoder_id == "builtin-raw":
        return f"builtin-raw-{WEIGHTS_SHA256[:16]}{tail}"
    if encoder_id == "builtin":
        return f"builtin-{WEIGHTS_SHA256[:16]}-{file_key(Path(head) if head else BUILTIN_HEAD)}{tail}"
    raise QMagError(f"{encoder_id!r} is not a built-in encoder")


#: the shipped quality head of the built-in encoder: a utility head (q ≈ 100 × predicted
#: cosine to the clean capture; ``tools/train_builtin_utility.py``)
BUILTIN_HEAD = Path(__file__).resolve().parents[1] / "assets" / "quality_head" / "builtin_head.pt"


#: the MagFace-loss head shipped before it, kept for comparison (``--head``; ``tools/train_builtin_head.py``)
MAGFACE_HEAD = BUILTIN_HEAD.with_name("builtin_magface_head.pt")
