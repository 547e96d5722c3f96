"""What keeps an :class:`~compute.tracker.LCATracker` run from being silently wrong.

* :class:`StepWatch` counts the optimizer's steps between two ``lca.step()`` calls (a step
  post-hook, when the tracker is given the optimizer), so a doubled, missed or forgotten call
  is told apart from a real step.
* :func:`moved_outside_theta` finds parameters that were not part of θ (they did not require
  grad when the tracker started) but have changed since: unfrozen during training.
* :func:`residual_excess` is the paper's conservation criterion: the cumulative residual
  should stay under 1 % of the cumulative loss change.
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
            "their change would be left out of the allocated loss. Pass optimizer= (every "
            "parameter it holds is tracked, frozen or not) or set requires_grad before the "
            "tracker starts")


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


def residual_message(ratio: float, error_sums: torch.Tensor, steps: int, method: str) -> str:
    res, _, dL, _ = error_sums.tolist()
    return (f"LCATracker: after {steps} iterations the cumulative residual {res:.3g} is "
            f"{100 * ratio:.1f} % of the cumulative loss change {dL:.3g} (the paper keeps it "
            f"under {100 * RESIDUAL_LIMIT:g} %): method={method!r} is not exact enough for "
            'these steps; use method="adaptive" (it refines each step until its residual is '
            "below tol)")
