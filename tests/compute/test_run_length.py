"""The run-length section of docs/reproduction.md: Table-1 % helping over the first N
iterations and per epoch, from one run, against the bundle's own counts."""

from __future__ import annotations

import numpy as np

from compute.run.config import RunConfig
from compute.run.train import run_lca
from lcaviz.bundle import RunBundle
from lcaviz.reports import run_length


def test_helping_by_length_and_epoch_match_the_counts(tmp_path, monkeypatch):
    cfg = RunConfig(net="mnist_fc", dataset="synthetic", train_size=60, val_size=20,
                    batch_size=10, iters=14, lr=0.05, seed=0, per_class=False, lca_rows="7")
    path = run_lca(cfg, tmp_path / "long.h5", progress=False)
    with RunBundle(path) as b:
        h, u = b.help_count().sum(1), b.hurt_count().sum(1)
        loss = b.loss_train()
    pct = 100 * h / (h + u)
    with RunBundle(path) as b:
        by_n = run_length.helping_by_length(b, lengths=(5, 14, 20))
        by_epoch = run_length.helping_by_epoch(b, 6)
    assert [n for n, _ in by_n] == [5, 14]  # a run of 14 cannot say what 20 would
    np.testing.assert_allclose([v for _, v in by_n], [pct[:5].mean(), pct.mean()], rtol=1e-12)
    assert [(a, e) for a, e, _, _ in by_epoch] == [(0, 6), (6, 12), (12, 14)]
    np.testing.assert_allclose([v for _, _, v, _ in by_epoch],
                               [pct[:6].mean(), pct[6:12].mean(), pct[12:].mean()], rtol=1e-12)
    assert [lo for *_, lo in by_epoch] == [loss[6], loss[12], loss[14]]
    text = run_length.section(path, "57.79 ± 0.16")
    assert "(an epoch = 6 iterations)" in text and f"| {pct.mean():.2f} |" in text
