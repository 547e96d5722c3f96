"""The default run vs the old default vs the plain floor, interleaved in one process.

    python benchmarks/bench_defaults.py [--net mnist_fc] [--dataset mnist] [--iters 12]
        [--rounds 3] [--old-chunk 1000] [--floor-chunks 55000,11000,5000] [--bn-group N]
        [--no-per-class] [--train-size N] [--rgb32] [--data-root DIR] [--device cpu]
        [--memory]

Each round measures, in a rotated order so that a noisy neighbour hits every column alike:

* floor: two full-dataset gradients written plainly (forward, summed cross-entropy / N,
  backward, over chunks of each ``--floor-chunks`` size; BatchNorm in training mode with
  momentum 0), best chunk of the round;
* new: an rk4 iteration of ``lca-run`` with today's defaults (``--chunk-size auto``,
  ``--memory-format auto``; ``--bn-group`` as given) — the README's command on MNIST-FC;
* old: the same with ``--chunk-size OLD_CHUNK`` in NCHW (for a BatchNorm net also
  ``--bn-group OLD_CHUNK``: one group per pass, exactly the evaluation before issue 25).

The rk4 seconds are the bundle's ``timing/seconds`` (median, the first iteration left out) plus
the writer's mean append time, as in ``bench_engine.py``. Prints each round's ratios and their
medians. ``--memory`` also runs the new default's first evaluation in a child process and
prints its peak RSS growth against the chunk's budget and estimate.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import torch
from bench_engine import lca_run_seconds
from torch.nn import functional as F

from compute.config import RunConfig
from compute.train import build_run

BN_NETS = ("resnet20",)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_floor(cfg: RunConfig, chunks: list[int], repeats: int = 2) -> dict[int, float]:
    """Seconds of two plain full-dataset gradients per chunk size (best of ``repeats``)."""
    run = build_run(dataclasses.replace(cfg, per_class=False))
    model = copy.deepcopy(run.model).train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0
    x, y, n = run.x, run.y, len(run.y)
    out = {}
    for c in chunks:
        c = min(c, n)
        best = float("inf")
        for _ in range(repeats + 1):  # the first is a warm-up
            _sync(cfg.device)
            t0 = time.perf_counter()
            for _ in range(2):
                model.zero_grad(set_to_none=True)
                for s in range(0, n, c):
                    (F.cross_entropy(model(x[s:s + c]), y[s:s + c], reduction="sum") / n
                     ).backward()
            _sync(cfg.device)
            best = min(best, time.perf_counter() - t0)
        out[c] = best
    return out


def configs(a: argparse.Namespace) -> dict[str, RunConfig]:
    """The README's run (SGD lr 0.01 momentum 0.9, batch 250, rk4, seed 0) in two settings."""
    base = dict(net=a.net, dataset=a.dataset, rgb32=a.rgb32, data_root=a.data_root,
                train_size=a.train_size, iters=a.iters, device=a.device, optimizer="sgd",
                lr=0.01, momentum=0.9, batch_size=250, method="rk4", seed=0,
                per_class=a.per_class, checkpoint_every=10**6, checkpoint_seconds=1e9)
    bn = a.net in BN_NETS
    new = RunConfig(**base, bn_group=a.bn_group if bn else None)
    old = RunConfig(**base, chunk_size=a.old_chunk, memory_format="contiguous",
                    bn_group=(a.bn_group or a.old_chunk) if bn else None)
    if bn and old.chunk_size % old.bn_group:
        old = dataclasses.replace(old, chunk_size=old.bn_group)
    out = {"new": new, "old": old}
    if a.split:  # the new chunking alone, in NCHW: separates what layout and chunking buy
        out["nchw"] = dataclasses.replace(new, memory_format="contiguous")
    return out


def chunk_record(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["config"])
    return {"chunks": cfg.get("chunks"), "layout": cfg.get("memory_format_choice")}


def memory_check(cfg: RunConfig) -> dict:
    """Peak RSS growth of the first evaluation of ``cfg``'s objective, in a child process."""
    code = (
        "import json, resource, sys\n"
        "from compute.config import RunConfig\n"
        "from compute.train import build_run\n"
        "from compute.params import flat_params\n"
        "cfg = RunConfig.from_dict(json.loads(sys.argv[1]))\n"
        "run = build_run(cfg); obj = run.train_lca.objective; theta = flat_params(run.model)\n"
        "import torch\n"
        "cuda = theta.is_cuda\n"
        "if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()\n"
        "base = torch.cuda.memory_allocated() if cuda else 0\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "obj.evaluate(theta)\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "dev = torch.cuda.max_memory_allocated() - base if cuda else None\n"
        "print(json.dumps({'rss_before': before, 'rss_peak': peak, 'device_peak': dev,\n"
        "                  'info': obj.chunk_info}))\n")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(cfg.to_dict())],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="mnist_fc")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--rgb32", action="store_true")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--train-size", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--old-chunk", type=int, default=1000)
    ap.add_argument("--chunk-size", type=int, default=None, help="alias of --old-chunk")
    ap.add_argument("--floor-chunks", default="55000,11000,5000")
    ap.add_argument("--bn-group", type=int, default=None)
    ap.add_argument("--no-per-class", dest="per_class", action="store_false")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--split", action="store_true",
                    help="also the new chunking in NCHW (what layout vs chunking buy)")
    a = ap.parse_args()
    if a.chunk_size is not None:
        a.old_chunk = a.chunk_size
    floor_chunks = [int(c) for c in a.floor_chunks.split(",")]
    cfgs = configs(a)
    dev = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    print(f"# bench_defaults: {a.net} on {a.dataset} (N={a.train_size or 'all'}), rk4, "
          f"per-class {'on' if a.per_class else 'off'}, {a.iters} iterations x {a.rounds} "
          f"rounds, device {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    old, group = cfgs["old"], f" --bn-group {a.bn_group}" if a.bn_group else ""
    old_group = f" --bn-group {old.bn_group}" if old.bn_group else ""
    print(f"# old: --chunk-size {old.chunk_size} --memory-format contiguous{old_group}; "
          f"new: the defaults{group}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for r in range(a.rounds):
            order = ["floor", *cfgs]
            order = order[r % len(order):] + order[:r % len(order)]
            got: dict = {}
            for what in order:
                if what == "floor":
                    got["floor_by_chunk"] = plain_floor(cfgs["new"], floor_chunks)
                    got["floor"] = min(got["floor_by_chunk"].values())
                else:
                    sec, _ = lca_run_seconds(cfgs[what], work, f"{what}_{r}")
                    got[what] = sec
                    got[f"{what}_record"] = chunk_record(work / f"{what}_{r}.h5")
            rows.append(got)
            fl = ", ".join(f"{c}: {s:.3f}" for c, s in got["floor_by_chunk"].items())
            runs = "; ".join(f"{k} {got[k]:.3f} s = {got[k] / got['floor']:.2f}x" for k in cfgs)
            print(f"round {r}: floor {got['floor']:.3f} s (by chunk {fl}); {runs}", flush=True)
    med = {k: statistics.median(row[k] for row in rows) for k in ("floor", *cfgs)}
    ratio = {k: statistics.median(row[k] / row["floor"] for row in rows) for k in cfgs}
    spread = {k: (min(row[k] / row["floor"] for row in rows),
                  max(row[k] / row["floor"] for row in rows)) for k in cfgs}
    print(f"floor (2 plain gradients, best chunk)  {med['floor']:8.3f} s")
    for k in cfgs:
        print(f"rk4 iteration, {k:<3} defaults          {med[k]:8.3f} s   ratio to floor "
              f"{ratio[k]:5.2f} (rounds {spread[k][0]:.2f}-{spread[k][1]:.2f})")
    speedup = statistics.median(r["old"] / r["new"] for r in rows)
    print(f"old / new (median of rounds)           {speedup:5.2f}")
    for k in cfgs:
        print(f"{k} chunking:", json.dumps(rows[-1][f"{k}_record"]))
    if a.memory:
        m = memory_check(cfgs["new"])
        info = m["info"]
        grow = max(0, m["rss_peak"] - m["rss_before"])
        print(f"memory: first evaluation raised peak RSS by {grow / 2**20:.1f} MiB "
              f"(estimate {info['estimated_bytes'] / 2**20:.1f} MiB, budget "
              f"{info['budget_bytes'] / 2**20:.0f} MiB, chunk {info['chunk_size']}); "
              f"peak RSS {m['rss_peak'] / 2**20:.0f} MiB")
        if m["device_peak"] is not None:
            print(f"memory: first evaluation's peak device memory {m['device_peak'] / 2**20:.0f} "
                  f"MiB (torch.cuda.max_memory_allocated) vs budget "
                  f"{info['budget_bytes'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
