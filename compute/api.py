"""The one verb: :func:`compute_lca` allocates a whole trajectory (θ_0, θ_1, ...) of any model.

With ``out=`` an :class:`~compute.integrations.tracker.LCATracker` writes the bundle, so this
module sits above both the integrator and the tracker.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compute.integrations.tracker import LCATracker
from compute.lca.context import in_engine_context
from compute.lca.integrator import LCAIntegrator, LCAStep, layer_sums
from compute.lca.objective import FullDatasetObjective, LossFn, per_example_cross_entropy
from compute.lca.params import as_flat, flat_params, load_flat_params, param_table


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
            order (see ``compute.lca.params.flat_params``) or a state dict
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
