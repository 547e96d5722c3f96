"""The reviewers' causal test of "helping" on MNIST-FC (issue 15.3), three seeds.

    python scripts/make_causal_runs.py [--out runs/causal] [--iters 300] [--seeds 0 1 2]

Per seed two runs from the same initialisation and the same minibatches (SGD, lr 0.01,
momentum 0.9, batch 250, the paper's MNIST-FC setup):

* ``plain``: normal training with rk4 LCA and ``--counterfactual-every 10``: at every 10th
  step, the full training loss after only the helping, only the hurting and only the zero-LCA
  coordinates of the step;
* ``masked``: ``--update-mask helping``: every step applies only the coordinates whose
  first-order LCA g(θ_t)_i · Δθ_i is negative (g: the full-training-set gradient at θ_t). Its
  own LCA is first order (the training does not depend on the LCA method; only the gradient at
  θ_t, which every method evaluates, is used).

Both allocate the validation loss too (``--val-lca``) so validation accuracy is recorded at
every θ_t. The report is ``python -m lcaviz.reports.reproduction --causal runs/causal``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from compute.run.config import RunConfig
from compute.run.train import run_lca

COMMON = dict(net="mnist_fc", dataset="mnist", optimizer="sgd", lr=0.01, momentum=0.9,
              batch_size=250, per_class=False, val_lca=True, lca_layers=[],
              chunk_size=5000, checkpoint_every=100)
RUNS: dict[str, dict] = {
    "plain": dict(method="rk4", counterfactual_every=10),
    "masked": dict(method="first_order", update_mask="helping"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/causal"))
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:  # both runs of one seed first: a partial set is still paired
        for name, settings in RUNS.items():
            cfg = RunConfig(**{**COMMON, **settings}, iters=a.iters, seed=seed).validate()
            path = a.out / f"{name}_s{seed}.h5"
            if path.exists():
                print(f"== {path} exists, kept")
                continue
            print(f"== {path}", flush=True)
            run_lca(cfg, path)


if __name__ == "__main__":
    main()
