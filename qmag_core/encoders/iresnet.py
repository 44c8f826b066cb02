"""iResNet backbones as used by MagFace (Meng et al., CVPR 2021) and official checkpoint loading.

Layer names equal the official MagFace definition, so official checkpoints load by name:
stem conv1/bn1/prelu, layer1..layer4 of IBasicBlock (bn1 → conv1 → bn2 → prelu →
conv2(stride) → bn3, + downsample conv1x1/BN), head bn2 → dropout → flatten →
fc (512·7·7 → 512) → features (BatchNorm1d).  BatchNorm uses eps=2e-5 and
momentum=0.9 exactly as the official definition.  The 512-d output is NOT normalised:
its length is the MagFace quality.

References
----------
Meng, Zhao, Wang, Zhang, Zhu. "MagFace: A Universal Representation for Face Recognition
and Quality Assessment", CVPR 2021.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import QMagError
from ..vision.align import ARCFACE_112
from .keys import file_key
from .torch_encoder import TorchEncoder

__all__ = ["IResNet", "ARCHS", "build_iresnet", "load_magface_checkpoint", "CheckpointError", "guess_arch"]

ARCHS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
_BN = dict(eps=2e-5, momentum=0.9)


class CheckpointError(QMagError):
    """A checkpoint cannot be loaded (unsafe pickle, wrong architecture, missing keys)."""


class IBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, **_BN)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, **_BN)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, **_BN)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """iResNet for 112×112 inputs; ``forward`` returns (B, 512) unnormalised embeddings."""

    def __init__(self, layers: tuple[int, int, int, int], embedding_size: int = 512, dropout: float = 0.4):
        super().__init__()
        self.layers_cfg = tuple(layers)
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, **_BN)
        self.prelu = nn.PReLU(64)
        inplanes = 64
        for k, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
            down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, **_BN))
            blocks = [IBasicBlock(inplanes, planes, 2, down)] + [IBasicBlock(planes, planes) for _ in range(n - 1)]
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(512, **_BN)
        self.dropout = nn.Dropout2d(p=dropout)
        self.fc = nn.Linear(512 * 7 * 7, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, **_BN)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x))
        return self.features(self.fc(torch.flatten(x, 1)))


def build_iresnet(arch: str, **kw) -> IResNet:
    """A randomly initialised iResNet of a registered architecture."""
    if arch not in ARCHS:
        raise QMagError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    return IResNet(ARCHS[arch], **kw)


_BLOCK_KEY = re.compile(r"layer([1-4])\.(\d+)\.conv1\.weight$")


def guess_arch(keys) -> str | None:
    """The registered architecture whose blocks per stage match the checkpoint keys."""
    per_stage: dict[int, set[int]] = {}
    for k in keys:
        m = _BLOCK_KEY.search(k)
        if m:
            per_stage.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    counts = tuple(len(per_stage.get(s, ())) for s in (1, 2, 3, 4))
    for name, cfg in ARCHS.items():
        if cfg == counts:
            return name
    return None


def _backbone_prefix(keys) -> str:
    """The prefix in front of the backbone's own names (``features.module.`` etc.),
    read off the one key every iResNet has: ``layer1.0.conv1.weight``."""
    anchor = "layer1.0.conv1.weight"
    found = Counter(k[: -len(anchor)] for k in keys if k.endswith(anchor))
    return found.most_common(1)[0][0] if found else ""


def _first_line(msg: str) -> str:
    lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip()]
    return lines[0][:200] if lines else ""


def load_magface_checkpoint(path: str | Path, arch: str = "iresnet100", *, map_location="cpu") -> IResNet:
    """Load an official MagFace checkpoint (or a plain state_dict) into an iResNet.

    The file is read with ``torch.load(..., weights_only=True)``: a pickle that would
    run code is refused.  Official files hold ``{"state_dict": {...}}`` whose backbone
    keys carry a prefix (``features.module.``, ``module.features.``, …) and whose
    training-time classification head sits outside that prefix (e.g. top-level
    ``fc.weight``); keys outside the backbone prefix are dropped *before* the prefix is
    stripped, so the backbone's own ``fc`` (512·7·7 → 512) stays.  Names and shapes
    must then match exactly; the error lists missing/unexpected keys and the
    architecture the checkpoint looks like.
    """
    p = Path(path)
    obj = _load_tensors(p, map_location)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{p.name}: expected a state_dict (name → tensor) or {{'state_dict': ...}}")
    prefix = _backbone_prefix(sd.keys())
    backbone = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    model = build_iresnet(arch)
    _check_keys(model.state_dict(), backbone, arch, p.name)
    model.load_state_dict(backbone, strict=True)
    return model.eval()


def _load_tensors(p: Path, map_location):
    """``torch.load(p, weights_only=True)`` with size cap and one-line errors."""
    import pickle

    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint file not found")
    if not p.is_file():
        from ..safeio import kind_of

        raise CheckpointError(f"{p.name}: {kind_of(p.stat().st_mode)}, not a regular file")
    from ..limits import limit

    cap = limit("QMAG_MAX_CHECKPOINT_BYTES")
    if p.stat().st_size > cap:
        raise CheckpointError(
            f"{p.name}: {p.stat().st_size / 2**30:.1f} GiB, above the checkpoint limit of "
            f"{cap / 2**30:.1f} GiB (QMAG_MAX_CHECKPOINT_BYTES)"
        )
    try:
        obj = torch.load(str(p), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        m = re.search(r"unsupported (?:global:? )?GLOBAL ([\w.]+)", msg, re.I)
        if m:
            what = m.group(1)
            raise CheckpointError(
                f"{p.name}: refused to load: the file would run or build {what}, not just "
                "tensors (loaded with weights_only=True; only use checkpoints you trust)"
            ) from None
        op = re.search(r"Unsupported operand \d+", msg)
        raise CheckpointError(
            f"{p.name}: not a readable PyTorch checkpoint (weights_only load failed: "
            f"{op.group(0) if op else _first_line(msg)})"
        ) from None
    except Exception as e:  # noqa: BLE001 - torch.load raises many types for junk files (IndexError for 5 bytes)
        raise CheckpointError(
            f"{p.name}: not a readable PyTorch checkpoint ({_first_line(str(e)) or type(e).__name__})"
        ) from None
    return obj


def _check_keys(expected: dict, backbone: dict, arch: str, name: str) -> None:
    """Names and shapes must match exactly; the error lists what differs and the
    architecture the checkpoint looks like."""
    missing = sorted(set(expected) - set(backbone))
    unexpected = sorted(set(backbone) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(backbone) if tuple(expected[k].shape) != tuple(backbone[k].shape)
    )
    if not (missing or unexpected or wrong_shape):
        return
    likely = guess_arch(backbone.keys())
    hint = (
        f"; the checkpoint looks like {likely}"
        if likely and likely != arch
        else ("" if likely else "; it does not look like any registered iResNet")
    )

    def show(ks):
        return ", ".join(ks[:6]) + (f" … (+{len(ks) - 6})" if len(ks) > 6 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({show(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({show(unexpected)})")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} keys with other shapes ({show(wrong_shape)})")
    raise CheckpointError(f"{name} does not match {arch}: " + "; ".join(parts) + hint)


# ------------------------------------------------------------------ the encoder
def _bgr_unit(crops: np.ndarray) -> np.ndarray:
    """MagFace inference: BGR channel order, ToTensor scaling to [0, 1], no mean/std."""
    return np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def _bgr_unit_torch(px):
    return px.flip(1) / 255.0  # RGB -> BGR, [0, 1]


def magface_encoder(
    encoder_id: str = "magface", *, checkpoint=None, arch="iresnet100", device="auto", fp16=False, flip=False, **_
) -> TorchEncoder:
    """``magface``: an official MagFace checkpoint on its iResNet (512-d, arcface-112 crops)."""
    if not checkpoint:
        raise QMagError("the 'magface' encoder needs a checkpoint path (--checkpoint) and an architecture (--arch)")
    return TorchEncoder(
        load_magface_checkpoint(checkpoint, arch),
        id="magface",
        spec=ARCFACE_112,
        dim=512,
        quality="MagFace embedding length ||e||",
        key=f"magface-{arch}-{file_key(checkpoint)}{'-flip' if flip else ''}",
        preprocess=_bgr_unit,
        torch_pre=_bgr_unit_torch,
        device=device,
        fp16=fp16,
        flip=flip,
    )
