"""Command line: ``python -m qmag_core`` (installed as ``qmag``).

Sub-commands ``train``, ``evaluate``, ``score`` and ``make-pairs`` import neither torch
nor sklearn (fast start).  Bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import QMagError, one_line
from .check import add_check_commands
from .embed import add_embed_commands
from .scores import add_scores_commands
from .train import add_train_commands
from .vision import add_vision_commands

EXIT_BAD_INPUT = 2


# ------------------------------------------------------------------------- main
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), like every other bad-input message."""

    def error(self, message):  # noqa: D401
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {one_line(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """``qmag`` and its sub-commands: each command module registers its own."""
    ap = _Parser(prog="qmag", description="QMagFace Studio command line")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    for add in (add_scores_commands, add_embed_commands, add_vision_commands, add_check_commands, add_train_commands):
        add(sub)
    return ap


def check_ray_engine(a) -> None:
    """Before any work, for every command with ``--engine ray --address``: someone
    answers at the address (a cached run would otherwise never ask Ray)."""
    args = vars(a)
    if args.get("engine") == "ray" and args.get("address"):
        from ..pipeline.ray import check_ray_address

        check_ray_address(args["address"])


def check_outputs(a) -> None:
    """Before any work: every output of the command can be written (folder exists and is
    writable, not a folder, not one of its inputs unless ``score --in-place`` asked)."""
    from ..outputs import check_output

    args = vars(a)
    outs = args.get("writes", ())
    inputs, folders = _inputs_of(a)
    if a.cmd == "embed" and not a.shard_size and not str(a.out).lower().endswith(".npz"):
        raise QMagError(f"--out {a.out}: expected a file name ending in .npz (or a folder, with --shard-size)")
    for k in outs:
        path = args.get(k)
        if isinstance(path, str):
            check_output(
                path,
                arg="--" + k.replace("_", "-"),
                inputs=inputs,
                folder=a.cmd == "embed" and bool(a.shard_size),
                overwrite_inputs=bool(args.get("in_place")),
                overwrite_flag="--in-place" if a.cmd == "score" else None,
                folders=folders,
            )


def _inputs_of(a) -> tuple[list[str], list[tuple]]:
    """The files a command reads (its file arguments and what it declares in
    ``inputs_of``) and its input folders with what it reads in each: the images of an
    image folder, every file of any other folder (IJB layouts, shard folders)."""
    from ..io.common import IMAGE_EXTENSIONS

    args = vars(a)
    named = [v for k in args.get("reads", ()) for v in _strings(args.get(k))]
    images_in = {v for k in args.get("image_folders", ()) for v in _strings(args.get(k))}
    files = [v for v in named if not os.path.isdir(v)]
    files += args["inputs_of"](a) if "inputs_of" in args else []
    is_image = lambda p: p.suffix.lower() in IMAGE_EXTENSIONS  # noqa: E731
    folders = [(v, is_image if v in images_in else None) for v in named if os.path.isdir(v)]
    return files, folders


def _strings(v) -> list[str]:
    return [v] if isinstance(v, str) else [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


#: optional dependency → the extra that installs it
_EXTRA_OF = {
    "torch": "vision",
    "torchvision": "vision",
    "facenet_pytorch": "vision",
    "streamlit": "app",
    "plotly": "app",
    "sklearn": "test",
}


def run_command(argv=None) -> int:
    """Run one command.  Bad input exits 2 with one line on stderr; an internal error
    exits 1 with one line (``QMAG_DEBUG=1`` shows its traceback)."""
    ap = build_parser()
    a = ap.parse_args(argv)
    _quiet_libraries()
    try:
        check_outputs(a)
        check_ray_engine(a)
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


def _quiet_libraries() -> None:
    """The libraries' own warnings (torch's UserWarnings and the like) stay off the
    terminal, so a failing command ends in its one error line; onnxruntime's and Ray's
    log levels are set where their sessions start.  ``QMAG_DEBUG=1`` shows them all."""
    import warnings

    if os.environ.get("QMAG_DEBUG"):
        return
    warnings.filterwarnings("ignore", module=r"(torch|torchvision|facenet_pytorch|onnx|onnxruntime|ray)(\.|$)")


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
    sys.exit(run_command())
