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
            offenders += [f"{f.name}: {n}" for n in names if n.split(".")[0] in ("streamlit", "studio", "views")]
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
    assert "qmag_core.vision.align" in graph and "qmag_core.quality.head" in graph["qmag_core.encoders.faceapi"]
    assert _cycles(graph) == []


def test_top_level_holds_few_modules_and_the_concerns_are_packages():
    top = sorted(f.stem for f in CORE.glob("*.py") if f.stem not in ("__init__", "__main__"))
    assert len(top) <= 8, top
    for pkg in SUBPACKAGES:
        assert (CORE / pkg / "__init__.py").is_file(), pkg


def test_no_module_over_450_lines():
    files = [*CORE.rglob("*.py"), *(ROOT / "studio").glob("*.py"), *(ROOT / "views").glob("*.py"), ROOT / "app.py"]
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


def test_no_re_export_shims():
    """Each name is imported from the module that defines it: no deprecated alias modules,
    no module-level ``__getattr__`` forwarding names to another module."""
    for old in ("data", "metrics", "scoring"):
        assert not (CORE / f"{old}.py").exists(), old
    forwarding = [
        str(f.relative_to(ROOT))
        for f in CORE.rglob("*.py")
        if f != CORE / "__init__.py" and "def __getattr__(name" in f.read_text()
    ]
    assert not forwarding, forwarding


# ------------------------------------------------------------------ house seams
LIBRARY = [*CORE.rglob("*.py"), *(ROOT / "studio").glob("*.py"), *(ROOT / "views").glob("*.py"), ROOT / "app.py"]


def _defs(files):
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f, node


def test_no_function_over_80_lines():
    long = {
        f"{f.relative_to(ROOT)}:{n.lineno} {n.name}": n.end_lineno - n.lineno + 1
        for f, n in _defs(LIBRARY)
        if n.end_lineno - n.lineno + 1 > 80
    }
    assert not long, long


def test_few_private_names_cross_module_boundaries():
    """Helpers shared between modules are public in the module that owns them."""
    crossings = [
        f"{f.relative_to(ROOT)}: {node.module}.{a.name}"
        for f in LIBRARY
        for node in ast.walk(ast.parse(f.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(("qmag_core", "studio")))
        for a in node.names
        if a.name.startswith("_") and not a.name.startswith("__")
    ]
    assert len(crossings) <= 5, crossings


def test_each_public_name_is_defined_in_one_core_module():
    where: dict[str, list[str]] = {}
    for f in CORE.rglob("*.py"):
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                where.setdefault(node.name, []).append(str(f.relative_to(CORE)))
    assert not {k: v for k, v in where.items() if len(v) > 1}


def test_encoders_are_used_through_their_interface_not_probed():
    """No getattr/hasattr on a member of the FaceEncoder interface (or a network's methods):
    every encoder declares them (qmag_core.vision.encoder)."""
    from qmag_core.vision.encoder import DifferentiableEncoder

    members = set(DifferentiableEncoder.__annotations__) | {
        n for n in dir(DifferentiableEncoder) if not n.startswith("_")
    }
    members |= {"net", "layout", "fp16", "descriptor_and_quality", "separate_head"}
    probes = [
        f"{f.relative_to(ROOT)}:{node.lineno}"
        for f in LIBRARY
        for node in ast.walk(ast.parse(f.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "hasattr")
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and node.args[1].value in members
    ]
    assert not probes, probes


def test_benches_and_tools_run_as_modules_without_path_patches():
    for folder in ("bench", "tools"):
        assert (ROOT / folder / "__init__.py").is_file(), folder
        patched = [f.name for f in (ROOT / folder).glob("*.py") if "sys.path" in f.read_text()]
        assert not patched, (folder, patched)


def test_tests_mirror_the_package():
    """tests/<subpackage>/test_<module>[_topic].py; at most 20% of the test files are
    cross-cutting suites named after no module (contract, fuzz, browser, ...)."""
    modules = {f.stem for f in CORE.rglob("*.py")} | {p.name for p in CORE.iterdir() if p.is_dir()}
    modules |= {f.stem for f in (ROOT / "studio").glob("*.py")} | {"app"}
    files = sorted((ROOT / "tests").rglob("test_*.py"))
    named = lambda f: any(f.stem[5:] == m or f.stem[5:].startswith(m + "_") for m in modules)  # noqa: E731
    loose = [str(f.relative_to(ROOT)) for f in files if not named(f)]
    assert len(loose) <= 0.2 * len(files), loose
    for f in files:
        if f.parent.name in SUBPACKAGES:  # a sub-folder mirrors a subpackage
            stems = {p.stem for p in (CORE / f.parent.name).glob("*.py")} | {f.parent.name}
            assert any(f.stem[5:] == m or f.stem[5:].startswith(m + "_") for m in stems), f
