"""A small decoder-only transformer for the modular-addition task, written out explicitly.

Token and position embeddings, ``n_layers`` blocks of multi-head causal self-attention and an
MLP (each added to the residual stream), optional LayerNorms, and an unembedding of the last
position (the "=" token) into one logit per class: ``forward`` returns (N, n_classes), so the
LCA engine's per-example cross-entropy applies unchanged.

The attention projections are separate tensors with the head as their first axis,
``q/k/v.weight`` (H, d_model, d_head) and ``o.weight`` (H, d_head, d_model), so one head's
slice of each is one contiguous range of the flat parameter vector (see
:func:`compute.nets.groups.component_groups`). As in Nanda et al. (2023) the attention has no
biases, the MLP has, and the unembedding has none. There is no dropout: the model is a
deterministic function of θ in train and eval mode alike.

Each LayerNorm (``layernorm=True``; off by default, as in Nanda et al.) is its own
:class:`LayerNorm` module and its own layer (:func:`compute.lca.params.param_table` folds only a
BatchNorm into the conv/linear before it; in a pre-LN block that module would be the previous
sublayer rather than the one the norm feeds).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Embedding(nn.Module):
    """A (rows, d_model) table looked up by integer ids (token or position)."""

    def __init__(self, rows: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(rows, d_model))


class HeadProjection(nn.Module):
    """One projection of every head, head axis first: (H, d_in, d_out); no bias."""

    def __init__(self, n_heads: int, d_in: int, d_out: int):
        super().__init__()
        self.n_heads = n_heads
        self.weight = nn.Parameter(torch.empty(n_heads, d_in, d_out))


class LayerNorm(nn.Module):
    """LayerNorm over the last axis with a gain and a bias (its own layer; see module doc)."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class Attention(nn.Module):
    """Multi-head causal self-attention with per-head W_Q, W_K, W_V, W_O."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q = HeadProjection(n_heads, d_model, self.d_head)
        self.k = HeadProjection(n_heads, d_model, self.d_head)
        self.v = HeadProjection(n_heads, d_model, self.d_head)
        self.o = HeadProjection(n_heads, self.d_head, d_model)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, S, d_model) -> (B, S, d_model), or (B, 1, d_model) for the last query only."""
        B, S, d = x.shape
        H, e = self.n_heads, self.d_head
        queries = x[:, -1:] if last_only else x  # (B, S_q, d_model)
        # all heads in one matmul each: (d_model, H·d_head) views of the (H, d_model, d_head)
        q = (queries @ self.q.weight.permute(1, 0, 2).reshape(d, H * e)).unflatten(-1, (H, e))
        k = (x @ self.k.weight.permute(1, 0, 2).reshape(d, H * e)).unflatten(-1, (H, e))
        v = (x @ self.v.weight.permute(1, 0, 2).reshape(d, H * e)).unflatten(-1, (H, e))
        # a handful of positions: broadcast products beat batched tiny matmuls on CPU
        scores = (q[:, :, None] * k[:, None]).sum(-1) / math.sqrt(e)  # (B, S_q, S, H)
        if not last_only:  # the last query sees every position anyway
            future = torch.ones(S, S, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future[:, :, None], float("-inf"))
        z = (scores.softmax(2)[..., None] * v[:, None]).sum(2)  # (B, S_q, H, d_head)
        return z.flatten(2) @ self.o.weight.reshape(H * e, d)  # (B, S_q, d_model)


class MLP(nn.Module):
    """d_model -> d_mlp -> d_model with ReLU or GELU."""

    def __init__(self, d_model: int, d_mlp: int, activation: str):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.activation = F.relu if activation == "relu" else F.gelu
        self.fc_in = nn.Linear(d_model, d_mlp)
        self.fc_out = nn.Linear(d_mlp, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.activation(self.fc_in(x)))


class Block(nn.Module):
    """x + attn(ln1(x)), then + mlp(ln2(·)); the LayerNorms are identities when off."""

    def __init__(self, d_model: int, n_heads: int, d_mlp: int, activation: str,
                 layernorm: bool):
        super().__init__()
        self.ln1 = LayerNorm(d_model) if layernorm else nn.Identity()
        self.attn = Attention(d_model, n_heads)
        self.ln2 = LayerNorm(d_model) if layernorm else nn.Identity()
        self.mlp = MLP(d_model, d_mlp, activation)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, S, d_model) -> the same, or (B, 1, d_model): only the last position's stream."""
        x = (x[:, -1:] if last_only else x) + self.attn(self.ln1(x), last_only)
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    """Decoder-only transformer classifying a token sequence by its last position.

    Args:
        seq_len: tokens per example (3 for ``[a, b, "="]``).
        d_vocab: number of token ids (p + 1 for modular addition).
        n_classes: logits out (p).
        d_model, n_heads, d_mlp, n_layers: widths and depth (d_model divisible by n_heads);
            the defaults are the reference grokking run's (Nanda et al.: 128, 4, 512, 1).
        activation: ``"relu"`` (Nanda et al.) or ``"gelu"``.
        layernorm: pre-LN blocks and a final LayerNorm; off by default (Nanda et al.).

    Inputs are token ids (N, seq_len), integer or float (whole numbers: lca-run hands every
    dataset to the model in its float dtype). The last block computes only the last position
    (queries, attention output and MLP): the other positions cannot reach the logits, so the
    output and every gradient are those of the full computation at less than half the cost
    (30-36 ms against 70-83 ms of CPU time for a forward and backward pass of 3,764 pairs at
    d_model 64, one thread).
    """

    def __init__(self, seq_len: int, d_vocab: int, n_classes: int, *, d_model: int = 64,
                 n_heads: int = 4, d_mlp: int = 256, n_layers: int = 1,
                 activation: str = "relu", layernorm: bool = False):
        super().__init__()
        self.seq_len, self.d_vocab = seq_len, d_vocab
        self.embed = Embedding(d_vocab, d_model)
        self.pos_embed = Embedding(seq_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_mlp, activation, layernorm)
                                    for _ in range(n_layers))
        self.ln_final = LayerNorm(d_model) if layernorm else nn.Identity()
        self.unembed = HeadProjection(1, d_model, n_classes)  # (1, d_model, C): no bias
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gaussian weights of std 1/√fan_in (embeddings 1/√d_model), zero biases, LN 1 and 0.

        Every head projection and the unembedding read d_model inputs (o: H·d_head = d_model).
        """
        d = self.embed.weight.shape[1]
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, Embedding):
                    m.weight.normal_(0.0, 1 / math.sqrt(d))
                elif isinstance(m, HeadProjection):  # q, k, v, o and unembed: fan-in d_model
                    m.weight.normal_(0.0, 1 / math.sqrt(d))
                elif isinstance(m, nn.Linear):
                    m.weight.normal_(0.0, 1 / math.sqrt(m.in_features))
                    m.bias.zero_()
                elif isinstance(m, LayerNorm):
                    m.weight.fill_(1.0)
                    m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] > self.seq_len:
            raise ValueError(f"expected token ids (B, <= {self.seq_len}), got {tuple(x.shape)}")
        tokens = x.long()  # (B, S); float ids are whole numbers, so truncation is exact
        h = F.embedding(tokens, self.embed.weight) + self.pos_embed.weight[: x.shape[1]]
        for i, block in enumerate(self.blocks):  # (B, S, d_model)
            # the last block computes the last position only: no other reaches the logits
            h = block(h, last_only=i == len(self.blocks) - 1)
        last = self.ln_final(h[:, -1])  # (B, d_model): the "=" position
        return last @ self.unembed.weight[0]  # (B, n_classes)
