"""Per-example LCA of one step: E[n, l] = (1/N) Σ_k w_k ∇_{θ_l} ℓ_n(θ_k) · (θ_1 − θ_0)_l,
and the per-example directional derivatives D[n, l] = ∇_{θ_l} ℓ_n(θ) · v_l it is made of.

The nodes θ_k = θ_0 + s_k Δθ and weights w_k are those of
:class:`compute.lca.integrator.LCAIntegrator` (first_order: s = 0; trapezoid: s = 0, 1 with ½, ½;
rk4: Simpson's 0, ½, 1 with ⅙, ⅔, ⅙, combined by :class:`compute.lca.simpson.SimpsonSums` exactly
as the integrator combines its gradients), and D_k[n, l] = ∇_{θ_l} ℓ_n(θ_k) · Δθ_l comes from
:class:`compute.lca.per_example.PerExampleDirectional` (no per-example gradient is formed).

Σ_n E[n, l] is the step's per-layer LCA (:func:`compute.api.compute_lca` ``lca_layer``)
to float rounding, and Σ_l E[n, l] = (ℓ_n(θ_1) − ℓ_n(θ_0))/N up to the quadrature residual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from compute.lca.ghost_bn import set_chunk
from compute.lca.objective import FullDatasetObjective, LossFn, per_example_cross_entropy
from compute.lca.params import as_flat
from compute.lca.per_example import PerExampleDirectional
from compute.lca.simpson import SimpsonSums


def _objective(model, x, y, *, loss_fn, chunk_size, chunking, param_names, n_classes):
    if n_classes is None:
        n_classes = 1 if y.is_floating_point() else int(y.max()) + 1
    if chunking not in (None, "mixed"):
        raise ValueError("per-example values keep the data order: chunking must be 'mixed'")
    return FullDatasetObjective(model, x, y, n_classes=n_classes, chunk_size=chunk_size,
                                chunking="mixed", loss_fn=loss_fn, param_names=param_names)


def _flat(model: nn.Module, params: Sequence[nn.Parameter], value) -> torch.Tensor:
    """A direction or θ as a flat vector: flat (P,), a list of tensors shaped like
    ``params``, or a state dict / {name: tensor} mapping (all parameters)."""
    if isinstance(value, torch.Tensor):
        return value.reshape(-1)
    if isinstance(value, Mapping):
        return as_flat(model, value)
    parts = list(value)
    if len(parts) != len(params):
        raise ValueError(f"a direction needs one tensor per parameter ({len(params)}), got "
                         f"{len(parts)}")
    for v, p in zip(parts, params, strict=True):
        if tuple(v.shape) != tuple(p.shape):
            raise ValueError(f"direction tensor of shape {tuple(v.shape)} for a parameter of "
                             f"shape {tuple(p.shape)}")
    return torch.cat([v.reshape(-1) for v in parts])


def per_example_directional(model: nn.Module, x: torch.Tensor, y: torch.Tensor, direction, *,
                            theta=None, loss_fn: LossFn = per_example_cross_entropy,
                            chunk_size: int = 1000, chunking: str | None = None,
                            param_names: Sequence[str] | None = None, mode: str = "auto",
                            n_classes: int | None = None, check: bool = True) -> torch.Tensor:
    """D[n, l] = ∇_{θ_l} ℓ_n(θ) · v_l for every example and layer (see the module docstring).

    Args:
        model: any ``nn.Module`` (copied as :class:`FullDatasetObjective` copies it).
        x: inputs (N, ...); y: targets (N,).
        direction: v: a flat vector (P,), one tensor per parameter (same shapes, in
            ``named_parameters()`` order) or a {name: tensor} mapping.
        theta: where to differentiate (flat or state dict); default the model's parameters.
        loss_fn: per-example loss ``(outputs, y) -> (n,)``, as the objective's.
        chunk_size: examples per pass (for BatchNorm networks part of the loss definition).
        chunking: None or ``"mixed"`` (the data order is kept).
        param_names: θ consists of these parameters (default all); layers as
            ``param_table(model, param_names)``.
        mode: ``"auto"``, ``"hooks"`` or ``"forward"`` (see :class:`PerExampleDirectional`).
        n_classes: C (only passed on to the objective).
        check: hooks mode's sum check (see :class:`PerExampleDirectional`).

    Returns:
        (N, L) float64, rows in the order of ``x``.
    """
    obj = _objective(model, x, y, loss_fn=loss_fn, chunk_size=chunk_size, chunking=chunking,
                     param_names=param_names, n_classes=n_classes)
    engine = PerExampleDirectional(obj, mode, check=check)
    try:
        th = _flat(model, obj.params, theta) if theta is not None else torch.cat(
            [p.detach().reshape(-1) for p in obj.params])
        v = _flat(model, obj.params, direction)
        return engine.evaluate(th.to(obj.params[0]), v.to(obj.params[0]))[1]
    finally:
        engine.close()


PER_EXAMPLE_METHODS = ("first_order", "trapezoid", "rk4")


@dataclass
class PerExampleStep:
    """One step's per-example allocation, float64, rows in the order of the inputs."""

    lca: torch.Tensor  # (N, L): E[n, l]; Σ_n = the per-layer LCA, Σ_l ≈ Δℓ_n / N
    loss_before: torch.Tensor  # (N,) ℓ_n(θ_0)
    loss_after: torch.Tensor  # (N,) ℓ_n(θ_1)
    layer_names: list[str]
    method: str
    repaired: list[str]  # layers the hooks' sum check recomputed by forward mode

    @property
    def residual(self) -> torch.Tensor:
        """(N,) Δℓ_n / N − Σ_l E[n, l]: the per-example quadrature residual."""
        return (self.loss_after - self.loss_before) / len(self.loss_after) - self.lca.sum(1)


def per_example_step_lca(model: nn.Module, x: torch.Tensor, y: torch.Tensor, theta0, theta1, *,
                         method: str = "rk4", loss_fn: LossFn = per_example_cross_entropy,
                         chunk_size: int = 1000, chunking: str | None = None,
                         param_names: Sequence[str] | None = None, mode: str = "auto",
                         n_classes: int | None = None, check: bool = True) -> PerExampleStep:
    """Per-example, per-layer LCA of the step θ_0 → θ_1 (see the module docstring).

    Args:
        model: any ``nn.Module`` (only its architecture and buffers are used).
        x, y: the examples whose mean loss is allocated, (N, ...) and (N,).
        theta0, theta1: the step's ends: flat vectors (P,) or state dicts.
        method: ``"first_order"``, ``"trapezoid"`` or ``"rk4"`` (1, 2 or 3 passes).
        loss_fn, chunk_size, chunking, param_names, mode, n_classes, check: as
            :func:`compute.lca.per_example.per_example_directional`.

    Returns:
        :class:`PerExampleStep`.

    Raises:
        ValueError: an unknown method (adaptive refinement is not part of this step yet).
    """
    if method not in PER_EXAMPLE_METHODS:
        raise ValueError(f"per-example LCA method must be one of "
                         f"{', '.join(PER_EXAMPLE_METHODS)}, got {method!r}")
    obj = _objective(model, x, y, loss_fn=loss_fn, chunk_size=chunk_size, chunking=chunking,
                     param_names=param_names, n_classes=n_classes)
    engine = PerExampleDirectional(obj, mode, check=check)
    ref = obj.params[0]
    try:
        t0 = _flat(model, obj.params, theta0).detach().to(ref)
        t1 = _flat(model, obj.params, theta1).detach().to(ref)
        delta = t1 - t0  # as the integrator forms it
        loss0, d0 = engine.evaluate(t0, delta)
        if method == "first_order":
            with torch.no_grad():
                loss1, _ = _losses(engine, t1)
            weighted = d0
        else:
            loss1, d1 = engine.evaluate(t1, delta)
            if method == "trapezoid":
                weighted = (d0 + d1) / 2
            else:
                _, dmid = engine.evaluate(t0 + 0.5 * delta, delta)
                weighted = SimpsonSums(1, d0 + d1, dmid, torch.zeros_like(dmid), dmid).weights()
    finally:
        engine.close()
    return PerExampleStep(weighted / obj.n, loss0, loss1, engine.layer_names, method,
                          list(engine.repaired))


def _losses(engine: PerExampleDirectional, theta: torch.Tensor) -> tuple[torch.Tensor, None]:
    """ℓ_n(θ), (N,) float64, from forward passes only."""
    obj = engine.objective
    obj.size_chunks()
    obj.set_theta(theta)
    out = torch.zeros(obj.n, dtype=torch.float64, device=obj.y.device)
    for s, e, _ in obj.chunks:
        set_chunk(obj._groups, e - s)  # a chunk of several BatchNorm groups (ghost BatchNorm)
        out[s:e] = obj.loss_fn(obj.model(obj.x[s:e]), obj.y[s:e]).double()
    return out, None
