"""Shared look of every dashboard figure: colours, fonts and export-friendly sizes.

One place decides the palette so that a layer has the same colour in every view and helping /
hurting always read green / red, as in the paper's figures.
"""

from __future__ import annotations

import copy

import plotly.graph_objects as go
import plotly.io as pio

HELP_COLOR = "#1a9850"  # negative LCA: the parameter decreased the loss
HURT_COLOR = "#d73027"  # positive LCA: the parameter increased the loss
ZERO_COLOR = "#9e9e9e"
LOSS_COLOR = "#222222"
VAL_COLOR = "#1f77b4"
MARKER_COLOR = "#444444"

# Green (helps) - white (zero) - red (hurts); symmetric so that white is exactly zero.
DIVERGING = [
    [0.0, "#00441b"],
    [0.2, "#238b45"],
    [0.4, "#a1d99b"],
    [0.5, "#ffffff"],
    [0.6, "#fcae91"],
    [0.8, "#de2d26"],
    [1.0, "#67000d"],
]

# Blue (helps) - white (zero) - orange (hurts): the colour-blind-safe choice (no red against
# green); ColorBrewer's Blues and Oranges, symmetric so that white is exactly zero.
DIVERGING_BLUE_ORANGE = [
    [0.0, "#08306b"],
    [0.2, "#2171b5"],
    [0.4, "#9ecae1"],
    [0.5, "#ffffff"],
    [0.6, "#fdd0a2"],
    [0.8, "#f16913"],
    [1.0, "#7f2704"],
]
# the heatmap's palettes by name (the page's "colours" menu; the browser remembers the choice)
PALETTES = {"redgreen": DIVERGING, "blueorange": DIVERGING_BLUE_ORANGE}


def diverging(palette: str | None) -> list:
    """The diverging colour scale called ``palette`` (green/red when unknown or None)."""
    return PALETTES.get(palette or "", DIVERGING)


# Colour-blind friendly, high-contrast categorical palette (Okabe-Ito + extras).
# the compare page's first four stay as they were; reports with more runs get the rest
RUN_PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
               "#F0E442"]
LAYER_PALETTE = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
    "#000000", "#7f7f7f", "#8c564b", "#17becf", "#bcbd22",
]

# Plotly's modebar on every figure (pages, HTML report): no "Share chart…" upload of
# unpublished data to Plotly Cloud, no Chart Studio link, and no camera button (the cards'
# PNG / SVG / PDF / CSV exports do that job, with the page's own file names)
NO_UPLOAD_BUTTONS = ["sendChartToCloud", "editInChartStudio", "toImage", "lasso2d", "select2d"]
PLOTLY_CONFIG = {"displaylogo": False, "showSendToCloud": False,
                 "modeBarButtonsToRemove": NO_UPLOAD_BUTTONS}

FONT_FAMILY = "Helvetica Neue, Helvetica, Arial, sans-serif"
EXPORT_WIDTH = 900
EXPORT_HEIGHT = 500


TEMPLATE_NAME = "lcaviz"


def _register_template() -> None:
    """Register the ``lcaviz`` Plotly template once (simple_white + our fonts and margins)."""
    if TEMPLATE_NAME in pio.templates:
        return
    t = copy.deepcopy(pio.templates["simple_white"])
    t.layout.update(
        font={"family": FONT_FAMILY, "size": 12, "color": "#222"},
        paper_bgcolor="white", plot_bgcolor="white",
        margin={"l": 60, "r": 20, "t": 48, "b": 48},
        legend={"bgcolor": "rgba(255,255,255,0.7)", "font": {"size": 11}},
        hoverlabel={"font": {"family": FONT_FAMILY}},
        colorway=LAYER_PALETTE,
    )
    # one number format everywhere: 1e-6 style exponents, never SI prefixes (μ, n, B, T)
    t.layout.xaxis.update(exponentformat="e")
    t.layout.yaxis.update(exponentformat="e")
    t.layout.coloraxis.colorbar.update(exponentformat="e")
    pio.templates[TEMPLATE_NAME] = t


_register_template()


def layer_color(index: int) -> str:
    """Colour of layer ``index``, identical across all views and runs."""
    return LAYER_PALETTE[int(index) % len(LAYER_PALETTE)]


def run_color(index: int) -> str:
    """Colour of the ``index``-th run (compare page, reports): 8 distinct Okabe–Ito colours."""
    return RUN_PALETTE[int(index) % len(RUN_PALETTE)]


def style(fig: go.Figure, title: str = "", *, height: int | None = None,
          xlabel: str | None = None, ylabel: str | None = None,
          legend: bool = True) -> go.Figure:
    """Apply the paper-friendly white theme in place and return ``fig``.

    Args:
        fig: the figure to restyle.
        title: figure title (left aligned).
        height: pixel height; the width follows the container (and ``EXPORT_WIDTH`` on export).
        xlabel: x-axis title, if any.
        ylabel: y-axis title, if any.
        legend: whether to show the legend.
    """
    fig.update_layout(
        template=TEMPLATE_NAME,
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        showlegend=legend,
    )
    if height:
        fig.update_layout(height=height)
    if xlabel is not None:
        fig.update_xaxes(title_text=xlabel)
    if ylabel is not None:
        fig.update_yaxes(title_text=ylabel)
    return fig


def empty_figure(message: str, height: int = 200) -> go.Figure:
    """A blank figure carrying a centred message (no data, loading, errors)."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper",
                       showarrow=False, font={"size": 14, "color": "#666"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return style(fig, height=height, legend=False)


def add_time_marker(fig: go.Figure, x: float | None, **kw) -> go.Figure:
    """Draw a dashed vertical line at iteration ``x`` (the slider position).

    Always the figure's first shape (hidden when ``x`` is None), so that the browser's player
    can move it (``Plotly.relayout`` of ``shapes[0]``) instead of the server re-sending it.
    """
    fig.add_vline(x=float(x or 0), line={"color": MARKER_COLOR, "dash": "dot", "width": 1},
                  visible=x is not None, **kw)
    return fig
