"""Enrolment check: can this photo serve as a reference image, and if not, what should
the subject change?  Verdict, calibrated quality scale, fixed-scale quality map, the
face regions with their q gain when repaired, advice, and the repaired preview."""

import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from qmag_core.errors import QMagError
from qmag_core.quality.check import check_calibration, check_crop
from qmag_core.quality.scale import scale_for
from qmag_core.vision.align import detect_and_align
from studio.datasets import SAMPLE_DIR
from studio.face_figures import plq_figure
from studio.ui import detector, encoder

st.title("Enrolment check")
st.caption(
    "Drop a photo: is it good enough as a reference image, and if not, which part of the face should change? "
    "The check repairs each face region in turn (inpainting, or clean reference faces blended in) and measures "
    "how much the quality q rises, against what the same repair does to clean photos."
)
enc = encoder()
scale = scale_for(enc)
if scale is None or not scale.check:
    st.warning(
        f"No calibrated quality scale ships for the encoder {enc.id}: choose builtin in the sidebar "
        "(or build a scale with tools/build_quality_scale.py)."
    )
    st.stop()
check_calibration(scale)
ss = st.session_state
up = st.file_uploader("Drop a face photo (JPEG, PNG, WebP, BMP)", type=["jpg", "jpeg", "png", "webp", "bmp", "pgm"])
if up is not None:
    src, name = up.getvalue(), up.name
else:
    samples = sorted(p.name for p in (SAMPLE_DIR / "faces" / "deepface").glob("*.jpg"))
    pick = st.selectbox("…or check a sample photo (deepface test set, MIT)", samples, key="check_sample")
    path = SAMPLE_DIR / "faces" / "deepface" / pick
    src, name = path.read_bytes(), pick
key = hashlib.sha1(src).hexdigest()


@st.cache_data(show_spinner=False, max_entries=32)
def _check(content_hash: str, name: str, encoder_key: str, _src, _enc, _det, _scale):
    """Detect, align and check one photo, keyed by its content and the encoder."""
    a = detect_and_align(_src, _det, _enc.spec, name=name, face="best")
    return a, check_crop(_enc, a.crop, _scale)


bar = st.progress(0.0, text=f"Checking {name}: detecting, repairing six regions, mapping q…")
# what stays on the page after a bad upload: the last photo the user uploaded (replacing an
# upload passes through a run without one, which checks the sample), else the last sample
last_key = "check_last_upload" if up is not None else "check_last_sample"
try:
    aligned, rep = _check(key, name, enc.content_key, src, enc, detector(), scale)
except QMagError as e:
    bar.empty()
    st.error(f"{name}: {e}" if not str(e).startswith(name) else str(e))
    kept = ss.get("check_last_upload") or ss.get("check_last_sample")
    if kept is None:
        st.stop()
    st.caption(f"Showing the last photo checked: {kept[0]}")
    aligned, rep = kept[1]
else:
    bar.progress(1.0, text=f"Checked {name} in {rep.seconds:.2f} s")
    ss[last_key] = (name, (aligned, rep))

c1, c2, c3 = st.columns(3)
c1.metric("verdict", rep.verdict.upper())
c2.metric("quality scale", f"{rep.scale:.0f} / 100", help=f"band: {rep.band}; raw q = {rep.q:.3f}")
c3.metric("band", rep.band, help="data-driven edges: good / usable / poor (docs/method/quality.md)")
st.caption(
    f"Raw q = {rep.q:.3f} ({enc.id}). Scale {rep.scale:.0f} means: comparisons with a photo of this quality "
    f"match {rep.scale:.0f}% of the time at FMR {scale.fmr:g} (reference pairs: {scale.source})."
)
flagged = [r for r in rep.regions if r.flagged]
for r in flagged:
    st.warning(r.advice)
if not flagged:
    st.success("No face region is unusual: repairing any of them raises q no more than it does on clean photos.")

if rep.map is not None:
    from qmag_core.quality.explain import QualityMap

    unit = scale.plq.get("check")
    qm = QualityMap(rep.crop, rep.q, np.clip(rep.map / (unit or 1.0), -1, 1), rep.map, "occlusion", enc.id, {}, 0.0)
    st.plotly_chart(plq_figure(qm, unit=unit), key="check-map", width="stretch")
df = pd.DataFrame(
    [
        {
            "region": r.name,
            "share of q lost": round(r.share, 3),
            "q gain when repaired": round(r.q_gain, 3),
            "z vs clean photos": round(r.z, 2),
            "flagged": r.flagged,
            "repair": r.repair,
        }
        for r in rep.regions
    ]
)
st.subheader("Regions")
st.dataframe(df, hide_index=True, width="stretch", key="check-regions")
st.subheader(f"Repaired preview: {rep.top}")
if not flagged:
    st.caption(
        f"Nothing is flagged: {rep.top} is only the region whose repair did most against clean photos; "
        "this photo needs no change."
    )
p1, p2 = st.columns(2)
p1.image(rep.crop, caption=f"aligned photo · q = {rep.q:.3f}", width=220)
p2.image(rep.repaired, caption=f"{rep.top} repaired · q = {rep.q_after:.3f} ({rep.q_after - rep.q:+.3f})", width=220)
st.caption(
    f"Control: the same repair of a random region of equal area gives q = {rep.control_q_after:.3f} "
    f"({rep.control_q_after - rep.q:+.3f})."
)
