"""Plotly figures for the dashboard (pure functions; no Streamlit).  Curves are
decimated to ≤ 2,000 points and big scatters use WebGL or 2-D histograms."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from qmag_core.evaluation import edc as E
from qmag_core.evaluation import metrics as M

GEN, IMP = "#2a9d8f", "#e76f51"
MAX_SCATTER = 20000

#: one look for every figure: legend outside the axes on the right (never over an axis
#: title, a subplot title or the data), room for titles, exponent tick labels as 1e-3
#: (not SI "1m"/"100μ")
TEMPLATE = go.layout.Template(
    layout=dict(
        font=dict(size=12),
        legend=dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top", bgcolor="rgba(0,0,0,0)"),
        margin=dict(t=50, b=50, l=60, r=20),
        xaxis=dict(exponentformat="e", automargin=True),
        yaxis=dict(exponentformat="e", automargin=True),
        title=dict(x=0, xanchor="left", y=0.98, yanchor="top", font=dict(size=13)),
    )
)
#: DET ticks as the field draws them (normal-deviate positions, labels in percent)
DET_TICKS = np.array([1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5])


def _pct_label(t: float) -> str:
    return f"{100 * t:g}%"


def _finish(fig: go.Figure, **layout) -> go.Figure:
    """Apply the shared template and the figure's own layout (height, axis titles)."""
    fig.update_layout(template=TEMPLATE, **layout)
    return fig


def score_histograms(s, s_hat, labels, *, nbins: int = 80) -> tuple[go.Figure, dict]:
    """Genuine vs imposter histograms of s and ŝ side by side (each panel: same bins for
    both classes), with d′ and overlap in the titles; returns (figure, stats)."""
    from qmag_core.evaluation.metrics import overlap

    y = np.asarray(labels).astype(bool)
    stats = {}
    titles = []
    for name, v in (("cosine s", s), ("QMagFace ŝ", s_hat)):
        bins = np.linspace(np.min(v), np.max(v), nbins + 1)
        d = M.dprime(v[y], v[~y])
        ov = overlap(v[y], v[~y], bins)
        stats[name] = {"dprime": d, "overlap": ov}
        titles.append(f"{name}: d′={d:.2f}, overlap={ov:.3f}")
    fig = make_subplots(1, 2, subplot_titles=titles)
    for col, v in ((1, s), (2, s_hat)):
        bins = np.linspace(np.min(v), np.max(v), nbins + 1)
        for cls, mask, colour in (("genuine", y, GEN), ("imposter", ~y, IMP)):
            h, e = np.histogram(v[mask], bins=bins, density=True)
            fig.add_trace(
                go.Bar(
                    x=(e[:-1] + e[1:]) / 2,
                    y=h,
                    width=np.diff(e),
                    name=cls,
                    marker_color=colour,
                    opacity=0.6,
                    showlegend=col == 1,
                    legendgroup=cls,
                ),
                1,
                col,
            )
    return _finish(fig, barmode="overlay", height=360), stats


def roc_det(curves: dict[str, M.RocCurve], *, max_points: int = 2000) -> go.Figure:
    """ROC (TPR vs FMR, log x) and DET (FNMR vs FMR on normal-deviate axes)."""
    from scipy.stats import norm

    fig = make_subplots(1, 2, subplot_titles=("ROC", "DET"))
    ticks = DET_TICKS
    colours = ["#264653", "#e9c46a", "#e76f51", "#2a9d8f"]
    for k, (name, c) in enumerate(curves.items()):
        d = c.decimate(max_points)
        fmr = np.clip(d.fmr, 1e-6, 1 - 1e-6)
        fig.add_trace(
            go.Scatter(
                x=fmr,
                y=1 - d.fnmr,
                name=name,
                mode="lines",
                line_color=colours[k % 4],
                customdata=d.thresholds,
                hovertemplate="FMR %{x:.2e}<br>TPR %{y:.4f}<br>t %{customdata:.4f}",
            ),
            1,
            1,
        )
        fnmr = np.clip(d.fnmr, 1e-6, 1 - 1e-6)
        fig.add_trace(
            go.Scatter(
                x=norm.ppf(fmr),
                y=norm.ppf(fnmr),
                name=name,
                mode="lines",
                showlegend=False,
                line_color=colours[k % 4],
                customdata=np.c_[d.fmr, d.fnmr],
                hovertemplate="FMR %{customdata[0]:.2e}<br>FNMR %{customdata[1]:.4f}",
            ),
            1,
            2,
        )
    fig.update_xaxes(type="log", title="FMR", row=1, col=1)
    fig.update_yaxes(title="TPR = 1 − FNMR", row=1, col=1)
    # DET axes from the smallest measurable rate (at least 1e-5) to 50%, as DET plots are drawn
    pos = [(c.fmr[c.fmr > 0].min(initial=1.0), c.fnmr[c.fnmr > 0].min(initial=1.0)) for c in curves.values()]
    lo_x = max(1e-5, min([p[0] for p in pos] + [0.5]) * 0.8)
    lo_y = max(1e-5, min([p[1] for p in pos] + [0.5]) * 0.8)
    for axis, lo, title in ((fig.update_xaxes, lo_x, "FMR"), (fig.update_yaxes, lo_y, "FNMR")):
        tk = ticks[(ticks >= lo) & (ticks <= 0.5)]
        axis(
            title=title,
            tickvals=norm.ppf(tk),
            ticktext=[_pct_label(t) for t in tk],
            tickangle=0,
            range=[norm.ppf(lo), norm.ppf(0.6)],
            row=1,
            col=2,
        )
    return _finish(fig, height=400)


def s_vs_q(
    s,
    q_min,
    labels,
    *,
    alpha: float | None = None,
    beta: float | None = None,
    threshold: float | None = None,
    seed: int = 0,
) -> go.Figure:
    """s vs q_min coloured by label (WebGL; a seeded subsample above 20,000 pairs) with the
    QMagFace decision boundary s + ω(s)·q = t at the given ŝ threshold."""
    y = np.asarray(labels).astype(bool)
    idx = np.arange(len(s))
    note = ""
    if len(s) > MAX_SCATTER:
        rng = np.random.default_rng(seed)
        idx = np.sort(
            np.r_[
                np.flatnonzero(y)[: MAX_SCATTER // 2]
                if y.sum() <= MAX_SCATTER // 2
                else rng.choice(np.flatnonzero(y), MAX_SCATTER // 2, replace=False),
                rng.choice(np.flatnonzero(~y), min((~y).sum(), MAX_SCATTER // 2), replace=False),
            ]
        )
        note = f" (seeded sample of {idx.size:,} of {len(s):,} pairs)"
    fig = go.Figure()
    for cls, mask, colour in (("imposter", ~y[idx], IMP), ("genuine", y[idx], GEN)):
        fig.add_trace(
            go.Scattergl(
                x=np.asarray(s)[idx][mask],
                y=np.asarray(q_min)[idx][mask],
                mode="markers",
                name=cls,
                marker=dict(size=4, color=colour, opacity=0.5),
            )
        )
    if alpha is not None and threshold is not None:
        ss = np.linspace(np.min(s), np.max(s), 400)
        w = np.minimum(0.0, beta * ss - alpha)
        with np.errstate(divide="ignore", invalid="ignore"):
            qb = np.where(w < 0, (threshold - ss) / w, np.nan)
        qlo, qhi = float(np.min(q_min)), float(np.max(q_min))
        qb = np.where((qb >= qlo * 0.9) & (qb <= qhi * 1.1), qb, np.nan)
        if np.isfinite(qb).any():
            fig.add_trace(
                go.Scatter(x=ss, y=qb, mode="lines", name=f"ŝ = {threshold:.3f}", line=dict(color="black", dash="dash"))
            )
        else:  # listed only when drawn
            fig.add_annotation(
                text=f"the boundary ŝ = {threshold:.3f} lies outside the q range shown",
                xref="paper",
                yref="paper",
                x=0,
                y=-0.22,
                showarrow=False,
                xanchor="left",
            )
    return _finish(fig, height=400, title="cosine s vs q_min" + note, xaxis_title="s", yaxis_title="q_min")


def omega_fit(thresholds, omega_opt, n_ties, alpha: float, beta: float, fmrs) -> go.Figure:
    """ω_opt(t) per FMR (marker size = number of tied ω) with the fitted line ω = β·t − α."""
    t = np.asarray(thresholds)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=t,
            y=omega_opt,
            mode="markers",
            name="ω_opt(t)",
            marker=dict(
                size=6 + 3 * np.asarray(n_ties),
                color=np.log10(fmrs),
                colorscale="Viridis",
                colorbar=dict(title="log10 FMR"),
                line=dict(width=1, color="black"),
            ),
            customdata=np.c_[fmrs, n_ties],
            hovertemplate="t %{x:.4f}<br>ω %{y:.5f}<br>FMR %{customdata[0]:.2e}<br>tied ω: %{customdata[1]}",
        )
    )
    xs = np.linspace(t.min(), t.max(), 50)
    fig.add_trace(
        go.Scatter(
            x=xs, y=beta * xs - alpha, mode="lines", name=f"ω = {beta:.4g}·t − {alpha:.4g}", line=dict(color="black")
        )
    )
    return _finish(fig, height=380, xaxis_title="threshold t", yaxis_title="ω")


def edc_figure(
    edc: E.EDCResult, *, label: str = "discard lowest q_min", others: dict[str, E.EDCResult] | None = None
) -> go.Figure:
    """EDC of q against random discards; ``others`` adds the EDC of other quality
    measures (same threshold) as dotted curves."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=edc.discard, y=edc.fnmr, mode="lines+markers", name=label))
    for name, e in (others or {}).items():
        fig.add_trace(go.Scatter(x=e.discard, y=e.fnmr, mode="lines", name=name, line=dict(dash="dot")))
    fig.add_trace(
        go.Scatter(
            x=edc.discard,
            y=edc.fnmr_random_median,
            mode="lines",
            name="random discard (median)",
            line=dict(dash="dash", color="grey"),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=np.r_[edc.discard, edc.discard[::-1]],
            y=np.r_[edc.fnmr_random_q95, edc.fnmr_random_q05[::-1]],
            fill="toself",
            fillcolor="rgba(128,128,128,0.15)",
            line=dict(width=0),
            name="random 5–95%",
            hoverinfo="skip",
        )
    )
    top = max(
        [float(np.nanmax(edc.fnmr_random_q95))]
        + [float(np.nanmax(e.fnmr)) for e in (others or {}).values()]
        + [float(np.nanmax(edc.fnmr))]
    )
    return _finish(
        fig,
        height=380,
        xaxis_title="fraction of pairs discarded",
        yaxis=dict(title="FNMR", range=[0, 1.05 * top if top > 0 else 1]),  # FNMR never below 0
        title=f"EDC (threshold {edc.threshold:.4f}, rule {edc.rule})",
    )


def quality_histogram(q, *, marks: dict[str, float] | None = None) -> go.Figure:
    fig = go.Figure(go.Histogram(x=q, nbinsx=60, marker_color="#264653", name="q"))
    for name, v in (marks or {}).items():
        fig.add_vline(x=v, line=dict(color="#e76f51"), annotation_text=name)
    _finish(fig, height=300, xaxis_title="quality q = ‖e‖", yaxis_title="count")
    return fig


def similarity_matrix(
    m: np.ndarray, names: list[str], title: str, zrange: tuple[float, float] | None = None
) -> go.Figure:
    """Pairwise scores as a heatmap; pass the same ``zrange`` to figures that are compared."""
    fig = go.Figure(
        go.Heatmap(
            z=m,
            x=names,
            y=names,
            zmin=None if zrange is None else zrange[0],
            zmax=None if zrange is None else zrange[1],
            colorscale="Viridis",
            texttemplate="%{z:.3f}",
            hovertemplate="%{y} ~ %{x}: %{z:.4f}<extra></extra>",
        )
    )
    return _finish(fig, height=140 + 40 * len(names), title=title)


#: longest side (px) of a photo sent to the browser inside a figure
DISPLAY_SIDE = 640


def display_image(image: np.ndarray, side: int = DISPLAY_SIDE) -> tuple[str, float]:
    """``(data URI of a JPEG at most side px, scale)``: a photo as a figure sends it —
    the browser gets a few tens of kB instead of the JSON of every pixel."""
    import base64
    import io

    from PIL import Image

    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w, 1))
    im = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    if scale < 1.0:
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), scale


def face_overlay(image: np.ndarray, box, landmarks, *, other_boxes=(), labels=None) -> go.Figure:
    """The photo (sent at display size) with the compared face's box and 5 landmarks;
    ``other_boxes`` (other detected faces) are drawn dashed; ``labels`` (one per box:
    the compared one first, then the others) are written above each box."""
    uri, scale = display_image(image)
    fig = go.Figure(go.Image(source=uri))
    for k, ob in enumerate(other_boxes):
        x1, y1, x2, y2 = [float(v) * scale for v in ob]
        fig.add_shape(type="rect", x0=x1, y0=y1, x1=x2, y1=y2, line=dict(color="#f4f1de", width=2, dash="dash"))
        if labels is not None:
            fig.add_annotation(
                x=x1,
                y=y1,
                text=str(labels[k + 1]),
                showarrow=False,
                xanchor="left",
                yanchor="bottom",
                font=dict(color="white", size=13),
                bgcolor="rgba(0,0,0,0.55)",
            )
    x1, y1, x2, y2 = [float(v) * scale for v in box]
    fig.add_shape(type="rect", x0=x1, y0=y1, x1=x2, y1=y2, line=dict(color="#2a9d8f", width=3))
    if labels is not None:
        fig.add_annotation(
            x=x1,
            y=y1,
            text=str(labels[0]),
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font=dict(color="white", size=13),
            bgcolor="#2a9d8f",
        )
    lm = np.asarray(landmarks, dtype=float) * scale
    fig.add_trace(
        go.Scatter(
            x=lm[:, 0],
            y=lm[:, 1],
            mode="markers",
            marker=dict(color="#e9c46a", size=8, line=dict(color="black", width=1)),
            name="landmarks",
            hoverinfo="skip",
        )
    )
    fig.update_layout(
        height=300,
        margin=dict(l=0, r=0, t=0, b=0),
        showlegend=False,
        xaxis=dict(visible=False),
        yaxis=dict(visible=False),
    )
    return fig


def plq_figure(qm, unit: float | None = None) -> go.Figure:
    """Aligned crop and its pixel-level quality map overlaid (red lowers q, blue raises
    it); ``unit``: the encoder's fixed PLQ scale (same colours for every photo), else the
    map's own 99th percentile of |map|."""
    from qmag_core.quality.explain import display_values

    v = display_values(qm, unit)
    fig = make_subplots(
        1, 2, subplot_titles=("aligned face", f"{qm.method} map (q = {qm.quality:.4f})"), horizontal_spacing=0.02
    )
    fig.add_trace(go.Image(z=qm.crop), 1, 1)
    grey = np.repeat(qm.crop.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    fig.add_trace(go.Image(z=grey, opacity=0.55), 1, 2)
    fig.add_trace(
        go.Heatmap(
            z=v,
            colorscale="RdBu",
            zmin=-1,
            zmax=1,
            zmid=0,
            opacity=0.75,
            colorbar=dict(title="raises q ↑ / lowers q ↓" + (" (fixed scale)" if unit else ""), len=0.8),
            hovertemplate="x %{x}, y %{y}: %{z:.3f}<extra></extra>",
        ),
        1,
        2,
    )
    for c in (1, 2):
        fig.update_xaxes(visible=False, row=1, col=c)
        fig.update_yaxes(visible=False, autorange="reversed", scaleanchor=f"x{c if c > 1 else ''}", row=1, col=c)
    fig.update_layout(height=380, margin=dict(l=0, r=0, t=40, b=0))
    return fig
