"""The dashboard app: creation, page callbacks called as plain functions, security, CLI."""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import dash
import numpy as np
import plotly.graph_objects as go
import pytest

from lcaviz.app import create_app, get_state, ids, queries
from lcaviz.app.pages import compare, run_callbacks, run_exports, run_panels, run_views, runs
from lcaviz.app.pages.run_views import Controls
from lcaviz.app.security import RunPathError
from lcaviz.bundle import BundleError, RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from lcaviz.figures.theme import empty_figure
from tests.e2e.runs_fixture import FC_LAYERS, make_runs_dir


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return make_runs_dir(tmp_path_factory.mktemp("lcaviz_app"))


@pytest.fixture(scope="module")
def app(runs_dir):
    return create_app(runs_dir)


@pytest.fixture(scope="module")
def state(app):
    return get_state(app)


def test_create_app_twice_and_serve_pages(runs_dir):
    a, b = create_app(runs_dir), create_app(runs_dir)
    assert get_state(a) is not get_state(b)
    client = a.server.test_client()
    for path in ("/", "/run?id=fc.h5", "/run/nested/conv.h5", "/compare?ids=fc.h5,x"):
        r = client.get(path)
        assert r.status_code == 200 and b"_dash-config" in r.data
    deps = json.loads(client.get("/_dash-dependencies").data)
    outputs = " ".join(d["output"] for d in deps)
    assert ids.HEATMAP in outputs and ids.RUNS_TABLE in outputs and ids.CMP_LOSS in outputs
    assert not a.config.external_stylesheets and a.config.serve_locally
    assert b".css" in client.get("/").data  # our local stylesheet, no CDN
    assert b"cdn" not in client.get("/").data.lower()


def test_page_layouts_build_for_any_query():
    from lcaviz.app.pages import run

    for layout in (runs.layout(), run.layout(), run.layout(id="fc.h5"),
                   run.layout(run_id="a/b.h5"), run.layout(id=["x", "y"]), compare.layout(),
                   compare.layout(ids="a,b"), compare.layout(ids=["a", "b", "c"])):
        assert layout.to_plotly_json()["type"] == "Div"
    body = compare.layout(ids=["a", "b", "c"]).children[-1]  # hidden unless 2 runs open
    assert len(body.children[-2].children[1].children) == 3


def test_create_app_rejects_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        create_app(tmp_path / "nope")


def test_dispatch_through_flask_orders_arguments(app, state):
    """One real callback request: Dash passes Inputs/States in declaration order."""
    client = app.server.test_client()
    meta = run_callbacks.init_run(state, "fc.h5")[0]
    outputs = [{"id": ids.HEATMAP_STREAM, "property": "data"},
               {"id": ids.HEATMAP_PLAN, "property": "data"}, {"id": ids.ZOOM, "property": "data"}]
    body = {"output": f"..{ids.HEATMAP_STREAM}.data...{ids.HEATMAP_PLAN}.data...{ids.ZOOM}.data..",
            "outputs": outputs,
            "inputs": [{"id": ids.RUN_META, "property": "data", "value": meta},
                       {"id": ids.LAYER, "property": "value", "value": 1},
                       {"id": ids.MODE, "property": "value", "value": "window"},
                       {"id": ids.WINDOW, "property": "value", "value": 3},
                       {"id": ids.RANGE_MODE, "property": "value", "value": "frame"},
                       {"id": ids.RESOLUTION, "property": "value", "value": "auto"},
                       {"id": ids.RANGE_VALUE, "property": "value", "value": None}],
            "state": [{"id": ids.RUN_ID, "property": "data", "value": "fc.h5"},
                      {"id": ids.ZOOM, "property": "data", "value": None},
                      {"id": ids.HEAT_GROUP, "property": "value", "value": ""}],
            "changedPropIds": [f"{ids.LAYER}.value"]}
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code == 200, r.data[:300]
    stream = r.get_json()["response"][ids.HEATMAP_STREAM]["data"]
    assert (stream["layer_name"], stream["mode"], stream["window"]) == ("fc2", "window", 3)
    assert stream["range_mode"] == "frame" and stream["zmax"] is None and stream["R"] == 60


def heatmap(state, run_id, row, mode, window, layer, range_mode, resolution, zoom):
    """The server-side heatmap figure (exports and the HTML report draw it)."""
    c = Controls.from_dict({"run_id": run_id, "row": row, "mode": mode, "window": window,
                            "layer": layer, "range_mode": range_mode,
                            "resolution": resolution, "zoom": zoom})
    try:
        return run_views.heatmap(state, c)
    except (RunPathError, BundleError, OSError) as e:
        return empty_figure(f"Cannot read this run: {e}"), None, ""


# -- runs page -------------------------------------------------------------------------
def test_runs_table_lists_bundles_and_errors(state):
    rows, cards, count, digest = runs.refresh_runs(state, 0, None)
    by = {r["id"]: r for r in rows}
    assert set(by) == {"fc.h5", "fc_seed3.h5", "nested/conv.h5", "corrupt.h5", "escape.h5"}
    assert by["fc.h5"]["status"] == "complete" and by["fc.h5"]["iterations"] == 60
    assert by["fc.h5"]["net"] == "synthetic" and by["fc.h5"]["final_loss"] is not None
    assert by["corrupt.h5"]["status"] == "damaged" and by["corrupt.h5"]["error"]
    assert by["escape.h5"]["status"] == "refused"  # symlink leaving RUNS_DIR
    assert len(cards) == 2 and "3 runs, 2 unreadable" == count
    again = runs.refresh_runs(state, 1, digest)
    assert all(v is dash.no_update for v in again)


def test_new_bundle_appears_without_restart(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    app = create_app(root)
    st = get_state(app)
    rows, _, count, digest = runs.refresh_runs(st, 0, None)
    assert rows == [] and count.startswith("0 runs")
    write_synthetic_bundle(root / "new.h5", n_iters=5, layers=FC_LAYERS, n_classes=3)
    rows, _, _, digest2 = runs.refresh_runs(st, 1, digest)
    assert [r["id"] for r in rows] == ["new.h5"] and digest2 != digest


def test_running_bundle_shows_status_and_grows(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    write_synthetic_bundle(root / "live.h5", n_iters=12, layers=FC_LAYERS, n_classes=3,
                           stride=4, status="running")
    st = get_state(create_app(root))
    rows = runs.refresh_runs(st, 0, None)[0]
    assert rows[0]["status"] == "running"
    meta = run_callbacks.init_run(st, "live.h5")[0]
    assert meta["status"] == "running" and meta["R"] == 3 and "running" in \
        queries.subtitle(meta)
    assert run_callbacks.init_run(st, "live.h5")[-1] is False  # a live run is polled
    assert run_callbacks.refresh_live(st, 1, "live.h5", meta) == (dash.no_update,) * 3
    stale = {**meta, "R": 1}  # the page saw an older version of the file
    new_meta, sub, stop = run_callbacks.refresh_live(st, 1, "live.h5", stale)
    assert new_meta["R"] == 3 and "running" in sub and stop is False
    stream = run_callbacks.heatmap_stream(st, "live.h5", new_meta, 0, "row", 1, "fixed", "auto",
                                          None)[0]
    assert stream["R"] == 3 and stream["starts"] == [0, 4, 8] and stream["status"] == "running"
    fig = heatmap(st, "live.h5", 2, "row", 1, 0, "fixed", "auto", None)[0]
    assert np.asarray(fig.data[0].z).shape == (20, 30)


def test_selection_actions():
    data = [{"id": "a.h5", "status": "complete"}, {"id": "b b,c.h5", "status": "complete"},
            {"id": "bad.h5", "status": "unreadable"}]
    href, cls, chref, ccls, _ = runs.selection_actions(["a.h5"], data)
    assert href == "/run?id=a.h5" and cls == "btn" and ccls.endswith("disabled")
    href, cls, chref, ccls, _ = runs.selection_actions(["a.h5", "b b,c.h5"], data)
    assert cls.endswith("disabled") and ccls == "btn"
    assert chref == "/compare?ids=a.h5&ids=b%20b%2Cc.h5"
    _, cls, _, ccls, hint = runs.selection_actions(["bad.h5"], data)
    assert cls.endswith("disabled") and "unreadable" in hint
    assert compare.parse_ids(["a", "b"]) == ["a", "b"]
    assert compare.parse_ids("a,b,a,c,d,e") == ["a", "b", "c", "d"]


# -- run page --------------------------------------------------------------------------
def test_init_run_ok_and_errors(state):
    out = run_callbacks.init_run(state, "fc.h5")
    meta, title, sub, err, style, layers, layer, no_poll = out
    assert meta["layers"] == ["fc1", "fc2"] and meta["T"] == 60 and meta["has_trajectory"]
    assert err is None and layer == 0 and [o["value"] for o in layers] == [0, 1] and no_poll
    assert run_panels.class_options(meta)[0][2] == {"label": "class 2", "value": 2}
    assert "60 iterations" in sub
    for bad in ("../fc.h5", "corrupt.h5", "escape.h5", "", "missing.h5"):
        out = run_callbacks.init_run(state, bad)
        assert out[0] is None and out[3] is not None and out[4] == {"display": "none"}


def test_heatmap_fc_conv_and_modes(state):
    fig, plan, info = heatmap(state, "fc.h5", 5, "row", 1, 0, "fixed",
                                                   "auto", None)
    assert np.asarray(fig.data[0].z).shape == (20, 30) and plan[0]["name"] == "fc1.weight"
    assert "fixed over run" in info
    assert fig.layout.coloraxis.cmin == -fig.layout.coloraxis.cmax
    b = RunBundle.open(state.runs_dir / "fc.h5")
    cols = b.layer_columns(0)
    expected = b.rows(0, 6, cols).sum(axis=0, dtype=np.float64)
    fig, _, info = heatmap(state, "fc.h5", 5, "cumulative", 1, 0, "frame",
                                                "auto", None)
    shown = np.concatenate([np.asarray(t.z, np.float64).ravel() for t in fig.data
                            if t.type == "heatmap"])
    assert np.isclose(shown.sum(), expected.sum(), rtol=1e-5)
    fig, _, _ = heatmap(state, "fc.h5", 5, "window", 3, 0, "frame", "auto",
                                             None)
    shown = np.concatenate([np.asarray(t.z, np.float64).ravel() for t in fig.data
                            if t.type == "heatmap"])
    assert np.isclose(shown.sum(), b.rows(3, 6, cols).sum(dtype=np.float64), rtol=1e-5)
    b.close()
    fig, plan, _ = heatmap(state, "nested/conv.h5", 2, "row", 1, 0,
                                                "fixed", "auto", None)
    assert np.asarray(fig.data[0].z).shape == (4 * 3, 2 * 3)
    assert "iterations 6–8" in fig.layout.title.text  # stride 3: row 2 = iterations 6..8
    fig, _, _ = heatmap(state, "../x.h5", 0, "row", 1, 0, "fixed", "auto",
                                             None)
    assert "Cannot read" in fig.layout.annotations[0].text


def test_frame_changes_with_slider(state):
    a = heatmap(state, "fc.h5", 1, "row", 1, 0, "fixed", "auto", None)[0]
    b = heatmap(state, "fc.h5", 2, "row", 1, 0, "fixed", "auto", None)[0]
    assert not np.array_equal(np.asarray(a.data[0].z), np.asarray(b.data[0].z))
    assert a.layout.coloraxis.cmax == b.layout.coloraxis.cmax  # fixed range over the run


def test_zoom_and_drill_down(state):
    fig, plan, _ = heatmap(state, "fc.h5", 5, "row", 1, 0, "fixed", "auto",
                                                None)
    relayout = {"xaxis.range[0]": 4.5, "xaxis.range[1]": 9.5, "yaxis.range[0]": 7.5,
                "yaxis.range[1]": 1.5}
    zoom = run_callbacks.update_zoom(ids.ZOOM_REQUEST, relayout, plan, None)
    assert zoom == [2, 8, 5, 10]
    assert run_callbacks.update_zoom(ids.ZOOM_REQUEST, relayout, plan, zoom) is dash.no_update
    assert run_callbacks.update_zoom(ids.ZOOM_REQUEST, {"xaxis.autorange": True}, plan,
                                     zoom) is None
    meta = run_callbacks.init_run(state, "fc.h5")[0]
    region, stream, zplan = run_callbacks.zoom_callback(
        state, ids.ZOOM_REQUEST, relayout, "fc.h5", meta, 0, "row", 1, "fixed", "auto", plan,
        None)
    assert region == [2, 8, 5, 10] and zplan[0]["r0"] == 2 and stream["items"] == zplan
    assert stream["figure"]["layout"]["xaxis"]["range"] == [4.5, 9.5]  # the region's pixels
    reset = run_callbacks.zoom_callback(state, ids.ZOOM_RESET, None, "fc.h5", meta, 0, "row", 1,
                                        "fixed", "auto", zplan, region)
    assert reset[0] is None and reset[2][0]["r0"] == 0
    zf, zplan, _ = heatmap(state, "fc.h5", 5, "row", 1, 0, "fixed", "auto", zoom)
    assert np.asarray(zf.data[0].z).shape == (6, 5) and zplan[0]["r0"] == 2
    param = {"flat": 3 * 30 + 7, "label": "fc1.weight[3, 7]", "block": False}  # the player's
    dfig, info = run_callbacks.update_drill(state, "fc.h5", param, {"row": 5}, "row", 1)
    assert len(dfig.data) == 3 and "fc1.weight[3, 7]" in info  # LCA, cumulative, weight
    b = RunBundle.open(state.runs_dir / "fc.h5")
    assert np.allclose(dfig.data[0].y, b.param_curve(param["flat"]))
    b.close()
    empty, _ = run_callbacks.update_drill(state, "fc.h5", None, {"row": 0}, "row", 1)
    assert "Click a heatmap cell" in empty.layout.annotations[0].text
    assert run_callbacks.update_drill(state, "fc.h5", None, {"row": 3}, "row", 1,
                                      ids.FRAME) == (dash.no_update, dash.no_update)


def test_views_and_markers(state):
    meta = run_callbacks.init_run(state, "fc.h5")[0]
    for name, kw in [("layer_bars", {"bars_scope": "upto", "bars_norm": "per_param"}),
                     ("layer_bars", {}), ("layer_curves", {"curves_cumulative": True}),
                     ("loss", {"loss_log": True}), ("residual", {"residual_log": True}),
                     ("help_time", {}), ("help_layer", {}), ("help_fraction", {})]:
        fig = run_callbacks.simple_view(state, name, "fc.h5", meta, row=10, mode="row",
                                        window=1, **kw)
        assert isinstance(fig, go.Figure) and len(fig.data) >= 1, name
    loss = run_callbacks.simple_view(state, "loss", "fc.h5", meta, row=10)
    assert [t.name for t in loss.data] == ["minibatch", "train (full set)", "validation"]
    assert loss.layout.shapes[0].visible is False  # on screen the player draws the marker
    assert run_callbacks.simple_view(state, "loss", "fc.h5", None) is dash.no_update


def test_background_scan_and_shift_test(state):
    meta = run_callbacks.init_run(state, "fc.h5")[0]
    out = run_callbacks.scan_views(state, None, "fc.h5", meta, "sign", None)
    key = out[4]
    deadline = time.monotonic() + 60
    while out[3] is False and time.monotonic() < deadline:  # interval enabled = running
        time.sleep(0.1)
        out = run_callbacks.scan_views(state, ids.WEIBULL_INTERVAL, "fc.h5", meta, "sign", key)
    hist, wb, text, disabled, _ = out
    assert disabled and "done" in text
    assert [t.name for t in hist.data] == ["helping", "hurting"]
    assert any("k=" in (t.name or "") and "KS=" in t.name for t in wb.data)
    wb_layers = run_callbacks.scan_views(state, ids.WEIBULL_GROUP, "fc.h5", meta, "layer_help",
                                         key)[1]
    assert any((t.name or "").startswith("fc2: k=") for t in wb_layers.data)
    fig, text, disabled, jkey = run_callbacks.sync_views(state, ids.SYNC_RUN, "fc.h5", meta, 0,
                                                         5, 2, 200, None)
    deadline = time.monotonic() + 60
    while not disabled and time.monotonic() < deadline:
        time.sleep(0.1)
        fig, text, disabled, jkey = run_callbacks.sync_views(state, ids.SYNC_INTERVAL, "fc.h5",
                                                             meta, 0, 5, 2, 200, jkey)
    assert "p = " in fig.layout.title.text and fig.data[0].type == "histogram"
    from lcaviz.app.pages import run_sync

    peaks = run_sync.peaks_view(state, "fc.h5", 1, 5)
    assert "aligned" in peaks.layout.title.text
    pooled = run_sync.peaks_view(state, "nested/conv.h5", 0, 5)  # no per-class split saved
    assert "no per-class split" in pooled.layout.title.text


def test_exports_csv_png_and_report(state):
    values = [None] * len(run_exports.CONTROL_STATES)
    names = [n for n, _, _ in run_exports.CONTROL_STATES]
    values[names.index("run_id")] = "fc.h5"
    values[names.index("row")] = 3
    out = run_exports.export_figure(state, {"graph": ids.LOSS, "fmt": "csv"}, values)
    assert out["filename"] == "fc-run-loss.csv" and out["content"].startswith("trace,x,y")
    out = run_exports.export_figure(state, {"graph": ids.HEATMAP, "fmt": "csv"}, values)
    assert len(out["content"].splitlines()) == 1 + 20 * 30 + 20
    if shutil.which("chromium") or shutil.which("google-chrome"):  # Kaleido needs a Chrome
        out = run_exports.export_figure(state, {"graph": ids.LAYER_BARS, "fmt": "png"}, values)
        png = base64.b64decode(out["content"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert run_exports.export_figure(state, {"graph": ids.LOSS, "fmt": "exe"}, values) \
        is dash.no_update
    gif = run_exports.export_figure(state, {"graph": ids.HEATMAP, "fmt": "gif"}, values)
    data = base64.b64decode(gif["content"])
    assert gif["filename"].endswith(".gif") and data[:6] == b"GIF89a" and len(data) > 200
    assert run_exports.export_figure(state, {"graph": ids.LOSS, "fmt": "gif"}, values) \
        is dash.no_update  # animations exist for the heatmap only
    rep = run_exports.report(state, values)
    html = rep["content"]
    # every panel, plus training vs validation (fc.h5 was made with --val-lca)
    assert rep["filename"] == "fc-report.html" and html.count("<section>") == 12
    assert "<script src=" not in html and len(html) > 1_000_000  # plotly.js inlined


def test_controls_are_sanitised():
    c = Controls.from_dict({"row": "7", "window": -3, "sync_k": 10**6, "bogus": 1,
                            "sync_resamples": None})
    assert c.row == 7 and c.window == 1 and c.sync_k == 200 and c.sync_resamples == 1000


# -- compare page ----------------------------------------------------------------------
def test_compare_callbacks(state):
    ok, cards, opts, first = compare.check_runs(state, ["fc.h5", "nested/conv.h5", "corrupt.h5"])
    assert ok == ["fc.h5", "nested/conv.h5"] and len(cards) == 1 and first == "fc1"
    assert all("not in every run" in o["label"] for o in opts)
    ok, cards, opts, first = compare.check_runs(state, ["fc.h5", "fc.h5x", "fc_seed3.h5"])
    assert first == "fc1" and [o["value"] for o in opts] == ["fc1", "fc2"] and len(cards) == 1
    figs = compare.heatmaps(state, ["fc.h5", "nested/conv.h5"], 0.5, "fraction", "row", "fc1")
    assert len(figs) == 2 and np.asarray(figs[0].data[0].z).shape == (20, 30)
    assert "no layer" in figs[1].layout.annotations[0].text
    assert "iteration 30" in figs[0].layout.title.text  # half of 60 iterations (0..59)
    loss, helps, totals = compare.overlays(state, ["fc.h5", "nested/conv.h5"], 0.25, "fraction")
    assert len(loss.data) == 2 and max(loss.data[0].x) == 1.0
    assert len(totals.data) == 2
    streams = compare.streams(state, ["fc.h5", "nested/conv.h5", "fc_seed3.h5"], "row", "fc1")
    assert "no layer" in streams[1]["error"] and streams[0]["layer_name"] == "fc1"
    assert streams[0]["zmax"] == streams[2]["zmax"] > 0  # one colour range for all runs
    assert streams[0]["figure"]["layout"]["xaxis"]["range"] == [-0.5, 29.5]
    with RunBundle.open(state.runs_dir / "nested/conv.h5") as b:  # stride 3, 30 iterations
        assert compare.frame_of(b, 0.5, "fraction") == 4  # iteration 14 (of 0..29)
        assert compare.frame_of(b, 14, "iteration") == 4
        assert compare.frame_of(b, 99, "iteration") == 9
    out = compare.export(state, {"graph": ids.CMP_LOSS, "fmt": "csv"}, ["fc.h5", "nested/conv.h5"],
                         0, "fraction", "row", "fc1")
    assert out["filename"] == "compare-cmp-loss.csv"


def test_error_panel_and_drill_error_bars(tmp_path):
    """A run made with --lca-error-every shows its per-layer error, Table S1 and error bars on
    the drill-down; one without says how to get them (issue 15.1)."""
    import torch  # noqa: F401 - a real (tiny) run: the estimates come from the engine

    from compute.run.config import RunConfig
    from compute.run.train import run_lca

    root = tmp_path / "runs"
    root.mkdir()
    run_lca(RunConfig(net="mnist_fc", dataset="synthetic", train_size=200, batch_size=50,
                      iters=6, chunk_size=128, seed=1, lca_error_every=2,
                      lca_rows="dense:4,2"), root / "err.h5", progress=False)
    st = get_state(create_app(root))
    meta = run_callbacks.init_run(st, "err.h5")[0]
    fig = run_callbacks.simple_view(st, "lca_error", "err.h5", meta)
    assert [t.type for t in fig.data][:1] == ["bar"] and "fc1" in list(fig.data[0].x)
    s1 = run_callbacks.simple_view(st, "table_s1", "err.h5", meta)
    assert {t.name for t in s1.data} >= {"first order", "RK4 (Simpson)"}
    param = {"flat": 5, "label": "fc1.weight[0, 5]", "block": False}
    dfig, _ = run_callbacks.update_drill(st, "err.h5", param, {"row": 1}, "row", 1)
    err = [t for t in dfig.data if t.name == "error estimate"]
    assert len(err) == 1 and list(err[0].x) == [0, 2]  # iterations 0, 2 (4 is a 2-wide row)
    with RunBundle.open(root / "err.h5") as b:
        np.testing.assert_allclose(err[0].error_y.array, b.lca_error(cols=5).ravel()[:2])
    write_synthetic_bundle(root / "plain.h5", n_iters=5, layers=FC_LAYERS, n_classes=3)
    plain = run_callbacks.simple_view(st, "lca_error", "plain.h5", meta)
    assert "--lca-error-every" in plain.layout.annotations[0].text
