"""Figures of per-example LCA (the run page's "Examples" section; arrays in, figures out).

* :func:`examples_grid_figure`: the top-k helped / hurt examples as a grid of thumbnails (or
  their texts) with their values, one line per list;
* :func:`examples_histogram_figure`: per-example values of a frame, stacked by class;
* :func:`example_detail_figure`: one example's loss over training and its per-layer LCA.

On the page the thumbnails are drawn by the browser (``assets/lca_4_examples.js``) from the
same renderings; these figures are what PNG / SVG / PDF / CSV exports and reports hold.
Every text from a bundle is HTML-escaped before Plotly sees it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lcaviz.figures.theme import HELP_COLOR, HURT_COLOR, LOSS_COLOR, layer_color, style

CLASS_PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
                 "#000000", "#7f7f7f", "#8c564b", "#17becf", "#bcbd22"]


def class_color(c: int) -> str:
    """Colour of class ``c`` (the histogram's stacks)."""
    return CLASS_PALETTE[int(c) % len(CLASS_PALETTE)]


def _esc(s) -> str:
    return html.escape(str(s), quote=False)


def examples_grid_figure(lists: Sequence[tuple[str, Sequence[dict], Sequence[float]]], *,
                         title: str = "", k: int | None = None) -> go.Figure:
    """Thumbnails of example lists, one grid line per list.

    Args:
        lists: ``(name, renderings, values)`` per line, e.g. ``("this frame · helped most",
            [render_example(...), ...], [-3e-5, ...])``; a rendering is
            :func:`lcaviz.figures.example_render.render_example`'s dict.
        title: figure title.
        k: columns (default: the longest list).

    The values are also one scatter trace per line (x: the training index, y: the value), so
    the CSV export lists every shown example with its value.
    """
    k = max([k or 0] + [len(r) for _, r, _ in lists] + [1])
    n = max(len(lists), 1)
    fig = go.Figure()
    images, notes = [], []
    for line, (name, rendered, values) in enumerate(lists):
        y = n - 1 - line
        notes.append({"x": -0.55, "y": y, "text": f"<b>{_esc(name)}</b>", "xanchor": "right",
                      "showarrow": False, "font": {"size": 11}})
        if not len(rendered):  # nothing moved that way in this frame: say so
            notes.append({"x": -0.4, "y": y, "text": "none", "xanchor": "left",
                          "showarrow": False, "font": {"size": 11, "color": "#888"}})
        for j, (ex, v) in enumerate(zip(rendered, values, strict=True)):
            if ex.get("kind") == "image":
                images.append({"source": ex["src"], "xref": "x", "yref": "y", "x": j, "y": y,
                               "sizex": 0.8, "sizey": 0.62, "xanchor": "center",
                               "yanchor": "middle", "sizing": "contain", "layer": "above"})
            else:
                notes.append({"x": j, "y": y, "text": _esc(ex.get("text", ""))[:40],
                              "showarrow": False, "font": {"size": 10}})
            colour = HELP_COLOR if v < 0 else HURT_COLOR
            notes.append({"x": j, "y": y - 0.42, "showarrow": False, "font": {"size": 9},
                          "text": f"{_esc(ex.get('caption', ''))}<br>"
                                  f"<span style='color:{colour}'>{v:.3g}</span>"})
        fig.add_trace(go.Scatter(
            x=[ex["index"] for ex in rendered], y=[float(v) for v in values], name=str(name),
            mode="markers", visible=False, showlegend=False))
    fig.update_layout(images=images, annotations=notes)
    fig.update_xaxes(range=[-0.6, k - 0.4], visible=False)
    fig.update_yaxes(range=[-0.75, n - 0.5], visible=False)
    style(fig, title, height=110 + 118 * n, legend=False)
    fig.update_layout(margin={"l": 150, "r": 10, "t": 44, "b": 10})
    return fig


def examples_histogram_figure(edges: np.ndarray, counts: np.ndarray,
                              class_names: Sequence[str] | None = None, *, title: str = "",
                              log_count: bool = False) -> go.Figure:
    """Stacked bars of per-example values, one stack per class.

    Args:
        edges: (B + 1,) bin edges.
        counts: (C, B) counts (:func:`lcaviz.analysis.examples.class_histogram`).
        class_names: C names (default ``class 0..``); a single row is "all examples".
        title: figure title.
        log_count: a logarithmic count axis (heavy tails: a few examples far from 0).
    """
    e = np.asarray(edges, np.float64)
    c = np.atleast_2d(np.asarray(counts, np.int64))
    centre, width = (e[:-1] + e[1:]) / 2, np.diff(e)
    names = list(class_names or [])
    fig = go.Figure()
    for i in range(c.shape[0]):
        name = names[i] if i < len(names) else ("all examples" if c.shape[0] == 1 else
                                                f"class {i}")
        fig.add_trace(go.Bar(x=centre, y=c[i], width=width, name=_esc(name),
                             marker={"color": class_color(i), "line": {"width": 0}},
                             hovertemplate=f"{_esc(name)}<br>%{{x:.3g}}: %{{y:,}} examples"
                                           "<extra></extra>"))
    fig.add_vline(x=0, line={"color": "#666", "width": 0.8})
    # classes in order, in one line above the bars (a tall legend would need a scroll bar)
    fig.update_layout(barmode="stack", bargap=0, legend={
        "orientation": "h", "traceorder": "normal", "x": 0, "y": 1.0, "yanchor": "bottom",
        "font": {"size": 10}})
    if log_count:
        fig.update_yaxes(type="log")
    return style(fig, title, height=300, xlabel="per-example LCA (negative: lowered its loss)",
                 ylabel="examples", legend=c.shape[0] > 1)


def example_detail_figure(windows: np.ndarray, lca_rows: np.ndarray,
                          layer_names: Sequence[str], *, loss: np.ndarray | None = None,
                          loss_x: np.ndarray | None = None, name: str = "",
                          t_marker: float | None = None) -> go.Figure:
    """One example through training: its loss ℓ_n, and per layer its cumulative LCA.

    Args:
        windows: (R, 2) ``[first, end)`` iterations of the rows.
        lca_rows: (R, L) the example's per-layer LCA per row.
        layer_names: L names.
        loss: ℓ_n at ``loss_x`` (the rows' first iterations and, last, the end), or None.
        loss_x: iterations of ``loss`` (default: the rows' starts).
        name: the example's caption (escaped here).
        t_marker: the player's iteration.
    """
    w = np.asarray(windows, np.int64).reshape(-1, 2)
    a = np.nan_to_num(np.asarray(lca_rows, np.float64).reshape(len(w), -1))
    # the running totals start at 0 where the first row starts
    cum = np.vstack([np.zeros((1, a.shape[1])), np.cumsum(a, axis=0)])
    ends = np.concatenate([w[:1, 0], w[:, 1]])
    has_loss = loss is not None and len(loss) > 0
    rows = 2 if has_loss else 1
    titles = (["loss ℓ of this example"] if has_loss else []) + [
        "cumulative per-layer LCA of this example (sums to Δℓ / N)"]
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=titles)
    if has_loss:
        x = w[:, 0] if loss_x is None else np.asarray(loss_x)
        fig.add_trace(go.Scatter(x=x, y=np.asarray(loss, np.float64), mode="lines",
                                 name="loss", line={"color": LOSS_COLOR, "width": 1.6}),
                      row=1, col=1)
    for li, lname in enumerate(layer_names):
        fig.add_trace(go.Scatter(x=ends, y=cum[:, li], mode="lines", name=_esc(lname),
                                 line={"color": layer_color(li), "width": 1.4}),
                      row=rows, col=1)
    if len(layer_names) > 1:
        fig.add_trace(go.Scatter(x=ends, y=cum.sum(axis=1), mode="lines", name="all layers",
                                 line={"color": "#222", "width": 1.2, "dash": "dot"}),
                      row=rows, col=1)
    fig.add_hline(y=0, line={"color": "#999", "width": 0.8}, row=rows, col=1)
    if t_marker is not None:
        for r in range(1, rows + 1):
            fig.add_vline(x=float(t_marker), line={"color": "#444", "dash": "dot", "width": 1},
                          row=r, col=1)
    fig.update_xaxes(title_text="iteration", row=rows, col=1)
    return style(fig, f"Example {_esc(name)}", height=200 + 170 * rows)


def example_runs_figure(curves: Sequence[dict], *, name: str = "", xlabel: str = "iteration",
                        missing: Sequence[str] = ()) -> go.Figure:
    """One training example in several runs: its loss and its cumulative LCA (all layers).

    Args:
        curves: per run ``{"run", "x", "cumulative", "loss_x", "loss"}`` (``loss`` may be None):
            ``x`` the rows' ends and ``cumulative`` the example's running total there.
        name: the example's caption (escaped here).
        xlabel: the shared axis ("iteration" or "fraction of training").
        missing: runs that do not track this example (named in the title).
    """
    from lcaviz.figures.theme import run_color

    has_loss = any(c.get("loss") is not None and len(c["loss"]) for c in curves)
    rows = 2 if has_loss else 1
    titles = (["loss ℓ of this example"] if has_loss else []) + [
        "its cumulative per-example LCA, all layers (sums to Δℓ / N)"]
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=titles)
    for k, c in enumerate(curves):
        colour = run_color(k)
        if has_loss and c.get("loss") is not None:
            fig.add_trace(go.Scatter(x=c["loss_x"], y=c["loss"], mode="lines",
                                     name=f"{_esc(c['run'])} loss", legendgroup=str(k),
                                     showlegend=False, line={"color": colour, "width": 1.4}),
                          row=1, col=1)
        fig.add_trace(go.Scatter(x=c["x"], y=c["cumulative"], mode="lines",
                                 name=_esc(c["run"]), legendgroup=str(k),
                                 line={"color": colour, "width": 1.6}), row=rows, col=1)
    fig.add_hline(y=0, line={"color": "#999", "width": 0.8}, row=rows, col=1)
    fig.update_xaxes(title_text=xlabel, row=rows, col=1)
    title = f"Example {_esc(name)} across runs"
    if missing:
        title += f" (not tracked by {_esc(', '.join(missing))})"
    return style(fig, title, height=200 + 170 * rows)
