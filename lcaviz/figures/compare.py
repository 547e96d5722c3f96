"""Overlays of several runs (compare page): loss, per-layer totals, % helping."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

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
                        title: str = "Total LCA per layer",
                        ylabel: str = "LCA") -> go.Figure:
    """Grouped bars: x = layer names (union, first-seen order), one bar series per run."""
    order: list[str] = []
    for _, names, _ in runs:
        order += [n for n in names if n not in order]
    fig = go.Figure()
    for k, (label, names, totals) in enumerate(runs):
        m = dict(zip(names, np.asarray(totals, np.float64), strict=True))
        fig.add_trace(go.Bar(x=order, y=[m.get(n, np.nan) for n in order], name=label,
                             marker={"color": run_color(k)}))
    fig.add_hline(y=0, line={"color": "#666", "width": 0.8})
    style(fig, title, height=330, ylabel=ylabel)
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.25})
    return fig
