"""Cost of ``lca-run --lca-error-every K`` as a ratio to a plain rk4 iteration, and what the
estimates say (per-layer error, Table S1), on MNIST-FC.

    python benchmarks/bench_lca_error.py [--dataset synthetic] [--train-size 10000]
        [--iters 41] [--every 5] [--repeats 2] [--device cpu] [--keep DIR]

Per iteration we count what ``lca-run`` spends on it: the bundle's ``timing/seconds`` (train
step + LCA, the refinement included, and, since issue 17, the time of building its record,
where the error statistics are computed) plus the time of handing it to the writer. Runs with
``--lca-error-every`` 0 (plain rk4), 1 (every iteration refined) and K alternate ``--repeats``
times; medians are reported, and within the K runs the error iterations are compared with the
others (same process, same moment: the number least disturbed by other load on a shared
machine). An rk4 iteration evaluates 2 new full-dataset gradients; one with an error estimate 6
more, so the expected ratio is a little under 4 (the train step and the record are shared).
Measured on this project's shared 2-core CPU (10,000 synthetic examples, 41 iterations, 3
repeats): plain rk4 61 ms, every iteration estimated 3.84x, within --lca-error-every 5 an error
iteration 3.89x the others; on real MNIST (55,000, 300 iterations, K = 10) 3.92x from the
bundle's timings.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import compute.run.train as train
from compute.run.config import RunConfig
from lcaviz.analysis.lca_error import error_table, table_s1, table_s1_markdown
from lcaviz.bundle import RunBundle
from lcaviz.bundle.writer import BundleWriter


def timed_run(cfg: RunConfig, out: Path) -> np.ndarray:
    """Seconds of each iteration: timing/seconds (train step, LCA, record) + writer append."""
    extra: list[float] = []
    append = BundleWriter.append

    def timed_append(self, rec):
        t0 = time.perf_counter()
        append(self, rec)
        extra.append(time.perf_counter() - t0)

    BundleWriter.append = timed_append
    try:
        train.run_lca(cfg, out, overwrite=True, progress=False)
    finally:
        BundleWriter.append = append
    with h5py.File(out, "r") as f:
        return f["timing/seconds"][()] + np.asarray(extra)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--train-size", type=int, default=10_000)
    ap.add_argument("--iters", type=int, default=41)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk-size", type=int, default=5000)
    ap.add_argument("--keep", type=Path, default=None, help="keep the bundles in this folder")
    a = ap.parse_args(argv)
    base = dict(net="mnist_fc", dataset=a.dataset, train_size=a.train_size, val_size=100,
                iters=a.iters, method="rk4", chunk_size=a.chunk_size, device=a.device,
                lr=0.05, checkpoint_every=10**6, seed=0)
    work = a.keep or Path(tempfile.mkdtemp(prefix="bench_lca_error_"))
    work.mkdir(parents=True, exist_ok=True)
    plain, every1, everyK = [], [], []
    for r in range(a.repeats):
        for k, sink in ((0, plain), (1, every1), (a.every, everyK)):
            sec = timed_run(RunConfig(**base, lca_error_every=k), work / f"k{k}_r{r}.h5")
            sink.append(sec[1:])  # the first iteration includes warm-up
    p = statistics.median(float(np.median(s)) for s in plain)
    e1 = statistics.median(float(np.median(s)) for s in every1)
    # within the --every K runs, error iterations against the others: the same process and
    # moment, so the least exposed to other load on the machine
    marked = [(np.arange(1, a.iters) % a.every == 0) for _ in everyK]
    inside = statistics.median(float(np.median(s[m]) / np.median(s[~m]))
                               for s, m in zip(everyK, marked, strict=True))
    print(f"MNIST-FC on {a.dataset} ({a.train_size:,} examples), {a.device}, {a.iters} "
          f"iterations, {a.repeats} repeats")
    print(f"plain rk4 iteration          {p * 1e3:8.1f} ms (median)")
    print(f"every iteration estimated    {e1 * 1e3:8.1f} ms = {e1 / p:.2f}x a plain rk4 "
          f"iteration (8 vs 2 new gradients)")
    print(f"within --lca-error-every {a.every}: an error iteration costs {inside:.2f}x the "
          f"others; amortised 1 + {inside - 1:.2f}/{a.every} = {1 + (inside - 1) / a.every:.2f}x")
    with RunBundle.open(work / f"k{a.every}_r0.h5") as b:
        print("\nstored (rk4) error per layer:\n" + error_table(b).to_string(index=False))
        print("\nTable S1:\n" + table_s1_markdown(table_s1(b)))
    print(f"\nbundles in {work}")


if __name__ == "__main__":
    main()
