"""What keeps an :class:`~compute.integrations.tracker.LCATracker` run from being silently wrong.

* :class:`StepWatch` counts the optimizer's steps between two ``lca.step()`` calls (a step
  post-hook, when the tracker is given the optimizer), so a doubled, missed or forgotten call
  is told apart from a real step.
* :func:`moved_outside_theta` finds parameters that were not part of θ (they did not require
  grad when the tracker started) but have changed since: unfrozen during training.
* :func:`residual_excess` is the paper's conservation criterion: the cumulative residual
  should stay under 1 % of the cumulative loss change.
* :func:`fixed_set` reads the fixed set (tensors, a Dataset or a DataLoader) or says what is
  wrong with it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

RESIDUAL_LIMIT = 0.01  # the paper's bound on |Σ residual| / |Σ ΔL| at the end of training
ROUNDING_ULPS = 16  # per step: a residual below this many ulps of the loss is rounding


class LCAWarning(UserWarning):
    """A tracked run is allocated, but something about it needs the user's attention (the
    message is also recorded in the bundle's ``warnings`` attribute)."""


class StepWatch:
    """Optimizer steps since the last :meth:`take` (None without an optimizer)."""

    def __init__(self, optimizer: torch.optim.Optimizer | None):
        self.count = 0
        self.handle = (optimizer.register_step_post_hook(self._hook)
                       if optimizer is not None else None)

    def _hook(self, *_args) -> None:
        self.count += 1

    def take(self) -> int | None:
        """The optimizer steps since the last call (None if no optimizer is watched)."""
        n, self.count = self.count, 0
        return n if self.handle is not None else None

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def outside_theta(model: nn.Module, probe: nn.Module, names: list[str]
                  ) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(name, model's parameter, probe's copy)`` of every parameter not in θ: the probe's copy
    keeps the value the tracker started with (it is never loaded)."""
    theta = set(names)
    probe_params = dict(probe.named_parameters())
    return [(n, p, probe_params[n]) for n, p in model.named_parameters() if n not in theta]


def moved_outside_theta(pairs: list[tuple[str, torch.Tensor, torch.Tensor]]) -> list[str]:
    """Names of the parameters outside θ whose value has changed since the start."""
    return [n for n, p, start in pairs if not torch.equal(p.detach(), start.detach())]


def unfrozen_message(names: list[str]) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (f"LCATracker: parameters {shown} changed although they did not require grad "
            "when the tracker started (unfrozen during training?); they are not part of θ, so "
            "their change would be left out of the allocated loss. Pass optimizer= holding "
            "them from the start (every parameter it holds is tracked, frozen or not) or set "
            "requires_grad before the tracker starts")


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


def never_stepped(n_opt: int | None, moved: bool) -> str:
    """The reason a run whose ``step()`` was never called closes ``failed``."""
    what = (f"{n_opt} optimizer steps were taken" if n_opt else
            "the parameters moved since the tracker started" if moved else
            "nothing was allocated")
    return (f"LCATracker: lca.step() was never called ({what}); call it after every "
            "optimizer step")


def movable_names(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> list[str]:
    """The parameters that can move, in ``named_parameters()`` order: those that require grad
    and, with an optimizer, every one it holds (frozen now, perhaps unfrozen later)."""
    held = ({id(p) for g in optimizer.param_groups for p in g["params"]}
            if optimizer is not None else set())
    return [n for n, p in model.named_parameters() if p.requires_grad or id(p) in held]


def fixed_set(inputs, targets=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of the fixed set whose loss is allocated, from tensors, a Dataset of
    ``(x, y)`` items or a DataLoader of ``(x, y)`` batches (iterated once, in order)."""
    if isinstance(inputs, torch.Tensor):
        if targets is None:
            raise ValueError("LCATracker: targets are needed with an inputs tensor")
        return inputs, torch.as_tensor(targets)
    if targets is not None:
        raise ValueError("LCATracker: pass targets only with an inputs tensor (a Dataset or "
                         "DataLoader yields (x, y) itself)")
    xs, ys = [], []
    batched = isinstance(inputs, torch.utils.data.DataLoader)
    for item in inputs:
        x, y = item[0], item[1]
        xs.append(torch.as_tensor(x) if batched else torch.as_tensor(x)[None])
        ys.append(torch.as_tensor(y).reshape(-1))
    if not xs:
        raise ValueError("LCATracker: the fixed set is empty")
    return torch.cat(xs), torch.cat(ys)
