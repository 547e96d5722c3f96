"""``lca-run``'s LCA of one iteration in every mode (docs/approximations.md):

* exact (the default): every step θ_t → θ_{t+1} on the whole training set; θ_{t+1}'s
  gradient is the next step's start (2 new full-dataset gradients per rk4 step);
* ``--lca-data N|fraction``: the same on a fixed class-stratified subset
(:mod:`compute.lca.subset`),
  n/N of the cost;
* ``--lca-data-resample``: a fresh subset S_t each step. All nodes of step t (θ_t, the
  midpoint, θ_{t+1}) must use the same S_t, so θ_t's gradient is evaluated again on S_t: the
  endpoint reuse is lost and an rk4 step needs 3 gradients of n examples (trapezoid 2, first
  order 2), i.e. 1.5× a fixed subset of the same size;
* ``--lca-every K``: only iterations 0, K, 2K, ... are allocated, each exactly from θ_t to
  θ_{t+1}; the start θ_t is evaluated when it is reached (no reuse either: 3 gradients per
  allocated rk4 step, so 3/(2K) of the exact cost). The others get a record that says so
  (:func:`compute.engine.record.gap_record`) and the bundle lists the allocated ones
  (``lca_iters``);
* ``--full-loss-every K``: the full training loss at θ_0, θ_K, ... and θ_T, forward only,
  to calibrate a subset or sparse run.

In the approximate modes the gradient-sign counters see the gradient at the start of each
allocated step (on its subset), not at every θ_t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from compute.engine.options import ConfigError
from compute.engine.record import gap_record, record
from compute.lca.counterfactual import counterfactual_step
from compute.lca.lca_error import is_error_iteration
from compute.lca.objective import Evaluation, FullDatasetObjective
from compute.lca.oscillation import count_gradient, count_move
from compute.lca.subset import allocated_loss_text, indices_hash, stratified_subset, subset_size
from lcaviz.bundle.layout import IterationRecord

UNKNOWN_ITERS = 2**62  # LCATracker without iters=: no last iteration is known in advance


class RunFailed(RuntimeError):
    """The run stopped; the bundle is marked ``failed`` and keeps what it had."""


@dataclass
class Approx:
    """Which steps a run allocates, and on which examples."""

    every: int = 1  # K of --lca-every
    resample: bool = False  # a fresh subset every step
    n: int = 0  # examples whose loss is allocated
    n_total: int = 0  # N, the training set
    seed: int = 0
    iters: int = 0
    full_every: int = 0  # --full-loss-every
    full: FullDatasetObjective | None = None  # forward-only objective on all N examples
    x_all: torch.Tensor | None = None  # (N, ...) for drawing resampled subsets
    y_all: torch.Tensor | None = None
    prev_theta: torch.Tensor | None = None  # θ_t, for the moves of steps not allocated
    check_minibatch: bool = True  # a NaN minibatch loss stops the run (LCATracker: optional)

    @property
    def plain(self) -> bool:
        """True when each step's end is the next step's start (the integrator carries it)."""
        return self.every == 1 and not self.resample

    def allocated(self, t: int) -> bool:
        return t % self.every == 0

    def row_closes(self, schedule, t: int) -> bool:
        """Whether a per-parameter row closes after iteration t. With ``--lca-every K`` the
        row schedule counts allocated steps, and a row ends just before the next allocated
        iteration: windows ``[jK, (j + S)K)`` for a stride of S."""
        if self.every == 1:
            return schedule.closes_after(t)
        return (t + 1) % self.every == 0 and schedule.closes_after((t + 1) // self.every - 1)

    def full_due(self, t: int) -> bool:
        """Evaluate the full loss at θ_{t+1}: every ``full_every`` iterations and at θ_T."""
        return self.full_every > 0 and ((t + 1) % self.full_every == 0 or t + 1 == self.iters)


def setup(opts, labels: np.ndarray, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0,
          iters: int | None = None) -> tuple[Approx, np.ndarray | None, dict]:
    """The run's :class:`Approx`, the indices of the examples its integrator starts with (None:
    all) and what the bundle's config records about them.

    Args:
        opts: the LCA options (``lca_data``, ``lca_data_resample``, ``lca_every``,
            ``full_loss_every``).
        labels: (N,) class labels of every example (the subsets are stratified by them).
        x, y: every example (resampling draws from them).
        seed: the subsets' seed. iters: planned iterations (None: unknown).

    Raises:
        ConfigError: ``lca_data`` larger than the set.
    """
    N = len(labels)
    try:
        n = subset_size(opts.lca_data, N)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    a = Approx(every=opts.lca_every, resample=opts.lca_data_resample, n=n, n_total=N,
               seed=seed, iters=UNKNOWN_ITERS if iters is None else iters,
               full_every=opts.full_loss_every)
    info = {"allocated_loss": allocated_loss_text(n, N, a.resample), "lca_data_n": n,
            "lca_data_of": N}
    idx = None
    if a.resample:
        a.x_all, a.y_all = x, y
        idx = stratified_subset(labels, n, seed, 0)
        info["lca_data_subsets"] = ("class-stratified, drawn for iteration t from numpy "
                                    "SeedSequence([seed, 17, t + 1])")
    elif n < N:
        idx = stratified_subset(labels, n, seed)
        info["lca_data_sha256"] = indices_hash(idx)
        info["lca_data_subsets"] = "class-stratified, numpy SeedSequence([seed, 17])"
    return a, idx, info


def full_loss(a: Approx, theta: torch.Tensor) -> tuple[float, float]:
    """(loss, accuracy) of the full training set at θ (no gradient)."""
    e = a.full.evaluate(theta, grad=False)
    return float(e.loss), int(e.correct) / a.n_total


def prepare(run, state, t: int, theta: torch.Tensor, count: bool = True
            ) -> tuple[Evaluation, Evaluation | None]:
    """Make θ_t the start of step t: draw S_t (resampling), evaluate there and count the
    gradient (``count`` False on a resume: the checkpoint counted it already)."""
    a = run.approx
    if a.resample:
        idx = torch.as_tensor(stratified_subset(a.y_all.cpu().numpy(), a.n, a.seed, t),
                              device=a.y_all.device)
        run.train_lca.objective.set_data(a.x_all[idx], a.y_all[idx])
    e = run.train_lca.start(theta)
    v = None  # the validation set never changes: only a gap leaves its integrator behind
    if run.val_lca and (a.every > 1 or run.val_lca.theta is None):
        v = run.val_lca.start(theta)
    if count:
        count_gradient(state, e.grad)
    a.prev_theta = theta
    return e, v


def resume(run, state, T0: int, theta: torch.Tensor) -> None:
    """Rebuild the integrators' start at θ_{T0} after loading a checkpoint."""
    a = run.approx
    a.prev_theta = theta
    if a.plain or (T0 < a.iters and a.allocated(T0)):
        prepare(run, state, T0, theta, count=False)


def iteration(run, state, t: int, theta: torch.Tensor, mb_loss: float):
    """Allocate iteration t (θ_t → θ_{t+1} = ``theta``) as the run's mode says.

    Returns:
        ``(record for the writer, LCAStep or None where the step was not allocated)``.
    """
    a, cfg = run.approx, run.cfg
    st = None
    if a.allocated(t):
        st = run.train_lca.step(theta, refine=is_error_iteration(t, cfg.lca_error_every))
        vst = run.val_lca.step(theta) if run.val_lca else None
        _finite(a, t, mb_loss, st.loss_after, st.residual)
        rec = record(run, st, vst, state, mb_loss, theta, t, 0.0, count_grad=a.plain)
        rec.loss_change = st.loss_after - st.loss_before
        K = cfg.counterfactual_every
        if K and t % K == 0:  # the causal test: only the helping / hurting / zero coordinates
            rec.counterfactual = counterfactual_step(
                run.train_lca.objective, a.prev_theta, theta, st.lca,
                loss0=st.loss_before, loss1=st.loss_after)
    else:
        _finite(a, t, mb_loss, 0.0, 0.0)
        count_move(state, theta - a.prev_theta)
        rec = gap_record(run, state, t, mb_loss, theta)
    a.prev_theta = theta
    if not a.plain and t + 1 < a.iters and a.allocated(t + 1):
        e, v = prepare(run, state, t + 1, theta)
        if st is None:  # θ_{t+1} was not evaluated as a step's end: its loss is known now
            _at_theta(rec, run, e, v)
    if a.full_due(t):
        rec.full_loss = (t + 1, *full_loss(a, theta))
    return rec, st


def _at_theta(rec: IterationRecord, run, e: Evaluation, v: Evaluation | None) -> None:
    rec.loss_train, rec.acc_train = float(e.loss), int(e.correct) / len(run.train_lca.objective.y)
    if v is not None:
        rec.loss_val, rec.acc_val = float(v.loss), int(v.correct) / len(run.val_lca.objective.y)


def _finite(a: Approx, t: int, mb_loss: float, loss: float, residual: float) -> None:
    if not (math.isfinite(loss) and math.isfinite(residual)
            and (math.isfinite(mb_loss) or not a.check_minibatch)):
        raise RunFailed(f"loss became NaN/Inf at iteration {t} (allocated loss {loss}, "
                        f"residual {residual}, minibatch loss {mb_loss}); lower the learning "
                        "rate")
