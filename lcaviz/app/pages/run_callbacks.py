"""Callbacks of the run page as plain functions (``state`` first), plus their wiring.

Tests call these functions directly; :func:`register` attaches them to one app through small
lambdas, so no global Dash state is involved.
"""

from __future__ import annotations

import dash
from dash import Input, Output, State, ctx

from lcaviz.app import ids
from lcaviz.app.pages import run_views
from lcaviz.app.pages.components import error_card
from lcaviz.app.pages.run_exports import register_exports
from lcaviz.app.pages.run_panels import (  # noqa: F401 - re-exported for tests and benchmarks
    move_markers,
    register_views,
    scan_views,
    simple_view,
    sync_views,
)
from lcaviz.app.pages.run_views import Controls
from lcaviz.app.queries import param_label, run_meta, slider_label, slider_marks, subtitle
from lcaviz.app.security import RunPathError
from lcaviz.app.state import AppState
from lcaviz.bundle import BundleError
from lcaviz.figures.heatmap import click_to_param
from lcaviz.figures.layout2d import image_shape, region_from_relayout
from lcaviz.figures.theme import empty_figure

NU = dash.no_update
_OPEN_ERRORS = (RunPathError, BundleError, OSError)


def init_run(state: AppState, run_id: str | None):
    """Load a run: meta store, header, error card, slider range, layer and class options.

    Returns:
        ``(meta, title, subtitle, error, body style, slider max, marks, slider value,
        layer options, layer value, class options, class value)``.
    """
    hidden = {"display": "none"}
    try:
        if not run_id:
            raise RunPathError("no run id given (open a run from the runs page)")
        b, _ = state.open(run_id)
    except _OPEN_ERRORS as e:
        return (None, "Cannot open run", "", error_card(str(e)), hidden, 1, {}, 0, [], None,
                [], None)
    meta = run_meta(b)
    last = max(b.n_rows - 1, 0)
    layers = [{"label": f"{n} ({s:,})", "value": i}
              for i, (n, s) in enumerate(zip(b.layer_names, b.layer_sizes, strict=True))]
    classes = [{"label": n, "value": i} for i, n in enumerate(b.class_names)] \
        if b.has_class_layer else [{"label": "all classes", "value": 0}]
    return (meta, run_id, subtitle(meta), None, {}, max(last, 1), slider_marks(b), 0, layers,
            0, classes, 0)



def refresh_live(state: AppState, _n, run_id: str | None, meta: dict | None):
    """For a running bundle: grow the slider and update the status line (else no_update)."""
    if not run_id or not meta or meta.get("status") != "running":
        return NU, NU, NU, NU
    try:
        b, _ = state.open(run_id)
    except _OPEN_ERRORS:
        return NU, NU, NU, NU
    new = run_meta(b)
    if new == meta:
        return NU, NU, NU, NU
    return new, max(b.n_rows - 1, 1), slider_marks(b), subtitle(new)


def play_step(trigger: str | None, value, max_value, speed, loop, disabled):
    """Play/pause toggling and one animation step.

    Returns:
        ``(slider value, interval disabled, button label)``.
    """
    value, max_value = int(value or 0), int(max_value or 0)
    if trigger == ids.PLAY:
        now_disabled = not disabled
        if not now_disabled and value >= max_value:  # restart from the beginning
            value = 0
        return value, now_disabled, "▶ Play" if now_disabled else "❚❚ Pause"
    if disabled:
        return NU, NU, NU
    nxt = value + max(1, int(speed or 1))
    if nxt > max_value:
        if loop:
            return 0, False, "❚❚ Pause"
        return max_value, True, "▶ Play"
    return nxt, False, "❚❚ Pause"


def frame_label(state: AppState, run_id, row, mode, window) -> str:
    try:
        b, _ = state.open(run_id)
    except _OPEN_ERRORS:
        return ""
    return slider_label(b, int(row or 0), mode or "row", int(window or 1))


def update_heatmap(state: AppState, run_id, row, mode, window, layer, range_mode, resolution,
                   zoom):
    """Heatmap figure, its plan (for clicks) and the info line."""
    if not run_id or layer is None:
        return empty_figure("Loading…"), None, ""
    c = Controls.from_dict({"run_id": run_id, "row": row, "mode": mode, "window": window,
                            "layer": layer, "range_mode": range_mode,
                            "resolution": resolution, "zoom": zoom})
    try:
        fig, plan, info = run_views.heatmap(state, c)
    except _OPEN_ERRORS as e:
        return empty_figure(f"Cannot read this run: {e}"), None, ""
    return fig, plan, info


def update_zoom(trigger: str | None, relayout, plan, current):
    """Zoom region of the main heatmap image from a box zoom; reset on layer change/button."""
    if trigger in (ids.ZOOM_RESET, ids.LAYER, ids.RESOLUTION):
        return None
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


def select_param(state: AppState, run_id, click, plan):
    """Clicked heatmap cell -> drill-down parameter ``{"flat", "label", "block"}``."""
    if not click or not plan:
        return NU
    hit = click_to_param(plan, [p["offset"] for p in plan], click)
    if hit is None:
        return NU
    hit["label"] = param_label(hit["tensor"], hit["index"])
    return hit


def update_drill(state: AppState, run_id, param, row, mode, window):
    c = Controls.from_dict({"run_id": run_id, "drill": param, "row": row, "mode": mode,
                            "window": window})
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
       Output("run-body", "style"), Output(ids.SLIDER, "max"), Output(ids.SLIDER, "marks"),
       Output(ids.SLIDER, "value"), Output(ids.LAYER, "options"), Output(ids.LAYER, "value"),
       Output(ids.SYNC_CLASS, "options"), Output(ids.SYNC_CLASS, "value"),
       Input(ids.RUN_ID, "data"))(lambda rid: init_run(state, rid))
    cb(Output(ids.RUN_META, "data", allow_duplicate=True),
       Output(ids.SLIDER, "max", allow_duplicate=True),
       Output(ids.SLIDER, "marks", allow_duplicate=True),
       Output("run-subtitle", "children", allow_duplicate=True),
       Input("run-refresh", "n_intervals"), State(ids.RUN_ID, "data"),
       State(ids.RUN_META, "data"), prevent_initial_call=True,
       )(lambda n, rid, meta: refresh_live(state, n, rid, meta))
    cb(Output(ids.SLIDER, "value", allow_duplicate=True),
       Output(ids.PLAY_INTERVAL, "disabled"), Output(ids.PLAY, "children"),
       Input(ids.PLAY, "n_clicks"), Input(ids.PLAY_INTERVAL, "n_intervals"),
       State(ids.SLIDER, "value"), State(ids.SLIDER, "max"), State(ids.SPEED, "value"),
       State(ids.LOOP, "value"), State(ids.PLAY_INTERVAL, "disabled"),
       prevent_initial_call=True,
       )(lambda _c, _n, v, mx, sp, lp, dis: play_step(ctx.triggered_id, v, mx, sp, bool(lp),
                                                      dis))
    cb(Output(ids.SLIDER_LABEL, "children"), Input(ids.SLIDER, "value"),
       Input(ids.MODE, "value"), Input(ids.WINDOW, "value"), Input(ids.RUN_META, "data"),
       State(ids.RUN_ID, "data"))(lambda r, m, w, _meta, rid: frame_label(state, rid, r, m, w))
    cb(Output(ids.HEATMAP, "figure"), Output(ids.HEATMAP_PLAN, "data"),
       Output(ids.HEATMAP_INFO, "children"),
       Input(ids.SLIDER, "value"), Input(ids.MODE, "value"), Input(ids.WINDOW, "value"),
       Input(ids.LAYER, "value"), Input(ids.RANGE_MODE, "value"),
       Input(ids.RESOLUTION, "value"), Input(ids.ZOOM, "data"), Input(ids.RUN_META, "data"),
       State(ids.RUN_ID, "data"),
       )(lambda r, m, w, lay, rm, res, z, _meta, rid: update_heatmap(state, rid, r, m, w, lay,
                                                                     rm, res, z))
    cb(Output(ids.ZOOM, "data"), Input(ids.HEATMAP, "relayoutData"),
       Input(ids.ZOOM_RESET, "n_clicks"), Input(ids.LAYER, "value"),
       Input(ids.RESOLUTION, "value"), State(ids.HEATMAP_PLAN, "data"), State(ids.ZOOM, "data"),
       prevent_initial_call=True,
       )(lambda rl, _b, _l, _r, plan, cur: update_zoom(ctx.triggered_id, rl, plan, cur))
    cb(Output("run-drill-param", "data"), Input(ids.HEATMAP, "clickData"),
       State(ids.RUN_ID, "data"), State(ids.HEATMAP_PLAN, "data"), prevent_initial_call=True,
       )(lambda click, rid, plan: select_param(state, rid, click, plan))
    cb(Output(ids.DRILL, "figure"), Output(ids.DRILL_INFO, "children"),
       Input("run-drill-param", "data"), Input(ids.RUN_META, "data"),
       State(ids.RUN_ID, "data"), State(ids.SLIDER, "value"), State(ids.MODE, "value"),
       State(ids.WINDOW, "value"),
       )(lambda p, _m, rid, r, m, w: update_drill(state, rid, p, r, m, w))
    register_views(app, state)
    register_exports(app, state)
