"""Bundle storage cost and read latency.

    python benchmarks/bench_bundle.py [--params 1000000] [--iters 200]

Writes a synthetic bundle through the real writer (lcaviz.bundle.writer via
lcaviz.bundle.synthetic) and prints: bytes per stored LCA value, write throughput, and the
median latency of reading one row, one 100,000-parameter layer over a 100-row window, one
parameter's whole curve, and cumulative LCA up to a row, through lcaviz.bundle.RunBundle.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from lcaviz.bundle import RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle


def _median_ms(fn, repeats: int = 15) -> float:
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", type=int, default=1_000_000)
    ap.add_argument("--iters", type=int, default=200)
    a = ap.parse_args()
    side = int(np.sqrt(a.params))
    layers = (("big", (side, side)), ("out", (10, 100)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.h5"
        t0 = time.perf_counter()
        write_synthetic_bundle(path, n_iters=a.iters, layers=layers, per_class=True)
        write_s = time.perf_counter() - t0
        size = path.stat().st_size
        with RunBundle.open(path) as b:
            R, P = b.n_rows, b.n_params
            rng = np.random.default_rng(0)
            rows = rng.integers(0, R, 64)
            cols = b.layer_columns(0)
            n_win = min(100_000, P)
            print(f"# bench_bundle: R = {R} rows x P = {P:,} parameters")
            print(f"file size           {size / 1e6:9.1f} MB  "
                  f"({size / (R * P):.3f} bytes per stored LCA value)")
            print(f"write (incl. synthetic data generation) {R * P * 4 / 1e6 / write_s:7.1f} MB/s "
                  f"of float32 LCA, {write_s:.1f} s")
            print(f"read one row        {_median_ms(lambda i: b.row(int(rows[i]))):9.1f} ms")
            print(f"read 100-row window of {n_win:,} params "
                  f"{_median_ms(lambda i: b.rows(0, min(100, R), slice(0, n_win))):9.1f} ms")
            print(f"read one parameter's curve "
                  f"{_median_ms(lambda i: b.param_curve(int(rows[i]) * 997 % P), 5):9.1f} ms")
            print(f"cumulative up to a row (layer 0) "
                  f"{_median_ms(lambda i: b.cumulative(int(rows[i]), cols)):9.1f} ms")


if __name__ == "__main__":
    main()
