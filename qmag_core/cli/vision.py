"""The commands that run a network: embed, compare, explain, train-magface, train-quality,
and the image/.bin paths of evaluate.  Torch and facenet are imported inside each
command, so ``qmag train`` and friends start fast."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import QMagError, one_line
from ..evaluation.protocol import jsonable


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


def cmd_export_onnx(a) -> int:
    """Export the chosen encoder to one ONNX graph; check it against torch on a batch."""
    from ..encoders.onnx import OnnxEncoder, export_onnx

    if a.runtime == "onnx" or a.onnx:
        raise QMagError("export-onnx exports a torch encoder: leave out --runtime onnx/--onnx")
    a.runtime = "torch"
    enc = _encoder_from_args(a)
    meta = export_onnx(enc, a.out, opset=a.opset)
    crops = np.random.default_rng(0).integers(0, 256, (4, enc.spec.size, enc.spec.size, 3), dtype=np.uint8)
    ref, got = enc.embed(crops), OnnxEncoder(a.out, device="cpu").embed(crops)
    rel = float(np.max(np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)))
    print(
        f"wrote {a.out}: encoder {meta['qmag.encoder_id']} ({meta['qmag.encoder_key']}), input {meta['qmag.input']}, "
        f"opset {a.opset}; onnxruntime vs torch on 4 random crops: max relative difference {rel:.2e}"
    )
    return 0


def _progress_bar(total: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None)

    def cb(done, n):
        bar.n = done
        bar.refresh()
        if done >= n:
            bar.close()

    return cb


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
    if getattr(a, "engine", "local") == "ray":
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


def _embed_paths(a, paths, root):
    from ..pipeline.embed import EmbedStats

    enc = _encoder_from_args(a)
    st = EmbedStats()
    emb = _run_engine(a, paths, root, enc, progress=_progress_bar(len(paths), f"embedding ({enc.id})"), stats=st)
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
    enc = _encoder_from_args(a)
    total, failed = EmbedStats(), []
    bar = _progress_bar(len(paths), f"embedding ({enc.id}, {len(chunks)} shards)")
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


def cmd_embed(a) -> int:
    from ..io.embeddings import save_embeddings
    from ..safeio import confine_paths, read_text
    from ..vision.images import list_images

    if bool(a.images) == bool(a.list):
        raise QMagError("give either --images DIR or --list FILE")
    if a.images:
        root, paths = a.images, list_images(a.images)
    else:
        text = read_text(a.list, expected="one image path per line", lines=True)
        rows = [
            (k + 1, ln.strip())
            for k, ln in enumerate(text.splitlines())
            if ln.strip() and not ln.lstrip().startswith("#")
        ]
        paths = [r[1] for r in rows]
        root = a.root or (os.path.dirname(os.path.abspath(a.list)))
        if not Path(root).is_dir():
            raise QMagError(f"--root {root}: not a folder")
        confine_paths(paths, root, source=a.list, lines=[r[0] for r in rows])
    source = f"--list {a.list}" if a.list else f"--images {a.images}"
    if not paths:
        raise QMagError(f"{source}: no image paths in it" if a.list else f"{source}: no images in this folder")
    if a.shard_size:
        return _embed_sharded(a, paths, root)
    emb, _ = _embed_paths(a, paths, root)
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


def cmd_compare(a) -> int:
    from ..pipeline.compare import compare_images, default_params
    from ..scores.params import QMagFaceParams

    enc = _encoder_from_args(a)
    params = QMagFaceParams.load(a.params) if a.params else default_params(enc.id)
    if params is not None and (why := params.quality_mismatch(enc.key)):
        print(f"warning: {why}", file=sys.stderr)
    res = compare_images(
        a.images,
        enc,
        names=[os.path.basename(x) for x in a.images],
        params=params,
        fmr=a.fmr,
        aligned=a.aligned,
        face=a.face,
    )
    out = {
        "encoder": enc.id,
        "fmr": res.fmr,
        "threshold_s": res.threshold_s,
        "threshold_s_hat": res.threshold_s_hat,
        "alpha": params.alpha if params else None,
        "beta": params.beta if params else None,
        "face_rule": a.face,
        "images": [
            {
                "name": r.name,
                "ok": r.ok,
                "error": r.error,
                "quality": r.quality,
                "n_faces": r.n_faces,
                "face_index": None if r.aligned is None else r.aligned.face_index,
                "box": None if r.aligned is None or r.aligned.face is None else r.aligned.face.box,
            }
            for r in res.images
        ],
        "pairs": [
            {
                "image1": res.images[p.i].name,
                "image2": res.images[p.j].name,
                "s": p.s,
                "s_hat": p.s_hat,
                "q_min": p.q_min,
                "accept_s": p.accept_s,
                "accept_s_hat": p.accept_s_hat,
            }
            for p in res.pairs
        ],
    }
    if a.json:
        print(json.dumps(jsonable(out), indent=2))
        return _image_failures(res.images)
    for r in res.images:
        extra = (
            f"  ({r.n_faces} faces; face {r.aligned.face_index + 1} by size chosen by rule '{a.face}')"
            if r.n_faces > 1
            else ""
        )
        print(f"{r.name}: q={r.quality:.3f}{extra}" if r.ok else f"{r.name}: FAILED: {r.error}")
    if params is None:
        print("note: no params for this encoder: s_hat = s and no decision (give --params)")
    else:
        ts = "n/a" if res.threshold_s is None else f"{res.threshold_s:.4f}"
        th = "n/a" if res.threshold_s_hat is None else f"{res.threshold_s_hat:.4f}"
        print(
            f"operating point FMR={res.fmr:g}: threshold s>={ts}, s_hat>={th} (alpha={params.alpha:.5g}, "
            f"beta={params.beta:.5g})"
        )
    for p in res.pairs:
        dec = "" if p.accept_s_hat is None else ("  ACCEPT" if p.accept_s_hat else "  reject")
        print(f"{res.images[p.i].name} ~ {res.images[p.j].name}: s={p.s:.4f} s_hat={p.s_hat:.4f}{dec}")
    return _image_failures(res.images)


def _image_failures(images) -> int:
    """Exit status of ``compare``: 0 when every image was used, else 2 with one line on
    stderr naming the first image that could not be (the results, with the error of
    each image, are printed all the same)."""
    failed = [r for r in images if not r.ok]
    if not failed:
        return 0
    more = f" (and {len(failed) - 1} more of the {len(images)} images)" if len(failed) > 1 else ""
    print(f"error: {one_line(failed[0].error)}{more}", file=sys.stderr)
    return 2


def cmd_explain(a) -> int:
    from PIL import Image

    from ..outputs import atomic_path, atomic_write
    from ..quality.explain import explain, render_overlay

    a.method = a.method or default_explain_method()
    if a.method == "gradient" and a.runtime == "auto" and not a.onnx:
        a.runtime = "torch"  # gradients of q need the torch network (auto would pick the shipped ONNX graph)
    ext = os.path.splitext(a.out)[1].lower()
    if ext not in Image.registered_extensions():
        raise QMagError(f"--out {a.out}: unknown image type {ext or '(no extension)'!r}; use .png or .jpg")
    npy = a.npy or os.path.splitext(a.out)[0] + ".npy"
    if not npy.lower().endswith(".npy"):
        raise QMagError(f"--npy {npy}: the raw map is written as .npy")
    for out in (a.out, npy):
        if not Path(out).resolve().parent.is_dir():
            raise QMagError(f"{out}: its folder does not exist")
    enc = _encoder_from_args(a)
    kw = {"steps": a.steps} if a.method == "gradient" else {"patch": a.patch, "stride": a.stride, "fill": a.fill}
    qm = explain(a.image, enc, method=a.method, aligned=a.aligned, name=os.path.basename(a.image), face=a.face, **kw)
    with atomic_path(a.out) as tmp:
        Image.fromarray(render_overlay(qm)).save(tmp, format=Image.registered_extensions()[ext])
    with atomic_write(npy, "wb") as fh:
        np.save(fh, qm.raw)
    print(f"{os.path.basename(a.image)}: q={qm.quality:.4f} ({enc.id}; {enc.quality})")
    print(
        f"{a.method} map in {qm.seconds:.2f} s -> {a.out} (crop | overlay: red lowers q, blue raises "
        f"it), raw map -> {npy}"
    )
    return 0


def _scores_from_images(a):
    from ..io.pairs import read_pairs
    from ..pipeline.datasets import score_image_pairs

    if not Path(a.images).is_dir():
        raise QMagError(f"--images {a.images}: not a folder")
    encoders = []

    def embed(paths):
        emb, enc = _embed_paths(a, paths, a.images)
        encoders.append(enc)
        return emb

    table, rep, _ = score_image_pairs(read_pairs(a.pairs), a.images, embed)
    left = rep["n_pairs"] - rep["n_scored"]
    if left:
        print(
            f"warning: {left} of {rep['n_pairs']} pairs not scored ({rep['n_missing_image']} missing image, "
            f"{rep['n_failed_embedding']} failed embedding); first lines {rep['failed_lines'][:5]}",
            file=sys.stderr,
        )
    return table, rep, encoders[0]


def _scores_from_bin(a):
    from ..io.binsets import read_bin
    from ..pipeline.datasets import bin_scores

    bs = read_bin(a.bin)  # refused before the encoder is even loaded
    enc = _encoder_from_args(a)
    bar = _progress_bar(len(bs.images), f"embedding {os.path.basename(a.bin)} ({enc.id})")
    table, rep = bin_scores(bs, enc, batch_size=a.batch_size, progress=bar)
    rep["source"]["flip"] = bool(a.flip)
    return table, rep, enc


def _evaluate_ijb(a) -> dict:
    """Template verification: read the protocol, embed its images (or read --features),
    pool and score (``qmag_core.evaluation.templates``)."""
    from ..evaluation.templates import evaluate_templates, protocol_features, read_protocol
    from ..pipeline.datasets import embed_protocol
    from ..scores.params import QMagFaceParams

    prot = read_protocol(a.ijb, a.ijb_name)  # refused before any encoder is loaded
    params = QMagFaceParams.load(a.params) if a.params else None
    if a.features:
        from ..io.embeddings import load_embeddings

        feats, ok = protocol_features(load_embeddings(a.features), prot)
        key = None
    else:
        enc = _encoder_from_args(a)
        bar = _progress_bar(len(prot.images), f"embedding {prot.name} ({enc.id})")
        cache = None if a.no_cache else (a.cache_dir or "default")
        feats, ok, _ = embed_protocol(prot, enc, cache_dir=cache, batch_size=a.batch_size, progress=bar)
        key = enc.key
        if params is None:
            from ..pipeline.compare import default_params

            params = default_params(enc.id)
            if params is not None:
                print(f"note: using the parameters shipped for encoder '{enc.id}'", file=sys.stderr)
    if params is not None and (why := params.quality_mismatch(key)):
        print(f"warning: {why}", file=sys.stderr)
    return evaluate_templates(prot, feats, ok, params=params)
