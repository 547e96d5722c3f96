"""Line and bar figures over iterations: loss, conservation residual, per-layer LCA.

All functions take plain numpy arrays; long series are decimated with a min/max envelope so
that a 100k-iteration run still draws every spike without sending 100k points per trace.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lcaviz.figures.theme import (
    HELP_COLOR,
    HURT_COLOR,
    LOSS_COLOR,
    VAL_COLOR,
    add_time_marker,
    layer_color,
    style,
)
from lcaviz.figures.ticks import finite_range, log_axis, positive_range

MAX_POINTS = 4_000


def decimate(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS
             ) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a series to at most ~``max_points`` points keeping each bucket's min and max.

    Spikes survive (unlike striding), which matters for LCA curves whose peaks are the point.
    NaNs are ignored within a bucket.
    """
    x, y = np.asarray(x), np.asarray(y, np.float64)
    n = len(y)
    if n <= max_points:
        return x, y
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    idx = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b <= a:
            continue
        seg = y[a:b]
        if np.all(np.isnan(seg)):
            idx.append(a)
            continue
        i, j = a + int(np.nanargmin(seg)), a + int(np.nanargmax(seg))
        idx.extend(sorted({i, j}))
    idx = np.asarray(idx, np.int64)
    return x[idx], y[idx]


def _line(x, y, name: str, color: str, **kw) -> go.Scatter:
    xs, ys = decimate(x, y)
    return go.Scatter(x=xs, y=ys, name=name, mode="lines", line={"color": color, "width": 1.4},
                      **kw)


def loss_figure(loss_train: np.ndarray, *, loss_val: np.ndarray | None = None,
                loss_minibatch: np.ndarray | None = None, t_marker: float | None = None,
                log_y: bool = False, title: str = "Loss") -> go.Figure:
    """Train (θ_0…θ_T), optional validation and minibatch losses against iteration."""
    fig = go.Figure()
    t = np.arange(len(loss_train))
    if loss_minibatch is not None and len(loss_minibatch):
        fig.add_trace(_line(np.arange(len(loss_minibatch)), loss_minibatch, "minibatch",
                            "#b0b0b0", opacity=0.8))
    fig.add_trace(_line(t, loss_train, "train (full set)", LOSS_COLOR))
    if loss_val is not None and len(loss_val):
        fig.add_trace(_line(np.arange(len(loss_val)), loss_val, "validation", VAL_COLOR))
    add_time_marker(fig, t_marker)
    style(fig, title, height=320, xlabel="iteration", ylabel="loss")
    shown = [a for a in (loss_train, loss_val, loss_minibatch) if a is not None and len(a)]
    if log_y:
        span = positive_range(*shown)
        fig.update_yaxes(**log_axis(*span) if span else {"type": "log"})
    elif (span := finite_range(*shown)) is not None and span[0] >= 0:
        fig.update_yaxes(rangemode="nonnegative")  # a loss axis never shows a negative tick
    return fig


def residual_figure(residual: np.ndarray, *, log_abs: bool = False,
                    t_marker: float | None = None) -> go.Figure:
    """Conservation error ΔL − ΣLCA per iteration (optionally log10 |residual|)."""
    r = np.asarray(residual, np.float64)
    t = np.arange(len(r))
    fig = go.Figure()
    if log_abs:
        y = np.abs(r)
        y = np.where(y > 0, y, np.nan)
        fig.add_trace(_line(t, y, "|residual|", "#6a3d9a"))
        span = positive_range(y)
        fig.update_yaxes(**log_axis(*span) if span else {"type": "log"})
        ylab = "|ΔL − ΣLCA|"
    else:
        fig.add_trace(_line(t, r, "residual", "#6a3d9a"))
        ylab = "ΔL − ΣLCA"
    add_time_marker(fig, t_marker)
    rel = ""
    if len(r):
        rel = f" — max |residual| {np.nanmax(np.abs(r)):.3g}"
    return style(fig, "Conservation residual" + rel, height=280, xlabel="iteration",
                 ylabel=ylab, legend=False)


def layer_curves_figure(lca_layer: np.ndarray, layer_names: Sequence[str], *,
                        cumulative: bool = False, t_marker: float | None = None,
                        title: str | None = None) -> go.Figure:
    """Per-layer LCA per iteration (or its running total), one coloured line per layer."""
    a = np.asarray(lca_layer, np.float64)
    if cumulative:
        a = np.cumsum(a, axis=0)
    t = np.arange(a.shape[0])
    fig = go.Figure()
    for li, name in enumerate(layer_names):
        fig.add_trace(_line(t, a[:, li], str(name), layer_color(li)))
    add_time_marker(fig, t_marker)
    fig.add_hline(y=0, line={"color": "#999", "width": 0.8})
    default = "Cumulative LCA per layer" if cumulative else "LCA per layer and iteration"
    return style(fig, title or default, height=340, xlabel="iteration", ylabel="LCA")


def layer_bars_figure(totals: np.ndarray, layer_sizes: np.ndarray,
                      layer_names: Sequence[str], *, per_param: bool = False,
                      title: str = "Total LCA per layer") -> go.Figure:
    """Bar per layer of summed LCA (paper Fig. 4 left), raw or divided by parameter count.

    Helping (negative) bars are green, hurting (positive) red; the outline keeps the layer
    colour so that bars match the curves.
    """
    v = np.asarray(totals, np.float64)
    sizes = np.maximum(np.asarray(layer_sizes, np.float64), 1)
    y = v / sizes if per_param else v
    colors = [HELP_COLOR if val < 0 else HURT_COLOR for val in y]
    fig = go.Figure(go.Bar(
        x=[str(n) for n in layer_names], y=y, marker={
            "color": colors, "line": {"color": [layer_color(i) for i in range(len(y))],
                                      "width": 2}},
        customdata=np.stack([v, sizes], axis=-1),
        hovertemplate="%{x}<br>LCA %{customdata[0]:.4g}<br>params %{customdata[1]:,.0f}"
                      "<br>per param %{y:.4g}<extra></extra>" if per_param else
                      "%{x}<br>LCA %{y:.4g}<br>params %{customdata[1]:,.0f}<extra></extra>"))
    fig.add_hline(y=0, line={"color": "#666", "width": 0.8})
    return style(fig, title, height=320, ylabel="LCA per parameter" if per_param else "LCA",
                 legend=False)


def param_drill_figure(windows: np.ndarray, lca_rows: np.ndarray, *, name: str,
                       weights: np.ndarray | None = None, t_marker: float | None = None,
                       errors: tuple[np.ndarray, np.ndarray] | None = None) -> go.Figure:
    """One parameter over training: its LCA per iteration, the running total, and θ_t if known.

    Args:
        windows: ``[first, end)`` iterations of each stored row, (R, 2).
        lca_rows: the parameter's LCA per row (an exact sum over the row's window), (R,).
        name: label, e.g. ``"fc1.weight[3, 17]"``.
        weights: θ_0…θ_T of the parameter (trajectory), or None.
        t_marker: iteration of the slider.
        errors: ``(iterations, |A − A_ref|)`` of the run's error estimates
            (``--lca-error-every``): error bars on the iterations that have one-iteration rows.

    A row that sums several iterations is drawn as a bar as wide as its window and as high as
    its mean per iteration, so one-iteration rows and window sums share one scale; the running
    total is exact at the end of every row.
    """
    n = 3 if weights is not None else 2
    w = np.asarray(windows, np.int64).reshape(-1, 2)
    width = np.maximum(w[:, 1] - w[:, 0], 1)
    single = bool(np.all(width == 1))
    titles = ["LCA per iteration" if single else
              "LCA per iteration (rows of several iterations: their mean)",
              "cumulative LCA", "weight θ"][:n]
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=titles)
    y = np.asarray(lca_rows, np.float64)
    per_it = y / width
    colors = np.where(y < 0, HELP_COLOR, HURT_COLOR)
    centre = w[:, 0] + (width - 1) / 2
    if len(y) <= 2000:
        fig.add_trace(go.Bar(x=centre, y=per_it, width=width, marker={"color": colors},
                             name="LCA", customdata=np.stack([w[:, 0], w[:, 1] - 1, y], 1),
                             hovertemplate="iterations %{customdata[0]}–%{customdata[1]}"
                             "<br>LCA %{customdata[2]:.4g}<extra></extra>"), row=1, col=1)
    else:
        fig.add_trace(_line(centre, per_it, "LCA", "#555"), row=1, col=1)
    if errors is not None and len(errors[0]):
        its, err = (np.asarray(e) for e in errors)
        r = np.searchsorted(w[:, 1], its, side="right")  # the row holding each iteration
        ok = (r < len(y)) & (width[np.minimum(r, len(y) - 1)] == 1)
        if ok.any():
            fig.add_trace(go.Scatter(
                x=its[ok], y=y[r[ok]], mode="markers", name="error estimate",
                marker={"color": "#222", "size": 4},
                error_y={"type": "data", "array": err[ok], "color": "#222", "thickness": 1},
                hovertemplate="iteration %{x}<br>LCA %{y:.4g} ± %{error_y.array:.2g} "
                "(vs 4× the Simpson intervals)<extra></extra>"), row=1, col=1)
    fig.add_trace(_line(w[:, 1], np.cumsum(y), "cumulative", LOSS_COLOR), row=2, col=1)
    if weights is not None:
        fig.add_trace(_line(np.arange(len(weights)), weights, "θ", VAL_COLOR), row=3, col=1)
    if t_marker is not None:
        for r in range(1, n + 1):
            fig.add_vline(x=float(t_marker), line={"color": "#444", "dash": "dot", "width": 1},
                          row=r, col=1)
    fig.update_xaxes(title_text="iteration", row=n, col=1)
    return style(fig, f"Parameter {name}", height=160 + 150 * n, legend=False)
