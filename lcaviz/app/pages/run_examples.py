"""The run page's "Examples" section (issue 24): which training examples the selected layer
(or all layers) helped and hurt most, in the player's frame and cumulatively up to it.

Shown only for bundles with per-example LCA. The thumbnails and the histogram follow the
player in the browser (``assets/lca_4_examples.js`` pages through blocks of
:mod:`lcaviz.app.examples`); a click on an example draws its loss curve and per-layer LCA here
(one request per click). The figure builders below serve the exports, as every figure's do.
A run with validation examples gets a train / validation choice; with the player's "sum over
last W rows" the "this frame" lists and histogram show the window sums, as the player does.
"""

from __future__ import annotations

import dash
import numpy as np
import plotly.graph_objects as go
from dash import ClientsideFunction, Input, Output, State, dcc, html

from lcaviz.analysis.examples import class_histogram, histogram_edges, scope_values
from lcaviz.app import examples as exdata
from lcaviz.app import ids
from lcaviz.app.examples_scope import checked_split, scope_source, split_options
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
                                   value=exdata.DEFAULT_K, debounce=True, className="num")),
           html.Span(labelled("examples", radio(ids.EX_SPLIT, [("train", "training"),
                                                               ("val", "validation")],
                                                "train")),
                     id=ids.EX_SPLIT_WRAP, style={"display": "none"})]
    grid = html.Div(id=ids.EX_GRID, className="ex-grid",
                    children=html.P("Loading examples…", className="muted small"))
    hist_ctl = [labelled("values", radio(ids.EX_HIST_MODE, [("row", "this frame"),
                                                            ("cumulative", "up to t")], "row")),
                toggle(ids.EX_HIST_LOG, "log count", "log")]
    return section("Examples: which examples were helped and hurt", [
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


def section_state(state: AppState, run_id, meta, split: str = "train"):
    """``(section style, scope options)``: hidden for runs without per-example LCA; the
    options are those of ``split``."""
    if not run_id or not meta:
        return NU, NU
    try:
        b, _ = state.open(run_id)
        if not exdata.has_examples(b):
            return {"display": "none"}, []
        # a split this run lacks (the choice left at "val" from another run): its training
        split = "val" if split == "val" and b.has_val_examples else "train"
        return {}, exdata.scope_options(b, split)
    except (*_OPEN_ERRORS, ValueError):
        return {"display": "none"}, []


def split_state(state: AppState, run_id, meta):
    """``(style of the train / validation choice, its value)``: shown for runs with
    validation examples, back to training on another run."""
    if not run_id or not meta:
        return NU, NU
    try:
        b, _ = state.open(run_id)
        shown = exdata.has_examples(b) and bool(split_options(b))
    except (*_OPEN_ERRORS, ValueError):
        shown = False
    return ({} if shown else {"display": "none"}), "train"


def _scope_kept(options, scope):
    """``scope`` if the options enable it, else all layers."""
    ok = {o["value"] for o in options or [] if not o.get("disabled")}
    return scope if scope in ok else "all"


def stream(state: AppState, run_id, meta, scope, k, split="train", mode="row", window=1):
    """The section's stream for the browser (None without examples; an ``error`` message for
    an unreadable run, a split or a scope it does not have). ``mode`` / ``window``: the
    player's frame (a window of W rows, or one row)."""
    if not run_id or not meta:
        return NU
    try:
        b, _ = state.open(run_id)
        if not exdata.has_examples(b):
            return None
        W = exdata.checked_window(window) if mode == "window" else 1
        return exdata.examples_stream(state, run_id, scope or "all", _k(k), split or "train",
                                      W)
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
    try:
        split = checked_split(b, selected.get("split", "train"))
    except ValueError as e:
        return empty_figure(str(e), height=260)
    n_e = b.n_val_examples if split == "val" else b.n_examples
    if not 0 <= pos < n_e:
        return empty_figure("Example out of range.", height=260)
    key = ("ex_detail", bkey, b.n_rows, split, pos)

    def read():
        rows = b.example_lca_rows(None, sel=[pos], split=split)[:, 0, :]
        loss = b.example_loss(None, sel=[pos], split=split)
        last = b.example_loss_last(sel=[pos], split=split)
        return (rows, None if loss is None else loss[:, 0],
                np.nan if last is None else last[0])

    rows, loss, last = state.cached(key, read)
    w = b.row_windows[:len(rows)]
    loss_x = np.append(w[:, 0], b.n_iters)
    loss = None if loss is None else np.append(loss, last)
    labels = b.example_labels(split=split)
    index = int(b.example_index(split=split)[pos])
    name = ("validation " if split == "val" else "") + f"#{index:,}" + (
        "" if labels is None else f" · label {int(labels[pos])}")
    if split == "train" and index in (flipped := exdata.flipped_labels(b)):
        name += f" (flipped; true label {flipped[index]})"
    return example_detail_figure(w, rows, b.layer_names, loss=loss, loss_x=loss_x, name=name)


def _frame_values(b, scope: str, row: int, which: str, split: str = "train",
                  window: int = 1) -> np.ndarray:
    """The scope's values in one frame: the row (or the window of W rows ending at it), or
    cumulative up to it."""
    src = scope_source(b, scope, split)
    kw = {"split": split, "by": src.by}
    if which == "row" and window > 1:
        lo = max(0, row - window + 1)
        return scope_values(b.example_lca_rows(list(range(lo, row + 1)), **kw),
                            src.cols).sum(axis=0)
    if which == "row":
        return scope_values(b.example_lca(row, **kw), src.cols)
    return scope_values(b.example_cumsum_upto(row, **kw), src.cols)


def _when(b, first: int, row: int) -> str:
    a, e = iterations_of_rows(b, first, row + 1)
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
    split = checked_split(b, c.ex_split)
    W = exdata.checked_window(c.window) if c.mode == "window" else 1
    name = scope_source(b, scope, split).name
    if split == "val":
        name += " (validation examples)"
    first = row if W == 1 else max(0, row - W + 1)
    when = _when(b, first, row)
    if graph == ids.EX_HIST:
        v = _frame_values(b, scope, row, c.ex_hist_mode, split, W)
        edges = histogram_edges(v, exdata.HIST_BINS)
        names = exdata.class_names(b, split=split)
        counts = class_histogram(v, b.example_labels(split=split), len(names or []), edges)
        what = ("cumulative up to it" if c.ex_hist_mode != "row" else
                f"sum of the last {W} rows" if W > 1 else "this frame")
        return examples_histogram_figure(edges, counts, names, log_count=c.ex_hist_log,
                                         title=f"Per-example LCA of {name}, {what} — {when}")
    block = exdata.examples_block(b, scope, _k(c.ex_k), row, row + 1, split, W)
    frame, shown = block["frames"][0], block["examples"]
    lists = [(label, [shown[str(p)] for p in frame[_mode(mode, W)][kind]],
              frame[_mode(mode, W)][f"{kind}_values"]) for mode, kind, label in LISTS]
    end = iterations_of_rows(b, row, row + 1)[1]
    return examples_grid_figure(lists, k=_k(c.ex_k),
                                title=f"Examples of {name} — {when} (up to t: "
                                      f"iterations 0–{end - 1:,})")


def _mode(mode: str, W: int) -> str:
    """The frame's key of a list: the window sums stand in for the row with W > 1."""
    return "window" if mode == "row" and W > 1 else mode


def register(app: dash.Dash, state: AppState) -> None:
    """Attach the section's callbacks (the panels mount it; PANELS_META starts it)."""
    cb = app.callback
    meta_in, rid_st = Input(ids.PANELS_META, "data"), State(ids.RUN_ID, "data")
    cb(Output(ids.EX_SPLIT_WRAP, "style"), Output(ids.EX_SPLIT, "value"), meta_in, rid_st,
       )(lambda meta, rid: split_state(state, rid, meta))

    def scope_menu(meta, split, scope, rid):
        style, options = section_state(state, rid, meta, split or "train")
        return style, options, (NU if options is NU else _scope_kept(options, scope))

    cb(Output("sec-examples", "style"), Output(ids.EX_SCOPE, "options"),
       Output(ids.EX_SCOPE, "value"), meta_in, Input(ids.EX_SPLIT, "value"),
       State(ids.EX_SCOPE, "value"), rid_st)(scope_menu)
    cb(Output(ids.EX_STREAM, "data"), meta_in, Input(ids.EX_SCOPE, "value"),
       Input(ids.EX_K, "value"), Input(ids.EX_SPLIT, "value"), Input(ids.MODE, "value"),
       Input(ids.WINDOW, "value"), rid_st,
       )(lambda meta, scope, k, split, mode, window, rid: stream(state, rid, meta, scope, k,
                                                                 split, mode, window))
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
