"""Ticks, grid lines and axis titles of a tensor's image (shared by the figure and the axes
the browser's player paints into).

A conv weight's image is a grid of ``kh x kw`` blocks and a 3-d weight's a row of ``b x c``
blocks (one per attention head, say; :mod:`lcaviz.figures.layout2d`): thin lines separate the
blocks while they stay readable, and a row of a few blocks gets one labelled tick per block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from lcaviz.figures.layout2d import block_size

GRID_MAX_LINES = 300
BLOCK_TICKS_MAX = 32  # a row of up to this many blocks (heads) gets one labelled tick each


def grid_lines(p: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions ``(xs, ys)`` of the lines between the blocks in view of plan item ``p``.

    Returns:
        None where the image has no blocks, no line falls in view, or too many would.
    """
    blocks = block_size(tuple(p["shape"]))
    if blocks is None or blocks == (1, 1):
        return None
    kh, kw = blocks
    r0, r1, c0, c1 = p["r0"], p["r0"] + p["nrows"], p["c0"], p["c0"] + p["ncols"]
    ys = np.arange((r0 // kh + 1) * kh, r1, kh) - 0.5
    xs = np.arange((c0 // kw + 1) * kw, c1, kw) - 0.5
    if len(xs) + len(ys) > GRID_MAX_LINES or (len(xs) + len(ys)) == 0:
        return None
    return xs, ys


def has_grid(p: dict) -> bool:
    """Whether :func:`add_grid` adds a trace for ``p`` (click mapping counts traces)."""
    return grid_lines(p) is not None


def add_grid(fig: go.Figure, p: dict, row: int) -> None:
    """One line trace between the blocks of a conv or 3-d weight (when they stay readable)."""
    lines = grid_lines(p)
    if lines is None:
        return
    xs, ys = lines
    r0, r1, c0, c1 = p["r0"], p["r0"] + p["nrows"], p["c0"], p["c0"] + p["ncols"]
    lx, ly = [], []
    for y in ys:
        lx += [c0 - 0.5, c1 - 0.5, None]
        ly += [y, y, None]
    for x in xs:
        lx += [x, x, None]
        ly += [r0 - 0.5, r1 - 0.5, None]
    # a conv grid has many lines and stays faint; the few between heads must stand out
    line = {"color": "rgba(40,40,40,0.85)", "width": 1.5} if len(p["shape"]) == 3 else \
        {"color": "rgba(120,120,120,0.35)", "width": 0.6}
    fig.add_trace(go.Scatter(x=lx, y=ly, mode="lines", hoverinfo="skip", showlegend=False,
                             line=line), row=row, col=1)


def image_ticks(fig: go.Figure, p: dict, row: int) -> None:
    """Ticks that name what the image is made of.

    An image of a few rows gets a tick per row, not Plotly's half-integer ticks between them;
    the row of blocks of a 3-d weight gets one tick per block in view, labelled with its index
    along axis 0, and a view inside one block the block's own column index.
    """
    if p["nrows"] <= 16 and p.get("by", 1) == 1:
        fig.update_yaxes(dtick=1, tick0=0, row=row, col=1)
    shape = tuple(p["shape"])
    if len(shape) != 3 or shape[0] > BLOCK_TICKS_MAX:
        return
    c = shape[2]
    first, stop = p["c0"] // c, -(-(p["c0"] + p["ncols"]) // c)
    if stop - first >= 2:
        fig.update_xaxes(tickvals=[k * c + (c - 1) / 2 for k in range(first, stop)],
                         ticktext=[str(k) for k in range(first, stop)], row=row, col=1)
    else:
        cols = range(p["c0"], p["c0"] + p["ncols"], max(1, p["ncols"] // 8))
        fig.update_xaxes(tickvals=list(cols), ticktext=[str(j % c) for j in cols],
                         row=row, col=1)


def axis_names(shape: Sequence[int]) -> tuple[str, str]:
    """Axis titles of a tensor image: what its rows and columns index."""
    if len(shape) == 4:
        return "output channel × kh", "input channel × kw"
    if len(shape) == 2:
        return "output unit", "input unit"
    if len(shape) == 3:
        return "axis 1", "axis 0 (one block each) × axis 2"
    return "axis 0", "other axes (flattened)"
