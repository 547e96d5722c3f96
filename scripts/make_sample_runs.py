"""Regenerate the committed sample bundles in sample_runs/ (real MNIST, real LCA).

    python scripts/make_sample_runs.py [--out sample_runs] [--only NAME ...]

Every setting is recorded in each bundle's ``config``. The directory must stay under 40 MiB,
so per-parameter rows are bfloat16 (gzip, lossless on top, repacked after the run) and follow a
row schedule: the MNIST-FC SGD run has a frame for every one of its first 220 iterations (the
first epoch, as the paper's Fig. 2), LeNet for all 150 of its iterations but only for its conv
layers, and the grokking transformer for the query and key weights every 100 iterations.
Per-iteration aggregates (loss, residual, per layer, per class × layer, help/hurt
counts) are complete and exact in every run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from compute.run.config import RunConfig
from compute.run.train import run_lca
from lcaviz.bundle.repack import repack

COMMON = dict(dataset="mnist", batch_size=250, method="rk4", seed=0, chunk_size=5000,
              checkpoint_every=100, lca_storage="bfloat16", lca_compression="gzip")

RUNS: dict[str, dict] = {
    # the paper's MNIST-FC setups (Table 1): SGD with and without momentum, and Adam; the
    # first watches every iteration of the first epoch, the other two are for comparing
    "mnist_fc_sgd_mom0.9": dict(net="mnist_fc", optimizer="sgd", lr=0.01, momentum=0.9,
                                iters=300, lca_rows="dense:220,10"),
    "mnist_fc_sgd_mom0": dict(net="mnist_fc", optimizer="sgd", lr=0.05, momentum=0.0,
                              iters=300, lca_rows="25"),
    # ... and this one also splits each step among 1,000 tracked training examples (seeded,
    # class-stratified: the run page's Examples section; about 0.5 MB with their thumbnails)
    "mnist_fc_adam": dict(net="mnist_fc", optimizer="adam", lr=0.001, iters=300,
                          lca_rows="25", per_example=1000),
    # a conv net; on a 2-core CPU the full-dataset gradient of LeNet over 55k images takes
    # tens of seconds, so this one allocates the loss of the first 2,000 training images
    "lenet_sgd_mom0.9": dict(net="lenet", optimizer="sgd", lr=0.01, momentum=0.9, iters=150,
                             batch_size=100, train_size=2000, val_size=1000,
                             lca_rows="1", lca_layers=["conv1", "conv2"],
                             chunk_size=1000),
    # grokking (docs/findings.md): a one-layer transformer on a + b mod 97 with 40 % of the
    # pairs for training, AdamW with weight decay 1.0 (Power et al. 2022; Nanda et al. 2023).
    # Training accuracy reaches 100 % within 300 iterations, validation accuracy only after
    # about 2,700. The training and the validation loss are both allocated (--val-lca) for
    # every iteration, per layer and per attention head; per-parameter rows only for the
    # query and key weights, every 100 iterations, so the bundle stays small
    "grokking_transformer": dict(net="transformer", dataset="modular-addition", modulus=97,
                                 train_fraction=0.4, optimizer="adamw", lr=1e-3,
                                 betas=(0.9, 0.98), weight_decay=1.0, batch_size=3764,
                                 iters=3600, val_lca=True, per_class=False,
                                 chunk_size=8192, lca_rows="100",
                                 lca_layers=["blocks.0.attn.q", "blocks.0.attn.k"]),
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
        path = run_lca(cfg, a.out / f"{name}.h5", overwrite=True)
        # a live-written gzip bundle is about twice its packed size; level 9 and gzip on the
        # per-iteration series save a few % more
        repack(path, gzip_level=9, compress_all=True)


if __name__ == "__main__":
    main()
