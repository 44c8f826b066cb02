"""Small image operations (qmag_core.vision.images): the OpenCV Gaussian blur gives
scipy.ndimage's numbers exactly."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from qmag_core.vision.images import blur


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0, 5.5, 12.0])
@pytest.mark.parametrize("shape", [(112, 112, 3), (150, 150), (37, 61, 3)])
def test_blur_equals_scipy_gaussian_filter(sigma, shape):
    a = (np.random.default_rng(0).random(shape) * 255).astype(np.float32)
    want = (
        np.stack([gaussian_filter(a[..., c], sigma, mode="nearest") for c in range(3)], -1)
        if a.ndim == 3
        else (gaussian_filter(a, sigma, mode="nearest"))
    )
    got = blur(a, sigma)
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_blur_of_sigma_zero_is_the_input():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(blur(a, 0), a.astype(np.float32))
