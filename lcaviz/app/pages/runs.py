"""Runs page: every bundle under RUNS_DIR, refreshed every few seconds without a restart."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from urllib.parse import quote, urlencode

import dash
from dash import Input, Output, State, dash_table, dcc, html

from lcaviz.app import ids
from lcaviz.app.pages.components import error_card
from lcaviz.app.queries import human_size
from lcaviz.app.security import RunPathError, resolve_run
from lcaviz.app.state import AppState

REFRESH_MS = 5_000
MAX_COMPARE = 4

COLUMNS = [
    ("name", "run"), ("net", "network"), ("dataset", "dataset"), ("optimizer", "optimizer"),
    ("method", "method"), ("iterations", "iterations"), ("final_loss", "final loss"),
    ("status", "status"), ("note", "note"), ("modified", "modified"), ("size", "size"),
]


def layout(**_query) -> html.Div:
    """The runs table, its action buttons and the error cards."""
    table = dash_table.DataTable(
        id=ids.RUNS_TABLE,
        columns=[{"id": c, "name": n, "type": "numeric" if c in ("iterations", "final_loss")
                  else "text"} for c, n in COLUMNS],
        data=[], row_selectable="multi", selected_row_ids=[], sort_action="native",
        filter_action="native", page_action="native", page_size=25,
        style_as_list_view=True,
        style_table={"overflowX": "auto"},
        style_cell={"fontFamily": "Helvetica Neue, Helvetica, Arial, sans-serif",
                    "fontSize": "13px", "padding": "6px 10px", "textAlign": "left",
                    "maxWidth": "360px", "overflow": "hidden", "textOverflow": "ellipsis"},
        style_header={"fontWeight": "600", "backgroundColor": "#f6f7f9"},
        style_data_conditional=[
            {"if": {"filter_query": '{status} = "unreadable"'}, "backgroundColor": "#fdecea",
             "color": "#8a1c13"},
            {"if": {"filter_query": '{status} = "failed"'}, "color": "#b3261e"},
            {"if": {"filter_query": '{status} = "running"'}, "color": "#1565c0"},
        ],
        tooltip_duration=None,
    )
    return html.Div([
        html.Div([
            html.H1("Runs"),
            html.Span(id=ids.RUNS_COUNT, className="muted"),
        ], className="page-head"),
        html.P("Select one run to open it, or 2–4 runs to compare them. New bundles appear "
               "here automatically.", className="muted"),
        html.Div([
            dcc.Link("Open", id=ids.RUNS_OPEN, href="", className="btn disabled"),
            dcc.Link("Compare", id=ids.RUNS_COMPARE, href="", className="btn disabled"),
            html.Span(id=ids.RUNS_HINT, className="muted"),
        ], className="toolbar"),
        table,
        html.Div(id=ids.RUNS_ERRORS),
        dcc.Store(id="runs-hash"),
        dcc.Interval(id=ids.RUNS_INTERVAL, interval=REFRESH_MS, n_intervals=0),
    ])


def _fmt_loss(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


def run_rows(state: AppState) -> list[dict]:
    """Table rows for every bundle (unreadable ones with status ``unreadable``)."""
    from lcaviz.bundle import scan_runs

    rows = []
    for info in scan_runs(state.runs_dir):
        status = info.status or "unknown"
        error = info.error.replace(f"{state.runs_dir}/", "")  # paths relative to RUNS_DIR
        try:
            resolve_run(state.runs_dir, info.path)
        except RunPathError as e:  # e.g. a symlink pointing out of RUNS_DIR
            status, error = "unreadable", str(e)
        if not info.ok:
            status = "unreadable"
        planned = bool(info.iters_planned) and info.iters_planned != info.iterations
        rows.append({
            "id": info.path, "name": info.path, "net": info.net, "dataset": info.dataset,
            "optimizer": info.optimizer, "method": info.method,
            "iterations": info.iterations if info.ok else None,
            "final_loss": _fmt_loss(info.final_loss),
            "status": status, "error": error,
            "note": (error[:90] + "…" if len(error) > 90 else error) if error else
            (f"planned {info.iters_planned:,}" if planned else ""),
            "modified": datetime.fromtimestamp(info.mtime).strftime("%Y-%m-%d %H:%M:%S"),
            "size": human_size(info.size),
        })
    return rows


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
    bad = [r for r in rows if r["status"] == "unreadable"]
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


def selection_actions(selected: list[str] | None, data: list[dict] | None):
    """Enable "Open" for one readable run and "Compare" for 2–4.

    Returns:
        ``(open href, open class, compare href, compare class, hint)``.
    """
    ok = {r["id"] for r in (data or []) if r.get("status") != "unreadable"}
    sel = [s for s in (selected or []) if s in ok]
    skipped = len(selected or []) - len(sel)
    open_ok = len(sel) == 1
    cmp_ok = 2 <= len(sel) <= MAX_COMPARE
    hint = f"{len(sel)} selected"
    if skipped:
        hint += f" ({skipped} unreadable ignored)"
    if len(sel) > MAX_COMPARE:
        hint += f" — compare takes at most {MAX_COMPARE}"
    return (run_href(sel[0]) if open_ok else "", "btn" if open_ok else "btn disabled",
            compare_href(sel) if cmp_ok else "", "btn" if cmp_ok else "btn disabled", hint)


def register_callbacks(app: dash.Dash, state: AppState) -> None:
    """Wire the runs page callbacks to ``app``."""
    app.callback(
        Output(ids.RUNS_TABLE, "data"), Output(ids.RUNS_ERRORS, "children"),
        Output(ids.RUNS_COUNT, "children"), Output("runs-hash", "data"),
        Input(ids.RUNS_INTERVAL, "n_intervals"), State("runs-hash", "data"),
    )(lambda n, h: refresh_runs(state, n, h))
    app.callback(
        Output(ids.RUNS_OPEN, "href"), Output(ids.RUNS_OPEN, "className"),
        Output(ids.RUNS_COMPARE, "href"), Output(ids.RUNS_COMPARE, "className"),
        Output(ids.RUNS_HINT, "children"),
        Input(ids.RUNS_TABLE, "selected_row_ids"), State(ids.RUNS_TABLE, "data"),
    )(selection_actions)
