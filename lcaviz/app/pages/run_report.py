"""What the run page's HTML report says besides its figures: the run's hyperparameters, a
per-layer summary table, and a caption under each figure that says how to read it."""

from __future__ import annotations

import json
import math

from lcaviz.analysis import helping, layers
from lcaviz.app import ids
from lcaviz.app.state import AppState

CAPTIONS = {
    ids.HEATMAP: "Per-parameter LCA of the chosen layer at the page's frame: each cell is one "
                 "parameter (or the exact sum of a block of them); negative (helps) lowered the "
                 "training loss, positive (hurts) raised it; the colour range is stated on the "
                 "colour bar.",
    ids.LAYER_BARS: "Each layer's LCA summed over the run (or up to the frame): the share of the "
                    "loss change it made; negative bars lowered the loss.",
    ids.LAYER_CURVES: "Each layer's LCA per iteration (or its running total): when each layer "
                      "learned.",
    ids.LOSS: "Training (and validation) loss; the allocated loss is the one LCA splits.",
    ids.RESIDUAL: "ΔL − ΣLCA per iteration: what the quadrature did not allocate (conservation "
                  "error); small against the loss change means the LCA adds up.",
    ids.HELP_TIME: "Paper Fig. 3a: % of parameters whose LCA helped, hurt or was exactly zero at "
                   "each iteration; barely more than half help.",
    ids.HELP_HIST: "Paper Fig. 3b: the distribution of LCA values, helping and hurting, from the "
                   "stored rows (the title says which).",
    ids.HELP_LAYER: "Paper Fig. 3c: per layer, the mean % of nonzero LCA that helped.",
    ids.HELP_FRACTION: "Paper Fig. 3d: for each parameter, the fraction of iterations in which "
                       "it helped.",
    ids.WEIBULL: "Heavy tails: |LCA| histograms on log axes with Weibull fits (shape k < 1: "
                 "heavier than exponential); KS is the fit's Kolmogorov–Smirnov distance.",
    ids.SYNC_PEAKS: "Paper Fig. 6: per layer, the top-k learning moments (local minima of the "
                    "class's LCA); shaded iterations are moments where every layer peaks.",
    ids.LCA_ERROR: "How far each layer's stored per-parameter LCA is from a finer quadrature.",
    ids.TABLE_S1: "Paper Table S1: first-order vs RK4 error against the finer reference.",
    ids.EX_GRID: "The training examples whose loss the chosen layers lowered most (helped) and "
                 "raised most (hurt) at the page's frame and cumulatively up to it, with their "
                 "per-example LCA (summed over all examples it is the layers' LCA).",
    ids.EX_HIST: "Per-example LCA of every tracked example at the page's frame, stacked by "
                 "class: left of 0 the examples the step helped, right of 0 those it hurt.",
    ids.TRAIN_VAL: "Per layer, the LCA of the training loss vs of the validation loss; ⚠ marks "
                   "layers that lowered the training loss but raised the validation loss.",
}


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    if isinstance(v, list | tuple | dict):
        return json.dumps(v, default=str)
    return str(v)


def report_tables(state: AppState, b, key) -> list[tuple[str, list[str], list[list]]]:
    """``(heading, header, rows)`` tables: hyperparameters (the stored config, nested
    settings left out) and per layer: size, total LCA, per parameter, % helping, hurts."""
    cfg = b.config if isinstance(b.config, dict) else {}
    hyper = [[k, _value(v)] for k, v in sorted(cfg.items()) if not isinstance(v, dict)]
    totals = state.cached(("totals", key), lambda: layers.layer_totals(b))
    helps = state.cached(("layer_helping", key), lambda: helping.layer_helping(b))
    rows = []
    for t, h in zip(totals.itertuples(index=False), helps.itertuples(index=False), strict=True):
        rows.append([t.name, f"{int(t.size):,}", f"{t.total:.4g}", f"{t.per_param:.3g}",
                     "" if h.pct_help != h.pct_help else f"{h.pct_help:.2f}",
                     "yes" if t.total > 0 else "no"])
    return [("Hyperparameters (stored config)", ["setting", "value"], hyper),
            ("Layers (whole run)", ["layer", "parameters", "total LCA (nats)", "per parameter",
                                    "% helping (of nonzero)", "hurts overall"], rows)]
