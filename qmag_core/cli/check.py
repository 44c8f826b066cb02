"""``qmag check`` (the enrolment check of photos) and ``qmag calibrate-quality`` (a
quality scale for any encoder from a scores CSV)."""

from __future__ import annotations

import json
import os
import sys

from ..errors import QMagError, one_line
from .embed import progress_bar
from .options import add_encoder_options, encoder_from_args, int_in, probability


def _scale_from_args(a, enc):
    from ..quality.scale import load_scale, scale_for

    if a.scale:
        sc = load_scale(a.scale)
        if why := sc.mismatch(enc.id, enc.key):  # said like a params file of another encoder
            print(f"warning: {why}", file=sys.stderr)
        return sc
    sc = scale_for(enc)
    if sc is None:
        raise QMagError(
            f"no quality scale ships for encoder {enc.id}: give --scale FILE (built with tools/build_quality_scale.py)"
        )
    return sc


def cmd_check(a) -> int:
    from ..outputs import atomic_write
    from ..quality.check import check_calibration, check_crop
    from ..vision.align import FaceDetector, detect_and_align

    enc = encoder_from_args(a)
    scale = _scale_from_args(a, enc)
    check_calibration(scale)  # a scale without the check's calibration is refused before any work
    det = None if a.aligned else FaceDetector.for_encoder(enc)
    reports, failed = [], []
    progress = progress_bar(len(a.images), "check") if len(a.images) > 1 else None
    for k, path in enumerate(a.images):
        name = os.path.basename(path)
        try:
            af = detect_and_align(path, det, enc.spec, aligned=a.aligned, name=name, face=a.face)
            rep = check_crop(enc, af.crop, scale, with_map=not a.no_map)
            reports.append(rep.to_json(path))
        except (QMagError, OSError) as e:
            msg = str(e) if not isinstance(e, OSError) or not e.filename else f"{name}: {e.strerror}"
            reports.append({"image": path, "error": one_line(msg)})
            failed.append(reports[-1])
        if progress is not None:
            progress(k + 1, len(a.images))
    if a.json:
        with atomic_write(a.json) as fh:
            fh.write(json.dumps({"encoder": enc.id, "reports": reports}, indent=1) + "\n")
    for r in reports:
        if "error" in r:
            print(f"{r['image']}: FAILED: {r['error']}")
            continue
        fix = r["repair"]
        print(
            f"{r['image']}: {r['verdict'].upper()}  q={r['q']:.2f}, scale {r['scale']:.0f}/100 ({r['band']}); "
            f"repairing the {fix['region']}: q {fix['q_before']:.2f} -> {fix['q_after']:.2f} "
            f"(a random region: {fix['control_q_after']:.2f})"
        )
        for g in r["regions"]:
            if g["flagged"]:
                print(f"  - {g['advice']} (q gain {g['q_gain']:+.2f}, share {100 * g['share']:.0f}%)")
    if a.json:
        print(f"-> {a.json}")
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        print(f"error: {failed[0]['error']}{more}", file=sys.stderr)
        return 1
    return 0


def cmd_calibrate_quality(a) -> int:
    from ..quality.scale import fit_scale
    from .scores import load_scores

    t = load_scores(a.scores, needs_both="a quality scale (imposters set its threshold)")
    sc = fit_scale(
        t.s,
        t.label,
        t.q1,
        t.q2,
        fmr=a.fmr,
        bins=a.bins,
        encoder=a.encoder_id or "",
        source=f"qmag calibrate-quality --scores {os.path.basename(a.scores)}",
    )
    sc.save(a.out)
    lo, hi = sc.edges
    print(
        f"{len(t.s)} pairs ({sc.n_genuine} genuine): threshold s>={sc.threshold:.4f} at FMR {sc.fmr:g}, FNMR "
        f"{sc.fnmr_overall:.4f}; bands: poor q<{lo:.2f} <= usable < {hi:.2f} <= good -> {a.out}"
    )
    return 0


# ---------------------------------------------------------------- the parser
def _parser_check(sub) -> None:
    p = sub.add_parser("check", help="enrolment check: verdict, quality scale, regions to change, repaired preview")
    p.add_argument("images", nargs="+")
    p.add_argument("--json", default=None, help='write {"reports": [...]} here (one report per image, input order)')
    p.add_argument("--scale", default=None, help="quality scale JSON (default: the encoder's shipped scale)")
    p.add_argument("--no-map", action="store_true", help="skip the quality map (region shares are then 0)")
    add_encoder_options(p)
    p.set_defaults(func=cmd_check, writes=("json",), reads=("images", "scale", "onnx", "checkpoint", "head"))


def _parser_calibrate_quality(sub) -> None:
    p = sub.add_parser(
        "calibrate-quality", help="quality scale (0-100, bands) for an encoder from a scores CSV of its pairs"
    )
    p.add_argument("--scores", required=True, help="scores CSV s,q1,q2,label of reference pairs")
    p.add_argument("--out", required=True, help="scale JSON")
    p.add_argument("--fmr", type=probability, default=1e-3, help="operating point of the scale")
    p.add_argument("--bins", type=int_in(2, 1000), default=20, help="quantile bins of the worse q")
    p.add_argument("--encoder-id", default=None, help="the encoder the scores came from (recorded in the file)")
    p.set_defaults(func=cmd_calibrate_quality, writes=("out",), reads=("scores",))


def add_check_commands(sub) -> None:
    """Add ``check`` and ``calibrate-quality`` to the ``qmag`` sub-parsers."""
    _parser_check(sub)
    _parser_calibrate_quality(sub)
