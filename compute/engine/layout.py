"""The bundle layout of a run, built in one place for both faces: the parameter table, the
row layout, which optional datasets the options ask for, the software and the config."""

from __future__ import annotations

import platform

import h5py
import numpy as np
import torch

from compute import __version__
from compute.engine.parts import LCARun, example_groups
from lcaviz.bundle.examples import ExampleInfo
from lcaviz.bundle.writer import LayoutInfo


def software() -> dict:
    """The versions a bundle records."""
    return {"lca_explorer": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "h5py": h5py.__version__}


def run_layout(run: LCARun, config: dict, *, device_name: str,
               iters_planned: int | None = None, example_texts: list[str] | None = None,
               label_noise: dict | None = None,
               val_example_texts: list[str] | None = None) -> LayoutInfo:
    """The :class:`~lcaviz.bundle.writer.LayoutInfo` of ``run`` with the face's ``config``
    (what the bundle's ``config`` attribute records).

    Args:
        run: the engine's run.
        config: what the face records.
        device_name: the device, in words.
        iters_planned: iterations asked for (None: unknown).
        example_texts: one line per tracked example for the viewer (modular addition).
        label_noise: ``fraction``, ``seed``, ``flipped``, ``original`` of a run whose labels
            were flipped (lca-run ``--label-noise``), or None.
        val_example_texts: the same for the tracked validation examples.
    """
    t, o = run.table, run.cfg
    examples = None
    if run.examples is not None:
        e = run.examples
        examples = ExampleInfo(index=e.index, label=e.label, thumbnail=e.thumbnail,
                               text=example_texts)
        config = {**config, "per_example_of": e.n_allocated}  # N of E's 1/N
    val_examples = None
    if getattr(run, "val_examples", None) is not None:  # index into the validation split
        e = run.val_examples
        val_examples = ExampleInfo(index=e.index, label=e.label, thumbnail=e.thumbnail,
                                   text=val_example_texts)
        config = {**config, "per_example_val_of": e.n_allocated}  # N_val of E_val's 1/N_val
    found = example_groups(run) if examples is not None and run.groups else None
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
                      counterfactual_every=o.counterfactual_every, examples=examples,
                      label_noise=label_noise, val_examples=val_examples,
                      example_groups=found)
