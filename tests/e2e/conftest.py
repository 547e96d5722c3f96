"""Fixtures for the browser tests: a live dashboard on a free loopback port and a headless
Chromium driven by selenium + /usr/bin/chromedriver (skipped when any of them is missing)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.runs_fixture import make_runs_dir

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def e2e_runs_dir(tmp_path_factory) -> Path:
    return make_runs_dir(tmp_path_factory.mktemp("e2e"))


@contextmanager
def serve_app(app):
    """A Dash ``app`` already made served by werkzeug (threaded) in a background thread;
    yields its base URL."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log in test output
    port = _free_port()
    srv = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.shutdown()
        thread.join(timeout=10)


@contextmanager
def serve(runs_dir: Path):
    """The app for ``runs_dir`` served as :func:`serve_app` does; yields its base URL."""
    from lcaviz.app import create_app

    with serve_app(create_app(runs_dir)) as url:
        yield url


@pytest.fixture(scope="session")
def live_server(e2e_runs_dir):
    with serve(e2e_runs_dir) as url:
        yield url


def chrome_options(download_dir: str | None = None, size: str = "1400,1000"):
    """Headless Chromium options for tests and screenshots (fresh profile every time)."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tempfile.mkdtemp(prefix='lcaviz-chrome-')}",
                f"--window-size={size}"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    if download_dir:
        opts.add_experimental_option("prefs", {
            "download.default_directory": download_dir, "download.prompt_for_download": False,
            "safebrowsing.enabled": False})
    return opts


@pytest.fixture(scope="session")
def download_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def driver(download_dir):
    missing = not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists())
    if os.environ.get("CI") and missing:  # CI installs them: a skip there would hide a failure
        pytest.fail("chromium / chromedriver not installed (scripts/setup.sh installs them)")
    pytest.importorskip("selenium")
    if missing:
        pytest.skip("chromium / chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    d = webdriver.Chrome(service=Service(CHROMEDRIVER),
                         options=chrome_options(str(download_dir)))
    d.execute_cdp_cmd("Page.setDownloadBehavior",
                      {"behavior": "allow", "downloadPath": str(download_dir)})
    d.set_page_load_timeout(30)
    yield d
    d.quit()
