"""Training vs validation LCA per layer (``--val-lca``): grouped bars with the layers that help
one loss and hurt the other marked, and the cumulative curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lcaviz.figures.theme import empty_figure, layer_color, style

TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#ff7f0e"
NO_VAL = "no validation LCA in this run (make it with lca-run --val-lca)"
NO_VAL_TRACKER = ("no validation LCA in this run (pass the validation set to the tracker: "
                  "LCATracker(..., val_inputs=X_val, val_targets=y_val))")


def train_val_figure(table: pd.DataFrame | None, curves: tuple | None = None, *,
                     title: str = "LCA of the training vs the validation loss per layer",
                     height: int = 420, source: str | None = None) -> go.Figure:
    """Bars of each layer's training and validation LCA (negative = lowered that loss), a ⚠
    over layers that lower the training loss but raise the validation loss, and, if given,
    the cumulative curves ``(train (T, L), val (T, L))`` (solid: training, dotted: validation).
    ``source``: the bundle config's ``source``; without a validation LCA the message says how
    that kind of run gets one (``LCATracker``: ``val_inputs=``; otherwise ``--val-lca``).
    """
    if table is None or len(table) == 0:
        return empty_figure(NO_VAL_TRACKER if source == "LCATracker" else NO_VAL, height)
    n = 2 if curves is not None else 1
    fig = make_subplots(rows=1, cols=n, horizontal_spacing=0.1, subplot_titles=(
        "whole run", "cumulative over training")[:n])
    names = list(table["name"])
    fig.add_trace(go.Bar(x=names, y=table["train"], name="training loss",
                         marker={"color": TRAIN_COLOR}), row=1, col=1)
    fig.add_trace(go.Bar(x=names, y=table["val"], name="validation loss",
                         marker={"color": VAL_COLOR}), row=1, col=1)
    flagged = table[table["helps_train_hurts_val"]]
    if len(flagged):
        top = np.maximum(flagged["train"].to_numpy(), flagged["val"].to_numpy())
        fig.add_trace(go.Scatter(
            x=list(flagged["name"]), y=top, mode="markers+text", text=["⚠"] * len(flagged),
            textposition="top center", marker={"size": 1, "color": "rgba(0,0,0,0)"},
            name="⚠ helps training, hurts validation (overfitting signal)",
            hovertemplate="%{x}: lowers the training loss, raises the validation loss"
            "<extra></extra>"), row=1, col=1)
    fig.update_yaxes(title_text="LCA (negative = lowered the loss)", row=1, col=1)
    if curves is not None:
        tr, va = curves
        x = np.arange(1, len(tr) + 1)
        for li, name in enumerate(names):
            c = layer_color(li)
            fig.add_trace(go.Scatter(x=x, y=tr[:, li], mode="lines", line={"color": c},
                                     name=f"{name} (training)", legendgroup=name), row=1, col=2)
            fig.add_trace(go.Scatter(x=x, y=va[:, li], mode="lines",
                                     line={"color": c, "dash": "dot"},
                                     name=f"{name} (validation)", legendgroup=name),
                          row=1, col=2)
        fig.update_xaxes(title_text="iteration", row=1, col=2)
    fig.update_layout(barmode="group")
    style(fig, title, height=height)
    # the panel titles sit below the figure's title (they collided), and the rotated layer
    # names get the room they need under the bars (they were cut)
    longest = max((len(str(n)) for n in names), default=4)
    fig.update_layout(title={"y": 0.98, "yref": "container", "yanchor": "top"},
                      margin={"t": 86, "b": min(60 + 6 * longest, 220)},
                      height=height + min(6 * longest, 160))
    fig.update_xaxes(tickangle=-40, automargin=True, row=1, col=1)
    return fig
