"""End-to-end: the runs page's config queries in headless Chromium (issue 26 item 5)."""

from __future__ import annotations

from tests.e2e.test_browser import body_text, wait_for
from tests.e2e.test_browser_panels import table_names


def test_runs_query_filters_on_config_and_says_what_is_malformed(driver, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(live_server + "/")
    wait_for(lambda: "nested/conv.h5" in table_names(driver))
    box = driver.find_element(By.ID, "runs-filter")
    box.send_keys("optimizer=sgd seed>2")  # seed comes from each run's config
    wait_for(lambda: table_names(driver) == ["fc_seed3.h5"])
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("seed<<2")
    wait_for(lambda: "two operators" in body_text(driver))
    assert "showing all 5 runs" in body_text(driver) and len(table_names(driver)) == 5
