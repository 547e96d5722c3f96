"""Named groups of parameters finer than layers: the components of a transformer.

A *group* is a name and a list of flat ``[start, end)`` ranges in the order of
:func:`compute.lca.params.flat_params` / :func:`compute.lca.params.param_table`. The groups of
:func:`component_groups` partition the parameters (every flat index is in exactly one group)
and each lies inside one layer of the param table, so summing a per-parameter LCA vector per
group refines the per-layer sums exactly:

* every layer of the table is one group named like the layer (``embed``, ``pos_embed``,
  ``blocks.0.mlp.fc_in`` (weight and bias), ``blocks.0.ln1``, ``unembed`` ...),
* except head projections (:class:`compute.nets.transformer.HeadProjection` with more than one
  head: the attention's ``q``, ``k``, ``v`` and ``o``), which split into one group per head,
  ``blocks.0.attn.q.head0`` ... (their head axis comes first, so a head is one range),
  and the other attention layouts of :func:`attention_head_groups` likewise.

Any model works: one without attention heads gets its layers back as groups.

Your own groups (``LCATracker(..., groups=...)``) are a *spec*, ``{name: [(parameter name,
selection), ...]}``, that :func:`resolve_groups` turns into flat ranges. A selection is

* ``None`` (or a bare parameter name instead of the pair): the whole parameter,
* ``range(start, end)``: elements ``[start, end)`` of the parameter flattened row-major,
* a ``slice``, an ``int`` or a tuple of them: ``param[sel]`` (basic indexing, step 1; missing
  trailing axes are whole), e.g. ``slice(0, 64)`` = rows 0..63, ``(slice(None), slice(0, 64))``
  = columns 0..63 (every row: one range per row).

Each group must lie inside one layer and groups must not overlap; what no group covers is
filled in, one group per layer: named like the layer, or ``<layer>.rest`` beside groups of that
layer. :func:`compute.nets.attention_groups.attention_head_groups` builds the spec of the attention
heads of common layouts (``groups="heads"``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compute.lca.group_spec import Group, resolve_groups
from compute.lca.integrator import layer_sums
from compute.lca.params import ParamTable, param_table
from compute.nets.attention_groups import GroupSpec, attention_head_groups

__all__ = ["GroupSpec", "attach_groups", "attention_head_groups", "build_groups",
           "component_groups", "group_index", "group_layers", "group_sums", "resolve_groups"]


def component_groups(model: nn.Module) -> list[Group]:
    """The model's parameters by component, in flat order (see the module docstring): the
    attention heads of :func:`attention_head_groups` and one group per other layer.

    Returns:
        ``[(name, [(start, end), ...]), ...]``: names unique, ranges sorted and non-empty;
        together they cover 0..P−1 exactly once.
    """
    return resolve_groups(attention_head_groups(model), param_table(model))


def group_index(groups: list[Group], n_params: int) -> np.ndarray:
    """Group of every scalar parameter, (P,) int64; raises ValueError unless a partition."""
    idx = np.full(n_params, -1, dtype=np.int64)
    for g, (name, ranges) in enumerate(groups):
        for s, e in ranges:
            if not 0 <= s < e <= n_params:
                raise ValueError(f"group {name!r}: range [{s}, {e}) outside 0..{n_params}")
            if (idx[s:e] >= 0).any():
                raise ValueError(f"group {name!r} overlaps another group in [{s}, {e})")
            idx[s:e] = g
    if (idx < 0).any():
        raise ValueError(f"{int((idx < 0).sum())} parameters are in no group "
                         f"(first: flat index {int(np.argmax(idx < 0))})")
    return idx


def group_layers(groups: list[Group], layer_index: np.ndarray) -> np.ndarray:
    """The layer each group lies in, (G,) int64 (−1 where a group spans several layers).

    Args:
        layer_index: layer of every scalar parameter, (P,) (``ParamTable.param_layer_index``).
    """
    out = np.empty(len(groups), dtype=np.int64)
    for g, (_, ranges) in enumerate(groups):
        layers = np.unique(np.concatenate([layer_index[s:e] for s, e in ranges]))
        out[g] = layers[0] if len(layers) == 1 else -1
    return out


def group_sums(values: torch.Tensor, index: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Sum (P,) or (C, P) values per group -> (G,) or (C, G), in float64, on the device.

    ``index`` is :func:`group_index` as a tensor on the values' device; the reduction is
    :func:`compute.lca.integrator.layer_sums`, so group and layer sums add up in the same way.
    """
    return layer_sums(values, index, n_groups)


def build_groups(model: nn.Module, table: ParamTable, groups) -> list[Group] | None:
    """The groups of ``LCATracker(groups=...)`` on ``table`` (the tracked parameters).

    Args:
        groups: None (no groups), ``"heads"`` (:func:`attention_head_groups`; parameters that
            are not tracked are left out), a spec dict (module doc) or a callable
            ``model -> spec``.

    Raises:
        ValueError / TypeError: a spec that does not fit the model (:func:`resolve_groups`).
    """
    if groups is None:
        return None
    skip_untracked = False
    if isinstance(groups, str):
        if groups != "heads":
            raise ValueError(f"groups={groups!r}: the only named choice is 'heads' (or pass a "
                             "dict name -> [(parameter name, selection)], or a callable)")
        spec, skip_untracked = attention_head_groups(model), True
        if not spec:
            raise ValueError(f"groups='heads': no attention layer found in "
                             f"{type(model).__name__} (known: nn.MultiheadAttention, "
                             "query/key/value nn.Linear, GPT-2 c_attn Conv1D); pass your own "
                             "groups dict instead")
    elif callable(groups):
        spec = groups(model)
    else:
        spec = groups
    return resolve_groups(spec, table, model=model, skip_untracked=skip_untracked)


def attach_groups(run, groups: list[Group] | None, device: torch.device) -> None:
    """Give a run (:class:`compute.engine.parts.LCARun`, either face's) its groups and the (P,)
    group index on the device that :func:`compute.engine.record.record` sums ``lca_group``
    with."""
    run.groups = groups
    run.group_idx = (None if groups is None else
                     torch.as_tensor(group_index(groups, run.table.n_params), device=device))
