"""The bundle layout of a run, built in one place for both faces: the parameter table, the
row layout, which optional datasets the options ask for, the software and the config."""

from __future__ import annotations

import platform

import h5py
import numpy as np
import torch

from compute import __version__
from compute.engine.parts import LCARun
from lcaviz.bundle.writer import LayoutInfo


def software() -> dict:
    """The versions a bundle records."""
    return {"lca_explorer": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "h5py": h5py.__version__}


def run_layout(run: LCARun, config: dict, *, device_name: str,
               iters_planned: int | None = None) -> LayoutInfo:
    """The :class:`~lcaviz.bundle.writer.LayoutInfo` of ``run`` with the face's ``config``
    (what the bundle's ``config`` attribute records)."""
    t, o = run.table, run.cfg
    return LayoutInfo(t.names, t.shapes, t.offsets, t.layer, t.module_type, t.layer_names,
                      list(run.class_names), config, o.method, iters_planned=iters_planned,
                      per_class=o.per_class, val_lca=run.val_lca is not None,
                      save_trajectory=o.save_trajectory, device_name=device_name,
                      software=software(), row_schedule=run.schedule.spec,
                      row_columns=run.row_ranges, lca_storage=o.lca_storage,
                      compression=o.lca_compression, lca_error_every=o.lca_error_every,
                      max_halvings_flags=o.method == "adaptive", oscillation_counters=True,
                      lca_every=o.lca_every, full_loss_every=o.full_loss_every,
                      loss_change=o.lca_data_resample,
                      allocated_loss=run.approx_info["allocated_loss"], groups=run.groups,
                      counterfactual_every=o.counterfactual_every)
