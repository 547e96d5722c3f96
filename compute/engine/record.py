"""What one iteration of ``lca-run`` hands the bundle writer, and the run totals it keeps.

:func:`record` turns one :class:`~compute.lca.integrator.LCAStep` into an
:class:`~lcaviz.bundle.layout.IterationRecord` and updates the :class:`RunState` that
checkpoints carry: the open row window, the per-parameter counters (help, nonzero, oscillation),
the whole-run conservation sums and the count of adaptive steps that hit ``--max-halvings``.
Reductions stay on the device; only what is written is copied to the host (through the run's
:class:`~compute.lca.host_copy.HostCopies` where it has one: pinned and overlapped on CUDA).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from compute.engine.state import RunState
from compute.lca.host_copy import HostCopies
from compute.lca.integrator import LCAStep, layer_sums
from compute.lca.lca_error import error_record
from compute.lca.oscillation import count_gradient, count_move, oscillation_counters
from lcaviz.bundle.layout import IterationRecord


def host(t: torch.Tensor, copies: HostCopies | None = None) -> np.ndarray:
    """An independent host copy (on CPU, ``.numpy()`` would alias a buffer we reuse); with a
    run's :class:`~compute.lca.host_copy.HostCopies` on CUDA, a pinned copy still in flight,
    which the run's writer waits for before it reads it."""
    return copies(t) if copies is not None else t.detach().cpu().numpy().copy()


def row_closes(run, t: int) -> bool:
    """Whether a per-parameter row closes after iteration t (``--lca-every`` counts the row
    schedule in allocated steps: :meth:`compute.engine.approx.Approx.row_closes`)."""
    approx = getattr(run, "approx", None)
    return (approx.row_closes(run.schedule, t) if approx is not None
            else run.schedule.closes_after(t))


def record(run, st: LCAStep, vst: LCAStep | None, state: RunState, mb_loss: float,
           theta: torch.Tensor, t: int, seconds: float, *,
           count_grad: bool = True) -> IterationRecord:
    """Account iteration ``t`` in ``state`` and build what the writer appends for it.

    ``count_grad`` False leaves θ_{t+1}'s gradient out of the sign counters (the approximate
    modes count each allocated step's start instead, :func:`compute.engine.approx.prepare`).
    """
    L, n = run.table.n_layers, len(run.y)
    state.window += st.lca if run.row_idx is None else st.lca[run.row_idx]
    helps, hurts = st.lca < 0, st.lca > 0  # (P,) each, computed once
    state.help_iters += helps.int()
    state.nonzero_iters += (st.lca != 0).int()
    count_move(state, st.delta)
    if count_grad:  # the gradient at θ_{t+1}; θ_0's is counted at start
        count_gradient(state, st.grad_after)
    dL = st.loss_after - st.loss_before
    state.error_sums += torch.tensor([st.residual, abs(st.residual), dL, abs(dL)],
                                     dtype=torch.float64)
    state.hit_max += int(st.hit_max)
    close = row_closes(run, t)
    copies = getattr(run, "host_copies", None)  # pinned + async on CUDA (the writer waits)
    # one (3, L) reduction and one device→host copy instead of three (matters on a GPU)
    per_layer = host(layer_sums(torch.stack([st.lca, helps.double(), hurts.double()]),
                                run.layer_idx, L), copies)  # (3, L): LCA, helping, hurting
    rec = IterationRecord(
        loss_train=st.loss_after, acc_train=st.correct_after / n, loss_minibatch=mb_loss,
        residual=st.residual, splits=st.splits,
        lca_layer=per_layer[0], help_count=per_layer[1], hurt_count=per_layer[2],
        seconds=seconds,
        lca_row=host(state.window, copies) if close else None,
        lca_class_layer=(host(layer_sums(st.class_lca, run.layer_idx, L), copies)
                         if st.class_lca is not None else None),
        theta=host(theta, copies) if run.cfg.save_trajectory else None,
        hit_max_halvings=st.hit_max if run.cfg.method == "adaptive" else None,
        lca_error=(error_record(t, st, run.layer_idx, L, run.row_idx)
                   if st.refined is not None else None))
    group_idx = getattr(run, "group_idx", None)
    if group_idx is not None:
        rec.lca_group = host(layer_sums(st.lca, group_idx, len(run.groups)), copies)
    if st.example is not None:  # per_example: (N_e, L) E of this step and the losses around it
        rec.example = host(st.example, copies)
        rec.example_loss_before = host(st.example_loss_before, copies)
        rec.example_loss_after = host(st.example_loss_after, copies)
        if st.example_group is not None:  # (N_e, G_s): the groups finer than their layer
            rec.example_group = host(st.example_group, copies)
    if vst is not None:
        if group_idx is not None:
            rec.lca_val_group = host(layer_sums(vst.lca, group_idx, len(run.groups)), copies)
        state.window_val += vst.lca if run.row_idx is None else vst.lca[run.row_idx]
        rec.loss_val = vst.loss_after
        rec.acc_val = vst.correct_after / len(run.val_lca.objective.y)
        rec.lca_val_layer = host(layer_sums(vst.lca, run.layer_idx, L), copies)
        rec.val_residual = vst.residual
        rec.lca_val_row = host(state.window_val, copies) if close else None
        if vst.example is not None:  # per-example values of the validation loss
            rec.val_example = host(vst.example, copies)
            rec.val_example_loss_before = host(vst.example_loss_before, copies)
            rec.val_example_loss_after = host(vst.example_loss_after, copies)
            if vst.example_group is not None:
                rec.val_example_group = host(vst.example_group, copies)
    _reset_window(state, close)
    return rec


def gap_record(run, state: RunState, t: int, mb_loss: float,
               theta: torch.Tensor) -> IterationRecord:
    """The record of an iteration that was not allocated (``--lca-every``): its LCA does not
    exist, so per-layer values and the residual are NaN, help/hurt counts 0 and splits −1;
    the loss at θ_{t+1} is NaN unless the next allocated step starts there (the caller sets
    it). A row that closes here holds the allocated iterations of its window."""
    L, C, nan = run.table.n_layers, len(run.class_names), math.nan
    close = row_closes(run, t)
    copies = getattr(run, "host_copies", None)
    rec = IterationRecord(
        loss_train=nan, acc_train=nan, loss_minibatch=mb_loss, residual=nan, splits=-1,
        lca_layer=np.full(L, nan), help_count=np.zeros(L, np.int32),
        hurt_count=np.zeros(L, np.int32), seconds=0.0,
        lca_row=host(state.window, copies) if close else None,
        lca_class_layer=np.full((C, L), nan) if run.cfg.per_class else None,
        theta=host(theta, copies) if run.cfg.save_trajectory else None,
        hit_max_halvings=False if run.cfg.method == "adaptive" else None, allocated=False)
    if getattr(run, "groups", None):
        rec.lca_group = np.full(len(run.groups), nan)
        if state.window_val is not None:
            rec.lca_val_group = np.full(len(run.groups), nan)
    if state.window_val is not None:
        rec.loss_val, rec.acc_val, rec.val_residual = nan, nan, nan
        rec.lca_val_layer = np.full(L, nan)
        rec.lca_val_row = host(state.window_val, copies) if close else None
    _reset_window(state, close)
    return rec


def write_counters(writer, run, state: RunState) -> None:
    """Overwrite the bundle's per-parameter counters with the run's current totals."""
    writer.set_param_counters(state.help_iters.cpu().numpy(), state.nonzero_iters.cpu().numpy())
    writer.set_oscillation_counters(*oscillation_counters(state, run.layer_idx,
                                                          run.table.n_layers))


def closing_attrs(state: RunState, method: str) -> dict:
    """Root attributes written when the run completes: the cumulative conservation error (the
    paper's "< 1 %" criterion, both ways) and, for adaptive runs, the capped-step count."""
    res, abs_res, dL, abs_dL = state.error_sums.tolist()
    out = {"lca_cum_residual": res, "lca_cum_abs_residual": abs_res,
           "lca_cum_loss_change": dL, "lca_cum_abs_loss_change": abs_dL,
           "lca_cum_error": abs(res) / abs(dL) if dL else math.nan,
           "lca_cum_abs_error": abs_res / abs_dL if abs_dL else math.nan}
    if method == "adaptive":
        out["lca_hit_max_halvings"] = int(state.hit_max)
    return out


def postfix(st: LCAStep, state: RunState, method: str) -> dict[str, str]:
    """The progress bar's postfix: loss, residual, cumulative error, capped steps."""
    res, _, dL, _ = state.error_sums.tolist()
    out = {"loss": f"{st.loss_after:.4f}", "residual": f"{st.residual:.1e}",
           "cum_err": f"{100 * abs(res) / max(abs(dL), 1e-30):.2f}%"}
    if method == "adaptive" and int(state.hit_max):
        out["capped"] = str(int(state.hit_max))  # steps that hit --max-halvings: never silent
    return out


def capped_warning(state: RunState, cfg) -> str | None:
    """The end-of-run warning about steps that hit ``--max-halvings`` (None if there are none)."""
    n = int(state.hit_max)
    if cfg.method != "adaptive" or not n:
        return None
    rule = f"|residual| < {cfg.tol:g}" + (f" and <= {cfg.rtol:g}·|ΔL|" if cfg.rtol else "")
    return (f"lca-run: warning: {n:,} of {cfg.iters:,} iterations used 2^{cfg.max_halvings} = "
            f"{2 ** cfg.max_halvings} Simpson intervals (--max-halvings) without meeting "
            f"{rule}; they are flagged in the bundle's hit_max_halvings (raise --max-halvings "
            "or loosen --tol/--rtol; in float32 |ΔL| below ~1e-7·L cannot be resolved)")


def _reset_window(state: RunState, close: bool) -> None:
    """A row closed: its window sums start again from zero."""
    if close:
        state.window.zero_()
        if state.window_val is not None:
            state.window_val.zero_()
