"""The config a tracked run records in its bundle (the layout itself is the engine's,
:func:`compute.engine.layout.run_layout`, as for ``lca-run``)."""

from __future__ import annotations

import torch

from compute.engine.layout import run_layout
from compute.lca.distributed import world
from compute.lca.params import network_name
from lcaviz.bundle.writer import LayoutInfo


def tracker_layout(tracker) -> LayoutInfo:
    """The bundle layout of an :class:`~compute.integrations.tracker.LCATracker` run: the
    engine's layout with the config it records (optimizer settings, options, groups, world
    size)."""
    t, o, model = tracker.run.table, tracker.options, tracker.model
    opt = tracker.optimizer
    groups = [{k: v for k, v in g.items() if k != "params" and _jsonable(v)}
              for g in opt.param_groups] if opt is not None else None
    config = {
        "source": "LCATracker", "net": network_name(model), "dataset": "fixed set",
        "optimizer": type(opt).__name__ if opt is not None else "unknown",
        "optimizer_groups": groups, "lr": groups[0].get("lr") if groups else None,
        "n_examples": len(tracker.x), "loss_fn": getattr(tracker.loss_fn, "__name__", "custom"),
        "parameters": list(t.names), "frozen_params": tracker.frozen,
        "val_lca": tracker.val is not None, **o, "seed": tracker.seed, "iters": tracker.iters,
        **tracker.run.approx_info, "chunks": tracker.integ.objective.chunk_info,
        "groups": None if tracker.groups is None else (
            tracker.groups if isinstance(tracker.groups, str)
            else getattr(tracker.groups, "__name__", type(tracker.groups).__name__)),
        "world_size": world()[1], "backend": torch.distributed.get_backend()
        if world()[1] > 1 else None,
    }
    device = next(model.parameters()).device
    return run_layout(tracker.run, config, device_name=str(device),
                      iters_planned=tracker.iters or 0)


def _jsonable(v) -> bool:
    return isinstance(v, (int, float, str, bool, type(None))) or (
        isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v))
