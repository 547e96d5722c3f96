"""Per-example values of named groups finer than their layer (a transformer's heads), for
:class:`compute.lca.per_example.PerExampleDirectional` (``groups=``).

A *split group* is a group (``[(name, [(start, end), ...]), ...]`` over the flat parameters, as
:mod:`compute.nets.groups` builds them) whose layer holds more than one group; a group equal to
its whole layer would only repeat the layer's column. With G_s split groups, D gets L + G_s
columns: the L layers as without groups, then D[n, L + s] = ∇_{θ_g} ℓ_n · v_g for the s-th split
group g (ascending group index).

Every per-module rule is linear in the direction V, so the share of group g in a module's term
is the same rule applied with V masked to g (V ⊙ 1_g, every other parameter's V absent): one
more rule call per split group the module's parameters hold, on the δ and the inputs the
module's backward already saw (no forward or backward pass). Forward mode (BatchNorm nets) and a
repair take one more ``jvp`` per split group. The groups of a layer partition it, so
Σ_{s in l} D[n, L + s] = D[n, l]; :meth:`SplitGroups.bad_layers` checks it (float64 1e-9).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from compute.lca.per_example_rules import is_hf_conv1d

Group = tuple[str, list[tuple[int, int]]]


class SplitGroups:
    """The split groups of ``groups`` over ``params`` and their masks.

    Args:
        groups: every group as (name, flat ranges) in the order of ``params`` flattened.
        params: the objective's parameters (the flat order).
        layer_of: each parameter's layer.
        n_layers: L.

    Raises:
        ValueError: a range outside the parameters, overlapping groups, a group spanning
            several layers among the split ones, or a layer its split groups do not cover.
    """

    def __init__(self, groups: Sequence[Group], params: Sequence[nn.Parameter],
                 layer_of: dict, n_layers: int):
        # ranges only (no (P,) arrays, no dense masks kept): a model of 10^8 parameters with
        # hundreds of head groups of one range per weight row stays cheap
        offsets = np.concatenate([[0], np.cumsum([p.numel() for p in params])]).astype(np.int64)
        P = int(offsets[-1])
        parts: list[dict[int, list[tuple[int, int]]]] = []  # per group: param -> local ranges
        layers = np.empty(len(groups), np.int64)
        flat = []
        for g, (name, ranges) in enumerate(groups):
            local: dict[int, list[tuple[int, int]]] = {}
            for s, e in ranges:
                if not 0 <= s < e <= P:
                    raise ValueError(f"group {name!r}: range [{s}, {e}) outside 0..{P}")
                flat.append((s, e, g))
                k = int(np.searchsorted(offsets, s, side="right")) - 1
                while k < len(params) and offsets[k] < e:
                    lo, hi = max(s, int(offsets[k])), min(e, int(offsets[k + 1]))
                    if lo < hi:
                        local.setdefault(k, []).append((lo - int(offsets[k]),
                                                        hi - int(offsets[k])))
                    k += 1
            found = {layer_of[params[k]] for k in local}
            layers[g] = found.pop() if len(found) == 1 else -1
            parts.append(local)
        flat.sort()
        for (_, e0, g0), (s1, _, g1) in zip(flat, flat[1:], strict=False):
            if s1 < e0:
                raise ValueError(f"group {groups[g1][0]!r} overlaps group {groups[g0][0]!r} "
                                 f"at flat index {s1}")
        count = np.bincount(layers[layers >= 0], minlength=n_layers)
        split = [g for g in range(len(groups)) if layers[g] >= 0 and count[layers[g]] > 1]
        self.n_layers = n_layers
        self.index = np.asarray(split, np.int64)  # (G_s,) into ``groups``, ascending
        self.names = [groups[g][0] for g in split]
        self.column_layer = layers[self.index]  # (G_s,) the layer of each split group
        layer_size = np.zeros(n_layers, np.int64)
        for p in params:
            layer_size[layer_of[p]] += p.numel()
        for li in np.unique(self.column_layer):  # the split groups of a layer partition it
            have = sum(hi - lo for g in self.index[self.column_layer == li]
                       for rs in parts[g].values() for lo, hi in rs)
            if have != layer_size[li]:
                raise ValueError(f"the groups of layer {int(li)} do not cover it: "
                                 f"{int(layer_size[li] - have)} of its parameters are in none")
        # column j -> {parameter: its ranges [lo, hi) in the parameter flattened}
        self.members: list[dict[nn.Parameter, list[tuple[int, int]]]] = [
            {params[k]: rs for k, rs in parts[g].items()} for g in split]
        self.of_layer: dict[int, list[int]] = {}
        for j, li in enumerate(self.column_layer.tolist()):
            self.of_layer.setdefault(li, []).append(j)
        labels = self._labels()
        self.heads = self._head_columns(labels)
        self.features = self._feature_columns(labels)

    @staticmethod
    def mask(p: torch.Tensor, ranges: list[tuple[int, int]]) -> torch.Tensor:
        """The 0/1 mask (bool, shaped like ``p``) of ``ranges`` of ``p`` flattened."""
        edges = torch.zeros(p.numel() + 1, dtype=torch.int32, device=p.device)
        r = torch.as_tensor(ranges, dtype=torch.int64, device=p.device).reshape(-1, 2)
        edges.index_add_(0, r[:, 0], torch.ones(len(r), dtype=torch.int32, device=p.device))
        edges.index_add_(0, r[:, 1], torch.full((len(r),), -1, dtype=torch.int32,
                                                device=p.device))
        return (edges.cumsum(0)[:-1] > 0).view_as(p)

    def _labels(self) -> dict[nn.Parameter, torch.Tensor]:
        """The split-group column of every element of each parameter with split groups
        (int64, shaped like it), from the ranges (they partition the parameter)."""
        spans: dict[nn.Parameter, list[tuple[int, int, int]]] = {}
        for j, members in enumerate(self.members):
            for p, ranges in members.items():
                spans.setdefault(p, []).extend((lo, hi, j) for lo, hi in ranges)
        out = {}
        for p, found in spans.items():
            found.sort()
            r = torch.as_tensor(found, dtype=torch.int64).reshape(-1, 3)
            if int((r[:, 1] - r[:, 0]).sum()) != p.numel():
                continue  # cannot happen for a partitioned layer; then no product forms
            out[p] = torch.repeat_interleave(r[:, 2], r[:, 1] - r[:, 0]).to(p.device).view(
                p.shape)
        return out

    def _feature_columns(self, labels: dict) -> dict[nn.Parameter, tuple[str, torch.Tensor]]:
        """Weights (out, in) whose split groups are whole rows (``"out"``) or whole columns
        (``"in"``), and biases: each with the column of every feature, (F,) int64. A Linear's
        share (``share.per_feature``) gives all their groups from one per-feature product."""
        out = {}
        for p, lab in labels.items():
            if p.dim() == 1:
                out[p] = ("out", lab)
            elif p.dim() == 2 and bool((lab == lab[:, :1]).all()):
                out[p] = ("out", lab[:, 0].clone())
            elif p.dim() == 2 and bool((lab == lab[:1]).all()):
                out[p] = ("in", lab[0].clone())
        return out

    def _head_columns(self, labels: dict) -> dict[nn.Parameter, list[int]]:
        """Parameters (H, d_in, d_out) whose split groups are exactly their H slices along the
        first axis (a HeadProjection's heads), each with its columns in head order: a rule with
        a per-head form (``share.per_head``) fills them all at once."""
        out = {}
        for p, lab in labels.items():
            if p.dim() != 3:
                continue
            rows = lab.flatten(1)
            cols = rows[:, 0].tolist()
            if bool((rows == rows[:, :1]).all()) and len(set(cols)) == len(cols) \
                    and all(len(self.members[j]) == 1 for j in cols):
                out[p] = cols
        return out

    @property
    def n(self) -> int:
        """G_s, the number of split groups (extra columns of D)."""
        return len(self.index)

    def masked(self, vs: dict, j: int, skip: set | frozenset = frozenset()) -> dict:
        """Split group j's parameters (but ``skip``) with their direction masked to it,
        ``vs`` ⊙ 1_g (built when asked: nothing of the size of the parameters is kept)."""
        return {p: torch.where(self.mask(p, ranges), vs[p],
                               torch.zeros((), dtype=vs[p].dtype, device=vs[p].device))
                for p, ranges in self.members[j].items() if p in vs and p not in skip}

    def add(self, acc: torch.Tensor, layer_of: dict, share, vs: dict, delta: torch.Tensor
            ) -> None:
        """Add one hooked output's shares along ``vs`` to ``acc`` (n, L + G_s): the layers' as
        without groups, then each split group's of the layers the output touched."""
        touched = set()
        for p, d in share(vs, delta):
            li = layer_of[p]
            acc[:, li] += d.double()
            touched.add(li)
        if not self.of_layer:
            return
        L, handled = self.n_layers, set()  # parameters whose groups a product gave
        per_head = getattr(share, "per_head", None)
        if per_head is not None:  # every head of a projection from one product
            wanted = {p: cols for p, cols in self.heads.items()
                      if p in vs and layer_of[p] in touched}
            if wanted:
                for p, d in per_head({p: vs[p] for p in wanted}, delta):  # d (n, H)
                    for h, j in enumerate(wanted[p]):
                        acc[:, L + j] += d[:, h].double()
                    handled.add(p)
        per_feature = getattr(share, "per_feature", None)
        if per_feature is not None:  # a Linear's row / column groups: one product each
            wanted = {p: self.features[p] for p in vs
                      if p in self.features and layer_of[p] in touched}
            if wanted:
                for p, d in per_feature(vs, delta, {p: k for p, (k, _) in wanted.items()}):
                    acc[:, L:].index_add_(1, wanted[p][1], d.double())  # d (n, F)
                    handled.add(p)
        for li in touched:  # the rest: the rule along V masked to each group
            for j in self.of_layer.get(li, ()):
                sub = self.masked(vs, j, handled)
                if sub:
                    for _, d in share(sub, delta):
                        acc[:, L + j] += d.double()

    def bad_layers(self, D: torch.Tensor, rtol: float) -> list[int]:
        """Layers whose split groups' columns do not sum to the layer's column in some row,
        to ``rtol`` of the row's terms (and 1e-3·rtol of the largest: pure rounding)."""
        L, bad, rows = self.n_layers, [], []
        for li, cols in self.of_layer.items():
            part = D[:, [L + j for j in cols]]
            rows.append((li, part.sum(1) - D[:, li], part.abs().sum(1) + D[:, li].abs()))
        if not rows:
            return []
        floor = 1e-3 * rtol * max(float(s.max()) if len(s) else 0.0 for _, _, s in rows) + 1e-300
        for li, diff, scale in rows:
            if bool((diff.abs() > rtol * scale + floor).any()):
                bad.append(li)
        return sorted(bad)

    def columns(self, layers: Sequence[int]) -> list[int]:
        """The columns of D (L + j) of the split groups of ``layers``."""
        return [self.n_layers + j for li in layers for j in self.of_layer.get(li, ())]


GROUP_RTOL = {torch.float64: 1e-9, torch.float32: 1e-3}  # Σ_s D[:, L + s] against D[:, l]


def check_group_sums(engine, D: torch.Tensor, *, final: bool) -> list[int]:
    """The layers of ``engine`` (a :class:`~compute.lca.per_example.PerExampleDirectional`)
    whose split groups in ``D`` (n, L + G_s) do not sum to the layer's column.

    Raises:
        RuntimeError: ``final`` and some layer fails (nothing is left to repair it with).
    """
    split = engine.split
    if split is None:
        return []
    rtol = GROUP_RTOL.get(engine.params[0].dtype, 1e-2)
    bad = split.bad_layers(D, rtol)
    if bad and final:
        names = ", ".join(engine.layer_names[b] for b in bad)
        raise RuntimeError(f"per-example values of the groups of {names} do not sum to their "
                           f"layer's (relative tolerance {rtol:g}): a group rule is wrong")
    return bad


def linear_per_feature(module: nn.Linear, a: torch.Tensor, tangents):
    """``share.per_feature`` of a Linear call with input ``a``: for the parameters of
    ``kinds``, the per-example products summed over every axis but the example and feature
    axes, (n, F): weight rows δ ⊙ (a Vᵀ) per output feature (the rule's own tangent, from
    ``tangents(vs)``), weight columns a ⊙ (δ V) per input feature, bias δ ⊙ V_b."""
    def weight(vs: dict, delta: torch.Tensor, kind: str) -> torch.Tensor:
        if kind == "out":
            return delta * dict(tangents(vs))[module.weight][0]
        return a * (delta @ vs[module.weight])
    return _per_feature(module, weight)


def _per_feature(module: nn.Module, weight_product):
    """``share.per_feature`` from ``weight_product(vs, δ, kind)`` (n, ..., F), the weight's
    per-example product of a Linear-like layer; its bias (output features) is δ ⊙ V_b."""
    def per_feature(vs: dict, delta: torch.Tensor, kinds: dict) -> list:
        out, n = [], delta.shape[0]
        w, b = module.weight, module.bias
        if w in kinds:
            out.append((w, _feature_sums(weight_product(vs, delta, kinds[w]), n)))
        if b is not None and b in kinds:
            out.append((b, _feature_sums(delta * vs[b], n)))
        return out
    return per_feature


def _feature_sums(prod: torch.Tensor, n: int) -> torch.Tensor:
    """(n, ..., F) -> (n, F): summed over every axis but the example and feature axes."""
    return prod.reshape(n, -1, prod.shape[-1]).sum(1)


def is_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2: y = a W + b, W (in, out)), without importing it."""
    return (is_hf_conv1d(type(module)) and getattr(module, "weight", None) is not None
            and module.weight.dim() == 2)


def per_feature_for(split, module: nn.Module, rule, a, tangents, n_outputs: int):
    """The ``share.per_feature`` of a hooked call (None: the groups take masked rule calls):
    row / column groups of an ``nn.Linear`` with a rule or of a single-output ``Conv1D``."""
    if split is None or not split.features:
        return None
    if type(module) is nn.Linear and rule is not None:
        return linear_per_feature(module, a, tangents)
    if is_conv1d(module) and n_outputs == 1:
        return conv1d_per_feature(module, a)
    return None


def conv1d_per_feature(module: nn.Module, a: torch.Tensor):
    """``share.per_feature`` of a ``Conv1D`` call (W (in, out)): whole columns of W are output
    features, δ ⊙ (a V); whole rows input features, a ⊙ (δ Vᵀ); bias δ ⊙ V_b."""
    def weight(vs: dict, delta: torch.Tensor, kind: str) -> torch.Tensor:
        w = vs[module.weight]
        return delta * (a @ w) if kind == "in" else a * (delta @ w.T)
    return _per_feature(module, weight)
