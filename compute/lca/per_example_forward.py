"""Forward mode and the sum check of :class:`compute.lca.per_example.PerExampleDirectional`
(a mixin: the engine's methods that use ``torch.func.jvp``).

Forward mode computes D[n, l] per chunk and layer by one ``jvp`` of the chunk's loss vector
(ℓ_n)_n along v_l (and, with split groups, one per group along v masked to it): the way for
networks with BatchNorm, and the repair of a layer the hooks' sum check finds wrong.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch.func import replace_all_batch_norm_modules_

from compute.lca.ghost_bn import ghost_batchnorm, set_chunk
from compute.lca.per_example_groups import check_group_sums
from compute.lca.per_example_rules import forward_mode_dot, padding_rows_zeroed

CHECK_RTOL = {torch.float64: 1e-9, torch.float32: 1e-3}  # Σ_n D against the plain gradient


class ForwardMode:
    """The forward-mode chunk and the checks of the per-example engine (mixin)."""

    def _check(self, acc: torch.Tensor, grads: dict, x, y, vs) -> None:
        """Σ_n D[n, l] against the plain gradient of the chunk; repair failing layers."""
        total = torch.zeros(self.n_layers, dtype=torch.float64, device=acc.device)
        for p, g in grads.items():
            if g is not None:
                total[self.layer_of[p]] += (g.double() * vs[p].double()).sum()
        layers = acc[:, :self.n_layers]
        scale = layers.abs().sum(0) + total.abs()
        rtol = CHECK_RTOL.get(self.params[0].dtype, 1e-2)
        bad = ((layers.sum(0) - total).abs() > rtol * scale + 1e-300).nonzero().flatten().tolist()
        self._repair(acc, x, y, vs, bad)

    def _repair(self, acc: torch.Tensor, x, y, vs, bad: list[int]) -> None:
        """Recompute the ``bad`` layers (and their groups) of a chunk by forward mode; then
        their split groups must sum to each layer (else recompute those too, else raise)."""
        for attempt in range(2):
            if bad:
                moved = {p: v for p, v in vs.items() if self.layer_of[p] in bad}  # theirs only
                zeroed = {**vs, **padding_rows_zeroed(self.objective.model, moved)}
                _, forward = self._forward_chunk(x, y, zeroed, layers=bad)
                cols = bad + (self.split.columns(bad) if self.split is not None else [])
                acc[:, cols] = forward[:, cols]
                self.repaired.extend(self.layer_names[b] for b in bad
                                     if self.layer_names[b] not in self.repaired)
            bad = check_group_sums(self, acc, final=attempt == 1)
            if not bad:
                return

    # ---- forward mode -------------------------------------------------------------------
    def _forward_chunk(self, x, y, vs, layers: Sequence[int] | None = None):
        obj = self.objective
        out = torch.zeros((len(y), self.n_cols), dtype=torch.float64, device=y.device)
        if self._stateless is None:  # a copy whose BatchNorms keep no running buffers
            self._stateless = copy.deepcopy(obj.model)
            replace_all_batch_norm_modules_(self._stateless)
            # the copy's own ghost groups (the deep copy's would follow a copied context)
            self._ghost = (ghost_batchnorm(self._stateless, obj.bn_group)
                           if getattr(obj, "_groups", None) is not None else None)
        set_chunk(self._ghost, len(y))  # this chunk's groups, as the objective's passes do
        current = {n: p.detach() for n, p in obj.model.named_parameters()}  # all of θ here
        named = dict(zip(self.params, self.names, strict=True))
        wanted = range(self.n_layers) if layers is None else layers
        groups = {li: {named[p]: p for p in self.params if self.layer_of[p] == li}
                  for li in wanted}
        losses = None
        for li, group in groups.items():
            losses, out[:, li] = forward_mode_dot(self._stateless, current, group, vs,
                                                  obj.loss_fn, x, y)
        if self.split is not None:  # one jvp per split group: V masked to it
            for col in self.split.columns(list(wanted)):
                moved = self.split.masked(vs, col - self.n_layers)
                losses, out[:, col] = forward_mode_dot(
                    self._stateless, current, {named[p]: p for p in moved}, {**vs, **moved},
                    obj.loss_fn, x, y)
        return (losses.double() if losses is not None else None), out
