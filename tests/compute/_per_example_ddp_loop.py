"""A user's own DistributedDataParallel loop with ``LCATracker(per_example=...)``, in float64
(tests/compute/test_per_example_distributed.py runs it under ``torchrun --nproc-per-node 2`` and
in one process).

    python _per_example_ddp_loop.py OUT_DIR

writes OUT_DIR/mlp.h5 (per-class LCA too, 7 uneven chunks, every example) and OUT_DIR/gpt2.h5 (a
tiny random-init GPT-2 with padding, through the Hugging Face wrapper and loss, a seeded subset
of 20 sequences), one process start for both (the suite's time). Each rank trains
on its share of every minibatch (DDP averages the gradients, so θ follows the one-process run to
rounding) and passes the whole fixed set to the tracker, which shards its chunks over the ranks.
"""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from compute import LCATracker

ITERS, BATCH = 3, 24


def _mlp():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (200,), generator=gen)
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 4)).double()

    def loss(model, idx):
        return F.cross_entropy(model(x[idx]), y[idx])

    return net, net, x, y, loss, {"per_class": True, "chunk_size": 30}


def _gpt2():
    import transformers

    from compute.integrations.hf import IGNORE, HFLogits, hf_loss

    n, t = 48, 12
    g = torch.Generator().manual_seed(1)
    lens = torch.randint(4, t + 1, (n,), generator=g)
    mask = (torch.arange(t)[None] < lens[:, None]).long()
    ids = torch.randint(1, 40, (n, t), generator=g) * mask
    labels = ids.masked_fill(mask == 0, IGNORE)
    torch.manual_seed(0)
    net = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=t, bos_token_id=1,
        eos_token_id=1, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).double()

    x, loss_fn = torch.stack([ids, mask], 1), hf_loss(net, labels)

    def loss(model, idx):  # the mean of ℓ_n: equal shares, so DDP's mean is the batch's
        return loss_fn(HFLogits(model)(x[idx]), labels[idx]).mean()

    return net, HFLogits(net), x, labels, loss, {"loss_fn": loss_fn, "chunk_size": 10}


CASES = {"mlp": "all", "gpt2": 20}  # model -> per_example


def main(out_dir: Path) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    for kind, per_example in CASES.items():
        run(out_dir / f"{kind}.h5", kind, per_example, world)
    if world > 1:
        dist.barrier()  # no rank tears gloo down while the other is still in a collective
        dist.destroy_process_group()


def run(out: Path, kind: str, k, world: int) -> None:
    rank = dist.get_rank() if world > 1 else 0
    net, tracked, x, y, loss_of, options = {"mlp": _mlp, "gpt2": _gpt2}[kind]()
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    wrapped = tracked if tracked is not net else model  # the tracker unwraps DDP itself
    with LCATracker(wrapped, x, y, out=out, optimizer=opt, per_example=k, lca_rows="1",
                    **options) as lca:
        for t in range(ITERS):
            idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(100 + t))
            mine = idx[:BATCH][rank::world]  # this rank's share of the minibatch
            opt.zero_grad()
            loss = loss_of(model, mine)
            loss.backward()  # DDP: the gradient averaged over the ranks
            opt.step()
            lca.step(float("nan"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
