"""lca-run with --lca-error-every, --rtol / --max-halvings and the oscillation counters: what
the bundle stores, that it survives a resume bit for bit, and the counters against brute force
(a stored trajectory; full-dataset gradients recomputed with plain autograd in float64)."""

import json

import h5py
import numpy as np
import pytest
import torch

from compute.run.cli import main as lca_run
from compute.run.config import ConfigError, RunConfig
from compute.run.train import build_run, run_lca, train_step
from lcaviz.analysis import direction_changes
from lcaviz.analysis.lca_error import conservation, error_table, table_s1
from lcaviz.analysis.oscillation import counter_oscillation, movement_oscillation
from lcaviz.bundle import RunBundle
from lcaviz.bundle.layout import M_DATASETS, OSC_COUNTERS
from lcaviz.reports.summary_cli import main as summary_main

SMALL = dict(net="mnist_fc", dataset="synthetic", train_size=600, val_size=100, batch_size=50,
             iters=12, chunk_size=128, checkpoint_every=4, seed=3)
NEW = (*M_DATASETS, *OSC_COUNTERS, "layer_oscillation", "oscillation_iters", "hit_max_halvings",
       "lca_residual", "splits", "lca", "loss/train")


def _run(path, **kw):
    return run_lca(RunConfig(**{**SMALL, **kw}), path, progress=False)


def _datasets(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in NEW if k in f}, dict(f.attrs)


def test_error_estimates_in_the_bundle(tmp_path):
    out = _run(tmp_path / "e.h5", lca_error_every=5, precision="float64",
               lca_layers=["fc1", "fc3"])
    with RunBundle.open(out) as b:
        assert b.lca_error_iters().tolist() == [0, 5, 10]
        err, s = b.lca_error(), b.lca_error_stats()
        assert err.shape == (3, b.n_row_cols) and b.n_row_cols == 78_500 + 510
        assert s["rules"] == ["first_order", "trapezoid", "rk4", "stored"]
        assert s["every"] == 5 and s["intervals"].tolist() == [4, 4, 4]
        k = s["rules"].index("stored")
        # the stored rule's layer sums are the run's own per-layer LCA at those iterations
        np.testing.assert_allclose(s["rule_sum"][:, k], b.lca_layer()[[0, 5, 10]],
                                   rtol=1e-12, atol=1e-18)
        np.testing.assert_array_equal(s["rule_sum"][:, k], s["rule_sum"][:, 2])  # rk4 run
        # per-parameter errors sum to the per-layer ones (float32 values, float64 sums)
        for layer in ("fc1", "fc3"):
            li = b.layer_index(layer)
            np.testing.assert_allclose(b.lca_error(cols=b.layer_columns(layer)).sum(1),
                                       s["abs_error"][:, k, li], rtol=1e-5)
        # the reference conserves the loss change better than the stored rk4 (here 6.8x: on a
        # ReLU net the kinks limit Simpson's convergence to about h^2)
        assert np.abs(s["ref_residual"]).sum() < 0.3 * np.abs(b.residual()[[0, 5, 10]]).sum()
        t = error_table(b)
        assert list(t.layer) == ["fc1", "fc2", "fc3", "network"]
        assert (t.median_rel[:3] > 0).all() and (t.median_rel[:3] < 0.2).all()
        s1 = table_s1(b)
        assert (s1.rel_l1_first_order > 3 * s1.rel_l1_rk4).all()
        assert b.hit_max_halvings() is None  # not an adaptive run
        assert b.closing_error()["lca_cum_error"] == pytest.approx(
            conservation(b)["cum_error"], rel=1e-9)


def test_adaptive_rtol_flags_and_warns_on_capped_steps(tmp_path, capsys):
    out = _run(tmp_path / "a.h5", method="adaptive", tol=1e-3, rtol=1e-3, max_halvings=1,
               precision="float64", per_class=False)
    err = capsys.readouterr().err
    with RunBundle.open(out) as b:
        flags, res, splits = b.hit_max_halvings(), b.residual(), b.splits()
        dL = np.abs(np.diff(b.loss_train()))
        missed = (np.abs(res) >= 1e-3) | (np.abs(res) > 1e-3 * dL)
        np.testing.assert_array_equal(flags.astype(bool), missed & (splits == 2))
        np.testing.assert_array_equal(flags.astype(bool), missed)  # capped = not accepted
        n = int(flags.sum())
        assert 0 < n < 12  # ReLU kinks: some steps still miss 1e-3·|ΔL| on two intervals
        assert b.closing_error()["lca_hit_max_halvings"] == n
        assert conservation(b)["hit_max_halvings"] == n
    assert f"{n} of 12 iterations used 2^1 = 2 Simpson intervals" in err
    assert summary_main([str(out), "--shift-resamples", "20", "--weibull-sample", "500"]) == 0
    assert f"WARNING: {n} of 12 iterations hit --max-halvings 1" in capsys.readouterr().out


def test_resume_equals_uninterrupted_with_every_new_option(tmp_path):
    kw = dict(method="adaptive", rtol=1e-4, max_halvings=2, lca_error_every=3, iters=11,
              checkpoint_every=3, per_class=False)
    ref, ref_attrs = _datasets(_run(tmp_path / "ref.h5", **kw))
    out = tmp_path / "killed.h5"
    run_lca(RunConfig(**{**SMALL, **kw}), out, progress=False, stop_after=8)  # ckpt at T=6
    with h5py.File(out, "r") as f:  # killed after 8 iterations; flushed at least up to T=6
        assert f["progress"][0] >= 6 and len(f["lca_error_iters"]) >= 2
    with RunBundle.open(out) as b:  # the counters are as of the last checkpoint, and say so
        assert b.oscillation_iters() == 6
        assert counter_oscillation(b)["n_iters"] == 6
    run_lca(None, out, resume=True, progress=False)
    got, attrs = _datasets(out)
    assert set(got) == set(NEW)
    for key in NEW:  # bit for bit
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    assert got["lca_error_iters"].tolist() == [0, 3, 6, 9]
    with RunBundle.open(out) as b:
        assert b.oscillation_iters() == 11
    for key in ("lca_cum_residual", "lca_cum_abs_residual", "lca_cum_loss_change",
                "lca_cum_error", "lca_cum_abs_error", "lca_hit_max_halvings"):
        assert attrs[key] == ref_attrs[key], key


def test_move_counters_equal_the_stored_trajectory(tmp_path):
    # float32 run: the trajectory holds θ exactly, so its moves are the engine's moves
    out = _run(tmp_path / "t.h5", save_trajectory=True, iters=20, lca_rows="dense:5,5")
    with RunBundle.open(out) as b:
        c = b.oscillation_counters()
        moves, changes = direction_changes(b.rows(source="trajectory"))
        np.testing.assert_array_equal(c["param_moves"], moves)
        np.testing.assert_array_equal(c["param_move_changes"], changes)
        assert changes.sum() > 1000  # SGD with momentum really oscillates
        layer = b.layer_oscillation()
        for li in range(b.n_layers):
            cols = b.layer_columns(li)
            assert layer.moves[li] == moves[cols].sum()
            assert layer.move_changes[li] == changes[cols].sum()
            assert layer.moving[li] == (moves[cols] > 0).sum()
            assert layer.grad_changes[li] == c["param_grad_changes"][cols].sum()
        counted, traj = counter_oscillation(b), movement_oscillation(b)
    assert counted["moves"] == {k: v for k, v in traj.items()
                                if k not in ("layers", "gradient_note")}
    for a, t in zip(counted["layers"], traj["layers"], strict=True):
        assert a["moves"]["iters_per_change"] == t["iters_per_change"]


def test_gradient_counters_equal_plain_autograd_in_float64(tmp_path):
    cfg = RunConfig(**{**SMALL, "iters": 9, "precision": "float64"})
    out = run_lca(cfg, tmp_path / "g.h5", progress=False)
    run = build_run(cfg)  # the same run again: training is a pure function of the config
    x, y = run.x, run.y
    grads = []
    for t in range(cfg.iters + 1):
        if t:
            train_step(run, t - 1)
        model = run.model
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy().copy())
    signs = np.sign(np.stack(grads))  # (T + 1, P), brute force
    with RunBundle.open(out) as b:
        c = b.oscillation_counters()
        with torch.no_grad():  # the replay followed the run's own trajectory
            full = torch.nn.functional.cross_entropy(run.model(x), y).item()
        assert b.loss_train()[-1] == pytest.approx(full, rel=1e-12)
    np.testing.assert_array_equal(c["param_grad_signs"], (signs != 0).sum(0))
    # changes: nonzero signs that differ from the last nonzero one
    last, ref = np.zeros(signs.shape[1]), np.zeros(signs.shape[1], np.int64)
    for s in signs:
        ref += (s != 0) & (last != 0) & (s != last)
        last = np.where(s != 0, s, last)
    np.testing.assert_array_equal(c["param_grad_changes"], ref)
    assert ref.sum() > 100 and c["param_grad_signs"].max() == cfg.iters + 1


def test_new_flags_have_help_defaults_and_checks(tmp_path, capsys):
    with pytest.raises(SystemExit):
        lca_run(["--help"])
    text = capsys.readouterr().out
    assert "--lca-error-every K" in text and "--rtol RTOL" in text
    with pytest.raises(ConfigError, match="--rtol only applies to --method adaptive"):
        RunConfig(rtol=1e-3).validate()
    with pytest.raises(ConfigError, match="--lca-error-every must be"):
        RunConfig(lca_error_every=-1).validate()
    assert lca_run(["--dataset", "synthetic", "--rtol", "-1", "--method", "adaptive",
                    "--out", str(tmp_path / "x.h5"), "--no-progress"]) == 2
    assert "--rtol must be" in capsys.readouterr().err
    cfg = json.loads(json.dumps(RunConfig(lca_error_every=10).to_dict()))
    assert RunConfig.from_dict(cfg).lca_error_every == 10
