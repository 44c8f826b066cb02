"""Streamlit side of the app: session state, cached encoder/detector/dataset loaders,
the sidebar (drawn once per run by app.py) and small widgets the pages share."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
import streamlit as st

from qmag_core.errors import QMagError
from qmag_core.io.common import spreadsheet_safe
from qmag_core.scores.params import QMagFaceParams
from qmag_core.vision.runtime import RUNTIMES, torch_available
from studio.datasets import (
    SAMPLE_DATASETS,
    Dataset,
    load_sample_dataset,
    public_message,
    registered_models,
    resolve_under_roots,
)

ENCODER_LABELS = {
    "builtin": "built-in (default)",
    "builtin-raw": "built-in, raw descriptor",
    "magface": "MagFace checkpoint",
}
#: sidebar ids of the ONNX models in the data roots' models/ folders
MODEL_PREFIX = "model:"


@st.cache_resource(show_spinner="Loading the face model…", max_entries=8)
def get_model(path: str, size: int, mtime_ns: int, device: str):
    """A registered ONNX model (cached by path, size and modification time)."""
    from qmag_core.encoders import open_onnx

    return open_onnx(path, device=device)


@st.cache_resource(show_spinner="Loading the face encoder…")
def get_encoder(encoder_id: str, checkpoint: str | None, arch: str, device: str, runtime: str = "auto"):
    from qmag_core.encoders import load_encoder

    # the sidebar's "auto" is the command line's: the fastest runtime here (encoders.fast_runtime)
    return load_encoder(
        encoder_id, runtime="fast" if runtime == "auto" else runtime, checkpoint=checkpoint, arch=arch, device=device
    )


@st.cache_resource(show_spinner="Loading the face detector…")
def get_detector(device: str, runtime: str = "auto"):
    from qmag_core.vision.align import FaceDetector

    return FaceDetector(device=device, runtime=runtime)


@contextmanager
def embedding_progress(text: str = "Embedding…"):
    """A progress bar for long embedding work: yields the ``progress(done, total)``
    callback the loaders take, and removes the bar afterwards (also on errors)."""
    bar = st.progress(0.0, text=text)
    try:
        yield lambda d, n: bar.progress(d / n, text=f"{text} {d}/{n}")
    finally:
        bar.empty()


@st.cache_data(show_spinner=False, max_entries=8)
def _sample_dataset(ds_id: str, encoder_key: str, _encoder) -> Dataset:
    with embedding_progress("Embedding images…") as progress:
        return load_sample_dataset(ds_id, encoder=_encoder, progress=progress)


def state():
    ss = st.session_state
    ss.setdefault("encoder_id", "builtin")
    ss.setdefault("checkpoint", "")
    ss.setdefault("arch", "iresnet100")
    ss.setdefault("device", "auto")
    ss.setdefault("runtime", "auto")
    ss.setdefault("dataset_id", "lfw-dev")
    ss.setdefault("uploaded", {})  # name -> Dataset (kept when a later upload fails)
    ss.setdefault("params", None)  # active QMagFaceParams (None: the encoder's shipped ones)
    ss.setdefault("params_source", "shipped with the encoder")
    return ss


def gradient_encoder():
    """The chosen encoder on the torch runtime (gradient maps need torch), or None
    without torch."""
    enc = encoder()
    if enc.runtime == "torch":
        return enc
    if not torch_available():
        return None
    ss = state()
    return get_encoder(enc.id, None, ss.arch, ss.device, "torch") if enc.id != "magface" else None


def encoder():
    """The chosen encoder, or the built-in one when it cannot be loaded; the reason is
    kept for the sidebar, which shows it once per run (not once per call)."""
    ss = state()
    try:
        if str(ss.encoder_id).startswith(MODEL_PREFIX):
            return _registered(ss.encoder_id[len(MODEL_PREFIX) :], ss.device)
        if ss.encoder_id == "magface" and not str(ss.checkpoint).strip():
            raise QMagError(
                "MagFace needs a checkpoint: type its path (under the data root, QMAG_DATA_ROOT) in the sidebar"
            )
        ck = str(resolve_under_roots(ss.checkpoint, kind="file")) if ss.encoder_id == "magface" else None
        enc = get_encoder(ss.encoder_id, ck, ss.arch, ss.device, ss.runtime)
        ss["_encoder_error"] = None
        return enc
    except QMagError as e:
        ss["_encoder_error"] = f"Encoder not loaded: {public_message(e)} Using the built-in encoder on the CPU."
        return get_encoder("builtin", None, "iresnet100", "cpu", "auto")


def _registered(name: str, device: str):
    """The registered model ``name`` (see :func:`studio.datasets.registered_models`)."""
    models = registered_models()
    if name not in models:
        raise QMagError(f"model {name!r} is no longer in the models folder")
    p = models[name]
    st_ = p.stat()
    enc = get_model(str(p), st_.st_size, st_.st_mtime_ns, device)
    state()["_encoder_error"] = None
    return enc


def detector():
    enc = encoder()
    return get_detector(enc.device, enc.runtime)


def active_params() -> QMagFaceParams | None:
    ss = state()
    return ss.params if ss.params is not None else QMagFaceParams.shipped(encoder().id)


def dataset() -> Dataset | None:
    ss = state()
    if ss.dataset_id in ss.uploaded:
        return ss.uploaded[ss.dataset_id]
    enc = encoder()
    try:
        return _sample_dataset(ss.dataset_id, enc.content_key, enc)
    except QMagError as e:
        st.error(f"Dataset could not be opened: {e}")
        return None


def scored_dataset() -> Dataset:
    """The active dataset when it has genuine and imposter pairs; otherwise the page says
    why and stops (the Dataset and Train pages need both classes)."""
    ds = dataset()
    if ds is None:
        st.stop()
    if ds.one_class:
        st.warning(ds.one_class)
        st.stop()
    return ds


def _bound(widget, label: str, options: list, canon: str, **kw):
    """A widget bound to the plain session key ``canon`` (the one source of truth: it
    survives page switches and is what code changes); the widget uses key ``w_<canon>``.

    Before the widget is created, its state is set from ``canon`` on every run, so a
    value set by code (e.g. after an upload) reaches the browser, also on a page the
    user switches to — passing ``index=`` alone let the browser's old selection win.
    A user's change reaches ``canon`` through ``on_change`` before the script runs."""
    ss = state()
    wkey = f"w_{canon}"
    ss[wkey] = ss[canon]  # every run: a page switch re-creates the widget in the browser

    def sync():
        ss[canon] = ss[wkey]

    if widget is st.text_input:
        return widget(label, key=wkey, on_change=sync, **kw)
    return widget(label, options, key=wkey, on_change=sync, **kw)


def set_active(canon: str, value) -> None:
    """Change a bound value from code (e.g. after an upload); the widget follows on the
    next run (callers rerun)."""
    state()[canon] = value


def draw_sidebar() -> None:
    """The shared sidebar (encoder, dataset, runtime), drawn by app.py once per run above
    the page that st.navigation runs."""
    ss = state()
    with st.sidebar:
        st.markdown("### QMagFace Studio")
        choices = [*ENCODER_LABELS, *(MODEL_PREFIX + m for m in registered_models())]
        if ss.encoder_id not in choices:  # a model file removed since it was chosen
            ss.encoder_id = "builtin"
        _bound(
            st.selectbox,
            "Encoder",
            choices,
            "encoder_id",
            format_func=lambda k: ENCODER_LABELS.get(k) or f"model: {k[len(MODEL_PREFIX) :]}",
            help="builtin: the shipped face network with its quality head (q ≈ 100 × how close the face's "
            "descriptor is expected to lie to a clean capture of it). "
            "builtin-raw: the network alone (its length is only a weak quality proxy). "
            "magface: an official MagFace checkpoint under the data root. "
            "model: an ONNX face model in the data root's models/ folder (insightface convention; "
            "q = its embedding length, a weak quality signal).",
        )
        if ss.encoder_id == "magface":
            _bound(st.text_input, "Checkpoint path (under the data root)", [], "checkpoint")
            _bound(st.selectbox, "Architecture", ["iresnet100", "iresnet50", "iresnet34", "iresnet18"], "arch")
        _bound(st.selectbox, "Device", ["auto", "cpu", "cuda"], "device", help="auto: GPU when available")
        _bound(
            st.selectbox,
            "Runtime",
            list(RUNTIMES),
            "runtime",
            help="what runs MTCNN and the encoder. auto: the networks shipped as ONNX for builtin/builtin-raw on "
            "a CPU (about 2x faster, same results), torch for the rest when installed. onnx: always onnxruntime "
            "(other encoders are exported once, with torch). Gradient maps use torch whatever is chosen.",
        )
        if not torch_available():
            st.caption("torch is not installed: networks run with onnxruntime (training and gradient maps need torch).")
        options = list(SAMPLE_DATASETS) + list(ss.uploaded)
        if ss.dataset_id not in options:
            set_active("dataset_id", "lfw-dev")
        _bound(
            st.selectbox,
            "Active dataset",
            options,
            "dataset_id",
            format_func=lambda k: SAMPLE_DATASETS[k].name if k in SAMPLE_DATASETS else f"uploaded: {k}",
        )
        p = active_params()  # loads the encoder: its error, if any, is shown here, once
        if ss.get("_encoder_error"):
            st.error(ss["_encoder_error"])
        if p is not None and (why := p.mismatch(encoder().id, encoder().key)):
            st.warning(f"Active parameters: {why}.")
        if p is None:
            st.caption("Active parameters: none (ŝ = s)")
        else:
            st.caption(f"Active parameters ({ss.params_source}): α = {p.alpha:.5g}, β = {p.beta:.5g}, mode {p.mode}")
        if ss.params is not None and st.button("Reset to the encoder's shipped parameters", key="reset_params"):
            ss.params, ss.params_source = None, "shipped with the encoder"
            st.rerun()


def download_table(df: pd.DataFrame, name: str, label: str = "Download CSV"):
    """A CSV download whose text cells cannot run as spreadsheet formulas (numbers as they are)."""
    safe = df.copy()
    for c in safe.columns:
        if safe[c].dtype.kind in "OUS":
            safe[c] = spreadsheet_safe(safe[c].astype(str).to_numpy())
    st.download_button(label, safe.to_csv(index=False).encode(), file_name=name, mime="text/csv", key=f"dl-{name}")


def fmt_pct(x) -> str:
    """A rate in percent, "—" where nothing was measured (never None or nan)."""
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.3f}%"
