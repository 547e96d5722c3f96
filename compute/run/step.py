"""One optimizer step of ``lca-run``: the minibatch of iteration t (a pure function of t and
the seed, so a resume sees the same batches) and the step, optionally masked to the coordinates
that help to first order (``--update-mask helping``, the reviewers' causal test)."""

from __future__ import annotations

import torch

from compute.engine.approx import RunFailed
from compute.lca.counterfactual import helping_mask
from compute.lca.distributed import broadcast_, world
from compute.lca.params import flat_params, load_flat_params


def minibatch_indices(t: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of iteration t's minibatch: a pure function of (t, seed), so resumes match.

    Each epoch is a fresh permutation drawn from a generator seeded with (seed, epoch); the last
    incomplete batch of an epoch is dropped.
    """
    per_epoch = n // batch_size
    epoch, b = divmod(t, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[b * batch_size : (b + 1) * batch_size]


def train_step(run, t: int) -> float:
    """One optimizer step on iteration t's minibatch; returns the minibatch loss."""
    idx = minibatch_indices(t, len(run.y), run.cfg.batch_size, run.cfg.seed).to(run.y.device)
    run.model.train()
    loss = torch.nn.functional.cross_entropy(run.model(run.x[idx]), run.y[idx])
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.cfg.update_mask == "helping":
        masked_step(run)
    else:
        run.optimizer.step()
    if world()[1] > 1:  # keep every rank on exactly rank 0's θ (GPU kernels may differ in bits)
        with torch.no_grad():
            for p in run.model.parameters():
                broadcast_(p.data)
    return loss.item()


def masked_step(run) -> None:
    """``--update-mask helping``: the optimizer's step, then only the coordinates whose
    first-order LCA g(θ_t)_i · Δθ_i is negative are kept (g: the allocated loss's gradient at
    θ_t, which the integrator has already evaluated). The optimizer's own state (momentum,
    Adam moments) is updated as for the unmasked step."""
    start = run.train_lca.at_theta
    theta0 = flat_params(run.model)
    if start is None or not torch.equal(run.train_lca.theta, theta0):
        raise RunFailed("--update-mask: the integrator's start is not this step's theta_t")
    run.optimizer.step()
    delta = flat_params(run.model) - theta0
    keep = helping_mask(start.grad, delta)
    load_flat_params(run.model, theta0 + torch.where(keep, delta, torch.zeros_like(delta)))
