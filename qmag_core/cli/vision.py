"""The commands that run a network: embed, compare, explain, train-magface, train-quality,
and the image/.bin paths of evaluate.  Torch and facenet are imported inside each
command, so ``qmag train`` and friends start fast."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import QMagError, one_line
from ..evaluation.protocol import jsonable
from .embed import embed_paths, progress_bar
from .options import add_encoder_options, default_explain_method, encoder_from_args, int_in, probability


def cmd_export_onnx(a) -> int:
    """Export the chosen encoder to one ONNX graph; check it against torch on a batch."""
    from ..encoders.onnx import OnnxEncoder, export_onnx

    if a.runtime == "onnx" or a.onnx:
        raise QMagError("export-onnx exports a torch encoder: leave out --runtime onnx/--onnx")
    if a.int8 and not a.calibration:
        raise QMagError("--int8 needs --calibration DIR: real photos whose faces set the int8 ranges")
    a.runtime = "torch"
    enc = encoder_from_args(a)
    if a.int8:
        return _export_int8(a, enc)
    meta = export_onnx(enc, a.out, opset=a.opset)
    crops = np.random.default_rng(0).integers(0, 256, (4, enc.spec.size, enc.spec.size, 3), dtype=np.uint8)
    ref, got = enc.embed(crops), OnnxEncoder(a.out, device="cpu").embed(crops)
    rel = float(np.max(np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)))
    print(
        f"wrote {a.out}: encoder {meta['qmag.encoder_id']} ({meta['qmag.encoder_key']}), input {meta['qmag.input']}, "
        f"opset {a.opset}; onnxruntime vs torch on 4 random crops: max relative difference {rel:.2e}"
    )
    return 0


def _export_int8(a, enc) -> int:
    """--int8: the float export, quantized on calibration crops, checked against the float graph."""
    import tempfile

    from ..encoders.onnx import OnnxEncoder, export_onnx
    from ..encoders.quantize import quantize_int8
    from ..pipeline.datasets import folder_crops

    crops = folder_crops(a.calibration, enc, a.calibration_count, aligned=a.aligned, label="--calibration")
    with tempfile.TemporaryDirectory() as d:
        fp32 = os.path.join(d, "fp32.onnx")
        export_onnx(enc, fp32, opset=a.opset)
        meta = quantize_int8(fp32, a.out, crops)
        ref = OnnxEncoder(fp32, device="cpu").embed(crops)
    got = OnnxEncoder(a.out, device="cpu").embed(crops)
    cos = np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    dq = np.abs(np.linalg.norm(got, axis=1) - np.linalg.norm(ref, axis=1))
    print(
        f"wrote {a.out}: int8 {meta['qmag.encoder_key']}, calibrated on {len(crops)} faces of {a.calibration}; "
        f"vs float on them: cosine min {cos.min():.4f} median {np.median(cos):.5f}, |q difference| median "
        f"{np.median(dq):.3f} max {dq.max():.3f}"
    )
    return 0


def cmd_compare(a) -> int:
    from ..pipeline.compare import compare_images
    from ..quality.scale import scale_for
    from ..scores.params import QMagFaceParams

    enc = encoder_from_args(a)
    scale = scale_for(enc)
    params = QMagFaceParams.load(a.params) if a.params else QMagFaceParams.shipped(enc.id)
    if params is not None and (why := params.mismatch(enc.id, enc.key)):
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
                **_scale_fields(scale, r.quality if r.ok else None),
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
        sc = _scale_fields(scale, r.quality if r.ok else None)
        on_scale = f" (scale {sc['scale']:.0f}/100, {sc['band']})" if sc.get("scale") is not None else ""
        print(f"{r.name}: q={r.quality:.3f}{on_scale}{extra}" if r.ok else f"{r.name}: FAILED: {r.error}")
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


def _scale_fields(scale, q) -> dict:
    """``scale`` (0–100) and ``band`` beside a raw q (empty without a calibrated scale)."""
    if scale is None:
        return {}
    d = scale.describe(float("nan") if q is None else q)
    return {"scale": d["scale"], "band": d["band"]}


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

    from ..outputs import atomic_path, atomic_write, check_output
    from ..quality.explain import explain, render_overlay
    from ..quality.scale import scale_for
    from ..vision.runtime import torch_available

    a.method = a.method or default_explain_method()
    if a.method in ("gradient", "magnitude") and a.runtime == "auto" and not a.onnx and torch_available():
        a.runtime = "torch"  # gradients of q need the torch network (auto would pick the shipped ONNX graph)
    ext = os.path.splitext(a.out)[1].lower()
    if ext not in Image.registered_extensions():
        raise QMagError(f"--out {a.out}: unknown image type {ext or '(no extension)'!r}; use .png or .jpg")
    npy = a.npy or os.path.splitext(a.out)[0] + ".npy"
    if not npy.lower().endswith(".npy"):
        raise QMagError(f"--npy {npy}: the raw map is written as .npy")
    if not a.npy:  # the default beside --out: checked like every output (run.check_outputs did --out)
        check_output(npy, arg="--npy", inputs=[a.image])
    enc = encoder_from_args(a)
    kw = {
        "gradient": {"steps": a.steps},
        "occlusion": {"patch": a.patch, "stride": a.stride, "fill": a.fill},
        "magnitude": {},
    }[a.method]
    qm = explain(a.image, enc, method=a.method, aligned=a.aligned, name=os.path.basename(a.image), face=a.face, **kw)
    scale = scale_for(enc)
    default_map = a.method != "occlusion" or (a.patch, a.stride, a.fill) == (16, 8, "blur")
    unit = scale.plq.get(a.method) if scale is not None and a.colours == "fixed" and default_map else None
    with atomic_path(a.out) as tmp:
        Image.fromarray(render_overlay(qm, unit=unit)).save(tmp, format=Image.registered_extensions()[ext])
    with atomic_write(npy, "wb") as fh:
        np.save(fh, qm.raw)
    sc = _scale_fields(scale, qm.quality)
    on_scale = f", scale {sc['scale']:.0f}/100 ({sc['band']})" if sc.get("scale") is not None else ""
    print(f"{os.path.basename(a.image)}: q={qm.quality:.4f}{on_scale} ({enc.id}; {enc.quality})")
    print(
        f"{a.method} map in {qm.seconds:.2f} s -> {a.out} (crop | overlay: red lowers q, blue raises "
        f"it; colours {'on the fixed scale of ' + enc.id if unit else 'scaled by this map'}), raw map -> {npy}"
    )
    return 0


def scores_from_images(a):
    from ..io.pairs import read_pairs
    from ..pipeline.datasets import score_image_pairs

    if not Path(a.images).is_dir():
        raise QMagError(f"--images {a.images}: not a folder")
    encoders = []

    def embed(paths):
        emb, enc = embed_paths(a, paths, a.images)
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


def scores_from_bin(a):
    from ..io.binsets import read_bin
    from ..pipeline.datasets import bin_scores

    bs = read_bin(a.bin)  # refused before the encoder is even loaded
    enc = encoder_from_args(a)
    bar = progress_bar(len(bs.images), f"embedding {os.path.basename(a.bin)} ({enc.id})")
    table, rep = bin_scores(bs, enc, batch_size=a.batch_size, progress=bar)
    rep["source"]["flip"] = bool(a.flip)
    return table, rep, enc


def evaluate_ijb(a) -> dict:
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
        enc_id = key = None
    else:
        enc = encoder_from_args(a)
        bar = progress_bar(len(prot.images), f"embedding {prot.name} ({enc.id})")
        cache = None if a.no_cache else (a.cache_dir or "default")
        feats, ok, _ = embed_protocol(prot, enc, cache_dir=cache, batch_size=a.batch_size, progress=bar)
        enc_id, key = enc.id, enc.key
        if params is None:
            params = QMagFaceParams.shipped(enc.id)
            if params is not None:
                print(f"note: using the parameters shipped for encoder '{enc.id}'", file=sys.stderr)
    if params is not None and (why := params.mismatch(enc_id, key)):
        print(f"warning: {why}", file=sys.stderr)
    from ..evaluation.templates import SOFTMAX_T

    t = a.pool_temperature or SOFTMAX_T
    return evaluate_templates(prot, feats, ok, params=params, temperature=t)


# ---------------------------------------------------------------- the parser
def _parser_compare(sub) -> None:
    p = sub.add_parser("compare", help="quality per image, s and s_hat per pair, decision at an FMR")
    p.add_argument("images", nargs="+")
    p.add_argument("--params", default=None, help="params JSON (default: the encoder's shipped parameters)")
    p.add_argument("--fmr", type=probability, default=1e-3, help="operating point for the accept/reject decision")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_encoder_options(p)
    p.set_defaults(func=cmd_compare)


def _parser_explain(sub) -> None:
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
    p.add_argument("--steps", type=int_in(1, 4096), default=64, help="integration steps (gradient)")
    p.add_argument("--patch", type=int_in(1, 1024), default=16, help="patch size in px (occlusion)")
    p.add_argument("--stride", type=int_in(1, 1024), default=8, help="patch stride in px (occlusion)")
    p.add_argument(
        "--fill",
        choices=("blur", "grey"),
        default="blur",
        help="occlusion: replace each patch by the blurred crop (detail) or mid-grey (content)",
    )
    add_encoder_options(p)
    p.set_defaults(func=cmd_explain, writes=("out", "npy"), reads=("image", "onnx", "checkpoint", "head"))


def _parser_export_onnx(sub) -> None:
    p = sub.add_parser(
        "export-onnx", help="export an encoder (with its quality head) to one ONNX graph with a dynamic batch axis"
    )
    p.add_argument("--out", required=True, help="model.onnx")
    p.add_argument("--opset", type=int_in(13, 20), default=17, help="ONNX opset, 13 to 20")
    p.add_argument(
        "--int8",
        action="store_true",
        help="write an int8 graph (onnxruntime static quantization, calibrated on --calibration photos)",
    )
    p.add_argument("--calibration", default=None, help="with --int8: a folder of real photos (or crops with --aligned)")
    p.add_argument("--calibration-count", type=int_in(1, 100_000), default=256, help="photos used for calibration")
    add_encoder_options(p)
    p.set_defaults(
        func=cmd_export_onnx,
        writes=("out",),
        reads=("onnx", "checkpoint", "head", "calibration"),
        image_folders=("calibration",),
    )


def add_vision_commands(sub) -> None:
    """Add ``compare``, ``explain`` and ``export-onnx`` to the ``qmag`` sub-parsers."""
    _parser_compare(sub)
    _parser_explain(sub)
    _parser_export_onnx(sub)
