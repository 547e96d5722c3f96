"""Figures of a cheaper run against the full training loss (``--full-loss-every``,
``--lca-data``, ``--lca-every``; docs/approximations.md). Plain arrays and frames in, figures
out, like the rest of :mod:`lcaviz.figures`.

* :func:`calibrate_loss_figure` adds, to the run page's loss figure, the full training loss
  where it was evaluated and the gap between the run's cumulative LCA and the full loss change
  (title); series with iterations that were not evaluated are drawn with markers, so that an
  isolated value is visible and nothing is drawn where there is no value.
* :func:`calibration_figure`: cumulative LCA (total and per layer) against the full loss
  change at the evaluated iterations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lcaviz.figures.theme import LOSS_COLOR, add_time_marker, layer_color, style

FULL_COLOR = "#e6550d"


def gap_text(df: pd.DataFrame | None) -> str:
    """``"cumulative LCA −1.23 vs full loss change −1.25 at iteration 300 (gap +1.6 %)"``."""
    if df is None or not len(df):
        return ""
    last = df.iloc[-1]
    rel = f" ({100 * last.rel_gap:+.1f} %)" if np.isfinite(last.rel_gap) else ""
    return (f"cumulative LCA {last.lca_total:.4g} vs full loss change {last.full_change:.4g} "
            f"at iteration {int(last.iteration):,}: gap {last.gap:+.3g}{rel}")


def calibrate_loss_figure(fig: go.Figure, *, full: pd.DataFrame | None,
                          allocated_loss: str | None, gapped: bool) -> go.Figure:
    """The loss figure of a cheaper run: the allocated loss named, the full training loss as
    markers where evaluated, the calibration gap in the title. Unchanged for exact runs."""
    if gapped or full is not None:
        for tr in fig.data:  # values only where evaluated: markers make isolated ones visible
            if tr.y is not None and np.isnan(np.asarray(tr.y, np.float64)).any():
                tr.mode, tr.marker = "lines+markers", {"size": 4}
    if allocated_loss:
        for tr in fig.data:
            if tr.name == "train (full set)":
                tr.name = f"allocated: {allocated_loss}"
    if full is None:
        return fig
    fig.add_trace(go.Scatter(x=full.iteration, y=full.full_loss, name="full training loss",
                             mode="lines+markers",
                             line={"color": FULL_COLOR, "width": 1.2, "dash": "dot"},
                             marker={"size": 6, "color": FULL_COLOR}))
    text = gap_text(full)
    if text:
        title = fig.layout.title.text or "Loss"
        fig.update_layout(title_text=f"{title}<br><sub>{text}</sub>")
    return fig


def calibration_figure(df: pd.DataFrame | None, layer_names: Sequence[str], *,
                       t_marker: float | None = None, lca_every: int = 1) -> go.Figure:
    """Cumulative LCA (total, and per layer dashed) and the full loss change, at the
    iterations where the full loss was evaluated; for ``--lca-every`` runs also the
    extrapolated total (labelled as such)."""
    fig = go.Figure()
    if df is None or not len(df):
        return style(fig, "No full-loss evaluations (lca-run --full-loss-every K)", height=320)
    x = df.iteration
    fig.add_trace(go.Scatter(x=x, y=df.full_change, name="full loss change L(θ_t) − L(θ_0)",
                             mode="lines+markers", line={"color": FULL_COLOR, "width": 2}))
    fig.add_trace(go.Scatter(x=x, y=df.lca_total, name="cumulative LCA (all layers)",
                             mode="lines+markers", line={"color": LOSS_COLOR, "width": 2}))
    if lca_every > 1:
        fig.add_trace(go.Scatter(x=x, y=df.lca_total_scaled, mode="lines",
                                 name=f"cumulative LCA × t / allocated (extrapolation, K = "
                                 f"{lca_every})", line={"color": LOSS_COLOR, "dash": "dot"}))
    for li, name in enumerate(layer_names):
        fig.add_trace(go.Scatter(x=x, y=df[f"layer:{name}"], name=f"{name} (cumulative)",
                                 mode="lines", line={"color": layer_color(li), "dash": "dash",
                                                     "width": 1.2}))
    add_time_marker(fig, t_marker)
    title = "Cumulative LCA vs the full training loss"
    if text := gap_text(df):
        title += f"<br><sub>{text}</sub>"
    return style(fig, title, height=360, xlabel="iteration", ylabel="loss change")
