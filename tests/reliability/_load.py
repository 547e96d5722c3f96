"""Load generator shared by tests/reliability/test_load.py (8 s) and benchmarks/bench_load.py
(60 s): the Dash app served by werkzeug on 127.0.0.1 in a thread, and simulated users POSTing
the run page's slider-step callback (the heatmap update) to ``/_dash-update-component``."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, make_server

from lcaviz.app import create_app, ids
from lcaviz.bundle.synthetic import write_synthetic_bundle

HEATMAP_OUTPUT = f"..{ids.HEATMAP}.figure...{ids.HEATMAP_PLAN}.data...{ids.HEATMAP_INFO}.children.."
LAYERS = (("fc1", (40, 60)), ("fc2", (20, 40)), ("fc3", (5, 20)))


def rss_mb() -> float:
    """Resident set size of this process (server and load threads share it), MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def make_runs(runs_dir: Path, n_runs: int = 3, n_iters: int = 60) -> list[str]:
    names = []
    for k in range(n_runs):
        write_synthetic_bundle(runs_dir / f"run{k}.h5", n_iters=n_iters, layers=LAYERS,
                               n_classes=5, stride=1 + k, seed=k)
        names.append(f"run{k}.h5")
    return names


def slider_body(run_id: str, row: int, layer: int = 0) -> bytes:
    """The request the browser sends when the run page's slider moves to ``row``."""
    inputs = [("run-slider", "value", row), (ids.MODE, "value", "row"),
              (ids.WINDOW, "value", 10), (ids.LAYER, "value", layer),
              (ids.RANGE_MODE, "value", "fixed"), (ids.RESOLUTION, "value", "auto"),
              (ids.ZOOM, "data", None), (ids.RUN_META, "data", None)]
    body = {
        "output": HEATMAP_OUTPUT,
        "outputs": [{"id": ids.HEATMAP, "property": "figure"},
                    {"id": ids.HEATMAP_PLAN, "property": "data"},
                    {"id": ids.HEATMAP_INFO, "property": "children"}],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": ids.RUN_ID, "property": "data", "value": run_id}],
        "changedPropIds": [f"{ids.SLIDER}.value"],
    }
    return json.dumps(body).encode()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # thousands of requests: no access log
        pass


def post(url: str, body: bytes, timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(f"{url}/_dash-update-component", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def warm_up(url: str, run_ids: list[str]) -> None:
    """One step per run and layer first: the fixed colour range of a layer is computed once
    per run (a first-render cost, measured by bench_dashboard), not per slider step."""
    for run_id in run_ids:
        for layer in range(len(LAYERS)):
            status, body = post(url, slider_body(run_id, 0, layer))
            assert status == 200 and _check(body) is None, body[:200]


class Server:
    """``create_app(runs_dir)`` on a free 127.0.0.1 port, in a daemon thread."""

    def __init__(self, runs_dir: Path):
        self.app = create_app(runs_dir)
        self.httpd = make_server("127.0.0.1", 0, self.app.server, threaded=True,
                                 request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: list[str] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (elapsed s, MB)

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def _check(resp_body: bytes) -> str | None:
    data = json.loads(resp_body)
    fig = data.get("response", {}).get(ids.HEATMAP, {}).get("figure")
    if not fig or "data" not in fig:
        return f"no heatmap figure in the response: {resp_body[:200]!r}"
    title = json.dumps(fig.get("layout", {}).get("title", ""))
    if "Cannot read" in title:
        return f"callback reported an error: {title[:200]}"
    return None


def run_load(url: str, run_ids: list[str], rows: dict[str, int], *, users: int = 20,
             seconds: float = 8.0, rss_every: float = 0.5) -> LoadResult:
    """``users`` threads POST slider steps (each its own run and row sequence) until
    ``seconds`` have passed; every request goes to ``url`` (127.0.0.1 only)."""
    assert url.startswith("http://127.0.0.1:"), url
    res = LoadResult()
    lock = threading.Lock()
    start = time.monotonic()
    stop = start + seconds

    def user(k: int) -> None:
        run_id = run_ids[k % len(run_ids)]
        n = 0
        while time.monotonic() < stop:
            row = (7 * k + 3 * n) % rows[run_id]
            t0 = time.perf_counter()
            try:
                status, body = post(url, slider_body(run_id, row, layer=n % len(LAYERS)))
                err = None if status == 200 else f"HTTP {status}"
                err = err or _check(body)
            except Exception as e:  # noqa: BLE001 - every failure is counted
                err = f"{type(e).__name__}: {e}"
            dt = time.perf_counter() - t0
            with lock:
                (res.errors.append(err) if err else res.latencies.append(dt))
            n += 1

    threads = [threading.Thread(target=user, args=(k,), daemon=True) for k in range(users)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        res.rss.append((time.monotonic() - start, rss_mb()))
        time.sleep(rss_every)
    for t in threads:
        t.join()
    res.rss.append((time.monotonic() - start, rss_mb()))
    return res
