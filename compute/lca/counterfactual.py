"""The reviewers' causal test of "helping": move only some coordinates of a step and see what
the full loss does (issue 15.3).

For a step θ_t → θ_{t+1} with per-parameter LCA A, :func:`counterfactual_step` evaluates the
full loss after applying only the coordinates that helped (A < 0), only those that hurt
(A > 0) and only those with zero LCA, each next to the actual ΔL and the sum of their LCA. If
LCA's sign means what it says, the helping coordinates alone lower the loss and the hurting
ones alone raise it. Because the loss is not additive over coordinates, the three partial
changes need not add up to the actual ΔL: the gap is the interaction the per-coordinate
allocation spreads over the step.

:func:`helping_mask` is the training variant (``lca-run --update-mask helping``): keep only
the coordinates whose first-order LCA g(θ_t)_i · Δθ_i is negative.
"""

from __future__ import annotations

import numpy as np
import torch

from compute.lca.objective import FullDatasetObjective

PARTS = ("actual", "helping", "hurting", "zero")


def counterfactual_step(objective: FullDatasetObjective, theta0: torch.Tensor,
                        theta1: torch.Tensor, lca: torch.Tensor,
                        loss0: float | None = None, loss1: float | None = None) -> np.ndarray:
    """Full-loss changes of partial steps, (4, 2) float64: rows :data:`PARTS`, columns
    ``(ΔL of that partial step, Σ LCA of its coordinates)``.

    Args:
        objective: the full-dataset objective whose loss is allocated.
        theta0, theta1: θ_t and θ_{t+1}, (P,).
        lca: the step's per-parameter LCA, (P,).
        loss0, loss1: L(θ_t) and L(θ_{t+1}) if known (saves two evaluations).
    """
    delta = theta1 - theta0
    if loss0 is None:
        loss0 = float(objective.evaluate(theta0, grad=False).loss)
    if loss1 is None:
        loss1 = float(objective.evaluate(theta1, grad=False).loss)
    out = np.zeros((len(PARTS), 2))
    out[0] = loss1 - loss0, float(lca.double().sum())
    for k, mask in enumerate((lca < 0, lca > 0, lca == 0), start=1):
        moved = theta0 + torch.where(mask, delta, torch.zeros_like(delta))
        out[k, 0] = float(objective.evaluate(moved, grad=False).loss) - loss0
        out[k, 1] = float(lca[mask].double().sum())
    return out


def helping_mask(grad0: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The coordinates whose first-order LCA g(θ_t)_i · Δθ_i is negative (they helped to first
    order), (P,) bool."""
    return grad0 * delta < 0
