"""Command line: ``python -m qmag_core`` (installed as ``qmag``).

Sub-commands ``train``, ``evaluate``, ``score`` and ``make-pairs`` import neither torch
nor sklearn (fast start).  Bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import QMagError, one_line
from .check import cmd_calibrate_quality, cmd_check
from .embed import cmd_embed
from .options import _add_encoder_options, _add_onnx_options, default_explain_method
from .scores import (
    _add_trainer_options,
    cmd_evaluate,
    cmd_make_pairs,
    cmd_score,
    cmd_train,
    nonneg_int,
    positive_float,
    positive_int,
    probability,
)
from .train import cmd_train_magface, cmd_train_quality
from .vision import cmd_compare, cmd_explain, cmd_export_onnx

EXIT_BAD_INPUT = 2


# ------------------------------------------------------------------------- main
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), like every other bad-input message."""

    def error(self, message):  # noqa: D401
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {one_line(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="qmag", description="QMagFace Studio command line")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="learn alpha/beta from a scores CSV (s,q1,q2,label[,fold])")
    p.add_argument("--scores", required=True)
    p.add_argument("--out", required=True, help="params JSON to write")
    p.add_argument("--encoder", default=None, help="encoder id of the scores (overrides the file's '# encoder=')")
    p.add_argument(
        "--bootstrap",
        type=nonneg_int,
        default=0,
        metavar="N",
        help="add a seeded bootstrap 95%% CI of alpha/beta (N resamples)",
    )
    _add_trainer_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="cosine vs QMagFace metrics on a scores CSV, or on images + pairs")
    p.add_argument("--scores", default=None)
    p.add_argument("--images", default=None, help="image folder the pairs refer to (embeds what the pairs need)")
    p.add_argument("--pairs", default=None, help="LFW pairs.txt or pairs CSV (with --images or --features)")
    p.add_argument(
        "--bin",
        default=None,
        help="insightface validation set (lfw.bin, agedb_30.bin, …): aligned "
        "112x112 crops, 10-fold accuracy; read without running its pickle",
    )
    p.add_argument(
        "--ijb",
        default=None,
        metavar="DIR",
        help="template verification (IJB-B/C layout: DIR/meta/<name>_face_tid_mid.txt, "
        "<name>_template_pair_label.txt, optional <name>_name_5pts_score.txt, DIR/loose_crop/)",
    )
    p.add_argument("--ijb-name", default=None, help="protocol name in DIR/meta (ijbb, ijbc; default: the only one)")
    p.add_argument(
        "--pool-temperature",
        type=positive_float,
        default=None,
        help="with --ijb: T of the softmax pooling rule, in q units (default: chosen on development data for "
        "builtin, see docs/results/explainable.md)",
    )
    p.add_argument(
        "--features",
        default=None,
        help="precomputed embeddings (.npz, a shard folder, .npy, feat.list): with --pairs (paths as in the "
        "embeddings) or --ijb",
    )
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--params", default=None, help="params JSON; without it alpha/beta are cross-fitted over folds")
    p.add_argument("--json", default=None, help="write the full report as JSON")
    _add_encoder_options(p)
    p.add_argument("--n-boot", type=positive_int, default=200, help="bootstrap resamples for the 95%% CIs")
    _add_trainer_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("score", help="add an s_hat column to a scores CSV")
    p.add_argument("--scores", required=True)
    p.add_argument("--params", required=True)
    p.add_argument("--out", default=None, help="output CSV (the input is never overwritten without --in-place)")
    p.add_argument(
        "--in-place", action="store_true", help="add (or replace) the s_hat column in --scores itself, atomically"
    )
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("embed", help="embed images into an .npz (failed images kept as rows)")
    p.add_argument("--images", default=None, help="folder of images (recursive)")
    p.add_argument("--list", default=None, help="text file with one image path per line")
    p.add_argument("--root", default=None, help="folder the --list paths are relative to")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--cache-dir", default=None, help="embedding cache (default ~/.cache/qmag or $QMAG_CACHE)")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default) or ray: the same pipeline as Ray Data actor stages (pip install .[ray])",
    )
    p.add_argument(
        "--address", default=None, help="with --engine ray: a cluster (auto, ray://host:10001); default local"
    )
    p.add_argument(
        "--shard-size",
        type=positive_int,
        default=None,
        help="very large sets: --out is a folder of .npz shards of this many images each (+ manifest.json), "
        "each written when done; rerunning resumes; every command reads the folder like one .npz",
    )
    _add_encoder_options(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("compare", help="quality per image, s and s_hat per pair, decision at an FMR")
    p.add_argument("images", nargs="+")
    p.add_argument("--params", default=None, help="params JSON (default: the encoder's shipped parameters)")
    p.add_argument("--fmr", type=probability, default=1e-3, help="operating point for the accept/reject decision")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_encoder_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("explain", help="pixel-level quality map of one face (PNG overlay + raw .npy)")
    p.add_argument("image")
    p.add_argument("--out", required=True, help="PNG: aligned crop | heatmap overlay")
    p.add_argument("--npy", default=None, help="raw map (default: next to --out)")
    best = default_explain_method()
    p.add_argument(
        "--method",
        choices=("gradient", "occlusion", "magnitude"),
        default=None,
        help=f"gradient (integrated gradients; needs torch), occlusion (any runtime) or magnitude (the published "
        f"PLQ formulation, |dq/dx| channel mean; needs torch); default: the best this install runs, here {best}",
    )
    p.add_argument(
        "--colours",
        choices=("fixed", "own"),
        default="fixed",
        help="fixed: the encoder's calibrated PLQ scale, the same colours for every photo (when it has one); "
        "own: scaled by this map's 99th percentile",
    )
    p.add_argument("--steps", type=positive_int, default=64, help="integration steps (gradient)")
    p.add_argument("--patch", type=positive_int, default=16, help="patch size in px (occlusion)")
    p.add_argument("--stride", type=positive_int, default=8, help="patch stride in px (occlusion)")
    p.add_argument(
        "--fill",
        choices=("blur", "grey"),
        default="blur",
        help="occlusion: replace each patch by the blurred crop (detail) or mid-grey (content)",
    )
    _add_encoder_options(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("check", help="enrolment check: verdict, quality scale, regions to change, repaired preview")
    p.add_argument("images", nargs="+")
    p.add_argument("--json", default=None, help='write {"reports": [...]} here (one report per image, input order)')
    p.add_argument("--scale", default=None, help="quality scale JSON (default: the encoder's shipped scale)")
    p.add_argument("--no-map", action="store_true", help="skip the quality map (region shares are then 0)")
    _add_encoder_options(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "calibrate-quality", help="quality scale (0-100, bands) for an encoder from a scores CSV of its pairs"
    )
    p.add_argument("--scores", required=True, help="scores CSV s,q1,q2,label of reference pairs")
    p.add_argument("--out", required=True, help="scale JSON")
    p.add_argument("--fmr", type=probability, default=1e-3, help="operating point of the scale")
    p.add_argument("--bins", type=positive_int, default=20, help="quantile bins of the worse q")
    p.add_argument("--encoder-id", default=None, help="the encoder the scores came from (recorded in the file)")
    p.set_defaults(func=cmd_calibrate_quality)

    p = sub.add_parser("train-magface", help="train a MagFace quality head on the built-in backbone")
    p.add_argument("--data", required=True, help="folder with one sub-folder of images per identity")
    p.add_argument("--out", required=True, help="quality head file (.pt, tensors only)")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--lr", type=positive_float, default=0.05)
    p.add_argument("--dim", type=positive_int, default=128)
    p.add_argument("--degraded", type=nonneg_int, default=6, help="seeded degraded copies per image")
    p.add_argument("--max-severity", type=positive_float, default=1.0, help="degradation severities ~ U(0.1, this)")
    p.add_argument(
        "--features",
        choices=("multi", "pooled"),
        default="multi",
        help="head input: per-stage statistics + pooled layer (768-d), or the pooled layer (256-d)",
    )
    p.add_argument(
        "--direction",
        choices=("fixed", "free"),
        default="fixed",
        help="MagFace embedding: the backbone's own direction x the head's length (default; q then "
        "measures how well the direction the encoder matches with fits its identity) or the head's output",
    )
    p.add_argument("--u-a", type=positive_float, default=110.0, help="MagFace upper magnitude u_a (l_a 10)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--aligned", action="store_true", help="images are aligned ArcFace-112 crops")
    p.add_argument("--checkpoint", default=None, help="resumable checkpoint (default OUT.ckpt)")
    p.add_argument("--log", default=None, help="JSON training log (default OUT.log.json)")
    p.set_defaults(func=cmd_train_magface)

    p = sub.add_parser(
        "train-quality",
        help="train a utility quality head (q = predicted cosine to the clean "
        "capture x 100) on the built-in backbone; no identity labels needed beyond the folders",
    )
    p.add_argument("--data", required=True, help="folder with one sub-folder of images per identity (photos or crops)")
    p.add_argument(
        "--out",
        default=None,
        help="quality head file (.pt, tensors only; use with --head); with --onnx: MODEL.quality.npz beside the "
        "model by default, picked up whenever the model is opened",
    )
    p.add_argument(
        "--family",
        choices=("both", "crop", "capture"),
        default="both",
        help="degradations for the targets: of the aligned crop, of the whole photo before detection, or both",
    )
    p.add_argument("--degraded", type=positive_int, default=2, help="seeded degraded versions per image and family")
    p.add_argument(
        "--val-fraction", type=probability, default=0.25, help="identities held out to choose the ridge strength"
    )
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--aligned", action="store_true", help="images are aligned ArcFace-112 crops (crop family only)")
    g = p.add_argument_group("any face model: a head on the embedding alone (numpy; no torch needed)")
    _add_onnx_options(g)
    p.set_defaults(func=cmd_train_quality)

    p = sub.add_parser(
        "export-onnx", help="export an encoder (with its quality head) to one ONNX graph with a dynamic batch axis"
    )
    p.add_argument("--out", required=True, help="model.onnx")
    p.add_argument("--opset", type=positive_int, default=17)
    p.add_argument(
        "--int8",
        action="store_true",
        help="write an int8 graph (onnxruntime static quantization, calibrated on --calibration photos)",
    )
    p.add_argument("--calibration", default=None, help="with --int8: a folder of real photos (or crops with --aligned)")
    p.add_argument("--calibration-count", type=positive_int, default=256, help="photos used for calibration")
    _add_encoder_options(p)
    p.set_defaults(func=cmd_export_onnx)

    p = sub.add_parser("make-pairs", help="seeded genuine/imposter pairs for a folder-per-identity image set")
    p.add_argument("--images", required=True)
    p.add_argument("--genuine", type=nonneg_int, required=True)
    p.add_argument("--imposter", type=nonneg_int, required=True)
    p.add_argument("--folds", type=positive_int, default=10)
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_make_pairs)
    return ap


#: per command: the arguments that name a file it writes, and those that name its inputs
_WRITES = {
    "train": (("out",), ("scores",)),
    "evaluate": (("json",), ("scores", "pairs", "bin", "features", "params")),
    "score": (("out",), ("scores", "params")),
    "embed": (("out",), ("list",)),
    "explain": (("out", "npy"), ("image", "onnx", "checkpoint", "head")),
    "check": (("json",), ("images", "scale", "onnx", "checkpoint", "head")),
    "calibrate-quality": (("out",), ("scores",)),
    "train-magface": (("out", "checkpoint", "log"), ()),
    "train-quality": (("out",), ()),
    "export-onnx": (("out",), ("onnx", "checkpoint", "head")),
    "make-pairs": (("out",), ()),
}


def check_outputs(a) -> None:
    """Before any work: every output of the command can be written (folder exists and is
    writable, not a folder, not one of its inputs unless ``score --in-place`` asked)."""
    from ..outputs import check_output

    outs, ins = _WRITES.get(a.cmd, ((), ()))
    inputs = [v for k in ins if isinstance(v := getattr(a, k, None), str)]
    inputs += [v for k in ins if isinstance(vs := getattr(a, k, None), list) for v in vs if isinstance(v, str)]
    if a.cmd == "embed" and not a.shard_size and not str(a.out).lower().endswith(".npz"):
        raise QMagError(f"--out {a.out}: expected a file name ending in .npz (or a folder, with --shard-size)")
    for k in outs:
        path = getattr(a, k, None)
        if isinstance(path, str):
            check_output(
                path,
                arg="--" + k.replace("_", "-"),
                inputs=inputs,
                folder=a.cmd == "embed" and bool(a.shard_size),
                overwrite_inputs=bool(getattr(a, "in_place", False)),
                overwrite_flag="--in-place" if a.cmd == "score" else None,
            )


#: optional dependency → the extra that installs it
_EXTRA_OF = {
    "torch": "vision",
    "torchvision": "vision",
    "facenet_pytorch": "vision",
    "streamlit": "app",
    "plotly": "app",
    "sklearn": "test",
}


def main(argv=None) -> int:
    """Run one command.  Bad input exits 2 with one line on stderr; an internal error
    exits 1 with one line (``QMAG_DEBUG=1`` shows its traceback)."""
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        check_outputs(a)
        return int(a.func(a) or 0)
    except (QMagError, OSError) as e:
        msg = str(e) if not isinstance(e, OSError) or not e.filename else f"{e.filename}: {e.strerror}"
        print(f"error: {one_line(msg)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("error: not enough memory for this input (see the size limits in docs/formats.md)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as e:
        extra = _EXTRA_OF.get((e.name or "").split(".")[0])
        if extra is None:
            return _internal_error(e)
        print(
            f"error: qmag {a.cmd} needs {e.name}, which is not installed: "
            f"pip install 'qmag-studio[{extra}]' (or pip install -r requirements.txt)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - never a traceback for a user
        return _internal_error(e)


def _internal_error(e: BaseException) -> int:
    if os.environ.get("QMAG_DEBUG"):
        raise e
    print(
        f"error: internal error ({type(e).__name__}: {one_line(e)[:300]}); "
        "rerun with QMAG_DEBUG=1 for the traceback and please report it",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
