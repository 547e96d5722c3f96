"""A user's own loop with a DistributedDataParallel model and LCATracker, in float64
(tests/compute/test_tracker_distributed.py runs it under ``torchrun --nproc-per-node 2`` and
in one process).

    python _tracker_ddp_loop.py OUT PIDS_DIR

Each rank trains on its share of every minibatch (DDP averages the gradients, so θ follows the
one-process run to rounding) and passes the whole fixed set to the tracker; each writes its pid
to ``PIDS_DIR/rank<r>``.
"""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from compute import LCATracker

ITERS, BATCH = 8, 40


def main(out: Path, pids: Path) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    (pids / f"rank{rank}").write_text(str(os.getpid()))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (200,), generator=gen)
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 4)).double()
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    with LCATracker(model, x, y, out=out, optimizer=opt, per_class=True, chunk_size=30,
                    lca_rows=2) as lca:
        for t in range(ITERS):
            idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(100 + t))
            mine = idx[:BATCH][rank::world]  # this rank's share of the minibatch
            opt.zero_grad()
            loss = F.cross_entropy(model(x[mine]), y[mine])
            loss.backward()  # DDP: the gradient averaged over the ranks
            opt.step()
            logged = loss.detach().clone()
            if world > 1:  # the minibatch loss of the whole batch, as one process sees it
                dist.all_reduce(logged)
                logged /= world
            lca.step(logged.item())
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
