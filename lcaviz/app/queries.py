"""Bundle reads the dashboard needs, shaped for the figure functions and cached.

Only the slices on screen are read: one layer's row (or cumulative / window sum) per frame, one
parameter's column for the drill-down, per-iteration series that are O(T·L). Results are
memoised in :class:`lcaviz.app.state.AppState` under keys that include the file stamp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lcaviz.app.state import AppState
from lcaviz.figures.heatmap import TensorFrame, panel_values, plan_layer
from lcaviz.figures.layout2d import symmetric_limit

MODES = ("row", "cumulative", "window")
RANGE_SAMPLES = 8


@dataclass(frozen=True)
class Tensor:
    """One parameter tensor of a layer."""

    name: str
    shape: tuple[int, ...]
    offset: int
    size: int


def run_meta(b) -> dict:
    """JSON-able summary of a bundle for the page (names, sizes, flags, config)."""
    cfg = b.config
    return {
        "layers": list(b.layer_names), "layer_sizes": [int(s) for s in b.layer_sizes],
        "classes": list(b.class_names), "rows": b.row_schedule.spec, "T": int(b.n_iters),
        "R": int(b.n_rows), "P": int(b.n_params), "status": b.status,
        # columns with per-parameter rows (all P unless --lca-layers): what a scan streams
        "row_cols": int(b.n_row_cols),
        "status_reason": b.status_reason, "method": b.method,
        "warnings": list(b.warnings),  # recorded at close, e.g. a residual over 1 % of ΔL
        "has_trajectory": bool(b.has_trajectory), "has_val": bool(b.has_val),
        "has_class_layer": bool(b.has_class_layer),
        "has_groups": bool(b.has_groups),
        "net": str(cfg.get("net", "")), "dataset": str(cfg.get("dataset", "")),
        "optimizer": str(cfg.get("optimizer", "")), "lr": cfg.get("lr"),
        # cheaper LCA (docs/approximations.md): None / 1 for runs of the whole training set
        "allocated_loss": b.allocated_loss, "lca_every": int(b.lca_every),
        "n_allocated": int(len(b.lca_iters())) if b.lca_every > 1 else int(b.n_iters),
    }

def subtitle(meta: dict) -> str:
    """``"mnist_fc · mnist · sgd · rk4 · 300 iterations · 84,060 parameters · rows
    dense:220,10 · complete"``; a subset run says which loss it allocates ("loss on 5,000 of
    55,000 training examples") and a ``--lca-every`` run which iterations it allocated."""
    parts = [meta["net"], meta["dataset"], meta["optimizer"], meta["method"],
             f"{meta['T']:,} iterations", f"{meta['P']:,} parameters",
             f"rows {meta['rows']}", meta["status"]]
    if meta.get("allocated_loss"):
        parts.insert(4, meta["allocated_loss"])
    if (every := meta.get("lca_every") or 1) > 1:
        parts.insert(5 if meta.get("allocated_loss") else 4,
                     f"LCA of one iteration in {every} ({meta.get('n_allocated', 0):,} allocated)")
    if meta.get("status_reason"):
        parts.append(meta["status_reason"])
    return " · ".join(str(p) for p in parts if p not in (None, ""))


def layer_tensors(b, layer: int) -> list[Tensor]:
    """Tensors of ``layer`` in bundle order."""
    df = b.params
    df = df[df["layer"] == int(layer)]
    return [Tensor(str(r.name), tuple(int(s) for s in r.shape), int(r.offset), int(r.size))
            for r in df.itertuples(index=False)]


def rows_for(b, r: int, mode: str, window: int) -> tuple[int, int]:
    """Half-open range of lca rows summed by a frame at slider row ``r``."""
    r = int(min(max(r, 0), max(b.n_rows - 1, 0)))
    if mode == "cumulative":
        return 0, r + 1
    if mode == "window":
        return max(0, r - max(1, int(window)) + 1), r + 1
    return r, r + 1


def iterations_of_rows(b, r0: int, r1: int) -> tuple[int, int]:
    """Iterations ``[start, end)`` covered by rows ``r0:r1`` (their windows, any schedule)."""
    if b.n_rows == 0 or r1 <= r0:
        return 0, 0
    return b.iteration_of_row(r0)[0], b.iteration_of_row(r1 - 1)[1]


def _layer_values(b, layer: int, r: int, mode: str, window: int) -> np.ndarray:
    """The layer's flat LCA values for one frame (float64 for sums)."""
    cols = b.layer_columns(layer)
    if b.n_rows == 0:
        return np.zeros(int(b.layer_sizes[layer]), np.float32)
    r0, r1 = rows_for(b, r, mode, window)
    if mode == "cumulative":
        return b.cumulative(r1 - 1, cols)
    if r1 - r0 == 1:
        return b.row(r0, cols)
    return b.window_sum(r0, r1, cols)


def layer_frame(state: AppState, key: tuple, b, layer: int, r: int, mode: str,
                window: int) -> np.ndarray:
    """Cached :func:`_layer_values`; a sum whose neighbour frame is cached is updated
    incrementally (one or two row reads), which keeps playback in cumulative / window mode
    as cheap as in row mode."""
    r0, r1 = rows_for(b, r, mode, window)
    fkey = ("frame", key, layer)
    hit = state.arrays.get((*fkey, r0, r1))
    if hit is not None:
        return hit
    cols = b.layer_columns(layer)
    value = None
    if r1 - r0 > 1:
        prev = state.arrays.get((*fkey, r0, r1 - 1))  # same start, one row shorter
        if prev is not None:
            value = np.add(prev, b.row(r1 - 1, cols), dtype=np.float64)
        elif r0 > 0 and (prev := state.arrays.get((*fkey, r0 - 1, r1 - 1))) is not None:
            value = np.add(prev, b.row(r1 - 1, cols), dtype=np.float64)
            value -= b.row(r0 - 1, cols)
    if value is None:
        value = _layer_values(b, layer, r, mode, window)
    state.arrays.put((*fkey, r0, r1), value)
    return value


def layer_weights(b, layer: int, r: int) -> np.ndarray | None:
    """θ at the end of row ``r`` for the layer's columns, if the bundle has a trajectory."""
    if not b.has_trajectory:
        return None
    t = b.iteration_of_row(int(r))[1]
    return b.trajectory_row(t, b.layer_columns(layer))


def split_frames(tensors: list[Tensor], plan: list[dict], values: np.ndarray,
                 weights: np.ndarray | None) -> list[TensorFrame]:
    """Cut the layer's flat values into per-tensor frames in plan order."""
    base = tensors[0].offset if tensors else 0
    by_name = {t.name: t for t in tensors}
    out = []
    for p in plan:
        t = by_name[p["name"]]
        sl = slice(t.offset - base, t.offset - base + t.size)
        out.append(TensorFrame(t.name, t.shape, values[sl],
                               None if weights is None else weights[sl]))
    return out


def make_plan(tensors: list[Tensor], *, full_resolution: bool, region) -> list[dict]:
    """Heatmap plan with each item's global column offset attached (for clicks)."""
    plan = plan_layer([(t.name, t.shape) for t in tensors], full_resolution=full_resolution,
                      region=tuple(region) if region else None)
    offsets = {t.name: t.offset for t in tensors}
    for p in plan:
        p["offset"] = offsets[p["name"]]
    # images first, so that the main image always owns the first x/y axes
    return sorted(plan, key=lambda p: p["kind"] != "image")


def fixed_limit(state: AppState, key: tuple, b, layer: int, plan: list[dict],
                tensors: list[Tensor], mode: str, window: int,
                per_iteration: bool = False) -> float:
    """Colour limit fixed over the run: high percentile of |shown values| over sampled frames.

    Sampling the frames as they are drawn (same block sums, same mode) keeps the limit
    meaningful for block sums and cumulative totals alike; ``per_iteration`` (row mode) divides
    each row by the iterations it sums, as the compare page draws window rows.
    """
    per_iteration = bool(per_iteration) and mode == "row"
    sig = tuple((p["name"], p["r0"], p["c0"], p["nrows"], p["ncols"], p["by"], p["bx"])
                for p in plan)

    def compute() -> float:
        R = b.n_rows
        if R == 0:
            return 1.0
        rows = np.unique(np.linspace(0, R - 1, min(R, RANGE_SAMPLES)).round().astype(int))
        shown = []
        for r in rows:
            vals = _layer_values(b, layer, int(r), mode, window)
            if per_iteration:
                a, e = b.iteration_of_row(int(r))
                vals = np.asarray(vals, np.float64) / max(e - a, 1)
            for p, f in zip(plan, split_frames(tensors, plan, vals, None), strict=True):
                z = panel_values(p, f.values).ravel()
                shown.append(z[:: max(1, z.size // 50_000)])
        return symmetric_limit(np.concatenate(shown), 99.5)

    return state.cached(("limit", key, layer, sig, mode, int(window), per_iteration), compute)


def range_plan(b, layer: int, plan: list[dict], zoom) -> list[dict]:
    """The plan a "fixed over run" colour range is computed on: the whole layer, not the zoom
    region (zooming must not change a range fixed over the run), at the zoom's resolution
    (single parameters when the zoomed view shows them, else the layer's block sums)."""
    if not zoom:
        return plan
    single = all(p["by"] == 1 and p["bx"] == 1 for p in plan)
    return make_plan(layer_tensors(b, layer), full_resolution=single, region=None)


def manual_range(value) -> float | None:
    """A typed colour range ± value, or None when it is not a positive finite number."""
    try:
        v = abs(float(value))
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def param_label(tensor: str, index) -> str:
    """``"fc1.weight[3, 17]"``."""
    return f"{tensor}[{', '.join(str(int(i)) for i in index)}]" if len(index) else tensor


def series(state: AppState, key: tuple, b, name: str):
    """Cached per-iteration series by accessor name (``loss_train``, ``lca_layer`` ...)."""
    return state.cached(("series", key, name), lambda: getattr(b, name)())


def human_size(n: float) -> str:
    """``1.2 MB``-style size."""
    if n <= 0:
        return "0 B"
    k = min(int(math.log(n, 1024)), 4)
    return f"{n / 1024 ** k:.1f} {['B', 'KB', 'MB', 'GB', 'TB'][k]}"
