"""Bundle bytes per parameter per iteration for each storage choice (README table, issue 22.8).

    python benchmarks/bench_bundle_size.py [--iters 100] [--train-size 1000]

Runs ``lca-run``'s engine (MNIST-FC, real MNIST, rk4) at two lengths T and 2T per storage
choice and prints both file sizes and the per-iteration slope (S_2T − S_T) / (P · T), the
bytes per parameter each further iteration costs (the fixed part is mostly the per-parameter
counters: 6 of them, 1 B each up to 254 planned iterations, 2 B up to 65,534, else 4 B). Then
a synthetic 10 M-parameter bundle: 3 of 1,000 planned iterations, with rows for every layer
and with ``lca_layers=[]`` (the case issue 22.8 measured at 561 MB and 240 MB).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from compute.run.config import RunConfig
from compute.run.train import run_lca
from lcaviz.bundle.size import projected_bytes
from lcaviz.bundle.synthetic import SyntheticRun

CHOICES = (  # (label, RunConfig fields)
    ("float32 rows, every iteration", {}),
    ("bfloat16 rows", {"lca_storage": "bfloat16"}),
    ("float32 + gzip", {"lca_compression": "gzip"}),
    ("bfloat16 + gzip", {"lca_storage": "bfloat16", "lca_compression": "gzip"}),
    ("float32, one row per 10 iterations (--lca-rows 10)", {"lca_stride": 10}),
    ("no rows (--lca-layers none)", {"lca_layers": []}),
)


def _size(tmp: Path, name: str, iters: int, a, extra: dict) -> tuple[int, int]:
    out = tmp / f"{name}_{iters}.h5"
    cfg = RunConfig(net="mnist_fc", dataset="mnist", train_size=a.train_size, batch_size=100,
                    iters=iters, method="rk4", seed=0, checkpoint_every=10**9, **extra)
    run_lca(cfg, out, progress=False)
    import h5py

    with h5py.File(out, "r", locking=False) as f:
        P = int(f["params/offsets"][-1])
    return out.stat().st_size, P


def _synthetic_10m(tmp: Path, lca_layers) -> int:
    side = 3162  # 3162² ≈ 10.0 M parameters
    run = SyntheticRun(layers=(("big", (side, side)), ("out", (10, 100))), n_iters=1000,
                       n_classes=10, seed=0, lca_layers=lca_layers)
    path = tmp / f"big_{lca_layers}.h5"
    w = run.create_writer(path)
    for _, rec in zip(range(3), run.records(), strict=False):
        w.append(rec)
    w.set_param_counters(run.help_iters, run.nonzero_iters)
    w.close("failed", "3 iterations")
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=64)  # a multiple of lca_cumsum's 64 rows
    ap.add_argument("--train-size", type=int, default=1000)
    a = ap.parse_args()
    T = a.iters
    print(f"MNIST-FC (P = 84,060), {a.train_size} MNIST examples, rk4, T = {T} and {2 * T}\n")
    print(f"| storage | B / param / iteration | file at T = {T} (MB) | at T = {2 * T} (MB) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for i, (label, extra) in enumerate(CHOICES):
            t0 = time.perf_counter()
            s1, P = _size(tmp, f"c{i}", T, a, extra)
            s2, _ = _size(tmp, f"c{i}", 2 * T, a, extra)
            slope = (s2 - s1) / (P * T)
            print(f"| {label} | {slope:.2f} | {s1 / 1e6:.2f} | {s2 / 1e6:.2f} |"
                  f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
        print()
        for layers in (None, []):
            size = _synthetic_10m(tmp, layers)
            run = SyntheticRun(layers=(("big", (3162, 3162)), ("out", (10, 100))), n_iters=1000,
                               n_classes=10, lca_layers=layers)
            proj = projected_bytes(run.layout(), 3)["total"]
            print(f"10 M parameters, 3 of 1,000 planned iterations, lca_layers={layers}: "
                  f"{size / 1e6:.1f} MB (projected {proj / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
