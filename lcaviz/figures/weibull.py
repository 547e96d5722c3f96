"""|LCA| histograms with fitted Weibull densities (paper Sec. 3, Fig. S10)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from lcaviz.figures.theme import style
from lcaviz.figures.ticks import log_axis, positive_range


def weibull_pdf(x: np.ndarray, k: float, lam: float) -> np.ndarray:
    """Weibull(k, λ) density at ``x >= 0``."""
    x = np.asarray(x, np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = x / lam
        p = (k / lam) * np.power(z, k - 1) * np.exp(-np.power(z, k))
    return np.where(x > 0, p, 0.0)


def _translucent(color: str, alpha: float = 0.18) -> str:
    """``#rrggbb`` -> ``rgba(r, g, b, alpha)`` (overlapping fills stay readable)."""
    if color.startswith("#") and len(color) == 7:
        r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
        return f"rgba({r},{g},{b},{alpha})"
    return color


def fit_label(name: str, k: float, lam: float, ks: float | None) -> str:
    """Legend text ``"helping: k=0.62, λ=1.3e-05, KS=0.021"``."""
    s = f"{name}: k={k:.3g}, λ={lam:.3g}"
    return s + (f", KS={ks:.3g}" if ks is not None else "")


def weibull_figure(panels: Sequence[dict], *, log_x: bool = True,
                   title: str = "|LCA| with Weibull fits") -> go.Figure:
    """Density histograms of |LCA| with their fitted Weibull pdfs.

    Args:
        panels: one dict per group (e.g. helping, hurting, or per layer) with ``name``,
            ``counts``, ``edges`` (of |LCA|), ``k``, ``lam``, optional ``ks`` and ``color``.
        log_x: logarithmic |LCA| axis (heavy tails are easier to see; bins should be log-spaced).
        title: figure title.
    """
    fig = go.Figure()
    dens, edge_list = [], []
    for p in panels:
        edges = np.asarray(p["edges"], np.float64)
        counts = np.asarray(p["counts"], np.float64)
        widths = np.diff(edges)
        total = counts.sum()
        density = counts / (total * widths) if total > 0 else counts
        dens.append(density)
        edge_list.append(edges)
        # a step outline rather than bars: bar widths misbehave on log axes
        xs, ys = np.repeat(edges, 2)[1:-1], np.repeat(density, 2)
        color = p.get("color", "#555")
        fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{p['name']} |LCA|", mode="lines",
                                 line={"color": color, "width": 1}, fill="tozeroy",
                                 fillcolor=_translucent(color), opacity=0.9))
        if p.get("k") is not None and p.get("lam"):
            lo = edges[0] if edges[0] > 0 or not log_x else edges[1]
            xs = np.geomspace(lo, edges[-1], 300) if log_x else np.linspace(lo, edges[-1], 300)
            fig.add_trace(go.Scatter(x=xs, y=weibull_pdf(xs, p["k"], p["lam"]), mode="lines",
                                     name=fit_label(p["name"], p["k"], p["lam"], p.get("ks")),
                                     line={"color": color, "width": 2}))
    style(fig, title, height=380, xlabel="|LCA|", ylabel="density")
    if log_x:  # explicit ticks: one 1e-6 style format, no SI prefixes, no lone far tick
        xr, yr = positive_range(*edge_list), positive_range(*dens)
        fig.update_xaxes(**log_axis(*xr) if xr else {"type": "log"})
        # the y range follows the histograms; a fit's far tail (1e-16) is cut, not followed
        fig.update_yaxes(**log_axis(yr[0] / 2, yr[1] * 2) if yr else {"type": "log"})
    return fig
