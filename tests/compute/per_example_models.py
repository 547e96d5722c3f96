"""Tiny float64 models and the explicit per-example autograd reference for the per-example
tests (tests/compute/test_per_example*.py)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from compute.lca.objective import _probe_copy, per_example_cross_entropy
from compute.lca.params import param_table


def reference_directional(model: nn.Module, x, y, direction, *, chunk_size: int,
                          loss_fn=per_example_cross_entropy) -> torch.Tensor:
    """D[n, l] by brute force: per chunk one forward (as the objective evaluates: eval mode,
    BatchNorm with chunk statistics), then for each example n torch.autograd.grad of ℓ_n
    and its dot with v per layer of param_table. (N, L) float64."""
    probe = _probe_copy(model)
    params = list(probe.parameters())
    table = param_table(probe)
    out = torch.zeros(len(y), table.n_layers, dtype=torch.float64)
    for s in range(0, len(y), chunk_size):
        e = min(s + chunk_size, len(y))
        losses = loss_fn(probe(x[s:e]), y[s:e])
        for n in range(e - s):
            grads = torch.autograd.grad(losses[n], params, retain_graph=True, allow_unused=True)
            for g, v, li in zip(grads, direction, table.layer, strict=True):
                if g is not None:
                    out[s + n, li] += (g * v).sum()
    return out


class Scale(nn.Module):
    """A module without a rule: nonlinear in its parameters."""

    def __init__(self, d: int):
        super().__init__()
        self.gain = nn.Parameter(torch.randn(d))
        self.shift = nn.Parameter(torch.randn(d))

    def forward(self, x):
        return x * torch.tanh(self.gain) + self.shift ** 2


class Table(nn.Module):
    """Owns a parameter but has no forward: its parent reads the weight (as the
    project's transformer reads HeadProjection/Embedding weights)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_in, d_out) / d_in ** 0.5)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 5)
        self.scale = Scale(5)
        self.proj = Table(5, 3)

    def forward(self, x):
        h = self.scale(self.fc2(torch.tanh(self.fc1(x))))
        return F.softplus(h) @ self.proj.weight


class CNN(nn.Module):
    """Conv1d, Conv2d (stride, dilation, groups, reflect padding), BatchNorm, GroupNorm."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect")
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, dilation=1, groups=2, padding=1)
        self.gn = nn.GroupNorm(2, 4)
        self.conv3 = nn.Conv1d(4, 3, 2, dilation=2)
        self.bn2 = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        h = torch.tanh(self.bn1(self.conv1(x)))
        h = torch.tanh(self.gn(self.conv2(h)))  # (B, 4, 3, 3)
        h = torch.tanh(self.bn2(self.conv3(h.flatten(2))))  # (B, 3, 5)
        return self.fc(h.mean(2))


class ConvNoBN(nn.Module):
    """The conv rules without BatchNorm (the hooks path)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect")
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, groups=2, padding=1)
        self.gn = nn.GroupNorm(2, 4)
        self.conv3 = nn.Conv1d(4, 3, 2, dilation=2)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        h = torch.tanh(self.conv1(x))
        h = torch.tanh(self.gn(self.conv2(h)))
        h = torch.tanh(self.conv3(h.flatten(2)))
        return self.fc(h.mean(2))


class TokenAttention(nn.Module):
    """Embedding (with padding_idx) + LayerNorm + nn.MultiheadAttention + a tied unembedding."""

    def __init__(self, vocab: int = 7, d: int = 6, batch_first: bool = True, tie: bool = True):
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Embedding(vocab, d, padding_idx=0)
        self.ln = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=batch_first)
        self.head = nn.Linear(d, vocab, bias=False)
        if tie:
            self.head.weight = self.embed.weight  # tied: both uses must be allocated

    def forward(self, ids):
        h = self.ln(self.embed(ids.long()))
        if not self.batch_first:
            h = h.transpose(0, 1)
        a, _ = self.attn(h, h, h)
        if not self.batch_first:
            a = a.transpose(0, 1)
        return self.head((h.transpose(0, 1) if not self.batch_first else h) + a).mean(1)
