"""The flat parameter vector of any ``nn.Module`` and its grouping into layers.

LCA is indexed by position in one flat vector of all ``named_parameters()`` (in that order).
A *layer* is one module's own parameters (weight + bias); a BatchNorm that directly follows a
conv/linear in ``named_modules()`` order is folded into that layer, as the paper reports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class ParamTable:
    """Where every parameter tensor sits in the flat vector and which layer owns it."""

    names: list[str]  # (n,)
    shapes: list[tuple[int, ...]]  # (n,)
    offsets: np.ndarray  # (n + 1,) int64, offsets[-1] = P
    layer: np.ndarray  # (n,) int32
    module_type: list[str]  # (n,)
    layer_names: list[str]  # (L,)

    @property
    def n_params(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    def layer_sizes(self) -> np.ndarray:
        """Number of parameters per layer, (L,) int64."""
        sizes = np.zeros(self.n_layers, dtype=np.int64)
        np.add.at(sizes, self.layer, np.diff(self.offsets))
        return sizes

    def param_layer_index(self) -> np.ndarray:
        """Layer index of every scalar parameter, (P,) int64."""
        return np.repeat(self.layer.astype(np.int64), np.diff(self.offsets))


def param_table(model: nn.Module, names: Sequence[str] | None = None) -> ParamTable:
    """Build the table for ``model`` (works for any module tree).

    Args:
        model: any module; parameters shared between modules are counted once (first owner).
        names: only these parameters (``named_parameters`` names, e.g. the trainable ones);
            None = all. Layers without a selected parameter are left out.

    Returns:
        The ParamTable in ``named_parameters()`` order.
    """
    owner: dict[int, tuple[str, nn.Module]] = {}
    layer_of_module: dict[str, int] = {}
    layer_names: list[str] = []
    previous_layer: int | None = None
    for mod_name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        if isinstance(module, _NORM_TYPES) and previous_layer is not None:
            layer_of_module[mod_name] = previous_layer  # fold the norm into the layer before it
        else:
            layer_of_module[mod_name] = len(layer_names)
            layer_names.append(mod_name or "root")
        previous_layer = layer_of_module[mod_name]
        for p in own:
            owner.setdefault(id(p), (mod_name, module))

    keep = None if names is None else set(names)
    names, shapes, layers, types, sizes = [], [], [], [], []
    for name, p in model.named_parameters():
        if keep is not None and name not in keep:
            continue
        mod_name, module = owner[id(p)]
        names.append(name)
        shapes.append(tuple(p.shape))
        layers.append(layer_of_module[mod_name])
        types.append(type(module).__name__)
        sizes.append(p.numel())
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    if keep is not None:  # renumber the layers that still have parameters
        used = sorted(set(layers))
        layers = [used.index(li) for li in layers]
        layer_names = [layer_names[li] for li in used]
    return ParamTable(names, shapes, offsets, np.asarray(layers, np.int32), types, layer_names)


def selected(model: nn.Module, names: Sequence[str] | None = None) -> list[nn.Parameter]:
    """The parameters ``names`` (all if None), in ``named_parameters()`` order."""
    if names is None:
        return list(model.parameters())
    keep = set(names)
    return [p for n, p in model.named_parameters() if n in keep]


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters that require grad (what training can move)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _params(model_or_params) -> list[nn.Parameter]:
    if isinstance(model_or_params, nn.Module):
        return list(model_or_params.parameters())
    return list(model_or_params)


def flat_params(model: nn.Module | Sequence[nn.Parameter],
                names: Sequence[str] | None = None) -> torch.Tensor:
    """Copy of the parameters (all, or ``names``; or a given list) as one flat vector, (P,)."""
    params = selected(model, names) if names is not None else _params(model)
    return torch.cat([p.detach().reshape(-1) for p in params])


def load_flat_params(model: nn.Module | Sequence[nn.Parameter], theta: torch.Tensor) -> None:
    """Write the flat vector ``theta`` (P,) into the parameters (a model's, or a list) in
    place."""
    offset = 0
    with torch.no_grad():
        for p in _params(model):
            n = p.numel()
            p.copy_(theta[offset : offset + n].view_as(p))
            offset += n


def flat_grads(model: nn.Module | Sequence[nn.Parameter]) -> torch.Tensor:
    """All ``.grad`` as one flat vector (zeros where a parameter got no gradient), (P,)."""
    parts = []
    for p in _params(model):
        parts.append(p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1))
    return torch.cat(parts)
