"""How far each layer's per-parameter LCA is from a finer quadrature, and the paper's Table S1
(first order vs RK4), from a bundle made with ``lca-run --lca-error-every K``.

At the error iterations 0, K, 2K, ... the run integrated the step again on 4× the Simpson
intervals (the reference A_ref) and stored, per layer and per rule R (``first_order``,
``trapezoid``, ``rk4``: all from the same step's nodes; ``stored``: what the run stored), the
summaries of ``lca_error_stats`` (docs/bundle-format.md). Over the M error iterations, per layer:

* ``median_rel``: the median over error iterations of each iteration's median, over the
  layer's parameters with A_ref ≠ 0, of |A_R − A_ref| / |A_ref| (medians do not pool, so this
  is a median of medians; NaN for the network row);
* ``pct_flipped``: 100 · Σ flips / Σ parameters with A_ref ≠ 0 (pooled exactly);
* ``rel_l1``: Σ |A_R − A_ref| / Σ |A_ref| (pooled exactly);
* ``sum_rel``: median over error iterations of |Σ_layer A_R − Σ_layer A_ref| / |Σ_layer A_ref|,
  the error of the layer's LCA; for the network row, |ΔL − Σ A_R| / |ΔL| (the conservation
  error of the rule).

The reference is itself a quadrature: ``ref_residual`` (ΔL − Σ A_ref) says how close it is.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lcaviz.bundle import RunBundle

S1_RULES = ("first_order", "rk4")


def _nanmedian(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else math.nan


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, np.abs(a) / np.abs(b), np.nan)


def rule_errors(bundle: RunBundle, rules: tuple[str, ...] | None = None) -> pd.DataFrame | None:
    """Per layer and rule, the error statistics of the module docstring.

    Args:
        bundle: an open bundle; None is returned if it has no error estimates.
        rules: rules to report (default: all stored, ``first_order, trapezoid, rk4, stored``).

    Returns:
        One row per (layer, rule), plus a ``layer == "network"`` row per rule, with columns
        ``layer, rule, size, n_iters, median_rel, pct_flipped, rel_l1, sum_rel``.
    """
    s = bundle.lca_error_stats()
    if s is None:
        return None
    rules = tuple(rules or s["rules"])
    unknown = [r for r in rules if r not in s["rules"]]
    if unknown:
        raise ValueError(f"no rule {', '.join(unknown)} in this bundle; rules are "
                         f"{', '.join(s['rules'])}")
    M = len(s["iters"])
    dL = bundle.loss_change()[s["iters"]] if M else np.zeros(0)  # each step's own ΔL
    rows = []
    for rule in rules:
        k = s["rules"].index(rule)
        for li, name in enumerate([*bundle.layer_names, "network"]):
            every = slice(None) if name == "network" else li
            nonzero = s["nonzero"][:, every].sum()
            ref_abs = s["ref_abs_layer"][:, every].sum()
            if name == "network":
                sums = _ratio(dL - s["rule_sum"][:, k].sum(1), dL)
                med = math.nan
            else:
                sums = _ratio(s["rule_sum"][:, k, li] - s["ref_layer"][:, li],
                              s["ref_layer"][:, li])
                med = _nanmedian(s["median_rel"][:, k, li])
            rows.append({
                "layer": name, "rule": rule,
                "size": int(bundle.layer_sizes.sum() if name == "network"
                            else bundle.layer_sizes[li]),
                "n_iters": M, "median_rel": med,
                "pct_flipped": 100 * s["flips"][:, k, every].sum() / nonzero if nonzero
                else math.nan,
                "rel_l1": s["abs_error"][:, k, every].sum() / ref_abs if ref_abs else math.nan,
                "sum_rel": _nanmedian(sums),
            })
    return pd.DataFrame(rows)


def error_table(bundle: RunBundle) -> pd.DataFrame | None:
    """The stored LCA's error per layer (rule ``stored``; the network row last), or None."""
    df = rule_errors(bundle, ("stored",))
    return None if df is None else df.drop(columns="rule")


def table_s1(bundle: RunBundle, rules: tuple[str, str] = S1_RULES) -> pd.DataFrame | None:
    """The paper's Table S1 from one bundle: first order vs RK4 against the refined reference.

    Returns:
        One row per layer plus ``network``: for each of the two rules ``a, b`` the columns
        ``median_rel_<r>``, ``pct_flipped_<r>``, ``rel_l1_<r>``, ``sum_rel_<r>``, and the
        ratios ``rel_l1_ratio`` and ``median_rel_ratio`` (= a / b: how many times first
        order's error is RK4's). None without error estimates.
    """
    df = rule_errors(bundle, tuple(rules))
    if df is None:
        return None
    a, b = rules
    wide = df[df.rule == a].drop(columns="rule").reset_index(drop=True)
    other = df[df.rule == b].reset_index(drop=True)
    stats = ("median_rel", "pct_flipped", "rel_l1", "sum_rel")
    wide = wide.rename(columns={c: f"{c}_{a}" for c in stats})
    for c in stats:
        wide[f"{c}_{b}"] = other[c]
    for c in ("rel_l1", "median_rel", "sum_rel"):
        wide[f"{c}_ratio"] = wide[f"{c}_{a}"] / wide[f"{c}_{b}"]
    return wide


def table_s1_markdown(t: pd.DataFrame, rules: tuple[str, str] = S1_RULES) -> str:
    """A Markdown rendering of :func:`table_s1` (L1 rel. error = Σ|A_R − A_ref| / Σ|A_ref|)."""
    a, b = rules

    def f(x, spec=".2e"):
        return "n/a" if x is None or not np.isfinite(x) else format(x, spec)

    lines = [f"| layer | median rel. error {a} | {b} | ratio | L1 rel. error {a} | {b} | ratio "
             f"| % signs flipped {a} | {b} | layer-sum error {a} | {b} |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        lines.append(
            f"| {r.layer} | {f(r[f'median_rel_{a}'])} | {f(r[f'median_rel_{b}'])} | "
            f"{f(r.median_rel_ratio, '.0f')} | {f(r[f'rel_l1_{a}'])} | {f(r[f'rel_l1_{b}'])} | "
            f"{f(r.rel_l1_ratio, '.0f')} | {f(r[f'pct_flipped_{a}'], '.3f')} | "
            f"{f(r[f'pct_flipped_{b}'], '.3f')} | {f(r[f'sum_rel_{a}'])} | "
            f"{f(r[f'sum_rel_{b}'])} |")
    return "\n".join(lines)


def conservation(bundle: RunBundle) -> dict:
    """The run's conservation error from its per-iteration residuals (any bundle), the
    totals stored at close (if any) and, for adaptive runs, the steps that hit the cap.

    Returns:
        ``cum_error`` = |Σ_t residual_t| / |Σ_t ΔL_t| (the paper's "< 1 %" criterion),
        ``cum_abs_error`` = Σ|residual_t| / Σ|ΔL_t|, ``within_1pct``, ``max_abs_residual``,
        ``hit_max_halvings`` (count; None without the flags), ``method``, ``tol``, ``rtol``,
        ``max_halvings`` and ``stored`` (:meth:`RunBundle.closing_error`). Over the allocated
        iterations only (``--lca-every``; ``n_iters`` counts them), with each step's own ΔL
        (:meth:`RunBundle.loss_change`).
    """
    mask = bundle.allocated()
    res = bundle.residual().astype(np.float64)[mask]
    dL = bundle.loss_change()[mask]
    sum_dL, abs_dL = float(dL.sum()), float(np.abs(dL).sum())
    cum = abs(float(res.sum())) / abs(sum_dL) if sum_dL else math.nan
    flags = bundle.hit_max_halvings()
    cfg = bundle.config
    return {
        "method": bundle.method, "tol": cfg.get("tol"), "rtol": cfg.get("rtol", 0.0),
        "max_halvings": cfg.get("max_halvings"), "n_iters": int(len(res)),
        "cum_error": cum,
        "cum_abs_error": float(np.abs(res).sum()) / abs_dL if abs_dL else math.nan,
        "within_1pct": bool(cum < 0.01) if math.isfinite(cum) else None,
        "max_abs_residual": float(np.abs(res).max()) if len(res) else None,
        "hit_max_halvings": None if flags is None else int(flags.sum()),
        "stored": bundle.closing_error(),
    }
