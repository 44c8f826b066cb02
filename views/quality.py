"""Quality: distribution of q, lowest/highest-quality faces, and EDC (FNMR vs fraction
of pairs discarded by q_min, against random discards)."""

import numpy as np
import pandas as pd
import streamlit as st

from qmag_core.evaluation.measures import iso_edcs, measure_columns, measure_edcs
from qmag_core.quality.scale import scale_for
from studio.face_figures import plq_figure
from studio.figures import edc_figure, quality_histogram
from studio.ui import dataset, encoder, fmt_pct, gradient_encoder

st.title("Quality")
up = st.file_uploader(
    "Upload a face for its pixel-level quality map (shown below, under the dataset's quality)",
    type=["jpg", "jpeg", "png", "webp", "bmp", "pgm"],
    key="plq_upload",
)
ds = dataset()
if ds is None:
    st.stop()
t = ds.table
enc = encoder()
if ds.encoder == "builtin-raw":
    st.info(
        "With builtin-raw, q is the length of the raw descriptor — only a weak quality proxy. "
        "The builtin encoder adds a quality head trained to predict how much identity a capture keeps."
    )
per_image = bool(ds.image_quality)
q = np.asarray(list(ds.image_quality.values())) if per_image else np.r_[t.q1, t.q2]
st.caption(
    f"**{ds.name}** — quality of {'each image' if per_image else 'both images of every pair'} "
    f"(n = {q.size:,}): median {np.median(q):.2f}, 5th–95th percentile "
    f"{np.percentile(q, 5):.2f}–{np.percentile(q, 95):.2f}"
)
qscale = scale_for(enc) if ds.encoder in (None, enc.id) else None
bands = None
if qscale is not None:
    lo, hi = qscale.edges
    bands = {"poor": (min(float(q.min()), lo), lo), "usable": (lo, hi), "good": (hi, max(float(q.max()), hi))}
    band = qscale.band(q)
    share = {b: float(np.mean(band == b)) for b in ("good", "usable", "poor")}
    st.caption(
        "Calibrated quality scale of "
        f"{enc.id}: **good** {100 * share['good']:.1f}% · **usable** {100 * share['usable']:.1f}% · "
        f"**poor** {100 * share['poor']:.1f}% of these qualities (band edges q = {lo:.2f} and {hi:.2f}: where the "
        f"FNMR at FMR {qscale.fmr:g} of pairs with a worse image of that quality crosses 1.5× and 0.5× the "
        "reference pairs' FNMR; docs/method/quality.md)"
    )
st.plotly_chart(quality_histogram(q, bands=bands), key="qhist", width="stretch")

if per_image and ds.image_root is not None:
    from qmag_core.vision.images import load_image

    items = sorted(ds.image_quality.items(), key=lambda kv: kv[1])
    n = min(5, len(items) // 2)
    for title, sel in (("Lowest quality", items[:n]), ("Highest quality", items[-n:][::-1])):
        st.subheader(title)
        cols = st.columns(n)
        for c, (path, val) in zip(cols, sel, strict=False):
            c.image(load_image(ds.image_root / path), caption=f"{path}\nq = {val:.2f}", width="stretch")


@st.cache_data(show_spinner="EDC…", max_entries=16)
def edc(key, s, y, qm, failed_labels, measures):
    """EDC of q and of every model-free measure (same threshold); failed pairs count as
    non-matches and are discarded first."""
    return measure_edcs(s, y, qm, measures, failed_labels, n_random=200, seed=0)


@st.cache_data(show_spinner=False, max_entries=16)
def iso_pauc(key, s, y, failed_labels, qualities):
    """pAUC-EDC (ISO/IEC 29794-1: threshold at FNMR 5% of the scored pairs, ties together,
    up to 20% discarded, minus the theoretical best) per quality measure."""
    return {name: e.pauc(0.2) for name, e in iso_edcs(s, y, qualities, failed_labels).items()}


if ds.one_class:
    st.warning(f"No EDC: {ds.one_class}")
else:
    fl = t.failed.label.astype(bool) if t.n_failed else np.zeros(0, bool)
    e, others = edc(ds.key, t.s, t.label.astype(bool), t.q_min, fl, measure_columns(t.extra))
    st.plotly_chart(edc_figure(e, others=others), key="edc", width="stretch")
    k = int(np.argmin(np.abs(e.discard - 0.2)))
    st.caption(
        f"Discarding the 20% lowest-q_min pairs: FNMR {100 * e.fnmr[k]:.3f}% vs "
        f"{100 * e.fnmr_random_median[k]:.3f}% for random discards (median of {e.n_random}); threshold fixed "
        f"on the full set ({e.rule})"
        + (f"; the {t.n_failed} pairs with a failed image count as non-matches and go first" if t.n_failed else "")
        + "."
    )
    if others:
        rnd = e.fnmr_random_median[k]
        iso = iso_pauc(ds.key, t.s, t.label.astype(bool), fl, {"q (this encoder)": t.q_min, **measure_columns(t.extra)})
        rows = [
            {
                "quality measure": name,
                "FNMR at 20% discarded": fmt_pct(r.fnmr[k]),
                "ratio to random (lower is better)": None if not rnd else round(r.fnmr[k] / rnd, 3),
                "pAUC-EDC ≤20% (ISO, FNMR 5%)": None if iso.get(name) is None else round(iso[name], 5),
            }
            for name, r in [("q (this encoder)", e), *others.items()]
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="edc_table")
        st.caption(
            "Model-free baselines: raw_length = the backbone descriptor's length, sharpness = variance of "
            "the Laplacian of the aligned crop, detector_prob = MTCNN's face probability, ied_px = "
            "inter-eye distance in pixels. A quality model worth its name beats them."
        )
st.subheader("Where in a face is quality lost? (pixel-level quality map)")
st.caption(
    "The map explains this encoder's own q: red pixels lower it, blue pixels raise it. "
    "gradient: integrated gradients from a blurred copy (pixel detail); occlusion (blur): q change when "
    "16×16 patches are blurred; occlusion (grey): q change when they are greyed out (content; 324 "
    "forward passes each)."
)


#: radio label → (explain method, its options)
PLQ_METHODS = {
    "gradient": ("gradient", {}),
    "occlusion (blur)": ("occlusion", {"fill": "blur"}),
    "occlusion (grey)": ("occlusion", {"fill": "grey"}),
}


def plq(data: bytes, name: str, method: str, encoder_key: str, enc, det):
    """The map of one face, kept per session by the photo's content, the method and the
    encoder's content key (the 32 latest); a new one shows its progress step by step."""
    import hashlib

    key = (hashlib.sha256(data).hexdigest(), method, encoder_key)
    maps = st.session_state.setdefault("_plq_maps", {})
    if key not in maps:
        from qmag_core.quality.explain import explain

        name_, kw = PLQ_METHODS[method]
        what = "integration step" if name_ == "gradient" else "patch"
        bar = st.progress(0.0, text=f"{method} map of {name}…")

        def step(done, total):
            bar.progress(done / total, text=f"{method} map of {name}: {what} {done} of {total}")

        maps[key] = explain(data, enc, method=name_, detector=det, name=name, progress=step, **kw)
        bar.empty()
        while len(maps) > 32:
            maps.pop(next(iter(maps)))
    return maps[key]


c1, c2 = st.columns([2, 1])
if up is not None:
    c1.caption(f"The face uploaded at the top of the page: {up.name}")
grad_enc = gradient_encoder()  # gradients of q need the torch network
has_grad = grad_enc is not None and grad_enc.differentiable
methods = [m for m in PLQ_METHODS if has_grad or PLQ_METHODS[m][0] != "gradient"]
method = c2.radio("Method", methods, key="plq_method", horizontal=True)
if not has_grad:
    c2.caption("gradient maps need torch (pip install 'qmag-studio[vision]'); occlusion works here.")
source = None
if up is not None:
    source = (up.getvalue(), up.name)
elif per_image and ds.image_root is not None:
    pick = c1.selectbox("…or a face of the dataset (lowest quality first)", [p for p, _ in items], key="plq_pick")
    source = ((ds.image_root / pick).read_bytes(), pick)
if source is None:
    st.info("Upload a face (or open an image dataset such as the deepface photos) to see its map.")
else:
    from qmag_core.errors import QMagError
    from studio.ui import detector

    try:
        use = grad_enc if PLQ_METHODS[method][0] == "gradient" else enc
        qm = plq(source[0], source[1], method, use.content_key, use, detector())
    except QMagError as e:
        st.error(str(e))
    else:
        default_opts = PLQ_METHODS[method][1].get("fill", "blur") == "blur"
        calibrated = qscale.plq.get(qm.method) if qscale is not None and default_opts else None
        fixed = st.toggle(
            "Fixed colour scale" if calibrated else "Fixed colour scale (not calibrated for this method)",
            value=calibrated is not None,
            disabled=calibrated is None,
            key=f"plq_fixed_{calibrated is not None}",
            help="The encoder's calibrated PLQ unit: the same colours mean the same q per pixel on every photo "
            "(compare photos, or a photo before and after a change). Off: scaled by this map's own 99th percentile.",
        )
        unit = calibrated if fixed else None
        st.plotly_chart(plq_figure(qm, unit=unit), key="plq", width="stretch")
        on_scale = ""
        if qscale is not None:
            d = qscale.describe(qm.quality)
            on_scale = f" (scale {d['scale']:.0f}/100, {d['band']})"
        st.caption(f"{source[1]}: q = {qm.quality:.2f}{on_scale} · {qm.method} map in {qm.seconds:.1f} s")
