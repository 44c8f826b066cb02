"""Head pose from a mesh (qmag_core.vision.head_pose): known rotations of the reference
shape are read back as the angles they were made with, in the documented conventions;
the shipped reference is left-right symmetric."""

import math

import numpy as np
import pytest

from qmag_core.vision.head_pose import build_reference, head_pose, mirror_index, reference_shape


def _rot(yaw, pitch, roll):
    """R = Rz(roll) · Rx(pitch) · Ry(yaw) in image axes (x right, y down, z away)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    Ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    Rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return Rz @ Rx @ Ry


@pytest.mark.parametrize(("yaw", "pitch", "roll"), [(0, 0, 0), (20, 0, 0), (0, 15, 0), (0, 0, -10), (12, -8, 5)])
def test_known_rotations_of_the_reference_are_read_back(yaw, pitch, roll):
    ref = reference_shape()
    pts = (ref @ _rot(yaw, pitch, roll).T) * 80 + [120, 130, 0]  # scaled and moved like photo pixels
    assert head_pose(pts) == pytest.approx((yaw, pitch, roll), abs=1e-6)


def test_signs_follow_the_documented_conventions():
    ref = reference_shape()
    nose, chin = 1, 152
    turned = ref @ _rot(20, 0, 0).T
    assert turned[nose, 0] > ref[nose, 0]  # yaw > 0: the nose moves to the image's right
    raised = ref @ _rot(0, 15, 0).T
    assert raised[chin, 1] < ref[chin, 1] + 1e-9 or raised[nose, 1] < ref[nose, 1]  # pitch > 0: nose/chin up
    tilted = ref @ _rot(0, 0, 10).T
    assert tilted[263, 1] > tilted[33, 1]  # roll > 0: the eye on the image's right is lower


def test_the_reference_is_symmetric_and_a_mirrored_mesh_has_the_opposite_yaw():
    ref = reference_shape()
    twin = mirror_index(ref)
    assert np.mean(twin[twin] == np.arange(len(ref))) > 0.99
    assert np.abs(ref[twin] * [-1, 1, 1] - ref).max() < 1e-6
    pts = ref @ _rot(17, 4, -3).T
    y, p, r = head_pose(pts)
    ym, pm, rm = head_pose((pts * [-1, 1, 1])[twin])
    assert ym == pytest.approx(-y, abs=1e-6) and pm == pytest.approx(p, abs=1e-6) and rm == pytest.approx(-r, abs=1e-6)


def test_build_reference_undoes_the_rotations_of_its_inputs():
    ref = reference_shape()
    rng = np.random.default_rng(0)
    meshes = [ref @ _rot(*rng.normal(0, 8, 3)).T * rng.uniform(50, 90) for _ in range(20)]
    out = build_reference(np.stack(meshes))
    assert head_pose(out * 60) == pytest.approx((0, 0, 0), abs=3.0)  # the mean pose of the inputs: near frontal
