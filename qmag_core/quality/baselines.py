"""Model-free quality measures, the baselines an encoder's quality q must beat.

Per image (computed while embedding, see :func:`qmag_core.pipeline.embed.embed_files`):

==================  ==========================================================
measure             meaning (higher = better)
==================  ==========================================================
``raw_length``      length of the backbone descriptor (for ``builtin``: the raw
                    network's descriptor, before the quality head)
``sharpness``       variance of the Laplacian of the aligned crop (grey levels²)
``detector_prob``   MTCNN's face probability of the chosen face
``ied_px``          inter-eye distance in pixels of the decoded photo
==================  ==========================================================

A pair's measure is the minimum over its two images, like q_min.  In score tables
they are columns ``qm_<measure>``; any such numeric column a user adds (e.g.
``qm_ofiq``) is treated the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MEASURES",
    "sharpness",
    "inter_eye_distance",
]

MEASURES = ("raw_length", "sharpness", "detector_prob", "ied_px")


def sharpness(crops: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each grey crop (grey = channel mean; the 4-neighbour
    Laplacian over the interior pixels): (N, S, S, 3) → (N,) float64, grey levels².

    With OpenCV (every install that embeds) one image at a time on the channel sums in
    float32, exact for uint8 crops (≈ 0.04 ms per 150-px crop on this 2-core CPU against
    0.6–0.8 ms in numpy float64, which the core install uses); the two agree to 1e-15."""
    x = np.asarray(crops)
    if x.ndim == 3:
        x = x[None]
    try:
        import cv2
    except ImportError:  # the core install: scores only, rarely images
        cv2 = None
    if cv2 is None or x.shape[1] < 3 or x.shape[2] < 3 or x.shape[3] != 3:
        return _sharpness_numpy(x)
    ones = np.ones((1, 3), np.float32)  # 3 × grey: integer sums, exact in float32
    out = np.empty(len(x), np.float64)
    for i, c in enumerate(x):
        g = cv2.transform(np.ascontiguousarray(c, np.float32), ones)
        _, sd = cv2.meanStdDev(cv2.Laplacian(g, cv2.CV_32F, ksize=1)[1:-1, 1:-1])
        out[i] = float(sd[0, 0]) ** 2 / 9.0
    return out


def _sharpness_numpy(x: np.ndarray) -> np.ndarray:
    g = np.asarray(x, np.float64).mean(axis=3)
    lap = -4 * g[:, 1:-1, 1:-1] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:]
    return lap.reshape(lap.shape[0], -1).var(axis=1)


def inter_eye_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the two eye landmarks: (N, 5, 2) → (N,) px."""
    lm = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    return np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1)
