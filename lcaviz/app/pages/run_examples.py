"""The run page's "Examples" section (issue 24): which training examples the selected layer
(or all layers) helped and hurt most, in the player's frame and cumulatively up to it.

Shown only for bundles with per-example LCA. The thumbnails and the histogram follow the
player in the browser (``assets/lca_4_examples.js`` pages through blocks of
:mod:`lcaviz.app.examples`); a click on an example draws its loss curve and per-layer LCA here
(one request per click). The figure builders below serve the exports, as every figure's do.
"""

from __future__ import annotations

import dash
import numpy as np
import plotly.graph_objects as go
from dash import ClientsideFunction, Input, Output, State, dcc, html

from lcaviz.analysis.examples import class_histogram, histogram_edges, scope_columns
from lcaviz.app import examples as exdata
from lcaviz.app import ids
from lcaviz.app.pages.components import graph_card, labelled, radio, section, toggle
from lcaviz.app.queries import iterations_of_rows
from lcaviz.app.security import RunPathError
from lcaviz.app.state import AppState
from lcaviz.bundle import BundleError
from lcaviz.figures.examples import (
    example_detail_figure,
    examples_grid_figure,
    examples_histogram_figure,
)
from lcaviz.figures.theme import empty_figure

NU = dash.no_update
_OPEN_ERRORS = (RunPathError, BundleError, OSError)
GRAPHS = (ids.EX_GRID, ids.EX_HIST, ids.EX_DETAIL)
LISTS = (("row", "helped", "this frame · helped most"), ("row", "hurt", "this frame · hurt most"),
         ("cumulative", "helped", "up to t · helped most"),
         ("cumulative", "hurt", "up to t · hurt most"))


def examples_section() -> html.Section:
    """The section (hidden until the run's meta says it has per-example LCA)."""
    ctl = [labelled("examples of", dcc.Dropdown(id=ids.EX_SCOPE, clearable=False, value="all",
                                                options=[{"label": "all layers",
                                                          "value": "all"}]), "260px"),
           labelled("k", dcc.Input(id=ids.EX_K, type="number", min=1, max=32, step=1,
                                   value=exdata.DEFAULT_K, debounce=True, className="num"))]
    grid = html.Div(id=ids.EX_GRID, className="ex-grid",
                    children=html.P("Loading examples…", className="muted small"))
    hist_ctl = [labelled("values", radio(ids.EX_HIST_MODE, [("row", "this frame"),
                                                            ("cumulative", "up to t")], "row")),
                toggle(ids.EX_HIST_LOG, "log count", "log")]
    return section("Examples: which training examples were helped and hurt", [
        graph_card(ids.EX_GRID, "Examples helped most / hurt most (click one to follow it)",
                   controls=ctl, loading=False, graph=grid,
                   header=html.Div(id=ids.EX_TITLE, className="heat-title"),
                   footer=html.P("Per-example LCA: the part of the loss change that fell on "
                                 "each example's own loss (negative: lowered it). Summed "
                                 "over all examples it is the layer's LCA.",
                                 className="muted small")),
        html.Div([
            graph_card(ids.EX_HIST, "Distribution of per-example LCA, by class",
                       controls=hist_ctl, loading=False,
                       graph=html.Div(id=ids.EX_HIST, className="ex-hist")),
            graph_card(ids.EX_DETAIL, "One example through training",
                       placeholder="Click an example above to see its loss and its "
                                   "per-layer LCA over training."),
        ], className="grid2"),
        dcc.Store(id=ids.EX_STREAM), dcc.Store(id=ids.EX_SELECTED),
    ], sid="sec-examples")


def section_state(state: AppState, run_id, meta):
    """``(section style, scope options)``: hidden for runs without per-example LCA."""
    if not run_id or not meta:
        return NU, NU
    try:
        b, _ = state.open(run_id)
    except _OPEN_ERRORS:
        return {"display": "none"}, []
    if not exdata.has_examples(b):
        return {"display": "none"}, []
    return {}, exdata.scope_options(b)


def stream(state: AppState, run_id, meta, scope, k):
    """The section's stream for the browser (None without examples; an ``error`` message for
    an unreadable run or a scope it does not have)."""
    if not run_id or not meta:
        return NU
    try:
        b, _ = state.open(run_id)
        if not exdata.has_examples(b):
            return None
        return exdata.examples_stream(state, run_id, scope or "all",
                                      _k(k))
    except (*_OPEN_ERRORS, ValueError) as e:
        return {"error": f"Cannot show examples: {state.redact(str(e))}", "run": run_id}


def _k(k) -> int:
    try:
        return max(1, min(int(k), 32))
    except (TypeError, ValueError):
        return exdata.DEFAULT_K


def detail(state: AppState, run_id, selected) -> go.Figure:
    """The clicked example's loss over training and its cumulative per-layer LCA."""
    if not run_id or not selected:
        return empty_figure("Click an example above to see its loss and its per-layer LCA "
                            "over training.", height=260)
    b, bkey = state.open(run_id)
    if not exdata.has_examples(b):
        return empty_figure("This run stores no per-example LCA.", height=260)
    pos = int(selected.get("pos", -1))
    n_e = b.n_examples
    if not 0 <= pos < n_e:
        return empty_figure("Example out of range.", height=260)
    key = ("ex_detail", bkey, b.n_rows, pos)

    def read():
        rows = b.example_lca_rows(None, sel=[pos])[:, 0, :]
        loss = b.example_loss(None, sel=[pos])[:, 0]
        return rows, loss, b.example_loss_last(sel=[pos])[0]

    rows, loss, last = state.cached(key, read)
    w = b.row_windows[:len(rows)]
    loss_x = np.append(w[:, 0], b.n_iters)
    loss = np.append(loss, last)
    labels = b.example_labels()
    index = int(b.example_index()[pos])
    name = f"#{index:,}" + ("" if labels is None else f" · label {int(labels[pos])}")
    if index in (flipped := exdata.flipped_labels(b)):
        name += f" (flipped; true label {flipped[index]})"
    return example_detail_figure(w, rows, b.layer_names, loss=loss, loss_x=loss_x, name=name)


def _frame_values(b, scope: str, row: int, which: str) -> np.ndarray:
    cols = scope_columns(scope, b.n_layers)
    if which == "row":
        return b.example_lca(row)[:, cols].sum(axis=-1)
    return b.example_cumsum_upto(row)[:, cols].sum(axis=-1)


def _when(b, row: int) -> str:
    a, e = iterations_of_rows(b, row, row + 1)
    return f"iteration {a:,}" if e - a == 1 else f"iterations {a:,}–{e - 1:,}"


def build(state: AppState, graph: str, c) -> go.Figure:
    """The export of ``graph`` (:data:`GRAPHS`) for the page's controls ``c``."""
    if graph == ids.EX_DETAIL:
        return detail(state, c.run_id, c.ex_selected)
    b, _ = state.open(c.run_id)
    if not exdata.has_examples(b) or not b.n_rows:
        return empty_figure("This run stores no per-example LCA.")
    row = min(max(int(c.row), 0), b.n_rows - 1)
    scope = c.ex_scope or "all"
    name = exdata.scope_name(b, scope_columns(scope, b.n_layers))
    if graph == ids.EX_HIST:
        v = _frame_values(b, scope, row, c.ex_hist_mode)
        edges = histogram_edges(v, exdata.HIST_BINS)
        names = exdata.class_names(b)
        counts = class_histogram(v, b.example_labels(), len(names or []), edges)
        what = "this frame" if c.ex_hist_mode == "row" else "cumulative up to it"
        return examples_histogram_figure(edges, counts, names, log_count=c.ex_hist_log,
                                         title=f"Per-example LCA of {name}, {what} — "
                                               f"{_when(b, row)}")
    block = exdata.examples_block(b, scope, _k(c.ex_k), row, row + 1)
    frame, shown = block["frames"][0], block["examples"]
    lists = [(label, [shown[str(p)] for p in frame[mode][kind]], frame[mode][f"{kind}_values"])
             for mode, kind, label in LISTS]
    end = iterations_of_rows(b, row, row + 1)[1]
    return examples_grid_figure(lists, k=_k(c.ex_k),
                                title=f"Examples of {name} — {_when(b, row)} (up to t: "
                                      f"iterations 0–{end - 1:,})")


def register(app: dash.Dash, state: AppState) -> None:
    """Attach the section's callbacks (the panels mount it; PANELS_META starts it)."""
    cb = app.callback
    meta_in, rid_st = Input(ids.PANELS_META, "data"), State(ids.RUN_ID, "data")
    cb(Output("sec-examples", "style"), Output(ids.EX_SCOPE, "options"), meta_in, rid_st,
       )(lambda meta, rid: section_state(state, rid, meta))
    cb(Output(ids.EX_STREAM, "data"), meta_in, Input(ids.EX_SCOPE, "value"),
       Input(ids.EX_K, "value"), rid_st,
       )(lambda meta, scope, k, rid: stream(state, rid, meta, scope, k))
    # the browser takes the stream and pages through its blocks as the player moves
    app.clientside_callback(ClientsideFunction("lcaviz", "examplesStream"),
                            Output(ids.EX_GRID, "title"), Input(ids.EX_STREAM, "data"),
                            Input(ids.EX_HIST_MODE, "value"), Input(ids.EX_HIST_LOG, "value"))

    def draw_detail(selected, rid):
        try:
            return detail(state, rid, selected)
        except _OPEN_ERRORS as e:
            return empty_figure(state.redact(str(e)))

    cb(Output(ids.EX_DETAIL, "figure"), Input(ids.EX_SELECTED, "data"), rid_st,
       )(draw_detail)
