"""Per-module rules for per-example directional derivatives (see :mod:`compute.lca.per_example`).

A module m computes an output o_n from its input a_n and its parameters W. Moving W along a
direction V moves the output by the local tangent ṫ_n = ∂o_n/∂W · V, and for the per-example
loss ℓ_n with output gradient δ_n = ∂ℓ_n/∂o_n the module's share of the directional
derivative is ⟨δ_n, ṫ_n⟩ (summed over every axis but the example axis). A *rule* writes ṫ in
closed form from what the forward pass saw:

* Linear: ṫ = a V_wᵀ (+ V_b), any number of token axes between the example and feature axes;
* Hugging Face's ``Conv1D`` (GPT-2's attention and MLP projections: a Linear whose weight is
  stored (in, out)): ṫ = a V_w + V_b;
* Conv1d/Conv2d/Conv3d: ṫ = conv(a, V_w) with the module's stride, padding (and padding mode),
  dilation and groups (+ V_b per channel);
* Embedding: ṫ = V_w[ids], with the rows of ``padding_idx`` (which never get a gradient) zero;
* LayerNorm, GroupNorm, :class:`compute.nets.transformer.LayerNorm` (affine):
  ṫ = x̂ ⊙ V_w + V_b, x̂ the input normalised as the module normalises it.

BatchNorm has no rule here: the objective normalises it with chunk statistics, which couple
the examples of a chunk, and such networks are computed in forward mode (see
:mod:`compute.lca.per_example`). The affine rule δ_n ⊙ x̂_n · V_w + δ_n · V_b would be exact only
for a BatchNorm after which nothing couples examples (the last one), not for the layers
before it.

Everything else that owns parameters (nn.MultiheadAttention,
:class:`compute.nets.transformer.Attention` with its
:class:`~compute.nets.transformer.HeadProjection` q/k/v/o, the transformer's embeddings and
unembedding used by its root, any custom module) is handled by the forward-mode fallback: ṫ =
``torch.func.jvp`` of the module's own forward (``functional_call``) in the direction V, one
direction per layer. A rule is exactly that jvp written out, so the two agree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, jvp
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.modules.conv import _ConvNd

from compute.nets import transformer

Tangent = list[tuple[nn.Parameter, torch.Tensor]]  # (parameter, ṫ of one output tensor)


def per_example_dot(delta: torch.Tensor, tangent: torch.Tensor, batch_axis: int = 0
                    ) -> torch.Tensor:
    """⟨δ_n, ṫ_n⟩ for every example n: (n,). ``tangent`` broadcasts against ``delta``."""
    prod = delta * tangent
    return prod.movedim(batch_axis, 0).reshape(delta.shape[batch_axis], -1).sum(1)


def _linear(m: nn.Linear, a: torch.Tensor, vs: dict) -> Tangent:
    out = [(m.weight, F.linear(a, vs[m.weight]))] if m.weight in vs else []
    if m.bias is not None and m.bias in vs:
        out.append((m.bias, vs[m.bias]))
    return out


def _conv(m: _ConvNd, a: torch.Tensor, vs: dict) -> Tangent:
    out = [(m.weight, m._conv_forward(a, vs[m.weight], None))] if m.weight in vs else []
    if m.bias is not None and m.bias in vs:
        out.append((m.bias, vs[m.bias].view(-1, *[1] * (a.dim() - 2))))
    return out


def _hf_conv1d(m: nn.Module, a: torch.Tensor, vs: dict) -> Tangent:
    out = [(m.weight, a @ vs[m.weight])] if m.weight in vs else []
    if m.bias is not None and m.bias in vs:
        out.append((m.bias, vs[m.bias]))
    return out


def is_hf_conv1d(kind: type) -> bool:
    """transformers' ``Conv1D`` itself (by name: transformers need not be installed)."""
    return kind.__name__ == "Conv1D" and kind.__module__ == "transformers.pytorch_utils"


def _embedding(m: nn.Embedding, ids: torch.Tensor, vs: dict) -> Tangent:
    if m.weight not in vs:
        return []
    rows = F.embedding(ids, vs[m.weight])
    if m.padding_idx is not None:  # autograd gives that row no gradient: nor does LCA
        rows = rows.masked_fill((ids == m.padding_idx)[..., None], 0.0)
    return [(m.weight, rows)]


def _affine(m: nn.Module, x_hat: torch.Tensor, channel_axis: int, vs: dict) -> Tangent:
    """ṫ of ``x̂ ⊙ w + b`` with w, b broadcast along ``channel_axis`` (-1: the last axes)."""
    def shape(p: torch.Tensor) -> torch.Tensor:
        if channel_axis < 0:
            return p
        return p.view(-1, *[1] * (x_hat.dim() - channel_axis - 1))

    out = []
    w, b = getattr(m, "weight", None), getattr(m, "bias", None)
    if w is not None and w in vs:
        out.append((w, x_hat * shape(vs[w])))
    if b is not None and b in vs:
        out.append((b, shape(vs[b])))
    return out


def _layer_norm(m: nn.LayerNorm, a: torch.Tensor, vs: dict) -> Tangent:
    return _affine(m, F.layer_norm(a, m.normalized_shape, None, None, m.eps), -1, vs)


def _project_layer_norm(m: transformer.LayerNorm, a: torch.Tensor, vs: dict) -> Tangent:
    return _affine(m, F.layer_norm(a, a.shape[-1:], None, None, m.eps), -1, vs)


def _group_norm(m: nn.GroupNorm, a: torch.Tensor, vs: dict) -> Tangent:
    return _affine(m, F.group_norm(a, m.num_groups, None, None, m.eps), 1, vs)


def rule_for(module: nn.Module):
    """The closed-form rule for ``module``'s own parameters, or None (use the fallback).

    Modules whose forward bends the parameters first (Embedding with ``max_norm``, whose
    gradient is not the derivative with ``scale_grad_by_freq``) and subclasses that may
    override ``forward`` get no rule.
    """
    kind = type(module)
    if kind is nn.Linear:
        return _linear
    if kind in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        return _conv
    if is_hf_conv1d(kind):
        return _hf_conv1d
    if kind is nn.Embedding:
        plain = module.max_norm is None and not module.scale_grad_by_freq
        return _embedding if plain and not module.sparse else None
    if kind is nn.LayerNorm:
        return _layer_norm
    if kind is transformer.LayerNorm:
        return _project_layer_norm
    if kind is nn.GroupNorm:
        return _group_norm
    return None


# modules whose forward reads their children's parameters directly (nn.MultiheadAttention
# passes out_proj.weight to F.multi_head_attention_forward): the whole subtree is theirs
SUBTREE_OWNERS = (nn.MultiheadAttention,)


def registered_below(module: nn.Module) -> set[int]:
    """ids of the parameters registered on ``module``'s children. A parameter registered on a
    module and on its child (HF BERT MLM's tied ``self.decoder.bias = self.bias``) is used by
    the child's forward, so it is the child's: the parent's jvp would count that use again."""
    return {id(q) for c in module.children() for q in c.parameters()}


def expand_shared(output, axis: int, n: int) -> torch.Tensor | None:
    """``output`` expanded to the chunk's ``n`` examples when it is one tensor for all of them
    (example axis of size 1: the position embeddings of HF's (1, T) position ids, broadcast
    onto every sequence later), else None. The shared tensor's gradient would be the sum over
    the examples; expanded (same values, no copy), each example's slice receives its own δ_n,
    and the rule's (1, ...) tangent broadcasts against it."""
    if not (isinstance(output, torch.Tensor) and output.requires_grad and n > 1
            and output.dim() > axis and output.shape[axis] == 1):
        return None
    return output.expand(*output.shape[:axis], n, *output.shape[axis + 1:])


def first_input(args: Sequence, kwargs: dict):
    """A module call's first argument, positional or (``module(input=x)``) by keyword."""
    if args:
        return args[0]
    return next(iter(kwargs.values()), None)


def batch_axis(module: nn.Module, args: Sequence, kwargs: dict) -> int:
    """The example axis of ``module``'s outputs: 0, except nn.MultiheadAttention's (L, N, E)
    layout without ``batch_first``."""
    if isinstance(module, nn.MultiheadAttention) and not module.batch_first:
        query = args[0] if args else kwargs.get("query")
        return 1 if query is not None and query.dim() == 3 else 0
    return 0


def jvp_tangents(module: nn.Module, names: dict[nn.Parameter, str],
                 groups: Sequence[Sequence[nn.Parameter]], args: tuple, kwargs: dict,
                 vs: dict) -> list[tuple[Sequence[nn.Parameter], list[torch.Tensor]]]:
    """The fallback: for each group of parameters (those of one layer), the tangent of every
    output tensor of ``module(*args, **kwargs)`` when that group moves along ``vs``.

    Args:
        module: the module whose forward uses the parameters.
        names: each parameter's name relative to ``module`` (for ``functional_call``).
        groups: parameters moved together (one layer each).
        args, kwargs: what the forward was called with (detached).
        vs: the direction of each parameter.

    Returns:
        (group, tangents) pairs, tangents flattened like the output (tuple outputs: one per
        tensor; non-tensor outputs: None).
    """
    out = []
    for group in groups:
        moved = [p for p in group if p in vs]  # the others stay (a group's masked direction)
        if not moved:
            continue
        primals = {names[p]: p.detach() for p in moved}
        tangents = {names[p]: vs[p].to(p.dtype) for p in moved}

        is_tensor: list[bool] = []

        def run(params, _args=args, _kwargs=kwargs, _mask=is_tensor):
            flat = flat_outputs(functional_call(module, params, _args, _kwargs, strict=False))
            _mask[:] = [isinstance(o, torch.Tensor) for o in flat]
            return tuple(o for o in flat if isinstance(o, torch.Tensor))

        with forward_ad_kernels():
            _, dots = jvp(run, (primals,), (tangents,))
        found = iter(dots)
        out.append((group, [next(found) if t else None for t in is_tensor]))
    return out


@contextlib.contextmanager
def forward_ad_kernels():
    """Kernels with a forward-mode formula: nn.MultiheadAttention's inference fast path and
    the fused scaled-dot-product attention kernels (flash, memory-efficient) have none, so
    inside, MHA takes its composite path and SDPA its math backend."""
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def flat_outputs(result) -> list:
    """A module's output as a flat list (tensors and anything else) in a fixed order."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (tuple, list)):
        flat = []
        for r in result:
            flat.extend(flat_outputs(r))
        return flat
    return [result]


def forward_mode_dot(model: nn.Module, params: dict[str, torch.Tensor],
                     group: dict[str, nn.Parameter], vs: dict, loss_fn, x: torch.Tensor,
                     y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses (n,) and ∇_group ℓ_n · v_group (n,) of a chunk by one ``torch.func.jvp``.

    Args:
        model: the network (without running BatchNorm buffers: they must not be mutated).
        params: every parameter's current value by name (θ).
        group: the parameters moved (one layer) by name.
        vs: the direction of each parameter; loss_fn: ``(outputs, y) -> (n,)``.
    """
    primals = {n: p.detach() for n, p in group.items()}
    tangents = {n: vs[p].to(p.dtype) for n, p in group.items()}

    def run(moved):
        return loss_fn(functional_call(model, {**params, **moved}, (x,), strict=False), y)

    with torch.no_grad(), forward_ad_kernels():
        losses, dots = jvp(run, (primals,), (tangents,))
    return losses, dots.double()


def padding_rows_zeroed(model: nn.Module, vs: dict) -> dict:
        """Forward mode differentiates ``F.embedding`` in every row, autograd (and so LCA)
        gives an Embedding's ``padding_idx`` row no gradient: zero that row of v."""
        users: dict[nn.Parameter, int] = {}
        for m in model.modules():
            for p in m.parameters(recurse=False):
                users[p] = users.get(p, 0) + 1
        out = {}
        for m in model.modules():
            if isinstance(m, nn.Embedding) and m.padding_idx is not None and m.weight in vs:
                if users[m.weight] > 1:
                    raise ValueError("forward mode cannot split a tied Embedding weight with a "
                                     "padding_idx (its padding row gets a gradient from the "
                                     "other use only); use mode='hooks'")
                out[m.weight] = vs[m.weight].clone()
                out[m.weight][m.padding_idx] = 0
        return out
