"""Every analysis of one run in one JSON-serialisable dict (and a per-layer table).

The (R, P) matrix is streamed once (:func:`lcaviz.analysis.scan.scan_values`, memory bounded
independently of R and P); the trajectory, if stored, once more; everything else uses the
per-iteration (T, L) series and the (P,) counters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lcaviz.analysis.calibration import calibration_summary
from lcaviz.analysis.counterfactual import counterfactual_summary
from lcaviz.analysis.distributions import lca_histograms, tail_mass
from lcaviz.analysis.generalization import train_val_layers
from lcaviz.analysis.helping import layer_helping, overall_helping, param_help_histogram
from lcaviz.analysis.layers import layer_totals
from lcaviz.analysis.lca_error import conservation, error_table, table_s1
from lcaviz.analysis.oscillation import counter_oscillation, movement_oscillation
from lcaviz.analysis.scan import scan_values
from lcaviz.analysis.synchrony import synchrony
from lcaviz.analysis.weibull import weibull_fits
from lcaviz.bundle import RunBundle


def jsonable(x):
    """numpy / dataclass / pandas values → plain Python; NaN and ±inf → None (strict JSON)."""
    if is_dataclass(x) and not isinstance(x, type):
        return jsonable(asdict(x))
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, pd.DataFrame):
        return jsonable(x.to_dict(orient="records"))
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    return x if x is None or isinstance(x, str) else str(x)


def _approximate(b: RunBundle) -> bool:
    """Gapped (--lca-every) or resampled runs: ΔL is the sum of the allocated steps' own."""
    return b.is_gapped or bool(b.config.get("lca_data_resample"))


def _run_info(b: RunBundle) -> dict:
    loss = b.loss_train()
    res = b.residual()
    cfg = b.config
    return {
        "path": str(b.path), "status": b.status, "status_reason": b.status_reason,
        "net": cfg.get("net"), "dataset": cfg.get("dataset"), "optimizer": cfg.get("optimizer"),
        "method": b.method, "stride": b.stride, "rows": b.row_schedule.spec,
        "allocated_loss": b.allocated_loss, "lca_every": b.lca_every,
        "n_allocated": int(len(b.lca_iters())),
        "n_iters": b.n_iters, "n_rows": b.n_rows,
        "n_params": b.n_params, "n_layers": b.n_layers, "n_classes": b.n_classes,
        "initial_loss": float(loss[0]) if len(loss) else None,
        "final_loss": float(loss[-1]) if len(loss) else None,
        "loss_change": (float(loss[-1] - loss[0]) if not _approximate(b)  # else Σ of steps
                        else float(np.nansum(b.loss_change()))) if len(loss) else None,
        "lca_total": float(b.lca_layer().sum()),  # over the allocated iterations
        "residual_abs_max": float(np.nanmax(np.abs(res))) if np.isfinite(res).any() else None,
        "residual_total": float(np.nansum(res)) if len(res) else None,
        "calibration": calibration_summary(b),
    }


def _analyse(b: RunBundle, weibull_sample: int, sync_k: int, shift_resamples: int,
             seed: int, layer_sample: int) -> dict:
    scan = scan_values(b, sample_size=weibull_sample, layer_sample_size=layer_sample, seed=seed)
    counts, edges = param_help_histogram(b)
    hist = lca_histograms(scan)
    layers = layer_totals(b).merge(layer_helping(b), on=["layer", "name", "size"])
    layers["tail"] = [tail_mass(scan, layer=li) for li in range(b.n_layers)]
    sync = synchrony(b, k=sync_k, n_resamples=shift_resamples, seed=seed)
    if sync is not None:
        sync.pop("baseline")  # (N, C): summarised by its mean and std
    errors, s1 = error_table(b), table_s1(b)
    return {
        "run": _run_info(b),
        "values": {"rows": scan.rows_note, "per_iteration": scan.per_iteration,
                   "n_rows": scan.n_rows,
                   "layers": [b.layer_names[li] for li in scan.layers_with_rows]},
        "helping": overall_helping(b),
        "param_help_histogram": {"counts": counts, "edges": edges},
        "distribution": hist,
        "tail": tail_mass(scan),
        "weibull": weibull_fits(scan),
        "layers": layers.to_dict(orient="records"),
        "oscillation": movement_oscillation(b),
        "oscillation_counters": counter_oscillation(b),
        "conservation": conservation(b),
        "train_val": None if (tv := train_val_layers(b)) is None else
        tv.to_dict(orient="records"),
        "lca_error": None if errors is None else {
            "every": int(b.lca_error_stats()["every"]), "n_iters": int(errors["n_iters"][0]),
            "layers": errors.to_dict(orient="records"),
            "table_s1": s1.to_dict(orient="records")},
        "counterfactual": counterfactual_summary(b),
        "synchrony": sync,
        "settings": {"weibull_sample": weibull_sample, "layer_sample": layer_sample,
                     "sync_k": sync_k, "shift_resamples": shift_resamples, "seed": seed},
    }


def summarize(bundle_or_path: RunBundle | str | Path, *, weibull_sample: int = 200_000,
              sync_k: int = 20, shift_resamples: int = 1000, seed: int = 0,
              layer_sample: int = 20_000) -> dict:
    """All analyses of one run, as plain JSON-ready Python values (NaN → None).

    Args:
        bundle_or_path: an open bundle (left open) or a path (opened and closed here).
        weibull_sample: run-wide subsample per sign for the Weibull fits.
        sync_k: top-k learning moments per class and layer.
        shift_resamples: resamples of the random-shift baseline.
        seed: seed of the subsample and of the baseline.
        layer_sample: per-layer subsample per sign for the per-layer Weibull fits.

    Returns:
        Keys ``run, helping, param_help_histogram, distribution, tail, weibull, layers,
        oscillation`` (None without trajectory), ``oscillation_counters`` (None without the
        counters), ``conservation``, ``lca_error`` (None without ``--lca-error-every``: the
        stored LCA's error per layer and Table S1), ``counterfactual`` (None without
        ``--counterfactual-every``), ``synchrony`` (None if T < 3),
        ``settings``.
    """
    if isinstance(bundle_or_path, RunBundle):
        return jsonable(_analyse(bundle_or_path, weibull_sample, sync_k, shift_resamples, seed,
                                 layer_sample))
    with RunBundle.open(bundle_or_path) as b:
        return jsonable(_analyse(b, weibull_sample, sync_k, shift_resamples, seed,
                                 layer_sample))


def summary_frame(summary_or_bundle: dict | RunBundle | str | Path, **kwargs) -> pd.DataFrame:
    """One row per layer: totals, helping percentages, Weibull shapes, tail ratio, oscillation
    (from the trajectory, and from the counters: moves and gradients), LCA error.

    Args:
        summary_or_bundle: a :func:`summarize` result, or a bundle / path to summarise
            (``kwargs`` go to :func:`summarize`).
    """
    s = summary_or_bundle if isinstance(summary_or_bundle, dict) else summarize(
        summary_or_bundle, **kwargs)
    rows = []
    osc = {d["layer"]: d for d in (s.get("oscillation") or {}).get("layers", [])}
    counted = {d["layer"]: d for d in (s.get("oscillation_counters") or {}).get("layers", [])}
    err = {d["layer"]: d for d in (s.get("lca_error") or {}).get("layers", [])}
    for lay, w in zip(s["layers"], s["weibull"]["layers"], strict=True):
        o = osc.get(lay["name"], {})
        c, e = counted.get(lay["name"], {}), err.get(lay["name"], {})
        rows.append({
            "layer": lay["name"], "size": lay["size"], "total": lay["total"],
            "per_param": lay["per_param"], "hurts": lay["hurts"],
            "pct_help": lay["pct_help"], "pct_hurt": lay["pct_hurt"],
            "pct_zero": lay["pct_zero"],
            "weibull_k_help": w["help"]["k"], "weibull_k_hurt": w["hurt"]["k"],
            "tail_ratio": (lay["tail"] or {}).get("ratio"),
            "iters_per_change": o.get("iters_per_change"),
            "move_iters_per_change": c.get("moves", {}).get("iters_per_change"),
            "grad_iters_per_change": c.get("gradients", {}).get("iters_per_change"),
            "error_median_rel": e.get("median_rel"), "error_pct_flipped": e.get("pct_flipped"),
        })
    return pd.DataFrame(rows)
