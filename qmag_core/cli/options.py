"""What the commands share: argument types, JSON output, the progress bar, and the options
of the commands that run a network (which encoder, on which runtime and device, and how a
photo's subject is chosen)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from ..errors import QMagError


# ------------------------------------------------------------- argument types
def int_in(lo: int, hi: int | None = None, what: str | None = None):
    """An argparse type: a whole number from ``lo`` to ``hi`` (None: no upper end).
    Every argument that sizes work has an upper end (docs/cli.md lists them)."""
    what = what or (f"an integer from {lo:,} to {hi:,}" if hi is not None else f"an integer >= {lo}")

    def parse(v: str) -> int:
        try:
            x = int(v) if len(v) <= 40 else None
        except ValueError:
            x = None
        if x is None:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v[:40]!r}")
        if x < lo or (hi is not None and x > hi):
            raise argparse.ArgumentTypeError(f"expected {what}, got {x:,}")
        return x

    parse.__name__ = what
    return parse


positive_int = int_in(1, None, "a positive integer")
nonneg_int = int_in(0, None, "an integer >= 0")
#: a random seed (numpy's generators take any whole number >= 0; this keeps it to 64 bits)
seed_int = int_in(0, 2**63 - 1)
#: a batch of crops through a network
batch_int = int_in(1, 4096)


def probability(v: str) -> float:
    """A number strictly between 0 and 1 (an FMR)."""
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1), got {v!r}") from None
    if not 0 < x < 1:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1), got {v}")
    return x


def positive_float(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v}")
    return x


def write_json(path: str, d: dict) -> None:
    from ..evaluation.protocol import jsonable
    from ..outputs import atomic_write

    with atomic_write(path) as fh:
        json.dump(jsonable(d), fh, indent=2)
        fh.write("\n")


def progress_bar(total: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None)

    def cb(done, n):
        bar.n = done
        bar.refresh()
        if done >= n:
            bar.close()

    return cb


def add_encoder_options(p: argparse.ArgumentParser) -> None:
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
        help="auto (default: the fastest here: the shipped ONNX graphs for builtin/builtin-raw on a CPU, torch "
        "for the rest when installed), torch, or onnx: onnxruntime runs MTCNN and the encoder (others: --onnx "
        "FILE, or exported once into the cache)",
    )
    add_onnx_options(g)
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


def add_onnx_options(g) -> None:
    """``--onnx FILE`` and the layout flags of a third-party model."""
    g.add_argument(
        "--onnx",
        default=None,
        help="an ONNX face model run by onnxruntime: a qmag export-onnx file, or any model in the insightface "
        "convention (one (N,3,S,S) RGB input, (x-127.5)/127.5 on an ArcFace crop, one (N,D) embedding output); "
        "the layout flags below override what the graph cannot say",
    )
    g.add_argument(
        "--input-size", type=_crop_size, default=None, help="--onnx: crop size S (default: the graph's, or 112)"
    )
    g.add_argument("--mean", type=_channels, default=None, help="--onnx: per-channel mean, 0-255 units (default 127.5)")
    g.add_argument("--std", type=_channels, default=None, help="--onnx: per-channel std, 0-255 units (default 127.5)")
    g.add_argument("--bgr", action="store_true", help="--onnx: the model takes BGR channels (default RGB)")
    g.add_argument(
        "--crop",
        choices=("arcface-112", "dlib-150"),
        default=None,
        help="--onnx: the aligned-crop template (default arcface-112; scaled to --input-size)",
    )


def _crop_size(text: str) -> int:
    if not text.strip().isdigit() or not 32 <= int(text) <= 1024:
        raise argparse.ArgumentTypeError(f"expected a crop size in pixels from 32 to 1024, got {text[:20]!r}")
    return int(text)


def _channels(text: str) -> tuple[float, float, float]:
    """``V`` or ``R,G,B``: finite numbers (std values positive are checked with the layout)."""
    import math

    parts = text.split(",")
    try:
        v = [float(x) for x in parts] if len(text) <= 80 and len(parts) in (1, 3) else None
    except ValueError:
        v = None
    if v is None or not all(math.isfinite(x) for x in v):
        raise argparse.ArgumentTypeError(f"expected one number or three (R,G,B), got {text[:40]!r}")
    return tuple(v * 3) if len(v) == 1 else tuple(v)


def layout_from_args(a):
    """The --onnx layout flags as an InputLayout (None when none was given)."""
    from ..encoders.foreign import InputLayout

    given = {
        "size": vars(a).get("input_size", None),
        "mean": vars(a).get("mean", None),
        "std": vars(a).get("std", None),
        "bgr": vars(a).get("bgr", False) or None,
        "crop": (vars(a).get("crop", None) or "").split("-")[0] or None,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    if any(s <= 0 for s in given.get("std", (1,))):
        raise QMagError(f"--std {','.join(map(str, given['std']))}: every channel's std must be positive")
    return InputLayout(**given)


def default_explain_method() -> str:
    """``explain``'s default: gradient maps where torch is installed, else occlusion."""
    from ..vision.runtime import torch_available

    return "gradient" if torch_available() else "occlusion"


def encoder_from_args(a):
    runtime = vars(a).get("runtime", "auto")
    if vars(a).get("onnx", None):
        if runtime == "torch":
            raise QMagError("--onnx FILE runs with onnxruntime: leave out --runtime torch")
        from ..encoders import open_onnx
        from ..encoders.foreign import ForeignOnnxEncoder

        enc = open_onnx(a.onnx, device=a.device, flip=a.flip, layout=layout_from_args(a))  # no torch needed
        if isinstance(enc, ForeignOnnxEncoder):
            print(f"warning: {enc.id} ({os.path.basename(a.onnx)}): q is its {enc.quality}", file=sys.stderr)
        return enc
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
        cache_dir=vars(a).get("cache_dir", None),
    )
