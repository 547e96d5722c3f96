"""The reviewers' causal test of "helping" from a bundle made with ``--counterfactual-every``
(issue 15.3; the losses themselves come from :mod:`compute.lca.counterfactual`).

At each sampled iteration t the bundle holds the full-loss change of the actual step and of
three partial steps (only the coordinates that helped, A_i < 0; only those that hurt,
A_i > 0; only the zero-LCA ones), each beside the sum of their LCA. If the sign of LCA means
what it says, the helping coordinates alone lower the loss and the hurting ones alone raise
it. The loss is not additive over coordinates, so the parts' changes need not add up to the
actual ΔL: ``interaction`` = ΔL − (ΔL_help + ΔL_hurt + ΔL_zero) is what the allocation spreads
over the step, and ``ratio_*`` = ΔL_part / Σ LCA_part says how well each part's LCA predicts
its own loss change on its own (1 = exactly).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lcaviz.bundle import RunBundle


def counterfactual_table(bundle: RunBundle) -> pd.DataFrame | None:
    """One row per sampled iteration, or None for a run without the test.

    Columns: ``iteration``, ``dL`` and ``lca`` (the actual step), ``dL_help``, ``lca_help``,
    ``dL_hurt``, ``lca_hurt``, ``dL_zero``, ``interaction`` (ΔL minus the three parts'
    ΔL), ``ratio_help`` and ``ratio_hurt`` (ΔL_part / Σ LCA_part).
    """
    if not bundle.has_counterfactual:
        return None
    its, v = bundle.counterfactual()  # (M,), (M, 4, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.DataFrame({
            "iteration": its, "dL": v[:, 0, 0], "lca": v[:, 0, 1],
            "dL_help": v[:, 1, 0], "lca_help": v[:, 1, 1],
            "dL_hurt": v[:, 2, 0], "lca_hurt": v[:, 2, 1], "dL_zero": v[:, 3, 0],
            "interaction": v[:, 0, 0] - v[:, 1:, 0].sum(axis=1),
            "ratio_help": v[:, 1, 0] / v[:, 1, 1], "ratio_hurt": v[:, 2, 0] / v[:, 2, 1],
        })


def counterfactual_summary(bundle: RunBundle) -> dict | None:
    """What the test says over the run, or None without it.

    Keys: ``n`` (sampled iterations), ``pct_help_lowers`` (% with ΔL_help < 0),
    ``pct_hurt_raises`` (% with ΔL_hurt > 0), ``median_ratio_help``, ``median_ratio_hurt``,
    ``median_help_over_dL`` (ΔL_help / ΔL: how much more than the whole step the helping
    coordinates alone lower the loss), ``median_abs_interaction`` (|interaction| / |ΔL|).
    """
    df = counterfactual_table(bundle)
    if df is None or not len(df):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "n": len(df),
            "pct_help_lowers": 100 * float((df.dL_help < 0).mean()),
            "pct_hurt_raises": 100 * float((df.dL_hurt > 0).mean()),
            "median_ratio_help": float(np.nanmedian(df.ratio_help)),
            "median_ratio_hurt": float(np.nanmedian(df.ratio_hurt)),
            "median_help_over_dL": float(np.nanmedian(df.dL_help / df.dL)),
            "median_abs_interaction": float(np.nanmedian(np.abs(df.interaction / df.dL))),
        }
