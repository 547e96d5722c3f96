"""Which training examples a layer helped or hurt (per-example LCA, issue 24; numpy only).

The bundle's ``lca_example`` (R, N_e, L) holds, per row window r, tracked example n and layer
l, the part of the allocated loss change that falls on ℓ_n: summed over the examples it is the
layer's LCA, summed over the layers and rows it is ``(ℓ_n(θ_T) − ℓ_n(θ_0)) / N``. Negative
values lowered the example's loss (the layer *helped* it), positive values raised it.

Everything here works on plain arrays, so the dashboard, the reports and the tests share it:

* :func:`parse_scope` / :func:`scope_columns`: what the "examples of" menu selects — one layer,
  all layers (their sum), or a group whose per-example columns the caller supplies;
* :func:`scope_values`: the selected columns summed, float64;
* :func:`top_k`: the k examples helped most (most negative) and hurt most (most positive);
* :func:`top_examples`: both for a block of rows, in each row and cumulatively up to it;
* :func:`class_histogram`: counts per class on shared bins (the histogram coloured by class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALL = "all"
MAX_K = 64  # the dashboard shows at most this many per list


@dataclass(frozen=True)
class TopK:
    """The k examples helped most and hurt most by one set of values.

    ``helped`` / ``hurt`` are positions into the tracked examples (0..N_e-1), most helped
    (most negative value) / most hurt (most positive) first; ``helped_values`` /
    ``hurt_values`` their values. An example with value 0 is in neither list, so a list can
    be shorter than k.
    """

    helped: np.ndarray
    helped_values: np.ndarray
    hurt: np.ndarray
    hurt_values: np.ndarray

    def as_dict(self) -> dict:
        """JSON-able lists (for the browser)."""
        return {"helped": self.helped.tolist(), "helped_values": self.helped_values.tolist(),
                "hurt": self.hurt.tolist(), "hurt_values": self.hurt_values.tolist()}


def parse_scope(scope: str | None, n_layers: int,
                groups: Sequence[str] = ()) -> tuple[str, int | str | None]:
    """``"all"``, ``"layer:I"`` or ``"group:NAME"`` → ``(kind, which)``.

    Raises:
        ValueError: a layer index outside the run, a group the run does not have, or any other
            text (the scope comes from the browser).
    """
    if scope in (None, "", ALL):
        return ALL, None
    kind, _, which = str(scope).partition(":")
    if kind == "layer" and which.lstrip("-").isdigit():
        i = int(which)
        if not 0 <= i < n_layers:
            raise ValueError(f"this run has no layer {i} (it has {n_layers})")
        return "layer", i
    if kind == "group" and which in groups:
        return "group", which
    # not echoed: the scope comes from the browser
    raise ValueError("unknown examples scope (expected 'all', 'layer:I' or 'group:NAME')")


def scope_columns(scope: str | None, n_layers: int,
                  group_columns: Mapping[str, Sequence[int]] | None = None) -> list[int]:
    """The columns of the per-example L axis that ``scope`` sums.

    Args:
        scope: ``"all"``, ``"layer:I"`` or ``"group:NAME"``.
        n_layers: L.
        group_columns: for runs whose per-example values have columns per group, the columns
            of each group name; None when they do not (a group scope is then refused).
    """
    groups = group_columns or {}
    kind, which = parse_scope(scope, n_layers, tuple(groups))
    if kind == ALL:
        return list(range(n_layers))
    if kind == "layer":
        return [int(which)]
    return [int(c) for c in groups[str(which)]]


def scope_values(values: np.ndarray, cols: Sequence[int]) -> np.ndarray:
    """``values[..., cols].sum(-1)`` in float64 (one column: no copy beyond the cast)."""
    v = np.asarray(values)
    if len(cols) == 1:
        return v[..., int(cols[0])].astype(np.float64)
    return v[..., list(cols)].sum(axis=-1, dtype=np.float64)


def top_k(values: np.ndarray, k: int) -> TopK:
    """The ``k`` most negative (helped) and ``k`` most positive (hurt) of ``values`` (N_e,).

    Ties keep the lower position first, so the answer is a pure function of the values. NaN
    (an example whose row was not written) is in neither list.
    """
    v = np.asarray(values, np.float64).ravel()
    k = max(0, min(int(k), v.size))
    order = np.lexsort((np.arange(v.size), np.where(np.isnan(v), np.inf, v)))
    neg = order[:k]
    neg = neg[v[neg] < 0]
    order_hi = np.lexsort((np.arange(v.size), np.where(np.isnan(v), np.inf, -v)))
    pos = order_hi[:k]
    pos = pos[v[pos] > 0]
    return TopK(neg.astype(np.int64), v[neg], pos.astype(np.int64), v[pos])


def _fast_top_k(values: np.ndarray, k: int) -> TopK:
    """:func:`top_k` through ``argpartition`` for large N_e (same answer)."""
    v = np.asarray(values, np.float64).ravel()
    if v.size <= 4 * max(k, 1) or k <= 0:
        return top_k(v, k)
    clean = np.where(np.isnan(v), 0.0, v)
    lo = np.argpartition(clean, k)[:k + 1]
    hi = np.argpartition(-clean, k)[:k + 1]
    # ties at the k-th value may reach beyond the partition: take every candidate that ties
    lo = np.union1d(lo, np.flatnonzero(clean <= clean[lo].max()))
    hi = np.union1d(hi, np.flatnonzero(clean >= clean[hi].min()))
    sub_lo, sub_hi = top_k(v[lo], k), top_k(v[hi], k)
    return TopK(lo[sub_lo.helped], sub_lo.helped_values, hi[sub_hi.hurt], sub_hi.hurt_values)


def top_examples(rows: np.ndarray, cols: Sequence[int], k: int,
                 before: np.ndarray | None = None) -> list[dict[str, TopK]]:
    """Top-k helped / hurt examples of each row of a block, in the row and cumulatively.

    Args:
        rows: (R', N_e, L) per-example LCA of consecutive rows r0..r0+R'-1.
        cols: the L columns the scope sums (:func:`scope_columns`).
        k: list length (at most :data:`MAX_K`).
        before: (N_e, L) Σ of every row before r0 (the reader's cumulative up to r0 − 1);
            None or zeros when r0 = 0.

    Returns:
        One ``{"row": TopK, "cumulative": TopK}`` per row.
    """
    k = max(1, min(int(k), MAX_K))
    vals = scope_values(rows, cols)  # (R', N_e)
    base = np.zeros(vals.shape[1]) if before is None else scope_values(before, cols)
    cum = np.cumsum(vals, axis=0) + base
    return [{"row": _fast_top_k(vals[i], k), "cumulative": _fast_top_k(cum[i], k)}
            for i in range(vals.shape[0])]


def top_k_rows(values: np.ndarray, k: int) -> list[TopK]:
    """:func:`top_k` of every row of ``values`` (R', N_e) (e.g. window sums of a scope)."""
    k = max(1, min(int(k), MAX_K))
    return [_fast_top_k(v, k) for v in np.asarray(values, np.float64)]


def window_values(rows: np.ndarray, before: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """Sums over the last W rows of consecutive rows r0..r0+R'−1, (R', N_e) float64.

    Args:
        rows: (R', N_e) scope values of rows r0..r0+R'−1.
        before: (N_e,) Σ of every row before r0.
        earlier: (R', N_e) Σ of rows 0..r−W for each row r of the block (zeros where
            r − W < 0: the window starts at row 0).
    """
    cum = np.cumsum(np.asarray(rows, np.float64), axis=0) + np.asarray(before, np.float64)
    return cum - np.asarray(earlier, np.float64)


def histogram_edges(values: np.ndarray, bins: int = 40) -> np.ndarray:
    """``bins + 1`` edges over the finite range of ``values``, symmetric about 0 so that the
    bin boundary at 0 separates helped from hurt examples."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    m = float(np.abs(v).max()) if v.size else 0.0
    m = m if m > 0 else 1.0
    bins = max(2, int(bins) + int(bins) % 2)  # even: 0 is an edge
    return np.linspace(-m, m, bins + 1)


def class_histogram(values: np.ndarray, labels: np.ndarray | None, n_classes: int,
                    edges: np.ndarray) -> np.ndarray:
    """Counts (C, B) of ``values`` (N_e,) per class on ``edges`` (B + 1,).

    ``labels`` None (targets that are not classes) gives one row. Labels outside
    0..n_classes−1 are counted in an extra last row ("other"), never dropped.
    """
    v = np.asarray(values, np.float64).ravel()
    edges = np.asarray(edges, np.float64)
    b = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    ok = np.isfinite(v)
    if labels is None:
        return np.bincount(b[ok], minlength=len(edges) - 1)[None, :].astype(np.int64)
    y = np.asarray(labels, np.int64).ravel()
    c = n_classes + (1 if np.any((y < 0) | (y >= n_classes)) else 0)
    y = np.where((y >= 0) & (y < n_classes), y, n_classes)
    flat = y[ok] * (len(edges) - 1) + b[ok]
    return np.bincount(flat, minlength=c * (len(edges) - 1)).reshape(c, -1).astype(np.int64)


def example_curves(rows: np.ndarray) -> dict[str, np.ndarray]:
    """One example's per-layer LCA over rows (R, L): per row and cumulative, and their sum
    over layers (float64)."""
    r = np.asarray(rows, np.float64)
    cum = np.cumsum(np.nan_to_num(r), axis=0)
    return {"row": r, "cumulative": cum, "total": cum.sum(axis=1)}
