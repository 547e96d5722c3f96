"""Per-parameter LCA heatmap of one layer (paper Fig. 2).

The work is split in three pure steps so that callbacks, caches and tests can share them:

1. :func:`plan_layer` decides, from tensor shapes only, how each tensor is drawn (image or
   strip, block size, zoom region). The plan is a list of small JSON-able dicts, so it can be
   stored in the browser and used to map a click back to a parameter (:func:`click_to_param`).
2. :func:`panel_values` turns one tensor's flat values into what is drawn (exact block sums).
3. :func:`layer_heatmap` builds the figure from those arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lcaviz.figures.image_axes import add_grid, axis_names, has_grid, image_ticks
from lcaviz.figures.layout2d import (
    block_sum,
    choose_blocks,
    clip_region,
    flat_index,
    image_shape,
    pixel_to_index,
    symmetric_limit,
    tensor_image,
)
from lcaviz.figures.theme import DIVERGING, style

MAX_CELLS = 250_000  # cells of one heatmap image: keeps a frame < 300 ms and ~1 MB on the wire
FULL_RES_CAP = 4_000_000  # "full resolution" still block-sums beyond this
STRIP_MAX = 2_048  # cells of a 1-D strip
HOVER_INDEX_MAX = 80_000  # conv images up to this many cells carry (o, i, kh, kw) for hover


@dataclass
class TensorFrame:
    """One tensor's values in the current frame."""

    name: str
    shape: tuple[int, ...]
    values: np.ndarray  # flat LCA values, tensor order
    weights: np.ndarray | None = None  # flat θ_t, when the bundle has a trajectory


def plan_layer(tensors: Sequence[tuple[str, tuple[int, ...]]], *, max_cells: int = MAX_CELLS,
               full_resolution: bool = False,
               region: tuple[int, int, int, int] | None = None) -> list[dict]:
    """Decide how each tensor of a layer is drawn.

    Args:
        tensors: ``(name, shape)`` of each tensor in the layer, in bundle order.
        max_cells: cell budget of one image (block sums beyond it).
        full_resolution: raise the budget to ``FULL_RES_CAP``.
        region: ``(r0, r1, c0, c1)`` zoom region (full-resolution pixels) of the first image.

    Returns:
        One dict per tensor: ``name, shape, kind ('image'|'strip'), r0, c0, nrows, ncols`` (of
        the shown part, in full-resolution pixels) and the block size ``by, bx``.
    """
    budget = FULL_RES_CAP if full_resolution else max_cells
    plan, first_image = [], True
    for name, shape in tensors:
        shape = tuple(int(s) for s in shape)
        nrows, ncols = image_shape(shape)
        kind = "image" if len(shape) >= 2 else "strip"
        r0 = c0 = 0
        if kind == "image" and first_image:
            first_image = False
            if region is not None:
                r0, r1, c0, c1 = clip_region(region, nrows, ncols)
                nrows, ncols = r1 - r0, c1 - c0
        if kind == "image":
            by, bx = choose_blocks(nrows, ncols, budget)
        else:
            by, bx = 1, choose_blocks(1, ncols, STRIP_MAX if not full_resolution else budget)[1]
        plan.append({"name": name, "shape": list(shape), "kind": kind, "r0": r0, "c0": c0,
                     "nrows": nrows, "ncols": ncols, "by": by, "bx": bx})
    return plan


def panel_values(item: dict, values: np.ndarray) -> np.ndarray:
    """What one plan item shows for flat tensor ``values``: the cropped, block-summed image."""
    img = tensor_image(values, tuple(item["shape"]))
    img = img[item["r0"]:item["r0"] + item["nrows"], item["c0"]:item["c0"] + item["ncols"]]
    return block_sum(img, item["by"], item["bx"])


def downsample_label(plan: Sequence[dict]) -> str:
    """Title suffix such as ``"block sums 4×4"`` (empty at full resolution)."""
    blocks = {(p["by"], p["bx"]) for p in plan if p["kind"] == "image" and (p["by"], p["bx"])
              != (1, 1)}
    if not blocks:
        return ""
    return "block sums " + ", ".join(f"{by}×{bx}" for by, bx in sorted(blocks))


def layer_heatmap(frames: Sequence[TensorFrame], plan: Sequence[dict], *,
                  zmax: float | None = None, title: str = "",
                  percentile: float = 99.5, colorscale=None, range_note: str = "") -> go.Figure:
    """Build the heatmap figure of one layer frame.

    Args:
        frames: one :class:`TensorFrame` per plan item (same order).
        plan: from :func:`plan_layer`.
        zmax: symmetric colour limit (fixed over the run); None = this frame's
            ``percentile`` of |shown values|.
        title: figure title; the block-sum note is appended automatically.
        percentile: for the per-frame limit.
        colorscale: the diverging scale (:data:`lcaviz.figures.theme.PALETTES`; default
            green / red).
        range_note: what the colour range is (under the colour bar's title).

    Returns:
        A figure with one heatmap per tensor sharing one symmetric diverging colour axis.
    """
    shown = [panel_values(p, f.values) for p, f in zip(plan, frames, strict=True)]
    if zmax is None or not zmax > 0:
        zmax = symmetric_limit(np.concatenate([s.ravel() for s in shown]), percentile)
    heights = _row_heights(plan)
    fig = make_subplots(rows=len(plan), cols=1, row_heights=heights,
                        vertical_spacing=0.1 if len(plan) > 1 else 0.02)
    for k, (p, f, z) in enumerate(zip(plan, frames, shown, strict=True), start=1):
        fig.add_trace(_heat_trace(p, f, z), row=k, col=1)
        if p["kind"] == "image":
            names = p.get("axis_titles") or axis_names(p["shape"])
            fig.update_yaxes(autorange="reversed", row=k, col=1, title_text=names[0])
            image_ticks(fig, p, k)
            fig.update_xaxes(row=k, col=1, title_text=names[1], title_standoff=4)
            add_grid(fig, p, row=k)
        else:
            fig.update_yaxes(showticklabels=False, ticks="", row=k, col=1,
                             title_text=p["name"].rsplit(".", 1)[-1], title_font_size=11)
    note = downsample_label(plan)
    full_title = f"{title} <span style='font-size:12px;color:#666'>({note})</span>" if note \
        else title
    style(fig, full_title, height=int(460 + 70 * sum(p["kind"] == "strip" for p in plan)),
          legend=False)
    bar_title = "LCA" + (f"<br><sup>{range_note}</sup>" if range_note else "")
    fig.update_layout(coloraxis={"colorscale": colorscale or DIVERGING, "cmin": -zmax,
                                 "cmax": zmax, "cmid": 0.0,
                                 "colorbar": {"title": {"text": bar_title}, "thickness": 14}},
                      meta={"zmax": zmax})
    fig.update_xaxes(showgrid=False, zeroline=False, mirror=True)
    fig.update_yaxes(showgrid=False, zeroline=False, mirror=True)
    return fig


def _row_heights(plan: Sequence[dict]) -> list[float]:
    n_strips = sum(p["kind"] == "strip" for p in plan)
    n_images = len(plan) - n_strips
    strip_h = 0.08 if n_images else 1.0 / max(1, n_strips)
    image_h = (1.0 - strip_h * n_strips) / n_images if n_images else 0.0
    return [image_h if p["kind"] == "image" else strip_h for p in plan]


def _heat_trace(p: dict, f: TensorFrame, z: np.ndarray) -> go.Heatmap:
    """Heatmap whose x/y are full-resolution pixel coordinates (cell = block centre)."""
    by, bx = p["by"], p["bx"]
    trace = dict(z=z.astype(np.float32), coloraxis="coloraxis", name=p["name"],
                 x0=p["c0"] + (bx - 1) / 2, dx=bx, y0=p["r0"] + (by - 1) / 2, dy=by,
                 hoverongaps=False)
    name, shape = p["name"], tuple(p["shape"])
    if (by, bx) != (1, 1):
        trace["hovertemplate"] = (f"{name}<br>block of {by}×{bx} around row %{{y:.0f}}, "
                                  f"col %{{x:.0f}}<br>LCA (block sum) %{{z:.4g}}<extra></extra>")
        return go.Heatmap(**trace)
    w_img = None
    if f.weights is not None:
        w_img = tensor_image(f.weights, shape)[p["r0"]:p["r0"] + p["nrows"],
                                               p["c0"]:p["c0"] + p["ncols"]]
    w_txt = "<br>weight %{customdata:.4g}" if w_img is not None else ""
    if len(shape) == 4 and z.size <= HOVER_INDEX_MAX:
        trace["customdata"], idx_txt = _conv_customdata(p, w_img)
        w_txt = "<br>weight %{customdata[4]:.4g}" if w_img is not None else ""
    elif len(shape) <= 1:
        idx_txt = "[%{x}]"
        trace["customdata"] = w_img
    elif len(shape) == 2:
        idx_txt = "[%{y}, %{x}]"
        trace["customdata"] = w_img
    else:
        idx_txt = " image row %{y}, col %{x}"
        trace["customdata"] = w_img
    trace["hovertemplate"] = f"{name}{idx_txt}<br>LCA %{{z:.4g}}{w_txt}<extra></extra>"
    return go.Heatmap(**trace)


def _conv_customdata(p: dict, w_img: np.ndarray | None) -> tuple[np.ndarray, str]:
    """(rows, cols, 4 or 5) array of (o, i, kh, kw[, weight]) for an exact conv hover."""
    o, i, kh, kw = p["shape"]
    rows = np.arange(p["r0"], p["r0"] + p["nrows"])
    cols = np.arange(p["c0"], p["c0"] + p["ncols"])
    oo, aa = np.divmod(rows, kh)
    ii, bb = np.divmod(cols, kw)
    n = 5 if w_img is not None else 4
    cd = np.empty((len(rows), len(cols), n), np.float32)
    cd[..., 0], cd[..., 2] = oo[:, None], aa[:, None]
    cd[..., 1], cd[..., 3] = ii[None, :], bb[None, :]
    if w_img is not None:
        cd[..., 4] = w_img
    return cd, "[%{customdata[0]}, %{customdata[1]}, %{customdata[2]}, %{customdata[3]}]"


def click_to_param(plan: Sequence[dict], offsets: Sequence[int], click: dict | None
                   ) -> dict | None:
    """Map Plotly ``clickData`` on the heatmap back to one parameter.

    Args:
        plan: the plan the clicked figure was drawn with.
        offsets: flat column offset of each plan tensor in the bundle.
        click: Dash ``clickData``.

    Returns:
        ``{"tensor", "index" (tuple), "flat" (global parameter index), "block"}`` or None. For
        a block-summed cell the parameter at the block centre is returned (``block`` True).
    """
    if not click or not click.get("points"):
        return None
    pt = click["points"][0]
    x, y = pt.get("x"), pt.get("y")
    if x is None or y is None:
        return None
    k = _trace_to_plan(plan, int(pt.get("curveNumber", 0)))
    if k is None:
        return None
    p = plan[k]
    shape = tuple(p["shape"])
    nrows, ncols = image_shape(shape)
    row = 0 if p["kind"] == "strip" else int(round(float(y)))
    col = int(round(float(x)))
    row, col = min(max(row, 0), nrows - 1), min(max(col, 0), ncols - 1)
    index = pixel_to_index(shape, row, col)
    return {"tensor": p["name"], "index": list(index),
            "flat": int(offsets[k]) + flat_index(shape, index),
            "block": (p["by"], p["bx"]) != (1, 1)}


def _trace_to_plan(plan: Sequence[dict], curve: int) -> int | None:
    """Trace number -> plan index (grid-line traces sit right after their image)."""
    k = 0
    for i, p in enumerate(plan):
        if k == curve:
            return i
        k += 1
        if p["kind"] == "image" and has_grid(p):
            if k == curve:
                return i
            k += 1
    return None
