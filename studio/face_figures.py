"""Plotly figures of faces for the dashboard (pure functions; no Streamlit): a photo with
its face boxes and landmarks, sent to the browser as a JPEG at display size, and an
aligned crop with its pixel-level quality map."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

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


def face_overlay(image: np.ndarray, box, landmarks, *, other_boxes=(), labels=None, mesh=None, pose=None):
    """The photo (sent at display size) with the compared face's box and 5 landmarks;
    ``other_boxes`` (other detected faces) are drawn dashed; ``labels`` (one per box:
    the compared one first, then the others) are written above each box; ``mesh`` (468, 2+) photo
    points drawn as small dots; ``pose`` (yaw, pitch, roll) in degrees: the head's
    axes (the eye line at the roll angle, the nose's direction) labelled with the angles."""
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
    if mesh is not None:
        m = np.asarray(mesh, dtype=float)[:, :2] * scale
        fig.add_trace(
            go.Scattergl(
                x=m[:, 0], y=m[:, 1], mode="markers", marker=dict(color="#8ecae6", size=2),
                name="face mesh", hoverinfo="skip",
            )
        )  # fmt: skip
    if pose is not None:
        _pose_axes(fig, lm, x2 - x1, pose)
    fig.update_layout(
        height=300,
        margin=dict(l=0, r=0, t=0, b=0),
        showlegend=False,
        xaxis=dict(visible=False),
        yaxis=dict(visible=False),
    )
    return fig


def _pose_axes(fig: go.Figure, lm: np.ndarray, width: float, pose) -> None:
    """The head's axes: the eye line turned by the roll, and the nose's direction (an
    arrow from the nose whose length shows yaw and pitch), labelled with the angles."""
    yaw, pitch, roll = (float(v) for v in pose)
    mid = lm[:2].mean(0)
    v = np.array([np.cos(np.radians(roll)), np.sin(np.radians(roll))])
    a, b = mid - 0.6 * width * v, mid + 0.6 * width * v
    fig.add_shape(type="line", x0=a[0], y0=a[1], x1=b[0], y1=b[1], line=dict(color="#e76f51", width=2))
    fig.add_annotation(
        x=b[0], y=b[1], text=f"roll {roll:+.1f}°", showarrow=False, xanchor="left",
        font=dict(color="white", size=12), bgcolor="rgba(231,111,81,0.8)",
    )  # fmt: skip
    nose = lm[2]
    tip = nose + 0.8 * width * np.array([np.sin(np.radians(yaw)), -np.sin(np.radians(pitch))])
    fig.add_annotation(
        x=tip[0], y=tip[1], ax=nose[0], ay=nose[1], xref="x", yref="y", axref="x", ayref="y",
        showarrow=True, arrowhead=2, arrowwidth=2, arrowcolor="#ffb703",
        text=f"yaw {yaw:+.1f}°, pitch {pitch:+.1f}°", font=dict(color="black", size=12),
        bgcolor="rgba(255,183,3,0.85)",
    )  # fmt: skip


def plq_figure(qm, unit: float | None = None) -> go.Figure:
    """Aligned crop and its pixel-level quality map overlaid (red lowers q, blue raises
    it), the colour bar in units of q per pixel; ``unit``: the encoder's fixed PLQ scale
    (same colours for every photo), else the map's own 99th percentile of |map|."""
    from qmag_core.quality.explain import display_values

    v = display_values(qm, unit)
    fig = make_subplots(
        1, 2, subplot_titles=("aligned face", f"{qm.method} map (q = {qm.quality:.2f})"), horizontal_spacing=0.02
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
            colorbar=dict(
                title=f"Δq per pixel<br>±1 = {unit:.3g} q (fixed)"
                if unit
                else "Δq per pixel<br>±1 = this map's 99th pct",
                len=0.8,
            ),
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
