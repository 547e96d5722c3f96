"""Helping / hurting figures (paper Fig. 3 a-d) from precomputed arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from lcaviz.figures.curves import decimate
from lcaviz.figures.theme import (
    HELP_COLOR,
    HURT_COLOR,
    LOSS_COLOR,
    ZERO_COLOR,
    add_time_marker,
    layer_color,
    style,
)
from lcaviz.figures.ticks import finite_range, linear_axis


def help_hurt_time_figure(pct_help: np.ndarray, pct_hurt: np.ndarray,
                          pct_zero: np.ndarray | None = None, *,
                          loss: np.ndarray | None = None, t_marker: float | None = None,
                          title: str = "Parameters helping / hurting per iteration"
                          ) -> go.Figure:
    """Fig. 3a: % of parameters helping, hurting and with zero LCA, with the loss on a 2nd axis.

    Args:
        pct_help: (T,) percent of parameters with LCA < 0 at each iteration.
        pct_hurt: (T,) percent with LCA > 0.
        pct_zero: (T,) percent exactly zero (default ``100 - help - hurt``).
        loss: (T+1,) train loss to overlay, or None.
        t_marker: iteration of the slider.
        title: figure title.
    """
    h = np.asarray(pct_help, np.float64)
    u = np.asarray(pct_hurt, np.float64)
    z = 100.0 - h - u if pct_zero is None else np.asarray(pct_zero, np.float64)
    t = np.arange(len(h))
    fig = go.Figure()
    for y, name, color in ((h, "helping", HELP_COLOR), (z, "zero", ZERO_COLOR),
                           (u, "hurting", HURT_COLOR)):
        xs, ys = decimate(t, y)
        fig.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines", stackgroup="pct",
                                 line={"color": color, "width": 0.8}, fillcolor=color,
                                 hovertemplate=f"{name} %{{y:.1f}}%<extra></extra>"))
    if loss is not None and len(loss):
        xs, ys = decimate(np.arange(len(loss)), loss)
        fig.add_trace(go.Scatter(x=xs, y=ys, name="train loss", yaxis="y2", mode="lines",
                                 line={"color": LOSS_COLOR, "width": 1.6}))
        lo, hi = finite_range(ys) or (0.0, 1.0)
        # own 1-2-5 ticks: an overlaying axis is otherwise synced to the % grid (0.104, …)
        fig.update_layout(yaxis2={"title": {"text": "loss"}, "overlaying": "y",
                                  "side": "right", "showgrid": False,
                                  **linear_axis(lo, hi, nonnegative=lo >= 0)})
    add_time_marker(fig, t_marker)
    fig.add_hline(y=50, line={"color": "white", "dash": "dash", "width": 1})
    style(fig, title, height=330, xlabel="iteration")
    fig.update_layout(yaxis={"title": {"text": "% of parameters"}, "range": [0, 100]},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1,
                              "xanchor": "right"})
    return fig


def help_hurt_hist_figure(help_hist: tuple[np.ndarray, np.ndarray],
                          hurt_hist: tuple[np.ndarray, np.ndarray], *, log_y: bool = False,
                          total: float | None = None,
                          title: str = "Distribution of helping and hurting LCA") -> go.Figure:
    """Fig. 3b: histograms of helping (negative) and hurting (positive) LCA values.

    Bars are the percentage of all nonzero LCA values that fall in each bin, so the axis, the
    hover and the CSV export say the same thing. Give both signs bins of the same width (see
    ``shared_range`` in :func:`lcaviz.analysis.distributions.lca_histograms`): then bar heights
    compare, and neither sign is drawn as hairlines beside the other.

    Args:
        help_hist: ``(counts, edges)`` of helping LCA (edges on the signed, negative axis).
        hurt_hist: ``(counts, edges)`` of hurting LCA (positive axis).
        log_y: log-scale percentages.
        total: number of nonzero values the percentages are of (default: the sum of the
            counts; pass the total including clipped tails to show their share as missing).
        title: figure title.
    """
    fig = go.Figure()
    hists = [(np.asarray(c, np.float64), np.asarray(e, np.float64)) for c, e in
             (help_hist, hurt_hist)]
    n = float(total) if total else float(sum(c.sum() for c, _ in hists))
    for (counts, edges), name, color in zip(hists, ("helping", "hurting"),
                                            (HELP_COLOR, HURT_COLOR), strict=True):
        if len(counts) == 0:
            continue
        centers = (edges[:-1] + edges[1:]) / 2
        pct = 100.0 * counts / n if n > 0 else counts
        fig.add_trace(go.Bar(x=centers, y=pct, width=np.diff(edges), name=name,
                             customdata=counts, marker={"color": color, "line": {"width": 0}},
                             hovertemplate=f"{name}<br>LCA %{{x:.3g}}<br>%{{y:.3g}} % of "
                                           "values (≈ %{customdata:,.0f})<extra></extra>"))
    fig.update_layout(bargap=0, barmode="overlay")
    style(fig, title, height=320, xlabel="LCA", ylabel="% of nonzero LCA values")
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def help_per_layer_figure(pct_help: np.ndarray, layer_names: Sequence[str], *,
                          pct_hurt: np.ndarray | None = None,
                          title: str = "Average % helping per layer") -> go.Figure:
    """Fig. 3c: mean percent of parameters helping in each layer (50 % line for reference)."""
    names = [str(n) for n in layer_names]
    fig = go.Figure(go.Bar(x=names, y=np.asarray(pct_help, np.float64), name="helping",
                           marker={"color": HELP_COLOR,
                                   "line": {"color": [layer_color(i) for i in range(len(names))],
                                            "width": 2}}))
    if pct_hurt is not None:
        fig.add_trace(go.Bar(x=names, y=np.asarray(pct_hurt, np.float64), name="hurting",
                             marker={"color": HURT_COLOR}))
    fig.add_hline(y=50, line={"color": "#444", "dash": "dash", "width": 1})
    style(fig, title, height=320, ylabel="% of parameters", legend=pct_hurt is not None)
    fig.update_yaxes(range=[0, 100])
    return fig


def help_fraction_hist_figure(counts: np.ndarray, edges: np.ndarray, *,
                              title: str = "Fraction of iterations each parameter helped"
                              ) -> go.Figure:
    """Fig. 3d: histogram over parameters of the fraction of (nonzero) iterations they helped."""
    edges = np.asarray(edges, np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=np.asarray(counts), width=np.diff(edges),
                           marker={"color": HELP_COLOR, "line": {"width": 0}},
                           hovertemplate="helped %{x:.2f} of iterations<br>%{y:,} parameters"
                                         "<extra></extra>"))
    fig.add_vline(x=0.5, line={"color": "#444", "dash": "dash", "width": 1})
    fig.update_layout(bargap=0)
    return style(fig, title, height=320, xlabel="fraction of iterations helped",
                 ylabel="parameters", legend=False)
