"""End-to-end: the real dashboard in headless Chromium (runs list, run page, compare, export)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.e2e

HEATMAP_BDATA = """
var g = document.querySelector('#run-heatmap .js-plotly-plot');
if (!g || !g.data || !g.data.length) return null;
var z = g.data[0].z;
return z && z.bdata ? z.bdata : JSON.stringify(z);
"""


def wait_for(fn, timeout: float = 20.0, interval: float = 0.2):
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


def slider_value(driver) -> int:
    return int(driver.execute_script(
        "return document.querySelector('#run-slider [role=slider]')"
        ".getAttribute('aria-valuenow')"))


def test_runs_page_lists_runs_and_error_card(driver, live_server):
    driver.get(live_server + "/")
    wait_for(lambda: "nested/conv.h5" in body_text(driver) and "fc.h5" in body_text(driver))
    text = body_text(driver)
    assert "3 runs, 2 unreadable" in text
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
    wait_for(lambda: driver.execute_script(HEATMAP_BDATA))
    assert "fc.h5" in driver.find_element(By.ID, "run-header").text


def test_slider_changes_heatmap_and_play_advances(driver, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(live_server + "/run?id=fc.h5")
    before = wait_for(lambda: driver.execute_script(HEATMAP_BDATA))
    wait_for(lambda: "row 1 of 60" in body_text(driver))
    thumb = driver.find_element(By.CSS_SELECTOR, "#run-slider [role=slider]")
    thumb.click()
    for _ in range(5):
        thumb.send_keys(Keys.ARROW_RIGHT)
    wait_for(lambda: slider_value(driver) >= 5)
    after = wait_for(lambda: (lambda z: z if z and z != before else None)(
        driver.execute_script(HEATMAP_BDATA)))
    assert after != before
    wait_for(lambda: "iteration 5 (row 6 of 60)" in body_text(driver))

    start = slider_value(driver)
    driver.find_element(By.ID, "run-play").click()
    wait_for(lambda: slider_value(driver) >= start + 2, timeout=15)
    driver.find_element(By.ID, "run-play").click()  # pause
    wait_for(lambda: "Play" in driver.find_element(By.ID, "run-play").text)


def test_click_heatmap_cell_opens_drill_down(driver, live_server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver.get(live_server + "/run?id=fc.h5")
    wait_for(lambda: driver.execute_script(HEATMAP_BDATA))
    cell = driver.find_element(By.CSS_SELECTOR, "#run-heatmap .nsewdrag")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
    ActionChains(driver).move_to_element(cell).click().perform()
    info = wait_for(lambda: driver.find_element(By.ID, "run-drill-info").text)
    assert info.startswith("fc1.weight[")
    n = wait_for(lambda: driver.execute_script(
        "var g=document.querySelector('#run-drill .js-plotly-plot');"
        "return g && g.data ? g.data.length : 0"))
    assert n == 3  # LCA per row, cumulative, weight (the run has a trajectory)


def test_export_png_downloads_a_valid_file(driver, live_server, download_dir):
    from selenium.webdriver.common.by import By

    driver.get(live_server + "/run?id=fc.h5")
    wait_for(lambda: driver.execute_script(
        "var g=document.querySelector('#run-layer-bars .js-plotly-plot');"
        "return g && g.data && g.data.length"))
    before = set(download_dir.iterdir())
    btn = driver.find_element(By.CSS_SELECTOR, '#run-layer-bars-card button.export-btn[id*="png"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", btn)
    btn.click()
    new = wait_for(lambda: [p for p in download_dir.iterdir() if p not in before
                            and p.suffix == ".png"], timeout=60)
    data = wait_for(lambda: new[0].read_bytes() if new[0].stat().st_size > 1000 else None)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert new[0].name == "fc-run-layer-bars.png"


def test_compare_two_runs(driver, live_server):
    driver.get(live_server + "/compare?ids=fc.h5&ids=fc_seed3.h5")
    n_heat = wait_for(lambda: driver.execute_script(
        "var gs=document.querySelectorAll('.js-plotly-plot');"
        "var n=0; gs.forEach(function(g){ if (g.data && g.data.length) n++; });"
        "return n >= 5 ? n : 0"))
    assert n_heat >= 5  # two heatmaps + loss + % helping + layer totals
    n_loss = driver.execute_script(
        "return document.querySelector('#cmp-loss .js-plotly-plot').data.length")
    assert n_loss == 2
    assert "% of training" in body_text(driver)


def test_corrupt_bundle_shows_error_card(driver, live_server):
    driver.get(live_server + "/run?id=corrupt.h5")
    card = wait_for(lambda: [e for e in driver.find_elements("css selector", ".error-card")
                             if e.text])
    assert "Cannot open this run" in card[0].text and "corrupt.h5" in card[0].text
    driver.get(live_server + "/run?id=..%2F..%2Fetc%2Fpasswd")
    card = wait_for(lambda: [e for e in driver.find_elements("css selector", ".error-card")
                             if e.text])
    assert "run id" in card[0].text
