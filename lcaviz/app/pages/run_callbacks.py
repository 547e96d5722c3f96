"""Callbacks of the run page as plain functions (``state`` first), plus their wiring.

Tests call these functions directly; :func:`register` attaches them to one app through small
lambdas, so no global Dash state is involved. The heatmap's frames never pass through a
callback: :func:`heatmap_stream` describes them once per layer / mode / resolution / zoom and
``lca_player.js`` fetches, caches and paints them (see :mod:`lcaviz.app.frames`).
"""

from __future__ import annotations

import dash
from dash import ClientsideFunction, Input, Output, State, ctx, html

from lcaviz.app import ids
from lcaviz.app.frames import stream_descriptor
from lcaviz.app.pages import run_groups, run_stream, run_views
from lcaviz.app.pages.components import error_card
from lcaviz.app.pages.run_exports import register_exports
from lcaviz.app.pages.run_panels import (  # noqa: F401 - re-exported for tests and benchmarks
    register_views,
    scan_views,
    simple_view,
    sync_views,
)
from lcaviz.app.pages.run_views import Controls
from lcaviz.app.queries import manual_range, run_meta, subtitle
from lcaviz.app.security import RunPathError
from lcaviz.app.state import AppState
from lcaviz.bundle import BundleError
from lcaviz.figures.heatmap_axes import heatmap_axes
from lcaviz.figures.layout2d import image_shape, region_from_relayout
from lcaviz.figures.theme import empty_figure

NU = dash.no_update
_OPEN_ERRORS = (RunPathError, BundleError, OSError)


def init_run(state: AppState, run_id: str | None, view: dict | None = None):
    """Load a run: meta store, header, error card, layer options.

    Returns:
        ``(meta, title, subtitle, error, body style, layer options, layer value,
        refresh poll disabled)``.
    """
    hidden = {"display": "none"}
    try:
        if not run_id:
            raise RunPathError("no run id given (open a run from the runs page)")
        b, _ = state.open(run_id)
    except _OPEN_ERRORS as e:
        return None, "Cannot open run", "", error_card(str(e)), hidden, [], None, True
    meta = run_meta(b)
    rows = set(b.row_layers)
    layers = [{"label": f"{n} ({s:,})" + ("" if i in rows else " — no per-parameter rows"),
               "value": i}
              for i, (n, s) in enumerate(zip(b.layer_names, b.layer_sizes, strict=True))]
    first = min(rows) if rows else 0
    wanted = (view or {}).get("layer")  # a link's layer (by name), where the run has it
    if wanted in b.layer_names:
        first = b.layer_names.index(wanted)
    live = meta["status"] == "running"  # only a live run needs the refresh poll
    return meta, run_id, subtitle(meta), warning_card(meta), {}, layers, first, not live


def warning_card(meta: dict):
    """The run's recorded warnings, shown at the top of the page (None without any)."""
    if not meta.get("warnings"):
        return None
    return html.Div([html.Strong("Check this run")] + [html.P(w) for w in meta["warnings"]],
                    className="error-card warning-card",
                    style={"background": "#fff4e5", "borderColor": "#f0c36d", "color": "#6b4100"})


def refresh_live(state: AppState, _n, run_id: str | None, meta: dict | None):
    """For a running bundle: new meta (T, R, status), status line, and whether to stop
    polling (the run finished); else no_update."""
    if not run_id or not meta or meta.get("status") != "running":
        return NU, NU, True
    try:
        b, _ = state.open(run_id)
    except _OPEN_ERRORS:
        return NU, NU, NU
    new = run_meta(b)
    if new == meta:
        return NU, NU, NU
    return new, subtitle(new), new["status"] != "running"


def heatmap_stream(state: AppState, run_id, meta, layer, mode, window, range_mode, resolution,
                   zoom, group=None, range_value=None):
    """The heatmap's stream: what the player fetches and draws, with its axes figure.

    A layer stored without per-parameter rows gets its per-layer curve and a plain ``note``;
    a head chosen in the "head / part" menu (``group``, while the zoom is its rectangle) is
    named, with its size and exact LCA per frame.

    Returns:
        ``(stream, plan)``; the stream carries an ``error`` message when the run is unreadable.
    """
    if not run_id or not meta or layer is None:
        return None, None
    try:  # a layer or zoom the run does not have (a crafted bundle, a stale page): a message
        c = Controls.from_dict({"run_id": run_id, "layer": layer, "mode": mode,
                                "window": window, "range_mode": range_mode,
                                "resolution": resolution, "zoom": zoom})
        stream = stream_descriptor(state, run_id, c.layer, c.mode, c.window, c.range_mode,
                                   c.resolution, c.zoom)
        b, key = state.open(run_id)
        if not stream["has_rows"]:
            return run_stream.no_rows_stream(state, key, b, c.layer, stream), []
        plan = stream["items"]
        shown = run_stream.mark_heads(state, run_id, c.layer, plan, c.zoom, group)
        if shown:
            run_stream.add_group(state, key, b, stream, shown, c.mode, c.window)
    except (*_OPEN_ERRORS, ValueError, IndexError) as e:
        return {"error": f"Cannot read this run: {public_message(state, e)}",
                "run": run_id}, None
    if c.range_mode == "manual":  # the typed range (none typed yet: each frame's own)
        stream["zmax"] = manual_range(range_value)
    fig = heatmap_axes(plan, uirevision=f"{run_id}|{c.layer}|{c.zoom}")
    stream["figure"] = fig.to_plotly_json()
    return stream, plan


def public_message(state: AppState, e: Exception) -> str:
    """An error's message without the server's paths (the run id is what the page knows)."""
    return str(e).replace(f"{state.runs_dir}/", "").replace(str(state.runs_dir), "RUNS_DIR")


def stream_callback(state: AppState, trigger, run_id, meta, layer, mode, window, range_mode,
                    resolution, zoom, group=None, range_value=None):
    """:func:`heatmap_stream` for the page's controls; a new layer drops the zoom (it belongs
    to the old image). Returns ``(stream, plan, zoom)``."""
    if trigger == ids.LAYER and zoom:
        zoom, group = None, None
    return (*heatmap_stream(state, run_id, meta, layer, mode, window, range_mode, resolution,
                            zoom, group, range_value), zoom)


def zoom_callback(state: AppState, trigger, relayout, run_id, meta, layer, mode, window,
                  range_mode, resolution, plan, current, group=None, range_value=None):
    """A box zoom (the player's relayout data), the reset button or a head chosen in the
    "head / part" menu: the new zoom region and its stream (full resolution where the region
    is small enough).

    Returns:
        ``(zoom, stream, plan)``.
    """
    if trigger == ids.HEAT_GROUP:
        try:
            region = run_groups.group_zoom(state, run_id, layer, group)
        except _OPEN_ERRORS:
            return NU, NU, NU
    elif trigger == ids.ZOOM_RESET:
        region = None
    else:
        region = update_zoom(trigger, relayout, plan, current)
    if region is NU or region == current:
        return NU, NU, NU
    stream, new_plan = heatmap_stream(state, run_id, meta, layer, mode, window, range_mode,
                                      resolution, region, group, range_value)
    return region, stream, new_plan


def update_zoom(trigger: str | None, relayout, plan, current):
    """Zoom region of the main heatmap image from a box zoom (Plotly relayout data)."""
    if not plan or not relayout:
        return NU
    main = plan[0]
    if main.get("kind") != "image":
        return NU
    if relayout.get("xaxis.autorange") or relayout.get("yaxis.autorange"):
        return None
    if "xaxis.range[0]" not in relayout and "yaxis.range[0]" not in relayout:
        return NU
    nrows, ncols = image_shape(tuple(main["shape"]))
    region = region_from_relayout(relayout, nrows, ncols)
    region = list(region) if region else None
    return NU if region == current else region


def group_menu(state: AppState, trigger, run_id, meta, layer, current):
    """Options of the "head / part" menu; the value goes back to the whole layer when the layer
    changes or the zoom is reset while a head was chosen (a live run's new metadata keeps it)."""
    try:
        options = run_groups.group_options(state, run_id, meta, layer)
    except _OPEN_ERRORS:
        return [run_groups.WHOLE], NU
    value = "" if (trigger in (ids.LAYER, ids.ZOOM_RESET) and current) else NU
    return options, value


def update_drill(state: AppState, run_id, param, frame, mode, window, trigger=None):
    """The drill-down of the clicked parameter (``param`` from the player)."""
    if trigger in (ids.FRAME, ids.FRAME_DRILL) and not param:
        return NU, NU  # the frame moved, nothing is selected: nothing to redraw
    c = Controls.from_dict({"run_id": run_id, "drill": param, "row": (frame or {}).get("row"),
                            "mode": mode, "window": window})
    try:
        fig = run_views.drill(state, c)
    except _OPEN_ERRORS as e:
        return empty_figure(str(e)), ""
    info = ""
    if param:
        info = f"{param['label']} (parameter #{param['flat']:,} of the flat vector)"
    return fig, info


def register(app: dash.Dash, state: AppState) -> None:
    """Attach every run-page callback to ``app``."""
    cb = app.callback
    cb(Output(ids.RUN_META, "data"), Output(ids.RUN_HEADER, "children"),
       Output("run-subtitle", "children"), Output(ids.RUN_ERROR, "children"),
       Output("run-body", "style"), Output(ids.LAYER, "options"), Output(ids.LAYER, "value"),
       Output("run-refresh", "disabled"), Input(ids.RUN_ID, "data"),
       State(ids.URL_VIEW, "data"),
       )(lambda rid, view: init_run(state, rid, view))
    cb(Output(ids.RUN_META, "data", allow_duplicate=True),
       Output("run-subtitle", "children", allow_duplicate=True),
       Output("run-refresh", "disabled", allow_duplicate=True),
       Input("run-refresh", "n_intervals"), State(ids.RUN_ID, "data"),
       State(ids.RUN_META, "data"), prevent_initial_call=True,
       )(lambda n, rid, meta: refresh_live(state, n, rid, meta))
    # the zoom is a State here and an Output of its own callback (below): with it as an Input
    # Dash would hold the first stream back until the zoom callback has run
    cb(Output(ids.HEATMAP_STREAM, "data"), Output(ids.HEATMAP_PLAN, "data"),
       Output(ids.ZOOM, "data"),
       Input(ids.RUN_META, "data"), Input(ids.LAYER, "value"), Input(ids.MODE, "value"),
       Input(ids.WINDOW, "value"), Input(ids.RANGE_MODE, "value"),
       Input(ids.RESOLUTION, "value"), Input(ids.RANGE_VALUE, "value"),
       State(ids.RUN_ID, "data"), State(ids.ZOOM, "data"), State(ids.HEAT_GROUP, "value"),
       )(lambda meta, lay, m, w, rm, res, rv, rid, z, grp: stream_callback(
           state, ctx.triggered_id, rid, meta, lay, m, w, rm, res, z, grp, rv))
    cb(Output(ids.ZOOM, "data", allow_duplicate=True),
       Output(ids.HEATMAP_STREAM, "data", allow_duplicate=True),
       Output(ids.HEATMAP_PLAN, "data", allow_duplicate=True),
       Input(ids.ZOOM_REQUEST, "data"), Input(ids.ZOOM_RESET, "n_clicks"),
       Input(ids.HEAT_GROUP, "value"),
       State(ids.RUN_ID, "data"), State(ids.RUN_META, "data"), State(ids.LAYER, "value"),
       State(ids.MODE, "value"), State(ids.WINDOW, "value"), State(ids.RANGE_MODE, "value"),
       State(ids.RESOLUTION, "value"), State(ids.HEATMAP_PLAN, "data"),
       State(ids.ZOOM, "data"), State(ids.RANGE_VALUE, "value"), prevent_initial_call=True,
       )(lambda rl, _b, grp, rid, meta, lay, m, w, rm, res, plan, cur, rv: zoom_callback(
           state, ctx.triggered_id, rl, rid, meta, lay, m, w, rm, res, plan, cur, grp, rv))
    # the heatmap's colours are the browser's: the player repaints, nothing comes back
    app.clientside_callback(ClientsideFunction("lcaviz", "palette"),
                            Output(ids.HEATMAP_INFO, "title"), Input(ids.PALETTE, "value"))
    # the menu lists the selected layer's heads; a new layer starts from the whole layer
    cb(Output(ids.HEAT_GROUP, "options"), Output(ids.HEAT_GROUP, "value"),
       Input(ids.RUN_META, "data"), Input(ids.LAYER, "value"), Input(ids.ZOOM_RESET, "n_clicks"),
       State(ids.RUN_ID, "data"), State(ids.HEAT_GROUP, "value"),
       )(lambda meta, lay, _r, rid, cur: group_menu(state, ctx.triggered_id, rid, meta, lay,
                                                    cur))
    # the player (assets/lca_player.js) takes the stream; frames never come back through Dash
    app.clientside_callback(ClientsideFunction("lcaviz", "runStream"),
                            Output(ids.PLAYER_BAR, "title"), Input(ids.HEATMAP_STREAM, "data"))
    cb(Output(ids.DRILL, "figure"), Output(ids.DRILL_INFO, "children"),
       Input(ids.DRILL_PARAM, "data"), Input(ids.PANELS_META, "data"),
       Input(ids.FRAME_DRILL, "data"), State(ids.FRAME, "data"), State(ids.RUN_ID, "data"),
       State(ids.MODE, "value"), State(ids.WINDOW, "value"),
       # not prevent_initial_call: when the panels mount, a cell clicked before that (its
       # DRILL_PARAM already set, this figure not there yet) is drawn
       )(lambda p, _m, _fd, fr, rid, m, w: update_drill(state, rid, p, fr, m, w,
                                                        ctx.triggered_id))
    register_views(app, state)
    register_exports(app, state)

