"""The heatmap player in a real headless Chromium, timed from input event to repainted pixels.

    python benchmarks/bench_player.py [--hog 2] [--big] [--runs sample_runs --run ID]

The dashboard runs as its own process (``lcaviz serve``), as a user runs it. Chromium is
driven by selenium with real key presses and clicks; the page records each ``input`` event's
timestamp and the second animation frame after the heatmap repainted (so the frame holding
the new pixels has been produced). Reported:

* first heatmap after opening the run (navigation start to first paint);
* slider steps (arrow keys on the frame slider): median and p95, first pass (frames possibly
  still on their way) and warm (cache filled);
* Play at ``--rate`` frames/s (the player's setting; 60 shows the headroom): frames painted
  per second over ``--seconds`` and how many frames were still painted after a Pause click;
* ``--big``: a synthetic 1,000 × 1,000 layer (1 M parameters) at block-sum resolution (Play
  fps), then a box zoom to a 200 × 200 region, timed to the first full-resolution paint;
* ``--hog N``: N busy-loop processes run beside everything (the machine has 2 cores).

``--old REV`` measures a checkout of an older revision (before the player) with the same keys:
there the heatmap is a Plotly figure, so a step ends when its data changed and two frames passed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# records input-to-pixels latencies of the slider and of Pause (new player)
PROBE = """
window.__lat = []; window.__pause = null;
var p = window.lcaviz.players.run, v = p.views[0];
p.el.slider.addEventListener('input', function (ev) {
  var t0 = ev.timeStamp, n0 = v.paints;
  (function wait() { requestAnimationFrame(function () {
    if (v.paints > n0) requestAnimationFrame(function (ts) { window.__lat.push(ts - t0); });
    else wait(); }); })();
}, true);
p.el.play.addEventListener('click', function (ev) {
  if (p.playing) { var n0 = v.paints; window.__pause = {n0: n0};
    setTimeout(function () { window.__pause.after = v.paints - n0; }, 500); }
}, true);
"""
# the same for the old Plotly heatmap (before the player): a step ends when z changed
PROBE_OLD = """
window.__lat = [];
var thumb = document.querySelector('#run-slider [role=slider]');
function z() { var g = document.querySelector('#run-heatmap .js-plotly-plot');
  return g && g.data && g.data[0] && (g.data[0].z.bdata || JSON.stringify(g.data[0].z).length); }
thumb.addEventListener('keydown', function (ev) {
  var t0 = ev.timeStamp, z0 = z();
  (function wait() { requestAnimationFrame(function () {
    if (z() !== z0) requestAnimationFrame(function (ts) { window.__lat.push(ts - t0); });
    else wait(); }); })();
}, true);
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(fn, timeout=60.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn()
        except Exception:  # noqa: BLE001 - the page is still loading
            v = None
        if v:
            return v
        time.sleep(step)
    raise TimeoutError("condition not reached")


def _serve(runs: Path, root: Path) -> tuple[subprocess.Popen, str]:
    port = _port()
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "lcaviz.cli", "serve", str(runs), "--port",
                             str(port), "--no-browser"], cwd=root, env=env,
                            stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    _wait(up, 60)
    return proc, url


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.e2e.conftest import CHROMEDRIVER, chrome_options

    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=chrome_options(size="1400,1100"))
    d.set_script_timeout(120)
    return d


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")



def slider_steps(d, slider, n_frames: int, n: int, painted, timeout: float) -> None:
    """Press an arrow key on the focused ``slider`` ``n`` times, bouncing between the first
    and the last of ``n_frames`` frames, and wait after the i-th press until ``painted(i)``."""
    from selenium.webdriver.common.keys import Keys

    d.execute_script("arguments[0].focus()", slider)
    key, pos = Keys.ARROW_RIGHT, int(slider.get_attribute("value"))
    for i in range(n):
        if pos >= n_frames - 1:
            key = Keys.ARROW_LEFT
        elif pos <= 0:
            key = Keys.ARROW_RIGHT
        slider.send_keys(key)
        pos += 1 if key == Keys.ARROW_RIGHT else -1
        _wait(lambda i=i: painted(i), timeout, 0.005)

def measure_new(d, url: str, run: str, steps: int, seconds: float, big: bool,
                rate: int = 30) -> dict:
    from selenium.webdriver.common.by import By

    out = {}
    d.get(f"{url}/run?id={run}")
    first = _wait(lambda: d.execute_script(
        "var p = window.lcaviz && window.lcaviz.players.run;"
        "return p && p.views[0].paints ? p.views[0].lastPaint : 0"))
    out["first_paint_ms"] = first  # performance.now() is counted from navigation start
    d.execute_script(PROBE)
    slider = d.find_element(By.CSS_SELECTOR, "#run-player-bar .lca-slider")
    n_frames = int(d.execute_script("return window.lcaviz.players.run.timeline.length"))

    def step_pass(n: int) -> list[float]:
        d.execute_script("window.__lat = []")
        slider_steps(d, slider, n_frames, n,
                     lambda i: d.execute_script("return window.__lat.length") > i, 30)
        return d.execute_script("return window.__lat")

    d.execute_script("var p = window.lcaviz.players.run; p.seek(0)")
    cold = step_pass(min(steps, n_frames - 1))
    _wait(lambda: d.execute_script(  # the cache fills while paused
        "var v = window.lcaviz.players.run.views[0];"
        "for (var r = 0; r < v.nRows(); r++) if (!v.cached(r)) return false; return true"), 120)
    warm = step_pass(steps)
    out["step_cold_ms"] = (_pct(cold, 50), _pct(cold, 95), len(cold))
    out["step_warm_ms"] = (_pct(warm, 50), _pct(warm, 95), len(warm))
    out.update(_play(d, seconds, rate))
    out["cache_mb"] = d.execute_script("return window.lcaviz.cache.bytes / 1048576")
    out["cache_cap_mb"] = d.execute_script("return window.lcaviz.CACHE_CAP_BYTES / 1048576")
    if big:
        out["zoom_full_res_ms"] = _zoom(d)
    return out


def _play(d, seconds: float, rate: int) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    play = d.find_element(By.CSS_SELECTOR, "#run-player-bar [data-lca=play]")
    Select(d.find_element(By.CSS_SELECTOR, "#run-player-bar [data-lca=rate]")
           ).select_by_value(str(rate))
    d.execute_script("window.lcaviz.players.run.seek(0)")
    play.click()
    time.sleep(seconds)  # the measurement window itself (not a wait for a condition)
    st = d.execute_script("var p = window.lcaviz.players.run;"
                          "return [p.stats.frames, performance.now() - p.stats.started,"
                          " p.stats.waits, p.rate]")
    play.click()  # pause
    after = _wait(lambda: d.execute_script(
        "return window.__pause && window.__pause.after !== undefined ? "
        "[window.__pause.after] : null"), 10)
    playing = d.execute_script("return window.lcaviz.players.run.playing")
    return {"play_fps": st[0] / st[1] * 1000, "play_frames": st[0], "play_waits": st[2],
            "play_rate": st[3], "frames_after_pause": after[0], "paused": not playing}


def _zoom(d) -> float:
    """Box-zoom the heatmap to a 200 x 200 region; ms to the first paint of the new stream."""
    return d.execute_async_script("""
        var done = arguments[arguments.length - 1];
        var p = window.lcaviz.players.run, v = p.views[0], key = v.stream.key;
        var gd = document.querySelector('#run-heatmap .js-plotly-plot');
        var t0 = performance.now();
        (function wait() { requestAnimationFrame(function () {
          if (v.stream.key !== key && v.paints && v.frame &&
              v.stream.items[0].by === 1 && v.stream.items[0].bx === 1)
            requestAnimationFrame(function (ts) { done(ts - t0); });
          else wait(); }); })();
        Plotly.relayout(gd, {'xaxis.range[0]': 299.5, 'xaxis.range[1]': 499.5,
                             'yaxis.range[0]': 499.5, 'yaxis.range[1]': 299.5});
    """)


def measure_old(d, url: str, run: str, steps: int, seconds: float) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d.get(f"{url}/run?id={run}")
    t_nav = time.monotonic()
    _wait(lambda: d.execute_script(
        "var g=document.querySelector('#run-heatmap .js-plotly-plot'); return g && g.data "
        "&& g.data.length"))
    first = (time.monotonic() - t_nav) * 1000
    d.execute_script(PROBE_OLD)
    thumb = d.find_element(By.CSS_SELECTOR, "#run-slider [role=slider]")
    thumb.click()
    lat = []
    for i in range(steps):
        thumb.send_keys(Keys.ARROW_RIGHT if (i // 10) % 2 == 0 else Keys.ARROW_LEFT)
        _wait(lambda i=i: d.execute_script("return window.__lat.length") > i, 30, 0.005)
    lat = d.execute_script("return window.__lat")
    play = d.find_element(By.ID, "run-play")
    v0 = int(thumb.get_attribute("aria-valuenow"))
    count = d.execute_script("""
        window.__zs = 0; var last = null;
        window.__zt = setInterval(function () {
          var g = document.querySelector('#run-heatmap .js-plotly-plot');
          var z = g && g.data && g.data[0] && g.data[0].z.bdata;
          if (z !== last) { window.__zs++; last = z; } }, 5);
        return 0""")
    play.click()
    time.sleep(seconds)
    count = d.execute_script("clearInterval(window.__zt); return window.__zs")
    play.click()
    return {"first_paint_ms": first, "step_warm_ms": (_pct(lat, 50), _pct(lat, 95), len(lat)),
            "play_fps": max(count - 1, 0) / seconds, "start_row": v0}


def _big_runs(tmp: Path) -> str:
    from lcaviz.bundle.synthetic import write_synthetic_bundle

    write_synthetic_bundle(tmp / "big.h5", n_iters=60, layers=(("big", (1000, 1000)),),
                           n_classes=10, per_class=False, zero_fraction=0.1)
    return "big.h5"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "sample_runs")
    ap.add_argument("--run", default="mnist_fc_sgd_mom0.9.h5")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--hog", type=int, default=0, help="busy-loop processes beside the test")
    ap.add_argument("--big", action="store_true", help="also a 1 M-parameter layer")
    ap.add_argument("--rate", type=int, default=30, choices=[5, 10, 15, 24, 30, 60],
                    help="the player's frames per second during the Play measurement")
    ap.add_argument("--old", default=None, metavar="REV", help="measure this git revision")
    a = ap.parse_args(argv)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(a.hog)]
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-player-"))
    root = ROOT
    try:
        if a.old:
            root = tmp / "old"
            subprocess.run(["git", "worktree", "add", "--detach", str(root), a.old], cwd=ROOT,
                           check=True, capture_output=True)
        cases = [(a.runs, a.run, False)]
        if a.big:
            big = tmp / "big"
            big.mkdir()
            cases.append((big, _big_runs(big), True))
        for runs, run, is_big in cases:
            proc, url = _serve(runs, root)
            d = _driver()
            try:
                res = (measure_old(d, url, run, a.steps, a.seconds) if a.old else
                       measure_new(d, url, run, a.steps, a.seconds, is_big, a.rate))
            finally:
                d.quit()
                proc.terminate()
                proc.wait()
            results[run] = res
            print(f"{run} ({'old ' + a.old if a.old else 'player'}, hog {a.hog}):")
            for k, v in res.items():
                print(f"  {k:22s} {json.dumps(v)}")
    finally:
        for h in hogs:
            h.kill()
        if a.old:
            subprocess.run(["git", "worktree", "remove", "--force", str(root)], cwd=ROOT,
                           capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
