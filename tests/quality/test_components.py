"""ISO/IEC 29794-5 components (qmag_core.quality.components): the scalar mappings pinned
to the reference implementation's published parameters, and each assessed component
checked against a ground truth built on real photos (known rotations, rescaling,
mirroring, padding, darkening, blur, JPEG, shifts, a two-person photo)."""

import math

import numpy as np
import pytest
from conftest import FACES
from PIL import Image, ImageOps

from qmag_core.quality.components import COMPONENTS, NOT_ASSESSED, assess_components, scalar
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
        ("IlluminationUniformity", 0.5, round(100 * 0.5**0.3)),  # 100·x^0.3
        ("NaturalColour", 0.0, 100),  # 200·(1 − σ(x / 10))
        ("NaturalColour", 10.0, round(200 * (1 - 1 / (1 + math.exp(-1))))),
        ("EyesVisible", 0.3, 70),  # 100·(1 − x)
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
    x = np.asarray(img.convert("RGB"))
    a = detect_and_align(x, det, DLIB_150, face="best")
    return a, assess_components(a, x)


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
def test_yaw_flips_in_a_mirror_and_pitch_does_not(single, det):
    yaws, pitches = [], []
    for img, c in single:
        m = _assess(ImageOps.mirror(img), det)[1]
        yaws.append(abs(m["HeadPoseYaw"].native + c["HeadPoseYaw"].native))
        pitches.append(abs(m["HeadPosePitch"].native - c["HeadPosePitch"].native))
    assert np.median(yaws) <= 3.0, np.round(yaws, 2)
    assert np.median(pitches) <= 3.0, np.round(pitches, 2)


@pytest.mark.slow
def test_yaw_sign_follows_the_nose(single, det):
    """Yaw > 0 when the nose points to the image's right: the nose tip then lies right of
    the midpoint between the face's outer edges (mesh points 234 and 454)."""
    from qmag_core.vision.face_mesh import face_mesh

    agree = []
    for img, c in single:
        if abs(c["HeadPoseYaw"].native) < 8:
            continue
        x = np.asarray(img)
        a = detect_and_align(x, det, DLIB_150, face="best")
        p = face_mesh(x, a.face.landmarks).points
        agree.append(np.sign(p[1, 0] - (p[234, 0] + p[454, 0]) / 2) == np.sign(c["HeadPoseYaw"].native))
    assert len(agree) >= 2 and all(agree)


@pytest.mark.slow
def test_padding_moves_margins_and_head_size_as_the_geometry_says(single, det):
    """Pad the top by half the photo's height: MarginAbove grows by pad / T, MarginBelow
    and the eye distance stay, HeadSize shrinks by H / (H + pad)."""
    errs = []
    for img, c in single[:4]:
        pad = img.height // 2
        big = Image.new("RGB", (img.width, img.height + pad), (128, 128, 128))
        big.paste(img, (0, pad))
        d = _assess(big, det)[1]
        T = c["HeadSize"].native * img.height
        errs += [
            d["MarginAbove"].native / (c["MarginAbove"].native + pad / T) - 1,
            d["MarginBelow"].native / c["MarginBelow"].native - 1,
            d["HeadSize"].native / (c["HeadSize"].native * img.height / (img.height + pad)) - 1,
        ]
    assert np.max(np.abs(errs)) < 0.03, np.round(errs, 4)


@pytest.mark.slow
def test_blur_lowers_sharpness_and_jpeg_raises_block_artefacts(single, det):
    import io

    from PIL import ImageFilter

    sharp, blocky = [], []
    for img, c in single:
        ied = c["InterEyeDistance"].native
        blur = img.filter(ImageFilter.GaussianBlur(radius=max(1.0, ied / 40)))
        sharp.append(_assess(blur, det)[1]["Sharpness"].scalar < c["Sharpness"].scalar)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=8)
        jpeg = Image.open(io.BytesIO(buf.getvalue()))
        blocky.append(_assess(jpeg, det)[1]["CompressionArtifacts"].native > c["CompressionArtifacts"].native)
    assert np.mean(sharp) >= 0.85 and np.mean(blocky) >= 0.85, (sharp, blocky)


@pytest.mark.slow
def test_a_second_face_lowers_single_face_present_and_the_rest_is_not_guessed(single, det):
    _, couple = _assess(Image.open(FACES / "couple.jpg"), det)
    assert couple["SingleFacePresent"].scalar < 50
    assert all(c["SingleFacePresent"].scalar == 100 for _, c in single)
    for name in NOT_ASSESSED:
        assert couple[name].native is None and couple[name].scalar is None  # not assessed: no guess
    assessed = set(COMPONENTS) - set(NOT_ASSESSED) - {"UnifiedQualityScore"}  # q comes from the check
    assert all(couple[n].native is not None for n in assessed), [n for n in assessed if couple[n].native is None]
    assert set(couple) == set(COMPONENTS)


def test_an_aligned_crop_gets_only_the_statistics(single, det):
    img = np.asarray(single[0][0])
    a = detect_and_align(img, det, DLIB_150, face="best")
    c = assess_components(a, None, quality=(1.5, 42.0))
    assert c["LuminanceMean"].native is not None and c["HeadPoseYaw"].native is None
    assert c["UnifiedQualityScore"].native == 1.5 and c["UnifiedQualityScore"].scalar == 42


def test_the_occlusion_rule_counts_highlights_as_skin_and_covers_as_not():
    """Constructed colours on a skin-coloured frame: skin mixed with white light (a
    specular highlight) stays skin; a blue cloth, a grey cap darker than the skin and a
    bright yellow band are occluders.  A pure white cover reads as a highlight (a limit
    of a colour rule, documented)."""
    from qmag_core.quality.face_measures import luminance, occluded

    skin_rgb = np.array([200.0, 150.0, 120.0])
    frame = np.zeros((10, 60, 3))
    patches = {
        "highlight": skin_rgb + 0.6 * (255 - skin_rgb),
        "strong highlight": skin_rgb + 0.9 * (255 - skin_rgb),
        "blue cloth": [40, 60, 160],
        "grey cap": [100, 100, 100],
        "yellow band": [255, 230, 60],
        "white cover": [250, 250, 250],
    }
    for k, rgb in enumerate(patches.values()):
        frame[:, 10 * k : 10 * k + 10] = rgb
    big = np.concatenate([np.tile(skin_rgb, (10, 10, 1)), frame], axis=1).astype(np.uint8)
    skin = np.zeros(big.shape[:2], bool)
    skin[:, :10] = True  # the reference patch: plain skin
    far = occluded(big, luminance(big), skin)
    got = {name: bool(far[:, 10 + 10 * k : 20 + 10 * k].all()) for k, name in enumerate(patches)}
    assert got == {
        "highlight": False,
        "strong highlight": False,
        "blue cloth": True,
        "grey cap": True,
        "yellow band": True,
        "white cover": False,
    }
    assert not far[:, :10].any()


def test_a_highlight_on_the_forehead_is_not_a_head_covering(single, det):
    """Ground truth on real photos: lightening a forehead disc towards white (a specular
    highlight) leaves NoHeadCoverings where it was; the same disc painted blue raises it."""
    from PIL import ImageDraw

    from qmag_core.vision.face_mesh import POINTS, face_mesh

    for img, c in single[:4]:
        x = np.asarray(img)
        a = detect_and_align(x, det, face="best")
        m = face_mesh(x, a.face.landmarks)
        brows = m.points[list(POINTS["brow_l"]) + list(POINTS["brow_r"]), :2].mean(0)
        centre = (brows + m.points[10, :2]) / 2
        r = 0.2 * float(np.hypot(*(m.eye_centres()[1] - m.eye_centres()[0])))
        disc = Image.new("L", img.size)
        ImageDraw.Draw(disc).ellipse([*(centre - r), *(centre + r)], fill=255)
        inside = np.asarray(disc) > 0
        lit, blue = x.copy(), x.copy()
        lit[inside] = (x[inside] + 0.85 * (255 - x[inside].astype(float))).astype(np.uint8)
        blue[inside] = (40, 60, 160)
        before = c["NoHeadCoverings"].native
        after_lit = _assess(Image.fromarray(lit), det)[1]["NoHeadCoverings"].native
        after_blue = _assess(Image.fromarray(blue), det)[1]["NoHeadCoverings"].native
        assert abs(after_lit - before) < 0.03, (before, after_lit)
        assert after_blue > before + 0.06, (before, after_blue)  # the disc covers about a tenth of the zone


def test_a_cap_crown_above_the_mesh_counts_and_the_photo_edge_does_not(single, det):
    """Ground truth on real photos: a blue crown painted only above the mesh's upper rim
    (the forehead under it left bare, as under a real cap's brim) raises NoHeadCoverings;
    cutting the photo off just above the rim (the band lies outside the photo) does not."""
    from PIL import ImageDraw

    from qmag_core.quality.face_measures import HEAD_BAND
    from qmag_core.vision.face_mesh import POINTS, face_mesh

    for img, c in single[:4]:
        x = np.asarray(img)
        m = face_mesh(x, detect_and_align(x, det, face="best").face.landmarks)
        rim = m.points[list(POINTS["forehead_rim"]), :2]
        ied = float(np.hypot(*(m.eye_centres()[1] - m.eye_centres()[0])))
        capped = img.copy()
        crown = [tuple(p) for p in rim - [0, 2]] + [tuple(p) for p in (rim - [0, 1.5 * HEAD_BAND * ied])[::-1]]
        ImageDraw.Draw(capped).polygon(crown, fill=(30, 50, 140))
        before = c["NoHeadCoverings"].native
        assert _assess(capped, det)[1]["NoHeadCoverings"].native > before + 0.15, before
        top = int(rim[:, 1].min()) - 1  # the photo now starts at the mesh's top
        cut = _assess(img.crop((0, top, img.width, img.height)), det)[1]["NoHeadCoverings"].native
        assert cut < before + 0.05, (before, cut)
