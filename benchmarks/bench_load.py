"""Load benchmark: simulated users fetching heatmap frames over HTTP, as the player does.

    python benchmarks/bench_load.py [--users 20] [--seconds 60] [--runs 3]

Serves ``create_app`` with werkzeug (threaded) on a free 127.0.0.1 port, writes small
synthetic bundles to a temporary runs directory, and lets ``--users`` threads GET blocks of 8
heatmap frames (row, cumulative and window modes) from ``/lcaviz/frames`` for ``--seconds``. Prints
requests served, errors, latency p50/p95/max and the server's RSS over time. The 8 s CI
variant is tests/reliability/test_load.py (same load generator, tests/reliability/_load.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lcaviz.bundle import RunBundle  # noqa: E402
from tests.reliability._load import Server, make_runs, run_load, warm_up  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp)
        run_ids = make_runs(runs_dir, args.runs)
        rows = {}
        for r in run_ids:
            with RunBundle.open(runs_dir / r) as b:
                rows[r] = b.n_rows
        with Server(runs_dir) as srv:
            warm_up(srv.url, run_ids)
            print(f"{args.users} users for {args.seconds:.0f} s against {srv.url}", flush=True)
            res = run_load(srv.url, run_ids, rows, users=args.users, seconds=args.seconds,
                           rss_every=5.0)
    n = len(res.latencies)
    print(f"requests served: {n} ({n / args.seconds:.1f}/s), errors: {len(res.errors)}")
    if n:
        print(f"latency p50 {res.pct(0.5) * 1e3:.0f} ms, p95 {res.pct(0.95) * 1e3:.0f} ms, "
              f"max {max(res.latencies) * 1e3:.0f} ms")
    print("RSS over time:")
    for t, mb in res.rss:
        print(f"  {t:6.1f} s  {mb:7.1f} MB")
    for e in res.errors[:5]:
        print("error:", e)
    return 1 if res.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
