"""Enrolment checks of many photos: one report per photo, in input order, spread over
worker processes, each report cached by the photo's bytes and the check's settings (a
rerun after a kill finishes from the cache with identical output), written row by row
as it comes (memory stays flat however many photos)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import QMagError, one_line
from ..io.common import spreadsheet_safe
from ..outputs import atomic_write
from ..quality.components import COMPONENTS as _COMPONENTS
from ..safeio import read_bytes

__all__ = [
    "CSV_COLUMNS",
    "settings_key",
    "ReportCache",
    "check_photo",
    "report_json",
    "csv_row",
    "csv_cells",
    "run_checks",
    "verdict_reasons",
    "html_record",
]

#: one row per photo, semicolon-separated, ``Filename`` first (the convention of the
#: ISO/IEC 29794-5 reference implementation's CSV output)
CSV_COLUMNS = (
    "Filename",
    "Verdict",
    "QualityScale",
    "Band",
    "Q",
    "TopRegion",
    "QAfterRepair",
    "FlaggedRegions",
    "RequirementsFailed",
    "Error",
    *(c for n in _COMPONENTS for c in (n, f"{n}.scalar")),
)
#: bump when a report's content changes for the same photo and settings
REPORT_VERSION = "3"


def settings_key(encoder, scale, *, face: str, aligned: bool, with_map: bool, profile=None) -> str:
    """Fingerprint of everything besides the photo that decides its report."""
    doc = {
        "profile": None
        if profile is None
        else [profile.name, sorted((k, list(v)) for k, v in profile.requirements.items())],
        "encoder": encoder.content_key,
        "scale": [scale.encoder_key, list(scale.q_knots), list(scale.fnmr_knots), list(scale.edges), scale.check],
        "face": face,
        "aligned": bool(aligned),
        "map": bool(with_map),
        "version": REPORT_VERSION,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]


class ReportCache:
    """Reports on disk, one small JSON file per photo content under ``root/<settings>/``."""

    def __init__(self, root: str | os.PathLike, key: str):
        self.dir = Path(root) / "check" / key
        self.dir.mkdir(parents=True, exist_ok=True)

    def _file(self, sha: str) -> Path:
        return self.dir / f"{sha}.json"

    def get(self, sha: str) -> dict | None:
        try:
            return json.loads(self._file(sha).read_text())
        except (OSError, ValueError):
            return None  # absent or damaged: checked again

    def put(self, sha: str, report: dict) -> None:
        with atomic_write(self._file(sha)) as fh:
            json.dump(report, fh)


def check_photo(
    path: str, data: bytes, encoder, detector, scale, *, face: str, aligned: bool, with_map: bool, profile=None
):
    """The report of one photo (``image`` left out: the caller names it), or its error."""
    from ..quality.check import check_crop
    from ..vision.align import detect_and_align
    from ..vision.images import load_image

    name = os.path.basename(path)
    try:
        photo = None if aligned else load_image(data, name=name)
        af = detect_and_align(data if aligned else photo, detector, encoder.spec, aligned=aligned, name=name, face=face)
        rep = check_crop(encoder, af.crop, scale, with_map=with_map)
        doc = report_json(path, af, rep, photo, profile=profile, scale=scale)
    except (QMagError, OSError) as e:
        return {"error": one_line(str(e))}
    doc.pop("image")
    return doc


def report_json(path: str, aligned, report, photo=None, *, profile=None, scale=None, mesh=None) -> dict:
    """The JSON of one photo's check (``report``: a :class:`~qmag_core.quality.check.CheckReport`
    of ``aligned``; ``photo`` the decoded photo, None for aligned inputs): the report, how
    many faces the photo holds, its components with their requirement (``profile``; the
    shipped ICAO one by default), the failed requirements with their advice and cost,
    and the verdict over all of it: reject when the band is poor, a region is flagged or
    a requirement fails."""
    from ..quality.components import assess_components
    from ..quality.requirements import REGION_OF, default_profile

    profile = default_profile() if profile is None else profile
    doc = report.to_json(path)
    doc["n_faces"] = aligned.n_faces
    comps = assess_components(aligned, photo, quality=(report.q, report.scale), mesh=mesh)
    doc["components"] = {n: {**c.to_json(), "pass": profile.passes(c)} for n, c in comps.items()}
    failed = [n for n, c in doc["components"].items() if c["pass"] is False]
    regions = {g.name: g for g in report.regions}
    doc["profile"] = profile.name
    doc["requirements_failed"] = failed
    doc["advice"] = [_advice_item(n, comps[n], profile, regions.get(REGION_OF.get(n)), report, scale) for n in failed]
    doc["advice"] += [_advice_item(None, None, profile, g, report, scale) for g in report.regions if g.flagged]
    if failed:
        doc["verdict"] = "reject"
    return doc


def _advice_item(name, comp, profile, region, report, scale) -> dict:
    """One advice line: what (a failed component, or a flagged region), where (its face
    region), and what the region's repair is worth on the calibrated scale."""
    from ..quality.requirements import advice

    item = {"component": name, "region": None if region is None else region.name, "cost": None}
    item["advice"] = advice(comp, profile) if comp is not None else region.advice
    if region is not None and scale is not None and report.scale is not None:
        after = scale.describe(report.q + region.q_gain)["scale"]
        if after is not None:
            item["cost"] = (
                f"repairing the {region.name} region moves the quality scale from {report.scale:.0f} to {after:.0f}"
            )
    return item


def csv_row(report: dict) -> list[str]:
    """A report as the CSV's cells (spreadsheet-safe text)."""
    return [str(c) for c in spreadsheet_safe(csv_cells(report))]


def csv_cells(report: dict) -> list[str]:
    """A report as the CSV's cells, as they are (for a table on screen)."""
    comps = report.get("components", {})
    tail = [
        "" if (v := comps.get(n, {}).get(k)) is None else (f"{v:.4f}" if k == "native" else str(v))
        for n in _COMPONENTS
        for k in ("native", "scalar")
    ]
    if "error" in report:
        cells = [report["image"], "failed", "", "", "", "", "", "", "", report["error"], *tail]
    else:
        flagged = [g["name"] for g in report["regions"] if g["flagged"]]
        cells = [
            report["image"],
            report["verdict"],
            "" if report["scale"] is None else f"{report['scale']:.1f}",
            report["band"],
            f"{report['q']:.4f}",
            report["repair"]["region"],
            f"{report['repair']['q_after']:.4f}",
            "|".join(flagged),
            "|".join(report.get("requirements_failed", [])),
            "",
            *tail,
        ]
    return [str(c) for c in cells]


def _sha(path: str) -> tuple[str, bytes | None, str]:
    from ..limits import limit

    try:
        data = read_bytes(path, max_bytes=limit("QMAG_MAX_IMAGE_BYTES"), what="image file", name=path)
    except (QMagError, OSError) as e:
        return "", None, one_line(str(e) if not isinstance(e, OSError) else f"{path}: {e.strerror}")
    return hashlib.sha256(data).hexdigest(), data, ""


_WORKER: dict = {}


def _init_worker(make: Callable, options: dict) -> None:
    from ..vision.runtime import limit_threads

    limit_threads(1)
    _WORKER["check"] = make()
    _WORKER["options"] = options


def _work(item: tuple[str, bytes]) -> dict:
    path, data = item
    encoder, detector, scale = _WORKER["check"]
    return check_photo(path, data, encoder, detector, scale, **_WORKER["options"])


def run_checks(
    paths: list[str],
    make: Callable,
    options: dict,
    *,
    cache: ReportCache | None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    engine: str = "local",
    address: str | None = None,
) -> Iterator[dict]:
    """Reports of ``paths`` in their order: cached ones read back, the rest checked by
    ``workers`` processes (each builds ``(encoder, detector, scale)`` once with the
    picklable ``make``; 1: this process).  Each new report is cached before it is
    yielded, so a killed run resumes where it stopped.  ``engine="ray"``: the photos
    not in the cache go to ``workers`` Ray actors (one machine, or the cluster at
    ``address``), in the same order, with the same reports."""
    jobs = ((p, *_sha(p)) for p in paths)
    jobs = ((p, sha, data, err, cache.get(sha) if cache is not None and sha else None) for p, sha, data, err in jobs)
    with _engine(engine, make, options, workers, address) as (submit, resolve):
        done = 0
        for p, sha, hit, rep in _in_order(jobs, submit, resolve, window=4 * max(1, workers)):
            done += 1
            yield _finish(p, sha, rep, hit, cache, progress, done, len(paths))


@contextmanager
def _engine(engine: str, make: Callable, options: dict, workers: int, address: str | None):
    """``(submit(path, data), resolve(handle) -> report | None)`` of one engine: this
    process, a pool of worker processes, or Ray actors; resolve gives None while a
    handle is still running."""
    if engine == "ray":
        from .ray import start_ray

        ray = start_ray(address, None)

        @ray.remote(num_cpus=1)
        class Checker:  # one per worker: builds the encoder, detector and scale once
            def __init__(self, make, options):
                _init_worker(make, options)

            def check(self, path, data):
                return _work((path, data))

        actors = [Checker.remote(make, options) for _ in range(max(1, workers))]
        turn = itertools.count()
        yield (
            lambda p, d: actors[next(turn) % len(actors)].check.remote(p, d),
            lambda h, wait: ray.get(h) if wait or ray.wait([h], timeout=0)[0] else None,
        )
    elif workers <= 1:
        state = make()
        yield (lambda p, d: check_photo(p, d, *state, **options)), (lambda h, wait: h)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # clean workers: no copied threads or sessions
        with ctx.Pool(workers, initializer=_init_worker, initargs=(make, options)) as pool:
            yield (
                lambda p, d: pool.apply_async(_work, ((p, d),)),
                lambda h, wait: h.get() if wait or h.ready() else None,
            )


def _in_order(jobs, submit: Callable, resolve: Callable, window: int):
    """``(path, sha, hit, report)`` in input order: cached and unreadable photos answer at
    once, the others are submitted, at most ``window`` of them waiting at a time."""
    pending: deque = deque()  # (path, sha, hit, report or handle)
    for p, sha, data, err, hit in jobs:
        pending.append((p, sha, hit, hit or ({"error": err} if err else submit(p, data))))
        while pending:
            p0, s0, h0, r0 = pending[0]
            rep = r0 if isinstance(r0, dict) else resolve(r0, len(pending) > window)
            if rep is None:
                break
            pending.popleft()
            yield p0, s0, h0, rep
    for p0, s0, h0, r0 in pending:
        yield p0, s0, h0, r0 if isinstance(r0, dict) else resolve(r0, True)


def _finish(path, sha, rep, hit, cache, progress, done, total) -> dict:
    if cache is not None and sha and not hit and "error" not in rep:
        cache.put(sha, rep)
    if progress is not None:
        progress(done, total)
    return {"image": path, **rep}


def verdict_reasons(report: dict) -> list[str]:
    """Why the verdict is what it is, one line each (each failed requirement with its
    advice, the band, each flagged region)."""
    if "error" in report:
        return [report["error"]]
    out = [a["advice"] for a in report.get("advice", []) if a["component"] is not None]
    out += [f"quality band {report['band']} (scale {report['scale']:.0f}/100)"] if report["band"] == "poor" else []
    out += [
        f"{g['name']}: {g['advice']} (q gain {g['q_gain']:+.2f} when repaired, z {g['z']:.1f} against clean photos)"
        for g in report["regions"]
        if g["flagged"]
    ]
    if not out:
        out = [f"band {report['band']}, every requirement met and no face region is unusual"]
    return out


_CSS = (
    "body{font-family:sans-serif;max-width:760px;margin:2em auto}"
    "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}img{max-width:100%}"
)


def html_record(report: dict, photo: bytes | None = None, *, side: int = 480) -> str:
    """One self-contained HTML page for an operator's file: the photo (a JPEG of at most
    ``side`` px, inline), the verdict with its reasons, the scale, and the regions."""
    import base64
    import html
    import io

    from PIL import Image

    img = ""
    if photo is not None:
        try:
            im = Image.open(io.BytesIO(photo)).convert("RGB")
            im.thumbnail((side, side))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
            img = f'<img alt="photo" src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}">'
        except (OSError, ValueError):
            img = "<p>(the photo could not be decoded)</p>"
    e = html.escape
    verdict = "failed" if "error" in report else report["verdict"]
    colour = {"accept": "#2a9d8f", "reject": "#e76f51"}.get(verdict, "#777")
    rows = "".join(
        f"<tr><td>{e(g['name'])}</td><td>{g['q_gain']:+.3f}</td><td>{g['z']:.2f}</td>"
        f"<td>{'yes' if g['flagged'] else ''}</td><td>{e(g['advice'])}</td></tr>"
        for g in report.get("regions", [])
    )
    scale = (
        ""
        if "error" in report
        else f"<p>quality scale {report['scale']:.0f}/100, band {e(report['band'])}, raw q {report['q']:.2f}</p>"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Enrolment check: "
        f"{e(os.path.basename(report['image']))}</title><style>{_CSS}</style></head><body>"
        f"<h1>Enrolment check</h1><p>{e(report['image'])}</p>{img}"
        f"<h2 style='color:{colour}'>{e(verdict.upper())}</h2><ul>"
        + "".join(f"<li>{e(r)}</li>" for r in verdict_reasons(report))
        + f"</ul>{scale}"
        + (
            "<h2>Face regions</h2><table><tr><th>region</th><th>q gain when repaired</th><th>z vs clean photos</th>"
            f"<th>flagged</th><th>advice</th></tr>{rows}</table>"
            if rows
            else ""
        )
        + _components_html(report.get("components", {}))
        + "</body></html>\n"
    )


def component_texts(c: dict) -> tuple[str, str]:
    """A report's component ``{native, scalar, pass}`` as shown to a person: its value
    ("not assessed" when None) and its requirement's result ("pass", "FAIL", or "" when
    the profile has no rule for it)."""
    value = "not assessed" if c["native"] is None else f"{c['native']:.4g}"
    return value, {True: "pass", False: "FAIL", None: ""}[c.get("pass")]


def _components_html(comps: dict) -> str:
    """The components as an HTML table (value, scalar, requirement met)."""
    import html

    if not comps:
        return ""
    rows = ""
    for n, c in comps.items():
        value, result = component_texts(c)
        scalar = "" if c["scalar"] is None else c["scalar"]
        rows += f"<tr><td>{html.escape(n)}</td><td>{value}</td><td>{scalar}</td><td>{result}</td></tr>"
    return (
        "<h2>Quality components (ISO/IEC 29794-5)</h2><table><tr><th>component</th><th>value</th>"
        f"<th>scalar 0-100</th><th>requirement</th></tr>{rows}</table>"
    )
