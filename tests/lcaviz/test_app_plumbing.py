"""Dashboard plumbing: run-id security, filenames, caches, background jobs, exports, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from tests.e2e.runs_fixture import make_runs_dir


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return make_runs_dir(tmp_path_factory.mktemp("lcaviz_sec"))


# -- security --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    "..", "../fc.h5", "nested/../../fc.h5", "/etc/passwd", "//etc/passwd", "~/x.h5",
    "%2e%2e/fc.h5", "%2E%2E%2Ffc.h5", "%252e%252e/fc.h5", "nested%2f..%2f..%2ffc.h5",
    "fc.h5\x00.png", "fc%00.h5", "nested\\..\\fc.h5", "C:/x.h5", "./fc.h5", "escape.h5",
    "missing.h5", "nested", "x" * 2000, "nested/conv.txt",
])
def test_resolve_run_rejects(runs_dir, bad):
    from lcaviz.app.security import RunPathError, resolve_run

    (runs_dir / "nested" / "conv.txt").write_text("x")
    with pytest.raises(RunPathError):
        resolve_run(runs_dir, bad)


def test_resolve_run_accepts_inside_paths_and_inner_symlinks(runs_dir):
    from lcaviz.app.security import resolve_run, run_id_of

    assert resolve_run(runs_dir, "fc.h5") == (runs_dir / "fc.h5").resolve()
    assert resolve_run(runs_dir, "nested/conv.h5").name == "conv.h5"
    link = runs_dir / "nested" / "alias.h5"
    if not link.exists():
        link.symlink_to(runs_dir / "fc.h5")
    assert resolve_run(runs_dir, "nested/alias.h5") == (runs_dir / "fc.h5").resolve()
    assert run_id_of(runs_dir, runs_dir / "nested" / "conv.h5") == "nested/conv.h5"


def test_safe_filename():
    from lcaviz.app.security import safe_filename

    assert safe_filename("../../etc/passwd", "png") == "etc_passwd.png"
    assert safe_filename("run a/b:c", "csv") == "run_a_b_c.csv"
    assert safe_filename("", "p/n g") == "figure.png"
    assert safe_filename(".hidden", "svg") == "hidden.svg"
    assert "/" not in safe_filename("a/" * 300, "pdf") and len(safe_filename("a" * 500, "x")) < 130


# -- caches and jobs ---------------------------------------------------------------------
def test_lru_is_bounded_by_entries_and_bytes():
    from lcaviz.app.cache import LRU

    c = LRU(max_entries=3, max_bytes=10_000)
    for k in range(5):
        c.put(k, np.zeros(100))  # 800 bytes each
    assert len(c) == 3 and c.get(0) is None and c.get(4) is not None
    c.put("big", np.zeros(2000))  # 16 kB > max_bytes: not cached
    assert c.get("big") is None
    for k in range(20):
        c.put(("x", k), np.zeros(500))  # 4 kB each: only two fit
    assert c.size_bytes <= 10_000


def test_bundle_cache_reopens_on_change_and_evicts(tmp_path):
    from lcaviz.app.cache import BundleCache

    class Fake:
        def __init__(self):
            self.refreshed = self.closed = 0

        def refresh(self):
            self.refreshed += 1

        def close(self):
            self.closed += 1

    opened = []
    cache = BundleCache(max_open=2, opener=lambda p: opened.append(Fake()) or opened[-1])
    files = [tmp_path / f"{i}.h5" for i in range(3)]
    for f in files:
        f.write_bytes(b"x")
    a1, _ = cache.get(files[0])
    a2, _ = cache.get(files[0])
    assert a1 is a2 and len(opened) == 1 and a1.refreshed == 0
    files[0].write_bytes(b"xy")  # the stamp (size) changes: the one handle is refreshed
    assert cache.get(files[0])[0] is a1 and a1.refreshed == 1 and len(opened) == 1
    with cache.borrow(files[0]) as b:  # a looker borrows the cached handle
        assert b is a1 and len(opened) == 1
    with cache.borrow(files[1]) as b:  # or a temporary one, closed after
        assert b.closed == 0
    assert b.closed == 1 and len(cache) == 1
    cache.get(files[1])
    cache.get(files[2])
    assert len(cache) == 2 and a1.closed == 1  # evicted handles are closed


def test_job_runner_reports_errors():
    from lcaviz.app.jobs import JobRunner

    jr = JobRunner(max_workers=1)

    def boom():
        raise ValueError("nope")

    jr.status("k", boom)
    st = jr.wait("k", 10)
    assert st.state == "error" and "nope" in st.error
    st = jr.status("p", lambda progress: progress(0.5) or 42, progress_kw="progress")
    assert jr.wait("p", 10).result == 42
    jr.shutdown()


def test_export_helpers():
    from lcaviz.figures.export import figure_csv, html_report

    fig = go.Figure(go.Heatmap(z=np.arange(6).reshape(2, 3), x0=10, dx=2, name="h"))
    lines = figure_csv(fig).splitlines()
    assert lines[0] == "trace,x,y,value" and lines[-1] == "h,14,1,5.0"
    html = html_report("<t>", [fig])
    assert "&lt;t&gt;" in html and "<script" in html


# -- CLI ---------------------------------------------------------------------------------
def test_cli_defaults_and_warnings(tmp_path, monkeypatch, capsys):
    from lcaviz import cli

    args = cli.build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8050 and not args.debug
    assert cli.is_loopback("127.0.0.1") and cli.is_loopback("::1") and cli.is_loopback(
        "localhost")
    assert not cli.is_loopback("0.0.0.0")
    assert cli.main(["serve", str(tmp_path / "missing"), "--no-browser"]) == 2
    assert "does not exist" in capsys.readouterr().err

    calls = {}

    class FakeApp:
        def run(self, **kw):
            calls.update(kw)

    import lcaviz.app

    def fake_create_app(d, debug=False, check_host=True):
        calls["check_host"] = check_host
        return FakeApp()

    monkeypatch.setattr(lcaviz.app, "create_app", fake_create_app)
    assert cli.main(["serve", str(tmp_path), "--host", "0.0.0.0", "--no-browser"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and calls["host"] == "0.0.0.0" and calls["debug"] is False
    assert calls["check_host"] is False  # --host given: the user names the address
    assert cli.main(["serve", str(tmp_path), "--no-browser"]) == 0
    assert "warning:" not in capsys.readouterr().err and calls["host"] == "127.0.0.1"
    assert calls["check_host"] is True  # the default: loopback Host headers only


def test_cli_summary_dispatches(monkeypatch):
    import types

    from lcaviz import cli

    seen = {}
    fake = types.ModuleType("lcaviz.reports.summary_cli")
    fake.main = lambda argv: seen.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, "lcaviz.reports.summary_cli", fake)
    import lcaviz.reports

    monkeypatch.setattr(lcaviz.reports, "summary_cli", fake, raising=False)
    assert cli.main(["summary", "run.h5", "--json"]) == 0
    assert seen["argv"] == ["run.h5", "--json"]


def test_lcaviz_never_imports_torch():
    code = ("import sys; import lcaviz.app, lcaviz.cli, lcaviz.figures.export, "
            "lcaviz.app.pages.run; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"
