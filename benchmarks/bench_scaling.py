"""How the cost of exact LCA scales with P (parameters), N (examples) and T (iterations).

    python benchmarks/bench_scaling.py [--device cpu] [--repeats 3] [--axes P,N,T]

Three sizes per axis, the other two held fixed, all in one process:
  * P: MNIST-FC-shaped MLPs 784-h-h/2-10 with h = 100, 400, 1600 (84 k, 396 k, 2.5 M
    parameters) on 11,000 MNIST images — the only change from lca-run is the hidden width;
  * N: MNIST-FC (84,060 parameters) on 5,500, 16,500 and 55,000 images;
  * T: MNIST-FC on 5,500 images for 50, 200 and 800 iterations, per-parameter LCA at stride 1.
For P and N it prints the floor (2 full-dataset gradients), seconds per rk4 iteration of
lca-run, their ratio, and the overhead beyond the floor per iteration; for T the run's total
time, bundle size and the time of ``lcaviz summary`` on it. Each axis ends with the log-log
slope (1.0 = linear).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import floor_seconds, lca_run_seconds  # noqa: E402

import compute.run.train  # noqa: E402
from compute.run.config import RunConfig  # noqa: E402
from compute.run.train import run_lca  # noqa: E402
from lcaviz.analysis.summary import summarize  # noqa: E402

BASE = dict(net="mnist_fc", dataset="mnist", lr=0.01, momentum=0.9, batch_size=250,
            chunk_size=5500, per_class=False, checkpoint_every=10**6, val_size=1000)


class WideMLP(nn.Module):
    """784-h-h/2-10, the MNIST-FC shape at another width."""

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), hidden)
        self.fc2 = nn.Linear(hidden, hidden // 2)
        self.fc3 = nn.Linear(hidden // 2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1))))))


def _with_width(hidden: int):
    def build(name, input_shape, n_classes, seed=0):
        torch.manual_seed(seed)
        return WideMLP(input_shape, n_classes, hidden)
    return build


def _slope(sizes, values) -> float:
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def _per_iteration(cfg: RunConfig, work: Path, name: str, repeats: int) -> tuple[float, float]:
    fl = floor_seconds(cfg, repeats)
    rk, _ = lca_run_seconds(cfg, work, name)
    print(f"    floor {fl:7.3f} s   rk4 {rk:7.3f} s   ratio {rk / fl:5.2f}   "
          f"overhead {1e3 * (rk - fl):7.1f} ms/it", flush=True)
    return fl, rk


def axis_p(work: Path, device: str, repeats: int) -> None:
    print("P (N = 11,000 images, 8 iterations):")
    sizes, rks = [], []
    original = compute.run.train.build_model
    try:
        for h in (100, 400, 1600):
            compute.run.train.build_model = _with_width(h)
            P = sum(p.numel() for p in WideMLP((1, 28, 28), 10, h).parameters())
            print(f"  h = {h:5d}, P = {P:,}")
            cfg = RunConfig(**BASE, train_size=11_000, iters=8, device=device)
            _, rk = _per_iteration(cfg, work, f"p{h}", repeats)
            sizes.append(P)
            rks.append(rk)
    finally:
        compute.run.train.build_model = original
    print(f"  log-log slope of s/iteration vs P: {_slope(sizes, rks):.2f}")


def axis_n(work: Path, device: str, repeats: int) -> None:
    print("N (MNIST-FC, 84,060 parameters, 12 iterations):")
    sizes, rks = [], []
    for n in (5_500, 16_500, 55_000):
        print(f"  N = {n:,}")
        cfg = RunConfig(**BASE, train_size=n, iters=12, device=device)
        _, rk = _per_iteration(cfg, work, f"n{n}", repeats)
        sizes.append(n)
        rks.append(rk)
    print(f"  log-log slope of s/iteration vs N: {_slope(sizes, rks):.2f}")


def axis_t(work: Path, device: str) -> None:
    print("T (MNIST-FC on 5,500 images, stride 1):")
    sizes, walls, analyses = [], [], []
    for T in (50, 200, 800):
        cfg = RunConfig(**BASE, train_size=5_500, iters=T, device=device)
        t0 = time.perf_counter()
        path = run_lca(cfg, work / f"t{T}.h5", progress=False)
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        summarize(path)
        ana = time.perf_counter() - t0
        mb = path.stat().st_size / 1e6
        print(f"  T = {T:4d}: run {wall:7.1f} s ({wall / T:.3f} s/it), bundle {mb:7.1f} MB "
              f"({1e3 * mb / T:.0f} kB/it), summary {ana:5.2f} s", flush=True)
        sizes.append(T)
        walls.append(wall)
        analyses.append(ana)
    print(f"  log-log slopes vs T: run time {_slope(sizes, walls):.2f}, "
          f"summary time {_slope(sizes, analyses):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--axes", default="P,N,T")
    a = ap.parse_args()
    dev = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    print(f"# bench_scaling: device {dev}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    axes = set(a.axes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "P" in axes:
            axis_p(work, a.device, a.repeats)
        if "N" in axes:
            axis_n(work, a.device, a.repeats)
        if "T" in axes:
            axis_t(work, a.device)


if __name__ == "__main__":
    main()
