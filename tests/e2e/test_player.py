"""End-to-end: the heatmap player in headless Chromium (scrubbing from the browser cache,
play / pause / loop / speed, frames equal to the server's, hover and click, zoom, a version-1
bundle, a live run written by another process).

Every step waits for a condition in the page (never a fixed sleep), so the tests hold on a
loaded machine.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import serve
from tests.e2e.test_browser import (
    PIXELS,
    REQUESTS,
    TWO_FRAMES,
    all_cached,
    body_text,
    control,
    open_run,
    player,
    wait_for,
)

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_scrubbing_repaints_from_the_browser_cache_without_requests(driver, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    first = open_run(driver, live_server, "fc.h5")
    assert first["n"] == 60 and "frame 1 of 60" in first["label"]
    wait_for(lambda: all_cached(driver))
    # the page has settled: the panels are drawn and their background scan is done
    wait_for(lambda: "done" in driver.find_element(By.ID, "run-weibull-status").text)
    driver.execute_async_script(TWO_FRAMES)
    before = driver.execute_script(REQUESTS)
    pixels = [driver.execute_script(PIXELS)]
    slider = control(driver, "slider")
    driver.execute_script("arguments[0].focus()", slider)
    for k in range(1, 6):
        slider.send_keys(Keys.ARROW_RIGHT)
        s = wait_for(lambda k=k: (lambda x: x if x["shown"] == k else None)(player(driver)))
        assert f"iteration {k} " in s["label"] and f"frame {k + 1} of 60" in s["label"]
        driver.execute_async_script(TWO_FRAMES)
        pixels.append(driver.execute_script(PIXELS))
    assert len(set(pixels)) == len(pixels)  # every step painted a different frame
    # the frame reaches Dash (throttled) but no panel needs it: nothing goes to the server
    wait_for(lambda: player(driver)["synced"] == 5)
    driver.execute_async_script(TWO_FRAMES)
    assert driver.execute_script(REQUESTS) == before


def test_play_pause_loop_and_speed(driver, live_server):
    from selenium.webdriver.support.ui import Select

    open_run(driver, live_server, "fc.h5")
    wait_for(lambda: all_cached(driver))
    Select(control(driver, "rate")).select_by_value("60")
    loop = control(driver, "loop")
    if loop.is_selected():
        loop.click()
    driver.execute_script("window.lcaviz.players.run.seek(50)")
    n0 = player(driver)["paints"]
    control(driver, "play").click()
    s = wait_for(lambda: (lambda s: s if not s["playing"] else None)(player(driver)))
    assert s["index"] == 59 and s["paints"] - n0 == 9  # every frame to the end, then stops
    assert "Play" in control(driver, "play").text

    loop.click()  # loop on: it wraps around
    Select(control(driver, "speed")).select_by_value("2")
    driver.execute_script("""
        var p = window.lcaviz.players.run; window.__seen = [];
        var show = p.show.bind(p);
        p.show = function (i) { if (p.playing) window.__seen.push(i); return show(i); };""")
    driver.execute_script("window.lcaviz.players.run.seek(40)")
    control(driver, "play").click()
    wait_for(lambda: any(i < 20 for i in driver.execute_script("return window.__seen")))
    # Pause takes effect at once: at most the frame being painted when the click arrived
    driver.execute_script("""
        var p = window.lcaviz.players.run, v = p.views[0];
        p.el.play.addEventListener('click', function () { window.__atPause = v.paints; },
                                   {capture: true, once: true});""")
    control(driver, "play").click()
    wait_for(lambda: not player(driver)["playing"])
    driver.execute_async_script(TWO_FRAMES)
    driver.execute_async_script(TWO_FRAMES)
    after = driver.execute_script("return window.lcaviz.players.run.views[0].paints "
                                  "- window.__atPause")
    assert after <= 1
    seen = driver.execute_script("return window.__seen")
    steps = {(b - a) % 60 for a, b in zip(seen, seen[1:], strict=False)}
    assert steps <= {2, 60 - 58}, seen  # step 2, and the wrap from 58 to 0


def _server_frame(runs: Path, run: str, plan, row: int, mode: str, window: int):
    from lcaviz.app.queries import _layer_values, layer_tensors, split_frames
    from lcaviz.bundle import RunBundle
    from lcaviz.figures.heatmap import panel_values

    with RunBundle.open(runs / run) as b:
        values = _layer_values(b, 0, row, mode, window)
        frames = split_frames(layer_tensors(b, 0), plan, values, None)
        return np.concatenate([panel_values(p, f.values).ravel()
                               for p, f in zip(plan, frames, strict=True)])


def test_cumulative_and_window_frames_equal_the_server(driver, live_server, e2e_runs_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_run(driver, live_server, "fc.h5")
    for mode, value, row in (("cumulative", None, 7), ("window", 5, 20), ("row", None, 33)):
        if value is not None:
            w = driver.find_element(By.CSS_SELECTOR, "#run-window")
            w.clear()
            w.send_keys(str(value), Keys.ENTER)
        driver.find_element(By.CSS_SELECTOR, f"#run-mode input[value={mode}]").click()
        wait_for(lambda m=mode: player(driver)["mode"] == m and player(driver)["paints"])
        box = control(driver, "goto")  # go to an iteration: type it, Enter applies
        box.clear()
        box.send_keys(str(row), Keys.ENTER)
        wait_for(lambda r=row, m=mode: (lambda s: s["shown"] == r and s["mode"] == m)(
            player(driver)))
        got = np.array(driver.execute_script(
            "return Array.from(window.lcaviz.players.run.views[0].frame.values)"))
        plan = driver.execute_script("return window.lcaviz.players.run.views[0].stream.items")
        want = _server_frame(e2e_runs_dir, "fc.h5", plan, row, mode, value or 1)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7 * np.abs(want).max())
    box = control(driver, "goto")
    box.clear()
    box.send_keys("999", Keys.ENTER)
    msg = wait_for(lambda: player(driver)["msg"])
    assert "999 is outside this run (0–59)" in msg and player(driver)["shown"] == 33


def test_hover_and_click_name_the_parameter(driver, live_server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    open_run(driver, live_server, "fc.h5")
    host = driver.find_element(By.ID, "run-heatmap")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", host)
    # the centre of cell (row 3, column 7) of fc1.weight, from the axes the page drew
    x, y = driver.execute_script("""
        var v = window.lcaviz.players.run.views[0], ax = v.axes(0);
        return [ax[0]._offset + ax[0].l2p(7), ax[1]._offset + ax[1].l2p(3)];""")
    w, h = host.size["width"], host.size["height"]
    ActionChains(driver).move_to_element_with_offset(host, x - w / 2, y - h / 2).perform()
    tip = wait_for(lambda: driver.find_element(By.ID, "run-heatmap-tip").text)
    assert tip.startswith("fc1.weight[3, 7]") and "LCA" in tip
    ActionChains(driver).click().perform()
    info = wait_for(lambda: driver.find_element(By.ID, "run-drill-info").text)
    assert info.startswith("fc1.weight[3, 7]") and "#97" in info  # 3 * 30 + 7
    n = wait_for(lambda: driver.execute_script(
        "var g=document.querySelector('#run-drill .js-plotly-plot');"
        "return g && g.data ? g.data.length : 0"))
    assert n == 3  # LCA per row, cumulative, weight (the run has a trajectory)


def test_box_zoom_shows_the_region_at_full_resolution(driver, live_server):
    s = open_run(driver, live_server, "fc.h5")
    wait_for(lambda: driver.execute_script(
        "return window.lcaviz.players.run.views[0].gd() !== null"))  # Plotly's axes are up
    driver.execute_script("""
        var gd = document.querySelector('#run-heatmap .lca-axes');
        Plotly.relayout(gd, {'xaxis.range[0]': 4.5, 'xaxis.range[1]': 9.5,
                             'yaxis.range[0]': 7.5, 'yaxis.range[1]': 1.5});""")
    item = wait_for(lambda: driver.execute_script(
        "var v = window.lcaviz.players.run.views[0];"
        "return v.stream.key !== arguments[0] && v.frame ? v.stream.items[0] : null", s["key"]))
    assert (item["r0"], item["nrows"], item["c0"], item["ncols"]) == (2, 6, 5, 5)


def test_a_version_1_bundle_still_plays(driver, tmp_path):
    from lcaviz.bundle import RunBundle
    from lcaviz.bundle.synthetic import write_synthetic_bundle
    from tests.lcaviz.test_bundle_v2 import _as_version_1

    src = write_synthetic_bundle(tmp_path / "v2.h5", n_iters=20, stride=4, seed=9,
                                 layers=(("fc1", (6, 8)),), n_classes=3)
    runs = tmp_path / "runs"
    runs.mkdir()
    _as_version_1(src, runs / "old.h5", 4)
    with RunBundle.open(runs / "old.h5") as b:
        assert b.format_version == 1
    with serve(runs) as url:
        s = open_run(driver, url, "old.h5")
        assert s["n"] == 5 and "iterations 0–3" in s["label"]


_WRITER = textwrap.dedent("""
    import sys
    from lcaviz.bundle.synthetic import SyntheticRun
    run = SyntheticRun(layers=(("fc1", (8, 12)),), n_iters=60, n_classes=3, stride=2, seed=3)
    w = run.create_writer(sys.argv[1], flush_seconds=3600)
    print("started", flush=True)
    for t, rec in enumerate(run.records()):
        if t % 20 == 0:
            sys.stdin.readline()  # the test says when the run moves on
        w.append(rec)
        if t % 20 == 19:
            w.flush()
            print(t + 1, flush=True)
    w.set_param_counters(run.help_iters, run.nonzero_iters)
    sys.stdin.readline()
    w.close("complete")
    print("done", flush=True)
""")


def test_a_live_run_grows_on_the_page_and_opens_complete(driver, tmp_path):
    from selenium.webdriver.common.by import By

    runs = tmp_path / "runs"
    runs.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(runs / "live.h5")], cwd=ROOT,
                            text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def step() -> str:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        return proc.stdout.readline().strip()

    try:
        assert proc.stdout.readline().strip() == "started"
        with serve(runs) as url:
            assert step() == "20"
            s = open_run(driver, url, "live.h5")
            assert s["R"] == 10 and s["status"] == "running"
            for published in (40, 60):
                assert step() == str(published)
                # the page follows the run without a reload (it polls every second)
                wait_for(lambda n=published: player(driver)["R"] == n // 2)
                sub = driver.find_element(By.ID, "run-subtitle").text
                assert f"{published} iterations" in sub and "running" in sub
            assert step() == "done"
            wait_for(lambda: "complete" in driver.find_element(By.ID, "run-subtitle").text)
            s = open_run(driver, url, "live.h5")  # and a reload opens it complete
            assert s["R"] == 30 and s["status"] == "complete"
            driver.get(url + "/")
            wait_for(lambda: "live.h5" in body_text(driver) and "complete" in body_text(driver))
            assert "unreadable" not in body_text(driver)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


FAILS = """
var v = window.lcaviz.players.run.views[0];
return v.failTimes.length ? {n: v.failTimes.length, first: v.failTimes[0],
                             last: v.failTimes[v.failTimes.length - 1],
                             times: v.failTimes.slice(0, 50), error: v.error} : null;
"""


def test_a_dead_server_is_retried_with_backoff_not_in_a_loop(driver, tmp_path):
    """When the server goes away, failed frame fetches are retried after 250 ms, doubling, so
    the page stays responsive (an immediate retry spun the renderer and stalled the browser)."""
    from lcaviz.bundle.synthetic import write_synthetic_bundle

    runs = tmp_path / "runs"
    runs.mkdir()
    write_synthetic_bundle(runs / "many.h5", n_iters=300, stride=1, seed=4, n_classes=3,
                           layers=(("fc1", (100, 784)),))
    with serve(runs) as url:
        s = open_run(driver, url, "many.h5")
        assert s["n"] == 300
    # the server is gone; ask for a frame that is not cached
    driver.execute_script("var p = window.lcaviz.players.run; p.seek(p.timeline.length - 1)")
    f = wait_for(lambda: (lambda x: x if x and x["last"] - x["first"] >= 1000 else None)(
        driver.execute_script(FAILS)), timeout=120)
    early = [t for t in f["times"] if t < f["first"] + 1000]
    # at most 2 fetches in flight per round, rounds >= 250, 500 ms apart: a few, not hundreds
    assert len(early) <= 8, f"{len(early)} failed fetches within 1 s of the first"
    assert f["error"]
    driver.get("about:blank")
