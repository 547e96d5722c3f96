"""End-to-end: the run page's Examples section in headless Chromium (issue 24 item 4).

A synthetic bundle with per-example LCA and 28 × 28 thumbnails: the section paints the
thumbnails of the current frame, they change with the slider, frames of a cached block cost no
request and a new block one bounded request; a click shows the example's curves; a label or
text from the bundle stays text; with validation examples and heads, choosing validation and
a head repaints the thumbnails and the player's window mode ranks the window sums. Every step
waits for a condition (never a fixed sleep).
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import serve
from tests.e2e.test_browser import TWO_FRAMES, control, open_run, wait_for
from tests.e2e.test_dashboard_defects import choose, scroll_click

pytestmark = pytest.mark.e2e
N_ITERS = 70  # 70 rows: blocks of 32 rows, so the slider crosses from block 0 into block 1

# what the section shows: its painted row, the positions / image sources of every strip,
# and the requests it made (block fetches of /lcaviz/examples)
SHOWN = """
var e = window.lcaviz && window.lcaviz.examples;
if (!e || !e.stream || !e.paints) return null;
var strips = Array.from(document.querySelectorAll('#run-ex-grid .ex-strip')).map(function (s) {
  return Array.from(s.querySelectorAll('.ex-cell')).filter(function (c) {
    return c.style.display !== 'none'; }).map(function (c) {
      var img = c.querySelector('img');
      return {pos: c.dataset.pos, src: img.style.display === 'none' ? '' : img.src.slice(0, 40),
              w: img.getBoundingClientRect().width, cap: c.querySelector('.ex-cap').textContent,
              text: c.querySelector('.ex-text').textContent}; }); });
var n = 0;
performance.getEntriesByType('resource').forEach(function (r) {
  if (r.name.indexOf('/lcaviz/examples') >= 0) n++; });
return {row: e.shownRow, paints: e.paints, strips: strips, requests: n, blocks: e.blocks.size,
        title: document.getElementById('run-ex-title').textContent,
        hist: e.histPaints || 0, pending: e.pending.size, split: e.stream.split,
        scope: e.stream.scope, window: e.stream.window};
"""


@pytest.fixture(scope="module")
def examples_server(tmp_path_factory):
    from lcaviz.bundle.synthetic import write_synthetic_bundle

    runs = tmp_path_factory.mktemp("ex-e2e")
    write_synthetic_bundle(runs / "ex.h5", n_iters=N_ITERS, layers=(("fc1", (12, 20)),
                                                                   ("fc2", (3, 12))),
                           n_classes=3, seed=0, per_class=False, examples=200, thumbnail=28)
    write_synthetic_bundle(runs / "text.h5", n_iters=10, layers=(("fc1", (6, 8)),),
                           n_classes=3, seed=1, per_class=False, examples=40, thumbnail=0,
                           example_text=True)
    _hostile_texts(runs / "text.h5")
    write_synthetic_bundle(runs / "many.h5", n_iters=10, layers=(("fc1", (6, 8)),),
                           n_classes=40, seed=3, per_class=False, examples=120, thumbnail=0,
                           example_text=True)
    write_synthetic_bundle(runs / "vg.h5", n_iters=40, layers=(("fc1", (12, 20)), ("fc2", (3, 12))),
                           n_classes=3, seed=2, per_class=False, examples=120, thumbnail=28,
                           val_lca=True, val_examples=80, heads=2)
    with serve(runs) as url:
        yield url, runs


EVIL = '<img src=x onerror="window.__pwned=1">'


def _hostile_texts(path) -> None:
    """Every third example's text replaced by markup (a bundle may come from anyone)."""
    import h5py

    with h5py.File(path, "r+") as f:
        ds = f["examples/text"]
        texts = ds[()]
        texts[::3] = EVIL.encode()
        ds[...] = texts


def shown(driver) -> dict | None:
    return driver.execute_script(SHOWN)


def _slider_to(driver, index: int) -> None:
    """Move the frame slider as a user's drag does (an input event on the range)."""
    driver.execute_script(
        "var s = arguments[0]; s.value = String(arguments[1]);"
        "s.dispatchEvent(new Event('input', {bubbles: true}));", control(driver, "slider"), index)


def test_examples_paint_thumbnails_and_follow_the_slider(driver, examples_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_run(driver, examples_server[0], "ex.h5")
    first = wait_for(lambda: (lambda s: s if s and s["row"] == 0 else None)(shown(driver)))
    assert len(first["strips"]) == 4 and first["strips"][0], first
    cell = first["strips"][0][0]
    assert cell["src"].startswith("data:image/png;base64,") and cell["w"] >= 40
    assert cell["cap"].startswith("#") and "iteration 0" in first["title"]
    assert first["requests"] == 1  # one block of rows 0..31
    wait_for(lambda: shown(driver)["hist"] > 0)  # the histogram drew too

    # step within the cached block: new thumbnails, no request
    slider = control(driver, "slider")
    driver.execute_script("arguments[0].focus()", slider)
    seen = [first["strips"]]
    for k in range(1, 6):
        slider.send_keys(Keys.ARROW_RIGHT)
        s = wait_for(lambda k=k: (lambda x: x if x["row"] == k else None)(shown(driver)))
        assert f"iteration {k} " in s["title"] + " "
        seen.append(s["strips"])
    assert len({str(x[0]) for x in seen}) > 1  # "this frame · helped most" changed
    driver.execute_async_script(TWO_FRAMES)
    assert shown(driver)["requests"] == 1

    # into the next block: one more request, then its frames are free too
    _slider_to(driver, 40)
    s = wait_for(lambda: (lambda s: s if s["row"] == 40 else None)(shown(driver)))
    assert s["requests"] == 2 and s["blocks"] == 2
    for r in (41, 45, 33):
        _slider_to(driver, r)
        wait_for(lambda r=r: shown(driver)["row"] == r)
    assert shown(driver)["requests"] == 2
    # past the middle of a block the next one is fetched ahead (one request), after which
    # every frame of the run is cached
    _slider_to(driver, 50)
    wait_for(lambda: (lambda s: s["row"] == 50 and s["blocks"] == 3)(shown(driver)))
    for r in (69, 10, 64, 31):
        _slider_to(driver, r)
        wait_for(lambda r=r: shown(driver)["row"] == r)
    assert shown(driver)["requests"] == 3

    # a click follows one example through training (its loss and per-layer LCA)
    pos = s["strips"][2][0]["pos"]
    btn = driver.find_element(By.CSS_SELECTOR, f'#run-ex-grid .ex-strip[data-list="cumulative-'
                                               f'helped"] .ex-cell[data-pos="{pos}"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", btn)
    btn.click()
    title = wait_for(lambda: driver.execute_script(
        "var g = document.querySelector('#run-ex-detail .js-plotly-plot');"
        "return g && g.layout && g.layout.title && g.layout.title.text"))
    assert title.startswith("Example #")
    assert "ex-selected" in btn.get_attribute("class")


def test_text_examples_stay_text(driver, examples_server):
    open_run(driver, examples_server[0], "text.h5")
    s = wait_for(lambda: (lambda x: x if x and x["strips"][0] and x["strips"][1] else None)(
        shown(driver)))
    texts = [c["text"] for strip in s["strips"] for c in strip]
    assert all(c["src"] == "" for strip in s["strips"] for c in strip)
    assert any("(mod 3)" in t for t in texts) and EVIL in texts  # shown as the text it is
    assert driver.execute_script("return window.__pwned === undefined")
    assert not driver.find_elements("css selector", "#run-ex-grid img[src='x']")


def test_many_classes_fold_the_histogram_legend_into_one_line(driver, examples_server):
    """40 classes (modular addition has 97): one line, not a swatch per class; 3 classes keep
    their swatches."""
    def legend(run: str):
        open_run(driver, examples_server[0], run)
        wait_for(lambda: driver.execute_script(
            "var e = window.lcaviz.examples; return e && e.histPaints"))
        return driver.execute_script(
            "var l = document.querySelector('#run-ex-hist .ex-legend');"
            "return [l.querySelectorAll('.ex-legend-item').length, l.textContent]")

    items, text = legend("many.h5")
    assert items == 0 and text.startswith("40 classes (colours repeat every "), text
    items, text = legend("text.h5")
    assert items >= 3 and "class 0" in text and "colours repeat" not in text, text


def _top(values, k: int = 8) -> list[str]:
    """Positions of the k most negative values below 0 (a "helped most" strip)."""
    import numpy as np

    o = np.argsort(values, kind="stable")[:k]
    return [str(p) for p in o[values[o] < 0]]


def test_validation_examples_heads_and_the_window_mode(driver, examples_server):
    from selenium.webdriver.common.by import By

    from lcaviz.bundle import RunBundle

    url, runs = examples_server
    with RunBundle.open(runs / "vg.h5") as b:
        head = b.example_lca_rows(split="val", by="group")[..., [0, 2]].sum(-1)  # fc1 head 0
    open_run(driver, url, "vg.h5")
    train = wait_for(lambda: (lambda s: s if s and s["row"] == 0 else None)(shown(driver)))
    assert train["split"] == "train" and "validation" not in train["title"]
    assert driver.find_element(By.ID, "run-ex-split-wrap").is_displayed()

    # validation: a new stream, one block request, other thumbnails
    scroll_click(driver, driver.find_element(By.CSS_SELECTOR, '#run-ex-split input[value="val"]'))
    val = wait_for(lambda: (lambda s: s if s["split"] == "val" and s["row"] == 0 and
                            "validation" in s["title"] else None)(shown(driver)))
    assert val["requests"] == train["requests"] + 1
    assert "80 tracked validation examples" in val["title"]
    assert val["strips"] != train["strips"]

    # head 0 of fc1 (its q + k groups): the strip is the top-8 of their summed values
    choose(driver, "run-ex-scope", "head 0 of fc1")
    s = wait_for(lambda: (lambda s: s if s["scope"] == "head:fc1.head0" and
                          s["title"].startswith("head 0 of fc1") else None)(shown(driver)))
    assert [c["pos"] for c in s["strips"][0]] == _top(head[0])
    assert s["strips"][0][0]["src"].startswith("data:image/png;base64,")

    # the player's "sum over last W rows" (W = 10): "this frame" ranks the window sums
    _slider_to(driver, 20)
    wait_for(lambda: shown(driver)["row"] == 20)
    row_lists = [c["pos"] for c in shown(driver)["strips"][0]]
    assert row_lists == _top(head[20])
    scroll_click(driver, driver.find_element(By.CSS_SELECTOR, '#run-mode input[value="window"]'))
    s = wait_for(lambda: (lambda s: s if s["window"] == 10 and s["row"] == 20 and
                          "window sum" in s["title"] else None)(shown(driver)))
    want = _top(head[11:21].sum(0))
    assert [c["pos"] for c in s["strips"][0]] == want and want != row_lists
    assert [c["pos"] for c in s["strips"][2]] == _top(head[:21].sum(0))  # cumulative stays
    assert "window sum, iterations 11–20" in s["title"]
    assert driver.find_element(By.CSS_SELECTOR, '.ex-strip[data-list="row-helped"] .ex-label'
                               ).text.startswith("last 10 rows")
    # past the middle of block 0 the page fetched block 1 ahead: then every frame is cached,
    # and moving costs no request
    before = wait_for(lambda: (lambda x: x["requests"] if x["blocks"] == 2 and not x["pending"]
                               else None)(shown(driver)))
    for r in (21, 25, 5):
        _slider_to(driver, r)
        got = wait_for(lambda r=r: (lambda x: x if x["row"] == r else None)(shown(driver)))
        assert [c["pos"] for c in got["strips"][0]] == _top(head[max(0, r - 9):r + 1].sum(0))
    driver.execute_async_script(TWO_FRAMES)
    assert shown(driver)["requests"] == before
