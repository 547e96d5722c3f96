"""What the reader works out when a bundle lacks an optional dataset (a bundle written by
another program from docs/bundle-format.md's core table: JAX, TensorFlow, plain h5py).

* From one row per iteration of every parameter (``lca_rows`` windows of one iteration, all
  columns), one streaming pass gives exactly what ``lca-run`` stores: ``lca_layer``,
  ``help_count``, ``hurt_count``, ``param_help_iters``, ``param_nonzero_iters`` and
  ``lca_residual`` (ΔL − ΣA). Without such rows they cannot be derived, and asking for them
  raises a :class:`~lcaviz.bundle.errors.CorruptBundleError` that says so.
* Series nobody can derive read as "not recorded": ``loss/minibatch``, ``accuracy/train`` and
  ``timing/seconds`` as NaN, ``splits`` as -1.
* ``lca_cumsum`` is not needed: cumulative sums then add the rows themselves.

Derived arrays are cached on the bundle handle until it is refreshed.
"""

from __future__ import annotations

import numpy as np

from lcaviz.bundle.errors import CorruptBundleError

FROM_ROWS = ("lca_layer", "help_count", "hurt_count", "param_help_iters",
             "param_nonzero_iters", "lca_residual")
NOT_RECORDED = {"loss/minibatch": np.nan, "accuracy/train": np.nan, "timing/seconds": np.nan,
                "splits": -1}


def derive(bundle, name: str, n: int) -> np.ndarray | None:
    """The missing dataset ``name`` of ``bundle``, cut to ``n`` entries (None: not derivable
    because nothing stands for it; the caller treats it as absent)."""
    if name in NOT_RECORDED:
        fill = NOT_RECORDED[name]
        return np.full(n, fill, np.float64 if isinstance(fill, float) else np.int32)
    if name not in FROM_ROWS:
        return None
    cache = bundle._derived
    if name not in cache:
        cache.update(_from_rows(bundle))
    return cache[name][:n]


def _from_rows(b) -> dict[str, np.ndarray]:
    """Everything of :data:`FROM_ROWS` in one pass over per-iteration rows of all parameters."""
    T, R, P, L = b.n_iters, b.n_rows, b.n_params, b.n_layers
    w = b.row_windows
    per_iteration = R == T and (R == 0 or bool(np.all(w[:, 1] - w[:, 0] == 1)))
    if not per_iteration or b.n_row_cols != P:
        raise CorruptBundleError(
            f"{b.path}: the bundle has no lca_layer / help and hurt counts and they cannot be "
            "derived: that needs one lca row per iteration for every parameter (lca_rows "
            "windows of one iteration, lca_columns covering all parameters); write them "
            "(docs/bundle-format.md) or store per-iteration rows")
    col_layer = b.column_layers()  # (P,)
    out = {"lca_layer": np.zeros((T, L)), "help_count": np.zeros((T, L), np.int32),
           "hurt_count": np.zeros((T, L), np.int32),
           "param_help_iters": np.zeros(P, np.int32),
           "param_nonzero_iters": np.zeros(P, np.int32)}
    for r0, block in b.iter_row_blocks():  # (rows, P) float32
        rows = slice(r0, r0 + len(block))
        for li in range(L):
            cols = col_layer == li
            part = block[:, cols]
            out["lca_layer"][rows, li] = part.sum(1, dtype=np.float64)
            out["help_count"][rows, li] = (part < 0).sum(1)
            out["hurt_count"][rows, li] = (part > 0).sum(1)
        out["param_help_iters"] += (block < 0).sum(0, dtype=np.int32)
        out["param_nonzero_iters"] += (block != 0).sum(0, dtype=np.int32)
    loss = b.loss_train()
    out["lca_residual"] = np.diff(loss)[:T] - out["lca_layer"].sum(1)
    return out
