"""faceRecognitionNet of face-api.js (a port of dlib's ResNet face descriptor) in PyTorch.

The weights ship unchanged with the package (``qmag_core/assets/faceapi``: the
``.bin`` + its tfjs weights manifest from ``@vladmandic/face-api`` 1.7.15, MIT) and are
decoded here at load time: tensors are stored back to back in manifest order, either
float32 or uint8-quantised with ``value = q · scale + min``.

Network (150×150 RGB input, 128-d unnormalised descriptor):

* input: subtract the mean RGB (122.782, 117.001, 104.298), divide by 255
* conv 7×7/2 'valid' (32) + bias + per-channel scale + ReLU, max-pool 3×3/2 'valid'
* residual blocks: conv3×3 → scale → ReLU → conv3×3 → scale, + identity, ReLU
  (32×3; 64: down + 3; 128: down + 2; 256: down + 2 + down_out)
* down blocks: first conv 3×3/2 'valid'; the shortcut is a 2×2/2 average pool,
  zero-padded in channels when they double; when the conv output is one pixel smaller
  than the pooled shortcut it is zero-padded at the bottom/right.
* global average pool → 256 → fc 256×128 (no bias).

Each conv has its own bias and an affine "scale" layer (dlib's batch-norm folded).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import QMagError
from ..vision.align import DLIB_150
from .keys import BUILTIN_HEAD, builtin_key
from .torch_encoder import TorchEncoder

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "faceapi"
WEIGHTS_BIN = ASSET_DIR / "face_recognition_model.bin"
MANIFEST = ASSET_DIR / "face_recognition_model-weights_manifest.json"
MANIFEST_SHA256 = "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b"
MEAN_RGB = (122.782, 117.001, 104.298)
INPUT_SIZE = 150

_STAGES = [  # (block name, in, out, down)
    ("conv32_1", 32, 32, False),
    ("conv32_2", 32, 32, False),
    ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True),
    ("conv64_1", 64, 64, False),
    ("conv64_2", 64, 64, False),
    ("conv64_3", 64, 64, False),
    ("conv128_down", 64, 128, True),
    ("conv128_1", 128, 128, False),
    ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True),
    ("conv256_1", 256, 256, False),
    ("conv256_2", 256, 256, False),
    ("conv256_down_out", 256, 256, True),
]


class _ConvScale(nn.Module):
    """conv (with bias) followed by the per-channel affine scale layer."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=True)
        self.scale_w = nn.Parameter(torch.ones(cout))
        self.scale_b = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        return self.conv(x) * self.scale_w[:, None, None] + self.scale_b[:, None, None]


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = _ConvScale(cin, cout, 3, 2 if down else 1, 0 if down else 1)
        self.conv2 = _ConvScale(cout, cout, 3, 1, 1)

    def forward(self, x):
        out = self.conv2(F.relu(self.conv1(x)))
        if self.down:
            sc = F.avg_pool2d(x, 2, 2)
            dh, dw = sc.shape[2] - out.shape[2], sc.shape[3] - out.shape[3]
            if dh or dw:
                out = F.pad(out, (0, dw, 0, dh))
            if sc.shape[1] != out.shape[1]:
                sc = torch.cat([sc, torch.zeros_like(sc)], dim=1)
        else:
            sc = x
        return F.relu(out + sc)


class FaceRecognitionNet(nn.Module):
    """dlib/face-api.js face descriptor network.

    ``forward`` takes float RGB pixels in [0, 255], shape (B, 3, 150, 150), and
    returns (B, 128) descriptors; ``features`` returns the (B, 256) pooled layer.
    """

    def __init__(self):
        super().__init__()
        self.stem = _ConvScale(3, 32, 7, 2, 0)
        self.blocks = nn.ModuleList([_Residual(i, o, d) for _, i, o, d in _STAGES])
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("mean", torch.tensor(MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / 255.0
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for b in self.blocks:
            x = b(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    #: blocks after which a stage ends (32, 64, 128 channels) for :meth:`quality_features`
    STAGE_ENDS = (2, 6, 9)
    #: length of :meth:`quality_features`: stem + 3 stages (mean and std each) + pooled
    QUALITY_DIM = 2 * (32 + 32 + 64 + 128) + 256

    def quality_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 768) features for a quality head: spatial mean and standard deviation of
        the stem (7×7 conv, finest detail) and of the 32-, 64- and 128-channel stage
        outputs (texture and sharpness survive there), plus the final 256-d pooled
        descriptor layer — one forward pass."""
        x = (x - self.mean) / 255.0
        x = F.relu(self.stem(x))
        parts = [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        x = F.max_pool2d(x, 3, 2)
        for k, b in enumerate(self.blocks):
            x = b(x)
            if k in self.STAGE_ENDS:
                parts += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        parts.append(x.mean(dim=(2, 3)))
        return torch.cat(parts, dim=1)


def decode_weights(bin_path=WEIGHTS_BIN, manifest_path=MANIFEST) -> dict[str, np.ndarray]:
    """Decode the tfjs weight file into float32 arrays keyed by manifest name."""
    manifest = json.loads(Path(manifest_path).read_text())
    raw = Path(bin_path).read_bytes()
    out, off = {}, 0
    for group in manifest:
        for w in group["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            qz = w.get("quantization")
            if qz:
                if qz["dtype"] != "uint8":
                    raise ValueError(f"unsupported quantisation {qz['dtype']} for {w['name']}")
                q = np.frombuffer(raw, dtype=np.uint8, count=n, offset=off)
                off += n
                v = q.astype(np.float32) * np.float32(qz["scale"]) + np.float32(qz["min"])
            else:
                if w["dtype"] != "float32":
                    raise ValueError(f"unsupported dtype {w['dtype']} for {w['name']}")
                v = np.frombuffer(raw, dtype="<f4", count=n, offset=off).copy()
                off += 4 * n
            out[w["name"]] = v.reshape(w["shape"])
    if off != len(raw):
        raise ValueError(f"weight file has {len(raw)} bytes, manifest describes {off}")
    return out


def load_faceapi_net() -> FaceRecognitionNet:
    """The network with the shipped weights, in eval mode (CPU)."""
    w = decode_weights()
    net = FaceRecognitionNet()
    sd = {}

    def put(prefix, mod_prefix):
        f = w[f"{prefix}/conv/filters"]  # (kh, kw, in, out) -> (out, in, kh, kw)
        sd[f"{mod_prefix}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(f.transpose(3, 2, 0, 1)))
        sd[f"{mod_prefix}.conv.bias"] = torch.from_numpy(w[f"{prefix}/conv/bias"])
        sd[f"{mod_prefix}.scale_w"] = torch.from_numpy(w[f"{prefix}/scale/weights"])
        sd[f"{mod_prefix}.scale_b"] = torch.from_numpy(w[f"{prefix}/scale/biases"])

    put("conv32_down", "stem")
    for k, (name, *_rest) in enumerate(_STAGES):
        put(f"{name}/conv1", f"blocks.{k}.conv1")
        put(f"{name}/conv2", f"blocks.{k}.conv2")
    sd["fc.weight"] = torch.from_numpy(np.ascontiguousarray(w["fc"].T))
    sd["mean"] = net.mean
    net.load_state_dict(sd, strict=True)
    return net.eval()


# ------------------------------------------------------------------ the encoders
_HEAD_WORDS = {
    "utility": "utility quality head (q ≈ 100 × predicted cosine to the clean capture)",
    "magface": "MagFace quality head (q = head output length)",
}


def _pixels(crops: np.ndarray) -> np.ndarray:
    """RGB float pixels 0–255, NCHW (the network normalises internally)."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)


def _same(px):
    return px


def faceapi_encoder(encoder_id: str, *, device="auto", fp16=False, flip=False, head=None, **_) -> TorchEncoder:
    """``builtin`` (the network + its quality head: unit descriptor × q_head) or
    ``builtin-raw`` (the network alone, 128-d, length = weak quality proxy); dlib-150 crops."""
    from ..quality.head import QualityModel, load_quality_head

    net, separate = load_faceapi_net(), False
    quality = "length of the raw faceRecognitionNet descriptor (weak quality proxy)"
    if encoder_id == "builtin":
        head_path = Path(head) if head else BUILTIN_HEAD
        if not head_path.is_file():
            raise QMagError(
                f"quality head {head_path} is missing; reinstall the package or run tools/train_builtin_utility.py"
            )
        qhead, meta = load_quality_head(head_path)
        net = QualityModel(net, qhead, meta.get("features", "multi"))
        quality, separate = f"{_HEAD_WORDS[qhead.kind]} on the faceRecognitionNet port", True
    return TorchEncoder(
        net,
        id=encoder_id,
        spec=DLIB_150,
        dim=128,
        quality=quality,
        key=builtin_key(encoder_id, flip=flip, head=head_path if encoder_id == "builtin" else None),
        preprocess=_pixels,
        torch_pre=_same,
        device=device,
        fp16=fp16,
        flip=flip,
        separate_head=separate,
    )
