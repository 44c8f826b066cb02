"""Reading images for face work: any path, bytes, file object, PIL image or array to
RGB uint8 (H, W, 3), with size caps checked from the header, EXIF orientation applied,
and large photos downscaled once while decoding (JPEGs in the DCT domain)."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import QMagError
from ..io.common import IMAGE_EXTENSIONS
from ..limits import limit

__all__ = ["ImageError", "load_image"]

# Bounds (qmag_core.limits, read when used): images above QMAG_MAX_PIXELS are refused
# (decompression bombs, absurd sizes); a longer side above QMAG_WORK_SIDE is downscaled
# once while decoding (JPEG decodes at 1/2, 1/4 or 1/8 scale directly) for detection,
# alignment and display; formats that cannot decode at reduced scale are refused above
# QMAG_MAX_FULL_DECODE_PIXELS.


class ImageError(QMagError):
    """An input file or buffer is not a usable image (empty, corrupt, too large …)."""


def source_name(src) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.path.basename(str(src))
    return getattr(src, "name", None) or "image"


def load_image(
    src, *, max_pixels: int | None = None, name: str | None = None, max_side: int | str | None = "auto"
) -> np.ndarray:
    """Decode an image into RGB uint8 (H, W, 3).

    Accepts a path, bytes, a binary file object, a PIL image or a numpy array
    (H, W), (H, W, 3) or (H, W, 4).  JPEG/PNG/WebP/BMP/PGM/TIFF, greyscale, palette,
    RGBA (composited on white), CMYK and 16-bit images are converted; EXIF orientation
    is applied.  The pixel count is checked from the header before decoding; a photo
    whose longer side exceeds ``max_side`` is downscaled once (JPEGs while decoding),
    so memory stays bounded.  Defaults: ``max_pixels`` = ``QMAG_MAX_PIXELS``,
    ``max_side="auto"`` = ``QMAG_WORK_SIDE`` (None: full size).  Raises
    :class:`ImageError` naming the problem.
    """
    from PIL import Image

    label = name or source_name(src)
    max_pixels = limit("QMAG_MAX_PIXELS") if max_pixels is None else max_pixels
    max_side = limit("QMAG_WORK_SIDE") if max_side == "auto" else max_side
    if isinstance(src, np.ndarray):
        return array_to_rgb(src, label)
    img = src if isinstance(src, Image.Image) else _open_image(_read_image_bytes(src, label), label)
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(
            f"{label}: image is {w}×{h} = {w * h / 1e6:.1f} megapixels, above the limit of "
            f"{max_pixels:,} pixels (set QMAG_MAX_PIXELS to change it)"
        )
    if w == 0 or h == 0:
        raise ImageError(f"{label}: image has zero size")
    big = max_side is not None and max(w, h) > max_side
    draft = big and getattr(img, "format", None) == "JPEG"
    full_cap = limit("QMAG_MAX_FULL_DECODE_PIXELS")
    if not draft and w * h > full_cap and not isinstance(src, Image.Image):
        raise ImageError(
            f"{label}: decoding this {getattr(img, 'format', None) or ''} image of {w}×{h} = "
            f"{w * h / 1e6:.0f} megapixels at full size is refused (limit "
            f"{full_cap / 1e6:.0f} megapixels; large JPEGs are decoded at reduced size)"
        )
    return _pil_to_rgb(_decode(img, label, max_side if big else None, draft), label)


def _read_image_bytes(src, label: str) -> bytes:
    """The encoded bytes of a path, bytes-like or binary file object (size-capped)."""
    from ..safeio import read_bytes

    cap = limit("QMAG_MAX_IMAGE_BYTES")

    if isinstance(src, (str, os.PathLike)):
        p = Path(src)
        if not p.exists():
            raise ImageError(f"{label}: file not found")
        try:
            data = read_bytes(p, max_bytes=cap, what="image file", name=label)
        except QMagError as e:
            raise ImageError(str(e)) from None
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif hasattr(src, "read"):
        data = src.read(cap + 1)
        if len(data) > cap:
            raise ImageError(f"{label}: image file above the limit of {cap:,} bytes (QMAG_MAX_IMAGE_BYTES)")
    else:
        raise ImageError(f"{label}: unsupported input type {type(src).__name__}")
    if len(data) == 0:
        raise ImageError(f"{label}: empty file")
    return data


def _open_image(data: bytes, label: str):
    """A lazily decoded PIL image of ``data`` (header read, bomb guard on)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label}: image is too large (decompression-bomb guard)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image file (unrecognised format)") from None
    except OSError as e:
        raise ImageError(f"{label}: cannot read image ({e})") from None


def _decode(img, label: str, max_side: int | None, draft: bool):
    """Decode, downscaled to ``max_side`` when given (JPEG: in the DCT domain), EXIF-rotated."""
    from PIL import Image, ImageOps

    w, h = img.size
    try:
        if draft:
            s = max_side / max(w, h)
            img.draft("RGB", (max(1, int(w * s)), max(1, int(h * s))))  # DCT-domain downscale
        img.load()
        if max_side is not None and max(img.size) > max_side:
            s = max_side / max(img.size)
            img = img.resize(
                (max(1, round(img.size[0] * s)), max(1, round(img.size[1] * s))), Image.LANCZOS, reducing_gap=2.0
            )
        return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{label}: corrupt or truncated image ({e})") from None


def _pil_to_rgb(img, label: str) -> np.ndarray:
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img).astype(np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        a = np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode == "F":
        a = np.clip(np.asarray(img), 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA") or (mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def array_to_rgb(a: np.ndarray, label: str) -> np.ndarray:
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ImageError(f"{label}: expected an array of shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float64) / (255.0 if a.dtype == np.uint8 else 1.0)
        rgb = a[:, :, :3].astype(np.float64)
        white = 255.0 if a.dtype == np.uint8 else 1.0
        a = rgb * alpha + white * (1 - alpha)
    if a.dtype == np.uint16:
        a = a.astype(np.float64) / 257.0
    elif np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
        a = a * 255.0
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------ geometry


def blur(img: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Gaussian blur of an (H, W[, C]) array, per channel, float32: the same numbers as
    ``scipy.ndimage.gaussian_filter(a, sigma, mode="nearest")`` (kernel radius
    ⌊4σ + ½⌋, rows then columns in float64, rounded to float32 between the passes),
    in OpenCV, which spares a process the 0.3 s of importing scipy.ndimage."""
    import cv2

    a = np.asarray(img, dtype=np.float32)
    if not sigma > 0:
        return a.copy()
    r = int(4.0 * float(sigma) + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * x * x / (float(sigma) ** 2))
    k /= k.sum()
    one = np.ones(1)

    def plane(p: np.ndarray) -> np.ndarray:
        t = cv2.sepFilter2D(p.astype(np.float64), cv2.CV_64F, one, k, borderType=cv2.BORDER_REPLICATE)
        t = t.astype(np.float32).astype(np.float64)
        return cv2.sepFilter2D(t, cv2.CV_64F, k, one, borderType=cv2.BORDER_REPLICATE).astype(np.float32)

    if a.ndim == 3:
        return np.stack([plane(a[..., c]) for c in range(a.shape[2])], axis=-1)
    return plane(a)


def list_images(root: str | os.PathLike) -> list[str]:
    """Image files below ``root`` (recursive), as sorted paths relative to it."""
    root = Path(root)
    if not root.is_dir():
        raise QMagError(f"{root}: not a folder")
    out = [
        str(p.relative_to(root)).replace(os.sep, "/")
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(out)
