"""Per-layer LCA totals and whether a layer hurts overall (paper Section 4, Fig. 4).

Uses ``lca_layer`` (T, L), exact for every iteration. A positive total means the layer moved,
on balance, against the training-set gradient ("hurts"). For a run made with ``--lca-every K``
the totals and running totals are exact sums over the allocated iterations only (the others
count 0: nothing is made up for them), i.e. about 1/K of the loss change; rescaling them is
an estimate, which :mod:`lcaviz.analysis.calibration` labels as one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from lcaviz.bundle import RunBundle


def cumulative_layer_lca(bundle: RunBundle, per_param: bool = False) -> np.ndarray:
    """Running total of each layer's LCA after iterations 0..t, (T, L) float64 (over the
    allocated iterations, for ``--lca-every`` runs).

    Args:
        bundle: an open bundle.
        per_param: divide by the layer's number of parameters.
    """
    cum = np.cumsum(bundle.lca_layer(), axis=0)  # (T, L)
    return cum / np.maximum(bundle.layer_sizes, 1) if per_param else cum


def layer_totals(bundle: RunBundle) -> pd.DataFrame:
    """LCA summed over training, per layer.

    Columns: ``layer, name, size, total`` (Σ_t lca_layer), ``per_param`` (total / size),
    ``share`` (total / Σ over layers), ``hurts`` (total > 0).
    """
    total = bundle.lca_layer().sum(axis=0)  # (L,)
    sizes = bundle.layer_sizes
    grand = total.sum()
    return pd.DataFrame({
        "layer": np.arange(len(sizes)), "name": bundle.layer_names, "size": sizes,
        "total": total, "per_param": total / np.maximum(sizes, 1),
        "share": total / grand if grand != 0 else np.full(len(sizes), np.nan),
        "hurts": total > 0,
    })


def _open_all(runs: Sequence[RunBundle | str | Path]) -> tuple[list[RunBundle], list[RunBundle]]:
    opened, bundles = [], []
    for r in runs:
        if isinstance(r, RunBundle):
            bundles.append(r)
        else:
            b = RunBundle.open(r)
            opened.append(b)
            bundles.append(b)
    return bundles, opened


def compare_runs(runs: Sequence[RunBundle | str | Path], *, per_param: bool = False,
                 alpha: float = 0.05) -> pd.DataFrame:
    """Across repeated runs: mean, std and a one-sample t-test against 0 of each layer's total.

    Args:
        runs: bundles or paths (paths are opened and closed here); all must have the same
            layer names.
        per_param: test totals divided by layer size.
        alpha: significance level of the ``verdict`` column.

    Returns:
        One row per layer: ``name, n_runs, mean, std, t, p`` (two-sided) and ``verdict``:
        ``"hurts"`` / ``"helps"`` when p < alpha, else ``"n.s."``, and ``text``, e.g.
        ``"fc3 hurts, p = 3.2e-05"``.
    """
    bundles, opened = _open_all(runs)
    try:
        if not bundles:
            raise ValueError("compare_runs needs at least one run")
        names = bundles[0].layer_names
        for b in bundles[1:]:
            if b.layer_names != names:
                raise ValueError(f"{b.path}: layers {b.layer_names} differ from {names}")
        col = "per_param" if per_param else "total"
        totals = np.stack([layer_totals(b)[col].to_numpy() for b in bundles])  # (runs, L)
    finally:
        for b in opened:
            b.close()
    n = totals.shape[0]
    mean = totals.mean(axis=0)
    std = totals.std(axis=0, ddof=1) if n > 1 else np.full(len(names), np.nan)
    if n > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            res = stats.ttest_1samp(totals, 0.0, axis=0)
        t, p = np.asarray(res.statistic, float), np.asarray(res.pvalue, float)
    else:
        t = p = np.full(len(names), np.nan)
    verdict = np.where(~(p < alpha), "n.s.", np.where(mean > 0, "hurts", "helps"))
    text = [f"{nm} {v}, p = {pv:.2g}" if not math.isnan(pv) else f"{nm}: one run, no test"
            for nm, v, pv in zip(names, verdict, p, strict=True)]
    return pd.DataFrame({"layer": np.arange(len(names)), "name": names, "n_runs": n,
                         "mean": mean, "std": std, "t": t, "p": p, "verdict": verdict,
                         "text": text})
