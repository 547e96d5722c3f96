"""Training vs validation LCA per layer (a run made with ``--val-lca``): which layers lower the
training loss but raise the validation loss — the paper's proposed use of LCA for spotting
overfitting (Section 6; reviewer 1's question).

``lca_layer`` and ``lca_val_layer`` (T, L) are the allocations of the training-set and the
validation-set loss changes along the same steps; both are exact per iteration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lcaviz.bundle import RunBundle


def train_val_layers(bundle: RunBundle, t0: int = 0, t1: int | None = None
                     ) -> pd.DataFrame | None:
    """Per layer, over iterations ``[t0, t1)``: the LCA of the training loss and of the
    validation loss, and whether the layer helps one and hurts the other.

    Returns:
        Columns ``layer, name, size, train, val`` (sums of LCA; negative = lowered that loss),
        ``helps_train_hurts_val`` (train < 0 < val: the overfitting signal) and
        ``hurts_train_helps_val`` (val < 0 < train); None without ``--val-lca``.
    """
    val = bundle.lca_val_layer()
    if val is None:
        return None
    train = bundle.lca_layer()
    t1 = bundle.n_iters if t1 is None else min(t1, bundle.n_iters)
    tr, va = train[t0:t1].sum(0), val[t0:t1].sum(0)  # (L,)
    return pd.DataFrame({
        "layer": np.arange(bundle.n_layers), "name": bundle.layer_names,
        "size": bundle.layer_sizes, "train": tr, "val": va,
        "helps_train_hurts_val": (tr < 0) & (va > 0),
        "hurts_train_helps_val": (va < 0) & (tr > 0),
    })


def train_val_curves(bundle: RunBundle) -> tuple[np.ndarray, np.ndarray] | None:
    """Cumulative training and validation LCA per layer after each iteration, ``(train (T, L),
    val (T, L))``; None without ``--val-lca``."""
    val = bundle.lca_val_layer()
    if val is None:
        return None
    return np.cumsum(bundle.lca_layer(), axis=0), np.cumsum(val, axis=0)
