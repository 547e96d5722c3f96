"""Issue 27's minor list and "figures fit for a paper" items, through the pages' plain
functions and the figure helpers (browser checks: tests/e2e/test_dashboard_defects.py)."""

from __future__ import annotations

import csv
import io

import numpy as np
import plotly.graph_objects as go

from lcaviz.app import create_app, get_state, ids
from lcaviz.app.pages import compare_views, run_analysis, run_exports, runs
from lcaviz.bundle.synthetic import write_synthetic_bundle
from tests.lcaviz._dashboard_runs import SAMPLE, _meta


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

