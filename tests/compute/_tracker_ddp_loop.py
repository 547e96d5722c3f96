"""A user's own loop with a DistributedDataParallel model and LCATracker, in float64
(tests/compute/test_tracker_distributed.py runs it under ``torchrun --nproc-per-node 2`` and
in one process).

    python _tracker_ddp_loop.py OUT PIDS_DIR [CKPT [CRASH_AT]]

Each rank trains on its share of every minibatch (DDP averages the gradients, so θ follows the
one-process run to rounding) and passes the whole fixed set to the tracker; each writes its pid
to ``PIDS_DIR/rank<r>``. With CKPT, rank 0 saves a checkpoint (model, optimizer, LCA state)
after iteration 4 and every rank resumes from it when it exists; CRASH_AT: every rank exits at
once (os._exit, nothing closed) after that many iterations.
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


def main(out: Path, pids: Path, ckpt: Path | None, crash_at: int | None) -> None:
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
    saved = torch.load(ckpt, weights_only=True) if ckpt and ckpt.exists() else None
    if saved:
        net.load_state_dict(saved["model"])
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    lca = LCATracker(model, x, y, out=out, optimizer=opt, per_class=True, chunk_size=30,
                     lca_rows=2, resume=ckpt is not None)
    if saved:
        opt.load_state_dict(saved["optimizer"])
        lca.load_state_dict(saved["lca"])
    with lca:
        for t in range(lca.iteration, ITERS):
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
            if ckpt is not None and t + 1 == 4:
                state = {"model": net.state_dict(), "optimizer": opt.state_dict(),
                         "lca": lca.state_dict()}
                if rank == 0:
                    torch.save(state, ckpt)
            if t + 1 == crash_at:
                os._exit(3)
    if world > 1:
        dist.barrier()  # no rank tears gloo down while the other is still in a collective
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None,
         int(sys.argv[4]) if len(sys.argv) > 4 else None)
