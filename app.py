"""QMagFace Studio — Streamlit entry point: page router and shared sidebar.

streamlit run app.py
"""

from pathlib import Path

import streamlit as st

from qmag_core.errors import QMagError
from qmag_core.limits import check_environment
from studio.ui import draw_sidebar

# the favicon ships with the app: no request leaves this machine for it
st.set_page_config(
    page_title="QMagFace Studio", page_icon=str(Path(__file__).parent / "assets" / "favicon.png"), layout="wide"
)

pages = [
    st.Page("views/compare.py", title="Compare faces", icon=":material/compare:", default=True),
    st.Page("views/dataset.py", title="Dataset", icon=":material/bar_chart:"),
    st.Page("views/train.py", title="Train α/β", icon=":material/tune:"),
    st.Page("views/quality.py", title="Quality", icon=":material/auto_awesome:"),
    st.Page("views/check.py", title="Enrolment check", icon=":material/verified_user:"),
]
try:  # a bad QMAG_* limit is said once, by name, instead of failing inside a page
    check_environment()
except QMagError as e:
    st.error(str(e))
    st.stop()
nav = st.navigation(pages)  # the entry file owns navigation: views/ is not auto-discovered
draw_sidebar()  # the shared sidebar, drawn once per run, then the page
nav.run()
