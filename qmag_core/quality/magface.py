"""The MagFace loss and a MagFace quality head for a frozen backbone.

MagFace (Meng et al., CVPR 2021) makes the embedding length a = ‖e‖ a quality measure:

* magnitude-aware angular margin m(a) = (u_m − l_m)/(u_a − l_a)·(a − l_a) + l_m, with a
  clipped to [l_a, u_a]: high-quality (long) embeddings must sit closer to their class;
* ArcFace-style logits s·cos(θ_y + m(a)) for the true class, s·cos θ_j for the others;
* regulariser g(a) = 1/a + a/u_a², weighted by λ_g, whose minimum on [l_a, u_a] is at
  a = u_a: without the margin pressure every embedding would grow to u_a.

Defaults are MagFace's: l_a=10, u_a=110, l_m=0.45, u_m=0.8, λ_g=35, s=64.

:class:`QualityHead` maps a frozen backbone's pooled features to an embedding trained
with this loss; only its *length* is used as the quality (the identity direction stays
the backbone's, so recognition accuracy is untouched).  All randomness goes through an
explicit ``torch.Generator`` seeded by ``seed``; same seed → identical weights on CPU.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import QMagError
from ..outputs import atomic_write
from .head import QualityHead, backbone_features

__all__ = [
    "MagFaceConfig",
    "magnitude_margin",
    "magnitude_regulariser",
    "MagFaceLoss",
    "train_quality_head",
]


@dataclass(frozen=True)
class MagFaceConfig:
    l_a: float = 10.0
    u_a: float = 110.0
    l_m: float = 0.45
    u_m: float = 0.8
    lambda_g: float = 35.0
    scale: float = 64.0


def magnitude_margin(a: torch.Tensor, cfg: MagFaceConfig = MagFaceConfig()) -> torch.Tensor:
    """m(a) = (u_m − l_m)/(u_a − l_a)·(clip(a, l_a, u_a) − l_a) + l_m (radians)."""
    a = a.clamp(cfg.l_a, cfg.u_a)
    return (cfg.u_m - cfg.l_m) / (cfg.u_a - cfg.l_a) * (a - cfg.l_a) + cfg.l_m


def magnitude_regulariser(a: torch.Tensor, cfg: MagFaceConfig = MagFaceConfig()) -> torch.Tensor:
    """g(a) = 1/a + a/u_a² (minimum at a = u_a on [l_a, u_a])."""
    return 1.0 / a + a / cfg.u_a**2


class MagFaceLoss(nn.Module):
    """MagFace classification loss with a learnable class-centre matrix W (C, D).

    ``forward(embeddings (B, D), labels (B,))`` returns ``(loss, parts)`` with the
    cross-entropy and regulariser terms in ``parts``; a is clipped to [l_a, u_a] as in
    MagFace.  When θ + m(a) would exceed π the margin is replaced by the usual ArcFace
    fallback cos θ − m·sin m, keeping the target logit monotone in θ.
    """

    def __init__(
        self,
        n_classes: int,
        dim: int,
        cfg: MagFaceConfig = MagFaceConfig(),
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        w = torch.empty(n_classes, dim)
        nn.init.normal_(w, 0.0, 0.01, generator=generator)
        self.weight = nn.Parameter(w)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor):
        cfg = self.cfg
        a = emb.norm(dim=1).clamp(cfg.l_a, cfg.u_a)
        cos = F.linear(F.normalize(emb), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        m = magnitude_margin(a, cfg)
        cos_y = cos.gather(1, labels[:, None]).squeeze(1)
        sin_y = torch.sqrt(1.0 - cos_y**2)
        target = cos_y * torch.cos(m) - sin_y * torch.sin(m)
        fallback = cos_y - m * torch.sin(m)
        target = torch.where(cos_y > torch.cos(math.pi - m), target, fallback)
        logits = cos.scatter(1, labels[:, None], target[:, None]) * cfg.scale
        ce = F.cross_entropy(logits, labels)
        reg = magnitude_regulariser(a, cfg).mean()
        return ce + cfg.lambda_g * reg, {
            "ce": float(ce.detach()),
            "reg": float(reg.detach()),
            "mean_a": float(a.detach().mean()),
        }


def _training_tensors(features, labels, directions):
    """``(x (N, F), class ids (N,), unit directions (N, D) or None, number of classes)``."""
    x = torch.as_tensor(np.asarray(features, np.float32))
    u = None
    if directions is not None:
        u = F.normalize(torch.as_tensor(np.asarray(directions, np.float32)), dim=1)
        if u.shape[0] != x.shape[0]:
            raise QMagError(f"directions has {u.shape[0]} rows, features {x.shape[0]}")
    uniq, y_np = np.unique(np.asarray(labels), return_inverse=True)
    if uniq.size < 2:
        raise QMagError(f"MagFace training needs at least 2 identities, got {uniq.size}")
    return x, torch.as_tensor(y_np.astype(np.int64)), u, int(uniq.size)


def _write_log(path, run: dict) -> None:
    with atomic_write(path) as fh:
        fh.write(json.dumps(run, indent=2))


def train_quality_head(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    directions: np.ndarray | None = None,
    epochs: int = 30,
    batch_size: int = 512,
    lr: float = 0.05,
    dim: int = 128,
    hidden: int = 0,
    seed: int = 0,
    cfg: MagFaceConfig = MagFaceConfig(),
    device: str = "cpu",
    checkpoint: str | Path | None = None,
    log: str | Path | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
) -> tuple[QualityHead, list[dict]]:
    """Train a :class:`QualityHead` with the MagFace loss on cached backbone features.

    ``features`` (N, F) float32, ``labels`` (N,) int class ids.  With ``directions``
    (N, D) — the frozen backbone's descriptors — the MagFace embedding is
    unit(direction) × ‖head(features)‖: only the length is learned (with the class
    centres), so q measures how well the backbone's own direction fits its identity,
    which is how the shipped encoder uses it.  SGD with momentum and a
    cosine learning-rate schedule; shuffling and initialisation use one seeded
    ``torch.Generator``.  With ``checkpoint`` the state is saved after every epoch and a
    run resumes from it; ``log`` receives the per-epoch JSON log.
    """
    x, y, u, n_classes = _training_tensors(features, labels, directions)
    n = x.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    head = QualityHead(x.shape[1], dim, hidden).reset(g)
    if math.sqrt(2 * dim) < 1.2 * cfg.l_a:
        # BN output ≈ N(bias, 1) per unit, so lengths start near √(dim·(1 + bias²)); below
        # l_a the clipped loss has no gradient on them and the length would never learn
        with torch.no_grad():
            head.bn.bias.fill_(math.sqrt((1.2 * cfg.l_a) ** 2 / dim - 1))
    loss_fn = MagFaceLoss(n_classes, dim if u is None else u.shape[1], cfg, generator=g)
    params = list(head.parameters()) + list(loss_fn.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    ck = Path(checkpoint) if checkpoint else None
    parts_of = {"head": head, "loss": loss_fn, "opt": opt, "sched": sched}
    start, history = _resume(ck, parts_of, g) if ck is not None and ck.is_file() else (0, [])
    head.to(device)
    loss_fn.to(device)
    for ep in range(start, epochs):
        t0 = time.perf_counter()
        head.train()
        sums, nb = _epoch(head, loss_fn, opt, x, y, u, torch.randperm(n, generator=g), batch_size, device)
        sched.step()
        rec = {
            "epoch": ep + 1,
            **{k: v / nb for k, v in sums.items()},
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(rec)
        if ck is not None:
            _save_state(ck, parts_of, g, ep + 1, history)
        if log is not None:
            run = {"config": asdict(cfg), "seed": seed, "epochs": epochs, "lr": lr, "batch_size": batch_size}
            _write_log(log, {**run, "dim": dim, "history": history})
        if progress is not None:
            progress(ep + 1, epochs, rec)
    head.eval()
    return head.cpu(), history


def _epoch(head, loss_fn, opt, x, y, u, perm, batch_size: int, device) -> tuple[dict, int]:
    """One pass over ``perm`` in batches: summed loss and loss parts, number of batches."""
    sums = {"loss": 0.0, "ce": 0.0, "reg": 0.0, "mean_a": 0.0}
    nb = 0
    for k in range(0, len(perm), batch_size):
        idx = perm[k : k + batch_size]
        if idx.numel() < 2:
            continue
        emb = head(x[idx].to(device))
        if u is not None:
            emb = u[idx].to(device) * emb.norm(dim=1, keepdim=True)
        loss, p = loss_fn(emb, y[idx].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sums["loss"] += float(loss.detach())
        for key in ("ce", "reg", "mean_a"):
            sums[key] += p[key]
        nb += 1
    return sums, nb


def _resume(ck: Path, parts: dict, g: torch.Generator) -> tuple[int, list]:
    """Load a training checkpoint into ``parts`` (head, loss, opt, sched) and ``g``."""
    try:
        state = torch.load(ck, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure is a bad checkpoint file
        raise QMagError(
            f"{ck.name}: not a readable training checkpoint ({str(e).splitlines()[0][:160]}); delete it to start afresh"
        ) from None
    for key, obj in parts.items():
        obj.load_state_dict(state[key])
    g.set_state(state["rng"])
    history = json.loads(bytes(state["history"].tolist()).decode()) if "history" in state else []
    return int(state["epoch"]), history


def _save_state(ck: Path, parts: dict, g: torch.Generator, epoch: int, history: list) -> None:
    with atomic_write(ck, "wb") as fh:  # a kill mid-save keeps the previous epoch's checkpoint
        torch.save(
            {
                **{key: obj.state_dict() for key, obj in parts.items()},
                "rng": g.get_state(),
                "epoch": epoch,
                "history": torch.tensor(list(json.dumps(history).encode()), dtype=torch.uint8),
            },
            fh,
        )


def build_training_set(
    root,
    encoder,
    *,
    n_degraded: int = 4,
    seed: int = 0,
    aligned: bool = False,
    detector=None,
    kinds=None,
    progress=None,
    feature_kind: str = "multi",
    max_severity: float = 1.0,
) -> dict:
    """Backbone features of every image under ``root`` (one folder per identity) and of
    ``n_degraded`` seeded degraded copies each.  Returns arrays ``features``, ``labels``
    (identity index), ``severity`` (0 for clean), ``kind`` ('' for clean), ``paths`` and
    the ``failed`` images."""
    from ..vision.align import ARCFACE_112, FaceDetector, NoFaceError, detect_and_align
    from ..vision.images import ImageError, list_images
    from .degrade import KINDS, random_degradations

    kinds = tuple(kinds or KINDS)
    paths = [p for p in list_images(root) if "/" in p]
    if not paths:
        raise QMagError(f"{root}: no images in identity sub-folders")
    if detector is None and not aligned:
        detector = FaceDetector.for_encoder(encoder)
    rng = np.random.default_rng(seed)
    ids = sorted({p.split("/")[0] for p in paths})
    id_index = {n: k for k, n in enumerate(ids)}
    crops, labels, sev, kind, src, failed = [], [], [], [], [], []
    for k, p in enumerate(paths):
        try:
            a = detect_and_align(str(Path(root) / p), detector, encoder.spec, aligned=aligned, aligned_spec=ARCFACE_112)
        except (ImageError, NoFaceError) as e:
            failed.append(str(e))
            continue
        crops.append(a.crop)
        labels.append(id_index[p.split("/")[0]])
        sev.append(0.0)
        kind.append("")
        src.append(p)  # noqa: E702
        for img, kd, sv in random_degradations(a.crop, n_degraded, rng, kinds, max_severity):
            crops.append(img)
            labels.append(id_index[p.split("/")[0]])
            sev.append(sv)
            kind.append(kd)
            src.append(p)  # noqa: E702
        if progress is not None:
            progress(k + 1, len(paths))
    feats = backbone_features(encoder, np.stack(crops), kind=feature_kind)
    return {
        "features": feats,
        "labels": np.asarray(labels),
        "severity": np.asarray(sev, np.float32),
        "kind": np.asarray(kind, str),
        "paths": np.asarray(src, str),
        "failed": failed,
        "identities": ids,
    }
