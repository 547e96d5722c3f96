"""Load test on a live run (issue 28 item 8): several threads request frames (and the runs
table) over loopback HTTP while another process appends to the bundle and finally closes it.
Every answer must be a 200: before the fix some were 500 (``KeyError: bundle has no 'lca'
dataset``, read while another request refreshed the handle) or 404 ("damaged bundle").

Bounded and timing-free: the writer appends one iteration per line on its stdin, and client 0
sends a line every STEP of its requests, so the run grows while the clients read it whatever
the machine's speed; each client stops when the writer has exited (or after MAX_REQUESTS).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.conftest import serve

ROOT = Path(__file__).resolve().parents[2]
N_ITERS, N_THREADS, MAX_REQUESTS, STEP = 60, 6, 1000, 3
_WRITER = textwrap.dedent(f"""
    import sys
    from lcaviz.bundle.synthetic import SyntheticRun
    run = SyntheticRun(layers=(("fc1", (16, 24)), ("fc2", (8, 16))), n_iters={N_ITERS},
                       n_classes=3, stride=1, seed=5)
    w = run.create_writer(sys.argv[1], flush_seconds=0.0)  # flush every iteration
    for t, rec in enumerate(run.records()):
        w.append(rec)
        if t == 4:
            print("started", flush=True)
        if t >= 4:
            sys.stdin.readline()  # client 0 says when the run moves on
    w.set_param_counters(run.help_iters, run.nonzero_iters)
    w.close("complete")
    print("done", flush=True)
""")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=120) as r:  # loopback only
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_frames_during_a_live_run_never_fail(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(runs / "live.h5")], cwd=ROOT,
                            text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    failures: list[str] = []
    counts = [0] * N_THREADS
    try:
        assert proc.stdout.readline().strip() == "started"
        with serve(runs) as url:
            def client(k: int) -> None:
                rng = random.Random(k)
                while proc.poll() is None and (k == 0 or counts[k] < MAX_REQUESTS):
                    if k == 0 and counts[k] % 10 == 0:
                        status, body = _get(f"{url}/")  # the runs page's shell
                    else:
                        layer, mode = rng.randrange(2), rng.choice(("row", "cumulative",
                                                                     "window"))
                        r0 = rng.randrange(4)
                        status, body = _get(f"{url}/lcaviz/frames?run=live.h5&layer={layer}"
                                            f"&mode={mode}&window=3&r0={r0}&r1={r0 + 50}")
                        if status == 200:
                            head = json.loads(body[4:4 + int.from_bytes(body[:4], "little")])
                            assert head["r1"] > head["r0"] == r0
                    counts[k] += 1
                    if status != 200:
                        failures.append(f"{status}: {body[:200]!r}")
                    if k == 0 and counts[k] % STEP == 0:
                        try:
                            proc.stdin.write("go\n")
                            proc.stdin.flush()
                        except (BrokenPipeError, ValueError):  # the writer has finished
                            pass

            threads = [threading.Thread(target=client, args=(k,)) for k in range(N_THREADS)]
            for t in threads:
                t.start()
            assert proc.stdout.readline().strip() == "done"
            for t in threads:
                t.join()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    print(f"{sum(counts)} requests, {len(failures)} failed")
    assert sum(counts) >= N_THREADS  # every client got at least one answer
    assert not failures, f"{len(failures)} of {sum(counts)} requests failed: {failures[:5]}"
