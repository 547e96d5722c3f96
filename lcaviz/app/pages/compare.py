"""Compare page (``/compare?ids=a&ids=b`` or ``?ids=a,b``): 2–4 runs on one shared slider."""

from __future__ import annotations

import dash
import numpy as np
from dash import ALL, Input, Output, State, ctx, dcc, html

from lcaviz.analysis import helping, layers
from lcaviz.app import ids
from lcaviz.app.pages.components import error_card, graph_card, labelled, radio, section
from lcaviz.app.pages.run_views import Controls, heatmap
from lcaviz.app.queries import rows_for, series
from lcaviz.app.security import RunPathError, safe_filename
from lcaviz.app.state import AppState
from lcaviz.bundle import BundleError
from lcaviz.figures.compare import layer_totals_figure, overlay_figure
from lcaviz.figures.export import figure_csv, figure_image
from lcaviz.figures.theme import empty_figure

MAX_RUNS = 4
STEPS = 200  # slider positions in "fraction of training" mode
_ERRORS = (RunPathError, BundleError, OSError)


def parse_ids(raw) -> list[str]:
    """Run ids from the query: a list (repeated ``ids=``) or one comma-separated string."""
    if not raw:
        return []
    items = raw if isinstance(raw, list) else str(raw).split(",")
    out = []
    for i in items:
        if i and i not in out:
            out.append(i)
    return out[:MAX_RUNS]


def heat_id(k: int) -> dict:
    return {"type": "cmp-heat", "index": k}


def layout(**query) -> html.Div:
    """Compare layout with one heatmap slot per run (``ids`` query parameter)."""
    run_ids = parse_ids(query.get("ids"))
    heat_cards = [html.Div(dcc.Loading(dcc.Graph(id=heat_id(k), config={"displaylogo": False}),
                                       type="dot", delay_show=400), className="card")
                  for k in range(len(run_ids))]
    return html.Div([
        dcc.Store(id=ids.CMP_IDS, data=run_ids),
        dcc.Download(id={"type": ids.EXPORT_DOWNLOAD, "page": "compare"}),
        html.Div([html.H1("Compare runs"),
                  dcc.Link("← all runs", href="/", className="btn ghost")],
                 className="page-head"),
        html.Div(id=ids.CMP_ERROR),
        html.Div([
            html.Div([
                html.Div(dcc.Slider(id=ids.CMP_SLIDER, min=0, max=STEPS, step=1, value=0,
                                    marks=None, updatemode="mouseup"), className="slider"),
                html.Span(id=ids.CMP_SLIDER_LABEL, className="slider-label"),
            ], className="player-row"),
            html.Div([
                labelled("shared axis", radio(ids.CMP_XAXIS, [
                    ("fraction", "fraction of training"), ("iteration", "iteration")],
                    "fraction")),
                labelled("frame", radio(ids.CMP_MODE, [("row", "this iteration"),
                                                          ("cumulative", "cumulative")],
                                        "row")),
                labelled("layer", dcc.Dropdown(id=ids.CMP_LAYER, options=[], value=None,
                                               clearable=False), "220px"),
            ], className="player-row controls-row"),
        ], className="player card sticky"),
        section("Same layer, side by side",
                [html.Div(heat_cards, className=f"grid{max(2, len(run_ids))}",
                          id=ids.CMP_HEATMAPS)]),
        section("Overlays", [html.Div([
            graph_card(ids.CMP_LOSS, "Train loss", page="compare"),
            graph_card(ids.CMP_HELP, "% of parameters helping", page="compare"),
        ], className="grid2"), graph_card(ids.CMP_LAYER_TOTALS, "Total LCA per layer",
                                          page="compare")]),
    ])


def check_runs(state: AppState, run_ids: list[str]):
    """Open every run; returns ``(ok ids, error cards, layer options, default layer)``.

    Layers present in every run come first (and the first of them is the default); layers
    that only some runs have are listed after them, marked as such.
    """
    ok, cards, names = [], [], []
    if len(run_ids) < 2:
        cards.append(error_card("Choose 2–4 runs on the runs page.", "Nothing to compare"))
    for rid in run_ids:
        try:
            b, _ = state.open(rid)
        except _ERRORS as e:
            cards.append(error_card(str(e), f"Cannot open {rid}"))
            continue
        ok.append(rid)
        names.append(list(b.layer_names))
    common = [n for n in names[0] if all(n in other for other in names)] if names else []
    rest = [n for layer_names in names for n in layer_names if n not in common]
    rest = list(dict.fromkeys(rest))
    opts = [{"label": n, "value": n} for n in common]
    opts += [{"label": f"{n} (not in every run)", "value": n} for n in rest]
    default = common[0] if common else (rest[0] if rest else None)
    return ok, cards, opts, default


def frame_of(b, pos: int, xaxis: str, t_max: int) -> int:
    """Row of bundle ``b`` at shared slider position ``pos``."""
    if b.n_rows == 0:
        return 0
    if xaxis == "iteration":
        t = min(int(pos) * max(1, t_max // STEPS), b.n_iters - 1)
        return min(t // b.stride, b.n_rows - 1)
    return min(round(pos / STEPS * (b.n_rows - 1)), b.n_rows - 1)


def heatmaps(state: AppState, run_ids: list[str], pos, xaxis, mode, layer_name):
    """One heatmap per run of the same-named layer; shared colour limit across runs."""
    figs, limits, t_max = [], [], _t_max(state, run_ids)
    for rid in run_ids:
        try:
            b, _ = state.open(rid)
        except _ERRORS as e:
            figs.append(empty_figure(str(e)))
            continue
        if layer_name not in b.layer_names:
            figs.append(empty_figure(f"{rid} has no layer {layer_name!r}"))
            continue
        c = Controls.from_dict({"run_id": rid, "row": frame_of(b, pos or 0, xaxis, t_max),
                                "mode": mode, "layer": b.layer_names.index(layer_name)})
        fig = heatmap(state, c)[0]
        fig.update_layout(title_text=f"{rid}<br><sup>{fig.layout.title.text}</sup>")
        figs.append(fig)
        if fig.layout.coloraxis.cmax:
            limits.append(float(fig.layout.coloraxis.cmax))
    z = max(limits) if limits else None
    for fig in figs:
        if z and fig.layout.coloraxis.cmax:
            fig.update_layout(coloraxis={"cmin": -z, "cmax": z})
    return figs


def _t_max(state: AppState, run_ids: list[str]) -> int:
    t = 1
    for rid in run_ids:
        try:
            t = max(t, state.open(rid)[0].n_iters)
        except _ERRORS:
            continue
    return t


def _x(b, n: int, xaxis: str) -> np.ndarray:
    t = np.arange(n)
    return t / max(b.n_iters, 1) if xaxis == "fraction" else t


def overlays(state: AppState, run_ids: list[str], pos, xaxis):
    """Loss, % helping and per-layer totals of all runs."""
    loss, helps, totals, t_max = [], [], [], _t_max(state, run_ids)
    for rid in run_ids:
        try:
            b, key = state.open(rid)
        except _ERRORS:
            continue
        lt = series(state, key, b, "loss_train")
        loss.append((rid, _x(b, len(lt), xaxis), lt))
        hs = state.cached(("help_series", key), lambda b=b: helping.help_series(b))
        helps.append((rid, _x(b, len(hs), xaxis), hs["frac_help"].to_numpy()))
        lt_df = state.cached(("totals", key), lambda b=b: layers.layer_totals(b))
        totals.append((rid, list(b.layer_names), lt_df["total"].to_numpy()))
    xl = "fraction of training" if xaxis == "fraction" else "iteration"
    mark = (pos or 0) / STEPS if xaxis == "fraction" else (pos or 0) * max(1, t_max // STEPS)
    return (overlay_figure(loss, title="Train loss", xlabel=xl, ylabel="loss", marker=mark),
            overlay_figure(helps, title="% of parameters helping", xlabel=xl,
                           ylabel="% helping (of all)", marker=mark),
            layer_totals_figure(totals))


def slider_text(state: AppState, run_ids, pos, xaxis, mode) -> str:
    parts, t_max = [], _t_max(state, run_ids)
    for rid in run_ids:
        try:
            b, _ = state.open(rid)
        except _ERRORS:
            continue
        r0, r1 = rows_for(b, frame_of(b, pos or 0, xaxis, t_max), mode, 1)
        parts.append(f"{rid.rsplit('/', 1)[-1]}: it. {min(r1 * b.stride, b.n_iters) - 1:,}")
    head = f"{100 * (pos or 0) / STEPS:.1f} % of training" if xaxis == "fraction" else \
        f"iteration ≈ {(pos or 0) * max(1, t_max // STEPS):,}"
    return head + " — " + " · ".join(parts)


def export(state: AppState, trigger, run_ids, pos, xaxis, mode, layer_name):
    if not isinstance(trigger, dict) or trigger.get("fmt") not in ids.EXPORT_FORMATS:
        return dash.no_update
    figs = dict(zip((ids.CMP_LOSS, ids.CMP_HELP, ids.CMP_LAYER_TOTALS),
                    overlays(state, run_ids, pos, xaxis), strict=True))
    fig = figs.get(trigger.get("graph"))
    if fig is None:
        return dash.no_update
    name = safe_filename(f"compare-{trigger['graph']}", trigger["fmt"])
    if trigger["fmt"] == "csv":
        return dcc.send_string(figure_csv(fig), name)
    return dcc.send_bytes(figure_image(fig, trigger["fmt"]), name)


def register_callbacks(app: dash.Dash, state: AppState) -> None:
    """Wire the compare page callbacks."""
    cb = app.callback
    cb(Output(ids.CMP_ERROR, "children"), Output(ids.CMP_LAYER, "options"),
       Output(ids.CMP_LAYER, "value"), Input(ids.CMP_IDS, "data"),
       )(lambda rids: check_runs(state, rids or [])[1:])
    cb(Output({"type": "cmp-heat", "index": ALL}, "figure"), Input(ids.CMP_SLIDER, "value"),
       Input(ids.CMP_XAXIS, "value"), Input(ids.CMP_MODE, "value"),
       Input(ids.CMP_LAYER, "value"), State(ids.CMP_IDS, "data"),
       )(lambda p, x, m, lay, rids: heatmaps(state, rids or [], p, x, m, lay)
         if lay else [empty_figure("") for _ in rids or []])
    cb(Output(ids.CMP_LOSS, "figure"), Output(ids.CMP_HELP, "figure"),
       Output(ids.CMP_LAYER_TOTALS, "figure"), Input(ids.CMP_SLIDER, "value"),
       Input(ids.CMP_XAXIS, "value"), State(ids.CMP_IDS, "data"),
       )(lambda p, x, rids: overlays(state, rids or [], p, x))
    cb(Output(ids.CMP_SLIDER_LABEL, "children"), Input(ids.CMP_SLIDER, "value"),
       Input(ids.CMP_XAXIS, "value"), Input(ids.CMP_MODE, "value"), State(ids.CMP_IDS, "data"),
       )(lambda p, x, m, rids: slider_text(state, rids or [], p, x, m))
    cb(Output({"type": ids.EXPORT_DOWNLOAD, "page": "compare"}, "data"),
       Input({"type": ids.EXPORT, "page": "compare", "graph": ALL, "fmt": ALL}, "n_clicks"),
       State(ids.CMP_IDS, "data"), State(ids.CMP_SLIDER, "value"),
       State(ids.CMP_XAXIS, "value"), State(ids.CMP_MODE, "value"),
       State(ids.CMP_LAYER, "value"), prevent_initial_call=True,
       )(lambda clicks, rids, p, x, m, lay: export(state, ctx.triggered_id, rids or [], p, x, m,
                                                   lay) if any(clicks or []) else dash.no_update)
