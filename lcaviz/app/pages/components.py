"""Small layout helpers shared by the pages (cards, export buttons, labelled controls)."""

from __future__ import annotations

from dash import dcc, html

from lcaviz.app import ids
from lcaviz.figures.theme import PLOTLY_CONFIG, empty_figure

PLACEHOLDER_HEIGHT = 160  # a graph not drawn yet: a short blank, not empty axes

GRAPH_CONFIG = dict(PLOTLY_CONFIG)  # no upload to Plotly Cloud, no duplicate camera button


def export_buttons(graph_id: str, page: str, extra: tuple[str, ...] = ()) -> html.Div:
    """PNG / SVG / PDF / CSV (plus ``extra`` formats) download buttons for one graph."""
    return html.Div(
        [html.Span("export", className="export-label")] + [
            html.Button(fmt.upper(), id={"type": ids.EXPORT, "page": page, "graph": graph_id,
                                         "fmt": fmt},
                        n_clicks=0, className="export-btn", title=f"Download as {fmt.upper()}")
            for fmt in (*ids.EXPORT_FORMATS, *extra)],
        className="export-bar")


def graph_card(graph_id: str, title: str, *, controls=None, height: int | None = None,
               footer=None, loading: bool = True, page: str = "run",
               extra_exports: tuple[str, ...] = (), header=None, graph=None,
               placeholder: str = "") -> html.Div:
    """A titled card with optional controls, a header line, a graph (a ``dcc.Graph`` unless
    ``graph`` is given), and export buttons.

    Until its callback draws it, the graph shows ``placeholder`` in a short blank figure (not
    Plotly's empty 450 px axes)."""
    if graph is None:
        graph = dcc.Graph(id=graph_id, config=GRAPH_CONFIG,
                          figure=empty_figure(placeholder, height=PLACEHOLDER_HEIGHT),
                          style={"height": f"{height}px"} if height else None)
    body = dcc.Loading(graph, type="dot", delay_show=400) if loading else graph
    return html.Div([
        html.Div([html.H3(title), export_buttons(graph_id, page, extra_exports)],
                 className="card-head"),
        html.Div(controls, className="card-controls") if controls else None,
        header,
        body,
        footer,
    ], className="card", id=f"{graph_id}-card")


def labelled(label: str, component, width: str | None = None) -> html.Div:
    """A control with a small label above it."""
    return html.Div([html.Label(label), component], className="control",
                    style={"minWidth": width} if width else None)


def radio(id_: str, options: list[tuple[str, str]], value: str) -> dcc.RadioItems:
    """Inline radio items from ``(value, label)`` pairs."""
    return dcc.RadioItems(id=id_, options=[{"value": v, "label": lab} for v, lab in options],
                          value=value, inline=True, className="radio")


def toggle(id_: str, label: str, value: str) -> dcc.Checklist:
    """A single on/off checkbox; the component's value is ``[value]`` when ticked."""
    return dcc.Checklist(id=id_, className="check", options=[{"label": f" {label}",
                                                               "value": value}], value=[])


def error_card(message: str, title: str = "Cannot open this run") -> html.Div:
    """A red card with an error message (unreadable bundles, bad ids)."""
    return html.Div([html.Strong(title), html.Pre(message, className="error-text")],
                    className="error-card")


def section(title: str, children, sid: str | None = None) -> html.Section:
    kw = {"id": sid} if sid else {}
    return html.Section([html.H2(title), *children], className="section", **kw)
