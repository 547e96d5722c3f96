"""How many parameters help, hurt or do nothing (paper Section 3, Table 1, Fig. 3a, c, d).

All per-iteration figures come from ``help_count`` / ``hurt_count``, which the engine records
for every iteration, so they are exact whatever the per-parameter stride.

Definitions: a parameter *helps* at iteration t if A[t, i] < 0, *hurts* if A[t, i] > 0.
``pct_help`` is the paper's Table 1 quantity: helped / (helped + hurt), i.e. among parameters
with nonzero LCA, averaged over iterations (iterations where every LCA is zero are skipped).

Runs made with ``--lca-every K`` allocated only some iterations (``RunBundle.allocated``): the
others have no LCA, so their percentages are NaN and every average is over the allocated ones.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from lcaviz.bundle import RunBundle


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def help_series(bundle: RunBundle) -> pd.DataFrame:
    """Per-iteration counts and percentages (Fig. 3a), one row per iteration t.

    Columns: ``helped, hurt, zero`` (counts over all layers); ``pct_help, pct_hurt`` (of the
    nonzero, in %); ``frac_help, frac_hurt, frac_zero`` (of all P parameters, in %);
    ``allocated`` (False for iterations a ``--lca-every`` run skipped: counts 0, % NaN).
    """
    helped = bundle.help_count().sum(axis=1).astype(np.int64)  # (T,)
    hurt = bundle.hurt_count().sum(axis=1).astype(np.int64)  # (T,)
    mask = bundle.allocated()[: len(helped)]
    P = bundle.n_params
    zero = np.where(mask, P - helped - hurt, 0)
    nonzero = helped + hurt
    gap = np.where(mask, 1.0, np.nan)  # no LCA, no percentage (never a made-up 0)
    return pd.DataFrame({
        "iteration": np.arange(len(helped)), "helped": helped, "hurt": hurt, "zero": zero,
        "pct_help": 100 * _ratio(helped, nonzero) * gap,
        "pct_hurt": 100 * _ratio(hurt, nonzero) * gap,
        "frac_help": 100 * helped / max(P, 1) * gap, "frac_hurt": 100 * hurt / max(P, 1) * gap,
        "frac_zero": 100 * zero / max(P, 1) * gap, "allocated": mask,
    })


def overall_helping(bundle: RunBundle) -> dict:
    """Run-level percentages.

    Returns:
        ``pct_help`` (Table 1: mean over iterations of helped / nonzero, %), ``pct_hurt``,
        ``pct_help_pooled`` (Σ helped / Σ nonzero over all iterations, %), ``pct_zero`` (mean
        over iterations of the share of all parameters with zero LCA, %), ``n_iters`` (the
        allocated iterations these average over).
    """
    s = help_series(bundle)
    s = s[s.allocated]
    if len(s) == 0:
        nan = math.nan
        return {"pct_help": nan, "pct_hurt": nan, "pct_help_pooled": nan, "pct_zero": nan,
                "n_iters": 0}
    nonzero = int(s.helped.sum() + s.hurt.sum())
    return {
        "pct_help": float(np.nanmean(s.pct_help)) if s.pct_help.notna().any() else math.nan,
        "pct_hurt": float(np.nanmean(s.pct_hurt)) if s.pct_hurt.notna().any() else math.nan,
        "pct_help_pooled": 100 * float(s.helped.sum()) / nonzero if nonzero else math.nan,
        "pct_zero": float(s.frac_zero.mean()), "n_iters": int(len(s)),
    }


def layer_helping(bundle: RunBundle) -> pd.DataFrame:
    """Per-layer percentages (Fig. 3c), averaged over iterations as in :func:`overall_helping`.

    Columns: ``layer, name, size, pct_help, pct_hurt, pct_zero``.
    """
    mask = bundle.allocated()
    helped = bundle.help_count().astype(np.int64)[mask]  # (T_alloc, L)
    hurt = bundle.hurt_count().astype(np.int64)[mask]
    nonzero = helped + hurt
    sizes = bundle.layer_sizes  # (L,)
    pct_help = 100 * _ratio(helped, nonzero)  # (T, L)
    pct_hurt = 100 * _ratio(hurt, nonzero)
    with warnings.catch_warnings():  # all-zero layers and T = 0 give NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_help = np.nanmean(pct_help, axis=0)
        mean_hurt = np.nanmean(pct_hurt, axis=0)
        zero = 100 * (1 - nonzero / np.maximum(sizes, 1)).mean(axis=0)
    return pd.DataFrame({"layer": np.arange(len(sizes)), "name": bundle.layer_names,
                         "size": sizes, "pct_help": mean_help, "pct_hurt": mean_hurt,
                         "pct_zero": zero})


def param_help_fraction(bundle: RunBundle, layer: int | str | None = None,
                        denominator: str = "nonzero") -> np.ndarray:
    """Per parameter, the fraction of iterations in which it helped (Fig. 3d), in [0, 1].

    Args:
        bundle: an open bundle.
        layer: restrict to one layer.
        denominator: ``"nonzero"`` (iterations with nonzero LCA; parameters that never had
            any are left out) or ``"all"`` (all allocated iterations: T unless
            ``--lca-every``).

    Returns:
        (n,) float64. Counters are as of the writer's last flush (final once complete).
    """
    cols = slice(None) if layer is None else bundle.layer_columns(layer)
    helped = bundle.param_help_iters()[cols].astype(np.float64)
    if denominator == "all":
        return helped / max(len(bundle.lca_iters()), 1)
    nonzero = bundle.param_nonzero_iters()[cols]
    keep = nonzero > 0
    return helped[keep] / nonzero[keep]


def param_help_histogram(bundle: RunBundle, bins: int = 20, layer: int | str | None = None,
                         denominator: str = "nonzero") -> tuple[np.ndarray, np.ndarray]:
    """Histogram of :func:`param_help_fraction` over [0, 1]: ``(counts (bins,), edges)``."""
    frac = param_help_fraction(bundle, layer, denominator)
    return np.histogram(frac, bins=bins, range=(0.0, 1.0))

