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
