"""LCA of your own training loop: :class:`LCATracker` writes a standard, live run bundle.

    with LCATracker(model, X, y, out="runs/mine.h5", lca_rows="dense:200,10") as lca:
        for xb, yb in loader:
            opt.zero_grad(); loss = F.cross_entropy(model(xb), yb); loss.backward(); opt.step()
            lca.step(minibatch_loss=loss.item())   # after every optimizer step

The tracker snapshots θ at entry, then allocates each step θ_t → θ_{t+1} online with the
engine ``lca-run`` drives (:class:`~compute.engine.session.LCASession`: every LCA option of
``lca-run`` is a keyword here; O(P) state; the fixed set's loss is the one allocated), so the
dashboard shows the run while it trains. It closes the bundle ``complete``,
or ``failed`` with the exception's message if the block raises (the exception propagates).
θ is every parameter that requires grad, and with ``optimizer=`` every parameter the optimizer
holds (so a block unfrozen during training is allocated); the others are listed in the bundle's
config, and a step that finds one of them changed stops the run ``failed``.

The tracker refuses to be silently wrong (:mod:`compute.integrations.tracker_checks`): it evaluates
with gradients on and autocast off whatever the caller's context; a non-finite loss stops the run
``failed`` (:class:`~compute.engine.approx.RunFailed`); a ``step()`` with no optimizer step and no
change of θ since the last one (called twice) is ignored, optimizer steps missed between calls
and a cumulative residual over 1 % of the loss change are warned (:class:`LCAWarning`, once
each) and recorded in the bundle's ``warnings``; a run whose ``step()`` was never called
closes ``failed``.
Resume with ``resume=True`` and ``lca.load_state_dict()`` of the ``lca.state_dict()`` your
checkpoint holds (:mod:`compute.integrations.tracker_resume`); under ``torchrun`` the ranks share
the fixed set's chunks and rank 0 writes (:mod:`compute.lca.distributed`).
"""

from __future__ import annotations

import inspect
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from compute.engine.approx import RunFailed
from compute.engine.options import options_from_keywords
from compute.engine.parts import LCARun, build_lca, with_groups
from compute.engine.residual import residual_advice
from compute.engine.session import LCASession
from compute.integrations import tracker_resume as resuming
from compute.integrations.tracker_checks import (
    LCAWarning,
    StepWatch,
    fixed_set,
    movable_names,
    moved_outside_theta,
    never_stepped,
    outside_theta,
    unfrozen_message,
)
from compute.integrations.tracker_layout import tracker_layout
from compute.lca.context import engine_context
from compute.lca.distributed import NullWriter, is_main, raise_together, unwrap_parallel
from compute.lca.integrator import LCAStep
from compute.lca.objective import LossFn, per_example_cross_entropy
from compute.lca.params import flat_params, unwrap
from compute.nets.groups import build_groups
from lcaviz.bundle.size import size_note
from lcaviz.bundle.writer import BundleWriter, LayoutInfo
from lcaviz.export.live import TensorBoardMirror, open_live

COUNTERS_EVERY = 50  # steps between writes of the per-parameter counters (a live run's lag)


class LCATracker:
    """Online LCA of any ``nn.Module`` trained by any loop and optimizer (exact gradients):
    the face of the engine (:class:`~compute.engine.session.LCASession`) that ``lca-run``
    drives with its reference loop.

    Args:
        model: the network being trained (read, never modified; a private copy evaluates the
            allocated loss with dropout off and BatchNorm on fixed chunks).
        inputs: the fixed set whose loss is allocated: a tensor (with ``targets``), a
            ``Dataset`` of ``(x, y)`` or a ``DataLoader`` over it.
        targets: labels (N,) with an inputs tensor.
        out: bundle path; an existing file is refused unless ``overwrite``.
        loss_fn: per-example loss ``(outputs, targets) -> (N,)``; default cross-entropy.
        n_classes: number of classes (default: ``max(targets) + 1`` for integer labels).
        class_names: one name per class, shown by the dashboard (default: "0", "1", ...).
        optimizer: the training optimizer: recorded (class and param-group settings), every
            parameter it holds is tracked, and its steps are counted (a step post-hook) to
            tell a doubled or missed ``step()`` from a real one.
        val_inputs, val_targets: a second fixed set whose loss change is allocated too.
        overwrite: replace an existing ``out``.
        flush_seconds: the writer publishes new iterations at least this often.
        groups: named parameter groups finer than layers, stored as ``params/groups`` with
            ``lca_group`` per iteration (the run page's "by: head / part"): ``"heads"`` (the
            attention heads, :func:`compute.nets.groups.attention_head_groups`), a dict
            ``{name: [(parameter name, selection), ...]}`` (selection: None, a flat ``range``
            or a ``param[sel]`` index; :mod:`compute.nets.groups`) or a callable model -> dict.
            What no group covers gets one group per layer. None: no groups.
        tensorboard: also write TensorBoard events live, to ``tensorboard/<out's name>/``
            (the tags of ``lcaviz export tensorboard``; needs the tensorboard package).
        resume: continue ``out`` from the state given to :meth:`load_state_dict`; with none
            (no checkpoint yet) an unfinished ``out`` starts again. Never a complete one.
        seed: seed of the ``lca_data`` subsets (``lca-run --seed``).
        iters: the planned number of steps, if known: recorded, and ``full_loss_every``
            then also evaluates θ_T at the last one (None: unknown).
        **options: every LCA option of ``lca-run``, with its name, default and validation
            (:class:`compute.engine.options.LCAOptions`; an unknown keyword is a TypeError
            naming the closest one):

            * ``method``: ``first_order``, ``trapezoid``, ``rk4`` (default) or ``adaptive``;
              ``tol``, ``rtol``, ``max_halvings``: adaptive settings.
            * ``per_class``: also split each layer's LCA per class (labels must be class
              indices). Off by default here (on in ``lca-run``): it keeps a (C, P) gradient
              per evaluation and runs one backward per class present in each chunk for
              models with BatchNorm (class-pure, smaller chunks otherwise): 2.0× slower per
              rk4 step on a small BatchNorm CNN and 4.7× on a 1.9 M-parameter MLP (500
              examples, 10 classes, CPU; issue 22 reports 4.7× and 2.8× on a 10 M MLP).
            * ``chunk_size``: examples per pass, or ``"auto"`` (the largest that fits the
              memory budget; never changes the loss without BatchNorm); ``bn_group``:
              BatchNorm models: examples per normalisation group (default 1000; see
              ``FullDatasetObjective``); ``chunking``: ``"class"`` or ``"mixed"`` chunks;
              ``compile``: ``torch.compile`` the passes.
            * ``lca_error_every``: K > 0: an error estimate (4× the intervals) at
              iterations 0, K, 2K, ...; ``counterfactual_every``: K > 0: the causal test there.
            * cheaper LCA (docs/approximations.md): ``lca_data`` (a count, fraction or
              percentage of the fixed set: a class-stratified subset), ``lca_data_resample``
              (a fresh one every step), ``lca_every`` (allocate iterations 0, K, 2K, ...
              only), ``full_loss_every`` (the whole fixed set's loss every K steps).
            * what the bundle stores: ``lca_rows`` (row schedule ``"1"``, ``"dense:200,10"``,
              ...; an int is a stride), ``lca_stride``, ``lca_layers`` (layer names with
              per-parameter rows; None: all, [] or "none": none; a string is
              comma-separated), ``lca_storage`` (``"float32"`` or ``"bfloat16"``),
              ``lca_compression`` (``"none"`` or ``"gzip"``), ``save_trajectory`` (θ_t every
              iteration), ``per_example`` (``True``/``"all"`` or K: each step's per-layer
              LCA split among all, or a seeded class-stratified K, of the fixed set's
              examples: the bundle's ``lca_example``; default off).

    Under ``torchrun``: the ``DistributedDataParallel`` model and the same fixed set on every
    rank; the ranks share the fixed set's chunks and rank 0 alone writes ``out`` (per-example
    values and losses too: each rank's chunks' rows are summed over the ranks).
    """

    def __init__(self, model: nn.Module, inputs, targets=None, *, out: str | Path,
                 loss_fn: LossFn | None = None, n_classes: int | None = None,
                 class_names: list[str] | None = None,
                 optimizer: torch.optim.Optimizer | None = None, val_inputs=None,
                 val_targets=None, overwrite: bool = False, flush_seconds: float = 2.0,
                 groups=None, tensorboard: str | Path | None = None, resume: bool = False,
                 seed: int = 0, iters: int | None = None, **options):
        if resume and overwrite:
            raise ValueError("LCATracker: resume=True continues out=, overwrite=True replaces it")
        if resume and tensorboard:
            raise ValueError("LCATracker: tensorboard= cannot follow a resumed run yet; export "
                             "the finished bundle with `lcaviz export tensorboard` instead")
        own = tuple(inspect.signature(LCATracker).parameters)
        self.opts = options_from_keywords(options, own=own)  # bad ones fail before any work
        self.model, self.out = unwrap_parallel(model), Path(out)  # DDP: the network in it
        self.x, self.y = fixed_set(inputs, targets)
        self.val = fixed_set(val_inputs, val_targets) if val_inputs is not None else None
        self.loss_fn = loss_fn or per_example_cross_entropy
        labels = not self.y.is_floating_point()
        if self.opts.per_class and not labels:
            raise ValueError("LCATracker: per_class needs integer class labels as targets")
        self.n_classes = int(n_classes or (int(self.y.max()) + 1 if labels else 1))
        self.class_names = [str(c) for c in (class_names or range(self.n_classes))]
        if len(self.class_names) != self.n_classes:
            raise ValueError(f"LCATracker: {len(self.class_names)} class_names for "
                             f"{self.n_classes} classes")
        self.options = self.opts.lca_options()  # recorded in the config and the state
        self.optimizer, self.overwrite, self.flush_seconds = optimizer, overwrite, flush_seconds
        self.groups, self.seed, self.iters = groups, seed, iters
        self.writer: BundleWriter | NullWriter | None = None  # NullWriter on ranks other than 0
        self.session: LCASession | None = None  # the engine, from start()
        self.resume, self._loaded = resume, None  # the state load_state_dict() was given
        self.notes: list[str] = []  # warnings recorded in the bundle at close
        self._warned: dict[str, int] = {}  # warning kind -> iteration it was first given at
        self.tensorboard = tensorboard

    # -- the with block ---------------------------------------------------------------------
    def __enter__(self) -> LCATracker:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.close()
        else:
            self.fail(f"{exc_type.__name__}: {exc}")
        return False  # never swallow the exception

    @property
    def iteration(self) -> int:
        """Iterations allocated so far: where a resumed loop continues."""
        return self.t

    def state_dict(self) -> dict:
        """The LCA run's state for your checkpoint, beside the model's and optimizer's (after
        ``lca.step()``; the bundle is flushed first, so it holds what the state counts)."""
        if self.writer is None:
            raise RuntimeError("LCATracker.state_dict() outside its with block")
        self.writer.flush()
        return resuming.tracker_state(self)

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (a checkpoint's ``lca.state_dict()``; load the model from the
        same checkpoint). Raises ValueError for another dict; start() raises ConfigError where
        the bundle or the model do not match it."""
        if self.writer is not None:
            raise RuntimeError("LCATracker.load_state_dict() after the tracker started")
        self._loaded, self.resume = resuming.checked_state(state), True

    def start(self) -> None:
        """Snapshot θ_0, evaluate the fixed set's loss and gradient there, create the bundle
        (or, resuming, continue it at the loaded state's iteration)."""
        self.device = next(self.model.parameters()).device
        # only rank 0 touches the bundle; the others learn of its refusal
        raise_together(resuming.check_out(self) if is_main() else None, self.device)
        # existing TensorBoard events fail here, before the bundle is created
        self._live = (open_live(self.tensorboard, self.out.stem)
                      if self.tensorboard and is_main() else None)
        with engine_context(self.device):
            self._start()

    def _start(self) -> None:
        model, device = self.model, self.device
        names = movable_names(model, self.optimizer)
        if not names:
            raise ValueError("LCATracker: the model has no parameter that requires grad")
        prefix = unwrap(model)[1]  # names as the wrapped network has them (no "hf.")
        self.frozen = [n.removeprefix(prefix) for n, _ in model.named_parameters()
                       if n not in set(names)]
        run = LCARun(**build_lca(model, self.x.to(device), self.y.to(device), self.opts,
                                 n_classes=self.n_classes,
                                 class_names=self.class_names,
                                 seed=self.seed, iters=self.iters, names=names,
                                 loss_fn=self.loss_fn,
                                 val=None if self.val is None else
                                 (self.val[0].to(device), self.val[1].to(device))))
        run.approx.check_minibatch = False  # minibatch_loss is optional here
        self.run = with_groups(run, build_groups(model, run.table, self.groups))
        self.session = LCASession(self.run, residual_advice(f"method={self.opts.method!r}"))
        theta = flat_params(model, names)
        resuming.check_ranks(self._loaded, list(run.table.names), theta)  # θ equal; θ_T
        self.outside = outside_theta(model, run.train_lca.objective.model, names)
        self.watch = StepWatch(self.optimizer)  # removed when the bundle closes
        if self._loaded is not None:  # θ_T's gradient was counted before the checkpoint
            self.session.resume(int(self._loaded["T"]), theta)
            resuming.continue_bundle(self, self._loaded)
            self.session.writer = self.writer
            return
        e0, v0, full0 = self.session.begin(theta)
        self.loss0 = float(e0.loss)
        if not is_main():
            self.writer = self.session.writer = NullWriter()
            return
        print(size_note(self._layout()), file=sys.stderr)  # issue 22.8: a size one can plan
        zero = dict(loss_train0=float(e0.loss), acc_train0=int(e0.correct) / len(self.run.y),
                    loss_val0=float(v0.loss) if v0 else None)
        self.writer = BundleWriter.create(
            self.out, self._layout(), theta0=None, **zero,
            acc_val0=int(v0.correct) / len(self.run.val_lca.objective.y) if v0 else None,
            full_loss0=full0, flush_seconds=self.flush_seconds)
        if self._live is not None:  # the same records, also as TensorBoard events
            self.writer = TensorBoardMirror(self.writer, self._live, self._layout(), **zero)
        self.session.writer = self.writer

    # -- the engine's state, as the tracker's (tracker_resume reads and sets them) -----------
    @property
    def t(self) -> int:
        return self.session.t if self.session is not None else 0

    @t.setter
    def t(self, value: int) -> None:
        self.session.t = value

    @property
    def state(self):
        return self.session.state

    @property
    def residual(self):
        return self.session.residual

    @property
    def integ(self):
        return self.run.train_lca

    @property
    def loss0(self) -> float:
        """θ_0's allocated loss: the scale of the residual check's rounding floor."""
        return self.session.residual_scale

    @loss0.setter
    def loss0(self, value: float) -> None:
        self.session.residual_scale = value

    def step(self, minibatch_loss: float = float("nan")) -> LCAStep | None:
        """Allocate the step from the last θ to the model's current parameters (call it after
        every optimizer step, in any autocast / no_grad / inference_mode context); returns
        the step's allocation (None for an ignored repeated call, and for a step that
        ``lca_every`` leaves unallocated).

        Raises:
            RunFailed: the loss became NaN/Inf, or a parameter outside θ changed; the bundle
                is closed ``failed`` with the reason first.
        """
        if self.writer is None:
            raise RuntimeError("LCATracker.step() outside its with block (or before start(), "
                               "or after the run stopped)")
        with engine_context(self.device):
            return self._step(float(minibatch_loss))

    def _step(self, minibatch_loss: float) -> LCAStep | None:
        t0 = time.perf_counter()
        theta = flat_params(self.model, self.run.names)
        n_opt = self.watch.take()  # None without an optimizer
        if not n_opt and torch.equal(theta, self.session.theta):
            self._warn("twice", "LCATracker: lca.step() called twice with no optimizer step "
                       "and no change of the parameters in between; the extra call is ignored "
                       "(call it once after every optimizer step)", record=False)
            return None
        if n_opt == 0:
            self._warn("unwatched", "LCATracker: the parameters moved but the optimizer given "
                       "to the tracker did not step; the change is allocated as one iteration")
        elif n_opt is not None and n_opt > 1:
            self._warn("missed", f"LCATracker: {n_opt} optimizer steps since the last "
                       f"lca.step() (iteration {self.t}): they are allocated as one iteration; "
                       "call lca.step() after every optimizer step")
        if moved := moved_outside_theta(self.outside):
            self._stop(unfrozen_message(moved))
        try:
            _, st, warning = self.session.step(theta, minibatch_loss, t0)
        except RunFailed as e:
            self._stop(str(e))
        if self.t % COUNTERS_EVERY == 0:
            self.session.write_counters()
        if warning:
            self._warn("residual", warning, record=False)  # the bundle gets residual.note()
        return st

    def close(self) -> Path:
        """Append the open row window, write the counters and close the bundle ``complete``
        (``failed`` if ``step()`` was never called), with the run's warnings recorded."""
        if self.writer is None:
            return self.out
        with engine_context(self.device):
            n_opt = self.watch.take()
            moved = not torch.equal(flat_params(self.model, self.run.names), self.session.theta)
        if not self.t:
            reason = never_stepped(n_opt, moved)
            warnings.warn(reason, LCAWarning, stacklevel=2)
            self.fail(reason)
            return self.out
        if n_opt or (n_opt is None and moved):
            steps = f"{n_opt} optimizer step(s)" if n_opt else "a change of the parameters"
            self._warn("unallocated", f"LCATracker: {steps} after the last lca.step() "
                       f"(iteration {self.t - 1}) were not allocated; the bundle ends before "
                       "them")
        self.session.finish(self.notes)
        self.writer = None
        self.watch.remove()
        return self.out

    def fail(self, reason: str) -> None:
        """Close the bundle ``failed`` with ``reason``; what was written stays readable."""
        if self.writer is not None:
            self.watch.remove()
            try:
                self.session.write_counters()
            finally:
                self.writer.close("failed", reason, attrs=self.session.warning_attrs(self.notes))
                self.writer = None

    # -- checks (compute.integrations.tracker_checks) ----------------------------------------
    def _stop(self, reason: str) -> None:
        """Close the bundle ``failed`` with ``reason`` and stop the run."""
        self.fail(reason)
        raise RunFailed(reason)

    def _warn(self, kind: str, message: str, record: bool = True) -> None:
        """Warn once per kind; ``record`` also keeps the message for the bundle."""
        if kind in self._warned:
            return
        self._warned[kind] = self.t
        if is_main():  # once per run, not once per rank
            warnings.warn(message, LCAWarning, stacklevel=4)
        if record:
            self.notes.append(message)

    def _layout(self) -> LayoutInfo:
        return tracker_layout(self)
