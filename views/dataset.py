"""Dataset: genuine/imposter distributions before and after QMagFace, s vs q_min,
ROC/DET, FNMR@FMR with bootstrap CIs, EER; bring your own data."""

import dataclasses

import numpy as np
import pandas as pd
import streamlit as st

from qmag_core.errors import QMagError
from qmag_core.evaluation import bootstrap as B
from qmag_core.evaluation import metrics as M
from qmag_core.evaluation.protocol import metric_block, qmagface_effect
from qmag_core.scores.roc_window import lowest_fmr
from qmag_core.scores.scoring import qmagface_score
from studio.datasets import (
    Dataset,
    dataset_from_bin,
    dataset_from_embeddings,
    dataset_from_folder,
    dataset_from_scores,
    dataset_from_templates,
    public_message,
    resolve_under_roots,
    staged_uploads,
    training_overlap,
)
from studio.figures import roc_det, s_vs_q, score_histograms
from studio.ui import (
    active_params,
    download_table,
    embedding_progress,
    encoder,
    fmt_pct,
    scored_dataset,
    set_active,
    state,
)

st.title("Dataset")
ss = state()


def _add(name: str, ds: Dataset):
    ss.uploaded[name] = ds
    set_active("dataset_id", name)
    st.rerun()


def _load(make, name: str | None = None, *, progress: bool = False):
    """Open a dataset with ``make()`` (``make(progress)`` with an embedding progress bar)
    and make it the active one; bad input is shown and what is loaded stays in place."""
    try:
        if progress:
            with embedding_progress() as prog:
                ds_new = make(prog)
        else:
            ds_new = make()
    except (QMagError, OSError) as e:
        st.error(f"Not loaded: {public_message(e)}")
        return
    _add(name or ds_new.name, ds_new)


def _scores_upload(up):
    with staged_uploads(up) as (path,):
        return dataset_from_scores(path, up.name)


def _embeddings_upload(ue, upr, name: str):
    with staged_uploads(ue, upr) as (pe, pp):
        return dataset_from_embeddings(pe, pp, name)


def _bin(ub, srv_bin: str, prog):
    if ub is not None:
        with staged_uploads(ub) as (pb,):
            return dataset_from_bin(pb, encoder(), name=ub.name, progress=prog)
    return dataset_from_bin(resolve_under_roots(srv_bin, kind="file"), encoder(), name=srv_bin, progress=prog)


with st.expander("Bring your own data", expanded=False):
    st.caption(
        "A failed upload leaves everything already loaded in place. Upload limit: see "
        ".streamlit/config.toml (server.maxUploadSize)."
    )
    t1, t2, t3, t4, t5 = st.tabs(
        ["scores CSV", "embeddings + pairs", "image folder + pairs (server)", "insightface .bin", "templates (IJB)"]
    )
    with t1:
        up = st.file_uploader("s,q1,q2,label[,fold] (or q_min)", type=["csv", "txt"], key="up_scores")
        if up is not None and st.button("Load scores", key="load_scores"):
            _load(lambda: _scores_upload(up), up.name)
    with t2:
        ue = st.file_uploader("embeddings (.npz, .npy, MagFace feat.list)", key="up_emb")
        upr = st.file_uploader("pairs (LFW pairs.txt or CSV path1,path2,label[,fold])", key="up_pairs")
        if ue is not None and upr is not None and st.button("Load embeddings + pairs", key="load_emb"):
            name = f"{ue.name} + {upr.name}"
            _load(lambda: _embeddings_upload(ue, upr, name), name)
    with t3:
        folder = st.text_input("image folder (under the data root)", key="srv_folder")
        pairs_path = st.text_input("pairs file (under the data root)", key="srv_pairs")
        if st.button("Embed and load", key="load_srv"):
            _load(lambda prog: dataset_from_folder(folder, pairs_path, encoder(), progress=prog), progress=True)

    with t4:
        st.caption(
            "lfw.bin, agedb_30.bin, cfp_fp.bin, calfw.bin, cplfw.bin …: aligned 112×112 crops, read "
            "without running the file's pickle; embedded with the active encoder, 10-fold protocol."
        )
        ub = st.file_uploader("a .bin file", type=["bin"], key="up_bin")
        srv_bin = st.text_input("…or a .bin under the data root (server)", key="srv_bin")
        if (ub is not None or srv_bin.strip()) and st.button("Embed and load .bin", key="load_bin"):
            _load(lambda prog: _bin(ub, srv_bin, prog), progress=True)
    with t5:
        st.caption(
            "IJB-B / IJB-C 1:1 layout (insightface): meta/<name>_face_tid_mid.txt, "
            "<name>_template_pair_label.txt, optional <name>_name_5pts_score.txt, images in loose_crop/. "
            "Features are pooled per media and per template; each row of the dataset is a template pair."
        )
        ijb = st.text_input("protocol folder (under the data root)", key="srv_ijb")
        pooling = st.selectbox(
            "pooling",
            ["qmagface", "softmax", "mean", "magface"],
            key="ijb_pooling",
            help="qmagface: quality-weighted (f = Σ qᵢuᵢ, q = Σqᵢ²/Σqᵢ per media and template); softmax: weights "
            "softmax(q/T), most weight on the best images (T chosen on development data); mean: unit "
            "vectors averaged; magface: raw features averaged (longer weighs more)",
        )
        if ijb.strip() and st.button("Embed and load templates", key="load_ijb"):
            _load(lambda prog: dataset_from_templates(ijb, encoder(), pooling=pooling, progress=prog), progress=True)

ds = scored_dataset()
params = active_params()
in_sample, provenance = training_overlap(ds, params.trained_on) if params is not None else (None, "")
held = None if in_sample is None else ~in_sample
if held is not None and in_sample.any() and held.any():
    st.info(provenance)
    both = len(np.unique(ds.table.label[held])) == 2
    if st.toggle(
        f"Held-out pairs only ({int(held.sum()):,} of {held.size:,}: persons that did not train α/β)",
        value=both,
        disabled=not both,
        key="held_out_only",
        help="Metrics on pairs whose persons trained the active α/β are in-sample: they flatter QMagFace.",
    ):
        ds = dataclasses.replace(ds, table=ds.table.subset(held), name=f"{ds.name}, held-out pairs")
    else:
        st.warning("In-sample: the numbers below include pairs of the persons that trained the active α/β.")
elif params is not None:
    st.caption(provenance)
t = ds.table
if params is not None and ds.encoder and params.encoder and ds.encoder != params.encoder:
    st.warning(
        f"The active parameters were trained for encoder '{params.encoder}' but this dataset comes from "
        f"'{ds.encoder}': α/β depend on the encoder's quality scale."
    )
alpha, beta = (params.alpha, params.beta) if params else (0.0, 0.0)
s_hat = qmagface_score(t.s, t.q_min, alpha, beta)
y = t.label.astype(bool)
st.caption(
    f"**{ds.name}** — {ds.n_genuine:,} genuine, {ds.n_imposter:,} imposter pairs; "
    f"α = {alpha:.5g}, β = {beta:.5g}" + "".join(f" · {n}" for n in ds.notes)
)


@st.cache_data(show_spinner="Computing metrics and bootstrap CIs…", max_entries=16)
def metrics_table(key: str, s, s_hat, y, failed_labels):
    rows = []
    runs = [("cosine s", s, y), ("QMagFace ŝ", s_hat, y)]
    if failed_labels.size:  # generalized: pairs with a failed image count as non-matches
        for name, v in (("cosine s", s), ("QMagFace ŝ", s_hat)):
            sv, yv, _ = M.with_failures(v, y, failed_labels)
            runs.append((f"{name}, failures counted", sv, yv))
    for name, v, y in runs:
        g, i = M.split_scores(v, y)
        block = metric_block(g, i, v, y, None, n_boot=200, seed=0)  # what `qmag evaluate` reports
        row = {
            "scores": name,
            "EER": block["eer"],
            "EER CI95": tuple(block["ci95"]["eer"]),
            "AUC": block["auc"],
            "d′": None if "failures" in name else block["dprime"],
        }
        for k, fnmr in block["fnmr_at_fmr"].items():
            ci = block["ci95"]["fnmr_at_fmr"][k]
            row[f"FNMR @ FMR {k}"] = fnmr
            row[f"FNMR @ FMR {k} CI95"] = tuple(ci) if ci else None
        rows.append(row)
    return rows


def metrics_display(rows: list[dict]) -> pd.DataFrame:
    """One cell per measure, its 95% CI beside it ("2.31% [1.90, 2.80]"), rates in
    percent, FNMR@FMR written one way, "—" where nothing was measured (never None/nan)."""
    out = []
    for r in rows:
        row = {"scores": r["scores"]}
        for k, v in r.items():
            if k == "scores" or k.endswith("CI95"):
                continue
            ci = r.get(f"{k} CI95")
            label = k
            if v is None or (isinstance(v, float) and not np.isfinite(v)):
                row[label] = "—" if k != "d′" else "— (failures counted)"
            elif k.startswith(("EER", "FNMR")):
                row[label] = fmt_pct(v) + (f" [{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]" if ci else "")
            else:
                row[label] = f"{v:.4f}"
        out.append(row)
    return pd.DataFrame(out)


failed_labels = t.failed.label.astype(bool) if t.n_failed else np.zeros(0, bool)
rows = metrics_table(f"{ds.key}|{alpha}|{beta}|{t.n_failed}", t.s, s_hat, y, failed_labels)
if t.n_failed:
    st.caption(
        f"Failure to acquire: {t.n_failed:,} of {len(t) + t.n_failed:,} pairs "
        f"({100 * t.n_failed / (len(t) + t.n_failed):.2f}%) have an image that could not be embedded "
        f"({int(failed_labels.sum()):,} genuine, {int((~failed_labels).sum()):,} imposter). The rows "
        "'failures counted' treat them as non-matches (ISO/IEC 19795-1 generalized rates); d′ is left out "
        "there."
    )
st.dataframe(metrics_display(rows), hide_index=True, width="stretch")
download_table(pd.DataFrame(rows), "metrics.csv", "Download metrics (CSV, fractions)")


@st.cache_data(show_spinner="Paired bootstrap of the QMagFace effect…", max_entries=16)
def effect(key, s, q_min, y, alpha, beta):
    return qmagface_effect(s, q_min, y, alpha, beta)


eff = effect(f"{ds.key}|{alpha}|{beta}", t.s, t.q_min, y, alpha, beta)
c1, c2 = st.columns(2)
c1.metric("EER cosine", fmt_pct(rows[0]["EER"]))
diff = rows[1]["EER"] - rows[0]["EER"]
c2.metric(
    "EER QMagFace",
    fmt_pct(rows[1]["EER"]),
    delta=f"{100 * diff:+.3f} pt" if diff else "no change",
    delta_color="inverse" if eff["significant"] else "off",  # grey unless the CI excludes 0
    delta_arrow="auto" if diff else "off",
)
(st.success if eff["significant"] and eff["eer_diff"] < 0 else st.info)(eff["sentence"])

fig, _ = score_histograms(t.s, s_hat, y)
st.plotly_chart(fig, key="hist", width="stretch")


@st.cache_data(show_spinner="Bootstrap bands of the ROC…", max_entries=16)
def roc_bands(key: str, s, s_hat, y) -> dict:
    """95% bootstrap bands of TPR on a log grid of FMRs from 1/#imposters (200 seeded
    resamples, genuine and imposter pairs drawn apart)."""
    n_imp = int((~y).sum())
    grid = np.unique(np.r_[np.geomspace(lowest_fmr(n_imp), 1.0, 24)[:-1], 0.5])
    out = {}
    for name, v in (("cosine", s), ("QMagFace", s_hat)):
        ci = B.bootstrap_ci(v[y], v[~y], fmrs=grid, n_boot=200, random_state=0)["fnmr_at_fmr"]
        f = np.array([g for g in grid if ci[float(g)] is not None])
        lo_hi = np.array([ci[float(g)] for g in f])
        out[name] = (f, 1 - lo_hi[:, 1], 1 - lo_hi[:, 0])
    return out


thr, thr_label = None, ""
roc_hat = M.roc(s_hat[y], s_hat[~y])
if params is not None:
    ops = roc_hat.fnmr_at_fmr((1e-3,))
    if ops[0].threshold is not None:
        thr, thr_label = ops[0].threshold, "at FMR 0.001 on these pairs"
    else:  # too few imposters for 1e-3: the EER threshold, said as such
        e = roc_hat.eer()
        thr, thr_label = e.threshold, f"at the EER ({fmt_pct(e.value)}): too few imposters for FMR 0.001"
c1, c2 = st.columns([2, 3])
c1.plotly_chart(
    s_vs_q(t.s, t.q_min, y, alpha=alpha if params else None, beta=beta, threshold=thr, threshold_label=thr_label),
    key="sq",
    width="stretch",
)
c2.plotly_chart(
    roc_det(
        {"cosine": M.roc(t.s[y], t.s[~y]), "QMagFace": roc_hat},
        bands=roc_bands(f"{ds.key}|{alpha}|{beta}", t.s, s_hat, y),
    ),
    key="roc",
    width="stretch",
)
c2.caption(
    f"Curves start at FMR = 1/{ds.n_imposter:,} imposters (nothing below it is measured); the grey strip up to "
    f"3/{ds.n_imposter:,} is uncertain (ISO/IEC 19795-1's rule of three). Shaded: 95% bootstrap bands."
)
scored = pd.DataFrame({"s": t.s, "q1": t.q1, "q2": t.q2, "label": t.label, "fold": t.fold, "s_hat": s_hat})
download_table(scored, "scores_with_s_hat.csv", "Download scores with ŝ (CSV)")
