"""Quality: distribution of q, lowest/highest-quality faces, and EDC (FNMR vs fraction
of pairs discarded by q_min, against random discards)."""
import numpy as np
import streamlit as st

from pages.shared import dataset, encoder, sidebar
from qmag_core import metrics as M
from qmag_core.figures import edc_figure, quality_histogram

sidebar()
st.title("Quality")
ds = dataset()
if ds is None:
    st.stop()
t = ds.table
enc = encoder()
if ds.encoder in ("builtin", "builtin-raw"):
    st.info("For the built-in encoder, q is the length of its raw descriptor — only a weak quality proxy until its "
            "MagFace quality head ships.")
per_image = bool(ds.image_quality)
q = np.asarray(list(ds.image_quality.values())) if per_image else np.r_[t.q1, t.q2]
st.caption(f"**{ds.name}** — quality of {'each image' if per_image else 'both images of every pair'} "
           f"(n = {q.size:,}): median {np.median(q):.4f}, 5th–95th percentile {np.percentile(q, 5):.4f}–{np.percentile(q, 95):.4f}")
st.plotly_chart(quality_histogram(q), key="qhist", width="stretch")

if per_image and ds.image_root is not None:
    from qmag_core.align import load_image

    items = sorted(ds.image_quality.items(), key=lambda kv: kv[1])
    n = min(5, len(items) // 2)
    for title, sel in (("Lowest quality", items[:n]), ("Highest quality", items[-n:][::-1])):
        st.subheader(title)
        cols = st.columns(n)
        for c, (path, val) in zip(cols, sel):
            c.image(load_image(ds.image_root / path), caption=f"{path}\nq = {val:.4f}", width="stretch")


@st.cache_data(show_spinner="EDC…", max_entries=16)
def edc(key, s, y, qm):
    return M.edc(s, y, qm, n_random=200, random_state=0)


e = edc(f"{ds.name}|{len(t)}", t.s, t.label.astype(bool), t.q_min)
st.plotly_chart(edc_figure(e), key="edc", width="stretch")
k = int(np.argmin(np.abs(e.discard - 0.2)))
st.caption(f"Discarding the 20% lowest-q_min pairs: FNMR {100 * e.fnmr[k]:.3f}% vs {100 * e.fnmr_random_median[k]:.3f}% "
           f"for random discards (median of {e.n_random}); threshold fixed on the full set ({e.rule}).")
st.caption("Pixel-level quality maps (where in a face quality is lost) are not built yet; they will appear here.")
