"""Heatmap frames for the browser's player, as compact binary over one Flask route.

The run page asks the server once per layer / frame mode / resolution / zoom for a *stream*
(:func:`stream_descriptor`: the drawing plan, the rows' iterations, the colour range), and then
fetches frames in blocks of rows from ``/lcaviz/frames`` (:func:`frame_block`). Each frame is
what the heatmap shows: every plan item's image (cropped to the zoom region, exact block sums
where the layer is too large) in plan order, flattened row-major, float32. The browser caches
frames and repaints the heatmap itself, so scrubbing and playing never wait for Python.

Response body: ``uint32 n`` (little endian), ``n`` bytes of JSON header, then
``(r1 - r0) * n_cells`` float32 values (little endian). The header holds ``r0, r1, n_cells``,
``totals`` (the layer's exact LCA of each frame, from the per-iteration float64 aggregates) and,
if asked for, ``zmax`` (each frame's 99.5th percentile of |shown values|).
"""

from __future__ import annotations

import json
import math
import threading

import numpy as np
from flask import Response, request

from lcaviz.app.jobs import trim_heap
from lcaviz.app.queries import layer_tensors, make_plan, rows_for
from lcaviz.app.security import RunPathError
from lcaviz.app.state import AppState
from lcaviz.bundle import BundleError
from lcaviz.figures.layout2d import symmetric_limit, tensor_images

ROUTE = "/lcaviz/frames"
MAX_BLOCK_BYTES = 8 * 2**20  # one response at most (the browser asks for fewer rows)
# what one request may read and hold (float64 rows of the whole layer, before downsampling):
# a 4 M-parameter layer is then read one row per request, not 50 rows (1.6 GB)
READ_BUDGET_BYTES = 32 * 2**20
# frame requests computed at once (others wait their turn): with the read budget this bounds
# their transient memory to about 3 x 32 MiB x 2, whatever the number of tabs
FRAME_WORKERS = threading.BoundedSemaphore(2)
MODES = ("row", "cumulative", "window")


def plan_items(b, layer: int, resolution: str, zoom) -> list[dict]:
    """The drawing plan of a layer, each item with its shown grid size ``ny × nx``."""
    plan = make_plan(layer_tensors(b, layer), full_resolution=resolution == "full",
                     region=zoom)
    for p in plan:
        p["ny"], p["nx"] = -(-p["nrows"] // p["by"]), -(-p["ncols"] // p["bx"])
    return plan


def stream_descriptor(state: AppState, run_id: str, layer: int, mode: str, window: int,
                      range_mode: str, resolution: str, zoom) -> dict:
    """Everything the browser needs to fetch and draw this layer's frames (JSON-able)."""
    b, key = state.open(run_id)
    with b.held():  # one state of a live run throughout
        return _descriptor(state, b, key, run_id, layer, mode, window, range_mode, resolution,
                           zoom)


def _descriptor(state: AppState, b, key, run_id: str, layer: int, mode: str, window: int,
                range_mode: str, resolution: str, zoom) -> dict:
    from lcaviz.app.queries import fixed_limit, range_plan

    if not 0 <= layer < b.n_layers:
        raise IndexError(f"this run has no layer {layer} (it has {b.n_layers})")
    plan = plan_items(b, layer, resolution, zoom)
    n_cells = int(sum(p["ny"] * p["nx"] for p in plan))
    zmax = None
    if range_mode == "fixed" and b.n_rows and b.has_rows(layer):  # else: no frames to range
        zmax = fixed_limit(state, key, b, layer, range_plan(b, layer, plan, zoom),
                           layer_tensors(b, layer), mode, window)
    region = ",".join(str(int(v)) for v in zoom) if zoom else ""
    query = (f"run={_quote(run_id)}&layer={layer}&mode={mode}&window={window}"
             f"&res={resolution}&region={region}")
    return {
        # rows of a live run never change once written: the key outlives its flushes
        "key": f"{run_id}|{b.created}|{layer}|{mode}|{window}|{resolution}|{region}",
        "url": f"{ROUTE}?{query}", "run": run_id, "layer": layer,
        "layer_name": b.layer_names[layer],
        "layer_size": int(b.layer_sizes[layer]), "mode": mode, "window": int(window),
        "R": int(b.n_rows), "T": int(b.n_iters), "starts": b.row_windows[:, 0].tolist(),
        "items": plan, "n_cells": n_cells, "zmax": zmax, "range_mode": range_mode,
        "has_rows": bool(b.has_rows(layer)), "status": b.status,
    }


def frame_block(b, layer: int, plan: list[dict], mode: str, window: int, r0: int, r1: int,
                percentile: bool = False) -> tuple[dict, np.ndarray]:
    """Frames of rows ``r0:r1``: ``(header, values (r1 - r0, n_cells) float32)``."""
    cols = b.layer_columns(layer)
    n = r1 - r0
    if n <= 0 or r0 < 0 or r1 > b.n_rows:
        raise ValueError(f"rows {r0}:{r1} are not in this run ({b.n_rows} rows)")
    if mode == "row":
        vals = b.rows(r0, r1, cols).astype(np.float64)  # (n, size)
    elif mode == "cumulative":
        vals = _cumulative(b, cols, r0, r1)
    else:
        w = max(1, int(window))
        vals = _cumulative(b, cols, r0, r1) - _cumulative(b, cols, r0 - w, r1 - w)
    shown = [_panel_rows(p, vals[:, _item_columns(cols, p)]) for p in plan]
    out = np.concatenate([s.reshape(n, -1) for s in shown], axis=1).astype(np.float32)
    header = {"r0": r0, "r1": r1, "n_cells": int(out.shape[1]), "layer": int(layer),
              "totals": _totals(b, layer, mode, window, r0, r1)}
    if percentile:
        header["zmax"] = [symmetric_limit(out[k], 99.5) for k in range(n)]
    return header, out


def _item_columns(cols, p: dict) -> slice:
    """Where plan item ``p``'s tensor sits among the layer's columns ``cols``."""
    size = int(math.prod(p["shape"])) if p["shape"] else 1
    start = p["offset"] - cols.start if isinstance(cols, slice) else int(
        np.searchsorted(np.asarray(cols), p["offset"]))
    return slice(start, start + size)


def _cumulative(b, cols, r0: int, r1: int) -> np.ndarray:
    """C(r) = Σ rows 0..r for r in [r0, r1), (n, size) float64; C(r) = 0 for r < 0."""
    n = r1 - r0
    size = len(range(*cols.indices(b.n_params))) if isinstance(cols, slice) else len(cols)
    out = np.zeros((n, size), np.float64)
    lo = max(r0, 0)
    if lo >= r1:
        return out
    base = b.cumulative(lo - 1, cols) if lo > 0 else np.zeros(size, np.float64)
    run = np.cumsum(b.rows(lo, r1, cols), axis=0, dtype=np.float64) + base
    out[lo - r0:] = run
    return out


def _panel_rows(p: dict, values: np.ndarray) -> np.ndarray:
    """:func:`lcaviz.figures.heatmap.panel_values` for many rows at once: (n, ny, nx)."""
    n = values.shape[0]
    img = tensor_images(values, tuple(p["shape"]))
    img = img[:, p["r0"]:p["r0"] + p["nrows"], p["c0"]:p["c0"] + p["ncols"]]
    by, bx, ny, nx = p["by"], p["bx"], p["ny"], p["nx"]
    if (by, bx) == (1, 1):
        return img
    padded = np.zeros((n, ny * by, nx * bx), np.float64)
    padded[:, :p["nrows"], :p["ncols"]] = img
    return padded.reshape(n, ny, by, nx, bx).sum(axis=(2, 4))


def _totals(b, layer: int, mode: str, window: int, r0: int, r1: int) -> list[float]:
    """The layer's exact LCA of each frame, from the per-iteration float64 ``lca_layer``."""
    per_t = b.lca_layer()[:, layer]  # (T,)
    cum = np.concatenate([[0.0], np.cumsum(per_t)])  # cum[t] = Σ iterations < t
    out = []
    for r in range(r0, r1):
        a, e = rows_for(b, r, mode, window)
        t0, _ = b.iteration_of_row(a)
        _, t1 = b.iteration_of_row(e - 1)
        out.append(float(cum[t1] - cum[t0]))
    return out


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


def _answer(b, q) -> tuple[dict, np.ndarray]:
    """The frames a request ``q`` (query arguments) asks for, at most one bounded block."""
    layer = int(q.get("layer", 0))
    if not 0 <= layer < b.n_layers:
        raise ValueError(f"no layer {layer}")
    mode = q.get("mode", "row")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    region = [int(v) for v in q.get("region", "").split(",") if v != ""] or None
    if region is not None and len(region) != 4:
        raise ValueError("region needs r0,r1,c0,c1")
    plan = plan_items(b, layer, q.get("res", "auto"), region)
    cells = sum(p["ny"] * p["nx"] for p in plan)
    r0 = max(0, int(q.get("r0", 0)))
    most = max(1, min(MAX_BLOCK_BYTES // max(4 * cells, 1),
                      READ_BUDGET_BYTES // max(8 * int(b.layer_sizes[layer]), 1)))
    r1 = min(int(q.get("r1", r0 + 1)), b.n_rows, r0 + most)
    if r1 <= r0:
        raise ValueError(f"rows {r0}:{r1} are not in this run ({b.n_rows} rows)")
    return frame_block(b, layer, plan, mode, int(q.get("window", 1)), r0, r1,
                       percentile=q.get("pct") == "1")


def register_route(server, state: AppState) -> None:
    """``GET /lcaviz/frames?run=&layer=&mode=&window=&res=&region=&r0=&r1=&pct=``."""

    def frames() -> Response:
        q = request.args
        try:
            b, _ = state.open(q.get("run", ""))
            with FRAME_WORKERS, b.held():  # no refresh between counting and reading rows
                header, values = _answer(b, q)
                read = (header["r1"] - header["r0"]) * int(b.layer_sizes[header["layer"]]) * 8
            if read > READ_BUDGET_BYTES // 4:  # glibc keeps big freed blocks: give them back
                trim_heap()
        except (RunPathError, ValueError) as e:
            return Response(str(e), status=400, mimetype="text/plain")
        except (BundleError, OSError) as e:
            return Response(f"cannot read this run: {e}", status=404, mimetype="text/plain")
        head = json.dumps(header).encode()
        body = len(head).to_bytes(4, "little") + head + values.astype("<f4").tobytes()
        return Response(body, mimetype="application/octet-stream",
                        headers={"Cache-Control": "no-store"})

    server.add_url_rule(ROUTE, "lcaviz_frames", frames)
