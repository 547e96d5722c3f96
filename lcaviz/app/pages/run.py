"""Run page (``/run?id=REL_PATH`` or ``/run/REL_PATH``): one run, scrubbed through training.

The layout is static; everything that depends on the bundle is filled in by callbacks
(:mod:`lcaviz.app.pages.run_callbacks`) once the run id store is set, so the page can also show a
clean error card for a bad id or an unreadable bundle.
"""

from __future__ import annotations

import uuid

import dash
from dash import ClientsideFunction, Input, Output, dcc, html
from flask import Response, request

from lcaviz.app import ids
from lcaviz.app.pages import run_callbacks, run_examples
from lcaviz.app.pages.components import graph_card, labelled, radio, section, toggle
from lcaviz.app.pages.run_analysis import GROUPS
from lcaviz.app.pages.run_views import Controls
from lcaviz.app.state import AppState
from lcaviz.figures.export import EXPORT_SIZES

REFRESH_MS = 1_000
CANCEL_ROUTE = "/lcaviz/jobs/cancel"



def _player(mode: str = "row") -> html.Div:
    """The player (sticky): lca_player.js builds play/pause, the frame slider, go-to-iteration,
    step, rate and loop inside ``PLAYER_BAR``; the frame controls below need the server."""
    return html.Div([
        html.Div(id=ids.PLAYER_BAR),
        html.Div([
            labelled("frame", radio(ids.MODE, [("row", "this iteration"),
                                               ("cumulative", "cumulative up to t"),
                                               ("window", "sum over last W rows")], mode)),
            labelled("W", dcc.Input(id=ids.WINDOW, type="number", min=1, step=1, value=10,
                                    debounce=True, className="num")),
            html.Span(id="run-window-note", className="muted small", role="status"),
        ], className="player-row controls-row"),
    ], className="player card sticky")


def _heatmap_section() -> html.Section:
    controls = [
        labelled("layer", dcc.Dropdown(id=ids.LAYER, options=[], value=0, clearable=False),
                 "220px"),
        labelled("head / part", dcc.Dropdown(id=ids.HEAT_GROUP, clearable=False, value="",
                                             options=[{"label": "whole layer", "value": ""}]),
                 "160px"),
        labelled("colour range", radio(ids.RANGE_MODE, [("fixed", "fixed over run"),
                                                       ("frame", "per frame"),
                                                       ("manual", "manual ±")], "fixed")),
        labelled("±", dcc.Input(id=ids.RANGE_VALUE, type="number", min=0, debounce=True,
                                placeholder="1e-5", className="num")),
        # remembered by this browser (localStorage): a colour-blind reader sets it once
        labelled("colours", dcc.RadioItems(
            id=ids.PALETTE, options=[{"value": "redgreen", "label": "green helps / red hurts"},
                                     {"value": "blueorange",
                                      "label": "blue helps / orange hurts (colour-blind safe)"}],
            value="redgreen", inline=True, className="radio", persistence=True,
            persistence_type="local")),
        labelled("resolution", radio(ids.RESOLUTION, [("auto", "block sums"),
                                                     ("full", "full")], "auto")),
        html.Button("reset zoom", id=ids.ZOOM_RESET, n_clicks=0, className="btn small"),
    ]
    # a plain div: lca_player.js paints frames on a canvas there and draws Plotly axes over
    # them once Plotly has loaded (which is after the first frame)
    host = html.Div(id=ids.HEATMAP, className="heat-host")
    return section("Per-parameter LCA (negative helps, positive hurts)", [
        graph_card(ids.HEATMAP, "Heatmap", controls=controls, loading=False,
                   extra_exports=("gif", "mp4"), graph=host,
                   header=html.Div(id=ids.HEATMAP_TITLE, className="heat-title"),
                   footer=html.P(id=ids.HEATMAP_INFO, className="muted small")),
    ], sid="sec-heatmap")


def _drill_section() -> html.Section:
    return section("Selected parameter", [
        graph_card(ids.DRILL, "One parameter through training (click a heatmap cell)",
                   footer=html.P(id=ids.DRILL_INFO, className="muted small"),
                   placeholder="Click a heatmap cell to follow that parameter through "
                               "training."),
    ], sid="sec-drill")


def _layers_section() -> html.Section:
    bars_ctl = [labelled("scope", radio(ids.BARS_SCOPE, [("total", "whole run"),
                                                        ("upto", "up to t")], "total")),
                labelled("scale", radio(ids.BARS_NORM, [("raw", "total"),
                                                       ("per_param", "per parameter")], "raw")),
                # enabled by the run's metadata where it stores named groups (heads)
                labelled("by", radio(ids.BARS_BY, [("layer", "layer"),
                                                   ("group", "head / part")], "layer"))]
    curve_ctl = [toggle(ids.CURVES_CUMULATIVE, "cumulative", "cum")]
    return section("Layers", [html.Div([
        graph_card(ids.LAYER_BARS, "LCA per layer", controls=bars_ctl),
        graph_card(ids.LAYER_CURVES, "LCA per layer over time", controls=curve_ctl),
    ], className="grid2"),
        graph_card(ids.TRAIN_VAL, "Training vs validation loss: which layers generalise")],
        sid="sec-layers")


def _loss_section() -> html.Section:
    loss_ctl = [toggle(ids.LOSS_LOG, "log scale", "log")]
    res_ctl = [toggle(ids.RESIDUAL_LOG, "log |residual|", "log")]
    return section("Loss and conservation", [html.Div([
        graph_card(ids.LOSS, "Loss", controls=loss_ctl),
        graph_card(ids.RESIDUAL, "Residual ΔL − ΣLCA", controls=res_ctl),
    ], className="grid2")], sid="sec-loss")


def _helping_section() -> html.Section:
    wb_ctl = [radio(ids.WEIBULL_GROUP, list(GROUPS), "sign"),
              html.Button("Compute", id=ids.SCAN_START, n_clicks=0, className="btn small",
                          title="stream every LCA value once (histograms of (b) and the fits)"),
              html.Span(id=ids.WEIBULL_STATUS, className="muted small status")]
    return section("Helping and hurting (paper Fig. 3)", [
        html.Div([
            graph_card(ids.HELP_TIME, "(a) % helping / hurting / zero over time"),
            graph_card(ids.HELP_HIST, "(b) distribution of helping and hurting LCA"),
            graph_card(ids.HELP_LAYER, "(c) % helping per layer"),
            graph_card(ids.HELP_FRACTION, "(d) fraction of iterations each parameter helped"),
        ], className="grid2"),
        graph_card(ids.WEIBULL, "Heavy tails: |LCA| with Weibull fits", controls=wb_ctl),
        dcc.Interval(id=ids.WEIBULL_INTERVAL, interval=700, disabled=True),
        dcc.Store(id="run-scan-job"),
    ], sid="sec-helping")


def _sync_section() -> html.Section:
    def num(id_, value, lo, hi):
        return dcc.Input(id=id_, type="number", min=lo, max=hi, step=1, value=value,
                         debounce=True, className="num")

    ctl = [
        labelled("class", dcc.Dropdown(id=ids.SYNC_CLASS, options=[], value=0,
                                       clearable=False), "160px"),
        labelled("top k peaks", num(ids.SYNC_K, 20, 1, 200)),
        html.Span(id="run-sync-k-note", className="muted small", role="status"),
        labelled("shift ± s", num(ids.SYNC_SHIFT, 2, 1, 50)),
        labelled("resamples", num(ids.SYNC_RESAMPLES, 1000, 10, 20000)),
        html.Button("Run shift test", id=ids.SYNC_RUN, n_clicks=0, className="btn small"),
        html.Span(id=ids.SYNC_STATUS, className="muted small status"),
    ]
    return section("Synchronised learning across layers (paper Fig. 6)", [
        graph_card(ids.SYNC_PEAKS, "Per-class learning moments by layer", controls=ctl),
        graph_card(ids.SYNC_TEST, "Random-shift test"),
        dcc.Interval(id=ids.SYNC_INTERVAL, interval=700, disabled=True),
        dcc.Store(id="run-sync-job"),
    ], sid="sec-sync")


def _first(v):
    return (v[0] if v else None) if isinstance(v, list) else v


def url_view(query: dict) -> dict:
    """The view a link asks for (``layer``: a name, ``it``: an iteration, ``mode``): the page
    writes them into its URL as they change, so a copied link reopens the same view."""
    out = {}
    layer, it, mode = (_first(query.get(k)) for k in ("layer", "it", "mode"))
    if layer:
        out["layer"] = str(layer)
    if it is not None and str(it).isdigit():
        out["it"] = int(it)
    if mode in ("row", "cumulative", "window"):
        out["mode"] = mode
    return out


def layout(id: str | None = None, run_id: str | None = None, **query) -> html.Div:  # noqa: A002
    """Run page layout; ``id`` (query) or ``run_id`` (path) names the bundle; ``layer``,
    ``it`` and ``mode`` (query) the view (:func:`url_view`)."""
    rid = _first(id or run_id) or ""
    view = url_view(query)
    return html.Div([
        dcc.Store(id=ids.RUN_ID, data=rid),
        dcc.Store(id=ids.URL_VIEW, data=view),
        # this visit of the page: its background jobs are cancelled when it is left
        dcc.Store(id=ids.PAGE_TOKEN, data=uuid.uuid4().hex),
        html.Div(id="run-page-jobs", hidden=True),
        dcc.Store(id=ids.RUN_META),
        dcc.Store(id=ids.HEATMAP_PLAN),
        dcc.Store(id=ids.HEATMAP_STREAM),
        dcc.Store(id=ids.PANELS_READY),
        dcc.Store(id=ids.PANELS_META),
        dcc.Store(id=ids.FRAME, data={"index": 0, "iteration": 0, "row": 0, "end": 1}),
        dcc.Store(id=ids.FRAME_BARS),
        dcc.Store(id=ids.FRAME_DRILL),
        dcc.Store(id=ids.ZOOM),
        dcc.Store(id=ids.ZOOM_REQUEST),
        dcc.Store(id=ids.DRILL_PARAM),
        dcc.Download(id={"type": ids.EXPORT_DOWNLOAD, "page": "run"}),
        dcc.Download(id=ids.REPORT_DOWNLOAD),
        # a live run grows on the page within a second of the writer's flush
        dcc.Interval(id="run-refresh", interval=REFRESH_MS, disabled=True),
        html.Div([
            html.Div([html.H1(id=ids.RUN_HEADER, children=rid or "Run"),
                      html.Div(id="run-subtitle", className="muted")]),
            html.Div([labelled("export size", dcc.Dropdown(
                          id=ids.EXPORT_SIZE, clearable=False, value="screen",
                          persistence=True, persistence_type="local",
                          options=[{"label": k, "value": k} for k in EXPORT_SIZES]), "150px"),
                      html.Button("Download HTML report", id=ids.REPORT_BTN, n_clicks=0,
                                  className="btn"),
                      dcc.Link("← all runs", href="/", className="btn ghost")],
                     className="toolbar"),
        ], className="page-head"),
        html.Div(id=ids.RUN_ERROR),
        html.Div([
            _player(view.get("mode", "row")),
            _heatmap_section(),
            # the other panels mount once the heatmap has painted: a dozen Plotly figures
            # drawn at load would hold the first frame back by a second
            html.Div(id=ids.PANELS),
        ], id="run-body"),
    ])


def _error_section() -> html.Section:
    return section("How exact is each parameter's LCA (paper Table S1)", [html.Div([
        graph_card(ids.LCA_ERROR, "Error of the stored LCA per layer"),
        graph_card(ids.TABLE_S1, "First order vs RK4"),
    ], className="grid2")], sid="sec-error")


def panels() -> list[html.Section]:
    """The sections below the heatmap (mounted when ``PANELS_READY`` is set)."""
    return [_drill_section(), run_examples.examples_section(), _layers_section(),
            _loss_section(), _error_section(), _helping_section(), _sync_section()]


def number_note(name: str, value, lo: int, hi: int | None, default: int) -> str:
    """What a number box's value becomes in the views (``Controls.from_dict``), when that is
    not the value itself: empty → the default, a fraction → its whole part, outside [lo, hi]
    → clipped."""
    if value is None or value == "":
        return f"{name} must be a whole number ≥ {lo}" + (f" and ≤ {hi}" if hi else "") + \
            f"; using {default}"
    used = max(lo, int(value)) if hi is None else max(lo, min(int(value), hi))
    if used == value:
        return ""
    bounds = f"{lo}–{hi}" if hi else f"≥ {lo}"
    return f"{name} = {value} is not a whole number {bounds}; using {used}"


def register_callbacks(app: dash.Dash, state: AppState) -> None:
    """Wire the run page (delegates to :mod:`lcaviz.app.pages.run_callbacks`)."""
    app.callback(Output(ids.PANELS, "children"), Input(ids.PANELS_READY, "data"),
                 prevent_initial_call=True)(lambda ready: panels() if ready else dash.no_update)
    run_callbacks.register(app, state)
    run_examples.register(app, state)
    # a number the views cannot use is said so, with the value used instead (never silently)
    app.callback(Output("run-window-note", "children"), Input(ids.WINDOW, "value"))(
        lambda w: number_note("W", w, 1, None, Controls().window))
    app.callback(Output("run-sync-k-note", "children"), Input(ids.SYNC_K, "value"))(
        lambda k: number_note("top k", k, 1, 200, Controls().sync_k))
    # the player hears the page's token and cancels its jobs when the page is left
    app.clientside_callback(ClientsideFunction("lcaviz", "pageJobs"),
                            Output("run-page-jobs", "title"),
                            Input(ids.PAGE_TOKEN, "data"))

    def cancel_jobs() -> Response:
        """``POST /lcaviz/jobs/cancel?owner=TOKEN`` (a beacon from a page being left)."""
        owner = request.args.get("owner", "")
        n = state.jobs.cancel_owner(owner) if 0 < len(owner) <= 64 else 0
        return Response(f"{n} cancelled", status=200, mimetype="text/plain")

    app.server.add_url_rule(CANCEL_ROUTE, "lcaviz_jobs_cancel", cancel_jobs, methods=["POST"])
