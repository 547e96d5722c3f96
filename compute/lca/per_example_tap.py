"""Per-example LCA inside the integrator's own full-dataset passes (``LCAIntegrator(...,
per_example=idx)``): E[t, n, l] = (1/N) Σ_k w_k ∇_{θ_l} ℓ_n(θ_k) · Δθ_l at the nodes θ_k and with
the weights w_k the per-parameter LCA of the step uses (see :mod:`compute.lca.per_example`).

**Same passes.** The integrator allocates a step whose end θ_{t+1} is given, so Δθ is known
before its nodes are evaluated. While the objective evaluates a node (one forward and one
backward of Σ_n ℓ_n / N per chunk, :class:`compute.lca.objective.FullDatasetObjective`), the
hooks of a :class:`~compute.lca.per_example.PerExampleDirectional` on its probe model see each
module's input a_n and receive δ_n = ∂(ℓ_n/N)/∂o_n in that same backward, so each rule adds
⟨δ_n, ṫ_n⟩ (ṫ the output's tangent along Δθ) to D[n, l]: no second forward or backward. The
backward also forms the gradient, so Σ_n D[n, l] = ∇_l L · Δθ_l is checked at every node
(:data:`compute.lca.per_example_forward.CHECK_RTOL`); a layer that fails (a use no hook saw) is
recomputed by forward mode (an extra pass, listed in :attr:`ExampleTap.repaired`).

**The start node.** θ_t was evaluated as the previous step's end, before Δθ_t was known. That
pass kept every hooked output's δ_n (and the inputs the rules read), and the new step's start
node is *replayed* from them along Δθ_t (the rules' tangents only: no forward or backward).
Where keeping is impossible it is an extra pass at θ_t (hooks, no weight gradients): a chunk
with several backwards (per-class LCA with ``chunking="mixed"``: one per class), or kept
records projected beyond ``keep_bytes``.

**Data-input tangents.** A rule whose input does not depend on θ (the first layer reads the
data) has the same tangent (e.g. ``x Vᵀ`` of the first Linear) at every node of a step: it is
computed once per step and chunk (up to ``const_cache_budget`` bytes).

**BatchNorm.** The objective normalises each BatchNorm group with its own statistics, so ℓ_n
is the term of its group's normalised loss and depends on the other examples of the group;
the backward through the statistics mixes them, so the reverse-mode split is impossible and
these networks take forward mode (one ``jvp`` of the chunk's loss vector per layer) in an
extra pass at every node, only over the chunks that hold a tracked example.

**Groups** (:meth:`ExampleTap.set_groups`): the split groups' columns ride in D after the
layers' (:mod:`compute.lca.per_example_groups`), through the same passes and replays; their
sum over each layer is checked with the layer check (repaired by forward mode, else raised).
"""

from __future__ import annotations

import contextlib

import torch

from compute.lca.distributed import all_reduce_, world
from compute.lca.per_example import PerExampleDirectional
from compute.lca.per_example_forward import CHECK_RTOL
from compute.lca.per_example_groups import check_group_sums
from compute.lca.per_example_rules import padding_rows_zeroed

DEFAULT_KEEP_BYTES = 1 << 30  # the start node's kept δ's and inputs, at most (else a pass)


class ExampleTap:
    """What the integrator uses for ``per_example``: D (N, L) / N at each node, in its passes.

    Args:
        objective: the integrator's objective (its probe model gets the hooks).
        index: (N_e,) int64 positions in the x/y the objective was given (before any class
            sort) of the tracked examples.
        keep_bytes: most memory the start node's kept records may take.

    Raises:
        ValueError: a compiled objective, or an index out of range.
    """

    def __init__(self, objective, index: torch.Tensor, *, keep_bytes: int = DEFAULT_KEEP_BYTES):
        if objective.forward is not objective.model:
            raise ValueError("per-example LCA needs the objective's eager forward (compile="
                             "False): its hooks read every module's input and output gradient")
        self.objective = objective
        self.index = _check_index(index, objective.n)
        self.engine = PerExampleDirectional(objective, "auto", check=False)
        self.hooks = self.engine.mode == "hooks"
        self.engine.clear_const_cache(enabled=self.hooks)  # the start pass's records use it
        self.layer_names, self.n_layers = self.engine.layer_names, self.engine.n_layers
        ref = objective.params[0]
        self._flat_layer = torch.cat([torch.full((p.numel(),), self.engine.layer_of[p],
                                                 dtype=torch.int64, device=ref.device)
                                      for p in objective.params])
        self.keep_bytes = keep_bytes
        self.vs: dict | None = None
        self._direction: torch.Tensor | None = None
        self._want_d = self._keep = False
        self.D: torch.Tensor | None = None  # (N, L) of the last tapped pass, divided by N
        self.losses: torch.Tensor | None = None  # (N,) ℓ_n of the last tapped pass
        self.records: list | None = None
        self._kept: tuple | None = None  # (θ, data, records) for the next start node
        self._chunk_bytes: int | None = None
        self.repaired: list[str] = []
        self.extra_passes = 0  # passes beyond the objective's own (replays not counted)

    def rows(self) -> torch.Tensor:
        """The tracked examples' positions in the objective's (maybe class-sorted) order."""
        obj = self.objective
        if len(self.index) and int(self.index.max()) >= obj.n:
            raise ValueError(f"per-example index reaches {int(self.index.max())}, but the "
                             f"objective now holds {obj.n} examples")
        if obj.order is None:
            return self.index
        inverse = torch.empty_like(obj.order)
        inverse[obj.order] = torch.arange(len(obj.order), device=obj.order.device)
        return inverse[self.index.to(obj.order.device)]

    # ---- a step ---------------------------------------------------------------------------
    def direction(self, delta: torch.Tensor) -> None:
        """Set this step's Δθ (flat); forgets the previous step's data-input tangents."""
        self._direction = delta
        self.vs = self.engine._directions(delta)
        self.engine.clear_const_cache(enabled=self.hooks)

    @contextlib.contextmanager
    def tapping(self, d: bool, keep: bool):
        """The objective's passes inside add D along the step's Δθ (``d``) and keep the
        δ's for the next start node (``keep``); ℓ_n is always recorded."""
        obj = self.objective
        self._want_d, self._keep = d, keep
        obj.tap = self
        try:
            yield
        finally:
            obj.tap = None
            self.engine._active = False
            self.engine._keep = None

    def begin_pass(self) -> None:
        obj = self.objective
        dev = obj.y.device
        self.losses = torch.zeros(obj.n, dtype=torch.float64, device=dev)
        hooked = self.hooks and self._want_d
        self.D = torch.zeros((obj.n, self.engine.n_cols), dtype=torch.float64, device=dev) \
            if hooked else None
        masked = obj.per_class and obj.chunking == "mixed"  # several backwards per chunk
        self.records = [] if self._keep and self.hooks and not masked else None
        self.engine.reuse_tangents = masked
        self._chunk_bytes = None

    def begin_chunk(self, s: int, e: int) -> None:
        if self.D is None and self.records is None:
            return
        eng = self.engine
        eng._acc = torch.zeros((e - s, eng.n_cols), dtype=torch.float64,
                               device=self.losses.device)
        eng._vs = self.vs if self.D is not None else None
        eng._watched, eng._rows, eng._keep = [], slice(s, e), self.records
        eng._active = True

    def end_chunk(self, s: int, e: int, losses: torch.Tensor) -> None:
        eng = self.engine
        eng._active, eng._keep, eng._watched = False, None, []
        self.losses[s:e] = losses.detach().double()
        if self.D is not None:
            self.D[s:e] = eng._acc
        if self.records is not None and self._chunk_bytes is None:
            # δ's, and about as much again for the inputs the rules read
            self._chunk_bytes = 2 * sum(r[2].numel() * r[2].element_size() for r in self.records)
            if self._chunk_bytes * len(self.objective.chunks) > self.keep_bytes:
                self.records = None  # the next start node is an extra pass instead

    def collect(self, theta: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor | None:
        """After a tapped evaluation at θ: D (N, L) / N along Δθ when asked (checked against
        the gradient; by forward mode in an extra pass for BatchNorm nets), and the records
        kept for the next start node."""
        if world()[1] > 1:
            all_reduce_(self.losses, *([self.D] if self.D is not None else []))
        D = None
        if self._want_d:
            D = self._checked(self.D, grad, theta) if self.hooks else self._extra(theta)
        if self._keep:
            obj = self.objective
            self._kept = (theta, obj.x, self.records)
        self.records = None
        return D

    def start_node(self, theta0: torch.Tensor, grad0: torch.Tensor) -> torch.Tensor:
        """D (N, L) / N at θ_t along this step's Δθ: replayed from the kept records, or an
        extra pass where there are none."""
        kept, self._kept = self._kept, None
        obj = self.objective
        if kept is None or kept[2] is None or kept[1] is not obj.x \
                or not torch.equal(kept[0], theta0):
            return self._extra(theta0)
        eng = self.engine
        obj.set_theta(theta0)  # the attention rule and the fallback's jvps read θ
        D = torch.zeros((obj.n, eng.n_cols), dtype=torch.float64, device=obj.y.device)
        with torch.no_grad():
            for rows, share, delta in kept[2]:
                eng._acc = D[rows]
                eng.add_shares(eng._acc, share, self.vs, delta)
        if world()[1] > 1:
            all_reduce_(D)
        return self._checked(D, grad0, theta0)

    # ---- the fallbacks ----------------------------------------------------------------------
    def _extra(self, theta: torch.Tensor, layers: list[int] | None = None) -> torch.Tensor:
        """D (N, L) / N at θ along Δθ by passes of its own: hooks (no weight gradients), or
        forward mode (BatchNorm nets, a repair of ``layers``) over the chunks that matter."""
        obj, eng = self.objective, self.engine
        obj.size_chunks()
        obj.set_theta(theta)
        D = torch.zeros((obj.n, eng.n_cols), dtype=torch.float64, device=obj.y.device)
        forward = not self.hooks or layers is not None
        if forward:  # (a repair: only its layers' padding rows, a tied one elsewhere is fine)
            moved = self.vs if layers is None else {
                p: v for p, v in self.vs.items() if eng.layer_of[p] in layers}
            vs = {**self.vs, **padding_rows_zeroed(obj.model, moved)}
        wanted = torch.zeros(obj.n, dtype=torch.bool, device=obj.y.device)
        wanted[self.rows().to(wanted.device)] = True
        if layers is not None:  # a repair: every example, so that Σ_n D stays the gradient's
            wanted[:] = True
        self.extra_passes += 1
        for s, e, _ in obj.chunks:
            if not bool(wanted[s:e].any()):
                continue
            x, y = obj.x[s:e], obj.y[s:e]
            eng._rows = slice(s, e)
            if forward:
                _, out = eng._forward_chunk(x, y, vs, layers=layers)
            else:
                _, out = eng._hooked_chunk(x, y, self.vs)
            D[s:e] = out / obj.n
        if world()[1] > 1:
            all_reduce_(D)
        if layers is None:  # a repair is checked by the caller
            check_group_sums(eng, D, final=True)
        return D

    def _checked(self, D: torch.Tensor, grad: torch.Tensor | None, theta) -> torch.Tensor:
        """Σ_n D[n, l] against ∇_l L · Δθ_l (the pass's own gradient); recompute failing
        layers by forward mode."""
        if grad is None:
            return D
        v = self._direction
        total = torch.zeros(self.n_layers, dtype=torch.float64, device=D.device)
        total.index_add_(0, self._flat_layer, (grad.double() * v.double()))
        layers = D[:, :self.n_layers]
        scale = layers.abs().sum(0) + total.abs()
        rtol = CHECK_RTOL.get(self.objective.params[0].dtype, 1e-2)
        # a layer whose share is pure rounding (a direction the loss is flat along, such as a
        # shift of every logit) is held to the largest layer's scale
        floor = 1e-3 * rtol * float(scale.max()) + 1e-300
        bad = ((layers.sum(0) - total).abs() > rtol * scale + floor).nonzero().flatten().tolist()
        split = self.engine.split
        for attempt in range(2):  # then the split groups of each layer must sum to it
            if bad:
                cols = bad + (split.columns(bad) if split is not None else [])
                D[:, cols] = self._extra(theta, layers=bad)[:, cols]
                self.repaired.extend(self.layer_names[b] for b in bad
                                     if self.layer_names[b] not in self.repaired)
            bad = check_group_sums(self.engine, D, final=attempt == 1)
            if not bad:
                break
        return D

    def set_groups(self, groups) -> None:
        """Per-group per-example values too (:meth:`PerExampleDirectional.set_groups`); before
        :meth:`LCAIntegrator.start <compute.lca.integrator.LCAIntegrator.start>`."""
        self.engine.set_groups(groups)
        self._kept = None  # records of a pass without the group columns: an extra pass

    @property
    def example_groups(self):
        """(G_s,) int64 indices into the groups of the split groups' columns (None: none)."""
        split = self.engine.split
        return None if split is None else split.index

    def close(self) -> None:
        """Remove the hooks from the objective's probe model."""
        self.engine.close()


def _check_index(index, n: int) -> torch.Tensor:
    index = torch.as_tensor(index)
    if index.dim() != 1 or index.is_floating_point() or index.dtype == torch.bool:
        raise ValueError(f"per_example must be a 1-D integer index tensor, got "
                         f"{tuple(index.shape)} {index.dtype}")
    index = index.long()
    if len(index) == 0:
        raise ValueError("per_example index is empty: track at least one example")
    if int(index.min()) < 0 or int(index.max()) >= n:
        raise ValueError(f"per_example index out of range 0..{n - 1}: "
                         f"[{int(index.min())}, {int(index.max())}]")
    return index
