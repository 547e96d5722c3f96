"""The run page's Examples section in a real headless Chromium, timed from input to repaint.

    python benchmarks/bench_examples.py [--examples 55000] [--iters 60] [--hog 2]

A synthetic bundle with per-example LCA (``--examples`` tracked examples, 28 × 28 thumbnails,
MNIST-FC's three layers' sizes scaled down; the per-parameter part does not matter here) is
served by ``lcaviz serve`` as its own process. Selenium presses the arrow keys on the frame
slider; the page records each ``input`` event's timestamp and the second animation frame after
the Examples section repainted its thumbnails (so the frame holding them has been produced),
and the same for the histogram (drawn after the thumbnails, Plotly). Reported: median and p95
of both, first pass (blocks possibly still on their way: a block of rows is one request) and
warm (every block cached), the number of block requests, one block request's server time, and
Play at 30 frames/s with the section following (frames per second, section repaints per second).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_player import _driver, _pct, _serve, _wait, slider_steps  # noqa: E402

PROBE = """
window.__ex = []; window.__hist = [];
var p = window.lcaviz.players.run, e = window.lcaviz.examples;
p.el.slider.addEventListener('input', function (ev) {
  var t0 = ev.timeStamp, n0 = e.paints, h0 = e.histPaints || 0;
  (function wait() { requestAnimationFrame(function () {
    if (e.paints > n0) requestAnimationFrame(function (ts) { window.__ex.push(ts - t0); });
    else wait(); }); })();
  (function waitHist() { requestAnimationFrame(function () {
    if ((e.histPaints || 0) > h0)
      requestAnimationFrame(function (ts) { window.__hist.push(ts - t0); });
    else waitHist(); }); })();
}, true);
"""
REQUESTS = """
var n = 0; performance.getEntriesByType('resource').forEach(function (r) {
  if (r.name.indexOf('/lcaviz/examples') >= 0) n++; }); return n;
"""


def make_run(tmp: Path, n_examples: int, n_iters: int) -> str:
    from lcaviz.bundle.synthetic import write_synthetic_bundle

    write_synthetic_bundle(tmp / "examples.h5", n_iters=n_iters,
                           layers=(("fc1", (30, 78)), ("fc2", (20, 30)), ("fc3", (10, 20))),
                           n_classes=10, seed=0, per_class=False, examples=n_examples,
                           thumbnail=28, label_noise=0.1)
    return "examples.h5"


def block_seconds(runs: Path, run: str, repeats: int = 5) -> float:
    """Median server time of one block (rows 0..block) computed in this process."""
    from lcaviz.app.examples import examples_block, rows_per_block
    from lcaviz.bundle import RunBundle

    times = []
    with RunBundle.open(runs / run) as b:
        n = rows_per_block(b)
        for _ in range(repeats):
            t = time.perf_counter()
            examples_block(b, "all", 8, 0, min(n, b.n_rows))
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def measure(d, url: str, run: str, steps: int) -> dict:
    from selenium.webdriver.common.by import By

    d.get(f"{url}/run?id={run}")
    _wait(lambda: d.execute_script(
        "var e = window.lcaviz && window.lcaviz.examples; return e && e.paints && e.histPaints"),
        180)
    d.execute_script(PROBE)
    slider = d.find_element(By.CSS_SELECTOR, "#run-player-bar .lca-slider")
    n_frames = int(d.execute_script("return window.lcaviz.players.run.timeline.length"))

    def step_pass(n: int) -> tuple[list, list]:
        d.execute_script("window.__ex = []; window.__hist = []")
        slider_steps(d, slider, n_frames, n, lambda i: d.execute_script(
            "return window.__ex.length > arguments[0] && window.__hist.length > arguments[0]",
            i), 60)
        return d.execute_script("return [window.__ex, window.__hist]")

    d.execute_script("window.lcaviz.players.run.seek(0)")
    ex_cold, hist_cold = step_pass(min(steps, n_frames - 1))
    requests_cold = d.execute_script(REQUESTS)
    _wait(lambda: d.execute_script(  # every block cached, then the same steps again
        "var e = window.lcaviz.examples, s = e.stream, n = Math.ceil(s.R / s.block);"
        "for (var i = 0; i < n; i++) e.request(i); return e.blocks.size === n"), 300)
    d.execute_script("window.lcaviz.players.run.seek(0)")
    requests_before_warm = d.execute_script(REQUESTS)
    ex_warm, hist_warm = step_pass(min(steps, n_frames - 1))
    out = {
        "thumbs_cold_ms": (_pct(ex_cold, 50), _pct(ex_cold, 95), len(ex_cold)),
        "hist_cold_ms": (_pct(hist_cold, 50), _pct(hist_cold, 95), len(hist_cold)),
        "thumbs_warm_ms": (_pct(ex_warm, 50), _pct(ex_warm, 95), len(ex_warm)),
        "hist_warm_ms": (_pct(hist_warm, 50), _pct(hist_warm, 95), len(hist_warm)),
        "requests_first_pass": requests_cold,
        "requests_during_warm_pass": d.execute_script(REQUESTS) - requests_before_warm,
        "block_rows": d.execute_script("return window.lcaviz.examples.stream.block"),
        "frames": n_frames,
    }
    out.update(play(d, 5.0))
    return out


def play(d, seconds: float) -> dict:
    """Play at 30 frames/s (looping) with the section following: frames per second painted
    by the player, and repaints of the section per second."""
    from selenium.webdriver.common.by import By

    btn = d.find_element(By.CSS_SELECTOR, "#run-player-bar [data-lca=play]")
    d.execute_script("window.lcaviz.players.run.seek(0);"
                     "window.__exPaints0 = window.lcaviz.examples.paints")
    btn.click()
    time.sleep(seconds)  # the measurement window itself (not a wait for a condition)
    st = d.execute_script("var p = window.lcaviz.players.run, e = window.lcaviz.examples;"
                          "return [p.stats.frames, performance.now() - p.stats.started,"
                          " e.paints - window.__exPaints0]")
    btn.click()
    return {"play_fps": st[0] / st[1] * 1000, "examples_repaints_per_s": st[2] / st[1] * 1000}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=55_000)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--hog", type=int, default=0, help="busy-loop processes beside the test")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-examples-"))
    run = make_run(tmp, a.examples, a.iters)
    res = {"examples": a.examples, "block_server_s": block_seconds(tmp, run)}
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.hog)]
    try:
        proc, url = _serve(tmp, ROOT)
        d = _driver()
        try:
            res.update(measure(d, url, run, a.steps))
        finally:
            d.quit()
            proc.terminate()
            proc.wait()
    finally:
        for h in hogs:
            h.kill()
    print(f"{run} ({a.examples:,} examples, {a.iters} rows, hog {a.hog}):")
    for k, v in res.items():
        print(f"  {k:26s} {json.dumps(v)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
