"""The numbers side, part 1: QMagFace scores and their parameters (map: docs/development.md)."""

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
