"""Train α/β on the active dataset: FMR range, grid and mode; ω_opt(t) with its fitted
line; bootstrap CI; scale-free comparison with the published values; held-out effect."""

import json
import warnings

import numpy as np
import pandas as pd
import streamlit as st

from qmag_core.errors import FMRClampWarning, QMagError
from qmag_core.evaluation.metrics import fmr_key, operating_points
from qmag_core.evaluation.protocol import heldout_effect
from qmag_core.scores.params import OFFICIAL_PARAMS
from qmag_core.scores.scoring import qmagface_score
from qmag_core.scores.trainer import QMagFaceTrainer
from studio.datasets import fmr_grid
from studio.figures import omega_fit
from studio.ui import active_params, download_table, fmt_pct, scored_dataset, state

st.title("Train α/β")
ss = state()
ds = scored_dataset()
t = ds.table
grid, default, reason = fmr_grid(ds.n_imposter)
st.caption(
    f"**{ds.name}** — {ds.n_genuine:,} genuine, {ds.n_imposter:,} imposter pairs" + (f". {reason}." if reason else "")
)
if ss.get("_train_ds") != ds.key:  # new dataset: new slider limits
    ss["_train_ds"] = ds.key
    ss["fmr_range"] = default
    ss.pop("w_fmr_range", None)
cur = ss.get("fmr_range")
if not (isinstance(cur, (tuple, list)) and len(cur) == 2 and cur[0] in grid and cur[1] in grid):
    ss["fmr_range"] = default
    ss.pop("w_fmr_range", None)
# first visit: start from the active parameters' mode and options, not from fixed defaults
_p = active_params()
_opts = (_p.options or {}) if _p is not None else {}
for _k, _v in (
    ("mode", _p.mode if _p is not None else "official"),
    ("n_fmr", _opts.get("n-fmr", 50)),
    ("n_omega", _opts.get("n-omega", 20)),
    ("max_ratio", _opts.get("max-ratio", 0.5)),
    ("seed", _opts.get("seed", 0)),
):
    if _k not in ss and _v is not None:
        ss[_k] = _v
c1, c2, c3 = st.columns([3, 1, 1])
fmr_min, fmr_max = c1.select_slider(
    "FMR range (log scale)",
    options=grid,
    value=tuple(ss["fmr_range"]),
    key="w_fmr_range",
    format_func=fmr_key,
)
ss["fmr_range"] = (fmr_min, fmr_max)
mode = c2.radio(
    "Mode",
    ["official", "consistent"],
    key="mode",
    horizontal=False,
    help="official: the published algorithm exactly (thresholds of sigmoid scores, applied to raw "
    "cosine). consistent: thresholds found on the raw scores ω·q + s, where ω(s) is applied.",
)
seed = c3.number_input("Seed", 0, 2**31 - 1, key="seed")
c1, c2, c3 = st.columns(3)
n_fmr = c1.number_input("Number of FMRs", 2, 500, key="n_fmr")
n_omega = c2.slider("ω grid size", 2, 200, key="n_omega", help="20 in the paper; finer grids smooth ω_opt(t)")
max_ratio = c3.slider("max_ratio (ω grid extent)", 0.05, 2.0, step=0.05, key="max_ratio")
if fmr_min >= fmr_max:
    st.error("Choose an FMR range with fmr_min < fmr_max.")
    st.stop()


@st.cache_data(show_spinner=False, max_entries=64)
def fit(key, X, y, mode, fmr_min, fmr_max, n_fmr, n_omega, max_ratio, seed):
    tr = QMagFaceTrainer(
        mode=mode,
        fmr_min=fmr_min,
        fmr_max=fmr_max,
        n_fmr=n_fmr,
        n_omega=n_omega,
        max_ratio=max_ratio,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FMRClampWarning)
        tr.fit(X, y)
    return tr


@st.cache_data(show_spinner="Bootstrap CI of α/β…", max_entries=32)
def boot(key, _tr, X, y, n, seed):
    return _tr.bootstrap(X, y, n_boot=n, random_state=seed)


@st.cache_data(show_spinner="Held-out evaluation…", max_entries=32)
def heldout(key, _table, _tr):
    return heldout_effect(_table, _tr, seed=_tr.random_state)


args = (mode, float(fmr_min), float(fmr_max), int(n_fmr), int(n_omega), float(max_ratio), int(seed))
key = ds.key  # content fingerprint: two uploads with the same name never share a result
try:
    tr = fit(key, t.X(), t.label, *args)
except QMagError as e:
    st.error(f"Training failed: {e}")
    st.stop()

c1, c2, c3, c4 = st.columns(4)
c1.metric("α", f"{tr.alpha_:.6g}")
c2.metric("β", f"{tr.beta_:.6g}")
c3.metric("zero crossing s0 = α/β", f"{tr.alpha_ / tr.beta_:.4f}" if tr.beta_ else "∞")
c4.metric("FMRs with tied ω", f"{int((tr.n_ties_ > 1).sum())} / {tr.fmrs_.size}")
st.plotly_chart(
    omega_fit(tr.thresholds_, tr.omega_opt_, tr.n_ties_, tr.alpha_, tr.beta_, tr.fmrs_, tr.mode),
    key="omega",
    width="stretch",
)
st.caption(
    "Marker size = how many ω reach the lowest FNMR at that FMR (the first, most negative one is taken); "
    "with few distinct ω the fit rests on few points — check the bootstrap CI."
)

n_boot = 30 if len(t) <= 50_000 else 10
if st.toggle(f"Bootstrap 95% CI of α/β ({n_boot} seeded resamples)", value=len(t) <= 20_000, key="do_boot"):
    ci = boot(key + str(args), tr, t.X(), t.label, n_boot, int(seed))
    st.write(
        f"α ∈ [{ci.alpha[0]:.5g}, {ci.alpha[1]:.5g}], β ∈ [{ci.beta[0]:.5g}, {ci.beta[1]:.5g}]"
        + (f" ({ci.n_failed} degenerate resamples skipped)" if ci.n_failed else "")
    )

st.subheader("Compared with the published parameters (scale-free)")
q_med = float(np.median(t.q_min))
ours_s0 = tr.alpha_ / tr.beta_ if tr.beta_ else float("inf")
cmp = pd.DataFrame(
    [
        {
            "parameters": "this fit",
            "α": tr.alpha_,
            "β": tr.beta_,
            "s0 = α/β": ours_s0,
            "typical q": q_med,
            "correction at s = 0 (ω(0)·q)": min(0.0, -tr.alpha_) * q_med,
        },
        {
            "parameters": "official MagFace iResNet100 (Adience)",
            "α": OFFICIAL_PARAMS.alpha,
            "β": OFFICIAL_PARAMS.beta,
            "s0 = α/β": OFFICIAL_PARAMS.s0,
            "typical q": 25.0,
            "correction at s = 0 (ω(0)·q)": min(0.0, -OFFICIAL_PARAMS.alpha) * 25.0,
        },
    ]
)
st.dataframe(cmp, hide_index=True, width="stretch")
download_table(cmp, "compare_published.csv")
st.caption(
    "Raw α/β depend on the encoder's quality scale; compare the zero crossing s0 (pairs with s ≥ s0 are "
    "left unchanged) and the largest correction ω(0)·q at a typical quality (median q_min of this dataset; "
    "q ≈ 25 for good faces under MagFace iResNet100)."
)

st.subheader("Effect on held-out pairs")
try:
    h = heldout(key + str(args), t, tr)
    rows = []
    for k in ("eer", "fnmr@0.01", "fnmr@0.001", "fnmr@0.0001", "auc"):
        a, b = h["cosine"].get(k), h["qmagface"].get(k)
        f = (lambda v: "—" if v is None else f"{v:.5f}") if k == "auc" else fmt_pct
        label = {"eer": "EER", "auc": "AUC"}.get(k) or k.replace("fnmr@", "FNMR @ FMR ")
        rows.append({"metric": label, "cosine": f(a), "QMagFace": f(b)})
    st.caption(
        f"α/β refitted with these settings on a seeded half ({h['n_train']:,} pairs), measured on the "
        f"other half ({h['n_test']:,} pairs) — never on the pairs they were trained on."
    )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    download_table(pd.DataFrame(rows), "heldout_effect.csv")
except QMagError as e:
    st.warning(f"Held-out evaluation not possible: {e}")

params = tr.params(
    encoder=ds.encoder,
    trained_on={"dataset": ds.name, "n_genuine": tr.n_genuine_, "n_imposter": tr.n_imposter_},
    encoder_key=t.encoder_key,
)
params.operating_points = operating_points(t.s, qmagface_score(t.s, t.q_min, tr.alpha_, tr.beta_), t.label)
c1, c2 = st.columns(2)
c1.download_button(
    "Download params JSON",
    json.dumps(params.to_dict(), indent=2, default=float).encode(),
    file_name="qmagface_params.json",
    mime="application/json",
    key="dl_params",
)
if c2.button("Use these parameters on every page", key="use_params"):
    ss.params, ss.params_source = params, f"trained on {ds.name}"
    # rerun so the sidebar (drawn before this button) shows them at once; the message survives it
    ss.params_flash = f"Active parameters set: α = {tr.alpha_:.6g}, β = {tr.beta_:.6g}"
    st.rerun()
if ss.get("params_flash"):
    c2.success(ss.pop("params_flash"))
table = pd.DataFrame(
    {
        "fmr": tr.fmrs_,
        "threshold": tr.thresholds_,
        "omega_opt": tr.omega_opt_,
        "fnmr": tr.fnmr_opt_,
        "tied_omegas": tr.n_ties_,
    }
)
download_table(table, "omega_opt.csv", "Download ω_opt(t) table (CSV)")
