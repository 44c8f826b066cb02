"""Explainable quality: regions, repairs, occluders, the calibrated scale and the
enrolment check (qmag check), on the sample photos shipped in sample_data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT, run_cli

from qmag_core.errors import QMagError
from qmag_core.quality.occluders import OCCLUDERS, PART_OF, PART_REGIONS, paint_occluder
from qmag_core.quality.regions import (
    REGIONS,
    random_region_mask,
    reference_faces,
    region_labels,
    region_masks,
    repair,
    repairs,
)
from qmag_core.quality.scale import fit_scale, load_scale, shipped_scale
from qmag_core.vision.align import ARCFACE_112, DLIB_150, crop_spec

FACES = ROOT / "sample_data" / "faces" / "deepface"


@pytest.mark.parametrize("spec", [DLIB_150, ARCFACE_112, crop_spec("arcface-224")], ids=lambda s: s.name)
def test_regions_are_disjoint_and_in_anatomical_order(spec):
    masks = region_masks(spec)
    assert list(masks) == list(REGIONS)
    stack = np.stack(list(masks.values()))
    assert stack.sum(0).max() == 1  # disjoint
    assert all(m.sum() > 0.005 * spec.size**2 for m in masks.values())
    rows = {r: np.nonzero(m)[0].mean() for r, m in masks.items()}
    assert rows["forehead"] < rows["eyes"] < rows["nose"] < rows["mouth"] < rows["chin"]
    eyes_y = spec.template[:2, 1].mean()
    assert masks["eyes"][int(round(eyes_y)), int(round(spec.template[0, 0]))]  # an eye centre is in "eyes"
    nose_x = spec.template[2, 0]
    cols = np.nonzero(masks["cheeks"])[1]
    assert cols.min() < nose_x - 0.3 * (spec.template[1, 0] - spec.template[0, 0]) < nose_x < cols.max()
    # the same names mean the same part of the face at any size of a family
    if spec.name == "arcface-224":
        small = region_labels(ARCFACE_112)
        big = region_labels(spec)[::2, ::2]
        assert (small == big).mean() > 0.97


def _crop(name="img1.jpg"):
    from qmag_core.vision.align import FaceDetector, detect_and_align

    return detect_and_align(FACES / name, FaceDetector(runtime="onnx"), DLIB_150, face="best")


def test_repairs_touch_only_the_region():
    crop = _crop().crop
    masks = region_masks(DLIB_150)
    ref = reference_faces(DLIB_150)[0]
    for method in ("inpaint", "reference"):
        out = repair(crop, masks["eyes"], method, ref)
        assert out.shape == crop.shape and out.dtype == np.uint8
        outside = ~masks["eyes"]
        assert np.array_equal(out[outside], crop[outside]), method
        assert np.abs(out.astype(int) - crop)[masks["eyes"]].mean() > 1.0  # it did change the region
    with pytest.raises(QMagError, match="repair must be one of"):
        repair(crop, masks["eyes"], "paint", ref)


def test_reference_repair_undoes_a_dark_band_better_than_leaving_it():
    crop = _crop().crop
    m = region_masks(DLIB_150)["eyes"]
    dark = crop.copy()
    dark[m] = 20
    fixed = repair(dark, m, "reference", reference_faces(DLIB_150)[0])
    err = lambda x: np.abs(x.astype(float) - crop)[m].mean()  # noqa: E731
    assert err(fixed) < 0.5 * err(dark)


def test_repairs_with_a_bank_equal_one_repair_per_face():
    """The bank's repairs share one blend mask, ring and place; each must be exactly the
    single repair with that face (OpenCV's seamlessClone writes into the mask it is given)."""
    crop = _crop().crop
    bank = reference_faces(DLIB_150)
    for name, m in region_masks(DLIB_150).items():
        many = repairs(crop, m, "reference", bank)
        assert len(many) == len(bank)
        for face, got in zip(bank, many, strict=True):
            assert np.array_equal(got, repair(crop, m, "reference", face)), name
        assert [r.tobytes() for r in repairs(crop, m, "inpaint")] == [repair(crop, m, "inpaint").tobytes()]
    with pytest.raises(QMagError, match="needs a reference face"):
        repairs(crop, region_masks(DLIB_150)["eyes"], "reference", bank[:0])


def test_reference_faces_are_one_bank_on_every_spec():
    bank = reference_faces(DLIB_150)
    assert bank.ndim == 4 and len(bank) >= 4 and bank.shape[1:] == (150, 150, 3) and not bank.flags.writeable
    # distinct faces, none of them blank
    assert all(np.abs(bank[i] - bank[j]).mean() > 5 for i in range(len(bank)) for j in range(i))
    small = reference_faces(ARCFACE_112)
    assert small.shape == (len(bank), 112, 112, 3)
    # the same face at the same place: the eye centres of the template are dark-ish in both
    for spec, b in ((DLIB_150, bank), (ARCFACE_112, small)):
        x, y = np.round(spec.template[0]).astype(int)
        assert b[:, y, x].mean() < b[:, :, :].mean() + 10
    with pytest.raises(QMagError, match="reference faces must be"):
        reference_faces(DLIB_150, np.zeros((2, 112, 112, 3)))


def test_random_region_has_the_area_asked_for():
    rng = np.random.default_rng(0)
    for area in (200, 900, 2500):
        m = random_region_mask(DLIB_150, area, rng)
        assert abs(int(m.sum()) - area) < 0.2 * area


@pytest.mark.parametrize("kind", OCCLUDERS)
def test_occluders_cover_their_part(kind):
    a = _crop("img1.jpg")
    from qmag_core.vision.images import load_image

    photo = load_image(FACES / "img1.jpg")
    lm = a.face.landmarks
    out = paint_occluder(photo, kind, lm, np.random.default_rng(3))
    again = paint_occluder(photo, kind, lm, np.random.default_rng(3))
    assert np.array_equal(out, again)  # seeded
    changed = np.any(out != photo, axis=2)
    r, c = np.nonzero(changed)
    assert r.size > 0
    ied = np.linalg.norm(lm[1] - lm[0])
    eye_y, mouth_y = lm[:2, 1].mean(), lm[3:, 1].mean()
    centre_y = np.median(r)
    part = PART_OF[kind]
    if part == "eyes":
        assert abs(centre_y - eye_y) < 0.3 * ied
    elif part == "forehead":
        assert centre_y < eye_y - 0.3 * ied
    else:
        assert centre_y > (eye_y + lm[2, 1]) / 2 and centre_y < mouth_y + 0.8 * ied
    assert set(PART_REGIONS[part]) <= set(REGIONS)


def _synthetic_pairs(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    q1, q2 = rng.uniform(60, 100, n), rng.uniform(60, 100, n)
    y = rng.random(n) < 0.5
    qm = np.minimum(q1, q2)
    gen = np.clip(0.7 + 0.25 * (qm - 60) / 40 + rng.normal(0, 0.08, n), -1, 1)  # lower quality, lower cosine
    s = np.where(y, gen, rng.normal(0.2, 0.12, n))
    return s, y, q1, q2


def test_fit_scale_is_monotone_and_its_bands_split_fnmr():
    s, y, q1, q2 = _synthetic_pairs()
    sc = fit_scale(s, y, q1, q2, fmr=1e-3)
    assert np.all(np.diff(sc.fnmr_knots) <= 1e-12) and np.all(np.diff(sc.q_knots) >= 0)
    v = sc.value(np.linspace(50, 110, 200))
    assert np.all(np.diff(v) >= -1e-9) and v.min() >= 0 and v.max() <= 100
    lo, hi = sc.edges
    assert lo <= hi
    # on fresh pairs of the same kind the bands really split the error rate
    s2, y2, a2, b2 = _synthetic_pairs(seed=1)
    band = sc.band(np.minimum(a2, b2))
    miss = (s2 <= sc.threshold) & y2
    rate = {b: miss[(band == b) & y2].mean() for b in ("good", "poor")}
    assert rate["poor"] > 3 * rate["good"]
    assert sc.describe(float("nan")) == {"q": None, "scale": None, "band": "unknown"}


def test_scale_round_trip_and_bad_files(tmp_path):
    s, y, q1, q2 = _synthetic_pairs()
    sc = fit_scale(s, y, q1, q2, fmr=1e-2, encoder="x")
    sc.save(tmp_path / "s.json")
    back = load_scale(tmp_path / "s.json")
    np.testing.assert_allclose(back.value([70, 80, 95]), sc.value([70, 80, 95]), atol=1e-3)
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(QMagError, match="not a quality scale file"):
        load_scale(tmp_path / "bad.json")
    with pytest.raises(QMagError, match="imposter"):
        fit_scale(s[:50], y[:50], q1[:50], q2[:50], fmr=1e-3)


def test_shipped_scale_matches_the_encoder_and_has_a_check():
    from qmag_core.encoders import load_encoder
    from qmag_core.quality.check import check_calibration
    from qmag_core.quality.scale import scale_for

    sc = shipped_scale("builtin")
    assert sc is not None and sc.check and {"check", "occlusion"} <= set(sc.plq)
    check_calibration(sc)
    assert scale_for(load_encoder("builtin", runtime="fast")) is not None
    assert scale_for(load_encoder("builtin-raw", runtime="fast")) is None  # another q: no borrowed scale


@pytest.fixture(scope="module")
def fast():
    from qmag_core.encoders import load_encoder

    return load_encoder("builtin", runtime="fast")


def test_check_names_the_eyes_behind_a_painted_blindfold(fast):
    from qmag_core.quality.check import check_crop
    from qmag_core.vision.align import FaceDetector, detect_and_align
    from qmag_core.vision.images import load_image

    det = FaceDetector.for_encoder(fast)
    sc = shipped_scale("builtin")
    photo = load_image(FACES / "img1.jpg")
    a = detect_and_align(photo, det, fast.spec, face="best")
    glasses = paint_occluder(photo, "blindfold", a.face.landmarks, np.random.default_rng(0))
    b = detect_and_align(glasses, det, fast.spec, face="best")
    clean, occl = check_crop(fast, a.crop, sc), check_crop(fast, b.crop, sc)
    z = lambda rep: {r.name: r.z for r in rep.regions}  # noqa: E731
    assert occl.top == "eyes"
    assert z(occl)["eyes"] > z(clean)["eyes"] + 2
    assert occl.q_after > occl.q  # the repair of the eyes raises q
    eyes = next(r for r in occl.regions if r.name == "eyes")
    assert eyes.flagged and "glasses" in eyes.advice and occl.verdict == "reject"
    assert not any(r.flagged for r in clean.regions) and clean.verdict == "accept"
    assert abs(sum(r.share for r in occl.regions) - 1) < 1e-6
    j = occl.to_json("x.jpg")
    assert set(j) == {"image", "q", "scale", "band", "verdict", "regions", "repair"}
    assert [r["name"] for r in j["regions"]] == list(REGIONS)
    assert j["repair"]["region"] == "eyes" and j["repair"]["q_before"] == round(occl.q, 4)


def test_check_gain_is_the_mean_over_the_reference_faces_and_shows_a_measured_repair(fast):
    """Recomputed by hand: each reference-repaired region's q_gain is the mean q gain of
    its repair with every reference face; the repair shown is one of those crops and
    q_after is its own q; the control is a repair of the same size elsewhere."""
    from qmag_core.quality.check import check_calibration, check_crop

    sc = shipped_scale("builtin")
    crop = _crop("img1.jpg").crop.copy()
    crop[40:75, 20:130] = 30  # a dark band over the eyes
    rep = check_crop(fast, crop, sc, with_map=False)
    cal = check_calibration(sc)
    masks, bank = region_masks(fast.spec), reference_faces(fast.spec)
    q0 = float(fast.quality_of(crop[None])[0])
    assert rep.q == pytest.approx(q0, abs=1e-4)
    for r in rep.regions:
        if r.repair == "reference":
            qs = fast.quality_of(np.stack([repair(crop, masks[r.name], "reference", f) for f in bank]))
            assert r.q_gain == pytest.approx(float(qs.mean()) - q0, abs=1e-3), r.name
        assert r.repair in (("inpaint", "reference") if cal["repairs"][r.name] == "both" else (cal["repairs"][r.name],))
    assert rep.q_after == pytest.approx(float(fast.quality_of(rep.repaired[None])[0]), abs=1e-4)
    top = masks[rep.top]
    assert np.array_equal(rep.repaired[~top], crop[~top]) and not np.array_equal(rep.repaired, crop)


def test_qmag_check_reports_in_input_order_and_exit_codes(tmp_path):
    from PIL import Image

    Image.new("RGB", (200, 200), (128, 128, 128)).save(tmp_path / "wall.png")
    out = tmp_path / "r.json"
    r = run_cli("check", FACES / "img1.jpg", tmp_path / "wall.png", FACES / "img2.jpg", "--json", out, check=False)
    assert r.returncode == 1, r.stderr  # an image could not be checked
    assert r.stderr.strip().count("\n") == 0 and "wall.png" in r.stderr and "Traceback" not in r.stderr
    rep = json.loads(out.read_text())["reports"]
    assert [x["image"] for x in rep] == [str(FACES / "img1.jpg"), str(tmp_path / "wall.png"), str(FACES / "img2.jpg")]
    assert set(rep[1]) == {"image", "error"} and "no face" in rep[1]["error"]
    assert rep[0]["verdict"] in ("accept", "reject") and len(rep[0]["regions"]) == 6
    ok = run_cli("check", FACES / "img2.jpg", "--no-map")
    assert "img2.jpg:" in ok.stdout and ok.returncode == 0
    # bad arguments: exit 2, one line, and the output is checked before any work
    bad = run_cli("check", FACES / "img1.jpg", "--json", FACES / "img1.jpg", check=False)
    assert bad.returncode == 2 and "--json" in bad.stderr
    (tmp_path / "s.json").write_text("{}")
    bad = run_cli("check", FACES / "img1.jpg", "--scale", tmp_path / "s.json", check=False)
    assert bad.returncode == 2 and "quality scale" in bad.stderr and bad.stderr.count("\n") == 1


def test_calibrate_quality_from_a_scores_csv(tmp_path):
    import pandas as pd

    s, y, q1, q2 = _synthetic_pairs()
    pd.DataFrame({"s": s, "q1": q1, "q2": q2, "label": y.astype(int)}).to_csv(tmp_path / "sc.csv", index=False)
    r = run_cli("calibrate-quality", "--scores", tmp_path / "sc.csv", "--out", tmp_path / "scale.json")
    assert "bands" in r.stdout
    sc = load_scale(tmp_path / "scale.json")
    assert sc.value(70) < sc.value(95)


def test_compare_shows_the_scale_beside_q():
    r = run_cli("compare", FACES / "img1.jpg", FACES / "img2.jpg", "--json")
    imgs = json.loads(r.stdout)["images"]
    sc = shipped_scale("builtin")
    for im in imgs:
        assert im["scale"] == sc.describe(im["quality"])["scale"] and im["band"] in ("good", "usable", "poor")


def test_fixed_plq_scale_compares_maps_across_photos():
    """On the fixed scale the same q per pixel gets the same colour in every map; on a
    map's own scale a map with half the loss everywhere looks the same as the full one."""
    from qmag_core.quality.explain import QualityMap, display_values

    rng = np.random.default_rng(0)
    raw = rng.normal(0, 0.02, (150, 150)).astype(np.float32)
    a = QualityMap(np.zeros((150, 150, 3), np.uint8), 99.0, raw, raw, "occlusion", "builtin", {}, 0.0)
    b = QualityMap(a.crop, 99.5, raw / 2, raw / 2, "occlusion", "builtin", {}, 0.0)
    unit = shipped_scale("builtin").plq["occlusion"]
    np.testing.assert_allclose(display_values(b, unit), np.clip(raw / 2 / unit, -1, 1))
    assert np.abs(display_values(b, unit)).mean() < np.abs(display_values(a, unit)).mean()
    np.testing.assert_allclose(display_values(a), display_values(b), atol=1e-6)  # own scale hides it


def test_magnitude_map_is_the_published_formulation():
    torch = pytest.importorskip("torch")  # noqa: F841
    from qmag_core.encoders import load_encoder
    from qmag_core.quality.explain import display_values, explain, quality_gradient

    enc = load_encoder("builtin", device="cpu", runtime="torch")
    qm = explain(FACES / "img1.jpg", enc, method="magnitude")
    _, g = quality_gradient(enc, qm.crop)
    np.testing.assert_allclose(qm.raw, np.abs(g).mean(axis=2), rtol=1e-5, atol=1e-8)
    v = display_values(qm, unit=float(np.percentile(qm.raw, 99)))
    assert v.min() >= 0 and v.max() < 1 and qm.raw.min() >= 0


# ------------------------------------------------------------------ scale files we read
def _scale_doc():
    from qmag_core.quality.scale import SCALE_DIR

    return json.loads((SCALE_DIR / "builtin.json").read_text())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["edges"].__setitem__(0, float("nan")), "edges"),
        (lambda d: d["fnmr_knots"].__setitem__(0, 7), "fnmr_knots"),
        (lambda d: d.__setitem__("fmr", "often"), "fmr"),
        (lambda d: d.__setitem__("q_knots", [1, 2]), "fnmr_knots"),
        (lambda d: d.__setitem__("n_genuine", True), "n_genuine"),
        (lambda d: d.__setitem__("plq", {"gradient": -1}), "plq"),
        (lambda d: d.pop("threshold"), "threshold"),
    ],
)
def test_a_bad_scale_file_is_refused_naming_the_field(tmp_path, change, field):
    """Before: NaN band edges, an FNMR of 7 or a text FMR were used silently or ended in
    an internal error.  Now: exit 2, one line naming the file and the field."""
    d = _scale_doc()
    change(d)
    f = tmp_path / "scale.json"
    f.write_text(json.dumps(d))
    r = run_cli("check", ROOT / "sample_data/faces/deepface/img1.jpg", "--scale", f, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "scale.json" in r.stderr and field in r.stderr and "Traceback" not in r.stderr


def test_another_encoders_scale_is_said_like_another_encoders_params(tmp_path):
    d = {**_scale_doc(), "encoder": "magface", "encoder_key": "magface-iresnet100-0123456789abcdef"}
    f = tmp_path / "scale.json"
    f.write_text(json.dumps(d))
    r = run_cli("check", ROOT / "sample_data/faces/deepface/img1.jpg", "--scale", f, check=False)
    assert r.returncode == 0, r.stderr
    assert "warning: this quality scale was calibrated on q of encoder 'magface'" in r.stderr
