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

Error estimate (``step(θ, refine=True)``): the same step is integrated again with composite
Simpson on 4× the intervals (4·max(splits, 1)), reusing every node the step already has
(see :meth:`LCAIntegrator.refine`); ``compute.lca_error`` turns it into per-parameter errors.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compute.context import in_engine_context
from compute.objective import Evaluation, FullDatasetObjective, LossFn, per_example_cross_entropy
from compute.params import as_flat, flat_params, load_flat_params, param_table
from compute.simpson import Refinement, SimpsonSums

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


class LCAIntegrator:
    """Online LCA along a training path; holds only O(P) state (O(C·P) with per-class).

    Usage: ``integ.start(θ_0)`` once, then ``integ.step(θ_{t+1})`` after each optimizer step.
    """

    def __init__(self, objective: FullDatasetObjective, method: str = "rk4", *,
                 tol: float = 1e-3, max_halvings: int = 8, rtol: float = 0.0):
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

    @in_engine_context  # gradients on, autocast off, whatever the caller's context
    def start(self, theta0: torch.Tensor) -> Evaluation:
        """Evaluate the objective at θ_0 and remember it as the next start point."""
        self.theta = theta0.detach().clone()
        self.at_theta = self.objective.evaluate(self.theta)
        return self.at_theta

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
        e1 = self.objective.evaluate(theta1)
        dL = float(e1.loss - e0.loss)
        sums, hit_max = None, False
        if self.method == "first_order":
            lca, clca = _allocate(delta, e0.grad, e0.class_grad)
            splits = 0
        elif self.method == "trapezoid":
            cw = (e0.class_grad + e1.class_grad) / 2 if e0.class_grad is not None else None
            lca, clca = _allocate(delta, (e0.grad + e1.grad) / 2, cw)
            splits = 1
        else:
            lca, clca, sums, hit_max = self._simpson(theta0, delta, e0, e1, dL)
            splits = sums.n
        residual = dL - float(lca.double().sum())
        refined = self.refine(theta0, delta, e0, e1, sums) if refine else None
        self.theta, self.at_theta = theta1, e1
        return LCAStep(lca, residual, splits, float(e0.loss), float(e1.loss), int(e1.correct),
                       clca, hit_max, refined, delta, e0.grad, e1.grad)

    def _simpson(self, theta0, delta, e0, e1, dL):
        """Composite Simpson on n intervals, doubling n (adaptive) until accepted."""
        per_class = e0.class_grad is not None
        odd, codd = self._sum_at(theta0, delta, [0.5])
        s = SimpsonSums(1, e0.grad + e1.grad, odd, torch.zeros_like(odd), odd)
        if per_class:
            s.cends, s.codd = e0.class_grad + e1.class_grad, codd
            s.ceven = torch.zeros_like(codd)
        while True:
            lca, clca = _allocate(delta, s.weights(), s.class_weights())
            if self.method == "rk4":
                return lca, clca, s, False
            if self.accepts(dL - float(lca.double().sum()), dL):
                return lca, clca, s, False
            if s.n >= 2**self.max_halvings:
                return lca, clca, s, True
            s = self._double(theta0, delta, s, per_class)

    def _double(self, theta0, delta, s: SimpsonSums, per_class: bool) -> SimpsonSums:
        """The same sums on 2n intervals: n new gradients, at the new odd nodes."""
        n = 2 * s.n
        odd, codd = self._sum_at(theta0, delta, [(2 * k + 1) / (2 * n) for k in range(n)],
                                 per_class)
        out = SimpsonSums(n, s.ends, odd, s.even + s.odd, s.mid)
        if per_class:
            out.cends, out.codd, out.ceven = s.cends, codd, s.ceven + s.codd
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
            mid, _ = self._sum_at(theta0, delta, [0.5], per_class=False)
            sums = SimpsonSums(1, e0.grad + e1.grad, mid, torch.zeros_like(mid), mid)
            new = 1
        target = factor * sums.n
        s = SimpsonSums(sums.n, sums.ends, sums.odd, sums.even, sums.mid)  # totals only
        while s.n < target:
            new += 2 * s.n
            s = self._double(theta0, delta, s, per_class=False)
        g0, g1 = e0.grad, e1.grad
        rules = {"first_order": delta * g0, "trapezoid": delta * ((g0 + g1) / 2),
                 # the same expression as _simpson's n = 1 weights, so rk4 equals it bit for bit
                 "rk4": delta * ((sums.ends + 4 * sums.mid + 2 * torch.zeros_like(g0)) / 6)}
        return Refinement(delta * s.weights(), s.n, new, rules)

    def _sum_at(self, theta0, delta, fractions, per_class: bool = True):
        """Σ of the gradients (and per-class gradients) at θ_0 + s·Δθ for each s."""
        obj = self.objective
        was = obj.per_class
        obj.per_class = was and per_class  # an error estimate needs only the total gradient
        try:
            total, ctotal = None, None
            for s in fractions:
                e = obj.evaluate(theta0 + s * delta)
                total = e.grad if total is None else total + e.grad
                if e.class_grad is not None:
                    ctotal = e.class_grad if ctotal is None else ctotal + e.class_grad
        finally:
            obj.per_class = was
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
    hit_max: torch.Tensor | None = None  # (T,) bool: adaptive steps that hit max_halvings


@in_engine_context  # the objective's copy of the model too, whatever the caller's context
def compute_lca(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                trajectory: Iterable[torch.Tensor | Mapping[str, torch.Tensor]], *,
                method: str = "rk4", tol: float = 1e-3,
                max_halvings: int = 8, chunk_size: int | str = "auto", per_class: bool = False,
                n_classes: int | None = None, chunking: str | None = None,
                loss_fn: LossFn = per_example_cross_entropy, rtol: float = 0.0,
                bn_group: int | None = None, out: str | Path | None = None,
                overwrite: bool = False) -> LCAResult:
    """Loss Change Allocation of any model along a sequence of parameter vectors.

    Args:
        model: any ``nn.Module``; only its architecture is used (it is copied, not modified).
        inputs: the whole dataset whose loss is allocated, (N, ...).
        targets: labels, (N,).
        trajectory: θ_0, θ_1, ..., θ_T, each a flat vector (P,) in ``model.parameters()``
            order (see ``compute.params.flat_params``) or a state dict
            (``model.state_dict()``, also with a ``module.``/``_orig_mod.`` prefix).
        method: ``"first_order"``, ``"trapezoid"``, ``"rk4"`` or ``"adaptive"``.
        tol: adaptive only: |ΔL − ΣA| each iteration must end below this.
        rtol: adaptive only: if > 0, |ΔL − ΣA| must also be <= rtol·|ΔL|.
        max_halvings: adaptive only: at most 2**max_halvings Simpson intervals.
        chunk_size: examples per forward/backward pass, or ``"auto"`` (the largest that fits
            the memory budget); bn_group: BatchNorm models' normalisation group (default
            1000). See ``FullDatasetObjective``.
        per_class: also allocate each class's share of the loss.
        n_classes: C; defaults to ``targets.max() + 1`` for integer targets.
        chunking: ``"class"`` or ``"mixed"``, see ``FullDatasetObjective``.
        loss_fn: per-example loss ``(outputs, targets) -> (n,)``.
        out: also write the result as a run bundle there (as ``LCATracker`` does, one
            per-parameter row per iteration), for the dashboard; an existing file is refused
            unless ``overwrite``. Not with ``chunking`` or ``rtol``.

    Returns:
        LCAResult with per-parameter LCA, per-layer sums and the residual per iteration.

    Raises:
        ValueError: a state dict without one of the model's parameters, or ``out`` with
            ``chunking``/``rtol``.
    """
    if n_classes is None:
        n_classes = 1 if targets.is_floating_point() else int(targets.max()) + 1
    table = param_table(model)
    layer_idx = torch.as_tensor(table.param_layer_index(), device=flat_params(model).device)
    thetas = (as_flat(model, theta) for theta in trajectory)
    losses, rows, residuals, splits, layers, class_layers, capped = [], [], [], [], [], [], []

    def account(st: LCAStep) -> None:
        rows.append(st.lca.cpu())
        residuals.append(st.residual)
        splits.append(st.splits)
        capped.append(st.hit_max)
        losses.append(st.loss_after)
        layers.append(layer_sums(st.lca, layer_idx, table.n_layers).cpu())
        if st.class_lca is not None:
            class_layers.append(layer_sums(st.class_lca, layer_idx, table.n_layers).cpu())

    if out is None:
        objective = FullDatasetObjective(model, inputs, targets, n_classes=n_classes,
                                         chunk_size=chunk_size, per_class=per_class,
                                         chunking=chunking, loss_fn=loss_fn, bn_group=bn_group)
        integ = LCAIntegrator(objective, method, tol=tol, max_halvings=max_halvings, rtol=rtol)
        losses.append(float(integ.start(next(thetas)).loss))
        for theta in thetas:
            account(integ.step(theta))
    else:
        if chunking is not None or rtol:
            raise ValueError("compute_lca(out=...): chunking and rtol cannot be written as a "
                             "bundle (LCATracker writes it, with the default chunking and no "
                             "rtol); leave them out, or leave out out=")
        _tracked(model, inputs, targets, thetas, account, losses, Path(out), overwrite,
                 method=method, tol=tol, max_halvings=max_halvings, chunk_size=chunk_size,
                 per_class=per_class, n_classes=n_classes, loss_fn=loss_fn, bn_group=bn_group)
    P = table.n_params
    return LCAResult(
        lca=torch.stack(rows) if rows else torch.zeros((0, P)),
        residual=torch.tensor(residuals, dtype=torch.float64),
        splits=torch.tensor(splits, dtype=torch.int64),
        loss=torch.tensor(losses, dtype=torch.float64),
        lca_layer=torch.stack(layers) if layers else torch.zeros((0, table.n_layers)),
        layer_names=table.layer_names,
        class_lca_layer=torch.stack(class_layers) if class_layers else None,
        hit_max=torch.tensor(capped, dtype=torch.bool),
    )


def _tracked(model: nn.Module, inputs, targets, thetas, account, losses: list, out: Path,
             overwrite: bool, **options) -> None:
    """compute_lca's path with ``out``: an LCATracker drives a copy of ``model`` along the
    trajectory, so the bundle is the one a tracked run writes; ``account`` gets each step."""
    from compute.tracker import LCATracker  # the tracker builds on this module

    net = copy.deepcopy(model)
    for p in net.parameters():
        p.requires_grad_(True)  # θ is every parameter, as without out
    load_flat_params(net, next(thetas))
    with LCATracker(net, inputs, targets, out=out, overwrite=overwrite, **options) as lca:
        for theta in thetas:
            load_flat_params(net, theta)
            st = lca.step()
            if st is None:  # the tracker ignores a step that moves nothing (a doubled call)
                raise ValueError("compute_lca(out=...): two consecutive thetas are equal; a "
                                 "tracked bundle allocates only steps that move θ")
            if not losses:
                losses.append(st.loss_before)
            account(st)
    if not losses:  # θ_0 only: its loss is the bundle's
        from lcaviz.bundle import RunBundle

        with RunBundle.open(out) as b:
            losses.append(float(b.loss_train()[0]))


def layer_sums(values: torch.Tensor, layer_index: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Sum (P,) or (C, P) values per layer → (L,) or (C, L), in float64, on the device."""
    values = values.double()
    out = torch.zeros((*values.shape[:-1], n_layers), dtype=torch.float64, device=values.device)
    return out.index_add_(values.dim() - 1, layer_index, values)
