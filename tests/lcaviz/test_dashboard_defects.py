"""Issue 27 (the dashboard tried as a new user would) and issue 28 item 3 (CSV formula
injection), through the pages' plain functions, the job runner and the figure helpers; the
browser checks are in tests/e2e/test_dashboard_defects.py."""

from __future__ import annotations

import base64
import csv
import io
import shutil
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

SAMPLE = Path(__file__).resolve().parents[2] / "sample_runs"
FC_LAYERS = (("fc1", (20, 30)), ("fc2", (10, 20)))
EVIL = ('=HYPERLINK("http://evil/x","click me")', "@SUM(1,1)", "-2+3+cmd|' /C calc'!A0",
        "+1", "\tTAB")


@pytest.fixture(scope="module")
def grok(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("grok")
    shutil.copy(SAMPLE / "grokking_transformer.h5", runs_dir / "grok.h5")
    return get_state(create_app(runs_dir))


@pytest.fixture(scope="module")
def strided(tmp_path_factory):
    """Two runs of the same layers: rows of one iteration, and rows of 5-iteration windows."""
    runs_dir = tmp_path_factory.mktemp("strided")
    write_synthetic_bundle(runs_dir / "every.h5", n_iters=40, layers=FC_LAYERS, n_classes=3,
                           seed=0, per_class=False)
    write_synthetic_bundle(runs_dir / "window5.h5", n_iters=40, layers=FC_LAYERS, n_classes=3,
                           seed=0, per_class=False, stride=5)
    return get_state(create_app(runs_dir))


def _meta(state, run_id):
    return run_callbacks.init_run(state, run_id)[0]


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
    finally:
        release.set()
        state.jobs.shutdown()


# -- minor list ----------------------------------------------------------------------------------
def _string_ids(component) -> set[str]:
    out, stack = set(), [component]
    while stack:
        c = stack.pop()
        if isinstance(c, list | tuple):
            stack.extend(c)
            continue
        if c is None or isinstance(c, str | int | float):
            continue
        if isinstance(getattr(c, "id", None), str):
            out.add(c.id)
        stack.append(getattr(c, "children", None))
    return out


def test_no_callback_at_load_reads_a_component_that_is_not_there_yet(tmp_path):
    """The console said "A nonexistent object was used in a State" (run-bars-scope) on every
    run page: a callback that fires at load read the State of a panel mounted later."""
    from lcaviz.app.pages import run

    app = create_app(SAMPLE)
    at_load = _string_ids(run.layout(id="x.h5")) | {"_pages_location", "_pages_content",
                                                     "_pages_store", "nav", "_pages_dummy"}
    for cb in app._callback_list:  # noqa: SLF001 - Dash keeps no public list
        if cb.get("prevent_initial_call"):
            continue
        inputs = [i["id"] for i in cb["inputs"] if isinstance(i["id"], str)]
        if not inputs or not all(i in at_load for i in inputs):
            continue
        missing = [s["id"] for s in cb["state"] if isinstance(s["id"], str)
                   and s["id"].startswith("run-") and s["id"] not in at_load]
        assert not missing, (cb["output"], missing)


def test_number_boxes_say_what_is_used():
    from lcaviz.app.pages.run import number_note

    assert number_note("W", 0, 1, None, 10) == "W = 0 is not a whole number ≥ 1; using 1"
    assert "using 10" in number_note("W", None, 1, None, 10)
    assert number_note("W", 5, 1, None, 10) == ""
    assert number_note("top k", 100000, 1, 200, 20).endswith("using 200")
    assert number_note("top k", 0, 1, 200, 20).endswith("using 1")


def test_weibull_card_counts_the_stored_values(monkeypatch):
    from lcaviz.app.pages import run_panels

    state = get_state(create_app(SAMPLE))
    meta = _meta(state, "lenet_sgd_mom0.9.h5")
    monkeypatch.setattr(run_analysis, "AUTO_SCAN_CELLS", 0)  # the button, not an auto start
    hist, *_ = run_panels.scan_views(state, None, "lenet_sgd_mom0.9.h5", meta, "sign", None)
    text = hist.layout.annotations[0].text
    assert "3,084,000 stored LCA values" in text  # 150 rows × 20,560 stored columns
    assert "121,345,500" not in text


def test_fixed_range_is_the_layers_whatever_the_zoom_and_manual_range(grok):
    from lcaviz.app.frames import stream_descriptor
    from lcaviz.app.pages.run_views import Controls, heatmap

    q = grok.open("grok.h5")[0].layer_names.index("blocks.0.attn.q")
    whole = stream_descriptor(grok, "grok.h5", q, "row", 1, "fixed", "full", None)["zmax"]
    head = stream_descriptor(grok, "grok.h5", q, "row", 1, "fixed", "full",
                             [0, 64, 32, 48])["zmax"]
    corner = stream_descriptor(grok, "grok.h5", q, "row", 1, "fixed", "auto",
                               [0, 8, 0, 8])["zmax"]  # a small zoom: single parameters
    assert whole == head == corner
    c = Controls(run_id="grok.h5", layer=q, range_mode="manual", range_value=2e-5,
                 palette="blueorange")
    fig, _, info = heatmap(grok, c)
    assert fig.layout.coloraxis.cmax == 2e-5 and "manual range" in info
    assert fig.layout.coloraxis.colorscale[0][1] == "#08306b"  # blue helps
    assert "manual" in fig.layout.coloraxis.colorbar.title.text
    fig, _, info = heatmap(grok, Controls(run_id="grok.h5", layer=q))
    assert fig.layout.coloraxis.colorscale[0][1] == "#00441b"  # green by default
    assert "99.5th pct" in fig.layout.coloraxis.colorbar.title.text


def test_runs_filter_by_header_and_single_sort():
    rows = [{"id": "a.h5", "batch_size": 250, "net": "fc", "status": "complete"},
            {"id": "b.h5", "batch_size": 100, "net": "lenet", "status": "complete"}]
    assert [r["id"] for r in runs.filter_rows(rows, "batch=250")] == ["a.h5"]
    assert [r["id"] for r in runs.filter_rows(rows, "network=lenet")] == ["b.h5"]
    assert [r["id"] for r in runs.filter_rows(rows, "run=a.h5")] == ["a.h5"]
    table = [c for c in _components(runs.layout()) if getattr(c, "id", None) == ids.RUNS_TABLE]
    assert table[0].sort_mode == "single"


def _components(root):
    stack = [root]
    while stack:
        c = stack.pop()
        if isinstance(c, list | tuple):
            stack.extend(c)
        elif c is not None and not isinstance(c, str | int | float):
            yield c
            stack.append(getattr(c, "children", None))


def test_summary_columns_stay_aligned_for_long_names(tmp_path):
    from lcaviz.analysis.summary import summarize
    from lcaviz.reports.summary_cli import format_report

    long = "blocks.0.mlp.fc_out_projection"
    write_synthetic_bundle(tmp_path / "s.h5", n_iters=30, n_classes=3, per_class=False,
                           layers=(("fc1", (6, 8)), (long, (4, 6))))
    summary = summarize(tmp_path / "s.h5", shift_resamples=20)
    sizes = [lay["size"] for lay in summary["layers"]]
    lines = format_report(summary).splitlines()
    head = next(i for i, s in enumerate(lines) if s.startswith("layer") and "size" in s)
    table = lines[head:head + 3]
    ends = {table[0].index("size") + 4} | {
        s.index(f" {n:,}") + len(f" {n:,}") for s, n in zip(table[1:], sizes, strict=True)}
    assert len(ends) == 1, table  # the size column ends in one place


def test_compare_help_overlay_is_of_nonzero(strided):
    loss, helps, _ = compare_views.overlays(strided, ["every.h5", "window5.h5"], 0, "iteration")
    from lcaviz.analysis import helping

    b, _ = strided.open("every.h5")
    want = helping.help_series(b)["pct_help"].to_numpy()
    got = np.asarray(helps.data[0].y, float)
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)])
    assert "nonzero" in helps.layout.yaxis.title.text


def test_synchrony_names_each_row_inside_it():
    from lcaviz.figures import synchrony

    names = ["blocks.0.mlp.fc_in", "blocks.0.mlp.fc_out", "unembed"]
    peaks = [np.array([5, 20]), np.array([5, 21]), np.array([5])]
    fig = synchrony.class_peaks_figure(np.random.default_rng(0).normal(size=(40, 3)), names,
                                       peaks, np.array([5]), class_name="3", k=2)
    labels = [a for a in fig.layout.annotations if a.text in names]
    assert sorted(a.text for a in labels) == sorted(names)
    assert all(a.textangle in (None, 0) and a.xanchor == "left" for a in labels)


def test_exports_say_what_they_hold_and_empty_panels_export_nothing(strided):
    import dash

    names = [n for n, _, _ in run_exports.CONTROL_STATES]
    values = [None] * len(names)
    values[names.index("run_id")] = "window5.h5"
    values[names.index("row")] = 2
    out = run_exports.export_figure(strided, {"graph": ids.HEATMAP, "fmt": "csv"}, values)
    assert out["filename"] == "window5-run-heatmap-fc1-it10-14.csv"
    rows = list(csv.DictReader(io.StringIO(out["content"])))
    assert rows[0]["run"] == "window5.h5" and rows[0]["layer"] == "fc1"
    assert rows[0]["iteration"] == "10-14" and rows[0]["mode"] == "this iteration"
    assert rows[0]["units"] == "nats (of the allocated loss)"
    assert {r["run"] for r in rows} == {"window5.h5"}
    # a static export has no player time marker; the page's figure keeps it (the player moves
    # it there)
    out = run_exports.export_figure(strided, {"graph": ids.LOSS, "fmt": "csv"}, values)
    fig = run_exports.build_figure(strided, ids.LOSS, run_exports.controls_from_values(values))
    assert fig.layout.shapes and fig.layout.shapes[0].visible is False
    # the drill-down before any click is a message: nothing to download
    assert run_exports.export_figure(strided, {"graph": ids.DRILL, "fmt": "csv"}, values) \
        is dash.no_update


def test_html_report_has_hyperparameters_layer_table_and_captions(grok):
    names = [n for n, _, _ in run_exports.CONTROL_STATES]
    values = [None] * len(names)
    values[names.index("run_id")] = "grok.h5"
    html = run_exports.report(grok, values)["content"]
    assert "Hyperparameters (stored config)" in html and "<td>weight_decay</td>" in html
    assert "Layers (whole run)" in html and "<td>blocks.0.attn.q</td>" in html
    assert "% helping (of nonzero)" in html
    assert "Paper Fig. 3a" in html and "conservation" in html  # captions under figures
    assert "sendChartToCloud" in html  # removed from every figure's modebar (config)


def test_export_sizes_for_a_paper_column_and_a_slide():
    from lcaviz.figures.export import EXPORT_SIZES, sized

    fig = go.Figure(go.Scatter(y=[1, 2, 3]))
    col, kw = sized(fig, "paper column")
    assert kw["width"] == 504 and round(kw["width"] * kw["scale"]) == 1050  # 3.5 in at 300 dpi
    assert col.layout.font.size == 10 and fig.layout.font.size is None  # a copy
    slide, kw = sized(fig, "slide")
    assert (kw["width"], kw["height"]) == (1280, 720) and slide.layout.font.size == 20
    assert sized(fig, None)[1]["width"] == EXPORT_SIZES["screen"][0]
