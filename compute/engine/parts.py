"""What the engine allocates with, built once for either face: the parameter table, the row
layout (``lca_layers``, the row schedule), the integrators of the allocated and validation
sets, the approximation modes (:mod:`compute.engine.approx`) and the named groups.

``lca-run`` (:func:`compute.run.build.build_run`) and ``LCATracker`` both call
:func:`build_lca`; its :class:`LCARun` is what the per-iteration record
(:mod:`compute.engine.record`) reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from compute.data.thumbnails import example_thumbnails
from compute.engine import approx as approx_mode
from compute.engine.approx import Approx
from compute.engine.options import ConfigError, LCAOptions
from compute.lca.integrator import LCAIntegrator
from compute.lca.objective import FullDatasetObjective, per_example_cross_entropy
from compute.lca.params import ParamTable, param_table
from compute.lca.subset import example_subset
from compute.nets.groups import attach_groups
from lcaviz.bundle.schema import RowSchedule, ScheduleError, column_ranges, ranges_index


@dataclass
class TrackedExamples:
    """The examples whose per-example LCA a run records (``per_example``)."""

    index: np.ndarray  # (N_e,) int64 positions in x / y (the training split)
    label: np.ndarray | None  # (N_e,) int64 class labels, or None (targets are not classes)
    thumbnail: np.ndarray | None  # uint8 images for the viewer, or None
    n_allocated: int  # N: the allocated set's size (E carries its 1/N)


@dataclass
class LCARun:
    """Everything the engine needs in memory to allocate one run's steps."""

    cfg: LCAOptions  # the LCA options (lca-run: its whole RunConfig)
    model: nn.Module  # the trained network (never modified by the engine)
    table: ParamTable
    layer_idx: torch.Tensor  # (P,) layer of each parameter, on the device
    x: torch.Tensor  # (N, ...) every example the allocated loss is drawn from
    y: torch.Tensor  # (N,)
    class_names: list[str]
    train_lca: LCAIntegrator
    val_lca: LCAIntegrator | None
    schedule: RowSchedule  # when a per-parameter row closes
    row_ranges: np.ndarray  # (K, 2) parameter ranges with rows (lca_layers)
    row_idx: torch.Tensor | None  # (P_rows,) their flat indices on the device; None = all
    approx: Approx  # which steps are allocated, on which examples (compute/engine/approx.py)
    approx_info: dict  # what the bundle's config records about the allocated loss
    names: list[str] | None = None  # the parameters θ consists of (None: all)
    groups: list | None = None  # named groups finer than layers (attention heads), or None
    group_idx: torch.Tensor | None = None  # (P,) group of each parameter, on the device
    examples: TrackedExamples | None = None  # per-example LCA (per_example), or None
    # per-example LCA of the validation loss (per_example with a validation set), or None:
    # index into the validation split, n_allocated = N_val
    val_examples: TrackedExamples | None = None
    val_data: tuple[torch.Tensor, torch.Tensor] | None = None  # the validation (x, y)

    @property
    def n_row_cols(self) -> int:
        return int((self.row_ranges[:, 1] - self.row_ranges[:, 0]).sum())


def build_lca(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opts: LCAOptions, *,
              n_classes: int, class_names: Sequence[str], seed: int = 0,
              iters: int | None = None, val: tuple[torch.Tensor, torch.Tensor] | None = None,
              names: list[str] | None = None, loss_fn: Callable | None = None,
              chunks: dict | None = None) -> dict:
    """The fields of an :class:`LCARun` for ``model`` allocating the loss of ``(x, y)``.

    Args:
        model: the trained network; its parameters' device is the run's.
        x, y: every example of the allocated loss (``lca_data`` draws a subset of them).
        opts: the LCA options.
        n_classes, class_names: the classes of ``y`` (class_names: one per class).
        seed: seed of the ``lca_data`` subsets. iters: planned iterations (None: unknown;
            ``full_loss_every`` then has no final θ_T evaluation).
        val: a second fixed set whose loss change is allocated too.
        names: the parameters θ consists of (None: all).
        loss_fn: per-example loss (default: cross-entropy).
        chunks: ``chunk_size`` / ``bn_group`` as resolved for the model (default: the options').

    Raises:
        ConfigError: an unknown ``lca_layers`` name, an ``lca_data`` larger than the set.
    """
    device = next(model.parameters()).device
    table = param_table(model, names)
    try:
        ranges = column_ranges(table.offsets, table.layer, table.layer_names, opts.lca_layers)
    except ScheduleError as e:
        raise ConfigError(str(e)) from None
    full = len(ranges) == 1 and ranges[0, 0] == 0 and ranges[0, 1] == table.n_params
    if opts.lca_data is not None and y.is_floating_point():
        raise ConfigError("lca_data draws class-stratified subsets: it needs class labels")
    chunks = chunks or {"chunk_size": opts.chunk_size, "bn_group": opts.bn_group}
    loss_fn = loss_fn or per_example_cross_entropy

    def integrator(xs: torch.Tensor, ys: torch.Tensor, per_class: bool,
                   compile: bool = opts.compile,
                   per_example: torch.Tensor | None = None) -> LCAIntegrator:
        obj = FullDatasetObjective(model, xs, ys, n_classes=n_classes,
                                   chunk_size=chunks["chunk_size"], bn_group=chunks["bn_group"],
                                   per_class=per_class, chunking=opts.chunking,
                                   compile=compile, loss_fn=loss_fn, param_names=names)
        if chunks.get("deprecated"):
            obj.chunk_info["chunk_size_as_bn_group"] = opts.chunk_size
        return LCAIntegrator(obj, opts.method, tol=opts.tol, max_halvings=opts.max_halvings,
                             rtol=opts.rtol, per_example=per_example)

    labels = y.cpu().numpy() if not y.is_floating_point() else np.zeros(len(y), np.int64)
    approx, idx, info = approx_mode.setup(opts, labels, x, y, seed=seed, iters=iters)
    alloc_y = y if idx is None else y[torch.as_tensor(idx, device=y.device)]
    tracked = val_tracked = None
    if opts.per_example is not None:  # positions in the allocated set, drawn by the run's seed
        k = None if opts.per_example == "all" else int(opts.per_example)
        tracked = example_subset(alloc_y, k, seed)
        if val is not None:  # the same drawing on the validation set (all of it or K)
            val_tracked = example_subset(val[1], None if k is None else min(k, len(val[1])),
                                         seed)
    if idx is not None:
        sel = torch.as_tensor(idx, device=x.device)
        train_lca = integrator(x[sel], y[sel.to(y.device)], opts.per_class, per_example=tracked)
    else:
        train_lca = integrator(x, y, opts.per_class, per_example=tracked)
    if opts.full_loss_every > 0:  # forward only, every example
        obj = train_lca.objective
        approx.full = FullDatasetObjective(model, x, y, n_classes=obj.n_classes,
                                           chunk_size=obj.chunk_request, bn_group=obj.bn_group,
                                           chunking=opts.chunking, compile=opts.compile,
                                           loss_fn=loss_fn, param_names=names)
    parts = dict(cfg=opts, model=model, table=table,
                 layer_idx=torch.as_tensor(table.param_layer_index(), device=device), x=x, y=y,
                 class_names=list(class_names), train_lca=train_lca,
                 val_lca=(integrator(*val, False, per_example=val_tracked)
                          if val is not None else None),
                 schedule=opts.row_schedule(), row_ranges=ranges,
                 row_idx=None if full else torch.as_tensor(ranges_index(ranges), device=device),
                 approx=approx, approx_info=info, names=names)
    if tracked is not None:
        pos = tracked.numpy() if idx is None else np.asarray(idx, np.int64)[tracked.numpy()]
        parts["examples"] = TrackedExamples(
            index=pos.astype(np.int64),
            # token labels (N, T) of a language model are no class: no label per example
            label=None if y.is_floating_point() or y.dim() != 1
            else labels[pos].astype(np.int64),
            thumbnail=example_thumbnails(x, torch.as_tensor(pos)), n_allocated=len(alloc_y))
    if val_tracked is not None:
        xv, yv = val
        parts["val_data"] = val
        parts["val_examples"] = TrackedExamples(
            index=val_tracked.numpy().astype(np.int64),
            label=None if yv.is_floating_point() else
            yv.cpu().numpy()[val_tracked.numpy()].astype(np.int64),
            thumbnail=example_thumbnails(xv, val_tracked), n_allocated=len(yv))
    return parts


def with_groups(run: LCARun, groups: list | None) -> LCARun:
    """``run`` with its named groups attached (None or []: none); integrators that track
    per-example values then track those of the groups finer than their layer too."""
    if groups:
        attach_groups(run, groups, run.layer_idx.device)
        for integ in (run.train_lca, run.val_lca):
            if integ is not None and integ.examples is not None:
                integ.examples.set_groups(groups)
    return run


def example_groups(run: LCARun) -> np.ndarray | None:
    """(G_s,) int64 indices into ``run.groups`` of the groups whose per-example values the
    run records (finer than their layer), or None."""
    tap = run.train_lca.examples if run.examples is not None else None
    found = tap.example_groups if tap is not None else None
    return None if found is None else np.asarray(found, np.int64)
