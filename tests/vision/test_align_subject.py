"""Which face is the subject of a photo with several?  Rules on geometry, then on the
original (uncropped) LFW photos of the dev pairs, checked against the same persons'
centre crops; the CLI's --face and the compare page's face picker."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, need_shared

from qmag_core.errors import QMagError
from qmag_core.vision.align import Face, FaceDetector, align, choose_face
from qmag_core.vision.images import load_image


def _face(x1, y1, x2, y2):
    return Face(np.array([x1, y1, x2, y2], float), 0.99, np.zeros((5, 2)))


def test_rules_on_geometry():
    # 400x300 photo: a large bystander at the left edge, the subject smaller in the centre
    faces = [_face(0, 50, 150, 220), _face(160, 90, 250, 200), _face(330, 20, 360, 60)]
    assert choose_face(faces, (400, 300), "largest") == 0
    assert choose_face(faces, (400, 300), "center") == 1
    assert choose_face(faces, (400, 300), "best") == 1
    # best weighs size: a big face slightly off-centre beats a tiny face dead centre
    faces2 = [_face(100, 60, 260, 240), _face(190, 140, 210, 160)]
    assert choose_face(faces2, (400, 300), "best") == 0 and choose_face(faces2, (400, 300), "center") == 1
    # resolution-free: the same photo 3x larger gives the same choice
    big = [_face(*(np.asarray(f.box) * 3)) for f in faces]
    assert choose_face(big, (1200, 900), "best") == 1
    with pytest.raises(QMagError, match="face rule"):
        choose_face(faces, (400, 300), "nearest")


@pytest.fixture(scope="module")
def enc():
    from qmag_core.encoders import load_encoder

    return load_encoder("builtin", device="cpu")


@pytest.mark.slow
def test_best_rule_finds_the_subject_on_real_group_photos(enc):
    from qmag_core.io.embeddings import load_embeddings

    photos = need_shared("lfw_photos", "images")
    crops = load_embeddings(ROOT / "sample_data" / "lfw_dev_builtin" / "embeddings.npz")
    paths = crops.paths.tolist()[:200]
    imgs = [load_image(photos / p) for p in paths]
    faces = FaceDetector().detect_batch(imgs)
    multi = [k for k, f in enumerate(faces) if len(f) >= 2]
    assert len(multi) >= 20  # group photos are common in LFW
    agree = {}
    for rule in ("best", "largest"):
        cos = []
        for k in multi:
            j = choose_face(faces[k], (imgs[k].shape[1], imgs[k].shape[0]), rule)
            e = enc.embed(align(imgs[k], faces[k][j].landmarks, enc.spec).crop[None])[0]
            c = crops.embeddings[k]
            cos.append(float(e @ c / np.linalg.norm(e) / np.linalg.norm(c)))
        agree[rule] = np.mean(np.array(cos) > 0.95)
    assert agree["best"] == 1.0  # the same person as the centre crop, every time
    assert agree["largest"] < 1.0  # the largest face is sometimes a bystander


def _group_photo():
    """A dev photo with several faces where the rules disagree (found by scanning)."""
    return need_shared("lfw_photos", "images", "Andre_Agassi", "Andre_Agassi_0001.jpg")


@pytest.mark.slow
def test_cli_face_option(tmp_path):
    photo = _group_photo()
    other = need_shared("lfw_photos", "images", "Andre_Agassi", "Andre_Agassi_0002.jpg")
    out = {}
    for rule in ("best", "largest"):
        r = subprocess.run(
            [sys.executable, "-m", "qmag_core", "compare", str(photo), str(other), "--json", "--face", rule],
            capture_output=True,
            text=True,
            cwd=str(ROOT),
        )
        assert r.returncode == 0, r.stderr
        out[rule] = json.loads(r.stdout)
    img = out["best"]["images"][0]
    assert out["best"]["face_rule"] == "best" and img["n_faces"] >= 2
    assert img["face_index"] != out["largest"]["images"][0]["face_index"]
    assert out["best"]["pairs"][0]["s"] > out["largest"]["pairs"][0]["s"]  # the subject matches his other photo


@pytest.mark.slow
def test_compare_page_lets_the_user_pick_the_face(enc):
    from streamlit.testing.v1 import AppTest

    from qmag_core.pipeline.compare import compare_images

    photo, other = _group_photo(), need_shared("lfw_photos", "images", "Andre_Agassi", "Andre_Agassi_0002.jpg")
    data = [photo.read_bytes(), other.read_bytes()]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    at.file_uploader[0].set_value([("group.jpg", data[0], "image/jpeg"), ("single.jpg", data[1], "image/jpeg")]).run()
    assert not at.exception
    ref = compare_images(data, enc, names=["group.jpg", "single.jpg"], face="best")
    pick = next(s for s in at.selectbox if s.label.endswith("compare face"))
    assert pick.value == ref.images[0].aligned.face_index + 1
    other_face = 1 if ref.images[0].aligned.face_index != 0 else 2
    pick.set_value(other_face).run()
    assert not at.exception
    ref2 = compare_images(data, enc, names=["group.jpg", "single.jpg"], choose={0: other_face - 1})
    assert at.dataframe[0].value["s"].iloc[0] == pytest.approx(ref2.pairs[0].s, abs=1e-5)
    assert ref2.pairs[0].s < ref.pairs[0].s  # the bystander is not Andre Agassi
    at.radio(key="face_rule").set_value("largest").run()  # the user's pick stays
    assert at.dataframe[0].value["s"].iloc[0] == pytest.approx(ref2.pairs[0].s, abs=1e-5)
