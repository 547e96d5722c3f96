"""Class-by-layer peak alignment (paper Fig. 6) and the random-shift significance test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lcaviz.figures.curves import decimate
from lcaviz.figures.theme import HURT_COLOR, layer_color, style

ALIGNED_COLOR = HURT_COLOR  # the paper marks aligned moments in red


def class_peaks_figure(curves: np.ndarray, layer_names: Sequence[str],
                       peaks: Sequence[np.ndarray], aligned: np.ndarray, *,
                       class_name: str = "", k: int | None = None) -> go.Figure:
    """Per-layer LCA curves of one class with top-k peaks, aligned moments as vertical bands.

    Layers are stacked bottom (first) to top (last), as in the paper.

    Args:
        curves: (T, L) per-class LCA per iteration and layer.
        layer_names: L names.
        peaks: per layer, iterations of its top-k learning moments (local minima).
        aligned: iterations where every layer has a peak (synchronised moments).
        class_name: label of the class.
        k: number of peaks per layer (for the title).
    """
    a = np.asarray(curves, np.float64)
    n_layers = a.shape[1]
    aligned = np.asarray(aligned, np.int64)
    fig = make_subplots(rows=n_layers, cols=1, shared_xaxes=True, vertical_spacing=0.02,
                        row_titles=[str(layer_names[li]) for li in reversed(range(n_layers))])
    t = np.arange(a.shape[0])
    aligned_set = set(aligned.tolist())
    for pos, li in enumerate(reversed(range(n_layers)), start=1):
        xs, ys = decimate(t, a[:, li])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=str(layer_names[li]),
                                 line={"color": layer_color(li), "width": 1}), row=pos, col=1)
        pk = np.asarray(peaks[li], np.int64) if li < len(peaks) else np.zeros(0, np.int64)
        pk = pk[(pk >= 0) & (pk < a.shape[0])]
        is_al = np.array([p in aligned_set for p in pk.tolist()], bool)
        colors = np.where(is_al, ALIGNED_COLOR, "#222222")
        fig.add_trace(go.Scatter(x=pk, y=a[pk, li], mode="markers", showlegend=False,
                                 marker={"color": colors, "size": 7, "symbol": "circle"},
                                 hovertemplate="iteration %{x}<br>LCA %{y:.4g}<extra>peak"
                                               "</extra>"), row=pos, col=1)
    for it in aligned.tolist():  # one band across all rows (the x axes are shared)
        fig.add_shape(type="rect", xref="x", yref="paper", x0=it - 0.5, x1=it + 0.5, y0=0,
                      y1=1, fillcolor=ALIGNED_COLOR, opacity=0.18, line_width=0, layer="below")
    kk = f"top {k} " if k else ""
    label = class_name if str(class_name).lower().startswith("class") else \
        f"Class {class_name}"
    title = (f"{label}: {kk}learning moments per layer — "
             f"{len(aligned)} aligned across all layers")
    style(fig, title, height=max(320, 110 * n_layers + 90), legend=False)
    fig.update_xaxes(title_text="iteration", row=n_layers, col=1)
    return fig


def shift_test_figure(baseline: np.ndarray, actual: float, p_value: float, *,
                      title: str = "Random-shift test") -> go.Figure:
    """Histogram of aligned-moment counts under random layer shifts vs. the actual count.

    Args:
        baseline: aligned counts of each resample (layers randomly shifted).
        actual: aligned count of the real data.
        p_value: fraction of resamples >= actual (with the usual +1 correction).
        title: figure title.
    """
    b = np.asarray(baseline, np.float64)
    fig = go.Figure()
    if b.size:
        lo, hi = int(np.floor(min(b.min(), actual))), int(np.ceil(max(b.max(), actual)))
        fig.add_trace(go.Histogram(x=b, xbins={"start": lo - 0.5, "end": hi + 0.5, "size": 1},
                                   marker={"color": "#9e9e9e"}, name="shifted baseline"))
    fig.add_vline(x=float(actual), line={"color": ALIGNED_COLOR, "width": 3},
                  annotation_text=f"actual {actual:g}", annotation_position="top")
    mean = f", baseline mean {b.mean():.2f}" if b.size else ""
    style(fig, f"{title}: p = {p_value:.3g}{mean}", height=300,
          xlabel="aligned moments", ylabel="resamples", legend=False)
    return fig
