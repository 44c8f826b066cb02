"""The 468-point face mesh (qmag_core.vision.face_mesh): the shipped model is the pinned
one, its points land on the face, follow known rotations and mirror with the photo."""

import hashlib
import math
from importlib import resources

import numpy as np
import pytest
from conftest import FACES
from PIL import Image

from qmag_core.vision.align import FaceDetector, detect_and_align
from qmag_core.vision.face_mesh import IRIS_SHA256, LID_PAIRS, MODEL_SHA256, POINTS, eye_contours, face_mesh, mesh_roi
from qmag_core.vision.head_pose import mirror_index, reference_shape


@pytest.fixture(scope="module")
def det():
    return FaceDetector(runtime="onnx")


def _mesh(x, det):
    a = detect_and_align(x, det, face="best")
    return a, face_mesh(x, a.face.landmarks)


def test_the_shipped_models_are_the_pinned_mediapipe_files():
    folder = resources.files("qmag_core") / "assets" / "face_mesh"
    assert hashlib.sha256((folder / "face_landmark.tflite").read_bytes()).hexdigest() == MODEL_SHA256
    assert hashlib.sha256((folder / "iris_landmark.tflite").read_bytes()).hexdigest() == IRIS_SHA256
    lic = (resources.files("qmag_core") / "assets" / "face_mesh" / "LICENSE-mediapipe").read_text()
    assert "Apache License" in lic


def test_the_box_maps_its_centre_to_the_crop_centre_and_levels_the_angle():
    M = mesh_roi((100.0, 50.0), 96.0, math.radians(30))
    assert np.allclose(M @ [100, 50, 1], [96, 96])
    a, b = M @ [100, 50, 1], M @ [100 + math.cos(math.radians(30)) * 10, 50 + math.sin(math.radians(30)) * 10, 1]
    assert abs(a[1] - b[1]) < 1e-9 and b[0] - a[0] == pytest.approx(20.0)  # levelled, scaled 192 / 96


def test_points_land_inside_the_face_and_eyes_near_the_detector_eyes(det):
    x = np.asarray(Image.open(FACES / "img1.jpg").convert("RGB"))
    a, m = _mesh(x, det)
    x1, y1, x2, y2 = a.face.box
    w = x2 - x1
    inside = (m.points[:, 0] > x1 - 0.2 * w) & (m.points[:, 0] < x2 + 0.2 * w)
    assert inside.mean() > 0.98 and m.presence > 0.9
    eyes = m.eye_centres()
    ied = float(np.hypot(*(a.face.landmarks[1] - a.face.landmarks[0])))
    assert np.abs(eyes - a.face.landmarks[:2]).max() < 0.15 * ied
    assert m.xy(POINTS["chin"])[1] > m.xy(POINTS["nose_tip"])[1] > eyes[:, 1].max()  # chin below nose below eyes


@pytest.mark.slow
def test_mesh_follows_rotations_and_mirrors(det):
    errs, mir = [], []
    twin = mirror_index(reference_shape())
    for k in (1, 2, 3, 4, 5):
        img = Image.open(FACES / f"img{k}.jpg").convert("RGB")
        _, m0 = _mesh(np.asarray(img), det)
        e0 = m0.eye_centres()
        a0 = math.degrees(math.atan2(*(e0[1] - e0[0])[::-1]))
        for th in (-10, 10):
            _, m = _mesh(np.asarray(img.rotate(th, resample=Image.BICUBIC, expand=True)), det)
            e = m.eye_centres()
            errs.append(abs(math.degrees(math.atan2(*(e[1] - e[0])[::-1])) - (a0 - th)))
        _, mm = _mesh(np.ascontiguousarray(np.asarray(img)[:, ::-1]), det)
        back = mm.points[twin, 0]
        ied = float(np.hypot(*(e0[1] - e0[0])))
        mir.append(np.median(np.abs((img.width - 1 - back) - m0.points[:, 0])) / ied)
    assert np.mean(errs) < 1.0, np.round(errs, 2)
    assert np.median(mir) < 0.03, np.round(mir, 4)  # each point comes back to its twin within 3% of the eye distance


def test_eye_contours_sit_on_the_mesh_eyes_with_the_upper_lid_above(det):
    x = np.asarray(Image.open(FACES / "img2.jpg").convert("RGB"))
    _, m = _mesh(x, det)
    e = eye_contours(x, m)
    ied = float(np.hypot(*(m.eye_centres()[1] - m.eye_centres()[0])))
    corners = m.points[[POINTS["eye_l_outer"], POINTS["eye_l_inner"], POINTS["eye_r_outer"], POINTS["eye_r_inner"]], :2]
    got = np.stack([e[0, 0], e[0, 8], e[1, 0], e[1, 8]])  # contour points 0 and 8 are the corners
    assert np.abs(got - corners).max() < 0.1 * ied
    for eye in e:
        assert all(eye[u, 1] < eye[d, 1] for u, d in LID_PAIRS)  # upper lid above the lower (y grows down)


def test_eye_contours_mirror_with_the_photo(det):
    """Ground truth: a mirrored photo's eyes are the photo's eyes swapped and reflected.
    Each contour averages the iris model on the eye and on its mirror image (twins
    matched), so both eyes' points come back within 2% of the eye distance."""
    errs = []
    for k in (1, 2, 3, 4):
        x = np.asarray(Image.open(FACES / f"img{k}.jpg").convert("RGB"))
        _, m = _mesh(x, det)
        xm = np.ascontiguousarray(x[:, ::-1])
        back = eye_contours(xm, _mesh(xm, det)[1])[::-1].copy()  # image-left eye ↔ image-right eye
        back[..., 0] = x.shape[1] - back[..., 0]
        ied = float(np.hypot(*(m.eye_centres()[1] - m.eye_centres()[0])))
        errs.append(np.abs(back - eye_contours(x, m)).max() / ied)
    assert max(errs) < 0.02, np.round(errs, 4)


def test_closing_the_eyes_by_painting_skin_over_them_closes_the_lids(det):
    """Ground truth: lids painted over with the skin colour below the eye leave no eye
    opening; the iris model's lids come together."""
    from PIL import ImageDraw

    from qmag_core.vision.face_mesh import POINTS as P

    img = Image.open(FACES / "img2.jpg").convert("RGB")
    x = np.asarray(img)
    _, m = _mesh(x, det)
    before = eye_contours(x, m)
    draw = ImageDraw.Draw(img)
    for ids in (P["eye_l"], P["eye_r"]):
        poly = m.points[list(ids), :2]
        c = poly.mean(0)
        skin = tuple(int(v) for v in x[int(c[1] + 0.6 * np.ptp(poly[:, 0])), int(c[0])])
        draw.polygon([tuple(p) for p in (c + 1.25 * (poly - c))], fill=skin)
        draw.line([tuple(poly[0]), tuple(poly[8])], fill=tuple(max(0, v - 60) for v in skin), width=2)
    y = np.asarray(img)
    after = eye_contours(y, _mesh(y, det)[1])

    def opening(e):
        return min(max(np.hypot(*(c[u] - c[d])) for u, d in LID_PAIRS) for c in e)

    assert opening(after) < 0.5 * opening(before)


def test_an_opencv_without_tflite_support_gets_one_line_naming_the_fix(monkeypatch, det):
    """OpenCV 4 lacks (this model's) TFLite reader: the check's error says which version
    is needed instead of a traceback, and the photo's report carries it."""
    import cv2

    from qmag_core.errors import QMagError
    from qmag_core.vision import face_mesh as fm

    def old_opencv(path):
        raise cv2.error("unsupported layer")

    fm._net.cache_clear()
    monkeypatch.setattr(cv2.dnn, "readNetFromTFLite", old_opencv)
    x = np.asarray(Image.open(FACES / "img1.jpg").convert("RGB"))
    a = detect_and_align(x, det, face="best")
    try:
        with pytest.raises(QMagError, match=r"needs OpenCV 5 or later .*opencv-python-headless>=5"):
            face_mesh(x, a.face.landmarks)
    finally:
        fm._net.cache_clear()
