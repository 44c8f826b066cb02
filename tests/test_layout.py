"""Project layout rules: the package tree shows the architecture (a few modules at the
top, subpackages by concern, no import cycle, layers checked by import-linter, short
modules); qmag_core never imports streamlit or the app package beside app.py, nor
reaches outside its own folder; licence and CI files exist."""

import ast
import shutil
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
        "for m in pkgutil.walk_packages(qmag_core.__path__, 'qmag_core.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
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


# ------------------------------------------------------------------ architecture
CORE = ROOT / "qmag_core"
SUBPACKAGES = ("scores", "evaluation", "io", "vision", "encoders", "quality", "pipeline", "cli")


def _module_name(f: Path) -> tuple[str, bool]:
    parts = list(f.relative_to(ROOT).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def core_import_graph() -> dict[str, set[str]]:
    """Static import graph among qmag_core modules, imports inside functions included;
    ``from pkg import name`` points at the submodule ``pkg.name`` when it is one."""
    files = {_module_name(f)[0]: f for f in CORE.rglob("*.py")}
    graph = {}
    for name, f in files.items():
        _, is_pkg = _module_name(f)
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
                deps |= {f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names}
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_core_modules():
    graph = core_import_graph()
    assert "qmag_core.vision.align" in graph and "qmag_core.quality.head" in graph["qmag_core.encoders"]
    assert _cycles(graph) == []


def test_top_level_holds_few_modules_and_the_concerns_are_packages():
    top = sorted(f.stem for f in CORE.glob("*.py") if f.stem not in ("__init__", "__main__"))
    assert len(top) <= 8, top
    for pkg in SUBPACKAGES:
        assert (CORE / pkg / "__init__.py").is_file(), pkg


def test_no_module_over_450_lines():
    files = [*CORE.rglob("*.py"), *(ROOT / "studio").glob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "app.py"]
    long = {str(f.relative_to(ROOT)): n for f in files if (n := len(f.read_text().splitlines())) > 450}
    assert not long, long


def test_import_linter_contracts_hold():
    """The layers in pyproject.toml (what .ci/run checks with lint-imports)."""
    import os

    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert len(cfg["contracts"]) >= 3
    if not shutil.which("lint-imports"):
        if os.environ.get("CI") == "true":
            pytest.fail("import-linter is not installed (requirements.txt installs it)")
        pytest.skip("import-linter is not installed")
    r = subprocess.run(["lint-imports", "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:]
    assert f"Contracts: {len(cfg['contracts'])} kept, 0 broken." in r.stdout


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("qmag_core.scoring", "qmag_core.scores", "QMagFaceTrainer"),
        ("qmag_core.scoring", "qmag_core.scores.scoring", "qmagface_score"),
        ("qmag_core.metrics", "qmag_core.evaluation.metrics", "eer"),
        ("qmag_core.data", "qmag_core.io", "read_scores_csv"),
        ("qmag_core.data", "qmag_core.evaluation.pairing", "scores_from_embeddings"),
    ],
)
def test_old_module_names_still_work_with_a_deprecation_warning(old, new, name):
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        f"print(getattr(old, {name!r}) is getattr(new, {name!r}), any(x.category is DeprecationWarning for x in w))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.split() == ["True", "True"], r.stderr
