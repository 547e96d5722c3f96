"""The flat parameter vector of any ``nn.Module`` and its grouping into layers.

LCA is indexed by position in one flat vector of all ``named_parameters()`` (in that order).
A *layer* is one module that owns parameters (its weight + bias). The only fold: a BatchNorm
registered directly after a conv/linear of the same parent module (``conv1``, ``bn1``) joins that
layer, as the paper reports conv+BN. Every other norm (LayerNorm, GroupNorm, RMSNorm, a
BatchNorm that opens a block, as in pre-activation nets) is its own layer: in a pre-norm
transformer the module registered before a norm is the previous sublayer, not what it feeds.

Wrappers that add a prefix to every name (``DistributedDataParallel``/``DataParallel``:
``module.``; ``torch.compile``: ``_orig_mod.``; :class:`compute.integrations.hf.HFLogits`:
``hf.``) are looked through: the table's names are the wrapped network's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

_FOLDED_NORMS = (_BatchNorm,)  # BatchNorm1d/2d/3d, SyncBatchNorm, LazyBatchNorm*
_NORMALISED = (_ConvNd, nn.Linear)  # what a BatchNorm right after it normalises
_SAVED_PREFIXES = ("module.", "_orig_mod.")  # what DDP/DataParallel and torch.compile add


def unwrap(model: nn.Module) -> tuple[nn.Module, str]:
    """The network inside any wrappers and the prefix they add to its parameter names.

    Looks through ``DistributedDataParallel`` and ``DataParallel`` (``module.``), a
    ``torch.compile`` module (``_orig_mod.``) and any module naming its wrapped network in an
    ``lca_wrapped`` attribute (``HFLogits``: ``hf.``), nested in any order.
    """
    prefix = ""
    while True:
        attr = getattr(model, "lca_wrapped", None)
        if attr is None and isinstance(model, (nn.parallel.DistributedDataParallel,
                                               nn.DataParallel)):
            attr = "module"
        if attr is None and type(model).__name__ == "OptimizedModule":  # torch.compile
            attr = "_orig_mod"
        inner = getattr(model, attr, None) if attr else None
        if not isinstance(inner, nn.Module):
            return model, prefix
        model, prefix = inner, f"{prefix}{attr}."


def network_name(model: nn.Module) -> str:
    """The class name of the network inside any wrappers (see :func:`unwrap`)."""
    return type(unwrap(model)[0]).__name__


def layer_list(layers: str | Sequence[str] | None) -> list[str] | None:
    """Layer names as the API takes them: None (all), a list, ``"none"`` (no layer, ``[]``) or
    one comma-separated string (``"fc1,fc2"``), as ``lca-run --lca-layers`` reads it."""
    if layers is None:
        return None
    if isinstance(layers, str):
        if layers.strip().lower() == "none":
            return []
        return [t.strip() for t in layers.split(",") if t.strip()]
    return list(layers)


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
        names: only these parameters (``named_parameters`` names of ``model``, e.g. the
            trainable ones); None = all. Layers without a parameter are left out.

    Returns:
        The ParamTable in ``named_parameters()`` order; names (of parameters and layers) are
        the wrapped network's own, without the wrappers' prefix (see :func:`unwrap`).
    """
    owner: dict[int, tuple[str, nn.Module]] = {}
    layer_of_module: dict[str, int] = {}
    layer_names: list[str] = []
    previous: tuple[str, nn.Module] | None = None  # the last module that owns parameters
    for mod_name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        if _folds_into(module, mod_name, previous):
            layer_of_module[mod_name] = layer_of_module[previous[0]]
        else:
            layer_of_module[mod_name] = len(layer_names)
            layer_names.append(mod_name or "root")
        previous = (mod_name, module)
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
    # renumber the layers that have parameters (a module whose only parameter is shared with
    # an earlier one, e.g. GPT-2's lm_head tied to wte, owns none; or none was selected)
    used = sorted(set(layers))
    layers = [used.index(li) for li in layers]
    layer_names = [layer_names[li] for li in used]
    prefix = unwrap(model)[1]
    names, layer_names = _strip(names, prefix), _strip(layer_names, prefix)
    return ParamTable(names, shapes, offsets, np.asarray(layers, np.int32), types, layer_names)


def _folds_into(module: nn.Module, name: str, previous: tuple[str, nn.Module] | None) -> bool:
    """A BatchNorm right after a conv/linear of the same parent normalises that layer."""
    if not isinstance(module, _FOLDED_NORMS) or previous is None:
        return False
    prev_name, prev_module = previous
    return (isinstance(prev_module, _NORMALISED)
            and prev_name.rpartition(".")[0] == name.rpartition(".")[0])


def _strip(names: list[str], prefix: str) -> list[str]:
    """``names`` without the wrappers' ``prefix`` (the wrapper itself, if it owns parameters,
    keeps its name)."""
    if not prefix:
        return names
    whole = prefix.rstrip(".")
    return [n[len(prefix):] if n.startswith(prefix) else ("root" if n == whole else n)
            for n in names]


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


def as_flat(model: nn.Module, theta: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """θ as the flat vector (P,) of ``model.parameters()``: a flat vector is returned as it is,
    a state dict (``model.state_dict()``, also one saved from a wrapped model, with its
    ``module.`` / ``_orig_mod.`` prefix) is read in ``named_parameters()`` order.

    Raises:
        ValueError: a parameter the state dict does not hold, or one of another shape.
    """
    if isinstance(theta, torch.Tensor):
        return theta
    if not isinstance(theta, Mapping):
        raise TypeError(f"a trajectory point must be a flat tensor or a state dict, got "
                        f"{type(theta).__name__}")
    own_prefix = unwrap(model)[1]
    state = {}
    for key, value in theta.items():  # the network's own names, whichever wrapper saved it
        inner = key
        while inner.startswith(_SAVED_PREFIXES):
            inner = inner.partition(".")[2]
        state.setdefault(inner, value)
    parts, missing = [], []
    for name, p in model.named_parameters():
        value = theta.get(name, state.get(name[len(own_prefix):] if own_prefix else name))
        if value is None:
            missing.append(name)
            continue
        if tuple(value.shape) != tuple(p.shape):
            raise ValueError(f"state dict entry {name!r} has shape {tuple(value.shape)}, the "
                             f"model's parameter {tuple(p.shape)}")
        parts.append(value.detach().to(device=p.device, dtype=p.dtype).reshape(-1))
    if missing:
        more = " ..." if len(missing) > 5 else ""
        raise ValueError(f"the state dict has no entry for {len(missing)} of the model's "
                         f"parameters: {', '.join(missing[:5])}{more}")
    return torch.cat(parts)
