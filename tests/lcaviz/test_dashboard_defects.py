"""Issue 27 (the dashboard tried as a new user would) and issue 28 item 3 (CSV formula
injection), through the pages' plain functions, the job runner and the figure helpers; the
browser checks are in tests/e2e/test_dashboard_defects.py."""

from __future__ import annotations

import base64
import csv
import io
import threading
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from lcaviz.app import create_app, get_state, ids
from lcaviz.app.jobs import JobRunner
from lcaviz.app.pages import (
    compare_views,
    run_analysis,
    run_callbacks,
    run_exports,
    run_stream,
    runs,
)
from lcaviz.bundle.synthetic import write_synthetic_bundle
from lcaviz.figures.export import figure_csv, html_report, safe_cell
from lcaviz.figures.theme import PLOTLY_CONFIG
from tests.lcaviz._dashboard_runs import FC_LAYERS, _meta

EVIL = ('=HYPERLINK("http://evil/x","click me")', "@SUM(1,1)", "-2+3+cmd|' /C calc'!A0",
        "+1", "\tTAB")




# -- defect 3: ticks are run ids ------------------------------------------------------------------
def test_run_selection_is_by_id_through_filter_and_rescan():
    rows = [{"id": i, "status": "complete", "net": n}
            for i, n in (("sgd.h5", "fc"), ("adam.h5", "fc"), ("lenet.h5", "lenet"))]
    selected = runs.update_selection([0], rows, [])  # tick the first row: sgd.h5
    assert selected == ["sgd.h5"]
    shown, _, ticks = runs.table_with_selection(rows, "adam", selected)
    assert [r["id"] for r in shown] == ["adam.h5"] and ticks == []  # not ticked: not selected
    href, *_, hint = runs.selection_actions(selected, rows, shown)
    assert href == "/run?id=sgd.h5" and "1 hidden by the filter" in hint
    # ticking adam.h5 while sgd.h5 is hidden keeps both; a rescan that reorders rows keeps ids
    selected = runs.update_selection([0], shown, selected)
    assert selected == ["sgd.h5", "adam.h5"]
    reordered = rows[::-1]
    shown, _, ticks = runs.table_with_selection(reordered, "", selected)
    assert sorted(shown[i]["id"] for i in ticks) == ["adam.h5", "sgd.h5"]
    # unticking a shown row drops it only
    assert runs.update_selection([ticks[0]], shown, selected) == [shown[ticks[0]]["id"]]


# -- defect 4: compare colour scales --------------------------------------------------------------
def test_compare_streams_per_iteration_and_per_run_scales(strided):
    ids_ = ["every.h5", "window5.h5"]
    raw = compare_views.streams(strided, ids_, "row", "fc1", "own", "sum")
    per_it = compare_views.streams(strided, ids_, "row", "fc1", "own", "per_it")
    assert [s["per_iteration"] for s in per_it] == [True, True]
    assert not any(s["per_iteration"] for s in raw)
    # one-iteration rows are unchanged; every row of window5.h5 sums 5 iterations
    assert per_it[0]["zmax"] == pytest.approx(raw[0]["zmax"])
    assert per_it[1]["zmax"] == pytest.approx(raw[1]["zmax"] / 5, rel=1e-9)
    shared = compare_views.streams(strided, ids_, "row", "fc1", "shared", "sum")
    assert shared[0]["zmax"] == shared[1]["zmax"] == max(raw[0]["zmax"], raw[1]["zmax"])
    assert [s["scale_note"] for s in shared] == ["shared", "shared"]
    assert [s["own_zmax"] for s in shared] == pytest.approx([s["zmax"] for s in raw])
    # the old behaviour: one shared range from the window sums, wider than the per-iteration
    # run's own; divided per iteration the two ranges are of one kind
    assert raw[0]["zmax"] < raw[1]["zmax"] == shared[0]["zmax"]
    assert per_it[1]["zmax"] < raw[0]["zmax"] * 2
    cum = compare_views.streams(strided, ids_, "cumulative", "fc1", "shared", "per_it")
    assert not any(s["per_iteration"] for s in cum)  # a running total is not divided


# -- defect 5: a layer without rows ---------------------------------------------------------------
def test_layer_without_rows_is_a_plain_note_with_its_curve(grok):
    meta = _meta(grok, "grok.h5")
    v = grok.open("grok.h5")[0].layer_names.index("blocks.0.attn.v")
    stream, plan = run_callbacks.heatmap_stream(grok, "grok.h5", meta, v, "row", 10, "fixed",
                                                "auto", None)
    assert "error" not in stream and not stream["has_rows"] and plan == []
    assert stream["layer_name"] == "blocks.0.attn.v"
    assert "--lca-layers blocks.0.attn.q,blocks.0.attn.k" in stream["note"]
    assert "was not stored" in stream["note"] and str(grok.runs_dir) not in stream["note"]
    y = stream["figure"]["data"][0]["y"]
    assert np.frombuffer(base64.b64decode(y["bdata"]), y["dtype"]).size == meta["T"]


# -- defect 7: background jobs queue visibly and are cancelled with their page --------------------
def test_a_queued_job_says_where_it_waits_and_behind_what():
    jobs = JobRunner(max_workers=1)
    release, began = threading.Event(), threading.Event()

    def blocker():
        began.set()
        release.wait(30)
        return "a"

    try:
        jobs.status("A", blocker, label="value scan of other.h5")
        assert began.wait(30)
        st = jobs.status("B", lambda: "b", label="value scan of mine.h5")
        assert st.state == "queued" and st.position == 1
        assert st.running == ("value scan of other.h5",)
        text = run_analysis.status_text(st, "value histograms")
        assert "number 1 in the queue" in text and "running now: value scan of other.h5" in text
        release.set()
        done = jobs.wait("B", timeout=30)
        assert done.state == "done" and done.result == "b" and done.waited > 0
        assert "waiting in the queue" in run_analysis.status_text(done, "x") or done.waited < 0.5
    finally:
        release.set()
        jobs.shutdown()


def test_leaving_the_page_cancels_its_jobs():
    jobs = JobRunner(max_workers=1)
    release, began, ran = threading.Event(), threading.Event(), []

    def long_job(progress):
        began.set()
        while True:  # reports progress until told to stop (the value scan does per block)
            progress(0.5)
            if release.wait(0.01):
                return "finished"

    try:
        jobs.status("scan", long_job, progress_kw="progress", owner="page1")
        assert began.wait(30)
        jobs.status("queued", lambda: ran.append(1), owner="page1")
        jobs.status("shared", lambda: "kept", owner="page1")
        jobs.status("shared", owner="page2")  # another page wants this one too
        assert jobs.cancel_owner("page1") == 2
        st = jobs.wait("scan", timeout=30)
        assert st.state == "cancelled" and "left" in run_analysis.status_text(st, "scan")
        assert jobs.wait("shared", timeout=30).result == "kept"
        assert ran == [] and jobs.peek("queued") is None  # never ran, forgotten
        # a later visit starts the cancelled job afresh
        release.set()
        jobs.status("scan", long_job, progress_kw="progress", owner="page3")
        assert jobs.wait("scan", timeout=30).result == "finished"
    finally:
        release.set()
        jobs.shutdown()


def test_cancel_route_cancels_by_token_only(tmp_path):
    write_synthetic_bundle(tmp_path / "a.h5", n_iters=10, layers=FC_LAYERS, n_classes=3)
    app = create_app(tmp_path)
    state = get_state(app)
    state.jobs = JobRunner(max_workers=1)
    release, ran = threading.Event(), []
    state.jobs.status("x", lambda: release.wait(30), owner="tok1")
    state.jobs.status("y", lambda: ran.append(1), owner="tok1")
    client = app.server.test_client()
    assert client.post("/lcaviz/jobs/cancel?owner=other").data == b"0 cancelled"
    assert b"cancelled" not in client.get("/lcaviz/jobs/cancel?owner=tok1").data  # POST only
    assert client.post("/lcaviz/jobs/cancel?owner=tok1").data == b"2 cancelled"
    release.set()
    assert state.jobs.wait("x", timeout=30).state == "done"  # no progress reports: it ends
    assert ran == [] and state.jobs.peek("y") is None
    state.jobs.shutdown()


# -- defect 8: the head view is named -------------------------------------------------------------
def test_head_view_names_head_size_total_and_axes(grok):
    meta = _meta(grok, "grok.h5")
    b = grok.open("grok.h5")[0]
    q = b.layer_names.index("blocks.0.attn.q")
    group = "blocks.0.attn.q.head2"
    zoom, stream, plan = run_callbacks.zoom_callback(grok, ids.HEAT_GROUP, None, "grok.h5", meta,
                                                     q, "row", 10, "fixed", "auto", None, None,
                                                     group)
    assert zoom == [0, 64, 32, 48]
    assert stream["group"] == group and stream["group_label"] == "head2"
    assert stream["group_size"] == 64 * 16
    g = b.group_names.index(group)
    per_t = np.nan_to_num(b.lca_group()[:, g])
    w = b.row_windows
    want = [per_t[a:e].sum() for a, e in w]
    np.testing.assert_allclose(stream["group_totals"], want, rtol=1e-12, atol=1e-15)
    axes = stream["figure"]["layout"]
    assert axes["yaxis"]["title"]["text"] == "d_model"
    assert axes["xaxis"]["title"]["text"] == "d_head of head2"
    # the whole layer: heads named along x; o.weight (heads, d_head, d_model) the other way
    stream, _ = run_callbacks.heatmap_stream(grok, "grok.h5", meta, q, "row", 10, "fixed",
                                             "auto", None)
    assert "group" not in stream
    assert stream["figure"]["layout"]["xaxis"]["title"]["text"] == \
        "head (one block each) × d_head"
    assert run_stream.head_axis_names((4, 16, 64)) == ("d_head",
                                                      "head (one block each) × d_model")
    assert run_stream.head_axis_names((4, 5, 7)) == ("axis 1", "head (one block each) × axis 2")
    # a new layer drops the head; a change of resolution keeps the zoom (minor list)
    out = run_callbacks.stream_callback(grok, ids.RESOLUTION, "grok.h5", meta, q, "row", 10,
                                        "fixed", "full", [0, 64, 32, 48], group)
    assert out[2] == [0, 64, 32, 48] and out[0]["group"] == group


# -- defect 6: no upload to Plotly Cloud ----------------------------------------------------------
def test_no_share_chart_or_camera_button_in_any_config():
    from lcaviz.app.pages.components import GRAPH_CONFIG

    for cfg in (PLOTLY_CONFIG, GRAPH_CONFIG):
        assert {"sendChartToCloud", "toImage", "editInChartStudio"} <= set(
            cfg["modeBarButtonsToRemove"])
        assert cfg["showSendToCloud"] is False
    html = html_report("r", [go.Figure(go.Scatter(y=[1, 2]))])
    assert '"modeBarButtonsToRemove": ["sendChartToCloud"' in html.replace("'", '"')
    js = (Path(run_callbacks.__file__).parents[2] / "assets" / "lca_1_view.js").read_text()
    assert "'sendChartToCloud'" in js and "showSendToCloud: false" in js


# -- issue 28 item 3: CSV formula injection -------------------------------------------------------
def test_csv_cells_that_start_a_formula_are_quoted():
    fig = go.Figure(go.Bar(x=[*EVIL, "fc1", "-"], y=[-0.5, 1.0, -2.0, 3.0, 4.0, -1e-7, 2.0],
                           name="=cmd|' /C calc'!A0"))
    rows = list(csv.reader(io.StringIO(figure_csv(fig))))
    assert rows[0] == ["trace", "x", "y", "value"]
    assert {r[0] for r in rows[1:]} == {"'=cmd|' /C calc'!A0"}
    xs = [r[1] for r in rows[1:]]
    assert xs == ["'" + e for e in EVIL] + ["fc1", "'-"]
    assert [float(r[2]) for r in rows[1:]] == [-0.5, 1.0, -2.0, 3.0, 4.0, -1e-7, 2.0]
    assert all(not c.startswith(("=", "+", "-", "@", "\t")) or c.lstrip("-")[:1].isdigit()
               for r in rows[1:] for c in r)
    assert safe_cell(-3.5) == -3.5 and safe_cell("relu") == "relu" and safe_cell(None) is None


def test_run_page_csv_export_of_a_hostile_layer_name(tmp_path):
    name = EVIL[0]
    write_synthetic_bundle(tmp_path / "evil.h5", n_iters=8, layers=((name, (3, 4)),
                                                                     ("fc2", (2, 3))),
                           n_classes=2)
    state = get_state(create_app(tmp_path))
    values = [None] * len(run_exports.CONTROL_STATES)
    values[[n for n, _, _ in run_exports.CONTROL_STATES].index("run_id")] = "evil.h5"
    out = run_exports.export_figure(state, {"graph": ids.LAYER_BARS, "fmt": "csv"}, values)
    cells = [c for r in csv.reader(io.StringIO(out["content"])) for c in r]
    assert "'" + name in cells and name not in cells


def test_job_key_survives_the_browser(tmp_path):
    """A job key holds the file's mtime_ns (past 2**53): through the page's JSON it must still
    name the same job, or every poll starts the scan again (it ran twice, and queued)."""
    import json

    write_synthetic_bundle(tmp_path / "a.h5", n_iters=10, layers=FC_LAYERS, n_classes=3)
    state = get_state(create_app(tmp_path))
    release = threading.Event()
    state.jobs = JobRunner(max_workers=1)
    state.jobs.status("block", lambda: release.wait(30))
    try:
        _, key = run_analysis.scan_status(state, "a.h5")
        # the page's JSON is JavaScript's: its numbers are doubles (integers past 2**53 round)
        from_page = [int(float(v)) if isinstance(v, int) else v
                     for v in json.loads(json.dumps(key))]
        run_analysis.scan_status(state, "a.h5", from_page)
        assert len([k for k in state.jobs._jobs if k[0] == "scan"]) == 1  # noqa: SLF001
        # the server strips the runs directory from every answer (no server paths in pages):
        # the key must come back from the page unchanged, so it holds no such path
        assert not any(str(tmp_path) in part for part in key), key
    finally:
        release.set()
        state.jobs.shutdown()
