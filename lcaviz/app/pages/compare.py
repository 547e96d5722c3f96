"""Compare page (``/compare?ids=a&ids=b`` or ``?ids=a,b``): 2–4 runs on one shared slider.

The views live in :mod:`lcaviz.app.pages.compare_views`; this module holds the layout and the
wiring. Every figure has the run page's PNG / SVG / PDF / CSV export buttons.
"""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, ctx, dcc, html

from lcaviz.app import ids
from lcaviz.app.pages.compare_views import (  # noqa: F401 - the page's API (tests use it)
    HEAT_GRAPH,
    HIDDEN,
    STEPS,
    check_runs,
    export,
    frame_of,
    heatmaps,
    overlays,
    page_state,
    slider_text,
)
from lcaviz.app.pages.components import (
    GRAPH_CONFIG,
    export_buttons,
    graph_card,
    labelled,
    radio,
    section,
)
from lcaviz.app.state import AppState
from lcaviz.figures.theme import empty_figure

MAX_RUNS = 4


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


def heat_card(k: int, run_id: str) -> html.Div:
    """A card with the k-th run's heatmap and its export buttons."""
    gid = HEAT_GRAPH.format(k)
    return html.Div([
        html.Div([html.H3(run_id), export_buttons(gid, "compare")], className="card-head"),
        dcc.Loading(dcc.Graph(id=heat_id(k), config=GRAPH_CONFIG), type="dot", delay_show=400),
    ], className="card", id=f"{gid}-card")


def layout(**query) -> html.Div:
    """Compare layout with one heatmap slot per run (``ids`` query parameter)."""
    run_ids = parse_ids(query.get("ids"))
    heat_cards = [heat_card(k, rid) for k, rid in enumerate(run_ids)]
    body = html.Div([
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
                                               clearable=False), "260px"),
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
    ], id=ids.CMP_BODY, style=HIDDEN if len(run_ids) < 2 else {})
    return html.Div([
        dcc.Store(id=ids.CMP_IDS, data=run_ids),
        dcc.Download(id={"type": ids.EXPORT_DOWNLOAD, "page": "compare"}),
        html.Div([html.H1("Compare runs"),
                  dcc.Link("← all runs", href="/", className="btn ghost")],
                 className="page-head"),
        html.Div(id=ids.CMP_ERROR),
        body,
    ])


def register_callbacks(app: dash.Dash, state: AppState) -> None:
    """Wire the compare page callbacks."""
    cb = app.callback
    cb(Output(ids.CMP_ERROR, "children"), Output(ids.CMP_LAYER, "options"),
       Output(ids.CMP_LAYER, "value"), Output(ids.CMP_BODY, "style"),
       Input(ids.CMP_IDS, "data"),
       )(lambda rids: page_state(state, rids or []))
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
