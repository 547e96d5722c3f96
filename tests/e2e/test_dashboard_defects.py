"""End-to-end checks of issue 27's defects, in headless Chromium: what the page shows (the
per-frame colour range, a click on a transformer's heatmap, ticks in the runs table, compare's
colour scales, a layer without rows, no "Share chart…" button, queued background jobs, the
head view).

Every step waits for a condition in the page (never a fixed sleep), so the tests hold on a
loaded machine.
"""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from tests.e2e.conftest import serve, serve_app
from tests.e2e.test_browser import ROOT, body_text, open_run, player, wait_for

pytestmark = pytest.mark.e2e

# the share of the heatmap canvas's pixels (inside the first subplot) that are not white
PAINTED = """
var v = window.lcaviz.players.run.views[0], c = document.querySelector('#run-heatmap canvas');
var ax = v.axes(0), dpr = window.devicePixelRatio || 1;
var x = Math.round(ax[0]._offset * dpr), y = Math.round(ax[1]._offset * dpr);
var w = Math.round(ax[0]._length * dpr), h = Math.round(ax[1]._length * dpr);
var d = c.getContext('2d').getImageData(x, y, w, h).data, n = 0;
for (var i = 0; i < d.length; i += 4) if (d[i] < 245 || d[i + 1] < 245 || d[i + 2] < 245) n++;
return n / (d.length / 4);
"""


def scroll_click(driver, element) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def choose(driver, dropdown_id: str, text_start: str) -> None:
    """Pick the option of a dcc.Dropdown whose text starts with ``text_start``."""
    from selenium.webdriver.common.by import By

    scroll_click(driver, driver.find_element(By.ID, dropdown_id))
    wait_for(lambda: [o for o in driver.find_elements(By.CSS_SELECTOR, "[role=option]")
                      if o.text.strip().startswith(text_start)])[0].click()


@pytest.fixture(scope="module")
def grok_url(tmp_path_factory):
    """The committed transformer sample (q and k stored with rows, the other layers not)."""
    runs = tmp_path_factory.mktemp("grok") / "runs"
    runs.mkdir()
    shutil.copy(ROOT / "sample_runs" / "grokking_transformer.h5", runs / "grok.h5")
    with serve(runs) as url:
        yield url


# -- 1 --------------------------------------------------------------------------------------------
def test_per_frame_colour_range_paints_this_iteration(driver, live_server, e2e_runs_dir):
    """Frames cached under "fixed over run" carry their own range: "per frame" paints them."""
    from selenium.webdriver.common.by import By

    from lcaviz.figures.layout2d import symmetric_limit
    from tests.e2e.test_player import _server_frame

    open_run(driver, live_server, "fc.h5")
    wait_for(lambda: driver.execute_script(
        "return window.lcaviz.players.run.views[0].gd() !== null"))
    scroll_click(driver, driver.find_element(By.CSS_SELECTOR, "#run-range-mode input[value=frame]"))
    s = wait_for(lambda: (lambda p: p if p and driver.execute_script(
        "return window.lcaviz.players.run.views[0].stream.range_mode") == "frame" and
        p["paints"] else None)(player(driver)))
    zmax = driver.execute_script("return window.lcaviz.players.run.views[0].zmax()")
    plan = driver.execute_script("return window.lcaviz.players.run.views[0].stream.items")
    want = symmetric_limit(np.asarray(_server_frame(e2e_runs_dir, "fc.h5", plan, s["shown"],
                                                    "row", 1), np.float32), 99.5)
    assert zmax == pytest.approx(want, rel=1e-5) and zmax < 0.5  # not the fallback ±1
    info = wait_for(lambda: (lambda t: t if "this frame" in t else None)(
        driver.find_element(By.ID, "run-heatmap-info").text))
    assert "±1 " not in info
    assert wait_for(lambda: driver.execute_script(PAINTED)) > 0.3  # colours, not a blank


# -- 2 and 8 --------------------------------------------------------------------------------------
def test_transformer_click_drills_down_and_head_view_is_named(driver, grok_url):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from lcaviz.bundle import RunBundle

    open_run(driver, grok_url, "grok.h5")
    wait_for(lambda: driver.execute_script(
        "return window.lcaviz.players.run.views[0].gd() !== null"))
    wait_for(lambda: driver.find_elements(By.ID, "run-drill-info"))
    host = driver.find_element(By.ID, "run-heatmap")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", host)
    # cell (row 36, column 34) of blocks.0.attn.q.weight (4 heads × 64 × 16): head 2, [36, 2]
    x, y = driver.execute_script("""
        var v = window.lcaviz.players.run.views[0], ax = v.axes(0);
        return [ax[0]._offset + ax[0].l2p(34), ax[1]._offset + ax[1].l2p(36)];""")
    w, h = host.size["width"], host.size["height"]
    ActionChains(driver).move_to_element_with_offset(host, x - w / 2, y - h / 2).perform()
    tip = wait_for(lambda: driver.find_element(By.ID, "run-heatmap-tip").text)
    assert tip.startswith("blocks.0.attn.q.weight[2, 36, 2]")
    ActionChains(driver).click().perform()
    with RunBundle.open(ROOT / "sample_runs" / "grokking_transformer.h5") as b:
        offset = int(b.params.set_index("name").loc["blocks.0.attn.q.weight", "offset"])
    flat = offset + 2 * 64 * 16 + 36 * 16 + 2
    info = wait_for(lambda: driver.find_element(By.ID, "run-drill-info").text)
    assert info.startswith("blocks.0.attn.q.weight[2, 36, 2]") and f"#{flat:,}" in info
    assert wait_for(lambda: driver.execute_script(
        "var g=document.querySelector('#run-drill .js-plotly-plot');"
        "return g && g.data ? g.data.length : 0")) >= 2
    # defect 8: head 2 of the layer is named, with its own size, LCA and axes
    choose(driver, "run-heat-group", "head2")
    wait_for(lambda: driver.execute_script(
        "var v = window.lcaviz.players.run.views[0];"
        "return v.stream.group && v.frame && v.gd() !== null"))
    title = wait_for(lambda: (lambda t: t if "head2" in t else None)(
        driver.find_element(By.ID, "run-heatmap-title").text))
    assert title.startswith("blocks.0.attn.q · head2 — LCA")
    info = driver.find_element(By.ID, "run-heatmap-info").text
    assert info.startswith("1,024 parameters in head2 (of 4,096 in the layer) · head2 LCA")
    axes = driver.execute_script(
        "var g = document.querySelector('#run-heatmap .lca-axes');"
        "return [g.layout.xaxis.title.text, g.layout.yaxis.title.text]")
    assert axes == ["d_head of head2", "d_model"]


# -- 5 --------------------------------------------------------------------------------------------
def test_layer_without_rows_says_so_and_shows_its_curve(driver, grok_url):
    from selenium.webdriver.common.by import By

    open_run(driver, grok_url, "grok.h5")
    wait_for(lambda: "parameters · layer LCA" in driver.find_element(
        By.ID, "run-heatmap-info").text)
    choose(driver, "run-layer", "blocks.0.attn.v")
    wait_for(lambda: driver.execute_script(
        "var v = window.lcaviz.players.run.views[0];"
        "return v.stream.layer_name === 'blocks.0.attn.v' && v.gd() !== null"))
    title = driver.find_element(By.ID, "run-heatmap-title").text
    info = driver.find_element(By.ID, "run-heatmap-info").text
    assert title == "blocks.0.attn.v — per-layer LCA only"
    assert "was not stored" in info and "--lca-layers" in info
    assert "parameters · layer LCA" not in info  # nothing left from the previous layer
    text = body_text(driver)
    assert "undefined" not in text and "Cannot read this run" not in text
    assert "/runs/" not in text and str(ROOT) not in text  # no server path
    n = driver.execute_script(
        "var g = document.querySelector('#run-heatmap .lca-axes');"
        "return g && g.data ? g.data.length : 0")
    assert n >= 1  # the layer's curve


# -- 3 --------------------------------------------------------------------------------------------
def test_run_ticks_follow_run_ids_through_filter_and_sort(driver, live_server):
    from selenium.webdriver.common.by import By

    def rows():
        out = {}
        for r in driver.find_elements(By.CSS_SELECTOR, ".dash-spreadsheet tbody tr"):
            box = r.find_elements(By.CSS_SELECTOR, "input[type=checkbox]")
            if box and r.text.split():
                out[r.text.split()[0]] = box[0].is_selected()
        return out

    def open_href():
        return driver.find_element(By.ID, "runs-open").get_attribute("href") or ""

    driver.get(live_server + "/")
    wait_for(lambda: "fc_seed3.h5" in rows() and "fc.h5" in rows())
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, ".dash-spreadsheet tbody tr")
               if r.text.split()[:1] == ["fc.h5"])
    row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    wait_for(lambda: open_href().endswith("/run?id=fc.h5"))
    box = driver.find_element(By.ID, "runs-filter")
    box.send_keys("seed3")  # fc.h5 hidden: fc_seed3.h5 takes its row position
    wait_for(lambda: list(rows()) == ["fc_seed3.h5"])
    wait_for(lambda: "hidden by the filter" in driver.find_element(By.ID, "runs-hint").text)
    assert rows() == {"fc_seed3.h5": False} and open_href().endswith("/run?id=fc.h5")
    box.send_keys("\b" * 5)
    wait_for(lambda: len(rows()) >= 3)
    assert rows()["fc.h5"] is True and sum(rows().values()) == 1
    # sorted by iterations, the rows move and the tick stays with fc.h5
    before = list(rows())
    driver.find_element(By.CSS_SELECTOR, 'th[data-dash-column="iterations"] '
                                         ".column-header--sort").click()
    wait_for(lambda: list(rows()) != before and len(rows()) == len(before))
    assert rows()["fc.h5"] is True and sum(rows().values()) == 1
    assert open_href().endswith("/run?id=fc.h5")


# -- 4 --------------------------------------------------------------------------------------------
def test_compare_scales_window_rows_per_iteration(driver, tmp_path):
    from selenium.webdriver.common.by import By

    from lcaviz.bundle.synthetic import write_synthetic_bundle
    from tests.e2e.runs_fixture import FC_LAYERS

    runs = tmp_path / "runs"
    runs.mkdir()
    for name, stride in (("every.h5", 1), ("window5.h5", 5)):
        write_synthetic_bundle(runs / name, n_iters=40, layers=FC_LAYERS, n_classes=3, seed=0,
                               per_class=False, stride=stride)
    state = """
    var p = window.lcaviz && window.lcaviz.players.cmp;
    if (!p || p.views.length < 2) return null;
    return p.views.map(function (v) { return {paints: v.paints, zmax: v.frame ? v.zmax() : 0,
      own: v.stream && v.stream.own_zmax, note: v.stream && v.stream.scale_note,
      per: v.stream && v.stream.per_iteration}; });
    """
    with serve(runs) as url:
        driver.get(url + "/compare?ids=every.h5&ids=window5.h5")
        s = wait_for(lambda: (lambda c: c if c and all(v["paints"] and v["zmax"] for v in c)
                              else None)(driver.execute_script(state)))
        # default: one shared range, window rows divided by their 5 iterations
        assert all(v["per"] and v["note"] == "shared" for v in s)
        assert s[0]["zmax"] == pytest.approx(s[1]["zmax"])
        title = driver.find_element(By.ID, "cmp-heat-1-title").text
        assert "per iteration (shared by all runs)" in title
        per_it_shared = s[0]["zmax"]
        scroll_click(driver, driver.find_element(By.CSS_SELECTOR,
                                                 "#cmp-norm input[value=sum]"))
        s = wait_for(lambda: (lambda c: c if c and not c[0]["per"] and c[0]["zmax"] else None)(
            driver.execute_script(state)))
        # as stored, the shared range is the window sums' (the issue's blank SGD panel)
        assert s[0]["zmax"] == pytest.approx(s[1]["own"]) and s[0]["zmax"] > per_it_shared
        scroll_click(driver, driver.find_element(By.CSS_SELECTOR,
                                                 "#cmp-scale input[value=own]"))
        s = wait_for(lambda: (lambda c: c if c and c[0]["note"] == "this run" else None)(
            driver.execute_script(state)))
        wait_for(lambda: (lambda c: c[0]["zmax"] == pytest.approx(c[0]["own"]) and
                          c[1]["zmax"] == pytest.approx(c[1]["own"]))(
            driver.execute_script(state)))
        s = driver.execute_script(state)
        assert s[0]["zmax"] < s[1]["zmax"]  # each run its own range


# -- 6 --------------------------------------------------------------------------------------------
def test_no_share_chart_button_on_the_page_or_in_the_report(driver, live_server, download_dir):
    from selenium.webdriver.common.by import By

    buttons = """return Array.from(document.querySelectorAll('.modebar-btn')).map(
        function (b) { return b.getAttribute('data-title') || ''; });"""
    open_run(driver, live_server, "fc.h5")
    wait_for(lambda: driver.execute_script(
        "return document.querySelectorAll('#run-loss .modebar-btn').length"))
    wait_for(lambda: driver.execute_script(
        "return document.querySelectorAll('#run-heatmap .modebar-btn').length"))
    titles = driver.execute_script(buttons)
    assert titles and not [t for t in titles if "Share" in t or "Download plot" in t]
    before = set(download_dir.iterdir())
    scroll_click(driver, driver.find_element(By.ID, "run-report"))
    new = wait_for(lambda: [p for p in download_dir.iterdir() if p not in before
                            and p.suffix == ".html"], timeout=120)
    wait_for(lambda: "</html>" in new[0].read_text(errors="replace"))
    driver.get(new[0].as_uri())
    wait_for(lambda: driver.execute_script(
        "return document.querySelectorAll('.modebar-btn').length"))
    titles = driver.execute_script(buttons)
    assert titles and not [t for t in titles if "Share" in t or "Download plot" in t]


# -- 7 --------------------------------------------------------------------------------------------
def test_queued_job_is_shown_and_leaving_the_page_cancels_it(driver, tmp_path):
    from selenium.webdriver.common.by import By

    from lcaviz.app import create_app, get_state
    from lcaviz.app.jobs import JobRunner
    from lcaviz.bundle.synthetic import write_synthetic_bundle
    from tests.e2e.runs_fixture import FC_LAYERS

    runs = tmp_path / "runs"
    runs.mkdir()
    write_synthetic_bundle(runs / "a.h5", n_iters=30, layers=FC_LAYERS, n_classes=3)
    app = create_app(runs)
    state = get_state(app)
    state.jobs = JobRunner(max_workers=1)
    release, began = threading.Event(), threading.Event()

    def other_runs_job():
        began.set()
        release.wait(120)
        return None

    state.jobs.status(("other",), other_runs_job, label="value scan of other.h5")
    assert began.wait(30)
    try:
        with serve_app(app) as url:
            open_run(driver, url, "a.h5")
            status = wait_for(lambda: (lambda t: t if "queue" in t else None)(
                driver.find_element(By.ID, "run-weibull-status").text))
            assert "number 1 in the queue" in status
            assert "running now: value scan of other.h5" in status
            queued = [k for k in state.jobs._jobs if k and k[0] == "scan"]
            assert len(queued) == 1, queued
            driver.find_element(By.CSS_SELECTOR, "a.btn.ghost[href='/']").click()
            wait_for(lambda: "Runs" in driver.find_element(By.TAG_NAME, "h1").text)
            wait_for(lambda: queued[0] not in state.jobs._jobs)  # the beacon cancelled it
            release.set()
            assert state.jobs.peek(queued[0]) is None  # never ran, not cached
    finally:
        release.set()
        state.jobs.shutdown()
