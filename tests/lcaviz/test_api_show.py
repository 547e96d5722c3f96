"""lcaviz.show: the dashboard served from the kernel, one server per runs directory."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

import lcaviz
from lcaviz import api_show
from tests.lcaviz._bundle_factory import matrix_bundle


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.read()


def _show_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lcaviz-show-")]


@pytest.fixture()
def runs_dir(tmp_path):
    import numpy as np

    matrix_bundle(tmp_path / "a.h5", np.full((4, 5), -1e-3, np.float32), [3, 2])
    yield tmp_path
    api_show.stop_all()


def test_show_serves_the_app_on_loopback_and_rerun_does_not_leak(runs_dir, capsys):
    first = lcaviz.show(runs_dir)  # no IPython kernel here: it prints the address
    assert first.url in capsys.readouterr().out
    assert first.url.startswith("http://127.0.0.1:") and first.running
    assert first._server.server_address[0] == "127.0.0.1"
    status, body = _get(first.url)
    assert status == 200 and b"LCA explorer" in body
    status, body = _get(first.url.rstrip("/") + "/_dash-layout")
    assert status == 200 and json.loads(body)
    second = lcaviz.show(runs_dir, display=False)  # the cell re-run
    assert not first.running and second.running
    assert api_show.servers() == [second] and len(_show_threads()) == 1
    assert _get(second.url)[0] == 200
    second.stop()
    second.stop()  # idempotent
    assert api_show.servers() == [] and _show_threads() == []


def test_show_a_run_opens_its_page(runs_dir):
    with lcaviz.open(runs_dir / "a.h5") as run:
        d = lcaviz.show(run, display=False)
    assert d.url.endswith("/run?id=a.h5") and d.runs_dir == runs_dir.resolve()
    assert _get(d.url)[0] == 200
    assert 'src="http://127.0.0.1:' in d.iframe_html()
    other = lcaviz.show(runs_dir, display=False)  # same directory: replaces it
    assert not d.running and api_show.servers() == [other]


def test_show_rejects_a_missing_target(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs directory"):
        lcaviz.show(tmp_path / "nope", display=False)
