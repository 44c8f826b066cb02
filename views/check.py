"""Enrolment check: can this photo serve as a reference image, and if not, what should
the subject change?  A photo, the camera (take, read the advice, retake) or several
photos at once; the verdict with its reasons, the photo with every face found, the
fixed-scale quality map, the face regions with their q gain when repaired, the repair
preview when it helps, and a printable record."""

import base64
import csv
import hashlib
import io
import re
import time

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from qmag_core.errors import QMagError
from qmag_core.pipeline.checks import (
    CSV_COLUMNS,
    component_texts,
    csv_cells,
    csv_row,
    html_record,
    report_json,
    verdict_reasons,
)
from qmag_core.quality.check import check_calibration, check_crop
from qmag_core.quality.requirements import default_profile, parse_profile, profile_json
from qmag_core.quality.scale import scale_for
from qmag_core.vision.align import detect_and_align
from qmag_core.vision.images import load_image
from studio.datasets import SAMPLE_DIR
from studio.face_figures import face_overlay, plq_figure
from studio.ui import detector, encoder

st.title("Enrolment check")
st.caption(
    "Is this photo good enough as a reference image, and if not, which part of the face should change? "
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


def _profile():
    """The requirement profile in use: the shipped ICAO one, or a JSON file the user
    uploads (what ``qmag check --profile`` reads); a bad file gets its message and the
    last good profile stays."""
    with st.expander("Requirement profile: the thresholds the verdict applies"):
        up = st.file_uploader(
            "Your own profile (JSON, as qmag check --profile reads it; start from the download below)",
            type=["json"],
            key="check_profile_file",
        )
        if up is None:
            ss.pop("check_profile", None)
        else:
            try:
                ss["check_profile"] = parse_profile(up.getvalue(), up.name)
            except QMagError as e:
                st.error(f"{e} — the profile in use stays.")
        prof = ss.get("check_profile") or default_profile()
        st.caption(f"In use: **{prof.name}**, {len(prof.requirements)} requirements. {prof.description[:300]}")
        st.download_button(
            "Download this profile (JSON)",
            profile_json(prof),
            file_name=re.sub(r"[^A-Za-z0-9_.-]+", "_", prof.name)[:60] + ".json",
            mime="application/json",
            key="check-profile-download",
        )
    return prof


profile = _profile()
MODES = ("a photo", "the camera", "several photos")
mode = st.radio("Check", MODES, horizontal=True, key="check_mode", label_visibility="collapsed")
TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "pgm"]


@st.cache_data(show_spinner=False, max_entries=64)
def _check(content_hash: str, name: str, encoder_key: str, _src, _enc, _det, _scale):
    """Decode, detect, align and check one photo, keyed by its content and the encoder."""
    image = load_image(_src, name=name)
    a = detect_and_align(image, _det, _enc.spec, name=name, face="best")
    return image, a, check_crop(_enc, a.crop, _scale)


@st.cache_data(show_spinner=False, max_entries=1024)
def _batch_doc(content_hash: str, name: str, encoder_key: str, profile_key: str, _image, _aligned, _rep, _profile):
    """The report JSON of one photo of a batch, keyed by its content, the encoder and the
    profile's JSON: sorting or filtering the table does not measure every photo again."""
    return report_json(name, _aligned, _rep, _image, profile=_profile, scale=scale)


def _full_report(name: str, image, aligned, rep):
    """The report's JSON (components, requirements, advice) and the subject's face mesh
    it was measured on (None without a detected face), made once per shown photo."""
    from qmag_core.vision.face_mesh import face_mesh

    try:
        mesh = None if aligned.face is None else face_mesh(image, aligned.face.landmarks)
    except QMagError as e:  # e.g. an OpenCV without the TFLite reader: say so, keep the rest
        st.error(f"The components measured on the face mesh are not assessed: {e}")
        return report_json(name, aligned, rep, None, profile=profile, scale=scale), None
    return report_json(name, aligned, rep, image, profile=profile, scale=scale, mesh=mesh), mesh


def _pose(doc: dict):
    """(yaw, pitch, roll) of a report, or None when the pose was not assessed."""
    angles = [doc["components"][f"HeadPose{k}"]["native"] for k in ("Yaw", "Pitch", "Roll")]
    return None if None in angles else angles


def _thumb(crop: np.ndarray, side: int = 96) -> str:
    im = Image.fromarray(np.asarray(crop, np.uint8))
    im.thumbnail((side, side))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def show_report(name: str, src: bytes, image, aligned, rep, full=None) -> None:
    """One photo's report: what (verdict and its reasons), where (faces, map, regions),
    what it costs (the scale), and the repair preview when the repair helps; ``full``:
    its :func:`_full_report` when the caller already made it."""
    doc, mesh = full or _full_report(name, image, aligned, rep)
    verdict = doc["verdict"]
    c1, c2, c3 = st.columns(3)
    c1.metric("verdict", verdict.upper())
    c2.metric("quality scale", f"{rep.scale:.0f} / 100", help=f"band: {rep.band}; raw q = {rep.q:.2f}")
    c3.metric("band", rep.band, help="data-driven edges: good / usable / poor (docs/method/quality.md)")
    badge = ":green-background[**ACCEPT**]" if verdict == "accept" else ":red-background[**REJECT**]"
    st.markdown(f"{badge} because ({doc['profile']} profile):")
    _advice(doc)
    if aligned.n_faces > 1:
        st.warning(
            f"{aligned.n_faces} faces in this photo: the check uses face {aligned.face_index + 1} (the solid box, "
            "chosen by the subject rule: large and near the centre). A reference photo shows one face only."
        )
    st.caption(
        f"Raw q = {rep.q:.2f} ({enc.id}). Scale {rep.scale:.0f} means: comparisons with a photo of this quality "
        f"match {rep.scale:.0f}% of the time at FMR {scale.fmr:g} (reference pairs: {scale.source})."
    )
    others = [j for j in range(aligned.n_faces) if j != aligned.face_index]
    p1, p2 = st.columns([3, 2])
    p1.plotly_chart(
        face_overlay(
            image,
            aligned.face.box,
            aligned.face.landmarks,
            other_boxes=[aligned.faces[j].box for j in others],
            labels=[aligned.face_index + 1] + [j + 1 for j in others] if others else None,
            mesh=None if mesh is None else mesh.points,
            pose=_pose(doc),
        ),
        key="check-photo",
        width="stretch",
    )
    if rep.map is not None:
        from qmag_core.quality.explain import QualityMap

        unit = scale.plq.get("check")
        qm = QualityMap(rep.crop, rep.q, np.clip(rep.map / (unit or 1.0), -1, 1), rep.map, "occlusion", enc.id, {}, 0)
        p2.plotly_chart(plq_figure(qm, unit=unit), key="check-map", width="stretch")
    st.subheader("Regions")
    st.dataframe(
        pd.DataFrame(
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
        ),
        hide_index=True,
        width="stretch",
        key="check-regions",
    )
    _components(doc["components"], profile)
    _preview(rep)
    st.download_button(
        "Download the record (HTML, printable)",
        html_record(doc, src),
        file_name=f"{name.rsplit('.', 1)[0]}-check.html",
        mime="text/html",
        key="check-record",
    )


def _advice(doc: dict) -> None:
    """What to change first: one line per failed requirement or flagged region, with the
    face region it concerns and what its repair is worth."""
    items = doc["advice"]
    if not items:
        st.markdown("- " + verdict_reasons(doc)[0])
        return
    for a in items:
        where = f" · *{a['region']}*" if a["region"] else ""
        cost = f" — {a['cost']}" if a.get("cost") else ""
        st.markdown(f"- **{a['component'] or a['region']}**{where}: {a['advice']}{cost}")
    if doc["band"] == "poor":
        st.markdown(f"- quality band poor (scale {doc['scale']:.0f}/100)")


def _components(comps: dict, prof) -> None:
    """The ISO/IEC 29794-5 components of a report: value, scalar, requirement, pass."""
    st.subheader("Quality components (ISO/IEC 29794-5 names)")
    rows = []
    for name, c in comps.items():
        value, result = component_texts(c)
        rows.append(
            {
                "component": name,
                "value": value,
                "scalar (0–100, higher is better)": "—" if c["scalar"] is None else str(c["scalar"]),
                "requirement": prof.limit_text(name) if name in prof.requirements else "",
                "result": result,
            }
        )
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        height=35 * (len(comps) + 1) + 3,  # every component in view, no inner scrolling
        key="check-components",
    )
    st.caption(
        "Scalars use the reference implementation's mappings where its definition is followed, ours where the "
        "measure is ours (EyesVisible, NoHeadCoverings, Sharpness, CompressionArtifacts); UnifiedQualityScore is "
        "this project's calibrated scale. 'Not assessed': needs a network this version does not have. "
        "Requirements and their sources: docs/method/components.md."
    )


def _preview(rep) -> None:
    """The repaired preview only when the repair raises q: a simulation of the fix."""
    if rep.q_after <= rep.q:
        st.caption(f"Repairing the {rep.top} does not raise q ({rep.q_after - rep.q:+.3f}): no preview to show.")
        return
    st.subheader(f"Repaired preview: {rep.top}")
    if not any(r.flagged for r in rep.regions):
        st.caption(f"Nothing is flagged: the {rep.top} is only the region whose repair did most; no change is needed.")
    p1, p2 = st.columns(2)
    p1.image(rep.crop, caption=f"aligned photo · q = {rep.q:.2f}", width=220)
    p2.image(
        rep.repaired,
        caption=f"simulation of the fix: {rep.top} repaired · q = {rep.q_after:.2f} ({rep.q_after - rep.q:+.2f})",
        width=220,
    )
    st.caption(
        "A simulation, not a photo of the subject: the region is inpainted or blended from clean reference faces. "
        f"Control: the same repair of a random region of equal area gives q = {rep.control_q_after:.2f}."
    )


def check_one(name: str, src: bytes, last_key: str):
    """Check one photo with progress; after a failure the last good report stays."""
    bar = st.progress(0.0, text=f"Checking {name}: detecting, repairing six regions, mapping q…")
    try:
        image, aligned, rep = _check(hashlib.sha1(src).hexdigest(), name, enc.content_key, src, enc, detector(), scale)
    except QMagError as e:
        bar.empty()
        st.error(f"{name}: {e}" if not str(e).startswith(name) else str(e))
        kept = ss.get("check_last_upload") or ss.get("check_last_sample")
        if kept is None:
            st.stop()
        st.caption(f"Showing the last photo checked: {kept[0]}")
        return kept
    bar.progress(1.0, text=f"Checked {name} in {rep.seconds:.2f} s")
    ss[last_key] = (name, src, image, aligned, rep)
    return ss[last_key]


if mode == MODES[0]:
    up = st.file_uploader("Drop a face photo (JPEG, PNG, WebP, BMP)", type=TYPES, key="check_upload")
    if up is not None:
        src, name = up.getvalue(), up.name
    else:
        samples = sorted(p.name for p in (SAMPLE_DIR / "faces" / "deepface").glob("*.jpg"))
        pick = st.selectbox("…or check a sample photo (deepface test set, MIT)", samples, key="check_sample")
        src, name = (SAMPLE_DIR / "faces" / "deepface" / pick).read_bytes(), pick
    # what stays after a bad upload: the last photo the user uploaded (replacing an upload
    # passes through a run without one, which checks the sample), else the last sample
    show_report(*check_one(name, src, "check_last_upload" if up is not None else "check_last_sample"))
elif mode == MODES[1]:
    shot = st.camera_input("Take a photo: the advice comes within about a second; then retake", key="check_camera")
    attempts = ss.setdefault("check_attempts", [])
    if shot is not None:
        name, src, image, aligned, rep = check_one("camera.jpg", shot.getvalue(), "check_last_camera")
        h = shot.file_id  # one per capture: a retake of the same scene is a new attempt
        full = _full_report(name, image, aligned, rep)
        if not attempts or attempts[-1][0] != h:
            attempts.append((h, _thumb(rep.crop, 160), full[0]["verdict"], rep.scale))
            del attempts[:-4]
        if len(attempts) > 1:
            st.subheader("Attempts")
            for col, (_, thumb, verdict, sc) in zip(st.columns(len(attempts)), attempts, strict=True):
                col.image(thumb, caption=f"{verdict.upper()} · scale {sc:.0f}", width=140)
        show_report(name, src, image, aligned, rep, full)
    else:
        st.info("Allow the camera, then take a photo: face the camera, eyes open, nothing over the face.")
else:
    ups = st.file_uploader("Drop several photos", type=TYPES, accept_multiple_files=True, key="check_batch")
    if ups:
        bar, t0, rows, docs = st.progress(0.0), time.perf_counter(), [], []
        profile_key = profile_json(profile)
        for k, u in enumerate(ups):
            src = u.getvalue()
            sha = hashlib.sha1(src).hexdigest()
            try:
                image, aligned, rep = _check(sha, u.name, enc.content_key, src, enc, detector(), scale)
                doc = _batch_doc(sha, u.name, enc.content_key, profile_key, image, aligned, rep, profile)
                thumb = _thumb(rep.crop)
            except QMagError as e:
                doc, thumb = {"image": u.name, "error": str(e)}, None
            docs.append(doc)
            rows.append({"photo": thumb, **dict(zip(CSV_COLUMNS, csv_cells(doc), strict=True))})
            left = (time.perf_counter() - t0) / (k + 1) * (len(ups) - k - 1)
            bar.progress((k + 1) / len(ups), text=f"checked {k + 1} of {len(ups)} · about {left:.0f} s left")
        table = pd.DataFrame(rows)
        c1, c2 = st.columns(2)
        if c1.toggle("Rejects and failures only", key="check_batch_rejects"):
            table = table[table["Verdict"] != "accept"]
        why = table["FlaggedRegions"] + "|" + table["RequirementsFailed"]
        reasons = sorted({r for v in why for r in v.split("|") if r})
        pick = c2.multiselect("Failed requirement or flagged region", reasons, key="check_batch_regions")
        if pick:
            table = table[why.apply(lambda v: bool(set(v.split("|")) & set(pick)))]
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            key="check-batch-table",
            column_config={"photo": st.column_config.ImageColumn("photo", width="small")},
        )
        shown = {d["image"] for d in docs} & set(table["Filename"])
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=";")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_row(d) for d in docs if d["image"] in shown)
        st.download_button(
            "Download the table (CSV, as qmag check --csv writes it)",
            buf.getvalue(),
            file_name="enrolment_checks.csv",
            mime="text/csv",
            key="check-batch-csv",
        )
    else:
        st.info("Drop several photos: one row each, with its verdict, scale, band and flagged regions.")
