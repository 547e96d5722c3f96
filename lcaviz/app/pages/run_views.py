"""Figure builders of the run page: ``(state, Controls) -> go.Figure``.

The same builders serve the live callbacks, the PNG/SVG/PDF/CSV exports and the HTML report, so
an exported figure is exactly what is on screen. Each builder reads only what it draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import plotly.graph_objects as go

from lcaviz.analysis import helping
from lcaviz.analysis.calibration import calibration
from lcaviz.analysis.generalization import train_val_curves, train_val_layers
from lcaviz.analysis.lca_error import error_table, rule_errors
from lcaviz.app.queries import (
    fixed_limit,
    iterations_of_rows,
    layer_frame,
    layer_tensors,
    layer_weights,
    make_plan,
    manual_range,
    range_plan,
    rows_for,
    series,
    split_frames,
)
from lcaviz.app.state import AppState
from lcaviz.figures import curves
from lcaviz.figures import helping as fhelp
from lcaviz.figures.calibration import calibrate_loss_figure
from lcaviz.figures.heatmap import downsample_label, layer_heatmap
from lcaviz.figures.lca_error import lca_error_figure, table_s1_figure
from lcaviz.figures.theme import diverging, empty_figure
from lcaviz.figures.train_val import train_val_figure

MODE_LABEL = {"row": "LCA at", "cumulative": "Cumulative LCA,", "window": "Window sum,"}


@dataclass
class Controls:
    """Everything the run page's controls say (defaults = the page's initial state)."""

    run_id: str = ""
    row: int = 0
    mode: str = "row"
    window: int = 10
    layer: int = 0
    range_mode: str = "fixed"  # or "frame", or "manual" (± range_value)
    range_value: float | None = None
    palette: str = "redgreen"
    resolution: str = "auto"
    zoom: list | None = None
    bars_scope: str = "total"
    bars_norm: str = "raw"
    bars_by: str = "layer"  # or "group": named groups (attention heads) where the run has them
    curves_cumulative: bool = False
    loss_log: bool = False
    residual_log: bool = False
    weibull_group: str = "sign"
    sync_class: int = 0
    sync_k: int = 20
    sync_shift: int = 2
    sync_resamples: int = 1000
    drill: dict | None = field(default=None)
    export_size: str = "screen"  # of PNG / SVG / PDF exports (figures.export.EXPORT_SIZES)
    ex_scope: str = "all"  # the Examples section: "all", "layer:I", "group:G", "head:H"
    ex_split: str = "train"  # or "val": its validation examples
    ex_k: int = 8
    ex_hist_mode: str = "row"  # or "cumulative"
    ex_hist_log: bool = False
    ex_selected: dict | None = field(default=None)  # the clicked example {pos, index}

    @classmethod
    def from_dict(cls, d: dict) -> Controls:
        """Build from a (partial, browser-supplied) dict, ignoring unknown keys and Nones."""
        names = {f.name for f in fields(cls)}
        c = cls(**{k: v for k, v in d.items() if k in names and v is not None})
        c.row, c.layer, c.window = int(c.row or 0), int(c.layer or 0), max(1, int(c.window))
        c.sync_class, c.sync_k = int(c.sync_class), max(1, min(int(c.sync_k), 200))
        c.sync_shift = max(1, min(int(c.sync_shift), 50))
        c.sync_resamples = max(10, min(int(c.sync_resamples), 20_000))
        return c


def t_marker(b, c: Controls) -> int:
    """Iteration marked on time axes: the end of the frame's window."""
    r0, r1 = rows_for(b, c.row, c.mode, c.window)
    return iterations_of_rows(b, r0, r1)[1]


def heatmap(state: AppState, c: Controls) -> tuple[go.Figure, list[dict], str]:
    """The per-parameter heatmap of the chosen layer and frame.

    Returns:
        ``(figure, plan, info text)``; the plan maps clicks back to parameters.
    """
    b, key = state.open(c.run_id)
    layer = min(max(c.layer, 0), b.n_layers - 1)
    if b.n_rows == 0:
        return empty_figure("No per-parameter LCA rows written yet."), [], ""
    if not b.has_rows(layer):  # said plainly (exports, the report), as on the page
        from lcaviz.app.pages.run_stream import no_rows_note

        note = no_rows_note(b, layer)
        return empty_figure(note.split(";")[0] + ".", height=200), [], note
    tensors = layer_tensors(b, layer)
    plan = make_plan(tensors, full_resolution=c.resolution == "full", region=c.zoom)
    values = layer_frame(state, key, b, layer, c.row, c.mode, c.window)
    r0, r1 = rows_for(b, c.row, c.mode, c.window)
    weights = layer_weights(b, layer, r1 - 1) if c.mode == "row" else None
    frames = split_frames(tensors, plan, values, weights)
    zmax = None
    if c.range_mode == "fixed":
        zmax = fixed_limit(state, key, b, layer, range_plan(b, layer, plan, c.zoom), tensors,
                           c.mode, c.window)
    elif c.range_mode == "manual" and manual_range(c.range_value):
        zmax = manual_range(c.range_value)
    a, e = iterations_of_rows(b, r0, r1)
    when = f"iteration {a:,}" if e - a == 1 else f"iterations {a:,}–{e - 1:,}"
    title = f"{b.layer_names[layer]} — {MODE_LABEL.get(c.mode, '')} {when}"
    range_note = {"fixed": "fixed over run, 99.5th pct", "manual": "manual range"}.get(
        c.range_mode if zmax else "", "this frame, 99.5th pct")
    fig = layer_heatmap(frames, plan, zmax=zmax, title=title, colorscale=diverging(c.palette),
                        range_note=range_note)
    fig.update_layout(uirevision=f"{c.run_id}|{layer}|{c.zoom}")
    total = float(np.sum(values, dtype=np.float64))
    note = downsample_label(plan)
    info = (f"{int(b.layer_sizes[layer]):,} parameters · layer LCA {total:.4g} · colour range "
            f"±{fig.layout.meta['zmax']:.3g} ({range_note})"
            + (f" · {note}: each cell is the exact sum of its block; zoom in (drag a box) or "
               "choose full resolution for single parameters" if note else ""))
    return fig, plan, info


def _parts(state: AppState, key, b, c: Controls):
    """``(name, (T, K) LCA per part, sizes, names)`` of layers or, where the run stores them
    and the control asks, of its named groups (a transformer's heads): both exact sums."""
    if c.bars_by == "group" and b.has_groups:
        lca = series(state, key, b, "lca_group")
        return "group", lca, b.group_sizes, b.group_names
    return "layer", series(state, key, b, "lca_layer"), b.layer_sizes, b.layer_names


def layer_bars(state: AppState, c: Controls) -> go.Figure:
    """Per-layer (or per-group) LCA totals (whole run, or up to the slider), raw or per
    parameter."""
    b, key = state.open(c.run_id)
    if b.n_iters == 0:
        return empty_figure("No iterations yet.")
    per = c.bars_norm == "per_param"
    part, lca, sizes, names = _parts(state, key, b, c)
    lca = np.nan_to_num(np.asarray(lca, np.float64))  # --lca-every gaps add nothing
    if c.bars_scope == "upto":
        t = max(1, min(t_marker(b, c), len(lca)))
        totals, scope = lca[:t].sum(axis=0), f"up to iteration {t - 1:,}"
    else:
        totals, scope = lca.sum(axis=0), "whole run"
    title = f"LCA per {part}{' per parameter' if per else ''} — {scope}"
    return curves.layer_bars_figure(totals, sizes, names, per_param=per, title=title)


def layer_curves(state: AppState, c: Controls) -> go.Figure:
    b, key = state.open(c.run_id)
    part, lca, _, names = _parts(state, key, b, c)
    title = (("Cumulative LCA" if c.curves_cumulative else "LCA") + f" per {part}"
             + ("" if c.curves_cumulative else " and iteration"))
    return curves.layer_curves_figure(lca, names, cumulative=c.curves_cumulative,
                                      t_marker=t_marker(b, c), title=title)


def loss(state: AppState, c: Controls) -> go.Figure:
    """The losses; a subset or sparse run names its allocated loss and shows the full training
    loss where --full-loss-every evaluated it, with the gap of its cumulative LCA."""
    b, key = state.open(c.run_id)
    fig = curves.loss_figure(series(state, key, b, "loss_train"),
                             loss_val=series(state, key, b, "loss_val"),
                             loss_minibatch=series(state, key, b, "loss_minibatch"),
                             t_marker=t_marker(b, c), log_y=c.loss_log)
    full = state.cached(("calibration", key), lambda: calibration(b))
    return calibrate_loss_figure(fig, full=full, allocated_loss=b.allocated_loss,
                                 gapped=b.is_gapped)


def residual(state: AppState, c: Controls) -> go.Figure:
    b, key = state.open(c.run_id)
    return curves.residual_figure(series(state, key, b, "residual"), log_abs=c.residual_log,
                                  t_marker=t_marker(b, c))


def help_time(state: AppState, c: Controls) -> go.Figure:
    """Fig. 3a from ``help_count`` / ``hurt_count`` (exact for every iteration)."""
    b, key = state.open(c.run_id)
    s = state.cached(("help_series", key), lambda: helping.help_series(b))
    return fhelp.help_hurt_time_figure(s["frac_help"].to_numpy(), s["frac_hurt"].to_numpy(),
                                       s["frac_zero"].to_numpy(),
                                       loss=series(state, key, b, "loss_train"),
                                       t_marker=t_marker(b, c))


def help_layer(state: AppState, c: Controls) -> go.Figure:
    """Fig. 3c: mean % helping (of nonzero) per layer."""
    b, key = state.open(c.run_id)
    df = state.cached(("layer_helping", key), lambda: helping.layer_helping(b))
    return fhelp.help_per_layer_figure(df["pct_help"].to_numpy(), b.layer_names,
                                       title="Average % helping per layer (of nonzero LCA)")


def help_fraction(state: AppState, c: Controls) -> go.Figure:
    """Fig. 3d from the per-parameter counters."""
    b, key = state.open(c.run_id)
    counts, edges = state.cached(("help_frac", key),
                                 lambda: helping.param_help_histogram(b, bins=40))
    fig = fhelp.help_fraction_hist_figure(counts, edges)
    if b.status == "running":
        fig.update_layout(title_text=fig.layout.title.text + " (as of the last counter flush)")
    return fig


def drill(state: AppState, c: Controls) -> go.Figure:
    """One parameter over time (LCA per row, cumulative, weight if a trajectory exists)."""
    if not c.drill:
        return empty_figure("Click a heatmap cell to follow that parameter through training.",
                            height=260)
    b, key = state.open(c.run_id)
    flat = int(c.drill["flat"])
    if not 0 <= flat < b.n_params:
        return empty_figure("Parameter index out of range.", height=260)
    lca = state.cached(("param", key, flat), lambda: b.param_curve(flat))
    w = state.cached(("traj", key, flat), lambda: b.trajectory_param(flat)) \
        if b.has_trajectory else None
    name = c.drill.get("label", f"#{flat}")
    if c.drill.get("block"):
        name += " (centre of the clicked block)"
    errors = None
    if b.has_lca_error and b.has_rows(b.column_layer(flat)):
        its = b.lca_error_iters()
        errors = (its, b.lca_error(cols=flat).astype(np.float64).ravel())
    return curves.param_drill_figure(b.row_windows[:len(lca)], lca, name=name, weights=w,
                                     t_marker=t_marker(b, c), errors=errors)


def lca_error(state: AppState, c: Controls) -> go.Figure:
    """Per layer: how far the stored per-parameter LCA is from 4× the Simpson intervals."""
    b, key = state.open(c.run_id)
    return lca_error_figure(state.cached(("error_table", key), lambda: error_table(b)))


def table_s1(state: AppState, c: Controls) -> go.Figure:
    """The paper's Table S1 from this run: first order vs RK4 against the finer reference."""
    b, key = state.open(c.run_id)
    return table_s1_figure(state.cached(("rule_errors", key), lambda: rule_errors(b)))


def train_val(state: AppState, c: Controls) -> go.Figure:
    """Per layer, the LCA of the training vs the validation loss (runs made with --val-lca)."""
    b, key = state.open(c.run_id)
    table = state.cached(("train_val", key), lambda: train_val_layers(b))
    curves = state.cached(("train_val_curves", key), lambda: train_val_curves(b))
    return train_val_figure(table, curves, source=b.config.get("source"))
