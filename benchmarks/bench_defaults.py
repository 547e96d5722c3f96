"""The default run vs the old default vs the plain floor, interleaved iteration by iteration.

    python benchmarks/bench_defaults.py [--net mnist_fc] [--dataset mnist] [--iters 12]
        [--old-chunk 1000] [--floor-chunks 55000,11000,5000] [--bn-group N] [--split]
        [--no-per-class] [--train-size N] [--rgb32] [--data-root DIR] [--device cpu]
        [--memory] [--memory-budgets default,64] [--new-chunk N] [--compile] [--sync-copies]

Three things are timed in turn, the order rotating every round so that a noisy neighbour on a
shared machine hits each alike, and each round's ratios are taken within the round:

* floor: two full-dataset gradients written plainly (forward, summed cross-entropy / N,
  backward, BatchNorm in training mode with momentum 0) at the fastest of ``--floor-chunks``
  (picked from three interleaved warm-up measurements of each);
* new: one rk4 iteration of a real ``lca-run`` (``run_lca``: train step, LCA, record, bundle
  append) with today's defaults, ``--chunk-size auto`` and ``--memory-format auto``
  (``--bn-group`` as given) -- the README's command on MNIST-FC;
* old: the same run with ``--chunk-size OLD_CHUNK`` in NCHW (a BatchNorm net also gets
  ``--bn-group OLD_CHUNK``: one group per pass, the evaluation before issue 25);
* with ``--sync-copies``, "sync": the new settings with the record's host copies made
  synchronously (on CUDA the defaults overlap them with the next evaluation; on a CPU both
  are synchronous);
* with ``--compile``, "comp": the new settings plus ``--compile``; ``--new-chunk N`` gives the
  new run ``--chunk-size N`` instead of auto (several ghost BatchNorm groups per pass).

Each run lives in a thread that pauses after every bundle append, so exactly one thing runs at
a time; its iteration time is the bundle's ``timing/seconds`` plus the append. ``--memory``
then runs the new default's first evaluation in a child process and prints its peak RSS growth
(and on CUDA ``torch.cuda.max_memory_allocated``) against the chunk's budget and estimate.
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
import threading
import time
from pathlib import Path

import h5py
import torch
from torch.nn import functional as F

import compute.run.build as build
from compute.lca.host_copy import DeferredWriter, HostCopies
from compute.run.config import RunConfig
from compute.run.train import build_run, run_lca
from lcaviz.bundle.writer import BundleWriter

BN_NETS = ("resnet20",)
_paced = threading.local()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class PlainFloor:
    """Two plain full-dataset gradients of the run's model, at a chosen chunk size."""

    def __init__(self, cfg: RunConfig):
        run = build_run(dataclasses.replace(cfg, per_class=False))
        self.model = copy.deepcopy(run.model).train()
        for m in self.model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.0
        self.x, self.y, self.device = run.x, run.y, cfg.device

    def seconds(self, chunk: int) -> tuple[float, float]:
        """(wall, process CPU) seconds of the two gradients."""
        n, c = len(self.y), min(chunk, len(self.y))
        _sync(self.device)
        t0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(2):
            self.model.zero_grad(set_to_none=True)
            for s in range(0, n, c):
                (F.cross_entropy(self.model(self.x[s:s + c]), self.y[s:s + c], reduction="sum")
                 / n).backward()
        _sync(self.device)
        return time.perf_counter() - t0, time.process_time() - cpu0


class PacedRun:
    """``run_lca`` in a thread that stops after each iteration until :meth:`step` is called."""

    def __init__(self, cfg: RunConfig, path: Path, sync_copies: bool = False):
        self.cfg, self.path, self.seconds, self.sync_copies = cfg, path, [], sync_copies
        self.go, self.done = threading.Semaphore(0), threading.Semaphore(0)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        _paced.run, _paced.sync_copies = self, self.sync_copies
        try:
            run_lca(self.cfg, self.path, progress=False)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
        self.done.release()

    def start(self) -> None:
        """Set up, evaluate θ_0 and run iteration 0 (the warm-up), then pause."""
        self.thread.start()
        self._wait()

    def step(self) -> tuple[float, float]:
        """One more iteration: (wall seconds of the loop + bundle append, process CPU
        seconds from resuming the thread to its next pause; nothing else runs meanwhile)."""
        cpu0 = time.process_time()
        self.go.release()
        self._wait()
        return self.seconds[-1], time.process_time() - cpu0

    def finish(self) -> None:
        self.go.release()
        self.thread.join()

    def _wait(self) -> None:
        self.done.acquire()
        if self.error is not None:
            raise self.error


def _pause(seconds: float) -> None:
    run = getattr(_paced, "run", None)
    if run is not None:
        run.seconds.append(seconds)
        run.done.release()
        run.go.acquire()


def _install_pause() -> None:
    """Pause a run's thread after each iteration's append. On CUDA the loop's writer is a
    :class:`DeferredWriter` (which appends the previous record, once its host copies landed,
    when it is handed the next): the pause is then after the deferred append."""
    original, original_deferred = BundleWriter.append, DeferredWriter.append

    def paced_append(self, rec):
        t0 = time.perf_counter()
        original(self, rec)
        if not getattr(_paced, "deferred", False):
            _pause(rec.seconds + time.perf_counter() - t0)

    def paced_deferred(self, rec):
        _paced.deferred = True
        t0 = time.perf_counter()
        original_deferred(self, rec)  # waits for the previous record's copies, appends it
        _pause(rec.seconds + time.perf_counter() - t0)

    def host_copies(device):  # the "sync" column: this thread's run copies synchronously
        return HostCopies("cpu" if getattr(_paced, "sync_copies", False) else device)

    BundleWriter.append, DeferredWriter.append = paced_append, paced_deferred
    build.HostCopies = host_copies


def configs(a: argparse.Namespace) -> dict[str, RunConfig]:
    """The README's run (SGD lr 0.01 momentum 0.9, batch 250, rk4, seed 0) in two settings."""
    base = dict(net=a.net, dataset=a.dataset, rgb32=a.rgb32, data_root=a.data_root,
                train_size=a.train_size, iters=a.iters, device=a.device, optimizer="sgd",
                lr=0.01, momentum=0.9, batch_size=250, method="rk4", seed=0,
                per_class=a.per_class, checkpoint_every=10**6, checkpoint_seconds=1e9)
    bn = a.net in BN_NETS
    new = RunConfig(**base, bn_group=a.bn_group if bn else None,
                    **({"chunk_size": a.new_chunk} if a.new_chunk else {}))
    old = RunConfig(**base, chunk_size=a.old_chunk, memory_format="contiguous",
                    bn_group=(a.bn_group or a.old_chunk) if bn else None)
    if bn and old.chunk_size % old.bn_group:
        old = dataclasses.replace(old, chunk_size=old.bn_group)
    out = {"new": new, "old": old}
    if a.split:  # the new chunking alone, in NCHW: separates what layout and chunking buy
        out["nchw"] = dataclasses.replace(new, memory_format="contiguous")
    if a.sync_copies:  # the new settings with the record's host copies made synchronously
        out["sync"] = new
    if a.compile:  # the new settings with --compile (opt-in): does compiling pay here?
        out["comp"] = dataclasses.replace(new, compile=True)
    return out


def chunk_record(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["config"])
    return {"chunks": cfg.get("chunks"), "layout": cfg.get("memory_format_choice"),
            "host_copy": cfg.get("host_copy")}


def memory_check(cfg: RunConfig, budget: int | None = None) -> dict:
    """Peak RSS growth of the first evaluation of ``cfg``'s objective, in a child process
    (with the objective's memory budget set to ``budget`` bytes; None: the default).

    Linux: the child resets its own high-water mark (``/proc/self/clear_refs``) after setting
    up, so ``VmHWM`` afterwards is the evaluation's peak (``ru_maxrss`` would carry the
    parent's over fork+exec)."""
    code = (
        "import json, sys\n"
        "from compute.run.config import RunConfig\n"
        "from compute.run.train import build_run\n"
        "from compute.lca.params import flat_params\n"
        "cfg = RunConfig.from_dict(json.loads(sys.argv[1]))\n"
        "run = build_run(cfg); obj = run.train_lca.objective; theta = flat_params(run.model)\n"
        "obj.memory_budget = json.loads(sys.argv[2])\n"
        "import torch\n"
        "cuda = theta.is_cuda\n"
        "if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()\n"
        "base = torch.cuda.memory_allocated() if cuda else 0\n"
        "def status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key): return int(line.split()[1]) * 1024\n"
        "open('/proc/self/clear_refs', 'w').write('5')  # VmHWM := VmRSS from here on\n"
        "before = status('VmRSS:')\n"
        "obj.evaluate(theta)\n"
        "peak = status('VmHWM:')\n"
        "dev = torch.cuda.max_memory_allocated() - base if cuda else None\n"
        "print(json.dumps({'rss_before': before, 'rss_peak': peak, 'device_peak': dev,\n"
        "                  'info': obj.chunk_info}))\n")
    settings = dataclasses.replace(cfg, iters=max(cfg.iters, 1)).to_dict()
    p = subprocess.run([sys.executable, "-c", code, json.dumps(settings), json.dumps(budget)],
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"memory check failed: {p.stderr[-2000:]}")
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
    ap.add_argument("--old-chunk", type=int, default=1000)
    ap.add_argument("--chunk-size", type=int, default=None, help="alias of --old-chunk")
    ap.add_argument("--floor-chunks", default="55000,11000,5000")
    ap.add_argument("--bn-group", type=int, default=None)
    ap.add_argument("--no-per-class", dest="per_class", action="store_false")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--memory-budgets", default="default,64", metavar="MIB,...",
                    help="--memory: the budgets to check ('default' or MiB)")
    ap.add_argument("--new-chunk", type=int, default=None,
                    help="the new run's --chunk-size instead of auto (e.g. several ghost groups "
                         "per pass)")
    ap.add_argument("--sync-copies", action="store_true",
                    help="also the new settings with synchronous host copies of the record "
                         "(column 'sync'; on CUDA the defaults overlap them)")
    ap.add_argument("--compile", action="store_true",
                    help="also the new settings with --compile (column 'comp')")
    ap.add_argument("--split", action="store_true",
                    help="also the new chunking in NCHW (what layout vs chunking buy)")
    a = ap.parse_args()
    if a.chunk_size is not None:
        a.old_chunk = a.chunk_size
    floor_chunks = [int(c) for c in a.floor_chunks.split(",")]
    cfgs = configs(a)
    dev = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    print(f"# bench_defaults: {a.net} on {a.dataset} (N={a.train_size or 'all'}), rk4, "
          f"per-class {'on' if a.per_class else 'off'}, {a.iters} interleaved rounds, device "
          f"{dev}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    old, group = cfgs["old"], f" --bn-group {a.bn_group}" if a.bn_group else ""
    old_group = f" --bn-group {old.bn_group}" if old.bn_group else ""
    new_chunk = f" --chunk-size {a.new_chunk}" if a.new_chunk else ""
    print(f"# old: --chunk-size {old.chunk_size} --memory-format contiguous{old_group}; "
          f"new: the defaults{group}{new_chunk}{'; comp: new + --compile' if a.compile else ''}"
          f"{'; sync: new with synchronous host copies' if a.sync_copies else ''}")
    if a.iters > 0:
        timings(a, cfgs, floor_chunks)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the child's auto chunk sees the device's free memory
    for budget in (a.memory_budgets.split(",") if a.memory else []):
        memory_report(cfgs["new"], budget)


def timings(a: argparse.Namespace, cfgs: dict[str, RunConfig], floor_chunks: list[int]) -> None:
    """The interleaved rounds and their summary."""
    _install_pause()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        floor = PlainFloor(cfgs["new"])
        warm = {c: [floor.seconds(c)[1] for _ in range(1)] for c in floor_chunks}
        for _ in range(2):
            for c in floor_chunks:
                warm[c].append(floor.seconds(c)[1])  # CPU seconds: robust to a busy machine
        best = min(floor_chunks, key=lambda c: statistics.median(warm[c]))
        fl = ", ".join(f"{c}: {statistics.median(v):.3f}" for c, v in warm.items())
        print(f"floor warm-up, median CPU s by chunk: {fl}; using chunk {best}", flush=True)
        runs = {k: PacedRun(dataclasses.replace(c, iters=a.iters + 1), Path(tmp) / f"{k}.h5",
                            sync_copies=k == "sync") for k, c in cfgs.items()}
        for r in runs.values():
            r.start()
        for i in range(a.iters):
            order = ["floor", *cfgs]
            order = order[i % len(order):] + order[:i % len(order)]
            both = {k: floor.seconds(best) if k == "floor" else runs[k].step() for k in order}
            got = {k: v[0] for k, v in both.items()} | {f"{k}_cpu": v[1] for k, v in both.items()}
            rows.append(got)
            line = "; ".join(f"{k} {got[k]:.3f} s = {got[k] / got['floor']:.2f}x (CPU "
                             f"{got[k + '_cpu'] / got['floor_cpu']:.2f}x)" for k in cfgs)
            print(f"round {i}: floor {got['floor']:.3f} s (CPU {got['floor_cpu']:.3f}); {line}",
                  flush=True)
        for k, r in runs.items():
            r.finish()
            rows[-1][f"{k}_record"] = chunk_record(r.path)
    for unit, sfx in (("wall", ""), ("CPU", "_cpu")):
        med = {k: statistics.median(row[k + sfx] for row in rows) for k in ("floor", *cfgs)}
        ratio = {k: [row[k + sfx] / row["floor" + sfx] for row in rows] for k in cfgs}
        print(f"[{unit}] floor (2 plain gradients, chunk {best})  {med['floor']:8.3f} s")
        for k in cfgs:
            q = statistics.quantiles(ratio[k], n=4) if len(ratio[k]) > 1 else ratio[k] * 3
            print(f"[{unit}] rk4 iteration, {k:<4} {med[k]:8.3f} s   ratio to floor "
                  f"{statistics.median(ratio[k]):5.2f} (quartiles {q[0]:.2f}-{q[2]:.2f})")
        speedup = statistics.median(r["old" + sfx] / r["new" + sfx] for r in rows)
        print(f"[{unit}] old / new (median of rounds) {speedup:5.2f}")
    for k in cfgs:
        print(f"{k} chunking:", json.dumps(rows[-1][f"{k}_record"]))


def memory_report(cfg: RunConfig, budget: str) -> None:
    """Print :func:`memory_check` at ``budget`` ("default" or MiB)."""
    m = memory_check(cfg, None if budget == "default" else int(budget) * 2**20)
    info = m["info"]
    grow = max(0, m["rss_peak"] - m["rss_before"])
    print(f"memory: first evaluation raised peak RSS by {grow / 2**20:.1f} MiB "
          f"(estimate {info['estimated_bytes'] / 2**20:.1f} MiB, budget "
          f"{info['budget_bytes'] / 2**20:.0f} MiB, chunk {info['chunk_size']}, "
          f"{info['chunks']} chunks); peak RSS {m['rss_peak'] / 2**20:.0f} MiB", flush=True)
    if m["device_peak"] is not None:
        print(f"memory: first evaluation's peak device memory {m['device_peak'] / 2**20:.0f} "
              f"MiB (torch.cuda.max_memory_allocated) vs budget "
              f"{info['budget_bytes'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
