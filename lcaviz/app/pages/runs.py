"""Runs page: every bundle under RUNS_DIR, refreshed every few seconds without a restart."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from urllib.parse import quote, urlencode

import dash
from dash import Input, Output, State, dash_table, dcc, html
from dash.dash_table.Format import Format, Scheme

from lcaviz.app import ids
from lcaviz.app.pages.components import error_card
from lcaviz.app.queries import human_size
from lcaviz.app.runs_query import (
    QueryError,
    Term,
    as_number,
    cell,
    config_fields,
    lookup,
    parse_query,
    record_matches,
    unknown_fields,
)
from lcaviz.app.security import RunPathError, resolve_run
from lcaviz.app.state import AppState

REFRESH_MS = 5_000
MAX_COMPARE = 4
CONFIG_COLUMNS = "runs-config-columns"  # dropdown: config fields shown as extra columns

# (row key, header, numeric?, tooltip)
COLUMNS = [
    ("name", "run", False, "open the run"), ("net", "network", False, ""),
    ("dataset", "dataset", False, ""), ("optimizer", "optimizer", False, ""),
    ("lr", "lr", True, "learning rate"),
    ("momentum", "momentum", True, "SGD momentum; β1 for Adam"),
    ("batch_size", "batch", True, "minibatch size"), ("seed", "seed", True, ""),
    ("method", "method", False, "LCA integration rule"),
    ("iterations", "iterations", True, "training iterations done"),
    ("frames", "frames", True, "stored per-parameter LCA rows (heatmap frames)"),
    ("final_loss", "final loss", True, "train loss at the last iteration"),
    ("status", "status", False, ""), ("note", "note", False, ""),
    ("modified", "modified", False, ""), ("size_mb", "size (MB)", True, "file size"),
]
_MD_SPECIAL = set("\\`*_[]<>|")


def _columns() -> list[dict]:
    """DataTable column specs: run names are markdown links, numbers sort as numbers."""
    cols = []
    for key, name, numeric, _ in COLUMNS:
        col = {"id": key, "name": name, "type": "numeric" if numeric else "text"}
        if key == "name":
            col["presentation"] = "markdown"
        if key == "size_mb":
            col["format"] = Format(precision=2, scheme=Scheme.fixed)
        cols.append(col)
    return cols


def layout(**_query) -> html.Div:
    """The runs table (sortable, with a filter box), its action buttons and the error cards."""
    table = dash_table.DataTable(
        id=ids.RUNS_TABLE, columns=_columns(),
        data=[], row_selectable="multi", selected_rows=[], sort_action="native",
        sort_mode="single", page_action="native", page_size=25,
        markdown_options={"link_target": "_self"},
        css=[{"selector": ".dash-cell-value a", "rule": "color: #0b6bcb; font-weight: 600"}],
        style_as_list_view=True,
        style_table={"overflowX": "auto"},
        style_cell={"fontFamily": "Helvetica Neue, Helvetica, Arial, sans-serif",
                    "fontSize": "13px", "padding": "6px 10px", "textAlign": "left",
                    "maxWidth": "360px", "overflow": "hidden", "textOverflow": "ellipsis"},
        style_cell_conditional=[{"if": {"column_id": "name"}, "paddingTop": "0",
                                 "paddingBottom": "0"}],
        style_header={"fontWeight": "600", "backgroundColor": "#f6f7f9"},
        style_data_conditional=[
            {"if": {"filter_query": '{status} = "unreadable"'}, "backgroundColor": "#fdecea",
             "color": "#8a1c13"},
            {"if": {"filter_query": '{status} = "failed"'}, "color": "#b3261e"},
            {"if": {"filter_query": '{status} = "running"'}, "color": "#1565c0"},
        ],
        tooltip_header={k: tip for k, _, _, tip in COLUMNS if tip},
        tooltip_duration=None,
    )
    return html.Div([
        html.Div([
            html.H1("Runs"),
            html.Span(id=ids.RUNS_COUNT, className="muted"),
        ], className="page-head"),
        html.P("Click a run's name to open it, or tick 2–4 runs to compare them. Click a "
               "column header to sort. New bundles appear here automatically.",
               className="muted"),
        html.Div([
            dcc.Input(id=ids.RUNS_FILTER, type="search", value="", debounce=False,
                      placeholder="filter: words, or config queries such as optimizer=sgd "
                      "lr<0.05 momentum>0", className="filter-box"),
            dcc.Dropdown(id=CONFIG_COLUMNS, multi=True, options=[], value=[],
                         placeholder="add config columns…", className="config-columns",
                         style={"minWidth": "220px"}),
            dcc.Link("Open", id=ids.RUNS_OPEN, href="", className="btn disabled"),
            dcc.Link("Compare", id=ids.RUNS_COMPARE, href="", className="btn disabled"),
            html.Span(id=ids.RUNS_HINT, className="muted"),
            html.Span(id=ids.RUNS_FILTER_HINT, className="muted"),
        ], className="toolbar"),
        table,
        html.Div(id=ids.RUNS_ERRORS),
        dcc.Store(id=ids.RUNS_DATA),
        dcc.Store(id=ids.RUNS_SELECTED, data=[]),
        dcc.Store(id="runs-hash"),
        dcc.Interval(id=ids.RUNS_INTERVAL, interval=REFRESH_MS, n_intervals=0),
    ])


def _fmt_loss(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


def _number(v) -> float | int | None:
    """A config value as a sortable number (None when absent or not a number; ints stay ints)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return as_number(v)


def run_link(run_id: str) -> str:
    """Markdown link to the run page whose text is the run id (markdown-escaped)."""
    text = "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in run_id)
    return f"[{text}]({run_href(run_id)})"


UNREADABLE = ("unreadable", "refused", "truncated", "damaged")  # statuses of runs not shown


def run_rows(state: AppState) -> list[dict]:
    """Table rows for every bundle (unreadable ones with status ``unreadable``)."""
    rows = []
    for info in state.scan():
        status = info.status or "unknown"
        error = info.error.replace(f"{state.runs_dir}/", "")  # paths relative to RUNS_DIR
        try:
            resolve_run(state.runs_dir, info.path)
        except RunPathError as e:  # e.g. a symlink pointing out of RUNS_DIR
            status, error = "refused", str(e)
        if not info.ok:
            status = info.problem or "unreadable"
        planned = bool(info.iters_planned) and info.iters_planned != info.iterations
        ok = status not in UNREADABLE
        rows.append({
            "id": info.path, "name": run_link(info.path) if ok else info.path,
            "net": info.net, "dataset": info.dataset, "optimizer": info.optimizer,
            "method": info.method, "lr": _number(info.lr), "momentum": _number(info.momentum),
            "batch_size": _number(info.batch_size), "seed": _number(info.seed),
            "iterations": info.iterations if info.ok else None,
            "frames": info.frames if ok else None,
            "final_loss": _fmt_loss(info.final_loss),
            "status": status, "error": error,
            "note": (error[:90] + "…" if len(error) > 90 else error) if error else
            (f"planned {info.iters_planned:,}" if planned else ""),
            "modified": datetime.fromtimestamp(info.mtime).strftime("%Y-%m-%d %H:%M:%S"),
            "size": human_size(info.size), "size_mb": round(info.size / 2**20, 3),
            "config": info.config,
        })
    return rows


_SEARCHED = ("id", "net", "dataset", "optimizer", "method", "status", "note")


def filter_rows(rows: list[dict] | None, query: str | None) -> list[dict]:
    """Rows that satisfy every term of ``query`` (:mod:`lcaviz.app.runs_query`): plain words
    are searched in the row's text (id, network, dataset, optimizer, method, status, note),
    case-insensitively; ``field<op>value`` terms compare a column or a config field
    (``optimizer=sgd lr<0.05 momentum>0``, ``precision_flags.matmul=ieee``); a column may be
    named by its header (``batch=250``, ``network=lenet``, ``run=a.h5``) or its key.

    Raises:
        QueryError: a malformed query.
    """
    terms, words = parse_query(query)
    terms = [Term(_HEADER_KEYS.get(t.field, t.field), t.op, t.value) for t in terms]
    out = []
    for r in rows or []:
        text = " ".join(str(r.get(k) or "") for k in _SEARCHED).lower()
        if record_matches(terms, words, r, r.get("config") or {}, text):
            out.append(r)
    return out


# a term may name a column by its header (``batch=250``) or its key
_HEADER_KEYS = {name.replace(" ", "_"): key for key, name, _, _ in COLUMNS
                if name.replace(" ", "_") != key} | {"run": "id"}


def filtered_table(rows: list[dict] | None, query: str | None):
    """Table data for the filter box, and a hint when the filter hides rows (a malformed
    query shows every run and says what is wrong)."""
    n = len(rows or [])
    try:
        shown = filter_rows(rows, query)
    except QueryError as e:
        return list(rows or []), f"⚠ {e} — showing all {n} runs"
    hint = f"{len(shown)} of {n} runs match “{query.strip()}”" if (query or "").strip() \
        else ""
    terms = parse_query(query)[0]
    typos = unknown_fields(terms, [(r, r.get("config") or {}) for r in rows or []])
    if typos:
        hint += f" (no run has a field {', '.join(f'“{t}”' for t in typos)})"
    return shown, hint


def table_view(rows: list[dict] | None, query: str | None, config_columns: list | None):
    """``(data, hint, columns, column options)``: the filtered rows with the chosen config
    fields as extra columns (``cfg:<field>``) and the config fields there are to choose."""
    shown, hint = filtered_table(rows, query)
    chosen = [str(c) for c in config_columns or []]
    data = [{**{k: v for k, v in r.items() if k != "config"},
             **{f"cfg:{c}": cell(lookup(r.get("config") or {}, c)) for c in chosen}}
            for r in shown]
    columns = _columns() + [{"id": f"cfg:{c}", "name": c} for c in chosen]
    fields = config_fields(r.get("config") or {} for r in rows or [])
    return data, hint, columns, [{"label": f, "value": f} for f in fields]


def refresh_runs(state: AppState, _n: int | None, known_hash: str | None):
    """Rescan when any bundle changed; ``no_update`` everywhere when nothing did.

    Returns:
        ``(table data, error cards, count text, new hash)``.
    """
    stamp = state.dir_stamp()
    digest = hashlib.sha1(repr(stamp).encode()).hexdigest()
    if known_hash == digest:
        return dash.no_update, dash.no_update, dash.no_update, dash.no_update
    cached = state.scan_cache.get("runs")
    if cached is None or cached[0] != digest:
        cached = (digest, run_rows(state))
        state.scan_cache["runs"] = cached
    rows = cached[1]
    bad = [r for r in rows if r["status"] in UNREADABLE]
    cards = [error_card(r["error"] or "unknown error", title=f"Unreadable bundle: {r['name']}")
             for r in bad]
    n_ok = len(rows) - len(bad)
    count = f"{n_ok} run{'s' if n_ok != 1 else ''}" + (f", {len(bad)} unreadable" if bad
                                                         else "")
    return rows, cards, count, digest


def run_href(run_id: str) -> str:
    """URL of the run page for ``run_id``."""
    return "/run?" + urlencode({"id": run_id}, quote_via=quote)


def compare_href(run_ids: list[str]) -> str:
    """URL of the compare page (one ``ids`` parameter per run, so commas in names are safe)."""
    return "/compare?" + urlencode([("ids", r) for r in run_ids], quote_via=quote)


def table_with_selection(rows: list[dict] | None, query: str | None,
                         selected: list[str] | None):
    """:func:`filtered_table` plus the ticks of the rows shown: the selection is a list of run
    ids, so a filter, a sort or a rescan that moves rows never moves a tick to another run.

    Returns:
        ``(table data, filter hint, selected_rows (indices into the table data))``.
    """
    shown, hint = filtered_table(rows, query)
    want = set(selected or [])
    return shown, hint, [i for i, r in enumerate(shown) if r["id"] in want]


def table_view_with_selection(rows: list[dict] | None, query: str | None,
                              config_columns: list | None, selected: list[str] | None):
    """:func:`table_view` plus the ticks of the rows shown (indices of the selected run ids)."""
    data, hint, columns, options = table_view(rows, query, config_columns)
    want = set(selected or [])
    return data, hint, columns, options, [i for i, r in enumerate(data) if r["id"] in want]


def update_selection(ticked_rows: list[int] | None, shown: list[dict] | None,
                     selected: list[str] | None) -> list[str]:
    """The selected run ids after the user ticked ``ticked_rows`` (indices into the table's
    data): runs hidden by the filter stay selected, the shown rows say for themselves."""
    shown = shown or []
    visible = {r["id"] for r in shown}
    ticked = [shown[i]["id"] for i in ticked_rows or [] if 0 <= i < len(shown)]
    kept = [s for s in selected or [] if s not in visible]
    return kept + [t for t in ticked if t not in kept]


def selection_actions(selected: list[str] | None, data: list[dict] | None,
                      shown: list[dict] | None = None):
    """Enable "Open" for one readable run and "Compare" for 2–4 (``shown``: the rows the
    filter lets through, to say how many selected runs it hides).

    Returns:
        ``(open href, open class, compare href, compare class, hint)``.
    """
    ok = {r["id"] for r in (data or []) if r.get("status") not in UNREADABLE}
    sel = [s for s in (selected or []) if s in ok]
    skipped = len([s for s in selected or [] if s not in ok and s in
                   {r["id"] for r in data or []}])
    open_ok = len(sel) == 1
    cmp_ok = 2 <= len(sel) <= MAX_COMPARE
    hint = f"{len(sel)} selected"
    if skipped:
        hint += f" ({skipped} unreadable ignored)"
    hidden = len(set(sel) - {r["id"] for r in shown}) if shown is not None else 0
    if hidden:
        hint += f" ({hidden} hidden by the filter)"
    if len(sel) > MAX_COMPARE:
        hint += f" — compare takes at most {MAX_COMPARE}"
    return (run_href(sel[0]) if open_ok else "", "btn" if open_ok else "btn disabled",
            compare_href(sel) if cmp_ok else "", "btn" if cmp_ok else "btn disabled", hint)


def register_callbacks(app: dash.Dash, state: AppState) -> None:
    """Wire the runs page callbacks to ``app``."""
    app.callback(
        Output(ids.RUNS_DATA, "data"), Output(ids.RUNS_ERRORS, "children"),
        Output(ids.RUNS_COUNT, "children"), Output("runs-hash", "data"),
        Input(ids.RUNS_INTERVAL, "n_intervals"), State("runs-hash", "data"),
    )(lambda n, h: refresh_runs(state, n, h))
    # ticks are run ids (RUNS_SELECTED): the table's own selected_rows are row positions,
    # which a filter, a sort or a rescan would hand to another run
    app.callback(
        Output(ids.RUNS_TABLE, "data"), Output(ids.RUNS_FILTER_HINT, "children"),
        Output(ids.RUNS_TABLE, "columns"), Output(CONFIG_COLUMNS, "options"),
        Output(ids.RUNS_TABLE, "selected_rows"),
        Input(ids.RUNS_DATA, "data"), Input(ids.RUNS_FILTER, "value"),
        Input(CONFIG_COLUMNS, "value"), State(ids.RUNS_SELECTED, "data"),
    )(table_view_with_selection)
    app.callback(
        Output(ids.RUNS_SELECTED, "data"),
        Input(ids.RUNS_TABLE, "selected_rows"), State(ids.RUNS_TABLE, "data"),
        State(ids.RUNS_SELECTED, "data"), prevent_initial_call=True,
    )(update_selection)
    app.callback(
        Output(ids.RUNS_OPEN, "href"), Output(ids.RUNS_OPEN, "className"),
        Output(ids.RUNS_COMPARE, "href"), Output(ids.RUNS_COMPARE, "className"),
        Output(ids.RUNS_HINT, "children"),
        Input(ids.RUNS_SELECTED, "data"), State(ids.RUNS_DATA, "data"),
        Input(ids.RUNS_TABLE, "data"),
    )(selection_actions)
