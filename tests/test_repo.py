"""Repository-wide checks: lint, the torch-free promise of lcaviz, module sizes."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ruff_is_clean():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:]


def test_lcaviz_never_imports_torch():
    code = ("import sys, lcaviz.app, lcaviz.cli, lcaviz.analysis, lcaviz.bundle, "
            "lcaviz.reports.reproduction, lcaviz.bundle.writer, lcaviz.bundle.synthetic; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]


def test_modules_stay_small():
    def ours(p: Path) -> bool:  # not .git, .venv (scripts/setup.sh on PEP 668 systems), build
        parts = p.relative_to(ROOT).parts
        return not any(x.startswith(".") or x in ("build", "venv") for x in parts)

    sizes = {p: len(p.read_text().splitlines()) for p in ROOT.glob("*/**/*.py") if ours(p)}
    big = {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > 400}
    assert not big, f"modules over 400 lines: {big}"


def _import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at module level or inside a function."""
    import ast

    root = ROOT / package.replace(".", "/")
    mods = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                # the package's own facade (``from compute import __version__``) is not an edge
                if name in mods and name not in (mod, package) and not mod.startswith(name + "."):
                    graph[mod].add(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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


def test_no_import_circles():
    # a package's __init__ importing its own submodule (compute.__getattr__) is not a circle
    for package in ("compute", "lcaviz.bundle"):
        graph = _import_graph(package)
        assert len(graph) > 5, package
        assert _cycles(graph) == [], package


def test_the_circle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
