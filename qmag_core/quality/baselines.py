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
    """Variance of the Laplacian of each grey crop: (N, S, S, 3) uint8 → (N,) float64."""
    x = np.asarray(crops, np.float64)
    if x.ndim == 3:
        x = x[None]
    g = x.mean(axis=3)
    lap = -4 * g[:, 1:-1, 1:-1] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:]
    return lap.reshape(lap.shape[0], -1).var(axis=1)


def inter_eye_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the two eye landmarks: (N, 5, 2) → (N,) px."""
    lm = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    return np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1)
