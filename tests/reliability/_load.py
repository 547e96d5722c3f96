"""Load generator shared by tests/reliability/test_load.py (8 s) and benchmarks/bench_load.py
(60 s): the Dash app served by werkzeug on 127.0.0.1 in a thread, and simulated users doing what
the run page's player does while scrubbing and playing: GET blocks of heatmap frames from
``/lcaviz/frames`` (each user its own run, layer, frame mode and rows)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, make_server

from lcaviz.app import create_app
from lcaviz.bundle.synthetic import write_synthetic_bundle

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


MODES = ("row", "cumulative", "window")


def frames_url(run_id: str, row: int, layer: int = 0, mode: str = "row", rows: int = 8) -> str:
    """The request the player sends for a block of ``rows`` frames starting at ``row``."""
    return (f"/lcaviz/frames?run={run_id}&layer={layer}&mode={mode}&window=10&res=auto"
            f"&region=&r0={row}&r1={row + rows}")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # thousands of requests: no access log
        pass


def get(url: str, path: str, timeout: float = 30) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"{url}{path}", timeout=timeout) as r:
        return r.status, r.read()


def warm_up(url: str, run_ids: list[str]) -> None:
    """One block per run and layer first (opens every bundle once)."""
    for run_id in run_ids:
        for layer in range(len(LAYERS)):
            status, body = get(url, frames_url(run_id, 0, layer))
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
    """A frames block is a JSON header and that many frames of float32."""
    n = int.from_bytes(resp_body[:4], "little")
    try:
        head = json.loads(resp_body[4:4 + n])
    except ValueError:
        return f"not a frames block: {resp_body[:200]!r}"
    want = 4 + n + 4 * head["n_cells"] * (head["r1"] - head["r0"])
    if len(resp_body) != want or head["r1"] <= head["r0"]:
        return f"frames block of {len(resp_body)} bytes, expected {want}"
    return None


def run_load(url: str, run_ids: list[str], rows: dict[str, int], *, users: int = 20,
             seconds: float = 8.0, rss_every: float = 0.5) -> LoadResult:
    """``users`` threads GET frame blocks (each its own run, layer, mode and rows) until
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
                status, body = get(url, frames_url(run_id, row, layer=n % len(LAYERS),
                                                   mode=MODES[(k + n) % len(MODES)]))
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
