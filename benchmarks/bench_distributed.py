"""Speed-up of lca-run under torchrun vs the number of processes.

    python benchmarks/bench_distributed.py [--nprocs 1 2] [--iters 10] [--threads-total 2]

Each configuration runs the same MNIST-FC rk4 job (55,000 images, chunk size 5,000) with N
processes (gloo on CPU, nccl with --device cuda) and ``threads_total / N`` torch threads each,
and reports the median seconds per iteration from the bundle's timing. On a 2-core machine this
measures how well sharding uses the cores, not a multi-node speed-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(n: int, iters: int, threads: int, device: str, work: Path) -> float:
    out = work / f"n{n}.h5"
    args = ["-m", "compute.run.cli", "--net", "mnist_fc", "--dataset", "mnist",
            "--iters", str(iters),
            "--chunk-size", "5000", "--no-progress", "--device", device, "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    if n == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [shutil.which("torchrun"), f"--nproc-per-node={n}", "--master-addr=127.0.0.1",
               f"--master-port={_port()}", *args]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    with h5py.File(out, "r") as f:
        return float(np.median(f["timing/seconds"][1:]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads-total", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        print("processes  threads/proc  s/iteration  speed-up")
        for n in a.nprocs:
            threads = max(1, a.threads_total // n)
            s = run(n, a.iters, threads, a.device, Path(tmp))
            base = base or s
            print(f"{n:9d}  {threads:12d}  {s:11.3f}  {base / s:8.2f}")


if __name__ == "__main__":
    main()
