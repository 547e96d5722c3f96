"""The one LCA engine: :class:`LCASession` allocates the steps of a run, whoever trains it.

``lca-run`` (:mod:`compute.run.train`, its reference minibatch loop) and ``LCATracker``
(:mod:`compute.integrations.tracker`, the user's loop) both hand each new θ_{t+1} to
:meth:`LCASession.step`. The session owns what the two faces used to write twice: the start
at θ_0 (or θ_T of a resume), the per-iteration allocation in every approximation mode
(:func:`compute.engine.approx.iteration`), the record appended to the writer, the run's
accumulators (:class:`~compute.engine.state.RunState`, what a checkpoint carries), the residual
watch, the per-parameter counters and the closing of the bundle (the last partial row, the
conservation attributes, the warnings).
"""

from __future__ import annotations

import json
import time

import torch

from compute.engine import approx as approx_mode
from compute.engine.parts import LCARun
from compute.engine.record import closing_attrs, host, row_closes, write_counters
from compute.engine.residual import ResidualWatch
from compute.engine.state import RunState
from compute.lca.integrator import LCAStep
from compute.lca.objective import Evaluation
from lcaviz.bundle.layout import IterationRecord


class LCASession:
    """One run's LCA: the objective, integrators and modes (:class:`LCARun`), the state, the
    residual watch and (once the face has created or reopened it) the bundle writer.

    Args:
        run: what to allocate with (:func:`compute.engine.parts.build_lca`).
        advice: the residual warning's advice (how to fix an inexact method).
        residual_scale: the loss whose rounding sets the residual's floor (None: the last
            allocated step's loss).
    """

    def __init__(self, run: LCARun, advice: str, residual_scale: float | None = None):
        self.run = run
        device = run.layer_idx.device
        self.state = RunState(run.table.n_params, run.n_row_cols, device,
                              run.val_lca is not None)
        self.residual = ResidualWatch(advice, run.train_lca.objective.params[0].dtype)
        self.residual_scale = residual_scale
        self.writer = None  # BundleWriter / NullWriter / TensorBoardMirror, set by the face
        self.t = 0  # iterations allocated (or skipped as gaps) so far

    @property
    def theta(self) -> torch.Tensor | None:
        """θ_t, the start of the next step."""
        return self.run.approx.prev_theta

    def begin(self, theta: torch.Tensor) -> tuple[Evaluation, Evaluation | None, tuple | None]:
        """Make θ_0 the start: the allocated (and validation) loss and gradient there, counted
        once, and the full loss (``full_loss_every``) or None."""
        e0, v0 = approx_mode.prepare(self.run, self.state, 0, theta)
        a = self.run.approx
        return e0, v0, approx_mode.full_loss(a, theta) if a.full else None

    def resume(self, T: int, theta: torch.Tensor) -> None:
        """Continue at θ_T after the state was loaded (its gradient was counted before)."""
        self.t = T
        approx_mode.resume(self.run, self.state, T, theta)

    def step(self, theta: torch.Tensor, minibatch_loss: float, started: float
             ) -> tuple[IterationRecord, LCAStep | None, str | None]:
        """Allocate iteration t = :attr:`t` (θ_t → ``theta``) and append its record.

        Args:
            theta: θ_{t+1}, the model's parameters after the optimizer step.
            minibatch_loss: the training minibatch's loss (recorded).
            started: ``time.perf_counter()`` when the iteration began (its recorded seconds).

        Returns:
            The record, the step (None where it was not allocated) and the residual warning
            the first time the cumulative residual passes 1 % of the loss change (else None).

        Raises:
            RunFailed: the loss became NaN/Inf.
        """
        rec, st = approx_mode.iteration(self.run, self.state, self.t, theta, minibatch_loss)
        rec.seconds = time.perf_counter() - started
        self.writer.append(rec)
        self.t += 1
        warning = None
        if st is not None:
            scale = self.residual_scale if self.residual_scale is not None else st.loss_after
            warning = self.residual.check(self.state.error_sums, self.t, scale)
        return rec, st, warning

    def write_counters(self) -> None:
        """Overwrite the bundle's per-parameter counters with the current totals."""
        write_counters(self.writer, self.run, self.state)

    def warning_attrs(self, notes: list[str] = ()) -> dict:
        """The bundle's ``warnings``: ``notes`` given in the run, then the residual's."""
        notes = [*notes, self.residual.note(self.state.error_sums, self.t)]
        notes = [n for n in notes if n]
        return {"warnings": json.dumps(notes)} if notes else {}

    def finish(self, notes: list[str] = ()) -> None:
        """Append the open (partial) row window, write the counters and close the bundle
        ``complete`` with the conservation attributes and the warnings."""
        if self.t and not row_closes(self.run, self.t - 1):
            if self.state.window_val is not None:
                self.writer.append_lca_row(host(self.state.window_val), "lca_val")
            self.writer.append_lca_row(host(self.state.window))
        self.write_counters()
        self.writer.close("complete", attrs={**closing_attrs(self.state, self.run.cfg.method),
                                             **self.warning_attrs(notes)})
