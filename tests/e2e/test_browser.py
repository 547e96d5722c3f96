"""End-to-end: the real dashboard in headless Chromium (runs list, the heatmap player, drill-down,
export, compare, errors, a version-1 bundle, a live run written by another process).

Every step waits for a condition in the page (never a fixed sleep), so the tests hold on a
loaded machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

PLAYER = """
var p = window.lcaviz && window.lcaviz.players.run;
if (!p || !p.views[0].stream || !p.el) return null;
var v = p.views[0];
return {index: p.index, n: p.timeline.length, paints: v.paints, shown: v.shown,
        playing: p.playing, mode: v.stream.mode, R: v.stream.R, key: v.stream.key,
        label: p.el.label.textContent, msg: p.el.msg.textContent, synced: p.syncedIndex,
        status: v.stream.status};
"""
# a checksum of the heatmap canvas's pixels (what the user sees)
PIXELS = """
var c = document.querySelector('#run-heatmap canvas.lca-heat');
if (!c || !c.width) return null;
var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, h = 0;
for (var i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) | 0;
return h;
"""
# resources fetched so far: frames from the server and Dash callback requests
REQUESTS = """
var n = {frames: 0, dash: 0};
performance.getEntriesByType('resource').forEach(function (e) {
  if (e.name.indexOf('/lcaviz/frames') >= 0) n.frames++;
  if (e.name.indexOf('_dash-update-component') >= 0) n.dash++; });
return n;
"""
# two animation frames: whatever was painted before this is on screen after it
TWO_FRAMES = """
var done = arguments[arguments.length - 1];
requestAnimationFrame(function () { requestAnimationFrame(function () { done(true); }); });
"""


def wait_for(fn, timeout: float = 60.0, interval: float = 0.05):
    """Poll ``fn`` until it returns something truthy (its value), or fail after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # noqa: BLE001 - elements come and go while Dash renders
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting; last value: {last!r}")


def body_text(driver) -> str:
    return driver.execute_script("return document.body.innerText")


def player(driver) -> dict | None:
    return driver.execute_script(PLAYER)


def open_run(driver, url: str, run_id: str) -> dict:
    driver.get(f"{url}/run?id={run_id}")
    return wait_for(lambda: (lambda s: s if s and s["paints"] else None)(player(driver)))


def all_cached(driver) -> bool:
    return driver.execute_script(
        "var v = window.lcaviz.players.run.views[0];"
        "for (var r = 0; r < v.nRows(); r++) if (!v.cached(r)) return false; return true")


def control(driver, name: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f"#run-player-bar [data-lca={name}]")


def test_runs_page_lists_runs_and_error_card(driver, live_server):
    driver.get(live_server + "/")
    wait_for(lambda: "nested/conv.h5" in body_text(driver) and "fc.h5" in body_text(driver))
    wait_for(lambda: "3 runs, 2 unreadable" in body_text(driver))
    cards = driver.find_elements("css selector", ".error-card")
    assert any("corrupt.h5" in c.text for c in cards)


def test_open_run_from_table(driver, live_server):
    from selenium.webdriver.common.by import By

    driver.get(live_server + "/")
    wait_for(lambda: "nested/conv.h5" in body_text(driver))
    rows = driver.find_elements(By.CSS_SELECTOR, ".dash-spreadsheet tbody tr")
    target = next(r for r in rows if r.text.split()[:1] == ["fc.h5"])
    target.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    link = wait_for(lambda: [e for e in driver.find_elements(By.ID, "runs-open")
                             if e.get_attribute("class") == "btn"])
    link[0].click()
    wait_for(lambda: "/run?id=fc.h5" in driver.current_url)
    wait_for(lambda: (player(driver) or {}).get("paints"))
    assert "fc.h5" in driver.find_element(By.ID, "run-header").text


def test_export_png_downloads_a_valid_file(driver, live_server, download_dir):
    from selenium.webdriver.common.by import By

    open_run(driver, live_server, "fc.h5")
    wait_for(lambda: driver.execute_script(
        "var g=document.querySelector('#run-layer-bars .js-plotly-plot');"
        "return g && g.data && g.data.length"))
    before = set(download_dir.iterdir())
    btn = driver.find_element(By.CSS_SELECTOR, '#run-layer-bars-card button.export-btn[id*="png"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", btn)
    btn.click()
    new = wait_for(lambda: [p for p in download_dir.iterdir() if p not in before
                            and p.suffix == ".png"], timeout=90)
    data = wait_for(lambda: new[0].read_bytes() if new[0].stat().st_size > 1000 else None)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert new[0].name == "fc-run-layer-bars.png"


CMP = """
var p = window.lcaviz && window.lcaviz.players.cmp;
if (!p || !p.el) return null;
return {index: p.index, n: p.timeline.length, playing: p.playing, axis: p.axis,
        label: p.el.label.textContent,
        views: p.views.map(function (v) { return {paints: v.paints, shown: v.shown,
          error: v.stream && v.stream.error || null, T: v.stream && v.stream.T}; })};
"""


def compare_state(driver) -> dict | None:
    return driver.execute_script(CMP)


def test_compare_plays_all_runs_with_one_clock(driver, live_server):
    from selenium.webdriver.common.by import By

    driver.get(live_server + "/compare?ids=fc.h5&ids=fc_seed3.h5&ids=nested/conv.h5")
    s = wait_for(lambda: (lambda c: c if c and all(v["paints"] or v["error"] for v in c["views"])
                          else None)(compare_state(driver)))
    assert s["axis"] == "fraction" and s["n"] == 200
    assert "no layer 'fc1'" in s["views"][2]["error"]  # conv.h5 has other layers
    assert "% of training" in s["label"] and "fc.h5: it. 0" in s["label"]
    # one Play drives every run; each shows the iteration at the same fraction of its run
    driver.execute_script("window.lcaviz.players.cmp.rate = 60")
    driver.find_element(By.CSS_SELECTOR, "#cmp-player-bar [data-lca=play]").click()
    wait_for(lambda: compare_state(driver)["index"] >= 100)
    driver.find_element(By.CSS_SELECTOR, "#cmp-player-bar [data-lca=play]").click()
    s = wait_for(lambda: (lambda c: c if not c["playing"] else None)(compare_state(driver)))
    f = s["index"] / 199
    rows = driver.execute_script("return window.lcaviz.players.cmp.rowsFor(arguments[0])",
                                 s["index"])
    assert rows[0] == round(f * 59) and rows[1] == round(f * 39)  # 60 and 40 iterations
    assert all(v["shown"] == r for v, r in zip(s["views"][:2], rows[:2], strict=True))
    # by iteration: frames shared by iteration across runs
    driver.find_element(By.CSS_SELECTOR, "#cmp-xaxis input[value=iteration]").click()
    s = wait_for(lambda: (lambda c: c if c["axis"] == "iteration" else None)(
        compare_state(driver)))
    assert s["n"] == 60  # the union of both runs' rows (one per iteration, 0..59)
    n_loss = driver.execute_script(
        "var g = document.querySelector('#cmp-loss .js-plotly-plot');"
        "return g && g.data ? g.data.length : 0")
    assert n_loss == 3


def test_corrupt_bundle_shows_error_card(driver, live_server):
    driver.get(live_server + "/run?id=corrupt.h5")
    card = wait_for(lambda: [e for e in driver.find_elements("css selector", ".error-card")
                             if e.text])
    assert "Cannot open this run" in card[0].text and "corrupt.h5" in card[0].text
    driver.get(live_server + "/run?id=..%2F..%2Fetc%2Fpasswd")
    card = wait_for(lambda: [e for e in driver.find_elements("css selector", ".error-card")
                             if e.text])
    assert "run id" in card[0].text

