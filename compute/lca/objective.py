"""The allocated loss: an exact full-dataset loss and gradient, summed over fixed chunks.

L(θ) = (1/N) Σ_n ℓ(f_θ(x_n), y_n). LCA needs L to be a deterministic function of θ, so the
objective evaluates a private copy of the model in eval mode (every dropout variant off, and any
other module with a train/eval switch, e.g. RReLU, in its deterministic eval behaviour) except
for normalisation layers: BatchNorm normalises with the statistics of each group of a *fixed*
partition of the data into ``bn_group`` consecutive examples (never its running buffers, which
are left untouched; several groups are evaluated per pass by ghost BatchNorm,
:mod:`compute.lca.ghost_bn`) and InstanceNorm with each example's own statistics. Per-class
losses L_c = (Σ_{n: y_n = c} ℓ_n) / N sum to L.

What a module does not expose cannot be switched off (``F.dropout(x, training=True)``, noise or
random augmentation drawn inside ``forward``), so the first evaluation is done twice and a loss
or gradient that differs between the two is refused with :class:`NondeterministicLossError`.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from compute.lca.chunk_size import (  # noqa: F401 - ChunkingError, DEFAULT_BN_GROUP re-exported
    DEFAULT_BN_GROUP,
    ChunkingError,
    auto_chunk_size,
    check_chunk_size,
    resolve_bn_group,
)
from compute.lca.determinism import (  # noqa: F401 - re-exported
    DETERMINISM_RTOL,
    DETERMINISM_RTOL_LOW,
    GRAD_RTOL_FACTOR,
    NondeterministicLossError,
    check_same_evaluation,
)
from compute.lca.distributed import all_reduce_, world
from compute.lca.ghost_bn import ghost_batchnorm, set_chunk
from compute.lca.params import flat_grads, load_flat_params, selected

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, y) -> (n,) losses

def per_example_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Default loss: cross-entropy per example, (n,)."""
    return F.cross_entropy(outputs, targets, reduction="none")


@dataclass
class Evaluation:
    """The objective at one θ. Tensors stay on the device."""

    loss: torch.Tensor  # () float64
    correct: torch.Tensor  # () int64, examples classified right (for accuracy)
    grad: torch.Tensor | None = None  # (P,)
    class_grad: torch.Tensor | None = None  # (C, P); sums to grad


def has_batchnorm(model: nn.Module) -> bool:
    """True if the model normalises with batch statistics (any BatchNorm, SyncBatchNorm)."""
    return any(isinstance(m, _BatchNorm) for m in model.modules())


def resolve_chunking(chunking: str | None, per_class: bool, model: nn.Module) -> str:
    """The chunking a :class:`FullDatasetObjective` uses: ``chunking``, or by default
    ``"class"`` for per-class runs of models without BatchNorm and ``"mixed"`` otherwise."""
    return chunking or ("class" if per_class and not has_batchnorm(model) else "mixed")


def _probe_copy(model: nn.Module) -> nn.Module:
    """A copy whose forward is a pure function of θ and the chunk (see module docstring).

    Every module is put in eval mode (all ``_DropoutNd`` variants: Dropout, Dropout1d/2d/3d,
    AlphaDropout, FeatureAlphaDropout; RReLU; dropout inside attention layers), except the
    normalisation layers (BatchNorm, InstanceNorm), which stay in training mode so that they
    normalise with the statistics of what they are given, with momentum 0 so that their
    running buffers never move.
    """
    probe = copy.deepcopy(model)
    probe.eval()
    for m in probe.modules():
        if isinstance(m, _NormBase):
            m.train()
            m.momentum = 0.0  # still normalise with chunk statistics, never move the buffers
    for p in probe.parameters():
        p.requires_grad_(True)
    return probe


class FullDatasetObjective:
    """Full-dataset loss and gradient of a model on fixed data.

    Args:
        model: the network (it is copied; the original is never modified).
        x: inputs, (N, ...). Moved to the model's device once.
        y: integer labels, (N,).
        n_classes: number of classes C (needed for per-class gradients).
        chunk_size: examples per forward/backward, or ``"auto"``: the largest chunk whose
            forward+backward fits ``memory_budget`` (see :mod:`compute.lca.chunk_size`), measured
            on the first evaluation. It does not change the loss. (On a BatchNorm model
            without ``bn_group`` an integer keeps its old meaning, the group; deprecated.)
        bn_group: BatchNorm models: examples per normalisation group, part of the loss
            definition (default :data:`DEFAULT_BN_GROUP`); the evaluation chunk holds whole
            groups, normalised separately (ghost BatchNorm). Ignored without BatchNorm.
        memory_budget: bytes for ``chunk_size="auto"``; None: 25 % of the free device memory
            on CUDA, 1 GiB on a CPU.
        per_class: also return the per-class gradients (C, P).
        chunking: ``"class"`` sorts examples by class so each chunk holds one class and the
            per-class gradients fall out of the same backward passes; ``"mixed"`` keeps the
            data order (for BatchNorm models, where class-pure chunks would change the loss) and
            gets per-class gradients from one masked backward per class present in a chunk.
            ``None`` picks ``"class"`` for per-class runs of models without BatchNorm and
            ``"mixed"`` otherwise; ``"class"`` on a model with BatchNorm raises
            :class:`ChunkingError`.
        loss_fn: per-example loss, default cross-entropy.
        param_names: the parameters θ consists of (``named_parameters`` names); None = all.
            The others stay fixed at the model's values.
        compile: run the probe's forward (and so its backward) through ``torch.compile``.
            Same parameters, same loss definition; only kernels and fusion change, so check
            the precision with ``lca-run --precision-check --compile``.

    Raises:
        ChunkingError: ``chunking="class"`` for a model with BatchNorm.
        NondeterministicLossError: (from the first :meth:`evaluate`) the model's forward is
            random even with its dropout modules off.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, n_classes: int,
                 chunk_size: int | str = "auto", per_class: bool = False,
                 chunking: str | None = None, loss_fn: LossFn = per_example_cross_entropy,
                 compile: bool = False, param_names: Sequence[str] | None = None,
                 bn_group: int | None = None, memory_budget: int | None = None):
        check_chunk_size(chunk_size)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"need as many labels as inputs (got {len(x)} and {len(y)})")
        self.chunking = resolve_chunking(chunking, per_class, model)
        if self.chunking not in ("class", "mixed"):
            raise ValueError(f"chunking must be 'class' or 'mixed', got {self.chunking!r}")
        if self.chunking == "class" and has_batchnorm(model):
            raise ChunkingError(
                "chunking='class' is refused for a model with BatchNorm: each class-pure chunk "
                "would be normalised with single-class statistics, which changes the loss being "
                "allocated; use chunking='mixed' (the default for BatchNorm models)")
        self.bn_group, request, deprecated = resolve_bn_group(has_batchnorm(model), chunk_size,
                                                              bn_group)
        if deprecated:
            warnings.warn(f"chunk_size={chunk_size} on a model with BatchNorm sets its "
                          f"normalisation groups; say bn_group={chunk_size} (chunk_size is now "
                          "the evaluation chunk, 'auto' by default)", FutureWarning, stacklevel=2)
        self.model = _probe_copy(model)
        self._groups = (ghost_batchnorm(self.model, self.bn_group)
                        if self.bn_group is not None else None)
        # the compiled wrapper shares the probe's parameters, so set_theta reaches both
        self.forward = torch.compile(self.model) if compile else self.model
        # θ is the vector of these parameters (all by default; LCATracker: the trainable ones)
        self.params = selected(self.model, param_names)
        if param_names is not None:
            chosen = {id(p) for p in self.params}
            for p in self.model.parameters():
                p.requires_grad_(id(p) in chosen)  # no gradient work for the others
        self.verified = False  # set by the first evaluate(), which checks determinism
        self.n_classes = n_classes
        self.per_class = per_class
        self.loss_fn = loss_fn
        self.chunk_request, self.memory_budget = request, memory_budget
        self.chunk_size: int | None = None if request == "auto" else request
        # how the chunk was chosen (recorded in a run's bundle config)
        self.chunk_info: dict = {"chunk_size_as_bn_group": chunk_size} if deprecated else {}
        # per-example LCA (compute.lca.per_example_tap.ExampleTap) while a tapped pass runs
        self.tap = None
        self.set_data(x, y)

    def set_data(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Allocate the loss of these examples from now on (``--lca-data-resample`` draws a
        new subset each step; the probe model, its determinism check and the chunking rule
        stay). Class-pure chunking sorts them by class; the chunk partition is rebuilt."""
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"need as many labels as inputs (got {len(x)} and {len(y)})")
        ref = self.params[0]
        self.order: torch.Tensor | None = None  # class-sorted position i holds input order[i]
        if self.chunking == "class":
            self.order = order = torch.argsort(y, stable=True)
            x, y = x[order], y[order]
        self.x = x.to(device=ref.device, dtype=ref.dtype if x.is_floating_point() else x.dtype)
        self.y = y.to(ref.device)
        self.n = len(self.y)
        self.classify = not self.y.is_floating_point()  # accuracy only makes sense for labels
        self._partition()

    def _partition(self) -> None:
        """Cut the chunks (once the chunk size is known: ``"auto"`` waits for evaluate)."""
        if self.chunk_size is None:
            self.all_chunks = self.chunks = []
            return
        rank, size = world()
        self.all_chunks = self._make_chunks(self.chunk_size)
        self.chunks = self.all_chunks[rank::size]  # this process's shard of the partition
        self.chunk_info.update(chunk_size_requested=self.chunk_request,
                               chunk_size=self.chunk_size, bn_group=self.bn_group,
                               chunks=len(self.all_chunks))

    def size_chunks(self) -> None:
        """Resolve ``chunk_size="auto"`` now (evaluate does it on its first call)."""
        if self.chunk_size is not None:
            return
        storages = [t.untyped_storage().data_ptr()
                    for t in (*self.model.parameters(), *self.model.buffers(), self.x, self.y)]
        info = auto_chunk_size(self._probe_pass, self.n, self.y.device, exclude=set(storages),
                               budget=self.memory_budget, granule=self.bn_group or 1)
        self.chunk_size = info["chunk_size"]
        self.chunk_info.update(info)
        self._partition()
        # class-pure chunks stop at class boundaries: the largest one is what must fit
        largest = max(e - s for s, e, _ in self.all_chunks)
        self.chunk_info.update(largest_chunk=largest, estimated_bytes=info["fixed_bytes"]
                               + info["bytes_per_example"] * largest)

    def _probe_pass(self, m: int) -> None:
        """A forward+backward on the first m examples, for the memory measurement (eager; with
        BatchNorm as two ghost groups, the way multi-group chunks are evaluated)."""
        if self._groups is not None:
            group = self._groups.group
            k = 2 if m % 2 == 0 else 1
            self._groups.group, self._groups.examples, self._groups.groups = m // k, m, k
        try:
            out = self.model(self.x[:m])
            loss = self.loss_fn(out, self.y[:m]).sum() / self.n
            torch.autograd.grad(loss, self.params, allow_unused=True)
        finally:
            if self._groups is not None:
                self._groups.group = group

    def _make_chunks(self, chunk_size: int) -> list[tuple[int, int, int]]:
        """(start, stop, class or -1) for each chunk; class-pure ones never straddle classes.

        With BatchNorm groups, chunks hold whole groups and the last, partial group (if any)
        is a chunk of its own, so every chunk is K groups of one size."""
        if self.chunking == "mixed":
            whole = self.n if self.bn_group is None else self.n // self.bn_group * self.bn_group
            chunks = [(s, min(s + chunk_size, whole), -1) for s in range(0, whole, chunk_size)]
            return chunks + ([(whole, self.n, -1)] if whole < self.n else [])
        counts = torch.bincount(self.y.cpu(), minlength=self.n_classes).tolist()
        chunks, start = [], 0
        for c, count in enumerate(counts):
            for s in range(start, start + count, chunk_size):
                chunks.append((s, min(s + chunk_size, start + count), c))
            start += count
        return chunks

    def set_theta(self, theta: torch.Tensor) -> None:
        """Load the flat parameter vector θ (P,)."""
        load_flat_params(self.params, theta)

    def evaluate(self, theta: torch.Tensor | None = None, *, grad: bool = True) -> Evaluation:
        """Loss (and gradient) over the whole dataset at θ (or the current parameters).

        The first call evaluates twice and raises :class:`NondeterministicLossError` if the
        two disagree beyond :data:`DETERMINISM_RTOL` (see :meth:`check_deterministic`).
        """
        if theta is not None:
            self.set_theta(theta)
        self.size_chunks()
        ev = self._evaluate(grad)
        if not self.verified:
            self.check_deterministic(ev, self._evaluate(grad))
            self.verified = True
        return ev

    def check_deterministic(self, a: Evaluation, b: Evaluation) -> None:
        """Raise :class:`NondeterministicLossError` unless two evaluations at one θ agree.

        The loss must agree to ``DETERMINISM_RTOL[dtype]`` relative (1e-12 in float64, 1e-6
        in float32) and the gradient to ``GRAD_RTOL_FACTOR`` times that in relative L2 norm.
        """
        check_same_evaluation(a.loss, b.loss, a.grad, b.grad, self.params[0].dtype)

    def _evaluate(self, grad: bool) -> Evaluation:
        if not grad:
            with torch.no_grad():
                ev = self._forward_only()
        elif self.per_class and self.chunking == "mixed":
            ev = self._masked_class_pass()
        else:
            ev = self._chunked_pass()
        return self._reduce(ev)

    def _reduce(self, ev: Evaluation) -> Evaluation:
        """Sum the shards of all processes (nothing to do in a single process)."""
        if world()[1] == 1:
            return ev
        all_reduce_(ev.loss, ev.correct)
        if ev.class_grad is not None:
            all_reduce_(ev.class_grad)
            ev.grad = ev.class_grad.sum(0)
        elif ev.grad is not None:
            all_reduce_(ev.grad)
        return ev

    def _forward_only(self) -> Evaluation:
        loss = torch.zeros((), dtype=torch.float64, device=self.y.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.y.device)
        for s, e, _ in self.chunks:
            set_chunk(self._groups, e - s)
            out = self.forward(self.x[s:e])
            loss += self.loss_fn(out, self.y[s:e]).sum().double()
            correct += self._correct(out, self.y[s:e])
        return Evaluation(loss / self.n, correct)

    def _chunked_pass(self) -> Evaluation:
        """One backward per chunk; with class-pure chunks, snapshot .grad at class boundaries."""
        loss = torch.zeros((), dtype=torch.float64, device=self.y.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.y.device)
        class_grads = [] if self.per_class else None
        self._zero_grad()
        tap = self.tap
        if tap is not None:
            tap.begin_pass()
        for k, (s, e, c) in enumerate(self.chunks):
            set_chunk(self._groups, e - s)
            if tap is not None:
                tap.begin_chunk(s, e)
            out = self.forward(self.x[s:e])
            losses = self.loss_fn(out, self.y[s:e])
            chunk_loss = losses.sum() / self.n
            chunk_loss.backward()
            if tap is not None:
                tap.end_chunk(s, e, losses)
            loss += chunk_loss.detach().double()
            correct += self._correct(out, self.y[s:e])
            last_of_class = k + 1 == len(self.chunks) or self.chunks[k + 1][2] != c
            if class_grads is not None and last_of_class:
                class_grads.append((c, flat_grads(self.params)))
                self._zero_grad()
        if class_grads is None:
            return Evaluation(loss, correct, flat_grads(self.params))
        cg = torch.zeros((self.n_classes, sum(p.numel() for p in self.params)),
                         dtype=self.params[0].dtype, device=self.y.device)
        for c, g in class_grads:
            cg[c] = g
        return Evaluation(loss, correct, cg.sum(0), cg)

    def _masked_class_pass(self) -> Evaluation:
        """Mixed chunks: one backward per class present (exact, but ~C× the backward cost)."""
        loss = torch.zeros((), dtype=torch.float64, device=self.y.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.y.device)
        P = sum(p.numel() for p in self.params)
        cg = torch.zeros((self.n_classes, P), dtype=self.params[0].dtype, device=self.y.device)
        tap = self.tap
        if tap is not None:
            tap.begin_pass()
        for s, e, _ in self.chunks:
            set_chunk(self._groups, e - s)
            if tap is not None:
                tap.begin_chunk(s, e)
            out = self.forward(self.x[s:e])
            raw = self.loss_fn(out, self.y[s:e])
            losses = raw / self.n  # (n,)
            loss += losses.detach().sum().double()
            correct += self._correct(out, self.y[s:e])
            present = torch.unique(self.y[s:e]).tolist()
            for i, c in enumerate(present):
                mask = self.y[s:e] == c
                grads = torch.autograd.grad(losses[mask].sum(), self.params, allow_unused=True,
                                            retain_graph=i + 1 < len(present))
                cg[c] += torch.cat([
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, self.params, strict=True)
                ])
            if tap is not None:
                tap.end_chunk(s, e, raw)
        return Evaluation(loss, correct, cg.sum(0), cg)

    def _correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.classify or out.dim() != 2:
            return torch.zeros((), dtype=torch.int64, device=y.device)
        return (out.argmax(1) == y).sum()

    def _zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
