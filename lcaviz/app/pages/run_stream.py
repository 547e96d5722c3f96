"""What the run page's heatmap stream says beyond its frames: a layer stored without
per-parameter rows (its per-layer curve and a plain note instead of an error), and the head
(named group) the heatmap is zoomed to (its name, size and exact LCA per frame, and axis titles
that name head, d_model and d_head)."""

from __future__ import annotations

import numpy as np

from lcaviz.app.pages import run_groups
from lcaviz.app.queries import series
from lcaviz.app.state import AppState
from lcaviz.figures import curves
from lcaviz.figures.theme import empty_figure


def no_rows_note(b, layer: int) -> str:
    """Why a layer has no heatmap, and the flag that would have stored its rows."""
    name = b.layer_names[layer]
    stored = b.config.get("lca_layers") if isinstance(b.config, dict) else None
    if isinstance(stored, list | tuple) and stored:
        made = f"the run was made with --lca-layers {','.join(str(s) for s in stored)}"
    elif isinstance(stored, list | tuple):
        made = "the run was made with --lca-layers none"
    else:
        made = "the run stored rows for other layers only"
    return (f"Per-parameter LCA of {name} was not stored ({made}); to store it, run again "
            f"with its name in --lca-layers (or without --lca-layers). Its per-layer LCA is "
            "exact and shown here, and in the bars and curves below.")


def no_rows_stream(state: AppState, key, b, layer: int, stream: dict) -> dict:
    """Turn the stream of a layer without rows into its per-layer curve with a plain note."""
    name = b.layer_names[layer]
    stream["note"] = no_rows_note(b, layer)
    stream["items"], stream["n_cells"] = [], 0
    if b.n_iters:
        lca = np.asarray(series(state, key, b, "lca_layer"), np.float64)[:, [layer]]
        fig = curves.layer_curves_figure(np.nan_to_num(lca), [name], cumulative=True,
                                         title=f"{name}: cumulative LCA of the layer (per-"
                                               "parameter rows not stored)")
    else:
        fig = empty_figure("No iterations yet.")
    fig.update_layout(showlegend=False, height=360)
    stream["figure"] = fig.to_plotly_json()
    return stream


def _short(group: str) -> str:
    return group.rsplit(".", 1)[-1]


def head_axis_names(shape, zoomed_to: str | None = None) -> tuple[str, str] | None:
    """Axis titles of a stack of heads ``(heads, a, b)``: d_model is the axis that equals
    heads × the other (q/k/v ``(heads, d_model, d_head)``, o ``(heads, d_head, d_model)``);
    None when the shape says neither."""
    if len(shape) != 3:
        return None
    h, a, c = (int(s) for s in shape)
    if a == h * c:
        rows, per = "d_model", "d_head"
    elif c == h * a:
        rows, per = "d_head", "d_model"
    else:
        rows, per = "axis 1", "axis 2"
    if zoomed_to:
        return rows, f"{per} of {zoomed_to}"
    return rows, f"head (one block each) × {per}"


def mark_heads(state: AppState, run_id: str, layer: int, plan: list[dict],
               zoom, group: str | None) -> str | None:
    """Where the layer's groups are heads of its main 3-d tensor, put head axis titles on that
    plan item (``axis_titles``); returns the group the view shows (its zoom is the group's
    rectangle), else None."""
    regions = run_groups._regions(state, run_id, layer)  # noqa: SLF001 - same package
    if not regions:
        return None
    shown = group if group and regions.get(group) == (list(zoom) if zoom else None) else None
    for p in plan:
        if p.get("kind") == "image" and len(p["shape"]) == 3:
            names = head_axis_names(p["shape"], _short(shown) if shown else None)
            if names:
                p["axis_titles"] = list(names)
            break
    return shown


def group_totals(state: AppState, key, b, group: str, mode: str, window: int) -> list[float]:
    """The group's exact LCA of every frame (rows of ``mode``), from ``lca_group``."""
    g = b.group_names.index(group)
    per_t = np.nan_to_num(np.asarray(series(state, key, b, "lca_group"), np.float64)[:, g])
    cum = np.concatenate([[0.0], np.cumsum(per_t)])
    w = np.asarray(b.row_windows, np.int64)
    if not len(w):
        return []
    r = np.arange(len(w))
    first = {"cumulative": np.zeros_like(r),
             "window": np.maximum(0, r - max(1, int(window)) + 1)}.get(mode, r)
    t0 = np.minimum(w[first, 0], len(per_t))
    t1 = np.minimum(w[:, 1], len(per_t))
    return (cum[t1] - cum[t0]).tolist()


def add_group(state: AppState, key, b, stream: dict, group: str, mode: str,
              window: int) -> dict:
    """Name the head the stream shows and give its size and exact per-frame LCA."""
    g = b.group_names.index(group)
    stream["group"] = group
    stream["group_label"] = _short(group)
    stream["group_size"] = int(b.group_sizes[g])
    stream["group_totals"] = group_totals(state, key, b, group, mode, window)
    return stream
