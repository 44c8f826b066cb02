"""Utility quality heads: q from how much of its identity a capture keeps.

The training target of a sample is the cosine between the backbone descriptor of a
degraded version of a face and that of the same face clean (1 for the clean one): the
recognition utility the sample has left, in the spirit of the SDD-FIQA / CR-FIQA
pseudo-labels, and it needs no identity labels.  A standardised ridge regression on the
head features (the 768 per-stage statistics of ``FaceRecognitionNet.quality_features``)
predicts it; the ridge strength is chosen by Spearman correlation on validation samples
(identities not used for fitting).  Closed form, so the same inputs give the same head.

``UtilityHead`` maps the predicted utility u to q = 100 · softplus(20·u) / 20: q ≈ 100·u
for u ≥ 0.3 ("100 = as good as a clean capture"), positive and smooth below, so q can be
an embedding length (QMagFace) and has gradients (PLQ maps).

Two degradation families feed the targets (``qmag_core.quality.degrade``): ``crop`` degrades the
aligned crop, ``capture`` degrades the whole photo before detection and alignment (a
photo whose degraded version loses its face gives no sample).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .head import UtilityHead
from .samples import DEFAULT_LAMBDAS, TRAIN_FAMILIES, ridge_utility, split_by_identity, utility_samples  # noqa: F401


@dataclass
class UtilityFit:
    """A fitted head and how it was chosen: ``lam`` the ridge strength, ``val_spearman``
    Spearman(prediction, target) on the validation samples for every λ tried."""

    head: UtilityHead
    lam: float
    val_spearman: dict = field(default_factory=dict)
    n_train: int = 0
    n_val: int = 0

    def meta(self) -> dict:
        return {
            "lambda": self.lam,
            "val_spearman": {f"{k:g}": round(v, 4) for k, v in self.val_spearman.items()},
            "n_train": self.n_train,
            "n_val": self.n_val,
        }


def fit_utility_head(
    X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, lambdas=DEFAULT_LAMBDAS
) -> UtilityFit:
    """A :class:`UtilityHead` from :func:`~qmag_core.quality.samples.ridge_utility`:
    utilities ``y`` on features ``X``, λ chosen by Spearman on ``Xv``, ``yv``."""
    mu, sd, w, b, lam, scores = ridge_utility(X, y, Xv, yv, lambdas)
    head = UtilityHead(X.shape[1])
    with torch.no_grad():
        head.mean.copy_(torch.from_numpy(mu))
        head.scale.copy_(torch.from_numpy(sd))  # noqa: E702
        head.weight.copy_(torch.from_numpy(w))
        head.bias.fill_(float(b))  # noqa: E702
    return UtilityFit(head.eval(), lam, scores, len(X), len(Xv))
