"""A reference run in memory: data, model and optimizer from a :class:`RunConfig`, and the
engine's integrators (:func:`compute.engine.parts.build_lca`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from compute.data.datasets import TensorDataset, load_splits
from compute.data.noise import flip_labels
from compute.engine.parts import LCARun, build_lca, with_groups
from compute.lca.backends import set_matmul_precision
from compute.lca.host_copy import HostCopies
from compute.lca.objective import resolve_chunking
from compute.nets.groups import component_groups
from compute.nets.models import build_model
from compute.run.config import ConfigError, RunConfig, check_memory_format
from compute.run.defaults import cuda_backend_defaults, run_chunks
from compute.run.optim import build_optimizer


@dataclass
class Run(LCARun):
    """Everything an ``lca-run`` run needs in memory: the engine's :class:`LCARun` (``x``,
    ``y``: the training set on the device) and the optimizer that trains the reference net."""

    optimizer: torch.optim.Optimizer | None = None
    precision_flags: dict = field(default_factory=dict)  # effective TF32 / fp32 settings
    host_copies: HostCopies | None = None  # the record's host copies (pinned + async on CUDA)
    label_noise: dict | None = None  # --label-noise: fraction, seed, flipped, original


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
    noise = None
    if cfg.label_noise > 0:  # the minibatches and the allocated loss both see the noisy labels
        y_noisy, flipped, original = flip_labels(train.y, cfg.label_noise, train.n_classes,
                                                 cfg.seed)
        train = TensorDataset(train.x, y_noisy, train.class_names, train.name)
        noise = {"fraction": float(cfg.label_noise), "seed": int(cfg.seed),
                 "flipped": flipped.numpy(), "original": original.numpy()}
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
    x, y = train.x.to(device=device, dtype=dtype, memory_format=layout), train.y.to(device)
    val = (splits.val.x.to(dtype, memory_format=layout), splits.val.y) if cfg.val_lca else None
    parts = build_lca(model, x, y, cfg, n_classes=train.n_classes,
                      class_names=train.class_names, seed=cfg.seed, iters=cfg.iters, val=val,
                      chunks=chunks)
    run = Run(**parts, optimizer=optimizer, precision_flags=flags)
    run.host_copies = HostCopies(device)
    run.label_noise = noise
    groups = component_groups(model)
    # only models with finer components (heads) get groups
    return with_groups(run, groups if len(groups) > run.table.n_layers else None)
