"""The per-example rule for the parameters :class:`compute.nets.transformer.Transformer` reads in
its own forward: the token and position embeddings and the unembedding.

The root computes h_0 = E[ids] + P[:S] (B, S, d), runs the blocks, and returns
logits = ln_final(h[:, -1]) @ U[0]. So with δ_h0 = ∂ℓ_n/∂h_0 (a hook on the first block's
input) and δ = ∂ℓ_n/∂logits (a hook on the output):

    D_E[n] = Σ_s δ_h0[n, s] · V_E[ids[n, s]],   D_P[n] = Σ_s δ_h0[n, s] · V_P[s],
    D_U[n] = δ[n] · (last_n V_U[0]),             last = ln_final's output.

Without this rule the root would be the jvp fallback's host, one whole-network jvp per layer.

The head projections (:class:`~compute.nets.transformer.HeadProjection` q, k, v, o, read by their
:class:`~compute.nets.transformer.Attention`) are Linear maps of the attention's own activations:
with queries a_q (the last position only with ``last_only``), input x and z the heads'
outputs, q = a_q W_q, k = x W_k, v = x W_v, out = z W_o (each W as its (d_in, H·d_head) view), so

    D_q[n] = ⟨δ_q[n], a_q[n] V_q⟩, D_k[n] = ⟨δ_k[n], x_n V_k⟩, D_v[n] = ⟨δ_v[n], x_n V_v⟩,
    D_o[n] = ⟨δ_out[n], z_n V_o⟩,

with δ_out from the backward and δ_q, δ_k, δ_v = δ_z's pull-back through softmax attention
(δ_z = δ_out W_oᵀ), computed by a local backward of the recomputed attention (activations,
never per-example parameter gradients).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from compute.lca.per_example_rules import per_example_dot
from compute.nets.transformer import Attention, Transformer


def applies(root, params) -> bool:
    """This module's rules cover ``params`` of ``root``: an Attention's projections, or a
    Transformer's (with a block) embeddings and unembedding."""
    if isinstance(root, Attention):
        return True
    if not isinstance(root, Transformer) or len(root.blocks) == 0:
        return False
    own = {root.embed.weight, root.pos_embed.weight, root.unembed.weight}
    return all(p in own for p in params)


def install(engine, root: Transformer | Attention) -> list:
    """Hooks on ``root`` that add its embeddings' and unembedding's shares to ``engine``
    (a :class:`compute.lca.per_example.PerExampleDirectional`); returns the handles."""
    if isinstance(root, Attention):
        return install_attention(engine, root)
    seen: dict = {}

    def on_input(mod, args, kwargs):
        if engine._active:
            seen["ids"] = args[0].detach().long()

    def on_first_block(mod, args, kwargs):
        h0 = args[0]
        if not engine._active or not h0.requires_grad:
            return
        ids = seen["ids"]

        def share(vs, g):
            out, E, P = [], root.embed.weight, root.pos_embed.weight
            if E in vs:
                out.append((E, engine._dot(g, F.embedding(ids, vs[E]))))
            if P in vs:
                out.append((P, engine._dot(g, vs[P][: ids.shape[1]])))
            return out
        engine._watch(h0, share)

    def on_last(mod, args, output):
        if engine._active:
            seen["last"] = output.detach()

    def on_output(mod, args, kwargs, logits):
        U = root.unembed.weight
        if not engine._active or not logits.requires_grad:
            return
        last = seen["last"]
        engine._watch(logits, lambda vs, g: [(U, engine._dot(g, last @ vs[U][0]))]
                      if U in vs else [])

    return [root.register_forward_pre_hook(on_input, with_kwargs=True),
            root.blocks[0].register_forward_pre_hook(on_first_block, with_kwargs=True),
            root.ln_final.register_forward_hook(on_last),
            root.register_forward_hook(on_output, with_kwargs=True)]


def _heads(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (B, S, d_in) through an (H, d_in, e) projection: (B, S, H, e), as Attention does."""
    H, d_in, e = weight.shape
    return (x @ weight.permute(1, 0, 2).reshape(d_in, H * e)).unflatten(-1, (H, e))


def attention_tangents(attn: Attention, x: torch.Tensor, last_only: bool, vs: dict,
                       delta: torch.Tensor, pulled: tuple | None = None,
                       stash: dict | None = None) -> list:
    """(parameter, D (n,)) for q, k, v, o of one Attention call whose output got ``delta``;
    ``pulled``: :func:`attention_pullback`'s result for this call (it does not depend on V);
    ``stash``: keep q/k/v's products δ ⊙ ṫ there for :func:`attention_head_tangents`."""
    queries, dq, dk, dv, z, _ = pulled or attention_pullback(attn, x, last_only, delta)
    out = []
    for proj, d, a in ((attn.q, dq, queries), (attn.k, dk, x), (attn.v, dv, x)):
        if proj.weight in vs:
            prod = d * _heads(a, vs[proj.weight])  # per_example_dot's own product and sum
            out.append((proj.weight, prod.reshape(prod.shape[0], -1).sum(1)))
            if stash is not None:
                stash[proj.weight] = (vs[proj.weight], delta, prod)
    if attn.o.weight in vs:
        vo = vs[attn.o.weight]
        tangent = z.flatten(2) @ vo.reshape(-1, vo.shape[-1])
        out.append((attn.o.weight, per_example_dot(delta, tangent)))
    return out


def attention_head_tangents(attn: Attention, vs: dict, delta: torch.Tensor, pulled: tuple,
                            stash: dict | None = None) -> list:
    """(parameter, D (n, H)) for q, k, v, o: :func:`attention_tangents` split per head (the
    share of head h is its slice's; a projection's heads sum to its D) in one product each;
    q/k/v reuse the products ``stash`` holds for the same V and δ."""
    queries, dq, dk, dv, z, x = pulled
    out = []
    for proj, d, a in ((attn.q, dq, queries), (attn.k, dk, x), (attn.v, dv, x)):
        if proj.weight in vs:
            kept = stash.pop(proj.weight, None) if stash is not None else None
            if kept is not None and kept[0] is vs[proj.weight] and kept[1] is delta:
                prod = kept[2]
            else:
                prod = d * _heads(a, vs[proj.weight])
            out.append((proj.weight, prod.sum((1, 3))))
    if attn.o.weight in vs:  # Σ_{s,d} δ · z_h V_o[h] = Σ_{s,e} z_h · (δ V_o[h]ᵀ)
        u = torch.einsum("bsd,hed->bshe", delta, vs[attn.o.weight])
        out.append((attn.o.weight, (z * u).sum((1, 3))))
    return out


def attention_pullback(attn: Attention, x: torch.Tensor, last_only: bool,
                       delta: torch.Tensor) -> tuple:
    """The queries, δ_q, δ_k, δ_v and the heads' outputs z of one Attention call at the
    current θ whose output got ``delta`` (a local backward of the recomputed attention)."""
    e = attn.d_head
    queries = x[:, -1:] if last_only else x
    with torch.enable_grad():
        q = _heads(queries, attn.q.weight.detach()).requires_grad_()
        k = _heads(x, attn.k.weight.detach()).requires_grad_()
        v = _heads(x, attn.v.weight.detach()).requires_grad_()
        scores = (q[:, :, None] * k[:, None]).sum(-1) / math.sqrt(e)
        if not last_only:
            S = x.shape[1]
            future = torch.ones(S, S, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future[:, :, None], float("-inf"))
        z = (scores.softmax(2)[..., None] * v[:, None]).sum(2)  # (B, S_q, H, e)
        wo = attn.o.weight.detach()
        delta_z = (delta @ wo.reshape(-1, wo.shape[-1]).T).unflatten(-1, z.shape[-2:])
        dq, dk, dv = torch.autograd.grad(z, (q, k, v), delta_z)
    return queries, dq, dk, dv, z.detach(), x


def install_attention(engine, attn: Attention) -> list:
    """A hook on ``attn`` that adds its head projections' shares to ``engine``."""
    def on_output(mod, args, kwargs, output):
        if not engine._active or not output.requires_grad:
            return
        x = args[0].detach()
        last_only = kwargs.get("last_only", args[1] if len(args) > 1 else False)
        # a kept call is replayed at the same θ with the same δ, and split groups call the
        # share once per group with the same δ: its pull-back (which needs no V) is reused
        memo: dict | None = ({} if engine._keep is not None or engine.split is not None
                             else None)
        params = (attn.q.weight, attn.k.weight, attn.v.weight, attn.o.weight)
        stash: dict | None = {} if engine.split is not None and engine.split.heads else None

        def pullback(g):
            seen = memo.get("g") if memo is not None else None  # δ, or a kept δ.detach()
            if seen is not None and seen.data_ptr() == g.data_ptr() and seen.shape == g.shape:
                return memo["pulled"]
            pulled = attention_pullback(attn, x, last_only, g)
            if memo is not None:
                memo.update(g=g, pulled=pulled)
            return pulled

        def share(vs, g):
            if not any(p in vs for p in params):
                return []
            return attention_tangents(attn, x, last_only, vs, g, pullback(g), stash)

        # split groups that are exactly the heads of q, k, v or o take all heads at once
        share.per_head = lambda vs, g: attention_head_tangents(attn, vs, g, pullback(g), stash)
        engine._watch(output, share)

    return [attn.register_forward_hook(on_output, with_kwargs=True)]
