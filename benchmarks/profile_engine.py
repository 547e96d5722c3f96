"""Where an lca-run iteration spends its time, phase by phase.

    python benchmarks/profile_engine.py [--net mnist_fc] [--dataset mnist] [--rgb32]
        [--train-size N] [--iters 20] [--device cpu] [--per-class] [--chunk-size 5000]
        [--data-root DIR] [--memory-format channels_last] [--compile]

Wraps the run's own functions with timers (no change to what runs): the optimizer step on the
minibatch, the full-dataset gradient evaluations inside the LCA step (and, of those, the
forward+backward passes vs flattening the gradients), the rest of the LCA step (quadrature
arithmetic), the per-iteration record (per-layer sums, host copies) and the bundle append.
Prints milliseconds per iteration and shares of the whole, skipping the first iteration.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import _sync, add_run_args, run_config  # noqa: E402

import compute.engine.approx
import compute.lca.integrator
import compute.lca.objective
import compute.run.train
from compute.lca.objective import FullDatasetObjective
from lcaviz.bundle.writer import BundleWriter

TOTALS: dict[str, list[float]] = defaultdict(list)


def _timed(name: str, fn, device: str):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _sync(device)
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        _sync(device)
        TOTALS[name].append(time.perf_counter() - t0)
        return out
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser()
    add_run_args(ap)
    ap.add_argument("--per-class", action="store_true")
    a = ap.parse_args()
    d = a.device
    train, approx = compute.run.train, compute.engine.approx
    train.train_step = _timed("optimizer step (minibatch)", train.train_step, d)
    # the per-iteration record is built in compute.engine.approx, which imports it from run.record
    approx.record = _timed("record (layer sums, host copies)", approx.record, d)
    BundleWriter.append = _timed("bundle append", BundleWriter.append, d)
    integ = compute.lca.integrator
    integ.LCAIntegrator.step = _timed("LCA step (all)", integ.LCAIntegrator.step, d)
    FullDatasetObjective.evaluate = _timed("  full-dataset gradients",
                                           FullDatasetObjective.evaluate, d)
    objective = compute.lca.objective
    objective.flat_grads = _timed("    flatten .grad", objective.flat_grads, d)
    compute.lca.objective.FullDatasetObjective.set_theta = _timed(
        "    load θ into the model", FullDatasetObjective.set_theta, d)
    check = compute.run.train.auto_precision_check  # a CUDA run's float64 check comes first:

    def check_then_reset(*args, **kwargs):  # its gradients are not part of any iteration
        out = check(*args, **kwargs)
        TOTALS.clear()
        return out

    compute.run.train.auto_precision_check = check_then_reset
    cfg = run_config(a, iters=a.iters + 1, per_class=a.per_class)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        compute.run.train.run_lca(cfg, Path(tmp) / "p.h5", progress=False)
        wall = time.perf_counter() - t0
    n = a.iters
    step = sum(TOTALS["optimizer step (minibatch)"][1:]) + sum(TOTALS["LCA step (all)"][1:]) \
        + sum(TOTALS["record (layer sums, host copies)"][1:]) + sum(TOTALS["bundle append"][1:])
    dev = torch.cuda.get_device_name() if d.startswith("cuda") else "cpu"
    print(f"# profile_engine: {a.net} on {a.dataset} (N={a.train_size or 'all'}), device {dev}, "
          f"threads {torch.get_num_threads()}, per-class {a.per_class}, {n} iterations "
          f"(first skipped); whole run incl. setup {wall:.1f} s")
    # one evaluation happens in start(), before the first iteration
    evals_per_step = (len(TOTALS["  full-dataset gradients"]) - 1) / (a.iters + 1)
    order = ["optimizer step (minibatch)", "LCA step (all)", "  full-dataset gradients",
             "    load θ into the model", "    flatten .grad", "record (layer sums, host copies)",
             "bundle append"]
    for name in order:
        ts = TOTALS[name]
        # gradients inside start() are not part of an iteration: keep the last n·k calls
        k = len(ts) // (a.iters + 1) or 1
        per_it = sum(ts[-n * k:]) / n
        print(f"{name:40s} {1e3 * per_it:9.2f} ms/it  {100 * per_it * n / step:6.1f} %")
    print(f"{'sum of phases':40s} {1e3 * step / n:9.2f} ms/it   (gradient evaluations per "
          f"iteration: {evals_per_step:.2f})")


if __name__ == "__main__":
    main()
