"""Compare page (``/compare?ids=a&ids=b`` or ``?ids=a,b``): 2–4 runs played together.

The heatmaps are the run page's player (``lca_3_pages.js``): one Play and one slider for all
runs, frames matched by iteration or by fraction of training, each run's frames fetched and
cached in the browser. The views live in :mod:`lcaviz.app.pages.compare_views`; this module
holds the layout and the wiring. Every figure has PNG / SVG / PDF / CSV export buttons.
"""

from __future__ import annotations

import dash
from dash import ALL, ClientsideFunction, Input, Output, State, ctx, dcc, html

from lcaviz.app import ids
from lcaviz.app.pages import compare_examples
from lcaviz.app.pages.compare_views import (  # noqa: F401 - the page's API (tests use it)
    HEAT_GRAPH,
    HIDDEN,
    check_runs,
    export,
    frame_of,
    heatmaps,
    overlays,
    page_state,
    streams,
)
from lcaviz.app.pages.components import (
    export_buttons,
    graph_card,
    labelled,
    radio,
    section,
)
from lcaviz.app.state import AppState

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


def heat_card(k: int, run_id: str) -> html.Div:
    """A card with the k-th run's heatmap (the player paints it) and its export buttons."""
    gid = HEAT_GRAPH.format(k)
    return html.Div([
        html.Div([html.H3(run_id), export_buttons(gid, "compare")], className="card-head"),
        html.Div(id=f"{gid}-title", className="heat-title"),
        html.Div(id=gid, className="heat-host"),
    ], className="card", id=f"{gid}-card")


def layout(**query) -> html.Div:
    """Compare layout with one heatmap slot per run (``ids`` query parameter)."""
    run_ids = parse_ids(query.get("ids"))
    heat_cards = [heat_card(k, rid) for k, rid in enumerate(run_ids)]
    body = html.Div([
        html.Div([
            html.Div(id=ids.CMP_PLAYER_BAR),  # lca_3_pages.js: play, slider, step, loop
            html.Div([
                labelled("shared axis", radio(ids.CMP_XAXIS, [
                    ("fraction", "fraction of training"), ("iteration", "iteration")],
                    "fraction")),
                labelled("frame", radio(ids.CMP_MODE, [("row", "this iteration"),
                                                          ("cumulative", "cumulative")],
                                        "row")),
                labelled("layer", dcc.Dropdown(id=ids.CMP_LAYER, options=[], value=None,
                                               clearable=False), "260px"),
                labelled("colour scale", radio(ids.CMP_SCALE, [
                    ("shared", "shared by all runs"), ("own", "each run its own")], "shared")),
                labelled("rows of several iterations", radio(ids.CMP_NORM, [
                    ("per_it", "per iteration (÷ window length)"),
                    ("sum", "as stored (window sums)")], "per_it")),
            ], className="player-row controls-row"),
        ], className="player card sticky"),
        section("Same layer, side by side",
                [html.Div(heat_cards, className=f"grid{max(2, len(run_ids))}",
                          id=ids.CMP_HEATMAPS)]),
        section("Overlays", [html.Div([
            graph_card(ids.CMP_LOSS, "Train loss", page="compare"),
            graph_card(ids.CMP_HELP, "% helping (of nonzero LCA)", page="compare"),
        ], className="grid2"), graph_card(ids.CMP_LAYER_TOTALS, "Total LCA per layer",
                                          page="compare"),
                              compare_examples.examples_card()]),
    ], id=ids.CMP_BODY, style=HIDDEN if len(run_ids) < 2 else {})
    return html.Div([
        dcc.Store(id=ids.CMP_IDS, data=run_ids),
        dcc.Store(id=ids.CMP_STREAMS),
        dcc.Store(id=ids.CMP_FRAME, data={"position": 0}),
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
    cb(Output(ids.CMP_STREAMS, "data"), Input(ids.CMP_LAYER, "value"),
       Input(ids.CMP_MODE, "value"), Input(ids.CMP_SCALE, "value"),
       Input(ids.CMP_NORM, "value"), State(ids.CMP_IDS, "data"),
       )(lambda lay, m, sc, nm, rids: streams(state, rids or [], m, lay, sc, nm)
         if lay else dash.no_update)
    # the player takes the streams (and the shared axis); frames never come back through Dash
    app.clientside_callback(ClientsideFunction("lcaviz", "compareStreams"),
                            Output(ids.CMP_PLAYER_BAR, "title"),
                            Input(ids.CMP_STREAMS, "data"), Input(ids.CMP_XAXIS, "value"))
    cb(Output(ids.CMP_LOSS, "figure"), Output(ids.CMP_HELP, "figure"),
       Output(ids.CMP_LAYER_TOTALS, "figure"), Input(ids.CMP_XAXIS, "value"),
       Input(ids.CMP_IDS, "data"), State(ids.CMP_FRAME, "data"),
       )(lambda x, rids, fr: overlays(state, rids or [], _position(fr, x), x))
    cb(Output({"type": ids.EXPORT_DOWNLOAD, "page": "compare"}, "data"),
       Input({"type": ids.EXPORT, "page": "compare", "graph": ALL, "fmt": ALL}, "n_clicks"),
       State(ids.CMP_IDS, "data"), State(ids.CMP_FRAME, "data"),
       State(ids.CMP_XAXIS, "value"), State(ids.CMP_MODE, "value"),
       State(ids.CMP_LAYER, "value"), State(ids.CMP_EX_INDEX, "value"),
       State(ids.CMP_EX_SPLIT, "value"), prevent_initial_call=True,
       )(lambda clicks, rids, fr, x, m, lay, ex, split: _export(
           state, ctx.triggered_id, rids or [], fr, x, m, lay, ex, split)
         if any(clicks or []) else dash.no_update)
    # one training example across the runs that track it (runs with per-example LCA)
    cb(Output("cmp-sec-examples", "style"), Output(ids.CMP_EX_INDEX, "value"),
       Output(ids.CMP_EX_NOTE, "children"), Input(ids.CMP_IDS, "data"),
       )(lambda rids: compare_examples.section_state(state, rids or []))
    cb(Output(ids.CMP_EX_SPLIT_WRAP, "style"), Input(ids.CMP_IDS, "data"),
       )(lambda rids: compare_examples.split_style(state, rids or []))
    cb(Output(ids.CMP_EXAMPLE, "figure"), Input(ids.CMP_EX_INDEX, "value"),
       Input(ids.CMP_XAXIS, "value"), Input(ids.CMP_EX_SPLIT, "value"), State(ids.CMP_IDS, "data"),
       )(lambda ex, x, split, rids: compare_examples.example_across_runs(state, rids or [], ex, x,
                                                                         split))


def _export(state: AppState, trigger, run_ids, frame, xaxis, mode, layer, example,
            split="train"):
    """A compare figure's download: the example section's, or :func:`export`'s."""
    if isinstance(trigger, dict) and trigger.get("graph") == ids.CMP_EXAMPLE:
        if trigger.get("fmt") not in ids.EXPORT_FORMATS:
            return dash.no_update
        got = compare_examples.export_example(state, trigger["fmt"], run_ids, example, xaxis,
                                              split)
        return dash.no_update if got is None else got
    return export(state, trigger, run_ids, _position(frame, xaxis), xaxis, mode, layer)


def _position(frame: dict | None, xaxis: str) -> float:
    """The player's shared position (iteration or fraction) for the chosen axis."""
    frame = frame or {}
    if frame.get("axis") == xaxis and frame.get("position") is not None:
        return float(frame["position"])
    return 0.0
