"""Bundles from someone else (issue 28 items 1, 5, 6, 7 and the reader part of 12): crafted
files (tests/lcaviz/_hostile.py) are refused or reported with a clear message by the reader,
the runs table, the run page, the frames route and ``lcaviz summary``; the server lives on."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import tests.lcaviz._hostile as H
from lcaviz import cli
from lcaviz.app import create_app, get_state, ids
from lcaviz.app.pages import compare_views, run_callbacks, runs
from lcaviz.bundle import CorruptBundleError, RunBundle, scan_runs
from lcaviz.bundle.errors import RefusedBundleError, TruncatedBundleError

OUTSIDE = {"external_storage": H.external_storage, "external_link": H.external_link,
           "virtual_dataset": H.virtual_dataset, "soft_link_out": H.soft_link_out}
@functools.cache
def _init_callback() -> tuple[str, list[dict], list[dict]]:
    """The run page's first callback as the app registers it (input: the run id): its output
    key, outputs and states, so the request below follows the page as it changes."""
    app = create_app(tempfile.mkdtemp())
    for key, cb in app.callback_map.items():
        if [(i["id"], i["property"]) for i in cb["inputs"]] == [(ids.RUN_ID, "data")]:
            outputs = [dict(zip(("id", "property"), o.rsplit(".", 1), strict=True))
                       for o in key.strip(".").split("...")]
            return key, outputs, [{**st, "value": None} for st in cb.get("state", [])]
    raise LookupError("the run page has no callback on the run id")


def init_over_http(client, run_id: str):
    """The run page's first callback (run id -> header, error card ...) as the browser sends
    it; returns the Flask response."""
    key, outputs, states = _init_callback()
    body = {"output": key, "outputs": outputs, "state": states,
            "inputs": [{"id": ids.RUN_ID, "property": "data", "value": run_id}],
            "changedPropIds": [f"{ids.RUN_ID}.data"]}
    return client.post("/_dash-update-component", json=body)


def leaks(text: str, path: Path) -> bool:
    """Whether an answer names ``path`` (plain, or as Dash's JSON writes it: ``\\u002f``)."""
    return str(path) in text or str(path).replace("/", "\\u002f") in text


def frames(client, run_id: str, r1: int = 1):
    return client.get(f"/lcaviz/frames?run={run_id}&layer=0&mode=row&r0=0&r1={r1}")


def _scan_row(runs_dir: Path, run_id: str):
    return {i.path: i for i in scan_runs(runs_dir)}[run_id]


# -- item 1: nothing outside the file is ever read ------------------------------------------------
@pytest.mark.parametrize("kind", sorted(OUTSIDE))
def test_bundle_reaching_outside_itself_is_refused_everywhere(tmp_path, kind, capsys):
    runs_dir, outside = tmp_path / "runs", tmp_path / "outside"
    runs_dir.mkdir()
    p = OUTSIDE[kind](runs_dir / "evil.h5", outside)
    H.good(runs_dir / "good.h5")
    with pytest.raises(RefusedBundleError, match="refused"):
        RunBundle.open(p)
    info = _scan_row(runs_dir, "evil.h5")
    assert not info.ok and info.problem == "refused" and math.isnan(info.final_loss)
    assert str(tmp_path) not in info.error and info.error.startswith("evil.h5: refused")
    assert _scan_row(runs_dir, "good.h5").ok
    app = create_app(runs_dir)
    client = app.server.test_client()
    r = frames(client, "evil.h5")
    assert r.status_code == 404 and b"refused" in r.data
    assert b"root:x" not in r.data and b"STOLEN" not in r.data
    r = init_over_http(client, "evil.h5")
    assert r.status_code == 200 and "refused" in r.get_data(as_text=True)
    assert not leaks(r.get_data(as_text=True), tmp_path)  # the card names the run id only
    rows = {row["id"]: row for row in runs.run_rows(get_state(app))}
    assert rows["evil.h5"]["status"] == "refused" and rows["evil.h5"]["net"] == ""
    assert frames(client, "good.h5").status_code == 200  # the server is unaffected
    assert cli.main(["summary", str(p)]) == 2
    assert "refused" in capsys.readouterr().err


def test_symlinked_bundle_leaving_the_runs_dir_is_never_opened(tmp_path):
    runs_dir, outside = tmp_path / "runs", tmp_path / "outside"
    runs_dir.mkdir()
    outside.mkdir()
    target = H.external_link(outside / "theirs.h5", outside / "x")  # would raise if opened
    (runs_dir / "link.h5").symlink_to(target)
    opened = []
    infos = scan_runs(runs_dir, borrow=lambda path: opened.append(path) or RunBundle(path))
    assert opened == [] and infos[0].problem == "refused" and "outside" in infos[0].error
    rows = runs.run_rows(get_state(create_app(runs_dir)))
    assert rows[0]["status"] == "refused" and rows[0]["final_loss"] is None


# -- item 5: a damaged live-flagged file fails at once --------------------------------------------
def test_damaged_swmr_flagged_bundle_fails_fast_in_a_fresh_process(tmp_path):
    p = H.damaged_live(tmp_path / "damaged.h5")
    code = textwrap.dedent(f"""
        from lcaviz.bundle import CorruptBundleError, RunBundle
        try:
            RunBundle.open({str(p)!r})
        except CorruptBundleError as e:
            print("damaged:", e)
        """)
    # before the fix this took >= 10 minutes (SWMR retries); the bound is generous
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)  # lcaviz as this process imports it
    assert done.returncode == 0 and "damaged:" in done.stdout, done.stderr[-500:]


def test_damaged_bundle_is_listed_as_damaged_and_the_others_still_open(tmp_path):
    H.damaged_live(tmp_path / "damaged.h5")
    H.good(tmp_path / "good.h5")
    app = create_app(tmp_path)
    rows = {row["id"]: row for row in runs.run_rows(get_state(app))}
    assert rows["damaged.h5"]["status"] == "damaged" and rows["good.h5"]["status"] == "complete"
    client = app.server.test_client()
    assert frames(client, "damaged.h5").status_code == 404
    assert frames(client, "good.h5").status_code == 200


def test_probe_subprocess_bounds_an_open_where_attempts_cannot_be_set(tmp_path):
    from lcaviz.bundle import h5safety

    p = H.damaged_live(tmp_path / "damaged.h5")
    with pytest.raises(CorruptBundleError, match="damaged"):
        h5safety.probe_live(p, timeout=3)
    h5safety.probe_live(H.good(tmp_path / "good.h5"), timeout=60)  # a healthy file passes


# -- item 6: declared sizes are checked before anything is read -----------------------------------
@pytest.mark.parametrize("make", [H.huge_declared, H.long_series],
                         ids=["6x2.5e8-lca", "T=2e8-series"])
def test_tiny_file_declaring_gigabytes_is_refused_before_reading(tmp_path, make):
    p = make(tmp_path / "huge.h5")
    assert p.stat().st_size < 1_000_000
    with pytest.raises(RefusedBundleError, match="declares"):
        RunBundle.open(p)
    assert _scan_row(tmp_path, "huge.h5").problem == "refused"


def test_frame_requests_read_a_bounded_number_of_rows(tmp_path, monkeypatch):
    from lcaviz.app import frames as frames_module

    H.good(tmp_path / "good.h5", T=40, sizes=(400, 600))
    client = create_app(tmp_path).server.test_client()
    monkeypatch.setattr(frames_module, "READ_BUDGET_BYTES", 600 * 8 * 5)  # 5 rows of layer 1
    r = client.get("/lcaviz/frames?run=good.h5&layer=1&mode=row&r0=0&r1=40")
    head = json.loads(r.data[4:4 + int.from_bytes(r.data[:4], "little")])
    assert r.status_code == 200 and (head["r0"], head["r1"]) == (0, 5)


def test_final_loss_reads_one_value(tmp_path):
    with RunBundle.open(H.good(tmp_path / "g.h5")) as b:
        assert b.final_loss() == pytest.approx(float(b.loss_train()[-1]))


# -- item 7: malformed bundles give clear cards, and the compare page keeps the good runs ---------
@pytest.mark.parametrize("kind", H.MALFORMED)
def test_malformed_bundle_gives_an_error_card_not_a_500(tmp_path, kind):
    H.malformed(tmp_path / "bad.h5", kind)
    H.good(tmp_path / "a.h5")
    H.good(tmp_path / "b.h5")
    app = create_app(tmp_path)
    state = get_state(app)
    client = app.server.test_client()
    out = run_callbacks.init_run(state, "bad.h5")
    assert out[0] is None and out[3] is not None  # no meta; an error card
    r = init_over_http(client, "bad.h5")
    assert r.status_code == 200 and "error-card" in r.get_data(as_text=True)
    assert not leaks(r.get_data(as_text=True), tmp_path)
    assert frames(client, "bad.h5").status_code == 404
    cards, opts, _, style = compare_views.page_state(state, ["a.h5", "bad.h5", "b.h5"])
    assert len(cards) == 1 and opts and style == {}  # the good runs are compared
    streams = compare_views.streams(state, ["a.h5", "bad.h5", "b.h5"], "row", opts[0]["value"])
    assert [bool(s.get("error")) for s in streams] == [False, True, False]


def test_heatmap_of_a_layer_the_run_does_not_have_is_a_message(tmp_path):
    H.good(tmp_path / "a.h5")
    state = get_state(create_app(tmp_path))
    meta = run_callbacks.init_run(state, "a.h5")[0]
    for layer in (99, -1, "x"):
        stream, plan = run_callbacks.heatmap_stream(state, "a.h5", meta, layer, "row", 1,
                                                    "fixed", "auto", None)
        assert "error" in stream and plan is None


# -- item 12 (reader): a cut-off bundle says so instead of reading zeros --------------------------
@pytest.mark.parametrize("how", ["eof", "never"])
def test_truncated_bundle_says_it_is_truncated(tmp_path, how):
    p = H.truncated(tmp_path / "cut.h5", how)
    with pytest.raises(TruncatedBundleError, match="truncated bundle"):
        RunBundle.open(p)
    info = _scan_row(tmp_path, "cut.h5")
    assert info.problem == "truncated" and info.error.startswith("cut.h5: truncated")
    r = init_over_http(create_app(tmp_path).server.test_client(), "cut.h5")
    text = r.get_data(as_text=True)
    assert "truncated" in text and "cut.h5" in text and not leaks(text, tmp_path)
