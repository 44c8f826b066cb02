"""The enrolment check on photos and identities it never saw: does it name the occluded
part, leave clean photos alone, and does its repair help more than a random one?

Test photos: original LFW photos of the dev pairs' folds 5–7 persons (../shared/data/
lfw_photos), a seeded sample.  Each is checked clean and with each *test* occluder painted
on the whole photo before detection (qmag_core.quality.occluders: sunglasses, surgical
mask, cap; ``--kinds hand``: a hand over the mouth, added later) — kinds never used to
calibrate the check (tools/build_quality_scale.py tuned
it on blindfolds, scarves and headbands of folds 1–4 persons).

Reported per occluder: how often the top region (largest z: its q gain against clean photos) names the
occluded part (eyes / nose-mouth-cheeks-chin / forehead), with a Wilson 95% interval,
beside the same rule on the raw q gain, a random region (chance), a model-free
local-variance rule (the region whose mean local variance departs most from clean
development photos) and, with --maps, the region holding the largest share of the PLQ
map's lost quality; how often any region is flagged; how often repairing the top region
raises q, and raises it more than the same repair of a random region of equal area.

    python -m bench.bench_check [--n 200] [--seed 1] [--maps] [--kinds sunglasses,mask,cap|hand]
    python -m bench.bench_check --latency [--n 20]     # one whole report per 250x250 photo
    python -m bench.bench_check --batch [--n 200] [--ray]  # photos/s, rows, kill and resume, memory
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from qmag_core.encoders import load_encoder
from qmag_core.pipeline.occluded import occluded_faces
from qmag_core.quality.check import check_crop
from qmag_core.quality.explain import local_variance_map
from qmag_core.quality.occluders import EXTRA_TEST_OCCLUDERS, PART_OF, PART_REGIONS, TEST_OCCLUDERS
from qmag_core.quality.regions import REGIONS, region_masks
from qmag_core.quality.scale import scale_for

ROOT = Path(__file__).resolve().parents[1]

PHOTOS = ROOT.parent / "shared" / "data" / "lfw_photos" / "images"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def fmt(hits: np.ndarray) -> str:
    k, n = int(hits.sum()), int(hits.size)
    lo, hi = wilson(k, n)
    return f"{100 * k / max(n, 1):5.1f}% [{100 * lo:4.1f}, {100 * hi:4.1f}]"


def region_lv(crops: np.ndarray, masks: dict) -> np.ndarray:
    """(N, regions) log mean local variance of each region."""
    out = np.zeros((len(crops), len(REGIONS)))
    for i, c in enumerate(crops):
        lv = local_variance_map(c)
        out[i] = [np.log(lv[masks[r]].mean() + 1.0) for r in REGIONS]
    return out


def latency(n: int, seed: int) -> int:
    """Median time of one whole report (decode, detect, align, check with its map) per
    original 250×250 LFW photo, in-process, and of ``qmag check`` as a process."""
    import os
    import platform
    import subprocess

    from bench import protocol as T
    from qmag_core.vision.align import FaceDetector, detect_and_align

    enc = load_encoder("builtin", runtime="fast")
    scale = scale_for(enc)
    det = FaceDetector.for_encoder(enc)
    rng = np.random.default_rng(seed)
    photos = [str(PHOTOS / p) for p in rng.choice(T.split_paths()["test"], n + 2, replace=False)]
    times = []
    for k, p in enumerate(photos):
        t0 = time.perf_counter()
        a = detect_and_align(p, det, enc.spec, face="best")
        check_crop(enc, a.crop, scale)
        if k >= 2:  # the first two warm the runtimes
            times.append(time.perf_counter() - t0)
    proc = []
    for p in photos[:5]:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "qmag_core", "check", p], check=True, capture_output=True)
        proc.append(time.perf_counter() - t0)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs: whole report in-process median "
        f"{np.median(times):.3f} s (p90 {np.percentile(times, 90):.3f}, n={len(times)}); qmag check as a process "
        f"median {np.median(proc):.2f} s (n={len(proc)})"
    )
    return 0


WRAP_PEAK = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run([sys.executable, '-m', 'qmag_core', 'check', *sys.argv[1:]], capture_output=True)\n"
    "print(r.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def _resume(src: Path, d: Path, want: str, cpus: int) -> str:
    """Kill ``qmag check --images`` midway (SIGKILL, after half the photos' expected time),
    run it again with the same cache: identical CSV, no leftover temporary files?"""
    import os
    import signal
    import subprocess

    cache, out = d / "resume-cache", d / "resume.csv"
    cmd = [sys.executable, "-m", "qmag_core", "check", "--images", str(src), "--csv", str(out)]
    cmd += ["--cache-dir", str(cache), "--workers", str(cpus)]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while len(list(cache.rglob("*.json"))) < len(list(src.iterdir())) // 2 and p.poll() is None:
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    done = len(list(cache.rglob("*.json")))
    subprocess.run(cmd, capture_output=True, check=False)
    left = [f.name for f in [*d.iterdir(), *cache.rglob("*")] if f.name.startswith(".") or ".tmp" in f.name]
    return (
        f"killed after {done} reports ({time.perf_counter() - t0:.0f} s in all), rerun: CSV identical "
        f"{out.read_text() == want}, temporary files left {left or 'none'}"
    )


def batch(n: int, seed: int, rows: int, ray: bool = False) -> int:
    """``qmag check --images DIR`` as a process on ``n`` original LFW test photos: photos/s
    with one worker and with one per core (no cache), beside the serial limit of one
    process; then the peak memory of a ``rows``-photo folder (copies of the same photos,
    so the cache answers: the streaming of rows, not the networks, is measured)."""
    import os
    import platform
    import shutil
    import subprocess
    import tempfile

    from bench import protocol as T

    rng = np.random.default_rng(seed)
    photos = [PHOTOS / p for p in rng.choice(T.split_paths()["test"], n, replace=False)]
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "photos"
        src.mkdir()
        for k, f in enumerate(photos):
            shutil.copy(f, src / f"{k:05d}.jpg")
        rate = {}
        runs = {"one process, one thread": ["--workers", "1", "--threads", "1"], "one process": ["--workers", "1"]}
        runs[f"{cpus} workers"] = ["--workers", str(cpus)]
        for name, extra in runs.items():
            args = ["--images", str(src), "--csv", f"{d}/{len(rate)}.csv", "--no-cache", *extra]
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "qmag_core", "check", *args], capture_output=True, check=False)
            rate[name] = n / (time.perf_counter() - t0)
        if ray:
            args = ["--images", str(src), "--csv", f"{d}/{len(rate)}.csv", "--no-cache", "--engine", "ray"]
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "qmag_core", "check", *args, "--workers", str(cpus)],
                           capture_output=True, check=False)  # fmt: skip
            rate[f"Ray, {cpus} actors (local instance)"] = n / (time.perf_counter() - t0)
        csvs = [Path(f"{d}/{k}.csv").read_text() for k in range(len(rate))]
        print(f"{platform.machine()}, {cpus} CPUs: {n} photos, qmag check --images as a process (start included)")
        base = rate["one process, one thread"]
        for name, r in rate.items():
            print(f"  {name:<34} {r:.2f} photos/s = {r / base:.2f}x the serial limit (one thread)")
        print(f"  rows identical across every run: {len(set(csvs)) == 1} ({len(csvs[0].splitlines()) - 1} rows)")
        print(f"  {_resume(src, Path(d), csvs[0], cpus)}")
        big = Path(d) / "big"
        big.mkdir()
        for k in range(rows):
            os.link(src / f"{k % n:05d}.jpg", big / f"{k:06d}.jpg")
        cache = Path(d) / "cache"
        warm = ["--images", str(src), "--cache-dir", str(cache), "--workers", str(cpus)]
        subprocess.run([sys.executable, "-m", "qmag_core", "check", *warm], capture_output=True, check=False)
        args = ["--images", str(big), "--csv", f"{d}/big.csv", "--json", f"{d}/big.json", "--cache-dir", str(cache)]
        out = subprocess.run([sys.executable, "-c", WRAP_PEAK, *args], capture_output=True, text=True)
        rc, sec, kib = out.stdout.split()
        n_rows = len(Path(f"{d}/big.csv").read_text().splitlines()) - 1
        print(
            f"  {rows:,} photos from the cache: {n_rows:,} rows in {float(sec):.1f} s, peak {int(kib) / 1024:.0f} MiB"
        )
    return 0


def main(argv=None) -> int:
    from bench import protocol as T

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="test photos (folds 5-7 persons)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--maps", action="store_true", help="also the PLQ-map share rule (slower)")
    ap.add_argument("--latency", action="store_true", help="time one whole report per photo instead")
    ap.add_argument(
        "--batch", action="store_true", help="photos/s of qmag check --images with 1 vs all workers, and memory"
    )
    ap.add_argument("--rows", type=int, default=10_000, help="with --batch: photos in the memory run")
    ap.add_argument("--ray", action="store_true", help="with --batch: also --engine ray, and compare its rows")
    ap.add_argument(
        "--kinds",
        default=",".join(TEST_OCCLUDERS),
        help=f"test occluders, comma-separated, of {', '.join(TEST_OCCLUDERS + EXTRA_TEST_OCCLUDERS)}",
    )
    a = ap.parse_args(argv)
    if a.latency:
        return latency(a.n if a.n != 200 else 20, a.seed)
    if a.batch:
        return batch(a.n, a.seed, a.rows, a.ray)
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    if not kinds or set(kinds) - set(TEST_OCCLUDERS + EXTRA_TEST_OCCLUDERS):
        ap.error(f"--kinds: expected test occluders of {', '.join(TEST_OCCLUDERS + EXTRA_TEST_OCCLUDERS)}")
    t0 = time.time()
    enc = load_encoder("builtin", runtime="fast")
    scale = scale_for(enc)
    sp = T.split_paths()
    rng = np.random.default_rng(a.seed)
    test = sorted(rng.choice(sp["test"], min(a.n, len(sp["test"])), replace=False).tolist())
    dev = sorted(rng.choice(sp["train"] + sp["val"], 200, replace=False).tolist())
    d = occluded_faces([str(PHOTOS / p) for p in test], kinds, enc, seed=a.seed)
    print(f"{len(test)} test photos -> {len(d['kind'])} crops; faces lost to the occluder: {d['lost']}", flush=True)
    masks = region_masks(enc.spec)
    reps = [check_crop(enc, c, scale, with_map=a.maps, seed=i) for i, c in enumerate(d["crop"])]
    kind = d["kind"]
    z = np.array([[r.z for r in rep.regions] for rep in reps])
    reject = np.array([rep.verdict == "reject" for rep in reps])
    gain = np.array([[r.q_gain for r in rep.regions] for rep in reps])
    flagged = np.array([[r.flagged for r in rep.regions] for rep in reps])
    share = np.array([[r.share for r in rep.regions] for rep in reps])
    q0 = np.array([rep.q for rep in reps])
    q_fix = np.array([rep.q_after for rep in reps])
    q_ctl = np.array([rep.control_q_after for rep in reps])
    dev_clean = occluded_faces([str(PHOTOS / p) for p in dev], (), enc)["crop"]
    lv_ref = np.median(region_lv(dev_clean, masks), axis=0)
    lv = np.abs(region_lv(d["crop"], masks) - lv_ref)
    names = np.asarray(REGIONS)
    print(f"time per check (no map{' / map' if a.maps else ''}): median {np.median([r.seconds for r in reps]):.3f} s")
    print(
        f"\n{'':<12}{'n':>5}  {'top region = occluded part':<28}{'raw q_gain rule':<26}{'chance':>7}  "
        f"{'local variance':<24}" + (f"{'PLQ share':<24}" if a.maps else "") + f"{'flagged':<24}{'verdict reject':<24}"
        f"{'repair raises q':<24}{'beats random region':<24}"
    )
    for k in ("clean",) + kinds:
        m = kind == k
        if k == "clean":
            print(
                f"{k:<12}{m.sum():>5}  {'':<28}{'':<26}{'':>7}  {'':<24}"
                + ("" if not a.maps else f"{'':<24}")
                + f"{fmt(flagged[m].any(1)):<24}{fmt(reject[m]):<24}"
                f"{fmt(q_fix[m] > q0[m]):<24}{fmt(q_fix[m] > q_ctl[m]):<24}"
            )
            continue
        ok = list(PART_REGIONS[PART_OF[k]])
        top = np.isin(names[z[m].argmax(1)], ok)
        raw = np.isin(names[gain[m].argmax(1)], ok)
        lvr = np.isin(names[lv[m].argmax(1)], ok)
        row = f"{k:<12}{m.sum():>5}  {fmt(top):<28}{fmt(raw):<26}{100 * len(ok) / len(REGIONS):>6.1f}%  {fmt(lvr):<24}"
        if a.maps:
            row += f"{fmt(np.isin(names[share[m].argmax(1)], ok)):<24}"
        row += (
            f"{fmt(flagged[m].any(1)):<24}{fmt(reject[m]):<24}{fmt(q_fix[m] > q0[m]):<24}{fmt(q_fix[m] > q_ctl[m]):<24}"
        )
        print(row)
    occ = kind != "clean"
    named = np.concatenate([np.isin(names[z[kind == k].argmax(1)], list(PART_REGIONS[PART_OF[k]])) for k in kinds])
    print(
        f"\nall occluded: top region {fmt(named)}, "
        f"repair raises q {fmt(q_fix[occ] > q0[occ])}, beats random region {fmt(q_fix[occ] > q_ctl[occ])}"
    )
    print(
        f"median q: clean {np.median(q0[kind == 'clean']):.2f}, "
        + ", ".join(f"{k} {np.median(q0[kind == k]):.2f}" for k in kinds)
    )
    print(f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
