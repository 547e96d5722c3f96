"""A user's own training loop with LCATracker and its own checkpoints, the way README shows it
(tests/reliability/test_tracker_kill_resume.py SIGKILLs it and runs it again).

    python _tracker_loop.py OUT CKPT [PAUSE]

PAUSE names a moment at which the loop writes ``OUT.paused`` and waits to be killed:
``created`` (bundle created, no iteration yet), ``before-checkpoint`` (3 iterations, no
checkpoint yet), ``mid-step`` (inside the LCA evaluation of iteration 9, after the checkpoint
of 8), ``after-state`` (``lca.state_dict()`` of 12 taken, the bundle flushed to 12, the file not
written: the restart resumes from 8), ``mid-save`` (the checkpoint of 16 written to its
temporary file, not yet renamed). Each start appends ``start T`` to ``OUT.log`` (T: the
iteration the run continues from).
"""

import os
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from compute import LCATracker

ITERS, CHECKPOINT_EVERY, BATCH = 20, 4, 20
STEP = [-1]  # the iteration being trained (the pause inside the LCA evaluation reads it)


def pause_here(out: Path, moment: str) -> None:
    Path(f"{out}.paused").write_text(moment)
    while True:  # until the test's SIGKILL
        time.sleep(60)


class Net(nn.Module):
    user_model = False  # True on the model being trained; the tracker's copy keeps False

    def __init__(self, pause: str | None, out: Path):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 3)
        self.pause, self.out = pause, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pause == "mid-step" and not self.user_model and STEP[0] == 9:
            pause_here(self.out, "mid-step")  # the LCA of iteration 9 is being evaluated
        return self.fc2(torch.tanh(self.fc1(x)))


def main(out: Path, ckpt: Path, pause: str | None) -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(120, 8, generator=gen), torch.randint(0, 3, (120,), generator=gen)
    xv, yv = torch.randn(40, 8, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    torch.manual_seed(1)
    model = Net(pause, out)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    lca = LCATracker(model, x, y, out=out, optimizer=opt, resume=True, lca_rows=3,
                     per_class=True, val_inputs=xv, val_targets=yv, chunk_size=50)
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        lca.load_state_dict(state["lca"])
    with lca:
        with open(f"{out}.log", "a") as log:
            log.write(f"start {lca.iteration}\n")
        if pause == "created":
            pause_here(out, pause)
        model.user_model = True
        for t in range(lca.iteration, ITERS):
            STEP[0] = t
            idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(1000 + t))
            idx = idx[:BATCH]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            lca.step(loss.item())
            if pause == "before-checkpoint" and t + 1 == 3:
                pause_here(out, pause)
            if (t + 1) % CHECKPOINT_EVERY == 0 and t + 1 < ITERS:
                state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                         "lca": lca.state_dict()}
                if pause == "after-state" and t + 1 == 12:
                    pause_here(out, pause)
                tmp = ckpt.with_name(ckpt.name + ".tmp")
                torch.save(state, tmp)
                if pause == "mid-save" and t + 1 == 16:
                    pause_here(out, pause)
                os.replace(tmp, ckpt)  # a kill mid-save leaves the previous checkpoint


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
