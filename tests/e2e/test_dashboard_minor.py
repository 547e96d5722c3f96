"""End-to-end checks of issue 27's minor list in headless Chromium: the palette is remembered
and repaints, Space plays from the slider, the modebar clears the image, compare's go-to lands
on the iteration typed.

Every step waits for a condition in the page (never a fixed sleep).
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import serve
from tests.e2e.test_browser import open_run, player, wait_for
from tests.e2e.test_dashboard_defects import scroll_click

pytestmark = pytest.mark.e2e


# -- minor list and paper figures ----------------------------------------------------------------
def test_palette_is_remembered_space_plays_from_the_slider_and_modebar_clears_the_image(
        driver, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from tests.e2e.test_browser import PIXELS, TWO_FRAMES, control

    open_run(driver, live_server, "fc.h5")
    wait_for(lambda: driver.execute_script(
        "return window.lcaviz.players.run.views[0].gd() !== null"))
    driver.execute_async_script(TWO_FRAMES)
    green = driver.execute_script(PIXELS)
    scroll_click(driver, driver.find_element(By.CSS_SELECTOR,
                                             "#run-palette input[value=blueorange]"))
    wait_for(lambda: driver.execute_script("return window.lcaviz.palette()") == "blueorange")
    driver.execute_async_script(TWO_FRAMES)
    assert driver.execute_script(PIXELS) != green  # repainted in the other colours
    # the modebar sits above the image, not over its top rows
    wait_for(lambda: driver.execute_script(
        "return document.querySelector('#run-heatmap .modebar') !== null"))
    bottom, top = driver.execute_script("""
        var m = document.querySelector('#run-heatmap .modebar').getBoundingClientRect();
        var v = window.lcaviz.players.run.views[0], h = v.host().getBoundingClientRect();
        return [m.bottom, h.top + v.axes(0)[1]._offset];""")
    assert bottom <= top + 1
    # another page load (same browser): the choice is remembered
    open_run(driver, live_server, "fc_seed3.h5")
    assert wait_for(lambda: driver.find_element(
        By.CSS_SELECTOR, "#run-palette input[value=blueorange]").is_selected())
    assert driver.execute_script("return window.lcaviz.palette()") == "blueorange"
    scroll_click(driver, driver.find_element(By.CSS_SELECTOR,
                                             "#run-palette input[value=redgreen]"))
    wait_for(lambda: driver.execute_script("return window.lcaviz.palette()") == "redgreen")
    # Space plays and pauses while the slider has the focus
    slider = control(driver, "slider")
    driver.execute_script("arguments[0].focus()", slider)
    slider.send_keys(Keys.SPACE)
    wait_for(lambda: player(driver)["playing"])
    slider.send_keys(Keys.SPACE)
    wait_for(lambda: not player(driver)["playing"])


def test_compare_go_to_lands_on_the_iteration_typed(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from lcaviz.bundle.synthetic import write_synthetic_bundle
    from tests.e2e.runs_fixture import FC_LAYERS
    from tests.e2e.test_browser import compare_state

    runs = tmp_path / "runs"
    runs.mkdir()
    for name, n in (("long.h5", 300), ("short.h5", 120)):  # 300: more than 200 fraction steps
        write_synthetic_bundle(runs / name, n_iters=n, layers=FC_LAYERS, n_classes=3, seed=1,
                               per_class=False)
    with serve(runs) as url:
        driver.get(url + "/compare?ids=long.h5&ids=short.h5")
        wait_for(lambda: (lambda c: c if c and all(v["paints"] for v in c["views"]) else None)(
            compare_state(driver)))
        box = driver.find_element(By.CSS_SELECTOR, "#cmp-player-bar [data-lca=goto]")
        for t in (100, 101, 299):
            box.clear()
            box.send_keys(str(t), Keys.ENTER)
            s = wait_for(lambda t=t: (lambda c: c if f"long.h5: it. {t} " in c["label"] + " "
                                      else None)(compare_state(driver)))
            assert driver.execute_script("return window.lcaviz.players.cmp.iteration()") == t
            assert s["axis"] == "fraction"


def test_the_url_holds_the_view_and_a_link_reopens_it(driver, live_server):
    from selenium.webdriver.common.by import By

    open_run(driver, live_server, "fc.h5")
    driver.execute_script("window.lcaviz.players.run.seek(17)")
    url = wait_for(lambda: (lambda u: u if "it=17" in u else None)(driver.current_url))
    assert "layer=fc1" in url and "mode=row" in url and "id=fc.h5" in url
    # a link to layer fc2, cumulative, iteration 23 opens that view
    driver.get(f"{live_server}/run?id=fc.h5&layer=fc2&mode=cumulative&it=23")
    s = wait_for(lambda: (lambda p: p if p and p["paints"] and p["mode"] == "cumulative" and
                          p["shown"] == 23 else None)(player(driver)))
    assert driver.execute_script(
        "return window.lcaviz.players.run.views[0].stream.layer_name") == "fc2"
    assert "cumulative" in s["label"] and "iteration" in driver.find_element(
        By.ID, "run-heatmap-title").text
