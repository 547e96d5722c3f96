"""What keeps an :class:`~compute.integrations.tracker.LCATracker` run from being silently wrong.

* :class:`StepWatch` counts the optimizer's steps between two ``lca.step()`` calls (a step
  post-hook, when the tracker is given the optimizer), so a doubled, missed or forgotten call
  is told apart from a real step.
* :func:`moved_outside_theta` finds parameters that were not part of θ (they did not require
  grad when the tracker started) but have changed since: unfrozen during training.
* the conservation check (the cumulative residual under 1 % of the cumulative loss change)
  is the engine's, :mod:`compute.engine.residual`, shared with ``lca-run``.
* :func:`fixed_set` reads the fixed set (tensors, a Dataset or a DataLoader) or says what is
  wrong with it.
"""

from __future__ import annotations

import torch
from torch import nn


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
