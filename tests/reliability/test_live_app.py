"""The dashboard's view of a live run (issue 14.1): while a writer process appends, the app's
shared bundle handle grows with the run, and once the writer completes, the same app (no
restart) opens it as complete, its runs list included. Every wait is for a condition."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lcaviz.app.state import AppState
from lcaviz.bundle import RunBundle

ROOT = Path(__file__).resolve().parents[2]
N_ITERS = 80

# the writer waits for a "go" line before each block of iterations, so the test decides when
# the run moves on: no race with the machine's speed
_WRITER = textwrap.dedent(f"""
    import sys
    from lcaviz.bundle.synthetic import SyntheticRun
    run = SyntheticRun(layers=(("fc1", (6, 8)), ("fc2", (3, 6))), n_iters={N_ITERS},
                       n_classes=3, stride=25, seed=7)
    w = run.create_writer(sys.argv[1], flush_seconds=3600)
    print("started", flush=True)
    for t, rec in enumerate(run.records()):
        if t % 20 == 0:
            sys.stdin.readline()  # wait for the test
        w.append(rec)
        if t % 20 == 19:
            w.flush()
            print(t + 1, flush=True)
    w.append_lca_row(run.partial_row)
    w.set_param_counters(run.help_iters, run.nonzero_iters)
    sys.stdin.readline()
    w.close("complete")
    print("done", flush=True)
""")


def _wait(fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.mark.timeout(300)  # a safety net, generous: the suite must pass beside a CPU hog
def test_app_follows_a_live_run_and_opens_it_complete(tmp_path):
    path = tmp_path / "live.h5"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    state = AppState(runs_dir=tmp_path)
    try:
        assert proc.stdout.readline().strip() == "started"
        seen = []
        for block in range(4):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            published = int(proc.stdout.readline())  # flushed and published
            b, _ = state.open("live.h5")  # the run page's handle, as a callback gets it
            held = b  # a callback still holding the handle while the run goes on
            assert b.n_iters == published, (block, b.n_iters, published)
            assert b.status == "running" and len(b.loss_train()) == published + 1
            assert b.n_rows == published // 25
            infos = state.scan()  # the runs list, in the same process
            assert infos[0].ok and infos[0].iterations == published, infos[0].error
            seen.append(b.n_iters)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
        proc.wait(timeout=30)
        b = _wait(lambda: (lambda x: x if x.status == "complete" else None)(
            state.open("live.h5")[0]))
        assert b.n_iters == N_ITERS and b.n_rows == 4 and held.status == "complete"
        assert b.row_windows[-1].tolist() == [75, 80]
        (info,) = state.scan()
        assert info.ok and info.status == "complete" and info.iterations == N_ITERS
        with RunBundle.open(path) as fresh:  # what a new process (lcaviz summary) reads
            assert fresh.n_iters == N_ITERS
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert seen == [20, 40, 60, 80]
