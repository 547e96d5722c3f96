"""Benchmark ``lcaviz.analysis.summarize`` on a big synthetic bundle.

Default: a (1000, 1,000,000) float32 LCA matrix (4 GB) with per-class data, written with the
synthetic generator, then summarised in a fresh child process so that the reported peak RSS
(``ru_maxrss``) is the analysis alone. Targets: < 60 s and < 1 GB on 2 cores.

    python benchmarks/bench_analysis.py                 # temp dir, deleted afterwards
    python benchmarks/bench_analysis.py --path big.h5   # reuse or keep a bundle
    python benchmarks/bench_analysis.py --cold          # drop the file from the page cache first
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_rss_mib() -> float:
    """This process's peak RSS. Not ``ru_maxrss``: Linux carries the parent's high-water mark
    across fork+exec into it, so a child started by a parent that had just written a big bundle
    reported the parent's peak (718 MiB) instead of its own (388 MiB). VmHWM belongs to the
    process's own address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB → MiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(path: str) -> None:
    """Summarise ``path`` and print timing and peak RSS as JSON (runs in a fresh process)."""
    from lcaviz.analysis import summarize

    start = time.perf_counter()
    s = summarize(path)
    wall = time.perf_counter() - start
    rss = _peak_rss_mib()
    print(json.dumps({"wall_s": wall, "peak_rss_mib": rss,
                      "pct_help": s["helping"]["pct_help"],
                      "weibull_k_help": s["weibull"]["help"]["k"],
                      "tail_ratio": s["tail"]["ratio"],
                      "sync_p": (s["synchrony"] or {}).get("p_value")}))


def _drop_page_cache(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages (no root needed for clean pages)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", type=Path, help="bundle to use (generated if missing; kept)")
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--params", type=int, default=1_000_000)
    ap.add_argument("--cold", action="store_true", help="evict the file from the page cache")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return 0

    from lcaviz.bundle.synthetic import layers_for_params, write_synthetic_bundle

    tmp = None if args.path else Path(tempfile.mkdtemp(prefix="lca-bench-"))
    path = args.path or tmp / "bench.h5"
    try:
        if not path.exists():
            need = 1.1 * 4 * args.iters * args.params + 2**28  # lca + cumsum + the rest
            free = shutil.disk_usage(path.parent).free
            if free < need:
                print(f"not enough disk: need {need / 2**30:.1f} GiB, "
                      f"have {free / 2**30:.1f} GiB in {path.parent}")
                return 1
            print(f"writing {path}: T = {args.iters}, P ≈ {args.params:,} ...", flush=True)
            start = time.perf_counter()
            write_synthetic_bundle(path, n_iters=args.iters, sync_peaks=10,
                                   layers=layers_for_params(args.params), progress=True)
            print(f"  written in {time.perf_counter() - start:.1f} s, "
                  f"{path.stat().st_size / 2**30:.2f} GiB", flush=True)
        if args.cold:
            _drop_page_cache(path)
        out = subprocess.run([sys.executable, __file__, "--child", str(path)], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
        res = json.loads(out.strip().splitlines()[-1])
        print(f"summarize: {res['wall_s']:.1f} s wall, peak RSS {res['peak_rss_mib']:.0f} MiB "
              f"({os.cpu_count()} CPUs, {'cold' if args.cold else 'warm'} page cache)")
        print(f"  pct_help {res['pct_help']:.2f}, Weibull k (help) {res['weibull_k_help']:.3f}, "
              f"tail ratio {res['tail_ratio']:.2f}, sync p {res['sync_p']}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
