"""The numbers side, part 1: QMagFace scores and their parameters (numpy only).

``scoring`` (ŝ = ω(s)·min(q1, q2) + s, pair cosines), ``trainer`` (α/β from labelled
pairs, a scikit-learn-style estimator), ``params`` (the params record and its JSON),
``roc_window`` (operating points on the training ROC), ``reference`` (the published
training loop, literally, for tests and benches) and ``synthetic`` (seeded toy pairs).
"""

from __future__ import annotations

from .params import OFFICIAL_IRESNET100, QUALITY_MEANING, ParamsCI, QMagFaceParams
from .scoring import PairScores, omega_of_s, pair_similarity, qmagface_score
from .trainer import QMagFaceTrainer

__all__ = [
    "qmagface_score",
    "omega_of_s",
    "pair_similarity",
    "PairScores",
    "QMagFaceTrainer",
    "QMagFaceParams",
    "ParamsCI",
    "OFFICIAL_IRESNET100",
    "QUALITY_MEANING",
]
