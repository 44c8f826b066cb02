"""``qmag embed``: images to an ``.npz`` (or a folder of shards), on the local engine or
Ray, with progress and a summary on stderr."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import QMagError, one_line
from .options import add_encoder_options, batch_int, encoder_from_args, int_in, progress_bar


def _run_engine(a, paths, root, enc, *, progress, stats, keep_alive: bool = False):
    """One call of the chosen engine (local or Ray) on ``paths``."""
    from ..pipeline.embed import embed_files

    common = {
        "batch_size": a.batch_size,
        "face": a.face,
        "cache_dir": None if a.no_cache else (a.cache_dir or "default"),
        "progress": progress,
        "stats": stats,
    }
    if vars(a).get("engine", "local") == "ray":
        from ..pipeline.ray import embed_files_ray

        if a.aligned:
            raise QMagError("--engine ray detects faces; embed aligned crops with the local engine")
        opts = {"checkpoint": a.checkpoint, "arch": a.arch, "fp16": a.fp16, "flip": a.flip, "head": a.head}
        ray_kw = {"encoder_options": opts, "address": a.address, "keep_alive": keep_alive}
        return embed_files_ray(paths, root, enc, **ray_kw, **common)
    return embed_files(paths, root, enc, aligned=a.aligned, **common)


def _report_stats(st, failed: list[tuple[str, str]]) -> None:
    print(
        f"{st.n_images} images: {st.n_embedded} embedded, {st.n_cached} from cache, {st.n_failed} failed "
        f"({st.seconds:.1f} s)",
        file=sys.stderr,
    )
    if len(st.nodes) > 1:
        spread = ", ".join(f"{k[:8]}… {v}" for k, v in sorted(st.nodes.items()))
        print(f"ray: detection ran on {len(st.nodes)} nodes ({spread} images)", file=sys.stderr)
    for msg in st.cache_damaged:
        print(f"warning: embedding cache: {msg}; its images were embedded again", file=sys.stderr)
    for p, e in failed[:10]:
        print(f"  failed: {e if p in e else f'{p}: {e}'}", file=sys.stderr)


def _failures(emb) -> list[tuple[str, str]]:
    return list(zip(emb.paths[~emb.ok].tolist(), emb.error[~emb.ok].tolist(), strict=True))


def embed_paths(a, paths, root):
    from ..pipeline.embed import EmbedStats

    enc = encoder_from_args(a)
    st = EmbedStats()
    emb = _run_engine(a, paths, root, enc, progress=progress_bar(len(paths), f"embedding ({enc.id})"), stats=st)
    _report_stats(st, _failures(emb))
    return emb, enc


def _kept_shards(out: Path, chunks: list) -> list[dict]:
    """Manifest entries of the shards already in ``out`` that hold exactly ``chunks``'
    images, in order (a rerun resumes after them)."""
    from ..io.embeddings import MANIFEST, load_embeddings_npz, read_shard_manifest, shard_name

    kept: list[dict] = []
    if not (out / MANIFEST).is_file():
        return kept
    for k, x in enumerate(read_shard_manifest(out)["parts"]):
        f = out / x["file"]
        if k >= len(chunks) or x["file"] != shard_name(k) or not f.is_file():
            break
        if load_embeddings_npz(f).paths.tolist() != [str(p) for p in chunks[k]]:
            raise QMagError(f"--out {out} holds shards of another image list or shard size; use another folder")
        kept.append(x)
    return kept


def _embed_sharded(a, paths, root) -> int:
    """``--shard-size N``: ``--out`` is a folder; each run of N images is embedded and
    written as ``part-NNNNN.npz`` as soon as it is done, then the manifest; rerunning the
    same command keeps the finished shards and embeds the rest."""
    from ..io.embeddings import MANIFEST, save_shard, write_shard_manifest
    from ..pipeline.embed import EmbedStats

    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise QMagError(f"--out {out}: with --shard-size, --out is a folder (this is a file)")
    out.mkdir(parents=True, exist_ok=True)
    chunks = [paths[k : k + a.shard_size] for k in range(0, len(paths), a.shard_size)]
    parts = _kept_shards(out, chunks)
    n_kept = len(parts)
    enc = encoder_from_args(a)
    total, failed = EmbedStats(), []
    bar = progress_bar(len(paths), f"embedding ({enc.id}, {len(chunks)} shards)")
    bar(sum(x["rows"] for x in parts), len(paths))
    for k in range(n_kept, len(chunks)):
        st, base = EmbedStats(), k * a.shard_size
        last = k + 1 == len(chunks)
        emb = _run_engine(
            a, chunks[k], root, enc, progress=lambda d, n, b=base: bar(b + d, len(paths)), stats=st, keep_alive=not last
        )
        parts.append(save_shard(out, k, emb))
        write_shard_manifest(out, parts, total=len(paths), complete=last)
        for f in ("n_images", "n_cached", "n_embedded", "n_failed", "seconds"):
            setattr(total, f, getattr(total, f) + getattr(st, f))
        total.cache_damaged += st.cache_damaged
        failed += _failures(emb)
    if n_kept == len(chunks):  # nothing left to do: make sure the manifest says so
        write_shard_manifest(out, parts, total=len(paths), complete=True)
    _report_stats(total, failed)
    n_ok = sum(x["ok"] for x in parts)
    print(f"{n_ok}/{len(paths)} embedded -> {out}/ ({len(chunks)} shards, {n_kept} kept from before; {MANIFEST})")
    return 0


def listed_images(a) -> tuple[str, list[str]]:
    """``(root, paths)`` of ``--list FILE``: one path per line (``#`` comments), each
    confined under ``--root`` (default: the list's folder)."""
    from ..safeio import confine_paths, read_text

    text = read_text(a.list, expected="one image path per line", lines=True)
    rows = [
        (k + 1, ln.strip()) for k, ln in enumerate(text.splitlines()) if ln.strip() and not ln.lstrip().startswith("#")
    ]
    paths = [r[1] for r in rows]
    root = a.root or (os.path.dirname(os.path.abspath(a.list)))
    if not Path(root).is_dir():
        raise QMagError(f"--root {root}: not a folder")
    confine_paths(paths, root, source=a.list, lines=[r[0] for r in rows])
    return root, paths


def cmd_embed(a) -> int:
    from ..io.embeddings import save_embeddings
    from ..safeio import confine_paths
    from ..vision.images import list_images

    if bool(a.images) == bool(a.list):
        raise QMagError("give either --images DIR or --list FILE")
    if a.images:  # every path checked before anything is written (a link leading out refuses the folder)
        root, paths = a.images, list_images(a.images)
        confine_paths(paths, root)
    else:
        root, paths = listed_images(a)
    source = f"--list {a.list}" if a.list else f"--images {a.images}"
    if not paths:
        raise QMagError(f"{source}: no image paths in it" if a.list else f"{source}: no images in this folder")
    if a.shard_size:
        return _embed_sharded(a, paths, root)
    emb, _ = embed_paths(a, paths, root)
    out = save_embeddings(a.out, emb)
    print(f"{int(emb.ok.sum())}/{len(paths)} embedded -> {out}")
    if not emb.ok.any():  # every row failed: surely the wrong list or root (the rows are written all the same)
        first = next(iter(_failures(emb)), ("", ""))[1]
        print(
            f"error: {source}: none of its {len(paths)} images could be embedded (first: {one_line(first, 200)})",
            file=sys.stderr,
        )
        return 2
    return 0


# ---------------------------------------------------------------- the parser
def _parser_embed(sub) -> None:
    p = sub.add_parser("embed", help="embed images into an .npz (failed images kept as rows)")
    p.add_argument("--images", default=None, help="folder of images (recursive)")
    p.add_argument("--list", default=None, help="text file with one image path per line")
    p.add_argument("--root", default=None, help="folder the --list paths are relative to")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=batch_int, default=32)
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
        type=int_in(1, 10_000_000),
        default=None,
        help="very large sets: --out is a folder of .npz shards of this many images each (+ manifest.json), "
        "each written when done; rerunning resumes; every command reads the folder like one .npz",
    )
    add_encoder_options(p)
    p.set_defaults(
        func=cmd_embed,
        writes=("out",),
        reads=("list", "images", "root"),
        image_folders=("images", "root"),
        inputs_of=lambda a: [os.path.join(r, q) for r, ps in [listed_images(a)] for q in ps] if a.list else [],
    )


def add_embed_commands(sub) -> None:
    """Add ``embed`` to the ``qmag`` sub-parsers."""
    _parser_embed(sub)
