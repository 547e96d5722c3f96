"""End-to-end: a bundle whose names are HTML (issue 28 items 2 and 4) opened in headless
Chromium. Hovering the heatmap shows the names as text and runs no script; a link in a name is
not clickable anywhere on the page. Every step waits for a condition, never a fixed sleep."""

from __future__ import annotations

import pytest

from lcaviz.bundle.synthetic import write_synthetic_bundle
from tests.e2e.conftest import serve
from tests.e2e.test_browser import open_run, wait_for

pytestmark = pytest.mark.e2e
XSS = '<img src=x onerror="window.__xss=(window.__xss||0)+1">'
LINK = '<a href="https://evil.example/">click me</a>'


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("hostile") / "runs"
    runs.mkdir()
    write_synthetic_bundle(runs / "xss.h5", n_iters=12, layers=((XSS, (6, 8)), (LINK, (4, 5))),
                           n_classes=3, seed=0)
    with serve(runs) as url:
        yield url


def test_hovering_html_names_runs_no_script_and_links_are_text(driver, hostile_server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    open_run(driver, hostile_server, "xss.h5")
    host = driver.find_element(By.ID, "run-heatmap")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", host)
    x, y = driver.execute_script("""
        var v = window.lcaviz.players.run.views[0], ax = v.axes(0);
        return [ax[0]._offset + ax[0].l2p(3), ax[1]._offset + ax[1].l2p(2)];""")
    w, h = host.size["width"], host.size["height"]
    ActionChains(driver).move_to_element_with_offset(host, x - w / 2, y - h / 2).perform()
    tip = wait_for(lambda: (lambda t: t if "LCA" in t else None)(
        driver.find_element(By.ID, "run-heatmap-tip").text))
    wait_for(lambda: driver.execute_script(  # an <img> in the tip would have fired by now
        "return Array.from(document.images).every(function (i) { return i.complete; })"))
    assert driver.execute_script("return window.__xss") is None  # was 1: onerror ran
    assert tip.startswith(XSS) and "[2, 3]" in tip  # the name, shown as the text it is
    tags = driver.execute_script(
        "return Array.from(document.getElementById('run-heatmap-tip').querySelectorAll('*'))"
        ".map(function (e) { return e.tagName; })")
    assert set(tags) <= {"BR"}
    # the panels below (bars, curves: Plotly labels with the layer names) have drawn
    wait_for(lambda: driver.execute_script(
        "var g = document.querySelector('#run-layer-bars .js-plotly-plot');"
        "return g && g.data && g.data.length > 0"))
    assert "click me" in driver.execute_script("return document.body.innerText")
    assert driver.execute_script("return window.__xss") is None  # no onerror ever ran
    assert driver.execute_script(
        "return document.querySelectorAll('a[href*=\"evil.example\"]').length") == 0
    assert driver.execute_script("return document.querySelectorAll('img[src=x]').length") == 0
