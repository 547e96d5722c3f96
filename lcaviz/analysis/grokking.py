"""Delayed generalisation (grokking) seen through LCA of the training and validation loss.

A run with ``--val-lca`` allocates both losses along the same trajectory. Its phases follow
from the accuracies, not from a chosen window:

* **memorisation**: iteration 0 up to the first iteration with 100 % training accuracy;
* **plateau**: from there until validation accuracy first reaches 50 %;
* **generalisation**: from 50 % until validation accuracy first reaches 95 %;
* **after**: the rest of the run.

For each phase we sum each component's LCA of both losses (components are the bundle's
named groups — embeddings, each attention head's Q/K/V/O slice, MLP in/out, unembedding —
when it has them, else its layers). The sums over a phase are exact up to the phase's
residual, which is reported next to them. Synchrony uses the paper's shift test on the
per-component series, all components at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lcaviz.analysis.synchrony import peak_table, shift_test
from lcaviz.bundle import RunBundle

PHASES = ("memorisation", "plateau", "generalisation", "after")


@dataclass
class Phase:
    """One phase: [start, end) iterations, loss changes, per-component LCA and residuals."""

    name: str
    start: int
    end: int
    d_train: float  # L_train(θ_end) − L_train(θ_start)
    d_val: float
    lca_train: np.ndarray  # (G,) summed over the phase
    lca_val: np.ndarray  # (G,)
    residual_train: float  # d_train − Σ lca_train
    residual_val: float


def components(b: RunBundle) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    """(names, train LCA (T, G), validation LCA (T, G), "groups" or "layers")."""
    if getattr(b, "has_groups", False):
        return list(b.group_names), b.lca_group(), b.lca_val_group(), "groups"
    return list(b.layer_names), b.lca_layer(), b.lca_val_layer(), "layers"


def first_at_least(x: np.ndarray, level: float) -> int | None:
    """First index where ``x >= level`` (None if never)."""
    hit = np.flatnonzero(np.asarray(x) >= level)
    return int(hit[0]) if hit.size else None


def phases(b: RunBundle) -> list[Phase]:
    """The run's phases (those that exist in it), from its accuracies and per-component LCA."""
    if not b.has_val:
        raise ValueError(f"{b.path}: no validation LCA (run it with --val-lca)")
    _, tr, va, _ = components(b)
    T = b.n_iters
    marks = [0, first_at_least(b.accuracy_train(), 1.0), first_at_least(b.accuracy_val(), 0.5),
             first_at_least(b.accuracy_val(), 0.95), T]
    lt, lv = b.loss_train(), b.loss_val()
    out = []
    for k, name in enumerate(PHASES):
        a = marks[k]
        c = next((m for m in marks[k + 1:] if m is not None), T)
        if a is None or c <= a:
            continue
        st, sv = tr[a:c].sum(0), va[a:c].sum(0)
        dt, dv = float(lt[c] - lt[a]), float(lv[c] - lv[a])
        out.append(Phase(name, a, c, dt, dv, st, sv, dt - float(st.sum()), dv - float(sv.sum())))
    return out


def leaders(values: np.ndarray, names: list[str], n: int = 4) -> list[tuple[str, float]]:
    """The n components with the most negative LCA (those that lowered the loss most)."""
    order = np.argsort(values, kind="stable")[:n]
    return [(names[i], float(values[i])) for i in order]


def synchrony_all(x: np.ndarray, *, k: int = 20, max_shift: int = 2,
                  n_resamples: int = 1000, seed: int = 0) -> dict:
    """The shift test on per-component series (T, G), all components together.

    Without per-class series there is one "class", so shifting every component by the same
    offset (probability (2s + 1)^−(G−1)) keeps every alignment, and N resamples cannot give
    p below 1/(N + 1): the larger of the two is the smallest p-value the test can give
    (``p_floor``), 1/5 for a pair, which is why pairs are not tested.

    Returns:
        ``aligned``: iterations where all G components have a top-k peak; ``actual`` (their
        number), ``baseline`` (mean over resamples), ``p``, ``p_floor``, ``k``, ``max_shift``,
        ``n_resamples``.
    """
    x = np.asarray(x, np.float64)
    peaks = peak_table(x[:, None, :], k)  # (1, G, k)
    res = shift_test(peaks, len(x), max_shift=max_shift, n_resamples=n_resamples, seed=seed)
    sets = [set(row[row >= 0].tolist()) for row in peaks[0]]
    return {"aligned": sorted(set.intersection(*sets)) if sets else [],
            "actual": res["actual_total"], "baseline": res["baseline_total_mean"],
            "p": res["p_value"], "p_floor": max(float((2 * max_shift + 1) ** -(x.shape[1] - 1)),
                                            1.0 / (n_resamples + 1)),
            "k": k, "max_shift": max_shift, "n_resamples": n_resamples}
