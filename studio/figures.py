"""Plotly figures for the dashboard (pure functions; no Streamlit).  Curves are
decimated to ≤ 2,000 points and big scatters use WebGL or 2-D histograms."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from qmag_core.evaluation import edc as E
from qmag_core.evaluation import metrics as M
from qmag_core.scores.roc_window import lowest_fmr

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


def finish_figure(fig: go.Figure, **layout) -> go.Figure:
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
    return finish_figure(fig, barmode="overlay", height=360), stats


#: curves told apart by colour and by dash (readable in grey print and for colour-blind eyes)
CURVE_STYLES = [("#264653", "solid"), ("#e76f51", "dash"), ("#2a9d8f", "dot"), ("#e9c46a", "dashdot")]


def roc_det(
    curves: dict[str, M.RocCurve], *, bands: dict[str, tuple] | None = None, max_points: int = 2000
) -> go.Figure:
    """ROC (TPR vs FMR, log x) and DET (FNMR vs FMR on normal-deviate axes), drawn only
    where the data measured something: FMR from 1/#imposters up (ISO/IEC 19795-1's rule
    of three shades the region below 3/#imposters as uncertain), no point at FMR 0.
    ``bands``: {name: (fmrs, tpr_lo, tpr_hi)} bootstrap bands drawn around the ROC."""
    from scipy.stats import norm

    fig = make_subplots(1, 2, subplot_titles=("ROC", "DET"))
    n_imp = max(c.n_imposter for c in curves.values())
    floor = lowest_fmr(n_imp)
    det_points = 0
    for k, (name, c) in enumerate(curves.items()):
        colour, dash = CURVE_STYLES[k % len(CURVE_STYLES)]
        d = c.decimate(max_points)
        keep = d.fmr >= floor * (1 - 1e-9)
        if bands and name in bands:
            f, lo, hi = bands[name]
            fig.add_trace(
                go.Scatter(
                    x=np.r_[f, f[::-1]],
                    y=np.r_[hi, lo[::-1]],
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.18,
                    line_width=0,
                    name=f"{name}: 95% bootstrap band",
                    hoverinfo="skip",
                ),
                1,
                1,
            )
        fig.add_trace(
            go.Scatter(
                x=d.fmr[keep],
                y=1 - d.fnmr[keep],
                name=name,
                mode="lines",
                line=dict(color=colour, dash=dash, width=2),
                customdata=d.thresholds[keep],
                hovertemplate="FMR %{x:.2e}<br>TPR %{y:.4f}<br>threshold %{customdata:.4f}",
            ),
            1,
            1,
        )
        on = keep & (d.fnmr > 0) & (d.fmr < 1)
        det_points += int(on.sum())
        fig.add_trace(
            go.Scatter(
                x=norm.ppf(d.fmr[on]),
                y=norm.ppf(d.fnmr[on]),
                name=name,
                mode="lines",
                showlegend=False,
                line=dict(color=colour, dash=dash, width=2),
                customdata=np.c_[d.fmr[on], d.fnmr[on]],
                hovertemplate="FMR %{customdata[0]:.2e}<br>FNMR %{customdata[1]:.4f}",
            ),
            1,
            2,
        )
    _roc_det_axes(fig, curves, floor, n_imp, det_points)
    return finish_figure(fig, height=420)


def _roc_det_axes(fig: go.Figure, curves: dict, floor: float, n_imp: int, det_points: int) -> None:
    """Axes from 1/#imposters, the uncertain region shaded, and words where a panel is empty."""
    from scipy.stats import norm

    uncertain = min(3 * floor, 1.0)
    fig.update_xaxes(type="log", title="FMR", range=[np.log10(floor), 0], row=1, col=1)
    fig.update_yaxes(title="TPR = 1 − FNMR", row=1, col=1)
    fig.add_vrect(
        x0=floor, x1=uncertain, fillcolor="grey", opacity=0.12, line_width=0, row=1, col=1,
        annotation_text=f"< 3/{n_imp:,} imposters: uncertain", annotation_position="top left",
        annotation_font_size=10,
    )  # fmt: skip
    fnmr_pos = [c.fnmr[(c.fnmr > 0) & (c.fmr >= floor)].min(initial=1.0) for c in curves.values()]
    lo_y = max(1e-5, min(fnmr_pos + [0.5]) * 0.8)
    for axis, lo, title in ((fig.update_xaxes, floor, "FMR"), (fig.update_yaxes, lo_y, "FNMR")):
        tk = DET_TICKS[(DET_TICKS >= lo) & (DET_TICKS <= 0.5)]
        axis(
            title=title,
            tickvals=norm.ppf(tk),
            ticktext=[_pct_label(t) for t in tk],
            tickangle=0,
            range=[norm.ppf(lo), norm.ppf(0.6)],
            row=1,
            col=2,
        )
    fig.add_vrect(
        x0=norm.ppf(floor), x1=norm.ppf(uncertain), fillcolor="grey", opacity=0.12, line_width=0, row=1, col=2
    )
    if det_points == 0:
        fig.add_annotation(
            text="No errors to draw: FNMR is 0 at every FMR<br>these pairs can measure (≥ 1/#imposters)",
            xref="x2 domain", yref="y2 domain", x=0.5, y=0.5, showarrow=False,
        )  # fmt: skip


def s_vs_q(
    s,
    q_min,
    labels,
    *,
    alpha: float | None = None,
    beta: float | None = None,
    threshold: float | None = None,
    threshold_label: str = "",
    seed: int = 0,
) -> go.Figure:
    """s vs q_min coloured by label (WebGL; a seeded subsample above 20,000 pairs) with the
    QMagFace decision boundary s + ω(s)·q = t at the given ŝ threshold, labelled with
    where it was measured (``threshold_label``, e.g. "at FMR 0.001 on these pairs")."""
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
    at = f" {threshold_label}" if threshold_label else ""
    if alpha is not None and threshold is not None:
        ss = np.linspace(np.min(s), np.max(s), 400)
        w = np.minimum(0.0, beta * ss - alpha)
        with np.errstate(divide="ignore", invalid="ignore"):
            qb = np.where(w < 0, (threshold - ss) / w, np.nan)
        qlo, qhi = float(np.min(q_min)), float(np.max(q_min))
        qb = np.where((qb >= qlo * 0.9) & (qb <= qhi * 1.1), qb, np.nan)
        if np.isfinite(qb).any():
            fig.add_trace(
                go.Scatter(
                    x=ss, y=qb, mode="lines", name=f"ŝ = {threshold:.3f}{at}", line=dict(color="black", dash="dash")
                )
            )
        else:  # listed only when drawn
            fig.add_annotation(
                text=f"the boundary ŝ = {threshold:.3f}{at} lies outside the q range shown",
                xref="paper",
                yref="paper",
                x=0,
                y=-0.22,
                showarrow=False,
                xanchor="left",
            )
    return finish_figure(fig, height=400, title="cosine s vs q_min" + note, xaxis_title="s", yaxis_title="q_min")


def omega_fit(thresholds, omega_opt, n_ties, alpha: float, beta: float, fmrs, mode: str = "official") -> go.Figure:
    """ω_opt(t) per FMR (marker size = number of tied ω) with the fitted line ω = β·t − α;
    the legend sits under the axes, clear of the colour bar.  ``mode`` names the space of
    t: official QMagFace thresholds σ(s + ω·q) (between 0 and 1, not cosines), consistent
    mode thresholds on the score itself."""
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
                colorbar=dict(title=dict(text="log10 FMR"), x=1.02, len=0.8),
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
    x_title = "threshold t = σ(s + ω·q) (official mode)" if mode == "official" else "threshold t on ŝ = s + ω·q"
    fig = finish_figure(fig, height=400, xaxis_title=x_title, yaxis_title="ω")
    fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=-0.22, yanchor="top"), margin=dict(b=90))
    return fig


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
    return finish_figure(
        fig,
        height=380,
        xaxis_title="fraction of pairs discarded",
        yaxis=dict(title="FNMR", range=[0, 1.05 * top if top > 0 else 1]),  # FNMR never below 0
        title=f"EDC (threshold {edc.threshold:.4f}, rule {edc.rule})",
    )


#: the quality bands' shading (poor → good)
BAND_COLOURS = {"poor": "#e76f51", "usable": "#e9c46a", "good": "#2a9d8f"}


def quality_histogram(q, *, bands: dict[str, tuple[float, float]] | None = None) -> go.Figure:
    """Histogram of q with the calibrated bands shaded behind it, their names above the
    plot area (never on the bars)."""
    fig = go.Figure(go.Histogram(x=q, nbinsx=60, marker_color="#264653", name="q"))
    for name, (lo, hi) in (bands or {}).items():
        fig.add_vrect(x0=lo, x1=hi, fillcolor=BAND_COLOURS.get(name, "grey"), opacity=0.15, line_width=0, layer="below")
        fig.add_annotation(x=(lo + hi) / 2, y=1.0, xref="x", yref="paper", yanchor="bottom", text=name, showarrow=False)
    finish_figure(fig, height=300, xaxis_title="quality q = ‖e‖", yaxis_title="count")
    fig.update_layout(margin=dict(t=40))
    return fig


def similarity_matrix(
    m: np.ndarray, names: list[str], title: str, zrange: tuple[float, float] | None = None
) -> go.Figure:
    """Pairwise scores as a heatmap in reading order (image 1 in the top row), the
    diagonal (an image with itself) left blank, colours spanning the pairs' own range;
    pass the same ``zrange`` to figures that are compared."""
    m = np.array(m, dtype=np.float64)
    np.fill_diagonal(m, np.nan)
    if zrange is None:
        zrange = off_diagonal_range(m)
    fig = go.Figure(
        go.Heatmap(
            z=m,
            x=names,
            y=names,
            zmin=None if zrange is None else zrange[0],
            zmax=None if zrange is None else zrange[1],
            colorscale="Viridis",
            colorbar=dict(title=dict(text=title.split()[-1])),
            texttemplate="%{z:.3f}",
            hovertemplate="%{y} ~ %{x}: %{z:.4f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return finish_figure(fig, height=140 + 40 * len(names), title=title)


def off_diagonal_range(*ms: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite off-diagonal entries of square matrices (None if none)."""
    vals = [m[~np.eye(len(m), dtype=bool) & np.isfinite(m)] for m in ms]
    both = np.concatenate(vals) if vals else np.zeros(0)
    return (float(both.min()), float(both.max())) if both.size else None
