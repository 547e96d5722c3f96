"""How often each weight's movement changes direction (paper Section 3, Fig. S7).

From the stored trajectory θ_0 … θ_T (``--save-trajectory``): the move of weight i at
iteration t is d[t, i] = θ_{t+1, i} − θ_{t, i}. Zero moves are ignored (the weight keeps its
last direction). A *direction change* is a nonzero move whose sign differs from the weight's
previous nonzero move.

Reported:

* ``iters_per_change`` = Σ_i (moves_i − 1) / Σ_i changes_i over weights that moved: the mean
  number of consecutive moves per direction change, i.e. "weights change direction once every
  x iterations" (paper: 6.7 for CIFAR–ResNet with SGD).
* ``mean_run_length`` = Σ_i moves_i / Σ_i (changes_i + 1): mean length of a same-direction run.
* ``median_iters_per_change``: median over weights of (moves_i − 1) / changes_i (weights with
  no change are left out).

Gradient sign changes (the paper's 9.5 iterations) need the full-dataset gradient at every
θ_t, which no trajectory holds: ``lca-run`` counts them, and the moves, on the device
(``param_moves``, ``param_move_changes``, ``param_grad_signs``, ``param_grad_changes``; see
``compute.lca.oscillation``). :func:`counter_oscillation` reports both from those counters with the
same statistics (for gradients: nonzero signs at θ_0 … θ_T instead of moves), for any run,
without a trajectory; for a float32 run its move statistics equal :func:`movement_oscillation`'s.

Streaming: the trajectory (T + 1, P) is read in blocks of rows (row blocks match the chunk
layout; column blocks would re-read each chunk many times), carrying per weight the last θ,
last direction and the two counters: O(P) memory (≈ 13 bytes × P) plus one block.
"""

from __future__ import annotations

import math

import numpy as np

from lcaviz.bundle import BLOCK_BYTES, RunBundle

GRADIENT_NOTE = ("gradient sign changes need the full-dataset gradient at every iteration, "
                 "which a trajectory does not hold; lca-run counts them (counter_oscillation)")


class _DirectionCounter:
    """Accumulates moves and direction changes per weight over consecutive θ rows."""

    def __init__(self, n: int):
        self.last_theta: np.ndarray | None = None
        self.last_sign = np.zeros(n, np.int8)  # 0 = no move yet
        self.moves = np.zeros(n, np.int64)
        self.changes = np.zeros(n, np.int64)

    def update(self, theta_rows: np.ndarray) -> None:
        """Feed the next rows of θ, (rows, n)."""
        for row in theta_rows:
            if self.last_theta is not None:
                s = np.sign(row - self.last_theta).astype(np.int8)  # exact sign in float32
                moved = s != 0
                self.changes += moved & (self.last_sign != 0) & (s != self.last_sign)
                self.moves += moved
                np.copyto(self.last_sign, s, where=moved)
            self.last_theta = row.copy()


def direction_changes(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moves and direction changes per weight of an in-memory trajectory.

    Args:
        theta: (T + 1, n) parameter values.

    Returns:
        ``(moves (n,), changes (n,))`` int64.
    """
    c = _DirectionCounter(theta.shape[1])
    c.update(np.asarray(theta))
    return c.moves, c.changes


def _stats(moves: np.ndarray, changes: np.ndarray) -> dict:
    moving = moves > 0
    n_changes = int(changes[moving].sum())
    pairs = int((moves[moving] - 1).sum())
    per_weight = (moves[changes > 0] - 1) / changes[changes > 0]
    return {
        "n_weights": int(moves.size), "n_moving": int(moving.sum()),
        "n_changes": n_changes,
        "iters_per_change": pairs / n_changes if n_changes else math.inf,
        "mean_run_length": (float(moves[moving].sum()) / (n_changes + int(moving.sum()))
                            if moving.any() else math.nan),
        "median_iters_per_change": float(np.median(per_weight)) if per_weight.size else math.inf,
    }


def movement_oscillation(bundle: RunBundle, *, budget_bytes: int = BLOCK_BYTES) -> dict | None:
    """Direction changes of weight movements, run-wide and per layer.

    Args:
        bundle: an open bundle; returns None if it has no trajectory.
        budget_bytes: size of one streamed block of trajectory rows.

    Returns:
        The statistics described in the module docstring, plus ``"layers"`` (one dict per
        layer with ``"layer"`` = name) and ``"gradient_note"``.
    """
    if not bundle.has_trajectory:
        return None
    counter = _DirectionCounter(bundle.n_params)
    for _, block in bundle.iter_row_blocks(source="trajectory", budget_bytes=budget_bytes):
        counter.update(block)
    out = _stats(counter.moves, counter.changes)
    out["layers"] = []
    for li, name in enumerate(bundle.layer_names):
        cols = bundle.layer_columns(li)
        out["layers"].append({"layer": name, **_stats(counter.moves[cols],
                                                        counter.changes[cols])})
    out["gradient_note"] = GRADIENT_NOTE
    return out


def counter_oscillation(bundle: RunBundle) -> dict | None:
    """Direction changes of moves and sign changes of full-dataset gradients, from the
    per-parameter counters ``lca-run`` keeps (no trajectory needed).

    Args:
        bundle: an open bundle; returns None if it has no counters (older or synthetic runs).

    Returns:
        ``{"n_iters": iterations the counters cover (a live run's lag behind its T until the
        next checkpoint), "n_iters_run": T, "moves": stats, "gradients": stats,
        "layers": [{"layer": name,
        "moves": stats, "gradients": stats}, ...]}`` where ``stats`` are the module
        docstring's (``iters_per_change``: "a weight changes direction once every x
        iterations" / "its full gradient changes sign once every y iterations"; for gradients
        ``n_moving`` counts parameters with a nonzero gradient somewhere).
    """
    c = bundle.oscillation_counters()
    if c is None:
        return None
    moves, changes = c["param_moves"], c["param_move_changes"]
    signs, flips = c["param_grad_signs"], c["param_grad_changes"]
    covered = bundle.oscillation_iters()
    out = {"n_iters": bundle.n_iters if covered is None else covered,
           "n_iters_run": bundle.n_iters, "moves": _stats(moves, changes),
           "gradients": _stats(signs, flips), "layers": [], "gradient_points": "every θ_t"}
    if bundle.is_gapped or bundle.config.get("lca_data_resample"):
        # the cheaper modes see the gradient only at the start of each allocated step
        out["gradient_points"] = (f"the start of each allocated step (one every "
                                  f"{bundle.lca_every} iterations"
                                  + (", each on its own subset)" if bundle.config.get(
                                      "lca_data_resample") else ")"))
    for li, name in enumerate(bundle.layer_names):
        cols = bundle.layer_columns(li)
        out["layers"].append({"layer": name, "moves": _stats(moves[cols], changes[cols]),
                              "gradients": _stats(signs[cols], flips[cols])})
    return out
