"""Peak memory of a dashboard server under several "tabs" (issue 28 item 9).

``python -m tests.reliability.memory [N_SMALL] [TABS]`` makes a runs directory of N_SMALL
small bundles and two larger ones (1.2 M parameters, 40 rows), serves it from a subprocess on
127.0.0.1, and lets TABS client threads each rescan the runs table, open every large run and
fetch its frames in every mode; it prints the server's peak RSS (VmHWM) in MB. The test in
test_memory_budget.py runs it small.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

from lcaviz.bundle.synthetic import write_synthetic_bundle
from tests.lcaviz.test_hostile_bundles import init_over_http

LARGE = (("fc1", (1000, 784)), ("fc2", (400, 1000)))
_SERVER = """
import logging, sys
from werkzeug.serving import make_server
from lcaviz.app import create_app
logging.getLogger("werkzeug").setLevel(logging.ERROR)
srv = make_server("127.0.0.1", 0, create_app(sys.argv[1]).server, threaded=True)
print(srv.server_port, flush=True)
srv.serve_forever()
"""


def make_runs(root: Path, n_small: int) -> Path:
    runs = root / "runs"
    runs.mkdir(parents=True)
    for k in range(n_small):
        write_synthetic_bundle(runs / f"small{k:03d}.h5", n_iters=20,
                               layers=(("fc1", (20, 30)), ("fc2", (10, 20))), n_classes=3,
                               seed=k, per_class=False)
    for k in range(2):
        write_synthetic_bundle(runs / f"large{k}.h5", n_iters=40, layers=LARGE, n_classes=3,
                               seed=k, per_class=False)
    return runs


class _Client:
    """``post``/``get`` over loopback HTTP with the test client's signature (for
    :func:`init_over_http`)."""

    def __init__(self, url: str):
        self.url = url

    def post(self, path: str, json: dict):  # noqa: A002 - the test client's name
        req = urllib.request.Request(self.url + path, data=_dumps(json),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.read()

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=300) as r:
            return r.status, r.read()


def _dumps(obj) -> bytes:
    return json.dumps(obj).encode()


RUNS_TABLE = {"output": "..runs-data.data...runs-errors.children...runs-count.children..."
                        "runs-hash.data..",
              "outputs": [{"id": "runs-data", "property": "data"},
                          {"id": "runs-errors", "property": "children"},
                          {"id": "runs-count", "property": "children"},
                          {"id": "runs-hash", "property": "data"}],
              "inputs": [{"id": "runs-interval", "property": "n_intervals", "value": 1}],
              "state": [{"id": "runs-hash", "property": "data", "value": None}],
              "changedPropIds": ["runs-interval.n_intervals"]}


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a process, MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def measure(runs: Path, tabs: int) -> tuple[float, int]:
    """``(peak RSS of the server in MB, requests that failed)``."""
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(runs)], stdout=subprocess.PIPE,
                            text=True, cwd=runs)
    failures = []
    try:
        client = _Client(f"http://127.0.0.1:{int(proc.stdout.readline())}")

        def tab(k: int) -> None:
            try:
                client.post("/_dash-update-component", RUNS_TABLE)  # a full rescan
                for name in ("large0.h5", "large1.h5"):
                    init_over_http(client, name)
                    for layer in (0, 1):
                        for mode in ("row", "cumulative", "window"):
                            client.get(f"/lcaviz/frames?run={name}&layer={layer}&mode={mode}"
                                       f"&window=4&res=full&r0={k % 8}&r1=40")
            except Exception as e:  # noqa: BLE001 - reported by the caller
                failures.append(repr(e))

        threads = [threading.Thread(target=tab, args=(k,)) for k in range(tabs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return vm_hwm_mb(proc.pid), len(failures)
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    n_small = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    tabs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    with tempfile.TemporaryDirectory() as tmp:
        peak, failed = measure(make_runs(Path(tmp), n_small), tabs)
    print(f"{n_small} small + 2 large bundles, {tabs} tabs: server peak RSS {peak:.0f} MB, "
          f"{failed} failed requests")
