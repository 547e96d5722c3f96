"""A reference run in memory: data, model, optimizer and integrators from a :class:`RunConfig`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from compute.data.datasets import TensorDataset, load_splits
from compute.lca.backends import set_matmul_precision
from compute.lca.host_copy import HostCopies
from compute.lca.integrator import LCAIntegrator
from compute.lca.objective import FullDatasetObjective, resolve_chunking
from compute.lca.params import ParamTable, param_table
from compute.nets.groups import attach_groups, component_groups
from compute.nets.models import build_model
from compute.run import approx as approx_mode
from compute.run.approx import Approx
from compute.run.config import ConfigError, RunConfig, check_memory_format
from compute.run.defaults import cuda_backend_defaults, run_chunks
from compute.run.optim import build_optimizer
from lcaviz.bundle.schema import RowSchedule, ScheduleError, column_ranges, ranges_index


@dataclass
class Run:
    """Everything a run needs in memory."""

    cfg: RunConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    table: ParamTable
    layer_idx: torch.Tensor  # (P,) layer of each parameter, on the device
    x: torch.Tensor  # (N, ...) training inputs on the device
    y: torch.Tensor  # (N,)
    class_names: list[str]
    train_lca: LCAIntegrator
    val_lca: LCAIntegrator | None
    precision_flags: dict  # the effective TF32 / fp32 settings (recorded in the bundle)
    schedule: RowSchedule  # when a per-parameter row closes
    row_ranges: np.ndarray  # (K, 2) parameter ranges with rows (--lca-layers)
    row_idx: torch.Tensor | None  # (P_rows,) their flat indices on the device; None = all
    approx: Approx  # which steps are allocated, on which examples (compute/run/approx.py)
    approx_info: dict  # what the bundle's config records about the allocated loss
    groups: list | None = None  # named groups finer than layers (attention heads), or None
    group_idx: torch.Tensor | None = None  # (P,) group of each parameter, on the device
    host_copies: HostCopies | None = None  # the record's host copies (pinned + async on CUDA)

    @property
    def n_row_cols(self) -> int:
        return int((self.row_ranges[:, 1] - self.row_ranges[:, 0]).sum())


def build_run(cfg: RunConfig) -> Run:
    """Load data, build the model and optimizer, and set up the LCA integrators."""
    cfg.validate()
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA device")
    flags = set_matmul_precision(device, cfg.allow_tf32)  # before any CUDA kernel runs
    flags.update(cuda_backend_defaults(device))
    dtype = torch.float64 if cfg.precision == "float64" else torch.float32
    modular = ({"modulus": cfg.modulus, "train_fraction": cfg.train_fraction}
               if cfg.dataset == "modular-addition" else {})
    splits = load_splits(cfg.dataset, cfg.data_root, rgb32=cfg.rgb32, train_size=cfg.train_size,
                         val_size=cfg.val_size, seed=cfg.seed, **modular)
    train = splits.train
    if cfg.batch_size > len(train):
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the training set "
                          f"({len(train)} examples)")
    model = build_model(cfg.net, train.input_shape, train.n_classes, seed=cfg.seed)
    model = model.to(device=device, dtype=dtype)
    check_memory_format(cfg.memory_format, train.input_shape)
    nhwc = cfg.memory_format == "channels_last"
    layout = torch.channels_last if nhwc else torch.contiguous_format
    model = model.to(memory_format=layout)  # flat θ keeps the logical order either way
    if cfg.compile and cfg.per_class and resolve_chunking(cfg.chunking, True, model) == "mixed":
        raise ConfigError("--compile cannot split per class in mixed chunks (BatchNorm nets): "
                          "its compiled backward cannot be retained for one pass per class; "
                          "add --no-per-class (or --chunking class for nets without BatchNorm)")
    chunks = run_chunks(cfg, model)  # --chunk-size / --bn-group against this model
    optimizer = build_optimizer(model, cfg)
    table = param_table(model)
    try:
        ranges = column_ranges(table.offsets, table.layer, table.layer_names, cfg.lca_layers)
    except ScheduleError as e:
        raise ConfigError(str(e)) from None
    full = len(ranges) == 1 and ranges[0, 0] == 0 and ranges[0, 1] == table.n_params
    row_idx = None if full else torch.as_tensor(ranges_index(ranges), device=device)

    def integrator(ds, per_class: bool) -> LCAIntegrator:
        obj = FullDatasetObjective(model, ds.x.to(dtype, memory_format=layout), ds.y,
                                   n_classes=train.n_classes,
                                   chunk_size=chunks["chunk_size"], bn_group=chunks["bn_group"],
                                   per_class=per_class, chunking=cfg.chunking,
                                   compile=cfg.compile)
        if chunks["deprecated"]:
            obj.chunk_info["chunk_size_as_bn_group"] = cfg.chunk_size
        return LCAIntegrator(obj, cfg.method, tol=cfg.tol, max_halvings=cfg.max_halvings,
                             rtol=cfg.rtol)

    x, y = train.x.to(device=device, dtype=dtype, memory_format=layout), train.y.to(device)
    approx, idx, info = approx_mode.setup(cfg, train, x, y)
    allocated = train if idx is None else TensorDataset(
        train.x[torch.as_tensor(idx)], train.y[torch.as_tensor(idx)], train.class_names,
        train.name)
    run = Run(cfg, model, optimizer, table,
              torch.as_tensor(table.param_layer_index(), device=device), x, y,
              train.class_names, integrator(allocated, cfg.per_class),
              integrator(splits.val, False) if cfg.val_lca else None,
              flags, cfg.row_schedule(), ranges, row_idx, approx, info)
    approx.full = approx_mode.full_objective(run, cfg)
    run.host_copies = HostCopies(device)
    groups = component_groups(model)
    if len(groups) > table.n_layers:  # only models with finer components (heads) get groups
        attach_groups(run, groups, device)
    return run
