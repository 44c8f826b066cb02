"""Options shared by the commands that run a network: which encoder, on which runtime
and device, and how a photo's subject is chosen."""

from __future__ import annotations

import argparse

from ..errors import QMagError


def _add_encoder_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encoder")
    g.add_argument("--encoder", default="builtin", help="builtin | builtin-raw | magface (default builtin)")
    g.add_argument("--checkpoint", default=None, help="MagFace checkpoint (with --encoder magface)")
    g.add_argument("--arch", default="iresnet100", help="iresnet18|34|50|100 (with --encoder magface)")
    g.add_argument(
        "--head",
        default=None,
        help="quality head from train-magface (with --encoder builtin; default: the shipped head)",
    )
    g.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto (GPU when available) | cpu | cuda"
    )
    g.add_argument("--fp16", action="store_true", help="half precision on GPU")
    g.add_argument(
        "--runtime",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="auto (default: torch when installed, else onnx), torch, or onnx: onnxruntime runs MTCNN and the "
        "encoder (builtin/builtin-raw ship as ONNX; others: --onnx FILE, or exported once into the cache)",
    )
    g.add_argument(
        "--onnx", default=None, help="a model from qmag export-onnx, run by onnxruntime (not with --runtime torch)"
    )
    g.add_argument("--flip", action="store_true", help="add the descriptor of the mirrored face")
    g.add_argument(
        "--aligned",
        action="store_true",
        help="inputs are already aligned ArcFace-112 crops: skip detection (never done silently)",
    )
    g.add_argument(
        "--face",
        choices=("best", "largest", "center"),
        default="best",
        help="which face of a photo with several is the subject: best (default: a large face near "
        "the centre, area - 2 x squared centre offset), largest, or center",
    )


def default_explain_method() -> str:
    """``explain``'s default: gradient maps where torch is installed, else occlusion."""
    from ..vision.runtime import torch_available

    return "gradient" if torch_available() else "occlusion"


def _encoder_from_args(a):
    runtime = getattr(a, "runtime", "auto")
    if getattr(a, "onnx", None):
        if runtime == "torch":
            raise QMagError("--onnx FILE runs with onnxruntime: leave out --runtime torch")
        from ..encoders.onnx import OnnxEncoder

        return OnnxEncoder(a.onnx, device=a.device, flip=a.flip)  # the file names its encoder; no torch needed
    from ..encoders import load_encoder

    if a.head and a.encoder != "builtin":
        raise QMagError("--head is for --encoder builtin")
    return load_encoder(
        a.encoder,
        runtime="fast" if runtime == "auto" else runtime,  # --runtime auto: the fastest here (fast_runtime)
        checkpoint=a.checkpoint,
        arch=a.arch,
        device=a.device,
        fp16=a.fp16,
        flip=a.flip,
        head=a.head,
        cache_dir=getattr(a, "cache_dir", None),
    )
