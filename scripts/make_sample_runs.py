"""Regenerate the committed sample bundles in sample_runs/ (real MNIST, real LCA).

    python scripts/make_sample_runs.py [--out sample_runs] [--only NAME ...]

Every setting is recorded in each bundle's ``config``. Per-parameter LCA is stored at a stride
(exact window sums) so that the directory stays under 40 MiB; per-iteration aggregates (loss,
residual, per layer, per class × layer, help/hurt counts) are complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from compute.config import RunConfig
from compute.train import run_lca

COMMON = dict(dataset="mnist", batch_size=250, method="rk4", seed=0, chunk_size=5000,
              checkpoint_every=100)

RUNS: dict[str, dict] = {
    # the paper's MNIST-FC setups (Table 1): SGD with and without momentum, and Adam
    "mnist_fc_sgd_mom0.9": dict(net="mnist_fc", optimizer="sgd", lr=0.01, momentum=0.9,
                                iters=500, lca_stride=25),
    "mnist_fc_sgd_mom0": dict(net="mnist_fc", optimizer="sgd", lr=0.05, momentum=0.0,
                              iters=500, lca_stride=25),
    "mnist_fc_adam": dict(net="mnist_fc", optimizer="adam", lr=0.001, iters=500, lca_stride=25),
    # a conv net; on a 2-core CPU the full-dataset gradient of LeNet over 55k images takes
    # tens of seconds, so this one allocates the loss of the first 2,000 training images
    "lenet_sgd_mom0.9": dict(net="lenet", optimizer="sgd", lr=0.01, momentum=0.9, iters=150,
                             batch_size=100, train_size=2000, val_size=1000, lca_stride=75,
                             chunk_size=1000),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("sample_runs"))
    ap.add_argument("--only", nargs="*", default=None, choices=sorted(RUNS))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for name, settings in RUNS.items():
        if a.only and name not in a.only:
            continue
        cfg = RunConfig(**{**COMMON, **settings}).validate()
        print(f"== {name}")
        run_lca(cfg, a.out / f"{name}.h5")


if __name__ == "__main__":
    main()
