"""Loss Change Allocation: split each step's change of the full loss among the parameters.

For a step θ_t → θ_{t+1} with Δθ = θ_{t+1} − θ_t, parameter i is allocated
A_i = Δθ_i ∫_0^1 g_i(θ_t + s Δθ) ds, so Σ_i A_i = L(θ_{t+1}) − L(θ_t) up to the quadrature
error. That error, ``residual = ΔL − Σ_i A_i``, is returned with every step.

Methods:
    ``first_order``: g at θ_t only (the plain gradient·step estimate).
    ``trapezoid``: the trapezoid rule, weights (1/2, 1/2) at θ_t and θ_{t+1}. The endpoint
        gradient is reused as the next start, so each step costs 1 new full-dataset gradient.
        Exact when the gradient is linear along the step (a quadratic loss); otherwise its
        error is O(|Δθ|^3) against rk4's O(|Δθ|^5); on ReLU nets, whose kinks limit both, it
        was measured at about twice rk4's per parameter on MNIST-FC (issue 17), far below
        first order's.
    ``rk4``: Simpson's rule, weights (1, 4, 1)/6 at θ_t, the midpoint and θ_{t+1}. The endpoint
        gradient is reused as the next start, so each step costs 2 new full-dataset gradients.
    ``adaptive``: composite Simpson, doubling the number of intervals until the step is
        accepted (or ``max_halvings`` doublings); earlier points are all reused. Accepted when
        |residual| < tol and, with ``rtol > 0``, also |residual| <= rtol·|ΔL| (both must
        hold, so late-training steps with |ΔL| far below ``tol`` are refined too). A step
        that reaches 2**max_halvings intervals without being accepted is flagged
        (``LCAStep.hit_max``).

Per-example LCA (``per_example=idx``): E[t, n, l] = (1/N) Σ_k w_k ∇_{θ_l} ℓ_n(θ_k) · Δθ_l with the
step's own nodes and weights (adaptive: the refinement the per-parameter LCA ended with),
computed in the same passes (:mod:`compute.lca.per_example_tap`); Σ_n E[t, n, l] over all N
examples is the step's per-layer LCA. ``LCAStep.example`` holds the tracked rows, and with
groups (``integ.examples.set_groups(groups)``) ``LCAStep.example_group`` those of the groups
finer than their layer (:mod:`compute.lca.per_example_groups`).

Error estimate (``step(θ, refine=True)``): the same step is integrated again with composite
Simpson on 4× the intervals (4·max(splits, 1)), reusing every node the step already has
(see :meth:`LCAIntegrator.refine`); ``compute.lca.lca_error`` turns it into per-parameter errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compute.lca.context import in_engine_context
from compute.lca.objective import (
    Evaluation,
    FullDatasetObjective,
)
from compute.lca.per_example_tap import DEFAULT_KEEP_BYTES, ExampleTap
from compute.lca.simpson import Refinement, SimpsonSums

METHODS = ("first_order", "trapezoid", "rk4", "adaptive")


@dataclass
class LCAStep:
    """One iteration's allocation. Tensors stay on the device."""

    lca: torch.Tensor  # (P,)
    residual: float  # ΔL − ΣA
    splits: int  # intervals used (0 for first_order, 1 for trapezoid and rk4)
    loss_before: float
    loss_after: float
    correct_after: int
    class_lca: torch.Tensor | None = None  # (C, P), sums to lca
    hit_max: bool = False  # adaptive: 2**max_halvings intervals and still not accepted
    refined: Refinement | None = None  # with step(..., refine=True)
    delta: torch.Tensor | None = None  # (P,) θ_{t+1} − θ_t
    grad_before: torch.Tensor | None = None  # (P,) full-dataset gradient at θ_t
    grad_after: torch.Tensor | None = None  # (P,) full-dataset gradient at θ_{t+1}
    example: torch.Tensor | None = None  # (N_e, L) float64 E[t, n, :] of the tracked examples
    example_loss_before: torch.Tensor | None = None  # (N_e,) float64 ℓ_n(θ_t), not / N
    example_loss_after: torch.Tensor | None = None  # (N_e,) float64 ℓ_n(θ_{t+1})
    # (N_e, G_s) float64 E of the split groups (ExampleTap.set_groups), or None
    example_group: torch.Tensor | None = None


class LCAIntegrator:
    """Online LCA along a training path; holds only O(P) state (O(C·P) with per-class).

    Usage: ``integ.start(θ_0)`` once, then ``integ.step(θ_{t+1})`` after each optimizer step.

    ``per_example``: (N_e,) int64 positions in the objective's x/y (as given to it) of the
    examples whose per-example LCA each step returns (``LCAStep.example``); None (default)
    computes none, at no cost. ``per_example_keep_bytes`` bounds what is kept of a node's
    pass for the next step's start node (see :mod:`compute.lca.per_example_tap`).
    """

    def __init__(self, objective: FullDatasetObjective, method: str = "rk4", *,
                 tol: float = 1e-3, max_halvings: int = 8, rtol: float = 0.0,
                 per_example: torch.Tensor | None = None,
                 per_example_keep_bytes: int = DEFAULT_KEEP_BYTES):
        if method not in METHODS:
            raise ValueError(f"unknown LCA method {method!r}; choose one of {', '.join(METHODS)}")
        if tol <= 0:
            raise ValueError(f"tolerance must be positive, got {tol}")
        if not rtol >= 0:
            raise ValueError(f"relative tolerance must be >= 0, got {rtol}")
        self.objective = objective
        self.method = method
        self.tol = tol
        self.rtol = rtol
        self.max_halvings = max_halvings
        self.theta: torch.Tensor | None = None
        self.at_theta: Evaluation | None = None
        self.examples = (ExampleTap(objective, per_example, keep_bytes=per_example_keep_bytes)
                         if per_example is not None else None)
        self._example_loss: torch.Tensor | None = None  # ℓ_n(θ_t), (N,)

    @in_engine_context  # gradients on, autocast off, whatever the caller's context
    def start(self, theta0: torch.Tensor) -> Evaluation:
        """Evaluate the objective at θ_0 and remember it as the next start point."""
        self.theta = theta0.detach().clone()
        self.at_theta, _ = self._evaluate(self.theta, d=False, keep=True)
        return self.at_theta

    def _evaluate(self, theta: torch.Tensor, *, d: bool, keep: bool = False):
        """The objective at θ and, with per-example LCA, D (N, L)/N along the step (``d``)."""
        tap = self.examples
        if tap is None:
            return self.objective.evaluate(theta), None
        with tap.tapping(d, keep):
            ev = self.objective.evaluate(theta)
        D = tap.collect(theta, ev.grad)
        if keep:
            self._example_loss = tap.losses
        return ev, D

    def accepts(self, residual: float, dL: float) -> bool:
        """The adaptive rule: |residual| < tol and, if rtol > 0, |residual| <= rtol·|ΔL|."""
        r = abs(residual)
        return r < self.tol and (self.rtol <= 0 or r <= self.rtol * abs(dL))

    @in_engine_context
    def step(self, theta1: torch.Tensor, *, refine: bool = False) -> LCAStep:
        """Allocate L(θ_{t+1}) − L(θ_t) for the step to ``theta1``.

        With ``refine``, also integrate the step on 4× the intervals (``LCAStep.refined``).
        """
        if self.theta is None:
            raise RuntimeError("call start(theta0) before step()")
        theta0, e0 = self.theta, self.at_theta
        theta1 = theta1.detach().clone()
        delta = theta1 - theta0  # (P,)
        tap, d0 = self.examples, None
        if tap is not None:
            tap.direction(delta)
            d0 = tap.start_node(theta0, e0.grad)
            loss_before = self._example_loss
        e1, d1 = self._evaluate(theta1, d=self.method != "first_order", keep=True)
        dL = float(e1.loss - e0.loss)
        sums, hit_max, example = None, False, None
        if self.method == "first_order":
            lca, clca = _allocate(delta, e0.grad, e0.class_grad)
            splits, example = 0, d0
        elif self.method == "trapezoid":
            cw = (e0.class_grad + e1.class_grad) / 2 if e0.class_grad is not None else None
            lca, clca = _allocate(delta, (e0.grad + e1.grad) / 2, cw)
            splits, example = 1, (d0 + d1) / 2 if tap is not None else None
        else:
            lca, clca, sums, hit_max = self._simpson(theta0, delta, e0, e1, dL, d0, d1)
            splits, example = sums.n, sums.example_weights()
        residual = dL - float(lca.double().sum())
        refined = self.refine(theta0, delta, e0, e1, sums) if refine else None
        self.theta, self.at_theta = theta1, e1
        out = LCAStep(lca, residual, splits, float(e0.loss), float(e1.loss), int(e1.correct),
                      clca, hit_max, refined, delta, e0.grad, e1.grad)
        if tap is not None:
            rows = tap.rows().to(example.device)
            L = tap.n_layers
            out.example = example[rows, :L]
            if example.shape[1] > L:  # the split groups' columns follow the layers'
                out.example_group = example[rows, L:]
            out.example_loss_before = loss_before[rows]
            out.example_loss_after = self._example_loss[rows]
        return out

    def _simpson(self, theta0, delta, e0, e1, dL, d0=None, d1=None):
        """Composite Simpson on n intervals, doubling n (adaptive) until accepted."""
        per_class = e0.class_grad is not None
        odd, codd, dodd = self._sum_at(theta0, delta, [0.5])
        s = SimpsonSums(1, e0.grad + e1.grad, odd, torch.zeros_like(odd), odd)
        if per_class:
            s.cends, s.codd = e0.class_grad + e1.class_grad, codd
            s.ceven = torch.zeros_like(codd)
        if dodd is not None:
            s.eends, s.eodd, s.eeven = d0 + d1, dodd, torch.zeros_like(dodd)
        while True:
            lca, clca = _allocate(delta, s.weights(), s.class_weights())
            if self.method == "rk4":
                return lca, clca, s, False
            if self.accepts(dL - float(lca.double().sum()), dL):
                return lca, clca, s, False
            if s.n >= 2**self.max_halvings:
                return lca, clca, s, True
            s = self._double(theta0, delta, s, per_class)

    def _double(self, theta0, delta, s: SimpsonSums, per_class: bool,
                examples: bool = True) -> SimpsonSums:
        """The same sums on 2n intervals: n new gradients, at the new odd nodes."""
        n = 2 * s.n
        odd, codd, dodd = self._sum_at(theta0, delta,
                                       [(2 * k + 1) / (2 * n) for k in range(n)], per_class,
                                       examples)
        out = SimpsonSums(n, s.ends, odd, s.even + s.odd, s.mid)
        if per_class:
            out.cends, out.codd, out.ceven = s.cends, codd, s.ceven + s.codd
        if dodd is not None and s.eends is not None:
            out.eends, out.eodd, out.eeven = s.eends, dodd, s.eeven + s.eodd
        return out

    def refine(self, theta0, delta, e0: Evaluation, e1: Evaluation,
               sums: SimpsonSums | None = None, factor: int = 4) -> Refinement:
        """Integrate the step θ_0 → θ_0 + Δθ again on ``factor``·max(n, 1) Simpson intervals.

        Reuses every node there is: θ_t and θ_{t+1} always, and for rk4/adaptive all the
        step's Simpson nodes (``sums``). From rk4 (n = 1: nodes 0, 1/2, 1) to 4 intervals
        (nodes k/8) only the 6 nodes 1/8, 1/4, 3/8, 5/8, 3/4, 7/8 are new; from adaptive's n
        intervals, 6n; first_order and trapezoid evaluate the midpoint as well (7). Only total
        gradients are evaluated (no per-class split).
        """
        if factor < 2 or factor & (factor - 1):
            raise ValueError(f"refinement factor must be a power of 2 >= 2, got {factor}")
        new = 0
        if sums is None:
            mid, _, _ = self._sum_at(theta0, delta, [0.5], per_class=False, examples=False)
            sums = SimpsonSums(1, e0.grad + e1.grad, mid, torch.zeros_like(mid), mid)
            new = 1
        target = factor * sums.n
        s = SimpsonSums(sums.n, sums.ends, sums.odd, sums.even, sums.mid)  # totals only
        while s.n < target:
            new += 2 * s.n
            s = self._double(theta0, delta, s, per_class=False, examples=False)
        g0, g1 = e0.grad, e1.grad
        rules = {"first_order": delta * g0, "trapezoid": delta * ((g0 + g1) / 2),
                 # the same expression as _simpson's n = 1 weights, so rk4 equals it bit for bit
                 "rk4": delta * ((sums.ends + 4 * sums.mid + 2 * torch.zeros_like(g0)) / 6)}
        return Refinement(delta * s.weights(), s.n, new, rules)

    def _sum_at(self, theta0, delta, fractions, per_class: bool = True, examples: bool = True):
        """Σ of the gradients (and per-class gradients, and per-example D / N: neither for an
        error estimate, which needs only the total gradient) at θ_0 + s·Δθ for each s."""
        obj = self.objective
        was = obj.per_class
        obj.per_class = was and per_class
        try:
            total, ctotal, dtotal = None, None, None
            for s in fractions:
                if examples:
                    e, d = self._evaluate(theta0 + s * delta, d=True)
                else:
                    e, d = obj.evaluate(theta0 + s * delta), None
                total = e.grad if total is None else total + e.grad
                if e.class_grad is not None:
                    ctotal = e.class_grad if ctotal is None else ctotal + e.class_grad
                if d is not None:
                    dtotal = d if dtotal is None else dtotal + d
        finally:
            obj.per_class = was
        return total, ctotal, dtotal


def _allocate(delta, weights, class_weights):
    lca = delta * weights
    clca = delta * class_weights if class_weights is not None else None
    return lca, clca


def layer_sums(values: torch.Tensor, layer_index: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Sum (P,) or (C, P) values per layer → (L,) or (C, L), in float64, on the device."""
    values = values.double()
    out = torch.zeros((*values.shape[:-1], n_layers), dtype=torch.float64, device=values.device)
    return out.index_add_(values.dim() - 1, layer_index, values)
