"""Attention-head groups of common transformer layouts, as a user group spec.

:func:`attention_head_groups` returns ``{group name: [(parameter name, selection), ...]}``
in the convention of :func:`compute.nets.groups.resolve_groups` (a selection is ``None`` for the
whole parameter, a ``range`` of its flat elements, or an index ``param[sel]`` of slices and
ints). Each group lies in one layer of :func:`compute.lca.params.param_table`; what a layout leaves
out (biases of output projections, folded LayerNorms, every other layer) is filled in by the
resolver, one group per layer. Layouts found (d = model width, h = head, dh = head width):

* ``nn.MultiheadAttention`` ``m``: ``m.q.head{h}`` / ``m.k.head{h}`` / ``m.v.head{h}`` are
  rows ``[h·dh, (h+1)·dh)`` of the q/k/v part of ``in_proj_weight`` (rows 0..d, d..2d,
  2d..3d) and of ``in_proj_bias`` (or of ``q_proj_weight`` ... when kdim/vdim differ; with
  ``add_bias_kv`` the head's entries of ``bias_k`` / ``bias_v``); ``m.out_proj.head{h}`` is
  columns ``[h·dh, (h+1)·dh)`` of ``out_proj.weight`` (its input is the heads' concatenation).
* Hugging Face BERT-style self-attention (``query``/``key``/``value`` ``nn.Linear`` and
  ``num_attention_heads``; BERT, RoBERTa, ELECTRA, ViT ...): ``….query.head{h}`` is output rows
  of the weight and entries of the bias; the sibling ``output.dense`` of the attention block
  gives ``….output.dense.head{h}``, input columns of its weight.
* GPT-2 fused ``c_attn`` (a ``Conv1D``, weight (d, 3d) as ``x @ W``): ``….c_attn.q.head{h}``
  is columns ``h·dh..`` of the q third (then k, v) and the bias entries; ``….c_proj.head{h}``
  is rows of ``c_proj.weight`` (d, d). Cross-attention (``q_attn`` (d, d) + ``c_attn`` (d, 2d))
  works the same way.
* :class:`compute.nets.transformer.HeadProjection` (head axis first): ``….head{h}`` is ``weight[h]``
  (the groups of :func:`compute.nets.groups.component_groups`).
"""

from __future__ import annotations

from torch import nn

Selection = None | range | int | slice | tuple
GroupSpec = dict[str, list[tuple[str, Selection]]]

_HEAD_COUNT_ATTRS = ("num_attention_heads", "num_heads", "n_head", "n_heads")


def attention_head_groups(model: nn.Module) -> GroupSpec:
    """One group per attention head and projection of every layout the module doc lists.

    Returns:
        ``{name: [(parameter name, selection), ...]}``, empty for a model without attention.
    """
    from compute.nets.transformer import HeadProjection  # transformer.py does not import this

    spec: GroupSpec = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.MultiheadAttention):
            spec.update(_multihead(prefix, module))
        elif isinstance(module, HeadProjection) and module.n_heads > 1:
            spec.update({f"{prefix}head{h}": [(f"{prefix}weight", h)]
                         for h in range(module.n_heads)})
        elif _is_qkv_linear(module):
            spec.update(_qkv_linear(prefix, module))
        elif _is_attention_block(module):
            spec.update(_columns(f"{prefix}output.dense", module.output.dense.weight,
                                 _heads(module.self), axis=1))
        elif _is_conv1d(getattr(module, "c_attn", None)) and _is_conv1d(
                getattr(module, "c_proj", None)):
            spec.update(_gpt2(prefix, module))
    return spec


# -- the layouts ----------------------------------------------------------------------------
def _multihead(prefix: str, m: nn.MultiheadAttention) -> GroupSpec:
    H, dh, d = m.num_heads, m.head_dim, m.embed_dim
    spec: GroupSpec = {}
    for part, which in enumerate("qkv"):
        for h in range(H):
            rows = slice(h * dh, (h + 1) * dh)
            fused = slice(part * d + h * dh, part * d + (h + 1) * dh)
            entries = ([(f"{prefix}in_proj_weight", fused)] if m._qkv_same_embed_dim
                       else [(f"{prefix}{which}_proj_weight", rows)])
            if m.in_proj_bias is not None:
                entries.append((f"{prefix}in_proj_bias", fused))
            if which != "q" and getattr(m, f"bias_{which}", None) is not None:  # (1, 1, d)
                entries.append((f"{prefix}bias_{which}", (0, 0, rows)))
            spec[f"{prefix}{which}.head{h}"] = entries
    spec.update(_columns(f"{prefix}out_proj", m.out_proj.weight, H, axis=1))
    return spec


def _qkv_linear(prefix: str, module: nn.Module) -> GroupSpec:
    spec: GroupSpec = {}
    for part in ("query", "key", "value"):
        linear = getattr(module, part)
        spec.update(_columns(f"{prefix}{part}", linear.weight, _heads(module), axis=0,
                             bias=linear.bias is not None))
    return spec


def _gpt2(prefix: str, module: nn.Module) -> GroupSpec:
    H, d = _heads(module), module.c_proj.weight.shape[1]
    dh = d // H
    spec: GroupSpec = {}
    parts = [("c_attn", "q", 0), ("c_attn", "k", 1), ("c_attn", "v", 2)]  # thirds of c_attn
    if _is_conv1d(getattr(module, "q_attn", None)):  # cross-attention: c_attn is k, v only
        parts = [("q_attn", "q", 0), ("c_attn", "k", 0), ("c_attn", "v", 1)]
    for which, part, third in parts:
        for h in range(H):
            cols = slice(third * d + h * dh, third * d + (h + 1) * dh)
            name = f"{prefix}c_attn.{part}" if which == "c_attn" else f"{prefix}{which}"
            spec[f"{name}.head{h}"] = [(f"{prefix}{which}.weight", (slice(None), cols)),
                                       (f"{prefix}{which}.bias", cols)]
    spec.update(_columns(f"{prefix}c_proj", module.c_proj.weight, H, axis=0))
    return spec


def _columns(layer: str, weight, n_heads: int, *, axis: int, bias: bool = False) -> GroupSpec:
    """``{layer}.head{h}``: the h-th of ``n_heads`` equal blocks of ``weight`` along ``axis``
    (0: rows, 1: columns), with the same entries of ``{layer}.bias`` if ``bias``."""
    dh = weight.shape[axis] // n_heads
    spec: GroupSpec = {}
    for h in range(n_heads):
        block = slice(h * dh, (h + 1) * dh)
        entries = [(f"{layer}.weight", block if axis == 0 else (slice(None), block))]
        if bias:
            entries.append((f"{layer}.bias", block))
        spec[f"{layer}.head{h}"] = entries
    return spec


# -- recognising them -----------------------------------------------------------------------
def _heads(module: nn.Module) -> int:
    for attr in _HEAD_COUNT_ATTRS:
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    raise ValueError(f"{type(module).__name__}: cannot tell its number of heads "
                     f"(none of {', '.join(_HEAD_COUNT_ATTRS)})")


def _is_qkv_linear(module: nn.Module) -> bool:
    return (all(isinstance(getattr(module, p, None), nn.Linear) for p in ("query", "key", "value"))
            and any(isinstance(getattr(module, a, None), int) for a in _HEAD_COUNT_ATTRS))


def _is_attention_block(module: nn.Module) -> bool:
    """A BERT-style attention block: ``self`` (query/key/value) beside ``output.dense``."""
    inner = getattr(module, "self", None)
    return (isinstance(inner, nn.Module) and _is_qkv_linear(inner)
            and isinstance(getattr(getattr(module, "output", None), "dense", None), nn.Linear))


def _is_conv1d(module) -> bool:
    """transformers' ``Conv1D`` (``x @ W + b``, weight (in, out)), without importing it."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "weight")
