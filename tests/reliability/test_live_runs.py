"""A live run: a writer process appends slowly while the test keeps reading the bundle.

The reader polls as fast as it can (refresh() on one handle): progress never
goes backwards, every series is cut consistently to the published progress, what it reads
equals what the finished bundle holds, refresh() sees the growth, and the writer is never
blocked by the reader (it finishes while the reader polls).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lcaviz.bundle import BundleError, RunBundle

ROOT = Path(__file__).resolve().parents[2]
N_ITERS, STRIDE, SLEEP = 60, 2, 0.03

_WRITER = textwrap.dedent(f"""
    import json, sys, time
    from lcaviz.bundle.synthetic import SyntheticRun
    run = SyntheticRun(layers=(("fc1", (6, 8)), ("fc2", (3, 6))), n_iters={N_ITERS},
                       n_classes=3, stride={STRIDE}, seed=7)
    w = run.create_writer(sys.argv[1], flush_seconds=0.0)  # publish every iteration
    print("started", flush=True)
    start = time.monotonic()
    slowest = 0.0
    for t, rec in enumerate(run.records()):
        t0 = time.monotonic()
        w.append(rec)
        if (t + 1) % 10 == 0:
            w.set_param_counters(run.help_iters, run.nonzero_iters)
        slowest = max(slowest, time.monotonic() - t0)
        time.sleep({SLEEP})
    w.set_param_counters(run.help_iters, run.nonzero_iters)
    w.close("complete")
    print(json.dumps({{"loop_s": time.monotonic() - start, "slowest_append_s": slowest}}),
          flush=True)
""")


def _snapshot(b: RunBundle) -> dict:
    """Read every per-iteration series and check they agree with the published progress."""
    T, R = b.n_iters, b.n_rows
    if b.status == "running":
        assert R == T // STRIDE, (T, R)
    for name in ("loss_minibatch", "residual", "splits", "lca_layer", "help_count",
                 "hurt_count", "seconds", "lca_class_layer"):
        assert len(getattr(b, name)()) == T, (name, T)
    assert len(b.loss_train()) == len(b.accuracy_train()) == T + 1
    rows = b.rows()
    assert rows.shape == (R, b.n_params)
    return {"T": T, "R": R, "lca_layer": b.lca_layer(), "rows": rows,
            "loss": b.loss_train(), "status": b.status}


@pytest.mark.timeout(300)  # a safety net, generous: the suite must pass beside a CPU hog
def test_reader_follows_a_live_writer_without_blocking_it(tmp_path):
    path = tmp_path / "live.h5"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE)
    seen: list[dict] = []
    try:
        assert proc.stdout.readline().strip() == "started"
        handle = RunBundle.open(path)
        deadline = time.monotonic() + 240  # a safety net only: the loop ends when the run does
        transient, errors = 0, []
        while time.monotonic() < deadline:
            try:
                handle.refresh()
                seen.append(_snapshot(handle))
            except BundleError as e:
                errors.append(str(e))
                # the writer leaves SWMR briefly to set the final status; a rare retry only
                transient += 1
                assert transient < 20, errors[-3:]
                continue
            if seen[-1]["status"] != "running":
                break
        handle.close()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    timing = json.loads(out.strip().splitlines()[-1])

    # progress never decreases, the reader saw the run grow, and it saw the end
    Ts = [s["T"] for s in seen]
    assert all(a <= b for a, b in zip(Ts, Ts[1:], strict=False)), Ts
    assert len(set(Ts)) >= 5, f"refresh() saw too few distinct progress values: {set(Ts)}"
    assert seen[-1]["status"] == "complete" and Ts[-1] == N_ITERS
    assert seen[-1]["R"] == N_ITERS // STRIDE

    # what the reader saw mid-run is exactly a prefix of the finished bundle
    final = seen[-1]
    for s in seen[:-1]:
        T, R = s["T"], s["R"]
        np.testing.assert_array_equal(s["lca_layer"], final["lca_layer"][:T])
        np.testing.assert_array_equal(s["rows"], final["rows"][:R])
        np.testing.assert_array_equal(s["loss"], final["loss"][: T + 1])

    # how long the writer took is printed, not asserted: a timed assertion fails on a loaded
    # machine (benchmarks/bench_load.py measures); SWMR readers take no lock the writer waits on
    budget = N_ITERS * SLEEP
    print(f"{len(seen)} reads; writer loop {timing['loop_s']:.2f} s (sleeps {budget:.2f} s), "
          f"slowest append {timing['slowest_append_s'] * 1e3:.0f} ms")


_SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from lcaviz.bundle.synthetic import SyntheticRun
    run = SyntheticRun(layers=(("fc1", (6, 8)),), n_iters=60, n_classes=3, seed=7)
    w = run.create_writer(sys.argv[1], flush_seconds=0.0)
    print("started", flush=True)
    for rec in run.records():
        w.append(rec)
        time.sleep(0.02)
    w.close("complete")
""")


# HDF5 shares one file object (and its cached dataset shapes) between all opens of a path in a
# process, so while the run page keeps a live run open, a second open (scan_runs, the cache's
# reopen) can read a newer `progress` than the shapes it sees. The reader then shows the
# complete prefix its shapes hold (RunBundle._clamp_live) instead of calling the file corrupt.
@pytest.mark.timeout(300)  # a safety net, generous: the suite must pass beside a CPU hog
def test_scan_sees_a_live_run_while_the_run_page_holds_it_open(tmp_path):
    from lcaviz.bundle import scan_runs

    path = tmp_path / "live.h5"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(path)], cwd=ROOT,
                            text=True, stdout=subprocess.PIPE)
    bad, scans = [], 0
    try:
        assert proc.stdout.readline().strip() == "started"
        viewer = RunBundle.open(path)  # what the run page keeps open while the user watches
        while proc.poll() is None and scans < 30:
            (info,) = scan_runs(tmp_path)
            scans += 1
            if not info.ok:
                bad.append(info.error)
            time.sleep(0.03)
        viewer.close()
    finally:
        proc.kill()
        proc.wait()
    assert scans >= 5
    assert not bad, f"{len(bad)}/{scans} scans called the live run unreadable: {bad[0]}"


_STEPPED_WRITER = textwrap.dedent("""
    import sys
    from lcaviz.bundle.synthetic import SyntheticRun
    run = SyntheticRun(layers=(("fc1", (6, 8)),), n_iters=20, n_classes=3, seed=7)
    w = run.create_writer(sys.argv[1], flush_seconds=0.0)
    records = iter(run.records())
    for _ in range(3):
        w.append(next(records))
    print("published 3", flush=True)
    sys.stdin.readline()  # the test opens its viewer here
    for rec in records:
        w.append(rec)
    w.close("complete")
""")


def test_a_second_open_after_the_run_finished_under_an_older_handle_is_not_corrupt(tmp_path):
    """The race a CPU hog once exposed, made deterministic: the viewer opened the run at 3
    iterations, the writer finished and closed (the file no longer looks live), and a second
    open in the same process shares the viewer's older shapes. It must show a consistent
    prefix, not call the file corrupt; once the viewer is closed, the whole run."""
    path = tmp_path / "run.h5"
    proc = subprocess.Popen([sys.executable, "-c", _STEPPED_WRITER, str(path)], cwd=ROOT,
                            text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "published 3"
        viewer = RunBundle.open(path)
        assert viewer.n_iters == 3
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.wait(timeout=120) == 0
        with RunBundle.open(path) as second:  # raised CorruptBundleError before the fix
            assert 3 <= second.n_iters <= 20
            assert len(second.loss_train()) == second.n_iters + 1
        viewer.close()
        with RunBundle.open(path) as alone:
            assert (alone.n_iters, alone.status) == (20, "complete")
    finally:
        proc.kill()
        proc.wait()
