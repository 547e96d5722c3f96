"""Screenshot of the run page in headless Chromium, for the README.

    python scripts/screenshot.py [--runs-dir DIR --run-id REL_PATH] [--iteration 40]
                                 [--palette blueorange] [--out assets/screenshot-run.png]
                                 [--size 1400,1000]

The README's: ``--runs-dir sample_runs --run-id mnist_fc_sgd_mom0.9.h5 --palette blueorange``.

Without ``--runs-dir`` a synthetic MNIST-FC-like run (784-100-50-10, planted synchronous
peaks, trajectory) is written to a temporary directory. The dashboard is served on a free
loopback port in a background thread; selenium drives /usr/bin/chromium + chromedriver.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _driver(size: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                f"--user-data-dir={tempfile.mkdtemp(prefix='lcaviz-shot-')}",
                f"--window-size={size}"):
        opts.add_argument(arg)
    opts.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def _wait(fn, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception:  # noqa: BLE001 - the page is still rendering
            pass
        time.sleep(0.2)
    raise TimeoutError("page did not render in time")


def synthetic_runs() -> tuple[Path, str]:
    from lcaviz.bundle.synthetic import write_synthetic_bundle

    d = Path(tempfile.mkdtemp(prefix="lcaviz-shot-runs-")) / "mnist"
    d.mkdir()
    write_synthetic_bundle(d / "fc-sgd.h5", n_iters=240, sync_peaks=6, save_trajectory=True,
                           seed=7)
    return d.parent, "mnist/fc-sgd.h5"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="screenshot of the run page")
    ap.add_argument("--runs-dir", type=Path)
    ap.add_argument("--run-id")
    ap.add_argument("--iteration", type=int, default=40)
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "screenshot-run.png")
    ap.add_argument("--size", default="1400,1000")
    ap.add_argument("--palette", choices=("redgreen", "blueorange"), default="redgreen",
                    help="the heatmap's colours (the page's \"colours\" choice)")
    args = ap.parse_args(argv)
    runs_dir, run_id = (args.runs_dir, args.run_id) if args.runs_dir else synthetic_runs()

    from urllib.parse import quote

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from werkzeug.serving import make_server

    from lcaviz.app import create_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    srv = make_server("127.0.0.1", port, create_app(runs_dir).server, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    d = _driver(args.size)
    try:
        d.get(f"http://127.0.0.1:{port}/run?id={quote(run_id)}")
        axes = ("var p = window.lcaviz && window.lcaviz.players.run;"
                "return p && p.views[0].gd() !== null && p.views[0].paints > 0;")
        _wait(lambda: d.execute_script(axes))  # the first frame and Plotly's axes are up
        if args.palette != "redgreen":  # choose it as a reader would (a radio of the page)
            d.find_element(By.CSS_SELECTOR, f"#run-palette input[value={args.palette}]").click()
            _wait(lambda: d.execute_script("return window.lcaviz.palette() === arguments[0]",
                                           args.palette))
        box = d.find_element(By.CSS_SELECTOR, "#run-player-bar [data-lca=goto]")
        box.send_keys(str(args.iteration), Keys.ENTER)  # go to an iteration
        _wait(lambda: d.execute_script(
            "var p = window.lcaviz.players.run, v = p.views[0];"
            "return v.shown >= 0 && v.window(v.shown)[0] <= arguments[0] && "
            "arguments[0] < v.window(v.shown)[1] && v.frame && v.stream.key;", args.iteration))
        _wait(lambda: d.execute_script(  # the panels below have drawn their figures
            "var g = document.querySelector('#run-loss .js-plotly-plot');"
            "return g && g.data && g.data.length > 0;"))
        d.execute_async_script("var done = arguments[arguments.length - 1];"
                               "requestAnimationFrame(function () {"
                               " requestAnimationFrame(function () { done(true); }); });")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(args.out))
    finally:
        d.quit()
        srv.shutdown()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
