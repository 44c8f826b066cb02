"""Writing on behalf of a user: outputs checked before the work, written atomically.

* :func:`check_output`: before any work starts, an output's folder must exist and be
  writable, the output must not be a folder, and it must not be one of the command's
  inputs (same resolved path or same file) unless the user asked for that.
* :func:`atomic_path` / :func:`atomic_write` / :func:`save_npz`: results go to a
  temporary file in the destination's folder, renamed over it in one step, so an
  interrupted write never leaves a truncated file.  The temporary name says which
  process made it (``.NAME.<pid>.<random>.tmp.EXT``); one left behind by a process
  that is gone (killed mid-write) is removed by the next write to the same name.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from .errors import QMagError

__all__ = ["OutputError", "check_output", "atomic_path", "atomic_write", "save_npz", "clean_stale_temps"]


class OutputError(QMagError):
    """An output cannot be written where the user asked (checked before the work)."""


def check_output(
    path: str | os.PathLike,
    *,
    arg: str = "--out",
    inputs: Sequence[str | os.PathLike] = (),
    folder: bool = False,
    overwrite_inputs: bool = False,
    overwrite_flag: str | None = None,
    folders: Sequence[tuple[str | os.PathLike, Callable[[Path], bool] | None]] = (),
) -> Path:
    """``path`` as a Path once it is known that the work's result can be written there:
    its folder exists and is writable, it is not a folder (``folder=True``: it is one,
    or will be made), and it is none of ``inputs`` (by resolved path or by inode) unless
    ``overwrite_inputs`` (``overwrite_flag``: the option that asks for it, named in the
    message), nor an existing file inside one of the input ``folders`` that the command
    reads (``(folder, reads)``: ``reads(path)`` says whether it reads that file; None:
    every file).  :class:`OutputError` naming ``arg`` otherwise."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not str(path).strip():
        raise OutputError(f"{arg}: empty path; expected a file to write")
    if not parent.is_dir():
        why = "does not exist" if not parent.exists() else "is not a folder"
        raise OutputError(f"{arg} {path}: the folder {parent} {why}; create it first")
    if p.is_dir() and not folder:
        raise OutputError(f"{arg} {path}: is a folder; expected a file to write")
    if p.exists() and not p.is_dir() and folder:
        raise OutputError(f"{arg} {path}: is a file; expected a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{arg} {path}: the folder {parent} is not writable")
    if not overwrite_inputs:
        for src in inputs:
            if _same_file(p, Path(src)):
                how = f", or give {overwrite_flag} to overwrite it" if overwrite_flag else ""
                raise OutputError(f"{arg} {path}: is also an input ({src}); write elsewhere{how}")
        for folder, reads in folders:
            if _inside(p, Path(folder)) and (reads is None or reads(p)):
                raise OutputError(
                    f"{arg} {path}: is a file this command reads (in its input folder {folder}); write elsewhere"
                )
    return p


def _inside(p: Path, folder: Path) -> bool:
    """Whether ``p`` is an existing file (or a link to one) below ``folder``, by resolved path."""
    try:
        if not p.is_file():
            return False
        real, top = p.resolve(), folder.resolve()
        return real != top and (top in real.parents or p.absolute().parent.resolve().is_relative_to(top))
    except OSError:
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _mode_for(dest: Path) -> int:
    """The permission bits a replaced file keeps, or what a plain ``open(..., "w")``
    would give a new one (0666 minus the umask)."""
    try:
        return os.stat(dest).st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its file alone
    return True


def clean_stale_temps(dest: str | os.PathLike) -> list[str]:
    """Remove the temporary files of earlier writes to ``dest`` whose process is gone
    (this module's naming only; a live writer's file is kept).  Returns their names."""
    dest = Path(dest)
    folder = dest.parent if str(dest.parent) else Path(".")
    pat = re.compile(r"^\." + re.escape(dest.name) + r"\.(\d+)\.[^.]+\.tmp" + re.escape(dest.suffix) + "$")
    gone = []
    try:
        names = os.listdir(folder)
    except OSError:
        return gone
    for name in names:
        m = pat.match(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            try:
                os.unlink(folder / name)
                gone.append(name)
            except OSError:
                pass
    return gone


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path in the folder of ``path`` (same suffix); when the block
    succeeds it replaces ``path`` in one rename, otherwise it is removed."""
    dest = Path(path)
    folder = dest.parent if str(dest.parent) else Path(".")
    clean_stale_temps(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp" + dest.suffix, dir=folder)
    except OSError as e:  # the folder vanished or is read-only: name the output, not the temp file
        raise OutputError(f"{dest}: cannot be written ({e.strerror})") from None
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # data on disk before the rename
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode_for(dest))  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO]:
    """``open(path, mode)`` that writes a temporary file and renames it over ``path``
    only when the block finishes without an exception."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding, newline=newline) as fh:
            yield fh


def save_npz(path: str | os.PathLike, **arrays) -> None:
    """``np.savez`` written atomically to exactly ``path``."""
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **arrays)
