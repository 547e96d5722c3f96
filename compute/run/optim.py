"""Optimizers (SGD, Adam, AdamW) with per-layer learning-rate, momentum and freeze overrides.

Overrides name a layer (``fc3``) or a module prefix (``layer3`` covers ``layer3.0.conv1`` ...),
so the paper's last-layer experiments are one flag each: ``--freeze fc3``,
``--layer-lr fc3=0.001``, ``--layer-momentum fc3=0.5``.
"""

from __future__ import annotations

import torch
from torch import nn

from compute.lca.params import param_table
from compute.run.config import ConfigError, RunConfig


def _matches(layer_name: str, key: str) -> bool:
    return layer_name == key or layer_name.startswith(key + ".")


def _resolve(keys, layer_names: list[str], flag: str) -> None:
    for key in keys:
        if not any(_matches(n, key) for n in layer_names):
            raise ConfigError(f"{flag} {key!r} names no layer; "
                              f"layers are: {', '.join(layer_names)}")


def _override(overrides: dict[str, float], layer_name: str, default: float) -> float:
    """The most specific (longest) matching key wins."""
    hits = [k for k in overrides if _matches(layer_name, k)]
    return overrides[max(hits, key=len)] if hits else default


def build_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """One parameter group per layer, carrying that layer's settings.

    Frozen layers get ``requires_grad=False`` and are left out of the optimizer, so their Δθ,
    and hence their LCA, is exactly zero.
    """
    table = param_table(model)
    _resolve(cfg.layer_lr, table.layer_names, "--layer-lr")
    _resolve(cfg.layer_momentum, table.layer_names, "--layer-momentum")
    _resolve(cfg.freeze, table.layer_names, "--freeze")
    params = list(model.parameters())
    groups = []
    for k, name in enumerate(table.layer_names):
        members = [params[i] for i in range(len(params)) if table.layer[i] == k]
        if any(_matches(name, key) for key in cfg.freeze):
            for p in members:
                p.requires_grad_(False)
            continue
        group = {"params": members, "lr": _override(cfg.layer_lr, name, cfg.lr), "name": name}
        if cfg.optimizer == "sgd":
            group["momentum"] = _override(cfg.layer_momentum, name, cfg.momentum)
        groups.append(group)
    if not groups:
        raise ConfigError("every layer is frozen: nothing would train")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":  # decoupled weight decay (Loshchilov & Hutter)
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas,
                                 weight_decay=cfg.weight_decay)
    return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
