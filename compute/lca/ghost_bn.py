"""Ghost BatchNorm: several fixed normalisation groups evaluated in one forward pass.

For a model with BatchNorm the allocated loss normalises each *group* of ``bn_group``
consecutive examples with that group's own statistics (``--bn-group``, default 1,000 = the
loss every earlier run allocated). A GPU wants far more than 1,000 images per kernel launch, so
the probe copy of the model (never the user's model) gets BatchNorm layers that normalise a
chunk of K whole groups in one call: the (K·G, C, ...) input is viewed as (G, K·C, ...) — each
group's channels become channels of their own — and one native ``F.batch_norm`` normalises every
(group, channel) pair over its G examples, with the affine weight and bias repeated K times.
That is the same arithmetic as K separate calls (the same elements reduced per channel), up to
the order of float summation; ``tests/compute/test_ghost_bn.py`` checks it to 1e-12 in float64.

A chunk of one group (K = 1, e.g. the data's last, partial group) goes through the module's own
forward unchanged, so ``--chunk-size`` equal to the group reproduces earlier runs bit for bit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

GHOSTED = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)  # not SyncBatchNorm (cross-rank)


class GhostBatchError(ValueError):
    """A BatchNorm layer sees a batch that is not the chunk's examples, so the groups are
    unknown (e.g. a model that folds a sequence axis into the batch before its BatchNorm)."""


@dataclass
class GroupContext:
    """What the objective tells the ghost layers before each forward: the chunk's size."""

    group: int  # examples per normalisation group (G)
    examples: int = 0  # examples in the chunk about to be evaluated
    groups: int = 1  # whole groups in it (K); 1 means the layer's own forward


def ghost_batchnorm(probe: nn.Module, group: int) -> GroupContext | None:
    """Make every BatchNorm1d/2d/3d of ``probe`` normalise per group of ``group`` examples.

    Only the modules' ``forward`` is replaced (an instance attribute): parameters, buffers and
    names stay, so θ and state dicts are unchanged.

    Returns:
        The context the caller sets before each forward (:meth:`set_chunk`), or None when the
        model has no such layer.
    """
    ctx = GroupContext(group)
    found = False
    for name, m in probe.named_modules():
        if isinstance(m, GHOSTED) and not isinstance(m, nn.SyncBatchNorm):
            m.forward = functools.partial(_ghost_forward, m, ctx, name or type(m).__name__)
            found = True
    return ctx if found else None


def set_chunk(ctx: GroupContext | None, examples: int) -> None:
    """Before a forward on ``examples`` examples: K = examples / G whole groups (one if fewer)."""
    if ctx is None:
        return
    if examples > ctx.group and examples % ctx.group:
        raise ValueError(f"a chunk of {examples} examples is not a whole number of BatchNorm "
                         f"groups of {ctx.group}")
    ctx.examples, ctx.groups = examples, max(1, examples // ctx.group)


def _ghost_forward(m: nn.modules.batchnorm._BatchNorm, ctx: GroupContext, name: str,
                   x: torch.Tensor) -> torch.Tensor:
    k = ctx.groups
    if k <= 1 or not m.training:
        return type(m).forward(m, x)  # one group: exactly the layer's own arithmetic
    if x.shape[0] != ctx.examples:
        raise GhostBatchError(
            f"BatchNorm layer {name} received a batch of {x.shape[0]} rows for a chunk of "
            f"{ctx.examples} examples, so its normalisation groups of {ctx.group} examples "
            "cannot be told apart; evaluate one group per pass (chunk_size = bn_group)")
    m._check_input_dim(x)
    g, c, rest = ctx.group, x.shape[1], x.shape[2:]
    # (K·G, C, ...) -> (G, K·C, ...): channel k·C + c holds group k's channel c
    grouped = x.reshape(k, g, c, *rest).transpose(0, 1).reshape(g, k * c, *rest)
    weight = m.weight.repeat(k) if m.weight is not None else None
    bias = m.bias.repeat(k) if m.bias is not None else None
    out = F.batch_norm(grouped, None, None, weight, bias, training=True, momentum=0.0,
                       eps=m.eps)  # no running buffers: the probe never moves them
    result = torch.empty_like(x)  # keeps x's memory format (channels_last stays so)
    result.view(k, g, c, *rest).transpose(0, 1).copy_(out.view(g, k, c, *rest))
    return result
