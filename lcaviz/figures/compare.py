"""Overlays of several runs (compare page): loss, per-layer totals, % helping."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lcaviz.figures.curves import decimate
from lcaviz.figures.theme import add_time_marker, run_color, style


def overlay_figure(runs: Sequence[tuple[str, np.ndarray, np.ndarray]], *, title: str,
                   xlabel: str, ylabel: str, marker: float | None = None,
                   log_y: bool = False) -> go.Figure:
    """One line per run: ``(label, x, y)``; a dotted marker at the shared slider position."""
    fig = go.Figure()
    for k, (label, x, y) in enumerate(runs):
        xs, ys = decimate(np.asarray(x), np.asarray(y, np.float64))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=label,
                                 line={"color": run_color(k), "width": 1.6}))
    add_time_marker(fig, marker)
    style(fig, title, height=330, xlabel=xlabel, ylabel=ylabel)
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def layer_totals_figure(runs: Sequence[tuple[str, Sequence[str], np.ndarray]], *,
                        title: str = "Total LCA per layer", ylabel: str = "LCA",
                        nets: Sequence[str] | None = None) -> go.Figure:
    """Grouped bars: x = layer names (union, first-seen order), one bar series per run.

    Layers are matched by name only within one network: with ``nets`` (the architecture of
    each run) naming more than one, every network gets its own panel, so LeNet's ``fc1`` is
    never drawn as the same layer as MNIST-FC's ``fc1``.
    """
    groups = list(dict.fromkeys(nets)) if nets is not None else []
    if len(groups) > 1:
        return _per_network_totals(runs, list(nets), groups, title, ylabel)
    fig = go.Figure()
    _add_group(fig, list(enumerate(runs)), None)
    fig.add_hline(y=0, line={"color": "#666", "width": 0.8})
    style(fig, title, height=330, ylabel=ylabel)
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.25})
    return fig


def _add_group(fig: go.Figure, runs: list, col: int | None) -> None:
    """Bars of ``(index, (label, names, totals))`` runs, x = their layers in first-seen order."""
    order: list[str] = []
    for _, (_, names, _) in runs:
        order += [n for n in names if n not in order]
    at = {"row": 1, "col": col} if col else {}
    for k, (label, names, totals) in runs:
        m = dict(zip(names, np.asarray(totals, np.float64), strict=True))
        fig.add_trace(go.Bar(x=order, y=[m.get(n, np.nan) for n in order], name=label,
                             marker={"color": run_color(k)}), **at)


def _per_network_totals(runs, nets: list[str], groups: list[str], title: str,
                        ylabel: str) -> go.Figure:
    """One panel per network (width ∝ its number of layers), y shared."""
    members = [[(k, r) for k, r in enumerate(runs) if nets[k] == g] for g in groups]
    widths = [max(len({n for _, (_, names, _) in m for n in names}), 1) for m in members]
    fig = make_subplots(rows=1, cols=len(groups), shared_yaxes=True,
                        column_widths=[w / sum(widths) for w in widths],
                        horizontal_spacing=0.06,
                        subplot_titles=[f"network: {g or '(unnamed)'}" for g in groups])
    for col, m in enumerate(members, start=1):
        _add_group(fig, m, col)
        fig.add_hline(y=0, line={"color": "#666", "width": 0.8}, row=1, col=col)
    style(fig, f"{title} — different networks, layers compared within each", height=360,
          ylabel=ylabel)
    fig.update_yaxes(title_text=None)
    fig.update_yaxes(title_text=ylabel, row=1, col=1)
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.25},
                      margin={"t": 84}, title={"y": 0.98, "yref": "container",
                                               "yanchor": "top"})
    return fig
