"""The per-layer error of the stored LCA (``lca-run --lca-error-every``) and Table S1, as
figures from precomputed tables (:func:`lcaviz.analysis.lca_error.error_table`,
:func:`~lcaviz.analysis.lca_error.rule_errors`); no bundle access, no server."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lcaviz.figures.theme import empty_figure, run_color, style
from lcaviz.figures.ticks import linear_axis, log_axis, positive_range

RULE_LABELS = {"first_order": "first order", "trapezoid": "trapezoid", "rk4": "RK4 (Simpson)",
               "stored": "stored"}
NO_ERRORS = "no error estimates in this run (make it with lca-run --lca-error-every K)"


def lca_error_figure(table: pd.DataFrame | list[dict] | None, *,
                     title: str = "LCA error per layer against 4× the Simpson intervals",
                     height: int = 340) -> go.Figure:
    """Bars per layer: the median relative error (log axis) and the % of flipped signs.

    Args:
        table: rows with ``layer``, ``median_rel``, ``pct_flipped`` and ``rel_l1``, and
            optionally ``rule`` (one bar colour per rule, e.g. Table S1's first order vs
            rk4); the ``network`` row appears in the flipped-sign panel only (a median does
            not pool over layers). None or empty: a figure that says there are none.
        title: figure title.
        height: pixel height.
    """
    df = pd.DataFrame(table if table is not None else [])
    if df.empty:
        return empty_figure(NO_ERRORS, height)
    if "rule" not in df:
        df = df.assign(rule="stored")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        "median |A − A_ref| / |A_ref|", "% of signs flipped"))
    for k, (rule, g) in enumerate(df.groupby("rule", sort=False)):
        name, color = RULE_LABELS.get(str(rule), str(rule)), run_color(k)
        layers = g[g.layer != "network"]
        med = layers.median_rel.to_numpy(np.float64)
        ok = np.isfinite(med) & (med > 0)
        fig.add_trace(go.Bar(
            x=layers.layer[ok], y=med[ok], name=name, marker_color=color, legendgroup=name,
            customdata=layers.rel_l1[ok],
            hovertemplate=(f"{name}<br>%{{x}}: median relative error %{{y:.2e}}<br>"
                           "Σ|error| / Σ|A_ref| %{customdata:.2e}<extra></extra>")), 1, 1)
        fig.add_trace(go.Bar(
            x=g.layer, y=g.pct_flipped, name=name, marker_color=color, legendgroup=name,
            showlegend=False,
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}} % of signs flipped<extra></extra>"),
            1, 2)
    rng = positive_range(df[df.layer != "network"].median_rel.to_numpy(np.float64))
    if rng is not None:
        lo, hi = rng
        fig.update_yaxes(**log_axis(lo / 1.5, hi * 1.5 if hi > lo else lo * 10), row=1, col=1)
    flipped = df.pct_flipped.to_numpy(np.float64)
    top = float(np.nanmax(flipped)) if np.isfinite(flipped).any() else 0.0
    fig.update_yaxes(**linear_axis(0.0, top if top > 0 else 1.0, nonnegative=True),
                     row=1, col=2)
    fig.update_layout(barmode="group")
    style(fig, title, height=height, legend=df.rule.nunique() > 1)
    fig.update_layout(margin={"t": 80})  # room for the title above the panel titles
    return fig


def table_s1_figure(errors: pd.DataFrame | list[dict] | None,
                    rules: tuple[str, ...] = ("first_order", "rk4"), **kw) -> go.Figure:
    """Table S1 as bars: the rules' errors per layer side by side (default first order vs
    RK4), from :func:`lcaviz.analysis.lca_error.rule_errors` rows (other rules dropped)."""
    df = pd.DataFrame(errors if errors is not None else [])
    if df.empty or "rule" not in df:
        return empty_figure(NO_ERRORS, kw.get("height", 340))
    df = df[df.rule.isin(rules)]
    kw.setdefault("title", " vs ".join(RULE_LABELS.get(r, r) for r in rules)
                  + " against 4× the Simpson intervals (Table S1)")
    return lca_error_figure(df, **kw)

