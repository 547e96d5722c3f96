"""End-to-end checks of what only the browser shows (issue 14, items 6, 8, 9, 10): text that
does not overlap, buttons and axes that are hidden, links, the filter box, compare exports.

Every step waits for a condition (never a fixed sleep), so the tests hold on a loaded machine.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_browser import body_text, wait_for

pytestmark = pytest.mark.e2e

# Bounding boxes of every non-empty text of a graph's SVG (titles, annotations, legend, ticks).
TEXT_BOXES = """
var root = document.querySelector(arguments[0] + ' .js-plotly-plot');
if (!root) return null;
var out = [];
root.querySelectorAll('svg text').forEach(function (t) {
  var s = (t.textContent || '').trim();
  if (!s) return;
  var r = t.getBoundingClientRect();
  if (r.width > 0 && r.height > 0) out.push([s, r.left, r.top, r.right, r.bottom]);
});
return out;
"""

DISPLAYED_AXES = """
return Array.from(document.querySelectorAll('.main-svg'))
  .filter(function (s) { return s.getClientRects().length > 0; }).length;
"""


def graph_title(driver, sel: str) -> str:
    return driver.execute_script(
        "var g = document.querySelector(arguments[0] + ' .js-plotly-plot');"
        "return g && g.layout && g.layout.title ? (g.layout.title.text || '') : ''", sel)


def overlaps(boxes, tol: float = 1.0) -> list:
    """Pairs of text boxes that intersect by more than ``tol`` pixels both ways."""
    bad = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            w = min(a[3], b[3]) - max(a[1], b[1])
            h = min(a[4], b[4]) - max(a[2], b[2])
            if w > tol and h > tol:
                bad.append((a[0], b[0]))
    return bad


def click(driver, element) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


# -- item 6 ----------------------------------------------------------------------------------------
def test_shift_test_panel_leads_with_pooled_result_without_overlapping_text(driver, live_server):
    from selenium.webdriver.common.by import By

    driver.get(live_server + "/run?id=fc.h5")
    run = wait_for(lambda: driver.find_element(By.ID, "run-sync-run"))
    wait_for(lambda: "Press" in str(driver.execute_script(TEXT_BOXES, "#run-sync-test")))
    click(driver, run)
    title = wait_for(lambda: (lambda t: t if "pooled" in t else None)(
        graph_title(driver, "#run-sync-test")), timeout=90)
    assert title.startswith("All 3 classes pooled") and "p " in title
    boxes = wait_for(lambda: (lambda b: b if b and any("cannot go below" in x[0] for x in b)
                              else None)(driver.execute_script(TEXT_BOXES, "#run-sync-test")))
    texts = " ".join(b[0] for b in boxes)
    assert "class 0 only" in texts
    assert not overlaps(boxes), overlaps(boxes)


# -- item 8 ----------------------------------------------------------------------------------------
def test_report_button_is_hidden_on_an_error_page(driver, live_server):
    from selenium.webdriver.common.by import By

    driver.get(live_server + "/run?id=corrupt.h5")
    wait_for(lambda: [e for e in driver.find_elements(By.CSS_SELECTOR, ".error-card") if e.text])
    wait_for(lambda: not driver.find_element(By.ID, "run-report").is_displayed())
    driver.get(live_server + "/run?id=fc.h5")  # and it is there for a run that opens
    wait_for(lambda: driver.find_element(By.ID, "run-report").is_displayed())


def test_compare_without_runs_draws_no_empty_axes(driver, live_server):
    from selenium.webdriver.common.by import By

    driver.get(live_server + "/compare")
    wait_for(lambda: "Nothing to compare" in body_text(driver))
    # the overlay callbacks have answered (their graphs hold a figure) but nothing is shown
    wait_for(lambda: driver.execute_script(
        "var g = document.querySelector('#cmp-loss .js-plotly-plot');"
        "return g && g._fullLayout ? 1 : 0"))
    assert driver.execute_script(DISPLAYED_AXES) == 0
    assert not driver.find_element(By.ID, "cmp-body").is_displayed()


# -- item 9 ----------------------------------------------------------------------------------------
def table_names(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [c.text for c in driver.find_elements(
        By.CSS_SELECTOR, '.dash-spreadsheet td[data-dash-column="name"]')]


def test_runs_filter_sort_and_name_link(driver, live_server):
    from selenium.webdriver.common.by import By

    driver.get(live_server + "/")
    wait_for(lambda: "nested/conv.h5" in table_names(driver))
    head = driver.find_element(By.CSS_SELECTOR, 'th[data-dash-column="frames"]')
    assert "frames" in head.text
    for col in ("lr", "momentum", "batch_size", "seed", "status"):
        assert driver.find_elements(By.CSS_SELECTOR, f'th[data-dash-column="{col}"]'), col
    # sort by iterations (ascending): conv (30), fc_seed3 (40), fc (60); unreadable: no value
    click(driver, driver.find_element(
        By.CSS_SELECTOR, 'th[data-dash-column="iterations"] .column-header--sort'))
    readable = ("nested/conv.h5", "fc_seed3.h5", "fc.h5")
    wait_for(lambda: [n for n in table_names(driver) if n in readable] == list(readable))
    box = driver.find_element(By.ID, "runs-filter")
    box.send_keys("seed3")
    wait_for(lambda: table_names(driver) == ["fc_seed3.h5"])
    assert "1 of 5 runs match" in body_text(driver)
    link = driver.find_element(By.CSS_SELECTOR, '.dash-spreadsheet td[data-dash-column="name"] a')
    click(driver, link)
    wait_for(lambda: "/run?id=fc_seed3.h5" in driver.current_url)
    wait_for(lambda: driver.find_element(By.ID, "run-header").text == "fc_seed3.h5")


# -- item 10 ---------------------------------------------------------------------------------------
def test_compare_heatmaps_have_export_buttons(driver, live_server, download_dir):
    from selenium.webdriver.common.by import By

    driver.get(live_server + "/compare?ids=fc.h5&ids=fc_seed3.h5")
    wait_for(lambda: driver.execute_script(
        "var g = document.querySelector('#cmp-heat-1-card .js-plotly-plot');"
        "return g && g.data && g.data.length"))
    for card in ("cmp-heat-0", "cmp-heat-1", "cmp-loss", "cmp-help", "cmp-layer-totals"):
        fmts = [b.text for b in driver.find_elements(
            By.CSS_SELECTOR, f"#{card}-card button.export-btn")]
        assert fmts == ["PNG", "SVG", "PDF", "CSV"], (card, fmts)
    before = set(download_dir.iterdir())
    click(driver, driver.find_element(By.CSS_SELECTOR,
                                      '#cmp-heat-1-card button.export-btn[id*="csv"]'))
    new = wait_for(lambda: [p for p in download_dir.iterdir() if p not in before
                            and p.name == "compare-cmp-heat-1.csv"], timeout=60)
    text = wait_for(lambda: (lambda t: t if t.count("\n") > 20 * 30 else None)(
        new[0].read_text()))
    assert text.startswith("trace,x,y,value")


def test_grokking_sample_opens_and_shows_bars_per_head(driver, tmp_path):
    """The committed transformer sample plays, and its bars switch from layers to heads."""
    import shutil

    from selenium.webdriver.common.by import By

    from tests.e2e.conftest import serve
    from tests.e2e.test_browser import ROOT, open_run

    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(ROOT / "sample_runs" / "grokking_transformer.h5", runs / "grok.h5")
    with serve(runs) as url:
        s = open_run(driver, url, "grok.h5")
        assert s["n"] == 36  # rows every 100 of 3,600 iterations

        def bar_labels():
            return driver.execute_script(
                "var g = document.querySelector('#run-layer-bars .js-plotly-plot');"
                "return g && g.data && g.data[0] ? g.data[0].x : null")

        assert wait_for(lambda: (bar_labels() or [None])[0] == "embed")
        assert "blocks.0.attn.q.head0" not in bar_labels()
        option = wait_for(lambda: [e for e in driver.find_elements(
            By.CSS_SELECTOR, "#run-bars-by input[type=radio]")
            if e.get_attribute("value") == "group" and e.is_enabled()])
        option[0].click()
        labels = wait_for(lambda: (lambda x: x if x and len(x) == 21 else None)(bar_labels()))
        assert "blocks.0.attn.q.head0" in labels and "blocks.0.attn.o.head3" in labels
        assert "LCA per group" in body_text(driver)
        # the heatmap's "head / part" menu zooms the image to one head (block 2 of q.weight)
        menu = driver.find_element(By.ID, "run-heat-group")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", menu)
        menu.click()  # (centred: the sticky player bar covers the top of the window)
        wait_for(lambda: [o for o in driver.find_elements(By.CSS_SELECTOR, "[role=option]")
                          if o.text.strip() == "head2"])[0].click()
        item = wait_for(lambda: driver.execute_script(
            "var v = window.lcaviz.players.run.views[0], it = v.stream && v.stream.items[0];"
            "return it && it.c0 === 32 && it.ncols === 16 && v.paints ? it : null"))
        assert (item["r0"], item["nrows"]) == (0, 64)  # head 2: a d_model × d_head block
