"""The bundle layout (parameter table, recorded config, software) of a tracked run."""

from __future__ import annotations

import platform

import h5py
import numpy as np
import torch

from compute import __version__
from compute.lca.distributed import world
from compute.lca.params import network_name
from lcaviz.bundle.writer import LayoutInfo


def tracker_layout(tracker) -> LayoutInfo:
    """The bundle layout of an :class:`~compute.integrations.tracker.LCATracker` run: its parameter
    table, the config it records (optimizer settings, options, groups, world size) and software."""
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
        "val_lca": tracker.val is not None, **o, "chunks": tracker.integ.objective.chunk_info,
        "groups": None if tracker.groups is None else (
            tracker.groups if isinstance(tracker.groups, str)
            else getattr(tracker.groups, "__name__", type(tracker.groups).__name__)),
        "world_size": world()[1], "backend": torch.distributed.get_backend()
        if world()[1] > 1 else None,
    }
    device = next(model.parameters()).device
    software = {"lca_explorer": __version__, "python": platform.python_version(),
                "torch": torch.__version__, "numpy": np.__version__,
                "h5py": h5py.__version__}
    return LayoutInfo(
        t.names, t.shapes, t.offsets, t.layer, t.module_type, t.layer_names,
        [str(c) for c in range(tracker.n_classes)], config, o["method"],
        per_class=o["per_class"], val_lca=tracker.val is not None,
        device_name=str(device), software=software, row_schedule=tracker.run.schedule.spec,
        row_columns=tracker.run.row_ranges, lca_storage=o["lca_storage"],
        compression=o["lca_compression"], max_halvings_flags=o["method"] == "adaptive",
        oscillation_counters=True, groups=tracker.run.groups)


def _jsonable(v) -> bool:
    return isinstance(v, (int, float, str, bool, type(None))) or (
        isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v))
