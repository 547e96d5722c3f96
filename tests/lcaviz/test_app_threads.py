"""create_app from a thread other than the one that imported Dash (a notebook's server thread)."""

from __future__ import annotations

import threading


def test_create_app_works_in_another_thread(tmp_path):
    from lcaviz.app import create_app

    errors, apps = [], []

    def build() -> None:
        try:
            apps.append(create_app(tmp_path))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    t = threading.Thread(target=build)
    t.start()
    t.join()
    assert errors == [] and len(apps) == 1
    assert "/_dash-update-component" in [r.rule for r in apps[0].server.url_map.iter_rules()]
