"""``qmag check`` (the enrolment check of photos) and ``qmag calibrate-quality`` (a
quality scale for any encoder from a scores CSV)."""

from __future__ import annotations

import json
import os
import sys

from ..errors import QMagError
from .embed import listed_images
from .options import add_encoder_options, encoder_from_args, int_in, probability, progress_bar


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


def _checker(a):
    """``(encoder, detector, scale)`` of the check's arguments (a worker process builds
    its own from the same arguments)."""
    from ..quality.check import check_calibration
    from ..vision.align import FaceDetector

    enc = encoder_from_args(a)
    scale = _scale_from_args(a, enc)
    check_calibration(scale)  # a scale without the check's calibration is refused before any work
    return enc, None if a.aligned else FaceDetector.for_encoder(enc), scale


def _photos(a) -> list[str]:
    """The photos to check, in order: the positional files, a folder's images, or a list."""
    from ..vision.images import list_images

    given = [bool(a.images), bool(a.image_dir), bool(a.list)]
    if sum(given) != 1:
        raise QMagError("give photos as files, or --images DIR, or --list FILE (one of them)")
    if a.image_dir:
        from ..safeio import confine_paths

        rel = list_images(a.image_dir)
        if not rel:
            raise QMagError(f"--images {a.image_dir}: no images in this folder")
        return [str(p) for p in confine_paths(rel, a.image_dir)]
    if a.list:
        root, rel = listed_images(a)
        return [os.path.join(root, r) for r in rel]
    return list(a.images)


def cmd_check(a) -> int:
    import functools

    from ..vision.runtime import limit_threads

    if a.threads:
        limit_threads(a.threads)
    from ..pipeline.checks import ReportCache, run_checks, settings_key

    paths = _photos(a)
    if a.html and not os.path.isdir(a.html):
        raise QMagError(f"--html {a.html}: not a folder; create it first (one record per photo goes there)")
    enc, det, scale = _checker(a)
    from ..quality.requirements import default_profile, load_profile

    profile = load_profile(a.profile) if a.profile else default_profile()
    options = {"face": a.face, "aligned": a.aligned, "with_map": not a.no_map, "profile": profile}
    cache = None
    if not a.no_cache:
        from ..pipeline.embed import default_cache_dir

        cache = ReportCache(a.cache_dir or default_cache_dir(), settings_key(enc, scale, **options))
    workers = min(a.workers, len(paths))
    remote = workers > 1 or a.engine == "ray"
    make = functools.partial(_checker, a) if remote else lambda: (enc, det, scale)
    bar = progress_bar(len(paths), "check") if len(paths) > 1 else None
    reports = run_checks(
        paths, make, options, cache=cache, workers=workers, progress=bar, engine=a.engine, address=a.address
    )
    failed = _write_reports(a, enc.id, reports)
    if a.json or a.csv:
        print(" ".join(f"-> {f}" for f in (a.csv, a.json) if f))
    if failed:
        more = f" (and {failed[1] - 1} more)" if failed[1] > 1 else ""
        print(f"error: {failed[0]}{more}", file=sys.stderr)
        return 1
    return 0


def _write_reports(a, encoder_id: str, reports) -> tuple[str, int] | None:
    """Stream the reports to stdout, ``--csv`` and ``--json`` as they come (each file
    written atomically: a killed run leaves the old file, or none); ``(first error,
    how many failed)`` or None."""
    import contextlib
    import csv

    from ..outputs import atomic_write
    from ..pipeline.checks import CSV_COLUMNS, csv_row

    first_error, n_failed, n = None, 0, 0
    with contextlib.ExitStack() as files:
        js = files.enter_context(atomic_write(a.json)) if a.json else None
        cw = csv.writer(files.enter_context(atomic_write(a.csv, newline="")), delimiter=";") if a.csv else None
        if js is not None:
            js.write(json.dumps({"encoder": encoder_id})[:-1] + ', "reports": [\n')
        if cw is not None:
            cw.writerow(CSV_COLUMNS)
        for r in reports:
            if js is not None:
                js.write((",\n" if n else "") + json.dumps(r))
            if cw is not None:
                cw.writerow(csv_row(r))
            n += 1
            _print_report(r)
            if a.html:
                _write_record(a.html, r)
            if "error" in r:
                n_failed += 1
                first_error = first_error or r["error"]
        if js is not None:
            js.write("\n]}\n")
    return (first_error, n_failed) if n_failed else None


def _write_record(folder: str, r: dict) -> None:
    """``folder/<photo name>.html``: the printable record of one photo (atomic)."""
    import hashlib
    import re

    from ..limits import limit
    from ..outputs import atomic_write
    from ..pipeline.checks import html_record
    from ..safeio import read_bytes

    try:
        photo = read_bytes(r["image"], max_bytes=limit("QMAG_MAX_IMAGE_BYTES"), what="image file")
    except (QMagError, OSError):
        photo = None
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(r["image"]))[:150]
    digest = hashlib.sha1(r["image"].encode()).hexdigest()[:8]  # two photos of one name
    with atomic_write(os.path.join(folder, f"{stem}.{digest}.html")) as fh:
        fh.write(html_record(r, photo))


def _print_report(r: dict) -> None:
    if "error" in r:
        print(f"{r['image']}: FAILED: {r['error']}")
        return
    fix = r["repair"]
    print(
        f"{r['image']}: {r['verdict'].upper()}  q={r['q']:.2f}, scale {r['scale']:.0f}/100 ({r['band']}); "
        f"repairing the {fix['region']}: q {fix['q_before']:.2f} -> {fix['q_after']:.2f} "
        f"(a random region: {fix['control_q_after']:.2f})"
    )
    for item in r.get("advice", []):
        where = f" [{item['region']}]" if item["region"] else ""
        cost = f" ({item['cost']})" if item.get("cost") else ""
        print(f"  - {item['advice']}{where}{cost}")


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
    p.add_argument("images", nargs="*", help="photos to check (or --images DIR, or --list FILE)")
    p.add_argument(
        "--images", dest="image_dir", default=None, metavar="DIR", help="every image in a folder (recursive)"
    )
    p.add_argument("--list", default=None, help="text file with one photo path per line")
    p.add_argument("--root", default=None, help="folder the --list paths are relative to (default: the list's)")
    p.add_argument("--json", default=None, help='write {"reports": [...]} here (one report per photo, input order)')
    p.add_argument("--csv", default=None, help="write one row per photo here (semicolon-separated, Filename first)")
    p.add_argument("--html", default=None, metavar="DIR", help="write one printable HTML record per photo into DIR")
    p.add_argument("--scale", default=None, help="quality scale JSON (default: the encoder's shipped scale)")
    p.add_argument("--no-map", action="store_true", help="skip the quality map (region shares are then 0)")
    p.add_argument(
        "--profile",
        default=None,
        metavar="FILE",
        help="requirement profile JSON (default: the shipped ICAO portrait profile, docs/formats.md)",
    )
    p.add_argument(
        "--workers",
        type=int_in(1, 64),
        default=os.cpu_count() or 1,
        help="processes checking photos side by side (default: one per core)",
    )
    p.add_argument(
        "--threads",
        type=int_in(1, 256),
        default=None,
        help="network threads of this process (default: the runtime's, all cores; workers use 1 each)",
    )
    p.add_argument("--cache-dir", default=None, help="report cache (default ~/.cache/qmag or $QMAG_CACHE)")
    p.add_argument("--no-cache", action="store_true", help="check every photo again")
    p.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="local processes (default) or Ray actors"
    )
    p.add_argument("--address", default=None, help="with --engine ray: a cluster (auto, HOST:PORT); default local")
    add_encoder_options(p)
    p.set_defaults(
        func=cmd_check,
        writes=("json", "csv"),
        reads=("images", "image_dir", "list", "root", "scale", "profile", "onnx", "checkpoint", "head"),
        image_folders=("image_dir", "root"),
    )


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
