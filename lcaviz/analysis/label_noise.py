"""Mislabeled examples under per-example LCA: which layers memorise them, and when.

A run made with ``--label-noise F`` flips the labels of a seeded fraction F of the training set
and stores which (``label_noise/flipped``). With per-example LCA each tracked example n has, per
row window r and layer l, E[r, n, l]: its share of the change of the full training loss. Since
the loss is the mean (1/N) Σ_n ℓ_n, N · Σ_l E[r, n, l] is the change of the example's own loss
ℓ_n over the window (up to the quadrature residual), split exactly among the layers.

Pure numpy: the functions take arrays, :func:`from_bundle` reads them from a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (higher = flagged) for the boolean ``positive``.

    The Mann–Whitney form with average ranks for ties: the probability that a random positive
    scores above a random negative (ties count one half). 0.5 is chance; below 0.5 the score
    ranks the other way round.
    """
    s = np.asarray(scores, np.float64)
    pos = np.asarray(positive, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("auroc needs at least one positive and one negative example")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class NoiseData:
    """What the analysis reads from a run with label noise and per-example LCA."""

    flipped: np.ndarray  # (N_e,) bool: the tracked example's label was flipped
    rows: np.ndarray  # (R, N_e, L) float64: N · E summed over each row window
    windows: np.ndarray  # (R, 2) [first, end) iterations of each row
    loss_first: np.ndarray  # (N_e,) ℓ_n(θ_0)
    loss_last: np.ndarray  # (N_e,) ℓ_n after the last iteration
    layer_names: list[str]


def timeline(d: NoiseData, upto: list[int]) -> dict[str, np.ndarray]:
    """Mean cumulative per-example loss change per layer, mislabeled vs clean examples.

    Args:
        d: the run's data.
        upto: row indices; entry k sums the rows 0..upto[k].

    Returns:
        ``flipped`` and ``clean``: (K, L) means over each group of Σ_{r ≤ upto[k]} N · E[r, n, l]
        (negative: the layer lowered those examples' loss); ``iteration``: (K,) the end
        iteration of each cumulative window.
    """
    cum = np.cumsum(d.rows, axis=0)  # (R, N_e, L)
    sel = cum[np.asarray(upto)]  # (K, N_e, L)
    return {"flipped": sel[:, d.flipped].mean(axis=1), "clean": sel[:, ~d.flipped].mean(axis=1),
            "iteration": d.windows[np.asarray(upto), 1]}


def rankings(d: NoiseData, early_rows: int) -> dict[str, float]:
    """AUROC of ranking the tracked examples as mislabeled, by several scores (higher = flagged).

    * ``final loss``: ℓ_n after training;
    * ``loss change``: ℓ_n(last) − ℓ_n(θ_0);
    * ``cumulative LCA (all layers)``: Σ_{r,l} N · E (the loss change up to the residual);
    * ``cumulative LCA, <layer>``: Σ_r N · E[r, n, layer] for each layer;
    * ``early LCA, <layer>``: the same over the first ``early_rows`` row windows only.
    """
    total = d.rows.sum(axis=0)  # (N_e, L)
    early = d.rows[:early_rows].sum(axis=0)
    out = {"final loss": auroc(d.loss_last, d.flipped),
           "loss change": auroc(d.loss_last - d.loss_first, d.flipped),
           "cumulative LCA (all layers)": auroc(total.sum(axis=1), d.flipped)}
    for i, name in enumerate(d.layer_names):
        out[f"cumulative LCA, {name}"] = auroc(total[:, i], d.flipped)
    for i, name in enumerate(d.layer_names):
        out[f"early LCA, {name}"] = auroc(early[:, i], d.flipped)
    return out


def from_bundle(b) -> NoiseData:
    """The :class:`NoiseData` of a bundle made with ``--label-noise`` and ``--per-example``."""
    noise = b.label_noise()
    if noise is None or not b.has_examples:
        raise ValueError(f"{b.path.name}: needs a run made with --label-noise and --per-example")
    index = b.example_index()
    # N of E's 1/N: the allocated set's size (recorded by compute; else every example tracked)
    n_alloc = int(b.config.get("per_example_of") or len(index))
    flipped = np.isin(index, np.asarray(noise["flipped"]))
    loss = b.example_loss()  # (R, N_e) at the start of each row window
    return NoiseData(flipped=flipped, rows=b.example_lca_rows() * n_alloc,
                     windows=np.asarray(b.row_windows), loss_first=loss[0].astype(np.float64),
                     loss_last=b.example_loss_last(), layer_names=list(b.layer_names))
