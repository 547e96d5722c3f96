"""The axes the browser's heatmap player paints into (:mod:`lcaviz.assets` ``lca_player.js``).

The figure holds no heatmap data: one subplot per plan item with its axes set to the item's
image in full-resolution pixel coordinates (rows downwards), transparent backgrounds so that a
canvas under the figure shows through, conv grid lines, and two invisible corner points so that
a double-click resets to the whole image. Plotly keeps doing what it does well (ticks, titles,
box zoom); the player does the pixels. The figure travels in the stream descriptor and the
player draws it itself, once Plotly has loaded (the first frame does not wait for that).
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lcaviz.figures.heatmap import _row_heights
from lcaviz.figures.image_axes import add_grid, axis_names, image_ticks
from lcaviz.figures.theme import style

# fixed margins and no automargin, so that the player can place its pixels exactly where
# Plotly will put the axes, before Plotly has even loaded
# t: room for the modebar above the image (it covered the top rows); r: the colour bar
MARGIN = {"l": 70, "r": 90, "t": 34, "b": 50}


def heatmap_axes(plan: Sequence[dict], title: str = "", uirevision: str = "") -> go.Figure:
    """Empty axes laid out like :func:`lcaviz.figures.heatmap.layer_heatmap` for ``plan``."""
    fig = make_subplots(rows=max(len(plan), 1), cols=1, row_heights=_row_heights(plan) or None,
                        vertical_spacing=0.1 if len(plan) > 1 else 0.02)
    for k, p in enumerate(plan, start=1):
        x0, x1 = p["c0"] - 0.5, p["c0"] + p["ncols"] - 0.5
        y0, y1 = p["r0"] - 0.5, p["r0"] + p["nrows"] - 0.5
        fig.add_trace(go.Scatter(x=[x0, x1], y=[y0, y1], mode="markers", hoverinfo="skip",
                                 marker={"opacity": 0, "size": 1}, showlegend=False,
                                 name=p["name"]), row=k, col=1)
        fig.update_xaxes(range=[x0, x1], row=k, col=1)
        if p["kind"] == "image":
            rows_name, cols_name = p.get("axis_titles") or axis_names(p["shape"])
            fig.update_yaxes(range=[y1, y0], row=k, col=1, title_text=rows_name)
            image_ticks(fig, p, k)
            fig.update_xaxes(title_text=cols_name, title_standoff=4, row=k, col=1)
            add_grid(fig, p, row=k)
        else:
            fig.update_yaxes(range=[y1, y0], showticklabels=False, ticks="", row=k, col=1,
                             title_text=p["name"].rsplit(".", 1)[-1], title_font_size=11)
    style(fig, title, height=int(460 + 70 * sum(p["kind"] == "strip" for p in plan)),
          legend=False)
    fig.update_xaxes(showgrid=False, zeroline=False, mirror=True, automargin=False)
    fig.update_yaxes(showgrid=False, zeroline=False, mirror=True, automargin=False)
    fig.update_layout(paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
                      hovermode=False, uirevision=uirevision, margin=MARGIN, title=None,
                      dragmode="zoom")
    return fig
