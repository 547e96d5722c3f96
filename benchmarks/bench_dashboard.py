"""Server-side timings of the dashboard, measured by calling its callback functions directly.

    python benchmarks/bench_dashboard.py [--bundle-gb 1.0] [--runs 50] [--workdir DIR] [--keep]

Measures (targets in brackets):

* runs page: scanning 50 bundles, cold and unchanged (< 1 s);
* run page first render: every callback the page fires on load (< 1.5 s);
* one block of 8 heatmap frames as the player fetches it (``/lcaviz/frames``) on a 100×784
  layer and on a 1,000,000-parameter layer (block sums), at rows never seen before; the browser
  then scrubs and plays from its cache (benchmarks/bench_player.py times that);
* server RSS after scrubbing the large bundle (< 500 MB for a 5 GB bundle).

The large bundle is synthetic (lcaviz.bundle.synthetic) with a 1000×1000 layer plus an
MNIST-like 100×784 layer; ``--bundle-gb`` sets its size on disk (default 1 GB so it runs on a
small machine; use 5 for the full target). Free disk space is checked first.
"""

from __future__ import annotations

import argparse
import gc
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lcaviz.app import create_app, get_state  # noqa: E402
from lcaviz.app.frames import frame_block  # noqa: E402
from lcaviz.app.pages import run_analysis, run_sync, runs  # noqa: E402
from lcaviz.app.pages import run_callbacks as rc  # noqa: E402
from lcaviz.bundle.synthetic import write_synthetic_bundle  # noqa: E402  (small runs)

BIG_LAYERS = (("big", (1000, 1000)), ("fc", (100, 784)), ("out", (10, 100)))
SMALL_LAYERS = (("fc1", (32, 64)), ("fc2", (10, 32)))


def rss_mb() -> float:
    """Current resident set size of this process, MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args, repeat: int = 1) -> tuple[float, object]:
    """Median wall time in seconds of ``fn(*args)`` and its last result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def make_runs(root: Path, n: int) -> Path:
    d = root / "many"
    d.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        p = d / f"run{k:03d}.h5"
        if not p.exists():
            write_synthetic_bundle(p, n_iters=20, layers=SMALL_LAYERS, n_classes=3, seed=k,
                                   per_class=False)
    return d


def make_big(root: Path, gb: float) -> Path:
    d = root / "big"
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"big-{gb:g}gb.h5"
    if p.exists():
        return d
    P = sum(a * b + a for _, (a, b) in BIG_LAYERS)
    iters = max(16, int(gb * 2**30 / (4 * P * 1.02)))
    free = shutil.disk_usage(root).free
    if free < gb * 2**30 * 1.3:
        raise SystemExit(f"not enough disk: {free / 2**30:.1f} GB free, need ~{gb * 1.3:.1f}")
    print(f"writing {p.name}: {P:,} parameters × {iters} iterations …", flush=True)
    t = time.perf_counter()
    # in a child process, so that the writer's memory does not count in the server's RSS
    code = ("import sys; from lcaviz.bundle.synthetic import write_synthetic_bundle as w; "
            f"w({str(p)!r}, n_iters={iters}, layers={BIG_LAYERS!r}, n_classes=10, seed=0, "
            "sync_peaks=3, counters_every=1000)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    print(f"  {p.stat().st_size / 2**30:.2f} GB in {time.perf_counter() - t:.0f} s", flush=True)
    return d


def first_render(state, run_id: str) -> float:
    """Every callback the run page fires when it loads, in sequence (the browser runs them
    in parallel, so this is an upper bound of the server time)."""
    t = time.perf_counter()
    meta = rc.init_run(state, run_id)[0]
    stream, plan = rc.heatmap_stream(state, run_id, meta, 0, "row", 10, "fixed", "auto", None)
    b, _ = state.open(run_id)
    frame_block(b, 0, plan, "row", 10, 0, 4)  # the player's first request
    rc.update_drill(state, run_id, None, {"row": 0}, "row", 10)
    for name in ("layer_bars", "layer_curves", "loss", "residual", "help_time", "help_layer",
                 "help_fraction"):
        rc.simple_view(state, name, run_id, meta, row=0, mode="row", window=10)
    run_sync.peaks_view(state, run_id, 0, 20)
    rc.scan_views(state, None, run_id, meta, "sign", None)  # starts the background job only
    rc.sync_views(state, None, run_id, meta, 0, 20, 2, 1000, None)
    return time.perf_counter() - t


def frame_blocks(state, run_id: str, layer: int, rows: list[int], mode: str = "row",
                 n: int = 8) -> list[float]:
    """Seconds to compute and encode a block of ``n`` frames at each row, as /lcaviz/frames."""
    b, _ = state.open(run_id)
    _, plan = rc.heatmap_stream(state, run_id, rc.run_meta(b), layer, mode, 10, "fixed",
                                "auto", None)
    out = []
    for r in rows:
        t = time.perf_counter()
        head, values = frame_block(b, layer, plan, mode, 10, r, min(r + n, b.n_rows))
        values.astype("<f4").tobytes()  # what the route sends
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle-gb", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the generated bundles")
    args = ap.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="lcaviz-bench-"))
    rows = []
    try:
        many = make_runs(root, args.runs)
        st = get_state(create_app(many))
        cold, out = timed(runs.refresh_runs, st, 0, None)
        warm, _ = timed(runs.refresh_runs, st, 1, out[3], repeat=5)
        rows += [(f"runs page, {args.runs} bundles, first scan", cold, 1.0),
                 (f"runs page, {args.runs} bundles, unchanged (5 s poll)", warm, 1.0)]

        big_dir = make_big(root, args.bundle_gb)
        run_id = next(big_dir.glob("*.h5")).name
        gc.collect()
        rss0 = rss_mb()
        st = get_state(create_app(big_dir))
        rows.append(("run page first render (all load callbacks)", first_render(st, run_id),
                     1.5))
        meta = rc.init_run(st, run_id)[0]
        t = time.perf_counter()
        _, key = run_analysis.scan_status(st, run_id)
        scan_job = st.jobs.wait(tuple(key), 600)
        rows.append((f"value scan + Weibull fits, background job ({scan_job.state})",
                     time.perf_counter() - t, None))
        rc.scan_views(st, None, run_id, meta, "sign", None)
        gc.collect()
        b, _ = st.open(run_id)
        R = b.n_rows
        picks = [R // 7, R // 3, R // 2, (2 * R) // 3, R - 12]
        frame_blocks(st, run_id, 1, [0])  # the layer's first block (colour range, warm-up)
        fc = frame_blocks(st, run_id, 1, picks)
        rows.append(("8 frames, 100×784 layer (median of 5 new blocks)",
                     statistics.median(fc), 0.1))
        frame_blocks(st, run_id, 0, [0])
        big = frame_blocks(st, run_id, 0, [p + 1 for p in picks])
        rows.append(("8 frames, 1,000,000-parameter layer, block sums (median of 5)",
                     statistics.median(big), 0.8))
        jump = frame_blocks(st, run_id, 0, [p + 2 for p in picks], mode="cumulative")
        rows.append(("8 frames, 1 M layer, cumulative, jump to a new row (median)",
                     statistics.median(jump), None))
        rows.append((f"server RSS after scrubbing ({b.n_params:,} params, "
                     f"{(big_dir / run_id).stat().st_size / 2**30:.2f} GB bundle), MB",
                     rss_mb(), 500.0))
        rows.append(("  RSS before opening it, MB", rss0, None))
        rows.append(("  peak RSS of the benchmark process, MB", peak_rss_mb(), None))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"{'measurement':<72} {'value':>10} {'target':>8}")
    for name, v, target in rows:
        unit_mb = "MB" in name
        val = f"{v:.0f}" if unit_mb else f"{v * 1000:.0f} ms"
        tgt = "" if target is None else (f"< {target:.0f}" if unit_mb else
                                         f"< {target * 1000:.0f}")
        flag = "" if target is None or v <= target else "  (over)"
        print(f"{name:<72} {val:>10} {tgt:>8}{flag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
