"""Sharding the full-dataset gradient over processes with torch.distributed.

Launch ``lca-run`` under ``torchrun --nproc-per-node N`` (multi-node: the usual rendezvous
flags). Every rank holds the same θ and takes the same optimizer steps (the minibatch order is a
pure function of the seed); each rank evaluates the loss and gradient on its share of the fixed
chunk partition (chunk k goes to rank k mod N) and an all-reduce sums the shards, per-class
gradients included. Only rank 0 writes the bundle and checkpoints. NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

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
