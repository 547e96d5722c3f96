"""lca-run writes the per-group and validation per-example datasets (issue 24, contract 24b).

NEEDS THE MERGE with the bundle helper's writer/reader (pe-bundle): on the compute branch
alone the writer does not yet store these datasets, so this file fails there by design. The
numbers themselves are tested without a bundle in tests/compute/test_per_example_groups.py and
tests/compute/test_per_example_engine_val.py.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from compute.run.config import RunConfig
from compute.run.train import run_lca
from lcaviz.bundle import RunBundle

GROK = dict(net="transformer", dataset="modular-addition", modulus=7, train_fraction=0.5,
            optimizer="adamw", lr=1e-4, weight_decay=1.0, batch_size=12, iters=6,
            val_lca=True, per_class=False, method="rk4", precision="float64", lca_rows="2",
            checkpoint_every=2, seed=3)
KEYS = ("lca_example_group", "lca_example_group_cumsum", "examples/groups", "lca_val_example",
        "lca_val_example_cumsum", "loss_val_example", "loss_val_example_last",
        "val_examples/index", "lca_val_example_group", "lca_val_example_group_cumsum")


def _datasets(path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in KEYS}


@pytest.fixture(scope="module")
def grok(tmp_path_factory):
    return run_lca(RunConfig(**GROK, per_example="all"),
                   tmp_path_factory.mktemp("pe_groups") / "g.h5", progress=False)


def test_the_bundle_holds_heads_and_validation_examples(grok):
    with RunBundle.open(grok) as b:
        assert b.has_example_groups and b.has_val_examples
        sel = b.example_groups()
        assert all(".head" in b.group_names[g] for g in sel)
        assert b.example_group_names == [b.group_names[g] for g in sel]
        n_val = b.n_val_examples
        assert b.config["per_example_val_of"] == n_val
        rows = b.example_lca_rows(split="val")  # (R, N_v, L) float32
        lay = b.lca_val_layer()
        sums = np.stack([lay[s:e].sum(axis=0) for s, e in b.row_windows])
        np.testing.assert_allclose(rows.sum(axis=1), sums, rtol=0,
                                   atol=1e-6 * np.abs(rows).sum(axis=1).max())
        grows = b.example_lca_rows(by="group")  # (R, N_e, G_s)
        assert grows.shape[2] == len(sel)
        np.testing.assert_allclose(b.example_cumsum(split="val", by="group").sum(axis=0),
                                   b.lca_val_group()[:, sel].sum(axis=0), rtol=1e-9)


def test_resume_continues_the_new_datasets_bit_for_bit(tmp_path):
    cfg = RunConfig(**GROK, per_example=9)
    ref = _datasets(run_lca(cfg, tmp_path / "ref.h5", progress=False))
    out = tmp_path / "killed.h5"
    run_lca(cfg, out, progress=False, stop_after=5)
    run_lca(None, out, resume=True, progress=False)
    got = _datasets(out)
    for key, value in ref.items():
        assert np.array_equal(got[key], value, equal_nan=True), key
