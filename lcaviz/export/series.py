"""What an export holds, independent of the target: scalar series by iteration, per-layer
histograms of the per-parameter LCA at every stored row, and the config as hyperparameters.

Steps: per-iteration LCA, % helping and the residual of step θ_t → θ_{t+1} are at step t; a
loss at θ_t is at step t (0 … T); a stored row summing iterations a … e − 1 is at step e − 1
(its last iteration; for one-iteration rows, that iteration). Iterations a ``--lca-every``
run did not allocate have no LCA and are left out (never written as 0).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lcaviz.bundle import RunBundle

HISTOGRAM_BINS = 64


@dataclass(frozen=True)
class Scalars:
    """One scalar series: ``tag`` and (step, value) pairs, finite values only."""

    tag: str
    steps: np.ndarray  # (n,) int64
    values: np.ndarray  # (n,) float64


@dataclass(frozen=True)
class Histogram:
    """A histogram of one layer's per-parameter LCA in one stored row."""

    tag: str
    step: int
    counts: np.ndarray  # (bins,) int64
    edges: np.ndarray  # (bins + 1,) float64
    num: int
    total: float
    sum_squares: float
    lo: float
    hi: float


def _series(tag: str, values, first_step: int = 0) -> Scalars:
    v = np.asarray(values, np.float64).ravel()
    steps = np.arange(first_step, first_step + len(v), dtype=np.int64)
    ok = np.isfinite(v)
    return Scalars(tag, steps[ok], v[ok])


def scalar_series(b: RunBundle) -> Iterator[Scalars]:
    """Every scalar series of the export (see the module docstring for the steps)."""
    mask = b.allocated()
    layer = b.lca_layer(gaps=np.nan)
    cum = np.cumsum(b.lca_layer(), axis=0)
    for li, name in enumerate(b.layer_names):
        yield _series(f"lca/layer/{name}", layer[:, li])
        yield _series(f"lca_cumulative/layer/{name}", np.where(mask, cum[:, li], np.nan))
    total = np.where(mask, layer.sum(axis=1) if layer.size else np.zeros(len(mask)), np.nan)
    yield _series("lca/total", total)
    yield _series("lca_cumulative/total", np.where(mask, np.cumsum(np.nan_to_num(total)),
                                                   np.nan))
    if b.has_groups and (group := b.lca_group(gaps=np.nan)) is not None:
        gcum = np.cumsum(np.nan_to_num(group), axis=0)
        for gi, name in enumerate(b.group_names):
            yield _series(f"lca/group/{name}", group[:, gi])
            yield _series(f"lca_cumulative/group/{name}", np.where(mask, gcum[:, gi], np.nan))
    helped = b.help_count().astype(np.float64)
    nonzero = helped + b.hurt_count()
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(nonzero > 0, 100 * helped / np.maximum(nonzero, 1), np.nan)
        pct_all = np.where(nonzero.sum(1) > 0, 100 * helped.sum(1) /
                           np.maximum(nonzero.sum(1), 1), np.nan)
    pct[~mask[: len(pct)]] = np.nan
    for li, name in enumerate(b.layer_names):
        yield _series(f"helping_pct/layer/{name}", pct[:, li])
    yield _series("helping_pct/all", np.where(mask[: len(pct_all)], pct_all, np.nan))
    yield _series("lca/residual", b.residual())
    yield _series("loss/train", b.loss_train())
    yield _series("loss/minibatch", b.loss_minibatch())
    yield _series("accuracy/train", b.accuracy_train())
    if (val := b.loss_val()) is not None:
        yield _series("loss/val", val)
        yield _series("accuracy/val", b.accuracy_val())
    if (full := b.full_loss()) is not None:
        yield Scalars("loss/full", full["iters"].astype(np.int64), full["loss"])


def histogram_of(tag: str, step: int, values: np.ndarray, bins: int = HISTOGRAM_BINS
                 ) -> Histogram:
    """An exact-summary histogram (num, sum, sum of squares, min, max) of ``values``."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi) if hi > lo else (lo - 1e-12,
                                                                              hi + 1e-12))
    return Histogram(tag, int(step), counts.astype(np.int64), edges.astype(np.float64),
                     int(v.size), float(v.sum()), float(np.square(v).sum()), lo, hi)


def layer_histograms(b: RunBundle, max_rows: int | None = None,
                     bins: int = HISTOGRAM_BINS) -> Iterator[Histogram]:
    """Per layer with per-parameter rows, one histogram per stored row (or ``max_rows`` of
    them, evenly spaced, always the last one included), tag ``lca_param/<layer>``."""
    R = b.n_rows
    rows = np.arange(R)
    if max_rows is not None and R > max_rows > 0:
        rows = np.unique(np.linspace(0, R - 1, max_rows).round().astype(np.int64))
    for r in rows:
        step = b.iteration_of_row(int(r))[1] - 1
        for li in b.row_layers:
            values = b.layer_window(li, int(r), int(r) + 1)[0]
            yield histogram_of(f"lca_param/{b.layer_names[li]}", step, values, bins)


def flat_config(config: dict, prefix: str = "") -> dict[str, bool | int | float | str]:
    """The config flattened to ``a.b`` keys with bool / int / float / str values (lists and
    None as JSON text), as hyperparameter tools want."""
    out: dict[str, bool | int | float | str] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, key + "."))
        elif isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v)):
            out[key] = v
        else:
            out[key] = json.dumps(v, default=str)
    return out


def run_metrics(b: RunBundle) -> dict[str, float]:
    """The run-level numbers shown beside the hyperparameters (``hparams/...``)."""
    from lcaviz.analysis.helping import overall_helping

    loss = np.asarray(b.loss_train(), np.float64)
    total = float(np.nansum(b.lca_layer()))
    return {"hparams/final_loss_train": float(loss[-1]) if len(loss) else math.nan,
            "hparams/loss_change": float(loss[-1] - loss[0]) if len(loss) else math.nan,
            "hparams/lca_total": total,
            "hparams/pct_helping": float(overall_helping(b)["pct_help"])}
