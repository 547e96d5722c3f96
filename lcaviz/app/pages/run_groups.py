"""The heatmap's "head / part" menu: a named group (a transformer's attention head) shown by
zooming the layer's image to the group's rectangle (runs with ``params/groups``).

A group qualifies when its parameters in the layer's main tensor fill a rectangle of that
tensor's image (a head of a stacked ``(heads, d_model, d_head)`` weight is one d_model × d_head
block of it); other groups are left to the bars and curves, which show every group.
"""

from __future__ import annotations

import numpy as np

from lcaviz.app.queries import layer_tensors
from lcaviz.app.state import AppState
from lcaviz.figures.layout2d import tensor_image

WHOLE = {"label": "whole layer", "value": ""}


def group_regions(b, layer: int) -> dict[str, list[int]]:
    """``{group name: [r0, r1, c0, c1]}`` for the groups of ``layer`` that fill a rectangle of
    its main image (the layer's first tensor with two or more axes); empty without groups."""
    if not b.has_groups:
        return {}
    names, layer_of = b.group_names, b.group_layer
    mine = [g for g in range(len(names)) if int(layer_of[g]) == int(layer)]
    main = next((t for t in layer_tensors(b, layer) if len(t.shape) >= 2), None)
    if main is None or len(mine) < 2:  # one group is the whole layer: nothing to choose
        return {}
    image = tensor_image(np.arange(main.size), main.shape)  # flat index of every pixel
    out = {}
    for g in mine:
        cols = b.group_columns(g) - main.offset
        cols = cols[(cols >= 0) & (cols < main.size)]
        if not cols.size:
            continue
        rr, cc = np.nonzero(np.isin(image, cols))
        r0, r1, c0, c1 = int(rr.min()), int(rr.max()) + 1, int(cc.min()), int(cc.max()) + 1
        if (r1 - r0) * (c1 - c0) == cols.size:  # the pixels fill their bounding box
            out[names[g]] = [r0, r1, c0, c1]
    return out


def group_options(state: AppState, run_id, meta, layer) -> list[dict]:
    """Options of the menu for the selected layer ("whole layer" first)."""
    if not run_id or not meta or not meta.get("has_groups") or layer is None:
        return [WHOLE]
    b, _ = state.open(run_id)
    prefix = f"{b.layer_names[int(layer)]}."  # "q.head0" where one layer fuses q, k and v
    return [WHOLE] + [{"label": n[len(prefix):] if n.startswith(prefix) else n.rsplit(".", 1)[-1],
                       "value": n} for n in _regions(state, run_id, int(layer))]


def group_zoom(state: AppState, run_id, layer, name) -> list[int] | None:
    """The zoom region of the chosen group (None: the whole layer)."""
    if not name or not run_id or layer is None:
        return None
    return _regions(state, run_id, int(layer)).get(name)


def _regions(state: AppState, run_id, layer: int) -> dict[str, list[int]]:
    """:func:`group_regions`, once per bundle and layer (a live run's page asks every second)."""
    b, key = state.open(run_id)
    return state.cached(("group_regions", key, layer), lambda: group_regions(b, layer))
