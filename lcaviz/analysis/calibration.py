"""How a cheaper run's LCA compares with the full training loss it stands for
(``lca-run --full-loss-every K`` with ``--lca-data`` or ``--lca-every``; docs/approximations.md).

At each θ_t where the full training loss was evaluated (t = 0, K, 2K, ... and T):

* ``full_change`` = L_full(θ_t) − L_full(θ_0): what exact LCA would allocate up to t;
* ``lca_total`` = Σ_{s<t} Σ_l A[s, l]: the run's cumulative LCA (per layer: ``layer_cum``);
* ``allocated_change``: the change of the loss the run allocates, Σ_{s<t} ΔL_s (its own steps,
  so ``lca_total`` differs from it only by the conservation residual);
* ``gap`` = lca_total − full_change and ``rel_gap`` = gap / |full_change|.

A ``--lca-every K`` run allocates only the steps 0, K, 2K, ...: its cumulative LCA covers about
1/K of the training. ``lca_total_scaled`` = lca_total × (t / allocated steps before t) is an
*extrapolation* to all steps (and ``scale`` the factor used); it is reported beside the data,
never in place of it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lcaviz.bundle import RunBundle


def calibration(bundle: RunBundle) -> pd.DataFrame | None:
    """One row per full-loss evaluation (columns in the module docstring, plus ``iteration``,
    ``full_loss``, ``full_accuracy``, ``n_allocated``); None without ``--full-loss-every``.

    The per-layer cumulative LCA is in the columns ``layer:<name>``.
    """
    full = bundle.full_loss()
    if full is None:
        return None
    its = full["iters"]  # θ_t indices, 0 ≤ t ≤ T
    cum = np.concatenate([np.zeros((1, bundle.n_layers)),
                          np.cumsum(bundle.lca_layer(), axis=0)])  # (T + 1, L): Σ_{s<t}
    dL = np.nan_to_num(bundle.loss_change(), nan=0.0)
    cum_dL = np.concatenate([[0.0], np.cumsum(dL)])
    n_alloc = np.concatenate([[0], np.cumsum(bundle.allocated())])  # allocated steps < t
    lca_total = cum[its].sum(axis=1)
    full_change = full["loss"] - full["loss"][0] if len(its) else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(n_alloc[its] > 0, its / np.maximum(n_alloc[its], 1), np.nan)
        rel = np.where(full_change != 0, (lca_total - full_change) / np.abs(full_change),
                       np.nan)
    df = pd.DataFrame({
        "iteration": its, "full_loss": full["loss"], "full_accuracy": full["accuracy"],
        "full_change": full_change, "allocated_change": cum_dL[its], "lca_total": lca_total,
        "gap": lca_total - full_change, "rel_gap": rel, "n_allocated": n_alloc[its],
        "scale": scale, "lca_total_scaled": lca_total * scale})
    for li, name in enumerate(bundle.layer_names):
        df[f"layer:{name}"] = cum[its, li]
    return df


def calibration_summary(bundle: RunBundle) -> dict | None:
    """The last row of :func:`calibration` as a dict (the gap at the last full-loss point,
    normally θ_T), with ``allocated_loss`` and ``lca_every``; None without the full loss."""
    df = calibration(bundle)
    if df is None or not len(df):
        return None
    last = df.iloc[-1]
    return {"iteration": int(last.iteration), "full_change": float(last.full_change),
            "lca_total": float(last.lca_total), "gap": float(last.gap),
            "rel_gap": float(last.rel_gap), "lca_total_scaled": float(last.lca_total_scaled),
            "allocated_loss": bundle.allocated_loss, "lca_every": bundle.lca_every,
            "n_points": int(len(df))}
