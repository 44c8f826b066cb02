"""Project layout rules: qmag_core never imports streamlit or the app package beside
app.py, nor reaches outside its own folder; licence and CI files exist."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_qmag_core_has_no_streamlit_or_app_import():
    offenders = []
    for f in (ROOT / "qmag_core").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{f.name}: {n}" for n in names if n.split(".")[0] in ("streamlit", "studio", "pages")]
    assert not offenders, offenders


def test_qmag_core_does_not_reach_into_the_checkout():
    """The core works from a plain (non-editable) install: it reads only files inside
    its own package, never the repository around it (sample_data/, docs/ ...)."""
    import re

    core = ROOT / "qmag_core"
    offenders = []
    for f in core.rglob("*.py"):
        depth = len(f.relative_to(core).parts) - 1  # parents[depth] is qmag_core itself
        text = f.read_text()
        ups = [int(k) for k in re.findall(r"parents\[(\d+)\]", text)]
        if any(k > depth for k in ups) or "sample_data" in text:
            offenders.append(str(f.relative_to(core)))
    assert not offenders, offenders


@pytest.mark.slow
def test_import_all_modules_without_streamlit():
    code = (
        "import sys, pkgutil, importlib, qmag_core\n"
        "for m in pkgutil.iter_modules(qmag_core.__path__):\n"
        "    if m.name != '__main__': importlib.import_module('qmag_core.' + m.name)\n"
        "print('streamlit' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == "False", r.stderr


def test_licence_and_ci_run_the_readme_test_command():
    import re

    assert "MIT License" in (ROOT / "LICENSE").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"pip install (-q )?-r requirements.txt", ci)
    readme = (ROOT / "README.md").read_text()
    setup = re.search(r"## Set-up\n(.*?)\n## ", readme, re.S).group(1)
    commands = re.findall(r"^    (\S.*)$", setup, re.M)
    assert commands[:2] == ["pip install -r requirements.txt", "python -m pytest -q"], commands
    assert commands[2].startswith("streamlit run app.py")
    assert "\npython -m pytest -q " in ci  # exactly the README's test command
