"""MTCNN without torch: facenet-pytorch's three networks as ONNX graphs, the image
pyramid, box generation, regression and NMS in numpy.

It reproduces ``facenet_pytorch.models.utils.detect_face`` (version 2.5.3) step by step,
so boxes and landmarks agree with :class:`facenet_pytorch.MTCNN` (tested within 0.5 px on
real photos):

1. pyramid: scales ``12/min_face · 0.709^k`` while the shorter side stays ≥ 12 px; each
   level is resized with PyTorch's ``area`` interpolation (= adaptive average pooling),
   here computed exactly from the integral image; pixels → ``(x − 127.5) / 128``;
2. P-Net on every level; cells with face probability ≥ t₁ become 12 × 12 boxes (stride 2);
   NMS 0.5 per level, 0.7 over all levels; box regression (× width without +1); squared;
3. R-Net on 24 × 24 area-resampled crops (box corners truncated to integers, clipped to
   the image); keep probability > t₂; NMS 0.7; regression (× width + 1); squared;
4. O-Net on 48 × 48 crops: probability > t₃, five landmarks, regression, then NMS 0.7
   with the "Min" overlap (intersection / smaller area).

Coordinates are facenet-pytorch's (continuous, in pixels of the array).  The graphs ship
in ``qmag_core/assets/onnx`` (exported from facenet-pytorch's MIT-licensed weights by
``tools/export_light_models.py``); this module needs numpy and onnxruntime only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import QMagError

__all__ = ["OnnxMTCNN", "MODEL_DIR", "area_resize", "nms"]

MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "onnx"
FACTOR = 0.709


def _integral(image: np.ndarray) -> np.ndarray:
    """Integral image (H+1, W+1, C) float64 of an (H, W, C) image: exact for uint8."""
    h, w, c = image.shape
    ii = np.zeros((h + 1, w + 1, c), np.float64)
    np.cumsum(np.cumsum(image, axis=0, dtype=np.float64), axis=1, out=ii[1:, 1:])
    return ii


def _windows(start: np.ndarray, length: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-pooling windows: for N spans (start, length) → ``out`` windows each,
    ``[start + ⌊i·L/out⌋, start + ⌈(i+1)·L/out⌉)``; arrays (N, out)."""
    i = np.arange(out)
    L = np.asarray(length, np.int64)[:, None]
    lo = (i * L) // out
    hi = ((i + 1) * L + out - 1) // out
    s = np.asarray(start, np.int64)[:, None]
    return s + lo, s + hi


def _area_from_integral(ii: np.ndarray, y0, x0, h, w, oh: int, ow: int) -> np.ndarray:
    """Area-resample N rectangles (top y0, left x0, size h × w) of the image behind the
    integral ``ii`` to (N, oh, ow, C) float32, as ``interpolate(mode="area")``."""
    ya, yb = _windows(y0, h, oh)
    xa, xb = _windows(x0, w, ow)
    s = (
        ii[yb[:, :, None], xb[:, None, :]]
        - ii[ya[:, :, None], xb[:, None, :]]
        - ii[yb[:, :, None], xa[:, None, :]]
        + ii[ya[:, :, None], xa[:, None, :]]
    )
    n = ((yb - ya)[:, :, None] * (xb - xa)[:, None, :]).astype(np.float64)
    return (s / n[..., None]).astype(np.float32)


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) image → (oh, ow, C) float32 by area averaging, as PyTorch's
    ``interpolate(..., mode="area")`` (adaptive average pooling)."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    h, w = img.shape[:2]
    return _area_from_integral(_integral(img), [0], [0], [h], [w], *size)[0]


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best score first.

    ``union``: torchvision's IoU (areas ``(x2 − x1)(y2 − y1)``), suppress IoU > threshold;
    ``min``: facenet-pytorch's ``nms_numpy`` "Min" (float32, areas with +1, intersection
    over the smaller area, suppress overlap > threshold), with its visiting order
    (``np.argsort`` of the scores, highest last): O-Net's probabilities saturate at 1.0,
    so which of several tied boxes survives is decided by that order."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if mode == "min":
        b = np.asarray(boxes, np.float32)
        one = np.float32(1)
        order = np.argsort(np.asarray(scores, np.float32))  # ascending; visited from the end
    else:
        b = np.asarray(boxes, np.float64)
        one = 0.0
        order = np.argsort(-np.asarray(scores, np.float64), kind="stable")[::-1]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = (x2 - x1 + one) * (y2 - y1 + one)
    keep = []
    while order.size:
        i, rest = order[-1], order[:-1]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one)
        inter = w * h
        if mode == "min":
            o = inter / np.minimum(area[i], area[rest])
        else:
            o = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        order = rest[o <= threshold]
    return np.asarray(keep, np.int64)


def _square(b: np.ndarray) -> np.ndarray:
    """facenet-pytorch's ``rerec``: boxes (N, ≥4) made square around their centre."""
    b = b.copy()
    h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
    side = np.maximum(w, h)
    b[:, 0] += w * 0.5 - side * 0.5
    b[:, 1] += h * 0.5 - side * 0.5
    b[:, 2] = b[:, 0] + side
    b[:, 3] = b[:, 1] + side
    return b


def _regress(b: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """facenet-pytorch's ``bbreg``: corners moved by ``reg`` × (side + 1)."""
    b = b.copy()
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    b[:, 0] += reg[:, 0] * w
    b[:, 1] += reg[:, 1] * h
    b[:, 2] += reg[:, 2] * w
    b[:, 3] += reg[:, 3] * h
    return b


def _crops(ii: np.ndarray, boxes: np.ndarray, w: int, h: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs (N, 3, size, size) for boxes (truncated to integers, clipped to
    the image, 1-based as facenet-pytorch's ``pad``) and the mask of non-empty boxes."""
    t = np.trunc(boxes[:, :4]).astype(np.int64)
    x = np.maximum(t[:, 0], 1)
    y = np.maximum(t[:, 1], 1)
    ex = np.minimum(t[:, 2], w)
    ey = np.minimum(t[:, 3], h)
    ok = (ey > y - 1) & (ex > x - 1)
    x, y, ex, ey = x[ok], y[ok], ex[ok], ey[ok]
    px = _area_from_integral(ii, y - 1, x - 1, ey - y + 1, ex - x + 1, size, size)
    return ((px - 127.5) * 0.0078125).transpose(0, 3, 1, 2).astype(np.float32), ok


class OnnxMTCNN:
    """MTCNN run by onnxruntime; :meth:`detect` mirrors ``facenet_pytorch.MTCNN.detect``
    (``keep_all=True``, largest face first)."""

    def __init__(
        self,
        *,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = FACTOR,
        model_dir: str | Path | None = None,
        providers: list[str] | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise QMagError("face detection without torch needs onnxruntime: pip install 'qmag-studio[onnx]'") from None
        d = Path(model_dir) if model_dir else MODEL_DIR
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # one thread per run: these networks are small, and a batch of photos runs its
        # images in parallel instead (see detect), each photo's result the same either way
        opts.intra_op_num_threads = 1
        self.sessions = {}
        for name in ("pnet", "rnet", "onet"):
            f = d / f"mtcnn_{name}.onnx"
            if not f.is_file():
                raise QMagError(f"{f} is missing; reinstall the package or run tools/export_light_models.py")
            self.sessions[name] = ort.InferenceSession(str(f), opts, providers=providers or ["CPUExecutionProvider"])
        self.min_face_size, self.thresholds, self.factor = min_face_size, tuple(thresholds), factor

    def _net(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        return self.sessions[name].run(None, {"input": x})

    def _stage1(self, ii: np.ndarray, h: int, w: int) -> np.ndarray:
        """Candidate boxes (N, 9): x1 y1 x2 y2 score dx1 dy1 dx2 dy2, after both NMS."""
        m = 12.0 / self.min_face_size
        scales, minl = [], min(h, w) * m
        scale = m
        while minl >= 12:
            scales.append(scale)
            scale *= self.factor
            minl *= self.factor
        found = []
        for s in scales:
            oh, ow = int(h * s + 1), int(w * s + 1)
            x = _area_from_integral(ii, [0], [0], [h], [w], oh, ow)
            x = ((x - 127.5) * 0.0078125).transpose(0, 3, 1, 2)
            reg, prob = self._net("pnet", np.ascontiguousarray(x, np.float32))
            p = prob[0, 1]
            yy, xx = np.nonzero(p >= self.thresholds[0])
            if yy.size == 0:
                continue
            s32 = np.float32(s)
            cell = np.stack([xx, yy], 1).astype(np.float32)
            q1 = np.floor((2 * cell + 1) / s32)
            q2 = np.floor((2 * cell + 12) / s32)
            b = np.concatenate([q1, q2, p[yy, xx][:, None], reg[0][:, yy, xx].T], 1)
            found.append(b[nms(b[:, :4], b[:, 4], 0.5)])
        if not found:
            return np.zeros((0, 9), np.float32)
        b = np.concatenate(found)
        b = b[nms(b[:, :4], b[:, 4], 0.7)]
        wh = np.tile(np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1), 2)  # regression × side (no +1)
        return _square(np.concatenate([b[:, :4] + b[:, 5:9] * wh, b[:, 4:5]], 1))

    def detect_one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes (N, 4), probabilities (N,), landmarks (N, 5, 2))`` of an RGB uint8
        image (H, W, 3), largest box first; N may be 0."""
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3:
            raise QMagError(f"MTCNN expects an RGB image (H, W, 3), got shape {img.shape}")
        h, w = img.shape[:2]
        empty = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        ii = _integral(img)
        boxes = self._stage1(ii, h, w)
        if len(boxes) == 0:
            return empty
        x, ok = _crops(ii, boxes, w, h, 24)
        boxes = boxes[ok]
        reg, prob = self._net("rnet", x)
        keep = prob[:, 1] > self.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], 1)
        reg = reg[keep]
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _square(_regress(boxes[pick], reg[pick]))
        if len(boxes) == 0:
            return empty
        x, ok = _crops(ii, boxes, w, h, 48)
        boxes = boxes[ok]
        reg, pts, prob = self._net("onet", x)
        keep = prob[:, 1] > self.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], 1)
        reg, pts = reg[keep], pts[keep]
        wi = boxes[:, 2] - boxes[:, 0] + 1
        hi = boxes[:, 3] - boxes[:, 1] + 1
        lx = wi[:, None] * pts[:, :5] + boxes[:, 0:1] - 1
        ly = hi[:, None] * pts[:, 5:10] + boxes[:, 1:2] - 1
        lm = np.stack([lx, ly], 2)
        boxes = _regress(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, "min")
        boxes, lm = boxes[pick], lm[pick]
        order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
        boxes, lm = boxes[order].astype(np.float64), lm[order].astype(np.float64)
        return boxes[:, :4], boxes[:, 4], lm

    def detect(self, images, landmarks: bool = True):
        """Batch form of :meth:`detect_one` shaped like ``facenet_pytorch.MTCNN.detect``:
        per image boxes / probabilities / landmarks, ``None`` where nothing was found.
        The images run in parallel threads (onnxruntime and numpy release the GIL); each
        image's result does not depend on the others (unlike facenet-pytorch's batches)."""
        import os
        from concurrent.futures import ThreadPoolExecutor

        imgs = list(images) if isinstance(images, (list, tuple)) or np.asarray(images).ndim == 4 else [images]
        workers = min(len(imgs), os.cpu_count() or 1)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                found = list(pool.map(lambda im: self.detect_one(np.asarray(im)), imgs))
        else:
            found = [self.detect_one(np.asarray(im)) for im in imgs]
        boxes, probs, points = [], [], []
        for b, p, lm in found:
            boxes.append(b if len(b) else None)
            probs.append(p if len(b) else [None])
            points.append(lm if len(b) else None)
        return boxes, probs, points
