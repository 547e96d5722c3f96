"""Engine cost, measured side by side in one process.

    python benchmarks/bench_engine.py [--net mnist_fc] [--dataset mnist] [--iters 20]
                                      [--device cpu] [--repeats 5]
                                      [--skip perclass,naive,adaptive] [--train-size N]
                                      [--rgb32] [--data-root DIR] [--memory-format channels_last]
                                      [--compile]

Prints (medians over repeats):
  * floor: seconds of 2 full-dataset gradients (what rk4 with endpoint reuse must pay);
  * rk4 iteration of lca-run (train step + LCA + bundle write, flushes included) and its
    ratio to the floor;
  * per-class overhead: rk4 with per-class LCA / without;
  * naive baseline: θ_t written to disk every iteration, then a second pass with 3 gradients
    per iteration and no reuse; speed ratio and disk bytes vs ours;
  * adaptive: splits per iteration, time and residual for tolerances 1e-2 … 1e-5.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from compute.lca.params import flat_params
from compute.run.config import RunConfig
from compute.run.train import build_run, run_lca, train_step
from lcaviz.bundle.writer import BundleWriter


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def floor_seconds(cfg: RunConfig, repeats: int) -> float:
    """Median time of two full-dataset gradient evaluations."""
    run = build_run(cfg)
    obj, theta = run.train_lca.objective, flat_params(run.model)
    obj.evaluate(theta)  # warm-up
    times = []
    for _ in range(repeats):
        _sync(cfg.device)
        t0 = time.perf_counter()
        obj.evaluate(theta)
        obj.evaluate(theta)
        _sync(cfg.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def lca_run_seconds(cfg: RunConfig, workdir: Path, name: str) -> tuple[float, dict]:
    """Median seconds per iteration of a real lca-run, bundle writes included.

    The bundle's ``timing/seconds`` stops before the iteration's record is handed to the
    writer, so the writer's time (appends and the flushes they trigger) is measured here and
    its mean per iteration added.
    """
    appends: list[float] = []
    original = BundleWriter.append

    def timed_append(self, rec):
        t0 = time.perf_counter()
        original(self, rec)
        appends.append(time.perf_counter() - t0)

    BundleWriter.append = timed_append
    try:
        out = run_lca(cfg, workdir / f"{name}.h5", progress=False)
    finally:
        BundleWriter.append = original
    with h5py.File(out, "r") as f:
        sec = f["timing/seconds"][1:]  # skip the first (warm-up) iteration
        info = {"residual_max": float(np.abs(f["lca_residual"][:]).max()),
                "splits_mean": float(f["splits"][:].mean()),
                "bytes": out.stat().st_size, "write_s": float(np.mean(appends[1:]))}
    return float(np.median(sec)) + info["write_s"], info


def naive_seconds(cfg: RunConfig, workdir: Path) -> tuple[float, int]:
    """Store θ_t every iteration, then a second pass with 3 gradients per iteration."""
    run = build_run(cfg)
    obj = run.train_lca.objective
    t0 = time.perf_counter()
    np.save(workdir / "theta_0.npy", flat_params(run.model).cpu().numpy())
    for t in range(cfg.iters):
        train_step(run, t)
        np.save(workdir / f"theta_{t + 1}.npy", flat_params(run.model).cpu().numpy())
    disk = sum(p.stat().st_size for p in workdir.glob("theta_*.npy"))
    dev = run.layer_idx.device
    for t in range(cfg.iters):
        a = torch.from_numpy(np.load(workdir / f"theta_{t}.npy")).to(dev)
        b = torch.from_numpy(np.load(workdir / f"theta_{t + 1}.npy")).to(dev)
        g = [obj.evaluate(a + s * (b - a)).grad for s in (0.0, 0.5, 1.0)]
        lca = (b - a) * (g[0] + 4 * g[1] + g[2]) / 6
        float(lca.sum())
    _sync(cfg.device)
    return (time.perf_counter() - t0) / cfg.iters, disk


def add_run_args(ap: argparse.ArgumentParser) -> None:
    """The run settings the engine benchmarks share (see :func:`run_config`)."""
    ap.add_argument("--net", default="mnist_fc")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--rgb32", action="store_true")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--train-size", type=int, default=None)
    ap.add_argument("--memory-format", default="contiguous")
    ap.add_argument("--compile", action="store_true", help="torch.compile the gradient passes")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk-size", type=int, default=5000)


def run_config(a: argparse.Namespace, **overrides) -> RunConfig:
    """The benchmarked run: SGD lr 0.01 momentum 0.9, batch 250, no checkpoints."""
    settings = dict(net=a.net, dataset=a.dataset, rgb32=a.rgb32, data_root=a.data_root,
                    train_size=a.train_size, memory_format=a.memory_format, compile=a.compile,
                    iters=a.iters, device=a.device, chunk_size=a.chunk_size, lr=0.01,
                    momentum=0.9, batch_size=250, checkpoint_every=10**6)
    return RunConfig(**{**settings, **overrides})


def main() -> None:
    ap = argparse.ArgumentParser()
    add_run_args(ap)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip", default="")
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    base = run_config(a)
    dev = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    print(f"# bench_engine: {a.net} on {a.dataset} (N={a.train_size or 'all'}, "
          f"{a.memory_format}{', compiled' if a.compile else ''}), {a.iters} iterations, "
          f"device {dev}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain = RunConfig(**{**vars(base), "per_class": False})
        fl = floor_seconds(plain, a.repeats)
        rk, info = lca_run_seconds(plain, work, "rk4")
        print(f"floor (2 full gradients)      {fl:8.3f} s")
        print(f"rk4 iteration (lca-run)       {rk:8.3f} s   ratio to floor {rk / fl:5.2f}")
        if "perclass" not in skip:
            pc, _ = lca_run_seconds(base, work, "rk4_class")
            print(f"rk4 + per-class iteration     {pc:8.3f} s   per-class overhead "
                  f"{pc / rk:5.2f}x")
        if "naive" not in skip:
            (work / "naive").mkdir()
            nv, disk = naive_seconds(plain, work / "naive")
            print(f"naive (disk + 3 grads/iter)   {nv:8.3f} s   ours is {nv / rk:5.2f}x faster; "
                  f"disk {disk / 1e6:.1f} MB vs bundle {info['bytes'] / 1e6:.1f} MB "
                  f"(~{disk / a.iters / 1e3:.0f} kB/iter of theta)")
        if "adaptive" not in skip:
            print("adaptive: tol   splits/iter  s/iter   max|residual|")
            for tol in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
                cfg = RunConfig(**{**vars(plain), "method": "adaptive", "tol": tol})
                s, inf = lca_run_seconds(cfg, work, f"ad{tol}")
                print(f"          {tol:6.0e}  {inf['splits_mean']:8.2f}  {s:8.3f}  "
                      f"{inf['residual_max']:.2e}")


if __name__ == "__main__":
    main()
