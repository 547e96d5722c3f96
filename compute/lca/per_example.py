"""Per-example directional derivatives per layer (the engine; the functions to call are in
:mod:`compute.lca.per_example_lca`: ``per_example_directional`` and ``per_example_step_lca``).

The allocated loss is a mean over examples, L(θ) = (1/N) Σ_n ℓ_n(θ) (see
:mod:`compute.lca.objective`), so the path integral of LCA splits along the data axis as well as
along the parameters. For a direction v (one tensor per parameter) and the layers l of
:func:`compute.lca.params.param_table`,

    D[n, l] = ∇_{θ_l} ℓ_n(θ) · v_l,        Σ_n D[n, l] = N ∇_{θ_l} L(θ) · v_l,

and for a step θ_0 → θ_1 with v = θ_1 − θ_0 and the quadrature of :mod:`compute.lca.integrator`
(nodes s_k, weights w_k: first_order (0; 1), trapezoid (0, 1; ½, ½), rk4 (0, ½, 1; ⅙, ⅔, ⅙))

    E[n, l] = (1/N) Σ_k w_k D_k[n, l],  D_k at θ_0 + s_k v,

so Σ_n E[n, l] is the step's per-layer LCA and Σ_l E[n, l] = (ℓ_n(θ_1) − ℓ_n(θ_0))/N up to the
quadrature residual (exact where the rule is: rk4 for a gradient cubic along the step).

**How D is computed without per-example gradients (N × P).** One forward and one backward
pass of Σ_n ℓ_n per chunk (the *sum*, not the mean: δ needs no rescaling by N). Forward hooks
save each module's input a_n; a hook on its output receives δ_n = ∂ℓ_n/∂o_n (per-example
because, in a network where examples do not interact, o_n reaches ℓ_n only). The module's
share is ⟨δ_n, ṫ_n⟩ with ṫ_n the output's tangent along V (rules in
:mod:`compute.lca.per_example_rules` and :mod:`compute.lca.per_example_transformer`: Linear δ_nᵀ V
a_n, conv, Embedding, norm affines, the transformer's head projections and embeddings; a
``torch.func.jvp`` of the module's forward for every other module). Tied weights get every
use's share. The example axis is the first of every output (but MultiheadAttention's (L, N, E));
an output shared by the chunk (size 1 there) is expanded to it (``expand_shared``).

With ``check=True`` (default) the same backward also forms the plain gradient, and every chunk
is checked: Σ_n D[n, l] must equal ∇_l (Σ_n ℓ_n) · v_l (to 1e-9 relative in float64; a use no
hook saw, e.g. a weight read by another module's forward, breaks it); a layer that fails is
recomputed by forward mode (below) and listed in :attr:`PerExampleDirectional.repaired`. With
``check=False`` the backward stops at the hooked outputs and forms no weight gradient. Neither
catches a module mixing examples other than BatchNorm (a batch mean): use ``mode="forward"``.

**BatchNorm.** The objective normalises every BatchNorm with the statistics of its chunk (a
fixed partition of the data), so ℓ_n depends on the other examples of its chunk: it is the
n-th term of the chunk-normalised loss, and its gradient includes the path through the chunk's
mean and variance. D[n, l] is the derivative of *that* term, so it changes when the chunk
partition does, and Σ_n D still is the gradient of the allocated loss. The backward through
the statistics mixes the examples of a chunk (δ_n is then ∂(Σ_m ℓ_m)/∂o_n, not ∂ℓ_n/∂o_n), so
the reverse-mode rules would split along activation paths instead; networks with BatchNorm are
therefore computed by forward mode: per chunk and layer one ``torch.func.jvp`` of the chunk's
loss vector (ℓ_n)_n along v_l (cost ~L forward passes with tangents, exact). ``mode="forward"``
does the same for any network (a second, independent way to the same numbers).

**Groups** (``groups=`` / :meth:`PerExampleDirectional.set_groups`): D gets one more column
per group finer than its layer (a head), see :mod:`compute.lca.per_example_groups`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from compute.lca import per_example_groups as by_group
from compute.lca import per_example_transformer as transformer_rule
from compute.lca.objective import FullDatasetObjective, has_batchnorm
from compute.lca.params import param_table
from compute.lca.per_example_forward import ForwardMode
from compute.lca.per_example_groups import SplitGroups, check_group_sums
from compute.lca.per_example_rules import (
    SUBTREE_OWNERS,
    batch_axis,
    expand_shared,
    first_input,
    flat_outputs,
    jvp_tangents,
    padding_rows_zeroed,
    per_example_dot,
    registered_below,
    rule_for,
)

MODES = ("auto", "hooks", "forward")


class PerExampleDirectional(ForwardMode):
    """Per-example, per-layer directional derivatives of an objective's loss terms.

    Args:
        objective: the allocated loss (its probe model, data, chunks and per-example loss).
        mode: ``"hooks"`` (one forward + backward per chunk with the per-module rules),
            ``"forward"`` (one jvp per chunk and layer), ``"auto"``: forward for networks
            with BatchNorm (see the module docstring), hooks otherwise.
        check: hooks mode: also form the chunk's parameter gradient in the same backward
            and check Σ_n D[n, l] against it (a layer that fails is recomputed by forward
            mode); without it the backward stops at the hooked outputs (cheaper: no
            weight gradients), and nothing catches a use no hook saw.
        groups: named groups ``[(name, [(start, end), ...])]`` over the flat parameters
            (:mod:`compute.nets.groups`); D then gets one column per *split* group after the
            L layers (:mod:`compute.lca.per_example_groups`). None: layers only.

    Raises:
        ValueError: ``mode="hooks"`` for a network with BatchNorm, or an unknown mode.
    """

    def __init__(self, objective: FullDatasetObjective, mode: str = "auto", *,
                 check: bool = True, groups: Sequence | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        model = objective.model
        coupled = has_batchnorm(model)
        if mode == "hooks" and coupled:
            raise ValueError("mode='hooks' cannot split a BatchNorm network's loss per example: "
                             "the backward through the chunk statistics mixes the examples; "
                             "use mode='forward' or 'auto'")
        self.mode = "forward" if mode == "forward" or (mode == "auto" and coupled) else "hooks"
        self.objective = objective
        self.params = objective.params
        ids = {id(p) for p in self.params}
        self.names = [n for n, p in model.named_parameters() if id(p) in ids]
        table = param_table(model, self.names)
        self.layer_names = table.layer_names
        self.n_layers = table.n_layers
        self.layer_of = {p: int(li) for p, li in zip(self.params, table.layer, strict=True)}
        self.handlers: dict[str, str] = {}  # module name -> "rule" or "jvp" (hooks mode)
        self.repaired: list[str] = []  # layers the sum check sent to forward mode
        self.split: SplitGroups | None = None  # per-group columns (set_groups)
        self.n_cols = self.n_layers  # D's columns: L, then one per split group
        self._hooks = []
        self._active = False
        self._vs: dict = {}
        self._acc: torch.Tensor | None = None
        self._stateless: nn.Module | None = None  # forward mode's copy of the probe
        self._ghost = None  # the copy's ghost-BatchNorm context (multi-group chunks)
        self._watched: list[tuple[torch.Tensor, int]] = []  # outputs whose δ a rule needs
        self._keep: list | None = None  # evaluate(keep=True): (rows, share, δ) of each output
        self._kept: tuple | None = None  # (θ, those records) for replay()
        self._rows = slice(0, 0)  # the chunk being evaluated
        self.check = check
        # the tangents of rules reading the data, by (module, chunk), for one direction dict
        # (an integrator's step: 2-3 nodes, one Δθ); None: off. Bytes held, and the most.
        self._const_cache: dict | None = None
        self.const_cache_bytes, self.const_cache_budget = 0, 256 << 20
        self.reuse_tangents = False  # a chunk with several backwards (per-class masks)
        if self.mode == "hooks":
            self._install(model)
        if groups:
            self.set_groups(groups)

    def set_groups(self, groups: Sequence | None) -> None:
        """Give D one column per split group of ``groups`` after its L layer columns (None or
        []: layers only). Call before the first evaluation."""
        self.split = (SplitGroups(groups, self.params, self.layer_of, self.n_layers)
                      if groups else None)
        if self.split is not None and self.split.n == 0:
            self.split = None
        self.n_cols = self.n_layers + (self.split.n if self.split is not None else 0)

    def add_shares(self, acc: torch.Tensor, share, vs: dict, delta: torch.Tensor) -> None:
        """Add one hooked output's shares ((parameter, D (n,)) pairs of ``share(vs, δ)``) to
        ``acc`` (n, n_cols): per layer, and per split group (``share`` on V masked to it)."""
        if self.split is not None:
            self.split.add(acc, self.layer_of, share, vs, delta)
            return
        for p, d in share(vs, delta):
            acc[:, self.layer_of[p]] += d.double()

    # ---- hooks mode -------------------------------------------------------------------
    def _install(self, model: nn.Module) -> None:
        """Give each parameter a handler: the rule of the module owning it, else the jvp of
        the nearest module (itself or an ancestor) with a forward of its own."""
        selected = set(self.params)
        jvp_params: dict[str, list[nn.Parameter]] = {}
        claimed: list[str] = []  # SUBTREE_OWNERS: their descendants' parameters are theirs
        for name, module in model.named_modules():
            if any(name.startswith(f"{c}.") for c in claimed):
                continue
            subtree = isinstance(module, SUBTREE_OWNERS)
            if subtree:
                claimed.append(name)
            below = set() if subtree else registered_below(module)  # the children's
            own = [p for p in module.parameters(recurse=subtree) if p in selected
                   and id(p) not in below]
            if not own:
                continue
            rule = None if subtree else rule_for(module)
            if rule is not None:
                self.handlers[name] = "rule"
                self._hooks.append(module.register_forward_hook(
                    self._saver(module, rule, None), with_kwargs=True))
                continue
            host = name
            while host and type(model.get_submodule(host)).forward is nn.Module.forward:
                host = host.rpartition(".")[0]  # e.g. HeadProjection: used by its Attention
            jvp_params.setdefault(host, []).extend(own)
        for host, params in jvp_params.items():
            module = model.get_submodule(host)
            if transformer_rule.applies(module, params):
                self.handlers[host] = "rule"
                self._hooks.extend(transformer_rule.install(self, module))
                continue
            rel = {p: n for n, p in module.named_parameters(remove_duplicate=False)}
            by_layer: dict[int, list[nn.Parameter]] = {}
            for p in params:
                by_layer.setdefault(self.layer_of[p], []).append(p)
            self.handlers[host] = "jvp"
            self._hooks.append(module.register_forward_hook(
                self._saver(module, None, (rel, list(by_layer.values()))), with_kwargs=True))

    def _saver(self, module: nn.Module, rule, fallback):
        def hook(mod, args, kwargs, output):
            if not self._active:
                return
            # a rule whose input does not depend on θ (the data: every θ parameter requires
            # grad here) has the same tangent at every node of a step: see _const_cache
            const = rule is not None and self._const_cache is not None and not any(
                isinstance(t, torch.Tensor) and t.requires_grad for t in (*args, *kwargs.values()))
            key = (id(mod), self._rows.start, self._rows.stop)
            args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
            kwargs = {k: (v.detach() if isinstance(v, torch.Tensor) else v)
                      for k, v in kwargs.items()}
            axis = batch_axis(mod, args, kwargs)
            shared = expand_shared(output, axis, self._rows.stop - self._rows.start)
            outputs = flat_outputs(output if shared is None else shared)  # see expand_shared
            watched = [i for i, out in enumerate(outputs)
                       if isinstance(out, torch.Tensor) and out.requires_grad]
            cache: dict = {"vs": None}

            def tangents(vs):
                if cache["vs"] is not vs:  # one computation per direction, for all outputs
                    was, self._active = self._active, False  # replays must not be hooked
                    try:
                        cached = self._const_cache if const else None
                        # by direction too: a split group's masked V has tangents of its own
                        ck = (*key, id(vs))
                        hit = cached.get(ck) if cached is not None else None
                        if hit is not None and hit[0] is vs:
                            t = hit[1]
                        elif rule is not None:
                            t = [(p, [t]) for p, t in rule(mod, first_input(args, kwargs), vs)]
                            if const:
                                self._cache_const(ck, vs, t)
                        else:
                            rel, groups = fallback
                            t = [(g[0], dots) for g, dots in
                                 jvp_tangents(mod, rel, groups, args, kwargs, vs)]
                    finally:
                        self._active = was
                    if len(watched) == 1 and not self.reuse_tangents:  # keep none alive
                        return t
                    cache.update(vs=vs, t=t)
                return cache["t"]

            def share(vs, g, i):
                return [(p, self._dot(g, dots[i], axis)) for p, dots in tangents(vs)
                        if len(dots) > i and dots[i] is not None]

            for i in watched:
                fn = lambda vs, g, i=i: share(vs, g, i)  # noqa: E731 (it carries an attribute)
                fn.per_feature = by_group.per_feature_for(  # row / column groups, else None
                    self.split, mod, rule, first_input(args, kwargs), tangents, len(outputs))
                self._watch(outputs[i], fn)
            return shared
        return hook

    def _cache_const(self, key, vs, tangents) -> None:
        size = sum(t.numel() * t.element_size() for _, ts in tangents for t in ts)
        if self._const_cache is not None and key not in self._const_cache \
                and self.const_cache_bytes + size <= self.const_cache_budget:
            self._const_cache[key], self.const_cache_bytes = (vs, tangents), \
                self.const_cache_bytes + size

    def clear_const_cache(self, enabled: bool = True) -> None:
        """Forget the cached data-input tangents (a new direction); ``enabled``: cache again."""
        self._const_cache = {} if enabled else None
        self.const_cache_bytes = 0

    def _dot(self, delta: torch.Tensor, tangent: torch.Tensor, axis: int = 0) -> torch.Tensor:
        """⟨δ_n, ṫ_n⟩ (n,), after checking that ``delta`` has the chunk's examples on ``axis``."""
        n = self._acc.shape[0]
        if delta.dim() == 0 or delta.shape[axis] != n:
            raise ValueError(f"a module's output has {tuple(delta.shape)} on its example axis "
                             f"{axis}, expected {n} examples: per-example rules need the "
                             "example axis first (use mode='forward')")
        return per_example_dot(delta, tangent, axis)

    def _take(self, share, delta: torch.Tensor) -> None:
        """Add a hooked output's shares; with ``keep``, remember δ to :meth:`replay` it."""
        if self._vs is not None:  # None: only keep δ (for a replay along a later direction)
            self.add_shares(self._acc, share, self._vs, delta)
        if self._keep is not None:
            self._keep.append((self._rows, share, delta.detach()))

    def _watch(self, tensor: torch.Tensor, share) -> None:
        """In this chunk's backward, add ``share(vs, δ)`` ((parameter, D (n,)) pairs) with
        δ = ``tensor``'s gradient."""
        tensor.register_hook(lambda g: self._take(share, g))
        self._watched.append((tensor, tensor._version))

    def _hooked_chunk(self, x, y, vs) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward and one backward of Σ_n ℓ_n over the chunk. The backward is taken to
        the watched outputs only (no parameter gradient is formed) unless ``check`` asks for
        the parameters' too, or a watched output was later changed in place."""
        obj = self.objective
        self._acc = torch.zeros((len(y), self.n_cols), dtype=torch.float64, device=y.device)
        self._vs, self._watched = vs, []
        self._active = True
        try:
            losses = obj.loss_fn(obj.model(x), y)
            watched = [t for t, version in self._watched if t._version == version]
            full = self.check or len(watched) < len(self._watched)
            params = [p for p in self.params if p.requires_grad] if full else []
            grads = torch.autograd.grad(losses.sum(), watched + params, allow_unused=True)
        finally:
            self._active = False
            self._watched = []
        acc = self._acc
        if self.check:
            self._check(acc, dict(zip(params, grads[len(watched):], strict=True)), x, y, vs)
        return losses.detach().double(), acc

    # ---- public -------------------------------------------------------------------------
    def evaluate(self, theta: torch.Tensor, direction: torch.Tensor, *, keep: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example losses ℓ_n(θ) (N,) and D[n, l] = ∇_{θ_l} ℓ_n(θ) · v_l (N, L), float64
        (N, L + G_s with split groups: their columns follow the layers').

        Args:
            theta: flat parameter vector (P,) of the objective's parameters.
            direction: v as a flat vector (P,) in the same order.
            keep: hooks mode: keep every hooked output's δ (and the inputs the rules read:
                memory ~N × the layers' widths) so that :meth:`replay` gives D at this θ for
                another direction without a forward or backward pass (the start node of the
                next rk4 step is this step's end, with the next step's Δθ); kept until the
                next ``keep=True``.

        Rows follow the objective's example order (class-sorted with ``chunking="class"``).
        """
        obj = self.objective
        obj.size_chunks()  # chunk_size="auto" is resolved on the first evaluation
        obj.set_theta(theta)
        vs = self._directions(direction)
        losses = torch.zeros(obj.n, dtype=torch.float64, device=obj.y.device)
        D = torch.zeros((obj.n, self.n_cols), dtype=torch.float64, device=obj.y.device)
        if self.mode == "forward":
            vs = {**vs, **padding_rows_zeroed(self.objective.model, vs)}
        if keep:
            self._kept = None
        repaired = len(self.repaired)
        self._keep = [] if keep and self.mode == "hooks" else None
        try:
            for s, e, _ in obj.chunks:
                x, y = obj.x[s:e], obj.y[s:e]
                self._rows = slice(s, e)
                if self.mode == "hooks":
                    losses[s:e], D[s:e] = self._hooked_chunk(x, y, vs)
                else:
                    losses[s:e], D[s:e] = self._forward_chunk(x, y, vs)
                    check_group_sums(self, D[s:e], final=True)
            if keep:  # a repaired layer is not in the kept shares: replay re-evaluates
                clean = self._keep is not None and len(self.repaired) == repaired
                self._kept = (theta.detach().clone(), self._keep if clean else None)
        finally:
            self._keep = None
        return losses, D

    def replay(self, direction: torch.Tensor) -> torch.Tensor:
        """D (N, L) at the θ of the last ``evaluate(..., keep=True)`` for another direction.

        From the kept δ's: each rule's tangent along the new V (and the fallback's jvps, at
        that θ), no forward or backward pass; in forward mode, or if the kept evaluation
        repaired a layer, a full :meth:`evaluate` instead.

        Raises:
            RuntimeError: no evaluation was kept.
        """
        if self._kept is None:
            raise RuntimeError("replay() needs an evaluate(theta, v, keep=True) first")
        theta, records = self._kept
        if records is None:
            return self.evaluate(theta, direction, keep=True)[1]
        obj = self.objective
        obj.set_theta(theta)  # the fallback's jvps and the attention rule read θ
        vs = self._directions(direction)
        D = torch.zeros((obj.n, self.n_cols), dtype=torch.float64, device=obj.y.device)
        with torch.no_grad():  # as in the backward the shares are taken in
            for rows, share, delta in records:
                self._acc = D[rows]  # a view: _dot checks its example count
                self.add_shares(self._acc, share, vs, delta)
        check_group_sums(self, D, final=True)
        return D

    def _directions(self, direction: torch.Tensor) -> dict:
        """The flat direction (P,) as one tensor per parameter."""
        vs, offset = {}, 0
        for p in self.params:
            vs[p] = direction[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
        return vs

    def close(self) -> None:
        """Remove the hooks from the probe model."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
