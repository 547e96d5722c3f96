"""Class-by-layer peak alignment (paper Fig. 6) and the random-shift significance test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lcaviz.figures.curves import decimate
from lcaviz.figures.theme import HURT_COLOR, layer_color, style

ALIGNED_COLOR = HURT_COLOR  # the paper marks aligned moments in red
PEAK_COLOR = "#222222"
PEAK_LABEL = "peak (one of the layer's top-k minima)"
ALIGNED_LABEL = "peak at an aligned moment"
BAND_LABEL = "aligned moment: every layer peaks"


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
    fig = make_subplots(rows=n_layers, cols=1, shared_xaxes=True, vertical_spacing=0.02)
    t = np.arange(a.shape[0])
    aligned_set = set(aligned.tolist())
    for pos, li in enumerate(reversed(range(n_layers)), start=1):
        # the layer's name inside its row, top left and horizontal: row titles on the right
        # are written vertically and long names (blocks.0.mlp.fc_in) ran into each other
        sfx = "" if pos == 1 else str(pos)
        fig.add_annotation(text=str(layer_names[li]), xref=f"x{sfx} domain",
                           yref=f"y{sfx} domain", x=0.005, y=1.0, xanchor="left",
                           yanchor="top", showarrow=False, font={"size": 11, "color": "#333"},
                           bgcolor="rgba(255,255,255,0.75)")
        xs, ys = decimate(t, a[:, li])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=str(layer_names[li]),
                                 showlegend=False,  # the row title names the layer
                                 line={"color": layer_color(li), "width": 1}), row=pos, col=1)
        pk = np.asarray(peaks[li], np.int64) if li < len(peaks) else np.zeros(0, np.int64)
        pk = pk[(pk >= 0) & (pk < a.shape[0])]
        is_al = np.array([p in aligned_set for p in pk.tolist()], bool)
        for sel, name, color in ((~is_al, PEAK_LABEL, PEAK_COLOR),
                                 (is_al, ALIGNED_LABEL, ALIGNED_COLOR)):
            fig.add_trace(go.Scatter(
                x=pk[sel], y=a[pk[sel], li], mode="markers", name=name, legendgroup=name,
                showlegend=pos == 1, marker={"color": color, "size": 7, "symbol": "circle"},
                hovertemplate=f"iteration %{{x}}<br>LCA %{{y:.4g}}<extra>{name}</extra>"),
                row=pos, col=1)
    for it in aligned.tolist():  # one band across all rows (the x axes are shared)
        fig.add_shape(type="rect", xref="x", yref="paper", x0=it - 0.5, x1=it + 0.5, y0=0,
                      y1=1, fillcolor=ALIGNED_COLOR, opacity=0.18, line_width=0, layer="below")
    # shapes have no legend entry of their own: a legend-only swatch names the bands
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=BAND_LABEL,
                             hoverinfo="skip", marker={"color": ALIGNED_COLOR, "opacity": 0.3,
                                                       "size": 12, "symbol": "square"}),
                  row=1, col=1)
    kk = f"top {k} " if k else ""
    label = class_label(class_name)
    title = (f"{label[0].upper()}{label[1:]}: {kk}learning moments per layer — "
             f"{len(aligned)} aligned across all layers")
    style(fig, title, height=max(340, 110 * n_layers + 120), legend=True)
    fig.update_layout(title={"y": 0.98, "yref": "container", "yanchor": "top"},
                      margin={"t": 84},
                      legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02,
                              "yanchor": "bottom", "bgcolor": "rgba(0,0,0,0)"})
    fig.update_xaxes(title_text="iteration", row=n_layers, col=1)
    fig.update_yaxes(title_text="LCA", row=(n_layers + 1) // 2, col=1)
    return fig


def class_label(name) -> str:
    """``"0"`` -> ``"class 0"``; names that already say what they are stay as they are."""
    s = str(name)
    return s if s.lower().startswith(("class", "all ")) else f"class {s}"


def per_class_floor(n_layers: int, max_shift: int) -> float:
    """Smallest per-class p the shift test can give, about ``(2s+1)^-(L-1)``.

    A resample whose random offsets move every layer by the same amount keeps every aligned
    moment, and that happens with probability ``1 / (2s+1)^(L-1)`` (one relative offset per
    layer after the first), so that share of resamples always reaches the actual count.
    """
    return float((2 * int(max_shift) + 1) ** -(int(n_layers) - 1)) if n_layers > 1 else 1.0


def _fmt_p(p: float, n: int) -> str:
    """``p = 0.041``, or ``p ≤ 0.001`` when no resample reached the actual count."""
    return f"p ≤ {1 / (n + 1):.2g}" if n and p <= 1.0 / (n + 1) * (1 + 1e-9) else f"p = {p:.2g}"


def _add_baseline(fig: go.Figure, baseline: np.ndarray, actual: float, col: int | None,
                  legend: bool) -> None:
    """Grey histogram of shifted counts plus a red line at the actual count (both in the
    legend, so no annotation competes with the titles)."""
    b = np.asarray(baseline, np.float64)
    at = {"row": 1, "col": col} if col else {}
    top = 1.0
    if b.size:
        lo, hi = int(np.floor(min(b.min(), actual))), int(np.ceil(max(b.max(), actual)))
        top = float(np.unique(b, return_counts=True)[1].max())
        fig.add_trace(go.Histogram(x=b, xbins={"start": lo - 0.5, "end": hi + 0.5, "size": 1},
                                   marker={"color": "#9e9e9e"}, name="random shifts",
                                   legendgroup="base", showlegend=legend), **at)
        fig.update_xaxes(range=[lo - 0.5 - 0.02 * (hi - lo), hi + 0.5 + 0.02 * (hi - lo)], **at)
    fig.add_trace(go.Scatter(x=[actual, actual], y=[0, top * 1.05], mode="lines",
                             name="actual (real data)", legendgroup="actual",
                             showlegend=legend, line={"color": ALIGNED_COLOR, "width": 3},
                             hovertemplate="actual: %{x} aligned<extra></extra>"), **at)


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
    _add_baseline(fig, b, float(actual), None, True)
    mean = f", baseline mean {b.mean():.2f}" if b.size else ""
    style(fig, f"{title}: p = {p_value:.3g}{mean}", height=300,
          xlabel="aligned moments", ylabel="resamples")
    return fig


def shift_test_panel(result: dict, cls: int = 0) -> go.Figure:
    """The random-shift test, pooled result first (:func:`lcaviz.analysis.synchrony.synchrony`).

    The title gives the pooled test (all classes together) and its subtitle what it means; the
    left panel is its baseline, the right one that of class ``cls``, and a note under the axes
    says why a per-class p cannot go below :func:`per_class_floor`.
    """
    base = np.asarray(result["baseline"], np.float64)  # (N, C)
    n, n_cls = base.shape[0], base.shape[1]
    c = min(max(int(cls), 0), n_cls - 1)
    s, n_layers = int(result["max_shift"]), len(result["layer_names"])
    p, total = float(result["p_value"]), int(result["actual_total"])
    mean, sd = result["baseline_total_mean"], result["baseline_total_std"]
    split = n_cls > 1
    name = class_label(result["class_names"][c])
    if split:
        fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.1,
                            subplot_titles=(f"all {n_cls} classes pooled", f"{name} only"))
        _add_baseline(fig, base.sum(axis=1), total, 1, True)
        _add_baseline(fig, base[:, c], float(result["actual"][c]), 2, False)
    else:
        fig = go.Figure()
        _add_baseline(fig, base[:, 0], total, None, True)
    who = f"all {n_cls} classes pooled" if split else str(result["class_names"][0])
    head = (f"{who[0].upper()}{who[1:]}: {total} aligned moments vs {mean:.1f} ± {sd:.1f} "
            f"under random shifts, {_fmt_p(p, n)}")
    if total == 0:
        meaning = "No iteration has a learning moment in every layer: no evidence of synchrony."
    elif p < 0.05:
        meaning = ("Layers have learning moments at the same iterations far more often than "
                   "chance: learning is synchronised.")
    else:
        meaning = "No more aligned moments than random shifts give: no evidence of synchrony."
    style(fig, head, height=380, xlabel="aligned moments", legend=True)
    fig.update_layout(title={"subtitle": {"text": f"{meaning} (shifts ±{s}, {n:,} resamples)",
                                          "font": {"size": 12, "color": "#444"}},
                             "y": 0.97, "yref": "container", "yanchor": "top"},
                      margin={"t": 100, "b": 112})
    fig.update_yaxes(title_text="resamples", col=1) if split else \
        fig.update_yaxes(title_text="resamples")
    if split:
        floor = per_class_floor(n_layers, s)
        pc = _fmt_p(float(result["p_values"][c]), n)
        note = (f"{name}: {int(result['actual'][c])} aligned vs "
                f"{float(result['baseline_mean'][c]):.2f} by chance, {pc}. A per-class p cannot "
                f"go below ≈ 1/{round(1 / floor):,} by construction: about 1 shift in "
                f"(2·{s}+1)^({n_layers}−1) = {round(1 / floor):,}<br>moves all {n_layers} layers "
                "by the same offset and so keeps every alignment. Read the pooled p above.")
        fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=0, xanchor="left",
                           yanchor="top", yshift=-58, showarrow=False, align="left",
                           font={"size": 11, "color": "#444"})
    return fig
