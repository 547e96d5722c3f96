"""Run-page downloads: any figure as PNG/SVG/PDF/CSV, the whole page as an HTML report.

Figures are rebuilt server-side from the current control values with the same builders as
the live view (nothing large is uploaded from the browser), then rendered by Kaleido.
"""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, ctx, dcc

from lcaviz.app import ids
from lcaviz.app.pages import run_analysis, run_examples, run_sync, run_views
from lcaviz.app.pages.run_views import Controls
from lcaviz.app.security import RunPathError, safe_filename
from lcaviz.app.state import AppState
from lcaviz.bundle import BundleError
from lcaviz.figures.export import figure_csv, figure_image, has_data, html_report, sized
from lcaviz.figures.theme import empty_figure

# (Controls field, component id, property) of every control the builders read
CONTROL_STATES = [
    ("run_id", ids.RUN_ID, "data"), ("row", ids.FRAME, "data"), ("mode", ids.MODE, "value"),
    ("window", ids.WINDOW, "value"), ("layer", ids.LAYER, "value"),
    ("range_mode", ids.RANGE_MODE, "value"), ("range_value", ids.RANGE_VALUE, "value"),
    ("palette", ids.PALETTE, "value"), ("resolution", ids.RESOLUTION, "value"),
    ("zoom", ids.ZOOM, "data"), ("bars_scope", ids.BARS_SCOPE, "value"),
    ("bars_norm", ids.BARS_NORM, "value"), ("bars_by", ids.BARS_BY, "value"),
    ("curves_cumulative", ids.CURVES_CUMULATIVE, "value"),
    ("loss_log", ids.LOSS_LOG, "value"), ("residual_log", ids.RESIDUAL_LOG, "value"),
    ("weibull_group", ids.WEIBULL_GROUP, "value"), ("sync_class", ids.SYNC_CLASS, "value"),
    ("sync_k", ids.SYNC_K, "value"), ("sync_shift", ids.SYNC_SHIFT, "value"),
    ("sync_resamples", ids.SYNC_RESAMPLES, "value"), ("drill", "run-drill-param", "data"),
    ("export_size", ids.EXPORT_SIZE, "value"), ("ex_scope", ids.EX_SCOPE, "value"),
    ("ex_k", ids.EX_K, "value"), ("ex_hist_mode", ids.EX_HIST_MODE, "value"),
    ("ex_hist_log", ids.EX_HIST_LOG, "value"), ("ex_selected", ids.EX_SELECTED, "data"),
    ("ex_split", ids.EX_SPLIT, "value"),
]
_BOOL = {"curves_cumulative", "loss_log", "residual_log", "ex_hist_log"}
_MARKED = {ids.LOSS, ids.RESIDUAL, ids.LAYER_CURVES, ids.HELP_TIME}  # figures with a marker
JOB_TIMEOUT = 120.0
_OPEN_ERRORS = (RunPathError, BundleError, OSError)


def controls_from_values(values: list) -> Controls:
    """Controls from the States of :data:`CONTROL_STATES`, in that order."""
    d = {}
    for (name, _, _), v in zip(CONTROL_STATES, values, strict=True):
        d[name] = bool(v) if name in _BOOL else v
    if isinstance(d.get("row"), dict):  # the player's frame store
        d["row"] = d["row"].get("row", 0)
    return Controls.from_dict(d)


def build_figure(state: AppState, graph: str, c: Controls):
    """Rebuild the figure shown in ``graph`` (waits for background jobs, bounded)."""
    simple = {ids.LAYER_BARS: "layer_bars", ids.LAYER_CURVES: "layer_curves",
              ids.LOSS: "loss", ids.RESIDUAL: "residual", ids.HELP_TIME: "help_time",
              ids.HELP_LAYER: "help_layer", ids.HELP_FRACTION: "help_fraction",
              ids.DRILL: "drill", ids.LCA_ERROR: "lca_error", ids.TABLE_S1: "table_s1",
              ids.TRAIN_VAL: "train_val"}
    if graph == ids.HEATMAP:
        return run_views.heatmap(state, c)[0]
    if graph in run_examples.GRAPHS:
        return run_examples.build(state, graph, c)
    if graph in simple:
        fig = getattr(run_views, simple[graph])(state, c)
        if graph in _MARKED and fig.layout.shapes:  # the player's time marker: on screen only
            fig.layout.shapes[0].visible = False
        return fig
    if graph in (ids.HELP_HIST, ids.WEIBULL):
        st, key = run_analysis.scan_status(state, c.run_id)
        st = state.jobs.wait(tuple(key), JOB_TIMEOUT) if st.state in ("running", "queued") \
            else st
        if st.state != "done":
            return empty_figure(f"not available: {st.error or st.state}")
        if graph == ids.HELP_HIST:
            return run_analysis.histogram_figure(st.result)
        return run_analysis.weibull_view(st.result, c.weibull_group)
    if graph == ids.SYNC_PEAKS:
        return run_sync.peaks_view(state, c.run_id, c.sync_class, c.sync_k)
    if graph == ids.SYNC_TEST:
        st, key = run_sync.sync_status(state, c.run_id, c.sync_k, c.sync_shift,
                                       c.sync_resamples)
        st = state.jobs.wait(tuple(key), JOB_TIMEOUT) if st.state in ("running", "queued") \
            else st
        return run_sync.test_view(st.result if st.state == "done" else None, c.sync_class)
    raise KeyError(f"unknown graph {graph!r}")


def export_figure(state: AppState, trigger: dict | None, values: list):
    """``dcc.Download`` payload for the clicked export button (or no_update)."""
    if not trigger or not isinstance(trigger, dict) or not ctx_clicked():
        return dash.no_update
    graph, fmt = trigger.get("graph"), trigger.get("fmt")
    c = controls_from_values(values)
    if fmt in ("gif", "mp4") and graph == ids.HEATMAP:
        return heatmap_video(state, c, fmt)
    if fmt not in ids.EXPORT_FORMATS:
        return dash.no_update
    fig = build_figure(state, graph, c)
    if not has_data(fig):  # an empty panel (a message, no data): nothing to download
        return dash.no_update
    context = export_context(state, graph, c)
    name = safe_filename("-".join(str(v) for v in (
        c.run_id.rsplit(".", 1)[0], graph, context.get("layer"), context.get("iteration_tag"))
        if v), fmt)
    if fmt == "csv":
        context.pop("iteration_tag", None)
        return dcc.send_string(figure_csv(fig, context), name)
    fig, size = sized(fig, c.export_size)  # screen, paper column, paper page or slide
    return dcc.send_bytes(figure_image(fig, fmt, **size), name)


# figures whose values are LCA or a loss: nats of the allocated (training) loss
_NATS = {ids.HEATMAP, ids.LAYER_BARS, ids.LAYER_CURVES, ids.DRILL, ids.LOSS, ids.RESIDUAL,
         ids.TRAIN_VAL, ids.EX_GRID, ids.EX_HIST, ids.EX_DETAIL}


def export_context(state: AppState, graph: str, c: Controls) -> dict:
    """What an exported figure shows, for its CSV columns and file name: the run, and for the
    heatmap its layer, iteration(s) and frame mode; units where the values are LCA."""
    out = {"run": c.run_id}
    try:
        b, _ = state.open(c.run_id)
    except _OPEN_ERRORS:
        return out
    if graph == ids.HEATMAP and b.n_rows:
        from lcaviz.app.queries import iterations_of_rows, rows_for

        layer = min(max(int(c.layer or 0), 0), b.n_layers - 1)
        a, e = iterations_of_rows(b, *rows_for(b, c.row, c.mode, c.window))
        out.update(layer=b.layer_names[layer], iteration=f"{a}" if e - a == 1 else f"{a}-{e - 1}",
                   mode={"row": "this iteration", "cumulative": "cumulative",
                         "window": f"sum over last {c.window} rows"}.get(c.mode, c.mode),
                   iteration_tag=f"it{a}" if e - a == 1 else f"it{a}-{e - 1}")
    if graph in _NATS:
        out["units"] = "nats (of the allocated loss)"
    return out


def heatmap_video(state: AppState, c: Controls, fmt: str):
    """Animated GIF or MP4 (H.264) of the page's layer, all its tensors stacked as in the
    heatmap, over the stored rows (evenly spaced beyond ``DEFAULT_MAX_FRAMES``) with the
    page's colour range mode (:mod:`lcaviz.reports.animation`).

    A run or layer without per-parameter rows downloads a short text file that says why
    instead (a download is this callback's only output).
    """
    import tempfile
    from pathlib import Path

    from lcaviz.reports.animation import DEFAULT_MAX_FRAMES, make_animation

    stem = c.run_id.rsplit(".", 1)[0]
    try:
        b, _ = state.open(c.run_id)
        layer = min(max(int(c.layer or 0), 0), b.n_layers - 1)
        stem = f"{stem}-{b.layer_names[layer]}"
        with tempfile.TemporaryDirectory(prefix="lcaviz-video-") as tmp:
            out = Path(tmp) / f"video.{fmt}"
            make_animation(b, out, layer=layer, fmt=fmt, max_frames=DEFAULT_MAX_FRAMES,
                           range_mode="frame" if c.range_mode == "frame" else "fixed")
            data = out.read_bytes()
    except _OPEN_ERRORS as e:  # unreadable run, no rows for this layer, no rows yet
        return dcc.send_string(f"No {fmt.upper()} was made for {c.run_id}: {e}\n",
                               safe_filename(f"{stem}-{fmt}-not-made", "txt"))
    return dcc.send_bytes(data, safe_filename(stem, fmt))


def ctx_clicked() -> bool:
    """True unless the callback fired for a button that was only (re)created (n_clicks 0)."""
    try:
        trig = ctx.triggered
    except Exception:  # noqa: BLE001 - called outside a Dash request (tests)
        return True
    return any(t.get("value") for t in trig)


def report(state: AppState, values: list):
    """The whole run page as one self-contained HTML file (plotly.js inlined); no_update when
    the run cannot be opened (the page then shows its error card and hides the button)."""
    c = controls_from_values(values)
    try:
        b, key = state.open(c.run_id)
    except _OPEN_ERRORS:
        return dash.no_update
    graphs = [ids.HEATMAP, ids.LAYER_BARS, ids.LAYER_CURVES, ids.LOSS, ids.RESIDUAL,
              ids.HELP_TIME, ids.HELP_HIST, ids.HELP_LAYER, ids.HELP_FRACTION, ids.WEIBULL,
              ids.SYNC_PEAKS] + ([ids.LCA_ERROR, ids.TABLE_S1] if b.has_lca_error else []) \
        + ([ids.TRAIN_VAL] if b.has_val else []) \
        + ([ids.EX_GRID, ids.EX_HIST] if b.has_examples and b.n_rows else [])
    figs = [build_figure(state, g, c) for g in graphs]
    from lcaviz.app.pages.run_report import CAPTIONS, report_tables
    from lcaviz.app.queries import run_meta, subtitle

    html_text = html_report(f"LCA report — {c.run_id}", figs, intro=subtitle(run_meta(b)),
                            captions=[CAPTIONS.get(g, "") for g in graphs],
                            tables=report_tables(state, b, key))
    return dcc.send_string(html_text, safe_filename(f"{c.run_id.rsplit('.', 1)[0]}-report",
                                                    "html"))


def report_button(meta: dict | None) -> tuple[dict, str]:
    """Style and tooltip of "Download HTML report": shown only once the run has opened (an
    error page has no figures to report)."""
    if not meta:
        return {"display": "none"}, "no run is open"
    return {}, "every figure of this page in one offline HTML file"


def register_exports(app: dash.Dash, state: AppState) -> None:
    states = [State(cid, prop) for _, cid, prop in CONTROL_STATES]
    app.callback(
        Output({"type": ids.EXPORT_DOWNLOAD, "page": "run"}, "data"),
        Input({"type": ids.EXPORT, "page": "run", "graph": ALL, "fmt": ALL}, "n_clicks"), *states,
        prevent_initial_call=True,
    )(lambda _clicks, *vals: export_figure(state, ctx.triggered_id, list(vals)))
    app.callback(
        Output(ids.REPORT_BTN, "style"), Output(ids.REPORT_BTN, "title"),
        Input(ids.RUN_META, "data"),
    )(report_button)
    app.callback(
        Output(ids.REPORT_DOWNLOAD, "data"), Input(ids.REPORT_BTN, "n_clicks"), *states,
        prevent_initial_call=True,
    )(lambda n, *vals: report(state, list(vals)) if n else dash.no_update)
