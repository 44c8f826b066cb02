"""Face detection (MTCNN: facenet-pytorch, or its ONNX twin without torch) and 5-point
similarity alignment.

Coordinates follow the OpenCV/dlib convention: integer coordinates are pixel centres;
landmarks are (x, y) in the order left eye, right eye (as seen in the image), nose tip,
left and right mouth corner.

Templates:

* ``ARCFACE_112``: the ArcFace/MagFace 112×112 template (InsightFace).
* ``DLIB_150``: dlib's 150×150 face chip with padding 0.25 (the input of dlib's and
  face-api.js's face recognition network).  Derived from dlib's 68-point mean face
  shape: eye centres = mean of iBUG points 36–41 and 42–47, nose = point 30, mouth
  corners = points 48 and 54, each mapped by ``(0.25 + m) / 1.5 · 150``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..errors import QMagError
from .images import ImageError, array_to_rgb, load_image, source_name  # noqa: F401

__all__ = [
    "CropSpec",
    "ARCFACE_112",
    "DLIB_150",
    "crop_spec",
    "ImageError",
    "NoFaceError",
    "Face",
    "AlignedFace",
    "load_image",
    "similarity_transform",
    "warp_affine",
    "align",
    "FaceDetector",
    "detect_and_align",
    "detect_and_align_batch",
    "realign_aligned",
    "FACE_RULES",
    "choose_face",
    "DEFAULT_FACE_RULE",
]


@dataclass(frozen=True)
class CropSpec:
    """Output size (pixels, square) and 5-point template (5, 2) of an aligned crop."""

    name: str
    size: int
    template: np.ndarray = field(repr=False)


ARCFACE_112 = CropSpec(
    "arcface-112",
    112,
    np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]),
)
DLIB_150 = CropSpec(
    "dlib-150",
    150,
    np.array([[47.5492, 46.5990], [100.4761, 46.5990], [74.0127, 76.5625], [50.4149, 103.0233], [97.6104, 103.0233]]),
)


#: the templates by family; a crop of another size scales the family's template
CROP_FAMILIES = {"arcface": ARCFACE_112, "dlib": DLIB_150}


def crop_spec(name: str) -> CropSpec:
    """The crop spec named ``FAMILY-SIZE`` (``arcface-112``, ``dlib-150``, ``arcface-160``
    …): the family's 5-point template scaled to SIZE pixels (16 to 1024)."""
    family, _, size = str(name).rpartition("-")
    if family not in CROP_FAMILIES or not size.isdigit() or not 16 <= int(size) <= 1024:
        raise QMagError(f"crop must be arcface-N or dlib-N (N = 16 to 1024 px), got {name!r}")
    base, n = CROP_FAMILIES[family], int(size)
    return base if n == base.size else CropSpec(f"{family}-{n}", n, base.template * (n / base.size))


class NoFaceError(QMagError):
    """No face was detected in an image."""


def similarity_transform(src: npt.ArrayLike, dst: npt.ArrayLike) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection)
    mapping ``src`` points onto ``dst`` (Umeyama 1991).  Returns a (2, 3) matrix M
    with ``dst ≈ M @ [x, y, 1]``."""
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if s.shape != d.shape or s.ndim != 2 or s.shape[1] != 2 or s.shape[0] < 2:
        raise QMagError(f"need matching (n ≥ 2, 2) point sets, got {s.shape} and {d.shape}")
    ms, md = s.mean(0), d.mean(0)
    sc, dc = s - ms, d - md
    cov = dc.T @ sc / s.shape[0]
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1
    r = u @ e @ vt
    var = (sc**2).sum() / s.shape[0]
    scale = (sig * np.diag(e)).sum() / var if var > 0 else 1.0
    t = md - scale * r @ ms
    return np.hstack([scale * r, t[:, None]])


def warp_affine(image: np.ndarray, M: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Warp RGB uint8 ``image`` by the forward affine ``M`` (2, 3) into ``size`` pixels
    (bilinear; outside the source is black).  Integer coordinates are pixel centres."""
    from PIL import Image

    w, h = (size, size) if isinstance(size, int) else size
    A = np.vstack([M, [0, 0, 1]])
    inv = np.linalg.inv(A)
    # PIL samples output pixel centres at (x+0.5, y+0.5) and reads input with centres
    # at +0.5: in_pil = inv·(out_pil − 0.5) + 0.5
    a, b, c = inv[0]
    d, e, f = inv[1]
    c2 = c + 0.5 - 0.5 * (a + b)
    f2 = f + 0.5 - 0.5 * (d + e)
    out = Image.fromarray(image).transform((w, h), Image.AFFINE, (a, b, c2, d, e, f2), resample=Image.BILINEAR)
    return np.asarray(out)


@dataclass(frozen=True)
class Face:
    """A detected face: box (x1, y1, x2, y2), detector score and 5 landmarks (5, 2)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


@dataclass(frozen=True)
class AlignedFace:
    """An aligned crop (size, size, 3) uint8 RGB with the transform that made it.

    ``face`` is the detection used (None for already-aligned inputs); ``n_faces`` how
    many faces the detector found.
    """

    crop: np.ndarray
    spec: CropSpec
    matrix: np.ndarray
    face: Face | None = None
    n_faces: int = 1
    source_size: tuple[int, int] = (0, 0)
    #: every detected face (largest first) and the index of the one aligned
    faces: tuple = ()
    face_index: int = 0


def align(image: np.ndarray, landmarks: npt.ArrayLike, spec: CropSpec = ARCFACE_112) -> AlignedFace:
    """Warp ``image`` so that ``landmarks`` (5, 2) land on ``spec.template``."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2):
        raise QMagError(f"landmarks must have shape (5, 2), got {lm.shape}")
    M = similarity_transform(lm, spec.template)
    return AlignedFace(warp_affine(image, M, spec.size), spec, M, None, 1, (image.shape[1], image.shape[0]))


def realign_aligned(crop: np.ndarray, src: CropSpec, dst: CropSpec) -> AlignedFace:
    """Map an already-aligned crop made for ``src`` onto ``dst``'s template (no
    detection).  Parts of ``dst`` outside the source crop become black."""
    if crop.shape[0] != crop.shape[1]:
        raise QMagError(f"an aligned input must be square, got {crop.shape[1]}×{crop.shape[0]}")
    tpl = src.template * (crop.shape[0] / src.size)
    if src.name == dst.name and crop.shape[0] == dst.size:
        return AlignedFace(crop, dst, np.hstack([np.eye(2), np.zeros((2, 1))]), None, 1, crop.shape[1::-1])
    M = similarity_transform(tpl, dst.template)
    return AlignedFace(warp_affine(crop, M, dst.size), dst, M, None, 1, crop.shape[1::-1])


# ------------------------------------------------------------------------ detection
class FaceDetector:
    """MTCNN returning 5-point faces.

    ``runtime``: ``torch`` (facenet-pytorch, weights shipped in its wheel), ``onnx`` (the
    same networks exported to ONNX, pyramid and NMS in numpy: :mod:`qmag_core.vision.mtcnn_onnx`,
    same boxes within 1e-4 px on real photos, no torch) or ``auto`` (torch when installed).
    Large images are downscaled so their longer side is at most ``max_side`` for
    detection; boxes and landmarks are mapped back to the original pixels.
    """

    def __init__(
        self,
        *,
        device: str = "cpu",
        max_side: int = 1024,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        runtime: str = "auto",
    ):
        from .runtime import resolve_runtime

        self.device = device
        self.max_side = max_side
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.runtime = resolve_runtime(runtime)
        self._mtcnn = None

    @classmethod
    def for_encoder(cls, encoder, **kw) -> FaceDetector:
        """The detector that runs where ``encoder`` runs (its device; ONNX for an ONNX encoder)."""
        return cls(device=encoder.device, runtime=encoder.runtime, **kw)

    @property
    def mtcnn(self):
        if self._mtcnn is None and self.runtime == "onnx":
            from .mtcnn_onnx import OnnxMTCNN

            self._mtcnn = OnnxMTCNN(min_face_size=self.min_face_size, thresholds=self.thresholds)
        if self._mtcnn is None:
            import torch
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(
                keep_all=True,
                device=torch.device(self.device),
                min_face_size=self.min_face_size,
                thresholds=list(self.thresholds),
                post_process=False,
            )
        return self._mtcnn

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = image.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        if s < 1.0:
            from PIL import Image

            small = Image.fromarray(image).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
            return np.asarray(small), s
        return image, 1.0

    def too_small(self, image: np.ndarray) -> bool:
        """True when the image is smaller than the smallest face MTCNN can find."""
        return min(image.shape[:2]) < self.min_face_size

    def why_no_face(self, image: np.ndarray) -> str:
        """The message for an image in which no face was found."""
        h, w = image.shape[:2]
        if self.too_small(image):
            return (
                f"image is only {w}×{h} px; faces smaller than {self.min_face_size} px cannot be detected "
                "(use --aligned for ready-made crops)"
            )
        return "no face detected"

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces per image (largest first).  Same-size images run as one MTCNN batch (torch;
        the ONNX runtime runs the images in parallel threads); images below the minimum
        face size get no faces (see :meth:`why_no_face`)."""
        prepared = [self._prepare(im) for im in images]
        out: list[list[Face]] = [[] for _ in images]
        groups: dict[tuple, list[int]] = {}
        for k, (im, _) in enumerate(prepared):
            if self.too_small(im) or self.too_small(images[k]):
                continue
            # facenet-pytorch batches equal sizes only; the ONNX twin takes any list
            groups.setdefault(im.shape if self.runtime == "torch" else (), []).append(k)
        for idxs in groups.values():
            batch = [prepared[k][0] for k in idxs]
            batch = np.stack(batch) if self.runtime == "torch" else batch
            try:
                with self._no_grad():
                    boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
            except RuntimeError:
                if len(idxs) == 1:  # MTCNN has no answer for this image: no face
                    continue
                for k in idxs:  # retry one by one so one bad image cannot sink the batch
                    out[k] = self.detect_batch([images[k]])[0]
                continue
            for j, k in enumerate(idxs):
                s = prepared[k][1]
                out[k] = self._faces(boxes[j], probs[j], points[j], s)
        return out

    def _no_grad(self):
        if self.runtime != "torch":
            from contextlib import nullcontext

            return nullcontext()
        import torch

        return torch.inference_mode()

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detect_batch([image])[0]

    @staticmethod
    def _faces(boxes, probs, points, scale) -> list[Face]:
        if boxes is None or len(boxes) == 0 or points is None:
            return []
        # facenet-pytorch under numpy 2 may return dtype=object arrays
        b = np.asarray(np.stack([np.asarray(x, dtype=np.float64) for x in boxes]), dtype=np.float64) / scale
        p = np.asarray([float(x) for x in probs], dtype=np.float64)
        lm = np.asarray(np.stack([np.asarray(x, dtype=np.float64) for x in points]), dtype=np.float64) / scale
        # pixel-centre convention: MTCNN works in continuous coordinates of the array
        faces = [Face(b[i], float(p[i]), lm[i].reshape(5, 2)) for i in range(b.shape[0])]
        return sorted(faces, key=lambda f: -f.area)


#: rules that pick the subject of a photo with several faces (see :func:`choose_face`)
FACE_RULES = ("best", "largest", "center")
#: weight of the squared centre offset against the box area in the ``best`` rule
BEST_PENALTY = 2.0
#: the rule user-facing commands use unless told otherwise
DEFAULT_FACE_RULE = "best"


def choose_face(
    faces: Sequence[Face], image_size: tuple[int, int], rule: str = "best", *, penalty: float = BEST_PENALTY
) -> int:
    """Index (into ``faces``) of the subject of a photo of ``image_size`` (width, height).

    * ``largest``: the largest box.
    * ``center``: the box whose centre is nearest the image centre.
    * ``best``: the largest ``area − penalty · offset²`` (px², offset = box centre to
      image centre), the rule of the common MTCNN dataset-alignment scripts: a large face
      near the centre wins, a larger bystander at the edge does not.  Both terms scale
      with the square of the image size, so the rule does not depend on resolution.
    Ties go to the earlier (larger) face.
    """
    if not faces:
        raise NoFaceError("no face to choose from")
    if rule not in FACE_RULES:
        raise QMagError(f"face rule must be one of {', '.join(FACE_RULES)}, got {rule!r}")
    b = np.stack([np.asarray(f.box, np.float64) for f in faces])
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    centre = np.c_[(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2]
    off2 = ((centre - np.array([image_size[0] / 2, image_size[1] / 2])) ** 2).sum(1)
    score = {"largest": area, "center": -off2, "best": area - penalty * off2}[rule]
    return int(np.argmax(score))


def detect_and_align(
    image,
    detector: FaceDetector | None,
    spec: CropSpec = ARCFACE_112,
    *,
    aligned: bool = False,
    aligned_spec: CropSpec = ARCFACE_112,
    faces: list[Face] | None = None,
    name: str | None = None,
    face: str | int = "largest",
) -> AlignedFace:
    """Load, detect and align one image; ``face`` picks the subject: a rule of
    :func:`choose_face` or an index into the detections (largest first).

    ``aligned=True`` declares the input an already aligned ``aligned_spec`` crop (e.g.
    112×112 ArcFace crops) and skips detection; it never happens silently.  Raises
    :class:`NoFaceError` / :class:`ImageError` with the image's name.
    """
    label = name or source_name(image)
    img = load_image(image, name=label) if not isinstance(image, np.ndarray) else array_to_rgb(image, label)
    if aligned:
        return realign_aligned(img, aligned_spec, spec)
    if faces is None:
        if detector is None:
            raise QMagError("a FaceDetector is needed unless aligned=True")
        faces = detector.detect(img)
    if not faces:
        why = detector.why_no_face(img) if detector is not None else "no face detected"
        raise NoFaceError(f"{label}: {why}")
    if isinstance(face, (int, np.integer)) and not isinstance(face, bool):
        if not 0 <= int(face) < len(faces):
            raise QMagError(f"{label}: face {face} asked for, but {len(faces)} were detected")
        k = int(face)
    else:
        k = choose_face(faces, (img.shape[1], img.shape[0]), str(face))
    f = faces[k]
    a = align(img, f.landmarks, spec)
    return AlignedFace(a.crop, spec, a.matrix, f, len(faces), (img.shape[1], img.shape[0]), tuple(faces), k)


def detect_and_align_batch(
    images: Sequence[np.ndarray], detector: FaceDetector, spec: CropSpec = ARCFACE_112, *, face: str = DEFAULT_FACE_RULE
) -> list[AlignedFace | None]:
    """:func:`detect_and_align` for decoded RGB photos, detected as one MTCNN batch:
    per photo its subject (``face`` rule) aligned onto ``spec``, or None where no face
    was found (:meth:`FaceDetector.why_no_face` says why).  MTCNN's results depend on the
    batch, so callers that must agree pass the same batches."""
    faces = detector.detect_batch(images) if len(images) else []
    return [
        detect_and_align(img, None, spec, faces=fs, name=f"photo {k}", face=face) if fs else None
        for k, (img, fs) in enumerate(zip(images, faces, strict=True))
    ]
