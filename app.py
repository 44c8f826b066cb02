"""QMagFace Studio — Streamlit entry point: page router and shared sidebar.

    streamlit run app.py
"""
import streamlit as st

st.set_page_config(page_title="QMagFace Studio", page_icon="🧑", layout="wide")

pages = [
    st.Page("pages/compare.py", title="Compare faces", icon="🔍", default=True),
    st.Page("pages/dataset.py", title="Dataset", icon="📊"),
    st.Page("pages/train.py", title="Train α/β", icon="🎛️"),
    st.Page("pages/quality.py", title="Quality", icon="✨"),
]
nav = st.navigation(pages)
nav.run()  # each page draws the shared sidebar (pages/shared.py) itself
