"""--lca-every K (issue 17.3), --full-loss-every (17.2), resume with the cheaper modes, and
--lca-layers none end to end (17.5), through real lca-run runs on synthetic data (float64)."""

import json

import h5py
import numpy as np
import pytest

from compute.run.cli import main as lca_run
from compute.run.config import RunConfig
from compute.run.train import checkpoint_path, run_lca
from lcaviz.analysis import summarize
from lcaviz.bundle import RunBundle

SMALL = dict(net="mnist_fc", dataset="synthetic", train_size=300, val_size=50, batch_size=50,
             iters=9, chunk_size=128, checkpoint_every=4, seed=3, precision="float64")
KEYS = ("lca", "lca_val", "lca_val_layer", "loss/val", "lca_rows", "lca_layer",
        "lca_class_layer", "loss/train", "loss/minibatch", "lca_residual", "help_count",
        "hurt_count", "splits", "param_help_iters", "param_nonzero_iters", "param_moves",
        "param_grad_signs", "param_grad_changes")


def _read(path, extra=()):
    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in (*KEYS, *extra) if k in f}
        out["attrs"] = dict(f.attrs)
    return out


@pytest.fixture(scope="module")
def exact(tmp_path_factory):
    return _read(run_lca(RunConfig(**SMALL), tmp_path_factory.mktemp("x") / "exact.h5",
                         progress=False))


def test_lca_every_rows_equal_the_exact_rows_at_those_iterations(tmp_path, exact):
    K = 3
    out = run_lca(RunConfig(**SMALL, lca_every=K), tmp_path / "k3.h5", progress=False)
    got = _read(out, ("lca_iters",))
    alloc = np.arange(0, SMALL["iters"], K)  # 0, 3, 6
    np.testing.assert_array_equal(got["lca_iters"], alloc)
    # one row per allocated step, its window up to the next allocated iteration
    np.testing.assert_array_equal(got["lca_rows"], [[0, 3], [3, 6], [6, 9]])
    np.testing.assert_array_equal(got["lca"], exact["lca"][alloc])  # float32 rows, bit for bit
    np.testing.assert_allclose(got["lca_layer"][alloc], exact["lca_layer"][alloc],
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["lca_class_layer"][alloc], exact["lca_class_layer"][alloc],
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["lca_residual"][alloc], exact["lca_residual"][alloc],
                               rtol=1e-9, atol=1e-15)
    gaps = np.setdiff1d(np.arange(SMALL["iters"]), alloc)
    assert np.isnan(got["lca_layer"][gaps]).all() and np.isnan(got["lca_residual"][gaps]).all()
    assert (got["help_count"][gaps] == 0).all() and (got["splits"][gaps] == -1).all()
    # the loss is known at the ends of the allocated steps only (θ_0, θ_1, θ_3, θ_4, ...)
    known = np.union1d(alloc, alloc + 1)
    np.testing.assert_allclose(got["loss/train"][known], exact["loss/train"][known], rtol=1e-12)
    assert np.isnan(np.delete(got["loss/train"], known)).all()
    np.testing.assert_array_equal(got["loss/minibatch"], exact["loss/minibatch"])  # same path
    # counters over the allocated iterations; moves at every iteration (θ is known)
    np.testing.assert_array_equal(got["param_help_iters"],
                                  (exact["lca"][alloc] < 0).sum(0))
    np.testing.assert_array_equal(got["param_moves"], exact["param_moves"])
    assert got["attrs"]["lca_every"] == K
    with RunBundle.open(out) as b:
        assert b.is_gapped and b.lca_every == K
        np.testing.assert_array_equal(b.allocated(), np.isin(np.arange(9), alloc))
        assert (b.lca_layer()[gaps] == 0).all() and np.isnan(b.lca_layer(gaps=np.nan)[gaps]).all()
        np.testing.assert_allclose(b.lca_layer().sum(0), exact["lca_layer"][alloc].sum(0),
                                   rtol=1e-12)


def test_full_loss_every_and_the_gap(tmp_path, exact):
    out = run_lca(RunConfig(**SMALL, lca_data="0.5", full_loss_every=4), tmp_path / "f.h5",
                  progress=False)
    with RunBundle.open(out) as b:
        full = b.full_loss()
        np.testing.assert_array_equal(full["iters"], [0, 4, 8, 9])  # every 4, and θ_T
        # the full loss at θ_t is the exact run's allocated (full-set) loss there
        np.testing.assert_allclose(full["loss"], exact["loss/train"][[0, 4, 8, 9]], rtol=1e-12)
        from lcaviz.analysis.calibration import calibration

        df = calibration(b)
        cum = np.concatenate([[0], np.cumsum(b.lca_layer().sum(1))])
        np.testing.assert_allclose(df.lca_total, cum[[0, 4, 8, 9]], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(df.gap, df.lca_total - (full["loss"] - full["loss"][0]))
        assert b.allocated_loss == "loss on 150 of 300 training examples"
    assert run_lca(RunConfig(**SMALL, full_loss_every=0), tmp_path / "n.h5", progress=False)
    with RunBundle.open(tmp_path / "n.h5") as b:
        assert b.full_loss() is None and b.allocated_loss is None


@pytest.mark.parametrize("options", [
    dict(lca_every=3, lca_data="100", full_loss_every=2),
    dict(lca_data="60", lca_data_resample=True, full_loss_every=5, lca_rows="2", val_lca=True),
])
def test_resume_equals_an_uninterrupted_run(tmp_path, options):
    cfg = RunConfig(**SMALL, **options)
    extra = ("lca_iters", "full_loss_iters", "full_loss", "loss_change")
    ref = _read(run_lca(cfg, tmp_path / "ref.h5", progress=False), extra)
    out = tmp_path / "killed.h5"
    run_lca(cfg, out, progress=False, stop_after=6)  # killed after 6; last checkpoint at 4
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "running"
    run_lca(None, out, resume=True, progress=False)
    got = _read(out, extra)
    assert got["attrs"]["status"] == "complete" and not checkpoint_path(out).exists()
    assert set(got) == set(ref)
    for key in set(ref) - {"attrs"}:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)  # bit for bit


def test_lca_layers_none_end_to_end(tmp_path, exact):
    out = tmp_path / "none.h5"
    args = ["--no-progress", "--out", str(out), "--lca-layers", "none"]
    for k, v in SMALL.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    assert lca_run(args) == 0
    got = _read(out, ("lca_columns",))
    assert got["lca"].shape == (SMALL["iters"], 0) and got["lca_columns"].shape == (0, 2)
    for key in ("lca_layer", "lca_class_layer", "help_count", "hurt_count", "lca_residual",
                "param_help_iters"):  # aggregates as in the run with every row
        np.testing.assert_allclose(got[key], exact[key], rtol=1e-12, atol=0, err_msg=key)
    assert json.loads(got["attrs"]["config"])["lca_layers"] == []
    with RunBundle.open(out) as b:
        assert b.n_row_cols == 0 and b.row_layers == [] and not b.has_rows(0)
        s = summarize(b, shift_resamples=20)
        assert s["values"]["rows"] == "no per-parameter rows" and s["values"]["layers"] == []
        assert s["helping"]["n_iters"] == SMALL["iters"]
        assert s["weibull"]["help"]["n"] == 0  # no values, no fit: NaN, not an error
    from lcaviz.app import create_app, get_state
    from lcaviz.app.pages import run_callbacks, run_views
    from lcaviz.app.queries import run_meta

    state = get_state(create_app(tmp_path))
    c = run_views.Controls(run_id=state.run_id(out))
    meta = run_meta(state.open(c.run_id)[0])
    stream, _ = run_callbacks.heatmap_stream(state, c.run_id, meta, 0, "row", 10, "fixed",
                                             "auto", None)
    # said so plainly (not an error, not an exception), with the flag that stores the rows
    assert "error" not in stream and "was not stored" in stream["note"]
    assert "--lca-layers none" in stream["note"]
    for view in (run_views.layer_bars, run_views.loss, run_views.help_time,
                 run_views.help_layer, run_views.help_fraction):
        assert view(state, c).data  # every aggregate view draws from the aggregates
