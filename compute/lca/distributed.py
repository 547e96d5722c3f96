"""Sharding the full-dataset gradient over processes with torch.distributed.

Launch ``lca-run`` under ``torchrun --nproc-per-node N`` (multi-node: the usual rendezvous
flags). Every rank holds the same θ and takes the same optimizer steps (the minibatch order is a
pure function of the seed); each rank evaluates the loss and gradient on its share of the fixed
chunk partition (chunk k goes to rank k mod N) and an all-reduce sums the shards, per-class
gradients included. Only rank 0 writes the bundle and checkpoints. NCCL on GPUs, gloo on CPUs.

:class:`~compute.integrations.tracker.LCATracker` shards the same way in the user's own loop under
torchrun (the user's ``DistributedDataParallel`` keeps θ equal on every rank;
:func:`unwrap_parallel` gives the network inside it, :func:`same_on_all_ranks` checks θ,
:func:`raise_together` turns one rank's refusal into an error on every rank instead of a hang in
the next all-reduce).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

TIMEOUT_S = float(os.environ.get("LCA_DIST_TIMEOUT", "600"))


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_env(device: str) -> str | None:
    """Join the process group that torchrun describes in the environment, if any.

    Returns:
        The backend name, or None when not launched by torchrun (WORLD_SIZE unset or 1).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.get_backend() if dist.is_initialized() else None
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # the timeout turns a dead peer into an error instead of a hang
    dist.init_process_group(backend, timeout=timedelta(seconds=TIMEOUT_S))
    return backend


def all_reduce_(*tensors: torch.Tensor) -> None:
    """Sum tensors over all ranks in place (no-op when not distributed)."""
    if world()[1] > 1:
        for t in tensors:
            dist.all_reduce(t)


def broadcast_(t: torch.Tensor) -> None:
    """Copy rank 0's tensor to every rank in place (no-op when not distributed)."""
    if world()[1] > 1:
        dist.broadcast(t, src=0)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class NullWriter:
    """Stands in for the bundle writer on ranks other than 0."""

    path = None

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def unwrap_parallel(model: nn.Module) -> nn.Module:
    """The network inside ``DistributedDataParallel`` / ``DataParallel`` wrappers: the same
    parameter tensors, named without the wrappers' ``module.`` prefix, and a module that can be
    deep-copied (a DDP wrapper holds its process group and reducer)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def raise_together(error: BaseException | None, device: torch.device | str) -> None:
    """Raise ``error`` on its rank and an error naming that rank on every other one (a
    collective: every rank calls it at the same point; without it a refusal on rank 0 would
    leave the others waiting in their next all-reduce until the timeout)."""
    rank, size = world()
    if size > 1:
        failed = torch.zeros(size, dtype=torch.float64, device=device)
        failed[rank] = float(error is not None)
        dist.all_reduce(failed)
        bad = [r for r in range(size) if failed[r] > 0]
        if error is None and bad:
            raise RuntimeError(f"stopped because rank {bad[0]} failed (its error is in its "
                               "output)")
    if error is not None:
        raise error


def same_on_all_ranks(theta: torch.Tensor) -> bool:
    """Whether every rank holds the same flat θ as rank 0 (a collective; True in one
    process)."""
    if world()[1] == 1:
        return True
    reference = theta.clone()
    dist.broadcast(reference, src=0)
    differs = torch.tensor([float(not torch.equal(reference, theta))], dtype=torch.float64,
                           device=theta.device)
    dist.all_reduce(differs)
    return not bool(differs.item())
