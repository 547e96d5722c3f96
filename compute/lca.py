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
    ``adaptive``: composite Simpson, doubling the number of intervals until |residual| < tol
        (or ``max_halvings`` doublings); earlier points are all reused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from compute.objective import Evaluation, FullDatasetObjective, LossFn, per_example_cross_entropy
from compute.params import flat_params, param_table

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


class LCAIntegrator:
    """Online LCA along a training path; holds only O(P) state (O(C·P) with per-class).

    Usage: ``integ.start(θ_0)`` once, then ``integ.step(θ_{t+1})`` after each optimizer step.
    """

    def __init__(self, objective: FullDatasetObjective, method: str = "rk4", *,
                 tol: float = 1e-3, max_halvings: int = 8):
        if method not in METHODS:
            raise ValueError(f"unknown LCA method {method!r}; choose one of {', '.join(METHODS)}")
        if tol <= 0:
            raise ValueError(f"tolerance must be positive, got {tol}")
        self.objective = objective
        self.method = method
        self.tol = tol
        self.max_halvings = max_halvings
        self.theta: torch.Tensor | None = None
        self.at_theta: Evaluation | None = None

    def start(self, theta0: torch.Tensor) -> Evaluation:
        """Evaluate the objective at θ_0 and remember it as the next start point."""
        self.theta = theta0.detach().clone()
        self.at_theta = self.objective.evaluate(self.theta)
        return self.at_theta

    def step(self, theta1: torch.Tensor) -> LCAStep:
        """Allocate L(θ_{t+1}) − L(θ_t) for the step to ``theta1``."""
        if self.theta is None:
            raise RuntimeError("call start(theta0) before step()")
        theta0, e0 = self.theta, self.at_theta
        theta1 = theta1.detach().clone()
        delta = theta1 - theta0  # (P,)
        e1 = self.objective.evaluate(theta1)
        dL = float(e1.loss - e0.loss)
        if self.method == "first_order":
            lca, clca = _allocate(delta, e0.grad, e0.class_grad)
            splits = 0
        elif self.method == "trapezoid":
            cw = (e0.class_grad + e1.class_grad) / 2 if e0.class_grad is not None else None
            lca, clca = _allocate(delta, (e0.grad + e1.grad) / 2, cw)
            splits = 1
        else:
            lca, clca, splits = self._simpson(theta0, delta, e0, e1, dL)
        residual = dL - float(lca.double().sum())
        self.theta, self.at_theta = theta1, e1
        return LCAStep(lca, residual, splits, float(e0.loss), float(e1.loss), int(e1.correct),
                       clca)

    def _simpson(self, theta0, delta, e0, e1, dL):
        """Composite Simpson on n intervals with running sums, so doubling n reuses all points.

        ∫_0^1 g ≈ (1/(6n)) [g_0 + 4 Σ g_odd + 2 Σ g_even_interior + g_n], with nodes at k/(2n).
        """
        per_class = e0.class_grad is not None
        ends = e0.grad + e1.grad
        cends = e0.class_grad + e1.class_grad if per_class else None
        odd, codd = self._sum_at(theta0, delta, [0.5])
        even = torch.zeros_like(ends)
        ceven = torch.zeros_like(cends) if per_class else None
        n = 1
        while True:
            w = (ends + 4 * odd + 2 * even) / (6 * n)
            cw = (cends + 4 * codd + 2 * ceven) / (6 * n) if per_class else None
            lca, clca = _allocate(delta, w, cw)
            residual = dL - float(lca.double().sum())
            done = self.method == "rk4" or abs(residual) < self.tol
            if done or n >= 2**self.max_halvings:
                return lca, clca, n
            n *= 2
            even = even + odd
            ceven = ceven + codd if per_class else None
            odd, codd = self._sum_at(theta0, delta, [(2 * k + 1) / (2 * n) for k in range(n)])

    def _sum_at(self, theta0, delta, fractions):
        """Σ of the gradients (and per-class gradients) at θ_0 + s·Δθ for each s."""
        total, ctotal = None, None
        for s in fractions:
            e = self.objective.evaluate(theta0 + s * delta)
            total = e.grad if total is None else total + e.grad
            if e.class_grad is not None:
                ctotal = e.class_grad if ctotal is None else ctotal + e.class_grad
        return total, ctotal


def _allocate(delta, weights, class_weights):
    lca = delta * weights
    clca = delta * class_weights if class_weights is not None else None
    return lca, clca


@dataclass
class LCAResult:
    """LCA along a whole trajectory, on the CPU."""

    lca: torch.Tensor  # (T, P)
    residual: torch.Tensor  # (T,) float64, ΔL − ΣA per iteration: the convergence delta
    splits: torch.Tensor  # (T,) int64
    loss: torch.Tensor  # (T + 1,) float64, full loss at each θ_t
    lca_layer: torch.Tensor  # (T, L) float64
    layer_names: list[str]
    class_lca_layer: torch.Tensor | None = None  # (T, C, L) float64


def compute_lca(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                trajectory: Iterable[torch.Tensor], *, method: str = "rk4", tol: float = 1e-3,
                max_halvings: int = 8, chunk_size: int = 1000, per_class: bool = False,
                n_classes: int | None = None, chunking: str | None = None,
                loss_fn: LossFn = per_example_cross_entropy) -> LCAResult:
    """Loss Change Allocation of any model along a sequence of parameter vectors.

    Args:
        model: any ``nn.Module``; only its architecture is used (it is copied, not modified).
        inputs: the whole dataset whose loss is allocated, (N, ...).
        targets: labels, (N,).
        trajectory: θ_0, θ_1, ..., θ_T as flat vectors (P,) in ``model.parameters()`` order
            (see ``compute.params.flat_params``).
        method: ``"first_order"``, ``"trapezoid"``, ``"rk4"`` or ``"adaptive"``.
        tol: adaptive only: |ΔL − ΣA| each iteration must end below this.
        max_halvings: adaptive only: at most 2**max_halvings Simpson intervals.
        chunk_size: examples per forward/backward pass.
        per_class: also allocate each class's share of the loss.
        n_classes: C; defaults to ``targets.max() + 1`` for integer targets.
        chunking: ``"class"`` or ``"mixed"``, see ``FullDatasetObjective``.
        loss_fn: per-example loss ``(outputs, targets) -> (n,)``.

    Returns:
        LCAResult with per-parameter LCA, per-layer sums and the residual per iteration.
    """
    if n_classes is None:
        n_classes = 1 if targets.is_floating_point() else int(targets.max()) + 1
    objective = FullDatasetObjective(model, inputs, targets, n_classes=n_classes,
                                     chunk_size=chunk_size, per_class=per_class,
                                     chunking=chunking, loss_fn=loss_fn)
    integ = LCAIntegrator(objective, method, tol=tol, max_halvings=max_halvings)
    table = param_table(model)
    layer_idx = torch.as_tensor(table.param_layer_index(), device=flat_params(model).device)
    it = iter(trajectory)
    losses = [float(integ.start(next(it)).loss)]
    rows, residuals, splits, layers, class_layers = [], [], [], [], []
    for theta in it:
        st = integ.step(theta)
        rows.append(st.lca.cpu())
        residuals.append(st.residual)
        splits.append(st.splits)
        losses.append(st.loss_after)
        layers.append(layer_sums(st.lca, layer_idx, table.n_layers).cpu())
        if st.class_lca is not None:
            class_layers.append(layer_sums(st.class_lca, layer_idx, table.n_layers).cpu())
    P = table.n_params
    return LCAResult(
        lca=torch.stack(rows) if rows else torch.zeros((0, P)),
        residual=torch.tensor(residuals, dtype=torch.float64),
        splits=torch.tensor(splits, dtype=torch.int64),
        loss=torch.tensor(losses, dtype=torch.float64),
        lca_layer=torch.stack(layers) if layers else torch.zeros((0, table.n_layers)),
        layer_names=table.layer_names,
        class_lca_layer=torch.stack(class_layers) if class_layers else None,
    )


def layer_sums(values: torch.Tensor, layer_index: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Sum (P,) or (C, P) values per layer → (L,) or (C, L), in float64, on the device."""
    values = values.double()
    out = torch.zeros((*values.shape[:-1], n_layers), dtype=torch.float64, device=values.device)
    return out.index_add_(values.dim() - 1, layer_index, values)
