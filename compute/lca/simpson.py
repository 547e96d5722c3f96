"""Composite Simpson's rule over one training step, as running sums that keep every node.

:class:`SimpsonSums` is the state of the adaptive integrator and of the error estimate in
:mod:`compute.lca.integrator`; :class:`Refinement` is what an error estimate returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SimpsonSums:
    """Running sums of composite Simpson on ``n`` intervals over one step, nodes at k/(2n):
    ∫_0^1 g ≈ (ends + 4·odd + 2·even) / (6n). Doubling ``n`` keeps every node: the old odd
    nodes become even ones and only the n new odd nodes are evaluated."""

    n: int
    ends: torch.Tensor  # g(0) + g(1), (P,)
    odd: torch.Tensor  # Σ g at the odd nodes (2k+1)/(2n)
    even: torch.Tensor  # Σ g at the interior even nodes
    mid: torch.Tensor  # g(1/2), the n = 1 odd node (kept for the rk4 rule of an error estimate)
    cends: torch.Tensor | None = None  # per-class parts, (C, P)
    codd: torch.Tensor | None = None
    ceven: torch.Tensor | None = None
    eends: torch.Tensor | None = None  # per-example parts D (N, L) / N, same nodes and weights
    eodd: torch.Tensor | None = None
    eeven: torch.Tensor | None = None

    def weights(self) -> torch.Tensor:
        return (self.ends + 4 * self.odd + 2 * self.even) / (6 * self.n)

    def class_weights(self) -> torch.Tensor | None:
        if self.cends is None:
            return None
        return (self.cends + 4 * self.codd + 2 * self.ceven) / (6 * self.n)

    def example_weights(self) -> torch.Tensor | None:
        """E (N, L): the per-example sums combined as :meth:`weights` combines the gradients."""
        if self.eends is None:
            return None
        return (self.eends + 4 * self.eodd + 2 * self.eeven) / (6 * self.n)


@dataclass
class Refinement:
    """A step integrated again on more intervals, and the simple rules from its nodes."""

    lca: torch.Tensor  # (P,) composite Simpson on ``intervals`` intervals (the reference)
    intervals: int
    new_gradients: int  # full-dataset gradients this refinement evaluated
    rules: dict[str, torch.Tensor]  # (P,) each: first_order, trapezoid, rk4 on the same step
