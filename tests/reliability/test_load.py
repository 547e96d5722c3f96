"""Short load test (CI): 20 simulated users fetch heatmap frames over HTTP for 8 s, as the
player does while scrubbing and playing, against the real Flask server; no request fails and
the server's memory stays flat.
``benchmarks/bench_load.py`` is the 60 s version."""

from __future__ import annotations

import pytest

from lcaviz.bundle import RunBundle
from tests.reliability._load import Server, _check, frames_url, get, make_runs, run_load, warm_up

USERS, SECONDS = 20, 8.0


@pytest.mark.timeout(300)  # a safety net, generous: the suite must pass beside a CPU hog
def test_20_users_fetching_frames_get_no_errors_and_flat_memory(tmp_path):
    run_ids = make_runs(tmp_path)
    rows = {}
    for r in run_ids:
        with RunBundle.open(tmp_path / r) as b:
            rows[r] = b.n_rows
    with Server(tmp_path) as srv:
        # the request shape is right: a block of frames
        status, body = get(srv.url, frames_url(run_ids[0], 5))
        assert status == 200 and _check(body) is None
        warm_up(srv.url, run_ids)
        res = run_load(srv.url, run_ids, rows, users=USERS, seconds=SECONDS)
    n = len(res.latencies)
    half = [mb for t, mb in res.rss if t <= SECONDS / 2]
    rest = [mb for t, mb in res.rss if t > SECONDS / 2]
    growth = max(rest) - max(half)
    print(f"{n} requests in {SECONDS:.0f} s ({n / SECONDS:.0f}/s), {len(res.errors)} errors, "
          f"p50 {res.pct(0.5) * 1e3:.0f} ms, p95 {res.pct(0.95) * 1e3:.0f} ms, "
          f"max {max(res.latencies) * 1e3:.0f} ms; RSS {half[0]:.0f} -> {res.rss[-1][1]:.0f} "
          f"MB (2nd-half growth {growth:+.1f} MB)")
    assert not res.errors, res.errors[:5]
    assert n >= 50, f"only {n} requests served in {SECONDS} s"
    assert res.pct(0.95) < 10.0  # generous: 20 users share 2 cores (and the GIL) in CI
    assert growth < 100, f"RSS grew {growth:.0f} MB in the second half"
