"""Subset LCA (issue 17.1): stratified subsets, the full set as the subset, a subset run against
plain LCA of the same examples, and resampled subsets (deterministic per seed, unbiased)."""

import json

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from compute.api import compute_lca
from compute.lca.integrator import LCAIntegrator
from compute.lca.objective import FullDatasetObjective
from compute.lca.params import flat_params
from compute.lca.subset import (
    allocated_loss_text,
    class_counts,
    indices_hash,
    stratified_subset,
    subset_size,
)
from compute.nets.models import build_model
from compute.run.config import ConfigError, RunConfig
from compute.run.train import build_run, run_lca, train_step
from lcaviz.bundle import RunBundle

SMALL = dict(net="mnist_fc", dataset="synthetic", train_size=300, val_size=50, batch_size=50,
             iters=5, chunk_size=128, checkpoint_every=4, seed=3, precision="float64")


def _thetas(cfg: RunConfig) -> list[torch.Tensor]:
    """θ_0 … θ_T of a run in its own precision (training is a pure function of the config)."""
    run = build_run(cfg)
    out = [flat_params(run.model)]
    for t in range(cfg.iters):
        train_step(run, t)
        out.append(flat_params(run.model))
    return out


def _rows(path):
    with h5py.File(path, "r") as f:
        return (f["lca"][()].astype(np.float64), f["lca_layer"][()], f["trajectory"][()]
                if "trajectory" in f else None, json.loads(f.attrs["config"]))


def test_stratified_subset_keeps_class_proportions_to_one_example():
    rng = np.random.default_rng(0)
    y = rng.choice(7, size=5_003, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.06, 0.04])  # unbalanced
    N = np.bincount(y, minlength=7)
    for n in (1, 13, 50, 501, 2_500, 5_002, 5_003):
        for seed in range(5):
            idx = stratified_subset(y, n, seed)
            assert len(idx) == n and len(np.unique(idx)) == n and np.all(np.diff(idx) > 0)
            got = np.bincount(y[idx], minlength=7)
            want = n * N / len(y)
            assert np.all(np.abs(got - want) < 1), (n, seed, got, want)  # floor or ceil
    # deterministic per (seed, iteration); another seed or iteration draws another subset
    a = stratified_subset(y, 500, 4, t=3)
    np.testing.assert_array_equal(a, stratified_subset(y, 500, 4, t=3))
    assert not np.array_equal(a, stratified_subset(y, 500, 5, t=3))
    assert not np.array_equal(a, stratified_subset(y, 500, 4, t=4))
    assert not np.array_equal(stratified_subset(y, 500, 4), a)  # the fixed one is its own
    # the randomised rounding is unbiased: E[n_c] = n N_c / N (to 4 standard errors)
    draws = np.stack([class_counts(y, 50, np.random.default_rng(s)) for s in range(4000)])
    se = draws.std(0) / np.sqrt(len(draws)) + 1e-12
    assert np.all(np.abs(draws.mean(0) - 50 * N / len(y)) < 4 * se + 1e-9)


def test_subset_size_and_text():
    assert subset_size(None, 55_000) == 55_000
    assert subset_size("5000", 55_000) == 5_000
    assert subset_size("0.1", 55_000) == 5_500 and subset_size("1.0", 55_000) == 55_000
    assert subset_size("5%", 55_000) == 2_750 and subset_size("1%", 50) == 1
    for bad in ("0", "60000", "1.5", "-0.1", "0%", "abc"):
        with pytest.raises(ValueError):
            subset_size(bad, 55_000)
    assert allocated_loss_text(5_000, 55_000) == "loss on 5,000 of 55,000 training examples"
    assert allocated_loss_text(55_000, 55_000) == "loss on all 55,000 training examples"
    with pytest.raises(ConfigError, match="needs --lca-data"):
        RunConfig(lca_data_resample=True).validate()
    with pytest.raises(ConfigError, match="lca-data"):
        RunConfig(lca_data="lots").validate()
    with pytest.raises(ConfigError, match="lca-every"):
        RunConfig(lca_every=0).validate()


def test_the_full_set_as_the_subset_equals_exact_lca(tmp_path):
    """Resampling the whole set every step goes through every subset code path (a new
    subset, a fresh start at θ_t) and must equal the exact run (float64, 1e-12)."""
    exact = _rows(run_lca(RunConfig(**SMALL, val_lca=True), tmp_path / "exact.h5",
                          progress=False))
    full = _rows(run_lca(RunConfig(**SMALL, lca_data="1.0", lca_data_resample=True,
                                   val_lca=True), tmp_path / "full.h5", progress=False))
    np.testing.assert_allclose(full[0], exact[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(full[1], exact[1], rtol=1e-12, atol=1e-15)
    with h5py.File(tmp_path / "exact.h5") as e, h5py.File(tmp_path / "full.h5") as f:
        np.testing.assert_allclose(f["lca_val_layer"][()], e["lca_val_layer"][()], rtol=1e-12)
    assert full[3]["allocated_loss"].startswith("loss on 300 of 300")


def test_fixed_subset_run_is_plain_lca_of_those_examples(tmp_path):
    out = run_lca(RunConfig(**SMALL, lca_data="0.2"), tmp_path / "s.h5", progress=False)
    lca, layer, _, cfg = _rows(out)
    from compute.data.datasets import load_splits

    train = load_splits("synthetic", train_size=300, val_size=50, seed=3).train
    idx = stratified_subset(train.y.numpy(), 60, seed=3)
    assert cfg["lca_data_n"] == 60 and cfg["lca_data_of"] == 300
    assert cfg["lca_data_sha256"] == indices_hash(idx)
    assert cfg["allocated_loss"] == "loss on 60 of 300 training examples"
    with RunBundle.open(out) as b:
        assert b.allocated_loss == "loss on 60 of 300 training examples"
    model = build_model("mnist_fc", (1, 28, 28), 10).double()
    ref = compute_lca(model, train.x[idx].double(), train.y[idx],
                      _thetas(RunConfig(**SMALL)), chunk_size=128)
    np.testing.assert_allclose(lca, ref.lca.numpy(), rtol=1e-6, atol=1e-15)  # float32 rows
    np.testing.assert_allclose(layer, ref.lca_layer.numpy(), rtol=1e-10, atol=1e-15)


def test_resampled_run_is_deterministic_and_uses_each_iterations_subset(tmp_path):
    cfg = RunConfig(**SMALL, lca_data="50", lca_data_resample=True)
    a = _rows(run_lca(cfg, tmp_path / "a.h5", progress=False))
    b = _rows(run_lca(cfg, tmp_path / "b.h5", progress=False))
    np.testing.assert_array_equal(a[0], b[0])  # the same seed: bit for bit
    c = _rows(run_lca(RunConfig(**{**SMALL, "seed": 4}, lca_data="50", lca_data_resample=True),
                      tmp_path / "c.h5", progress=False))
    assert not np.allclose(a[0], c[0])
    from compute.data.datasets import load_splits

    train = load_splits("synthetic", train_size=300, val_size=50, seed=3).train
    model = build_model("mnist_fc", (1, 28, 28), 10).double()
    thetas = _thetas(RunConfig(**SMALL))
    for t in range(SMALL["iters"]):  # step t allocates the loss of the subset drawn for t
        idx = stratified_subset(train.y.numpy(), 50, 3, t)
        ref = compute_lca(model, train.x[idx].double(), train.y[idx], thetas[t:t + 2],
                          chunk_size=128)
        np.testing.assert_allclose(a[0][t], ref.lca.numpy()[0], rtol=1e-6, atol=1e-15)
        np.testing.assert_allclose(a[1][t], ref.lca_layer.numpy()[0], rtol=1e-10, atol=1e-15)
    with h5py.File(tmp_path / "a.h5", "r") as f:  # each step's own ΔL is stored
        assert f["loss_change"].shape == (SMALL["iters"],)


def test_resampled_lca_is_unbiased_on_a_small_problem():
    """Mean over 200 seeds of the subset LCA of one step (rk4, float64) is within 3 standard
    errors of the exact LCA, per layer and for the total, and for 99 % of the parameters."""
    torch.manual_seed(0)
    N, C = 240, 3
    y = torch.arange(N) % C
    x = torch.randn(N, 5, dtype=torch.float64) + y[:, None].double()
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, C)).double()
    theta0 = flat_params(model)
    theta1 = theta0 + 0.3 * torch.randn_like(theta0)
    obj = FullDatasetObjective(model, x, y, n_classes=C, chunk_size=64)
    integ = LCAIntegrator(obj, "rk4")
    integ.start(theta0)
    exact = integ.step(theta1).lca.numpy()
    draws = []
    for seed in range(200):
        idx = torch.as_tensor(stratified_subset(y.numpy(), 24, seed))  # 10 %
        obj.set_data(x[idx], y[idx])
        integ.start(theta0)
        draws.append(integ.step(theta1).lca.numpy())
    draws = np.stack(draws)  # (200, P)
    layers = [slice(0, 36), slice(36, P := theta0.numel()), slice(0, P)]  # fc1, fc2, all
    for sl in layers:
        s = draws[:, sl].sum(1)
        se = s.std(ddof=1) / np.sqrt(len(s))
        assert abs(s.mean() - exact[sl].sum()) < 3 * se, (sl, s.mean(), exact[sl].sum(), se)
    se = draws.std(0, ddof=1) / np.sqrt(len(draws))
    within = np.abs(draws.mean(0) - exact) < 3 * se + 1e-15
    assert within.mean() >= 0.99, within.mean()
    assert se.max() > 0  # the draws do differ: the test can fail
