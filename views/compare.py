"""Compare faces: detection, aligned crops, quality q, cosine s, QMagFace ŝ and the
decision at a chosen FMR operating point."""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from qmag_core.evaluation.metrics import fmr_key
from qmag_core.pipeline.compare import compare_embedded, embed_images, explain_pairs
from qmag_core.quality.scale import scale_for
from studio.datasets import SAMPLE_DIR
from studio.face_figures import face_overlay
from studio.figures import off_diagonal_range, similarity_matrix
from studio.ui import (
    active_params,
    dataset,
    detector,
    download_table,
    encoder,
)

#: the decision as the page shows it: green accept, red reject
DECISION_BADGE = {True: ":green-background[**accept**]", False: ":red-background[**reject**]"}
SCALE_HELP = (
    "The calibrated quality scale: 100 × the share of genuine pairs that match at the scale's FMR among photos "
    "of this quality (measured on held-out LFW pairs); bands good / usable / poor."
)


def decision_colour(v: str) -> str:
    return {"accept": "background-color: #d8f3dc", "reject": "background-color: #ffd6d6"}.get(v, "")


st.title("Compare faces")
SAMPLES = ["img1.jpg", "img2.jpg", "img9.jpg", "couple.jpg"]
files = st.file_uploader(
    "Drop two or more face images (JPEG, PNG, WebP, BMP, PGM)",
    accept_multiple_files=True,
    type=["jpg", "jpeg", "png", "webp", "bmp", "pgm", "tif", "tiff"],
)
if files:
    sources = [f.getvalue() for f in files]
    names = [f.name for f in files]
else:
    picked = st.multiselect(
        "…or compare sample photos (deepface test set, MIT)",
        sorted(p.name for p in (SAMPLE_DIR / "faces" / "deepface").glob("*.jpg")),
        default=SAMPLES[:2],
        key="sample_faces",
    )
    sources = [str(SAMPLE_DIR / "faces" / "deepface" / n) for n in picked]
    names = picked
if len(sources) < 1:
    st.info("Add at least one image.")
    st.stop()

enc = encoder()
params = active_params()
fmr_options = sorted({d["fmr"] for d in params.operating_points}) if params and params.operating_points else [1e-3]
fmr = st.select_slider(
    "Operating point (FMR)",
    options=fmr_options,
    value=min(fmr_options, key=lambda f: abs(np.log10(f) + 3)),
    format_func=fmr_key,
    key="compare_fmr",
)
ss = st.session_state


def _pick(h: str, wkey: str) -> None:
    ss.face_choice[h] = ss[wkey] - 1


ss.setdefault("face_choice", {})  # content hash of an image -> index of the face the user picked
ss.setdefault("face_rule", "best")
rule = st.radio(
    "Subject of a photo with several faces",
    ["best", "largest", "center"],
    horizontal=True,
    key="face_rule",
    help="best: a large face near the centre (box area − 2 × squared offset from "
    "the image centre); largest: the largest box; center: the box nearest the "
    "centre. Pick another face under any photo with several.",
)
hashes = [hashlib.sha1(src if isinstance(src, bytes) else Path(src).read_bytes()).hexdigest() for src in sources]


@st.cache_data(show_spinner="Detecting and embedding…", max_entries=64)
def _embedded(content_hash: str, name: str, encoder_key: str, face, _src, _enc, _det):
    """One image's detection, alignment and embedding, keyed by its content, the
    encoder and the face choice: moving the FMR slider re-runs none of it."""
    if isinstance(face, int):
        return embed_images([_src], _enc, detector=_det, names=[name], choose={0: face})[0]
    return embed_images([_src], _enc, detector=_det, names=[name], face=face)[0]


det = detector()
results = [
    _embedded(h, name, enc.content_key, ss.face_choice.get(h, rule), src, enc, det)
    for h, name, src in zip(hashes, names, sources, strict=True)
]
res = compare_embedded(results, params=params, fmr=fmr)

ds = dataset()
qs = None
if ds is not None and ds.encoder in (None, enc.id):
    qs = np.asarray(list(ds.image_quality.values())) if ds.image_quality else np.r_[ds.table.q1, ds.table.q2]

qscale = scale_for(enc)
cols = st.columns(min(4, len(res.images)))
for k, r in enumerate(res.images):
    with cols[k % len(cols)]:
        st.markdown(f"**{r.name}**")
        if not r.ok:
            st.error(r.error)
            continue
        fa = r.aligned
        others = [j for j in range(len(fa.faces)) if j != fa.face_index]
        st.plotly_chart(
            face_overlay(
                r.image,
                fa.face.box,
                fa.face.landmarks,
                other_boxes=[fa.faces[j].box for j in others],
                labels=[fa.face_index + 1] + [j + 1 for j in others] if others else None,
            ),
            key=f"overlay-{k}",
            width="stretch",
        )
        if r.n_faces > 1:
            wkey = f"face-{hashes[k]}"
            if hashes[k] not in ss.face_choice:  # follow the rule until the user picks a face
                ss[wkey] = fa.face_index + 1
            st.selectbox(
                f"{r.n_faces} faces: compare face",
                list(range(1, r.n_faces + 1)),
                key=wkey,
                on_change=_pick,
                args=(hashes[k], wkey),
                help="Faces are numbered by size (1 = largest); the box in colour is compared.",
            )
        st.image(r.aligned.crop, caption=f"aligned {r.aligned.spec.name}", width=150)
        pct = f" · percentile {100 * np.mean(qs <= r.quality):.0f} of the active dataset" if qs is not None else ""
        if qscale is not None:  # the calibrated scale first, the raw q beside it
            d = qscale.describe(r.quality)
            st.metric(f"quality ({enc.id} scale)", f"{d['scale']:.0f}/100", help=SCALE_HELP)
            st.caption(
                f"band **{d['band']}** — photos of this quality match {d['scale']:.0f}% of the time at "
                f"FMR {fmr_key(qscale.fmr)} · raw q {r.quality:.2f}{pct}"
            )
        else:
            st.metric(f"quality q ({enc.id})", f"{r.quality:.2f}", help=enc.quality)
            if pct:
                st.caption(pct.strip(" ·"))

if not res.pairs:
    st.info("Need at least two images with a detected face for a comparison.")
    st.stop()
thr = (
    "no operating point"
    if res.threshold_s_hat is None
    else f"FMR {fmr_key(res.fmr)}: accept when ŝ ≥ {res.threshold_s_hat:.4f} (cosine alone: s ≥ {res.threshold_s:.4f})"
)
st.subheader("Pairs")
st.caption(
    f"Parameters α = {params.alpha:.5g}, β = {params.beta:.5g} ({params.mode}); {thr}"
    if params
    else "No QMagFace parameters for this encoder: ŝ = s."
)
rows = [
    {
        "image 1": res.images[p.i].name,
        "image 2": res.images[p.j].name,
        "q_min": round(p.q_min, 2),
        "s": round(p.s, 5),
        "ŝ": round(p.s_hat, 5),
        "decision (ŝ)": "—" if p.accept_s_hat is None else ("accept" if p.accept_s_hat else "reject"),
        "decision (s)": "—" if p.accept_s is None else ("accept" if p.accept_s else "reject"),
    }
    for p in res.pairs
]
if len(res.pairs) == 1:
    p = res.pairs[0]
    c1, c2, c3 = st.columns(3)
    c1.metric("cosine s", f"{p.s:.5f}")
    c2.metric("QMagFace ŝ", f"{p.s_hat:.5f}")
    c3.markdown(f"decision at FMR {fmr_key(res.fmr)}")
    c3.markdown(DECISION_BADGE.get(p.accept_s_hat, "—"))
st.info(explain_pairs(res.pairs, params))
df = pd.DataFrame(rows)
styled = df.style.map(decision_colour, subset=["decision (ŝ)", "decision (s)"])
st.dataframe(styled.format({"q_min": "{:.2f}", "s": "{:.5f}", "ŝ": "{:.5f}"}), hide_index=True, width="stretch")
download_table(df, "comparisons.csv")
if sum(r.ok for r in res.images) > 2:
    names_ok = [r.name for r in res.images]
    c1, c2 = st.columns(2)
    ms, mh = res.matrix("s"), res.matrix("s_hat")
    zr = off_diagonal_range(ms, mh)  # one colour scale for both, from the pairs themselves
    c1.plotly_chart(similarity_matrix(ms, names_ok, "cosine s", zr), key="mat-s", width="stretch")
    c2.plotly_chart(similarity_matrix(mh, names_ok, "QMagFace ŝ", zr), key="mat-sh", width="stretch")
