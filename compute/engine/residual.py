"""The paper's conservation criterion, watched during a run (``lca-run`` and the tracker):
the cumulative residual should stay under 1 % of the cumulative loss change."""

from __future__ import annotations

import math

import torch

RESIDUAL_LIMIT = 0.01  # the paper's bound on |Σ residual| / |Σ ΔL| at the end of training
ROUNDING_ULPS = 16  # per step: a residual below this many ulps of the loss is rounding


def residual_excess(error_sums: torch.Tensor, steps: int, dtype: torch.dtype,
                    loss_scale: float) -> float | None:
    """|Σ residual| / |Σ ΔL| when it exceeds :data:`RESIDUAL_LIMIT` (None otherwise, and
    while the residual is within the rounding of ``steps`` float evaluations of a loss of
    size ``loss_scale``)."""
    res, _, dL, _ = error_sums.tolist()
    floor = ROUNDING_ULPS * torch.finfo(dtype).eps * abs(loss_scale) * max(steps, 1)
    if not math.isfinite(res) or abs(res) <= max(RESIDUAL_LIMIT * abs(dL), floor):
        return None
    return abs(res) / abs(dL) if dL else math.inf


def residual_message(ratio: float, error_sums: torch.Tensor, steps: int, advice: str) -> str:
    """The warning for a cumulative residual of ``ratio`` × the loss change."""
    res, _, dL, _ = error_sums.tolist()
    return (f"LCA: after {steps} iterations the cumulative residual {res:.3g} is "
            f"{100 * ratio:.1f} % of the cumulative loss change {dL:.3g} (the paper keeps it "
            f"under {100 * RESIDUAL_LIMIT:g} %): {advice}")


def residual_advice(method: str, option: str = 'method="adaptive"') -> str:
    return (f"{method} is not exact enough for these steps; use {option} (it refines each "
            "step until its residual is below the tolerance)")


def residual_note(ratio: float | None, warned_at: int | None, error_sums: torch.Tensor,
                  steps: int, advice: str) -> str | None:
    """What the bundle records at the end: the final figure while it is over the limit; if it
    was over during the run only, when it passed the limit and where it ended."""
    if ratio is not None:
        return residual_message(ratio, error_sums, steps, advice)
    if warned_at is None:
        return None
    res, _, dL, _ = error_sums.tolist()
    end = f"{100 * abs(res) / abs(dL):.2f} %" if dL else "undefined"
    return (f"LCA: the cumulative residual passed {100 * RESIDUAL_LIMIT:g} % of the loss "
            f"change at iteration {warned_at} and ended at {end} of it: {advice}")


class ResidualWatch:
    """The conservation check of one run (``lca-run`` and the tracker): :meth:`check` after
    each allocated step gives the warning once, :meth:`note` the bundle's record at close.

    Args:
        advice: how to fix it (:func:`residual_advice`).
        dtype: the parameters' dtype (sets the rounding floor).
    """

    def __init__(self, advice: str, dtype: torch.dtype):
        self.advice, self.dtype = advice, dtype
        self.warned_at: int | None = None
        self.loss = 1.0  # the loss scale of the rounding floor: the last one checked with

    def check(self, error_sums: torch.Tensor, steps: int, loss: float) -> str | None:
        """The warning, the first time |Σ residual| passes 1 % of |Σ ΔL| (else None)."""
        self.loss = loss
        if self.warned_at is not None:
            return None
        ratio = residual_excess(error_sums, steps, self.dtype, loss)
        if ratio is None:
            return None
        self.warned_at = steps
        return residual_message(ratio, error_sums, steps, self.advice)

    def note(self, error_sums: torch.Tensor, steps: int) -> str | None:
        """What the bundle records at close (None: nothing to record)."""
        ratio = residual_excess(error_sums, steps, self.dtype, self.loss)
        return residual_note(ratio, self.warned_at, error_sums, steps, self.advice)
