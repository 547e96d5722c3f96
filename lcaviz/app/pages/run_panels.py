"""Run-page panels other than the heatmap: the cheap views, the time-marker patches and the
background analyses (value scan + Weibull fits, shift test), as plain functions plus wiring.
"""

from __future__ import annotations

import dash
from dash import ClientsideFunction, Input, Output, State, ctx

from lcaviz.app import ids
from lcaviz.app.pages import run_analysis, run_sync, run_views
from lcaviz.app.pages.run_views import Controls
from lcaviz.app.security import RunPathError
from lcaviz.app.state import AppState
from lcaviz.bundle import BundleError
from lcaviz.figures.synchrony import class_label
from lcaviz.figures.theme import empty_figure

NU = dash.no_update
MARKED = ("loss", "residual", "layer_curves", "help_time")  # figures with a time marker
_OPEN_ERRORS = (RunPathError, BundleError, OSError)


def simple_view(state: AppState, name: str, run_id, meta, **controls):
    """Any cheap run view by builder name; an empty figure when the run is not loaded."""
    if not run_id or not meta:
        return NU  # before the heatmap has painted (PANELS_META): nothing to draw yet
    try:
        fig = getattr(run_views, name)(state, Controls.from_dict({"run_id": run_id,
                                                                  **controls}))
    except _OPEN_ERRORS as e:
        return empty_figure(str(e))
    if name in MARKED and fig.layout.shapes:  # on screen the player draws the time marker
        fig.layout.shapes[0].visible = False
    return fig


def by_options(meta: dict | None) -> list[dict]:
    """The bars' "by" choices: "head / part" only where the run stores named groups."""
    groups = bool((meta or {}).get("has_groups"))
    return [{"label": "layer", "value": "layer"},
            {"label": "head / part", "value": "group", "disabled": not groups,
             "title": "" if groups else "this run stores no groups finer than layers"}]


def class_options(meta: dict) -> tuple[list[dict], int]:
    """Options of the shift test's class menu (``"class 3"``), first class selected."""
    if not meta.get("has_class_layer"):
        return [{"label": "all classes", "value": 0}], 0
    return [{"label": class_label(n), "value": i} for i, n in enumerate(meta["classes"])], 0


def scan_views(state: AppState, trigger, run_id, meta, group, job_key, owner=None):
    """Fig. 3b and the Weibull figure from the background value scan (start or poll).

    Returns:
        ``(hist figure, weibull figure, status text, interval disabled, job key)``.
    """
    if not run_id or not meta:
        return NU, NU, "", True, None
    polling = trigger in (ids.WEIBULL_INTERVAL, ids.WEIBULL_GROUP) and job_key
    stored = meta["R"] * meta.get("row_cols", meta["P"])  # the values there are to stream
    auto = stored <= run_analysis.AUTO_SCAN_CELLS
    try:
        if not (polling or auto or trigger == ids.SCAN_START):
            st, key = run_analysis.scan_peek(state, run_id)
            if st is None:  # a large run: streaming all of it waits for the button
                msg = empty_figure(f"{stored:,} stored LCA values: press “Compute” to stream "
                                   "them once for the histograms and fits.")
                return msg, msg, "", True, None
        else:
            st, key = run_analysis.scan_status(state, run_id, job_key if polling else None,
                                               owner=owner)
    except _OPEN_ERRORS as e:
        return empty_figure(str(e)), empty_figure(str(e)), "", True, None
    text = run_analysis.status_text(st, "value histograms and Weibull fits")
    if st.state in ("running", "queued"):
        wait = empty_figure("Waiting for a free worker…" if st.state == "queued" else
                            "Computing… (scrubbing stays responsive meanwhile)")
        return (wait if trigger != ids.WEIBULL_INTERVAL else NU,
                wait if trigger != ids.WEIBULL_INTERVAL else NU, text, False, key)
    if st.state in ("error", "cancelled"):
        return empty_figure(text), empty_figure(text), text, True, None
    return (run_analysis.histogram_figure(st.result),
            run_analysis.weibull_view(st.result, group or "sign"), text, True, key)


def sync_views(state: AppState, trigger, run_id, meta, cls, k, shift, resamples, job_key,
               owner=None):
    """Shift-test figure: starts on the button, polls on the interval, re-slices on class.

    Returns:
        ``(test figure, status text, interval disabled, job key)``.
    """
    if not run_id or not meta:
        return NU, "", True, None
    c = Controls.from_dict({"sync_class": cls or 0, "sync_k": k,
                            "sync_shift": shift or 2, "sync_resamples": resamples or 1000})
    if trigger != ids.SYNC_RUN and not job_key:
        return run_sync.test_view(None, 0), "", True, None
    try:
        st, key = run_sync.sync_status(state, run_id, c.sync_k, c.sync_shift,
                                       c.sync_resamples,
                                       None if trigger == ids.SYNC_RUN else job_key,
                                       owner=owner)
    except _OPEN_ERRORS as e:
        return empty_figure(str(e)), "", True, None
    text = run_analysis.status_text(st, "shift test")
    if st.state in ("running", "queued"):
        return NU if trigger == ids.SYNC_INTERVAL else empty_figure("Computing…"), text, \
            False, key
    if st.state in ("error", "cancelled"):
        return empty_figure(text), text, True, None if st.state == "cancelled" else key
    return run_sync.test_view(st.result, c.sync_class), text, True, key


def register_views(app: dash.Dash, state: AppState) -> None:
    """Attach the panel callbacks to ``app``."""
    cb = app.callback
    # the panels start once the heatmap has painted (the player sets PANELS_READY): the first
    # frame does not queue behind a dozen figures on the server and in the browser
    app.clientside_callback(ClientsideFunction("lcaviz", "panelsMeta"),
                            Output(ids.PANELS_META, "data"), Input(ids.RUN_META, "data"),
                            Input(ids.PANELS_READY, "data"), State(ids.RUN_ID, "data"))
    meta_in, rid_st = Input(ids.PANELS_META, "data"), State(ids.RUN_ID, "data")
    # the frame (from the player) sets only where time markers sit: a State, so playing
    # never re-renders these figures; the player moves their markers itself
    frame_st = (State(ids.FRAME, "data"), State(ids.MODE, "value"), State(ids.WINDOW, "value"))

    def view(name, **kw):
        return lambda meta, rid, fr, m, w, *extra: simple_view(
            state, name, rid, meta, row=(fr or {}).get("row", 0), mode=m, window=w,
            **{k: f(x) for (k, f), x in zip(kw.items(), extra, strict=True)})

    # a slider move reaches the server only where a panel shows that frame: FRAME_BARS
    # while the bars say "up to t", FRAME_DRILL while a parameter is selected
    app.clientside_callback(ClientsideFunction("lcaviz", "frameGate"),
                            Output(ids.FRAME_BARS, "data"), Output(ids.FRAME_DRILL, "data"),
                            Input(ids.FRAME, "data"), State(ids.DRILL_PARAM, "data"))
    bars = view("layer_bars", bars_scope=str, bars_norm=str, bars_by=str)
    cb(Output(ids.LAYER_BARS, "figure"), meta_in, rid_st, Input(ids.FRAME_BARS, "data"),
       Input(ids.MODE, "value"), Input(ids.WINDOW, "value"), Input(ids.BARS_SCOPE, "value"),
       Input(ids.BARS_NORM, "value"), Input(ids.BARS_BY, "value"), State(ids.FRAME, "data"),
       )(lambda meta, rid, _fb, m, w, scope, norm, by, fr: bars(meta, rid, fr, m, w, scope,
                                                                 norm, by))
    cb(Output(ids.LAYER_CURVES, "figure"), meta_in, rid_st, *frame_st,
       Input(ids.CURVES_CUMULATIVE, "value"), Input(ids.BARS_BY, "value"),
       )(view("layer_curves", curves_cumulative=bool, bars_by=str))
    cb(Output(ids.BARS_BY, "options"), Input(ids.RUN_META, "data"))(by_options)
    cb(Output(ids.LOSS, "figure"), meta_in, rid_st, *frame_st,
       Input(ids.LOSS_LOG, "value"))(view("loss", loss_log=bool))
    cb(Output(ids.RESIDUAL, "figure"), meta_in, rid_st, *frame_st,
       Input(ids.RESIDUAL_LOG, "value"))(view("residual", residual_log=bool))
    cb(Output(ids.HELP_TIME, "figure"), meta_in, rid_st, *frame_st)(view("help_time"))
    cb(Output(ids.LCA_ERROR, "figure"), meta_in, rid_st, *frame_st)(view("lca_error"))
    cb(Output(ids.TRAIN_VAL, "figure"), meta_in, rid_st, *frame_st)(view("train_val"))
    cb(Output(ids.TABLE_S1, "figure"), meta_in, rid_st, *frame_st)(view("table_s1"))
    cb(Output(ids.HELP_LAYER, "figure"), meta_in, rid_st, *frame_st)(view("help_layer"))
    cb(Output(ids.HELP_FRACTION, "figure"), meta_in, rid_st, *frame_st)(view("help_fraction"))
    cb(Output(ids.HELP_HIST, "figure"), Output(ids.WEIBULL, "figure"),
       Output(ids.WEIBULL_STATUS, "children"), Output(ids.WEIBULL_INTERVAL, "disabled"),
       Output("run-scan-job", "data"),
       meta_in, Input(ids.WEIBULL_GROUP, "value"), Input(ids.WEIBULL_INTERVAL, "n_intervals"),
       Input(ids.SCAN_START, "n_clicks"), rid_st, State("run-scan-job", "data"),
       State(ids.PAGE_TOKEN, "data"),
       )(lambda meta, g, _n, _c, rid, jk, tok: scan_views(state, ctx.triggered_id, rid, meta,
                                                           g, jk, tok))
    cb(Output(ids.SYNC_PEAKS, "figure"), meta_in, Input(ids.SYNC_CLASS, "value"),
       Input(ids.SYNC_K, "value"), rid_st,
       )(lambda meta, c, k, rid: run_sync.peaks_view(
           state, rid, c or 0, Controls.from_dict({"sync_k": k}).sync_k)  # as the test's k
         if rid and meta else NU)
    cb(Output(ids.SYNC_CLASS, "options"), Output(ids.SYNC_CLASS, "value"), meta_in,
       )(lambda meta: class_options(meta) if meta else (NU, NU))
    cb(Output(ids.SYNC_TEST, "figure"), Output(ids.SYNC_STATUS, "children"),
       Output(ids.SYNC_INTERVAL, "disabled"), Output("run-sync-job", "data"),
       meta_in, Input(ids.SYNC_RUN, "n_clicks"), Input(ids.SYNC_INTERVAL, "n_intervals"),
       Input(ids.SYNC_CLASS, "value"), rid_st, State(ids.SYNC_K, "value"),
       State(ids.SYNC_SHIFT, "value"), State(ids.SYNC_RESAMPLES, "value"),
       State("run-sync-job", "data"), State(ids.PAGE_TOKEN, "data"),
       )(lambda meta, _b, _n, c, rid, k, s, n, jk, tok: sync_views(
           state, ctx.triggered_id, rid, meta, c, k, s, n, jk, tok))

