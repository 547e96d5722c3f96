"""Callbacks of the run page as plain functions (``state`` first), plus their wiring.

Tests call these functions directly; :func:`register` attaches them to one app through small
lambdas, so no global Dash state is involved. The heatmap's frames never pass through a
callback: :func:`heatmap_stream` describes them once per layer / mode / resolution / zoom and
``lca_player.js`` fetches, caches and paints them (see :mod:`lcaviz.app.frames`).
"""

from __future__ import annotations

import dash
from dash import ClientsideFunction, Input, Output, State, ctx

from lcaviz.app import ids
from lcaviz.app.frames import stream_descriptor
from lcaviz.app.pages import run_groups, run_views
from lcaviz.app.pages.components import error_card
from lcaviz.app.pages.run_exports import register_exports
from lcaviz.app.pages.run_panels import (  # noqa: F401 - re-exported for tests and benchmarks
    register_views,
    scan_views,
    simple_view,
    sync_views,
)
from lcaviz.app.pages.run_views import Controls
from lcaviz.app.queries import run_meta, subtitle
from lcaviz.app.security import RunPathError
from lcaviz.app.state import AppState
from lcaviz.bundle import BundleError
from lcaviz.figures.heatmap_axes import heatmap_axes
from lcaviz.figures.layout2d import image_shape, region_from_relayout
from lcaviz.figures.theme import empty_figure

NU = dash.no_update
_OPEN_ERRORS = (RunPathError, BundleError, OSError)


def init_run(state: AppState, run_id: str | None):
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
    live = meta["status"] == "running"  # only a live run needs the refresh poll
    return meta, run_id, subtitle(meta), None, {}, layers, first, not live


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
                   zoom):
    """The heatmap's stream: what the player fetches and draws, with its axes figure.

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
    except (*_OPEN_ERRORS, ValueError, IndexError) as e:
        return {"error": f"Cannot read this run: {e}", "run": run_id}, None
    plan = stream["items"]
    if stream["has_rows"]:
        fig = heatmap_axes(plan, uirevision=f"{run_id}|{c.layer}|{c.zoom}")
        stream["figure"] = fig.to_plotly_json()
    else:
        stream["error"] = (f"{stream['layer_name']} has no per-parameter rows in this run (it "
                           "was made with --lca-layers); its per-layer LCA is in the bars and "
                           "curves below.")
    return stream, plan


def stream_callback(state: AppState, trigger, run_id, meta, layer, mode, window, range_mode,
                    resolution, zoom):
    """:func:`heatmap_stream` for the page's controls; a new layer or resolution drops the
    zoom (it belongs to the old image). Returns ``(stream, plan, zoom)``."""
    if trigger in (ids.LAYER, ids.RESOLUTION) and zoom:
        zoom = None
    return (*heatmap_stream(state, run_id, meta, layer, mode, window, range_mode, resolution,
                            zoom), zoom)


def zoom_callback(state: AppState, trigger, relayout, run_id, meta, layer, mode, window,
                  range_mode, resolution, plan, current, group=None):
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
                                      resolution, region)
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
       )(lambda rid: init_run(state, rid))
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
       Input(ids.RESOLUTION, "value"), State(ids.RUN_ID, "data"), State(ids.ZOOM, "data"),
       )(lambda meta, lay, m, w, rm, res, rid, z: stream_callback(
           state, ctx.triggered_id, rid, meta, lay, m, w, rm, res, z))
    cb(Output(ids.ZOOM, "data", allow_duplicate=True),
       Output(ids.HEATMAP_STREAM, "data", allow_duplicate=True),
       Output(ids.HEATMAP_PLAN, "data", allow_duplicate=True),
       Input(ids.ZOOM_REQUEST, "data"), Input(ids.ZOOM_RESET, "n_clicks"),
       Input(ids.HEAT_GROUP, "value"),
       State(ids.RUN_ID, "data"), State(ids.RUN_META, "data"), State(ids.LAYER, "value"),
       State(ids.MODE, "value"), State(ids.WINDOW, "value"), State(ids.RANGE_MODE, "value"),
       State(ids.RESOLUTION, "value"), State(ids.HEATMAP_PLAN, "data"),
       State(ids.ZOOM, "data"), prevent_initial_call=True,
       )(lambda rl, _b, grp, rid, meta, lay, m, w, rm, res, plan, cur: zoom_callback(
           state, ctx.triggered_id, rl, rid, meta, lay, m, w, rm, res, plan, cur, grp))
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
       State(ids.MODE, "value"), State(ids.WINDOW, "value"), prevent_initial_call=True,
       )(lambda p, _m, _fd, fr, rid, m, w: update_drill(state, rid, p, fr, m, w,
                                                        ctx.triggered_id))
    register_views(app, state)
    register_exports(app, state)

