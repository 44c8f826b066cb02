"""ISO/IEC 29794-5 components (qmag_core.quality.components): the scalar mappings pinned
to the reference implementation's published parameters, and each assessed component
checked against a ground truth built on real photos (known rotations, rescaling,
mirroring, darkening, shifts, a two-person photo)."""

import math

import numpy as np
import pytest
from conftest import FACES
from PIL import Image, ImageOps

from qmag_core.quality.components import COMPONENTS, assess_components, scalar
from qmag_core.vision.align import DLIB_150, FaceDetector, detect_and_align

PHOTOS = [FACES / f"img{k}.jpg" for k in (1, 2, 3, 4, 5, 6, 7, 9, 10, 11)]


@pytest.mark.parametrize(
    ("name", "native", "want"),
    [
        ("EyesOpen", 0.02, 50),  # 100·σ((x − 0.02) / 0.01)
        ("EyesOpen", 0.03, round(100 / (1 + math.exp(-1)))),
        ("MouthClosed", 0.2, 50),  # 100·(1 − σ((x − 0.2) / 0.06))
        ("InterEyeDistance", 70, 50),  # 100·σ((x − 70) / 20)
        ("InterEyeDistance", 90, round(100 / (1 + math.exp(-1)))),
        ("HeadSize", 0.45, 100),  # 200·(1 − σ(|x − 0.45| / 0.05))
        ("LeftwardCrop", 0.9, 50),
        ("MarginAbove", 1.4, 50),
        ("MarginBelow", 1.8, 50),
        ("HeadPoseRoll", 30.0, 75),  # 100·cos²
        ("HeadPoseYaw", -60.0, 25),
        ("LuminanceVariance", 1 / 60, 100),  # 100·sin(π·60v / (60v + 1)) peaks at 60v = 1
        ("OverExposurePrevention", 0.0, 100),  # min(100, 1 / (x + 0.01))
        ("OverExposurePrevention", 0.04, 20),
        ("UnderExposurePrevention", 0.0, 100),  # 120·(0.832 − σ((x − 0.92) / 0.05)), clipped
        ("DynamicRange", 8.0, 100),  # 12.5·H
        ("SingleFacePresent", 0.25, 75),  # 100·(1 − f)
    ],
)
def test_scalar_mappings_follow_the_published_parameters(name, native, want):
    assert scalar(name, native) == want
    assert scalar(name, None) is None


@pytest.fixture(scope="module")
def det():
    from qmag_core.encoders import load_encoder

    return FaceDetector.for_encoder(load_encoder("builtin", runtime="fast"))


def _assess(img, det):
    a = detect_and_align(np.asarray(img.convert("RGB")), det, DLIB_150, face="best")
    return a, assess_components(a)


@pytest.fixture(scope="module")
def single(det):
    out = []
    for p in PHOTOS:
        img = Image.open(p).convert("RGB")
        a, c = _assess(img, det)
        if a.n_faces == 1:
            out.append((img, c))
    assert len(out) >= 6
    return out


@pytest.mark.slow
def test_roll_follows_known_rotations_and_flips_in_a_mirror(single, det):
    errs, mirrors = [], []
    for img, c in single:
        roll0 = c["HeadPoseRoll"].native
        for theta in (-12, -6, 6, 12):  # PIL turns counter-clockwise: the eye line's angle drops by θ
            r = _assess(img.rotate(theta, resample=Image.BICUBIC, expand=True), det)[1]["HeadPoseRoll"].native
            errs.append(abs(r - (roll0 - theta)))
        mirrors.append(abs(_assess(ImageOps.mirror(img), det)[1]["HeadPoseRoll"].native + roll0))
    assert np.mean(errs) < 1.5, np.round(errs, 2)
    assert np.median(mirrors) < 1.0, np.round(mirrors, 2)


@pytest.mark.slow
def test_eye_distance_scales_with_the_photo_and_crops_follow_shifts(single, det):
    ratios, lefts = [], []
    for img, c in single:
        half = img.resize((img.width // 2, img.height // 2), Image.LANCZOS)
        ratios.append(_assess(half, det)[1]["InterEyeDistance"].native / c["InterEyeDistance"].native)
        shifted = img.crop((img.width // 4, 0, img.width, img.height))  # the left quarter cut away
        lefts.append(_assess(shifted, det)[1]["LeftwardCrop"].native < c["LeftwardCrop"].native)
    assert np.all(np.abs(np.asarray(ratios) - 0.5) < 0.5 * 0.03), np.round(ratios, 4)
    assert np.mean(lefts) == 1.0


@pytest.mark.slow
def test_underexposure_lowers_the_luminance_components(single, det):
    """The photo at a quarter of its brightness: mean luminance and its scalar drop, and
    more of the face is underexposed.  (A mild darkening can raise the LuminanceMean
    scalar of a bright photo: the reference's mapping prefers mid-grey faces.)"""
    lower, scal, under = [], [], []
    for img, c in single:
        dark = Image.fromarray((np.asarray(img, np.float64) * 0.25).astype(np.uint8))
        d = _assess(dark, det)[1]
        lower.append(d["LuminanceMean"].native < c["LuminanceMean"].native)
        scal.append(d["LuminanceMean"].scalar < c["LuminanceMean"].scalar)
        under.append(d["UnderExposurePrevention"].native > c["UnderExposurePrevention"].native)
    assert all(lower) and all(under) and np.mean(scal) >= 0.85


@pytest.mark.slow
def test_a_second_face_lowers_single_face_present_and_the_rest_is_not_guessed(single, det):
    _, couple = _assess(Image.open(FACES / "couple.jpg"), det)
    assert couple["SingleFacePresent"].scalar < 50
    assert all(c["SingleFacePresent"].scalar == 100 for _, c in single)
    for name in ("EyesOpen", "MouthClosed", "HeadPoseYaw", "HeadPosePitch", "HeadSize", "MarginAbove"):
        assert couple[name].native is None and couple[name].scalar is None  # not assessed: no guess
    assert set(couple) == set(COMPONENTS)
