"""The causal test of helping (issue 15.3): partial steps of only helping / hurting / zero-LCA
coordinates, checked against plain float64 loss evaluations."""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from compute.api import compute_lca
from compute.lca.counterfactual import PARTS, counterfactual_step, helping_mask
from compute.lca.objective import FullDatasetObjective
from compute.lca.params import flat_params, load_flat_params


def _problem():
    torch.manual_seed(0)
    x = torch.randn(80, 5, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    return model, x, y


def _loss(model, theta, x, y):
    m = __import__("copy").deepcopy(model)
    load_flat_params(m, theta)
    with torch.no_grad():
        return float(F.cross_entropy(m(x), y))


def test_partial_steps_are_the_full_loss_of_the_masked_steps():
    model, x, y = _problem()
    theta0 = flat_params(model)
    step = -0.3 * torch.randn_like(theta0)
    theta1 = theta0 + step
    res = compute_lca(model, x, y, [theta0, theta1], method="rk4")
    lca = res.lca[0]
    obj = FullDatasetObjective(model, x, y, n_classes=3)
    out = counterfactual_step(obj, theta0, theta1, lca)
    assert out.shape == (4, 2) and PARTS[1] == "helping"
    L0 = _loss(model, theta0, x, y)
    for k, mask in enumerate((lca < 0, lca > 0, lca == 0), start=1):
        moved = theta0 + torch.where(mask, step, torch.zeros_like(step))
        assert abs(out[k, 0] - (_loss(model, moved, x, y) - L0)) < 1e-12
        assert abs(out[k, 1] - float(lca[mask].sum())) < 1e-12
    assert abs(out[0, 0] - (_loss(model, theta1, x, y) - L0)) < 1e-12
    assert abs((out[0, 0] - out[0, 1]) - float(res.residual[0])) < 1e-12  # ΔL − ΣA
    assert out[1, 0] < 0 < out[2, 0]  # helping coordinates alone lower the loss here


def test_helping_mask_is_the_sign_of_first_order_lca():
    g = torch.tensor([1.0, -2.0, 0.0, 3.0])
    d = torch.tensor([-1.0, -1.0, 5.0, 0.0])
    assert helping_mask(g, d).tolist() == [True, False, False, False]


# ---- wired into lca-run: --counterfactual-every and --update-mask helping ----------------

def _cfg(tmp_path, **kw):
    from compute.run.config import RunConfig

    return RunConfig(net="mnist_fc", dataset="synthetic", train_size=60, val_size=20,
                     batch_size=10, iters=6, optimizer="sgd", lr=0.5, momentum=0.9,
                     method="rk4", precision="float64", seed=3, lca_rows="1",
                     per_class=False, **kw)


def _replay(cfg, masked: bool):
    """A hand-written SGD with momentum on lca-run's model, data and minibatches, in float64:
    θ_0 … θ_T, and per step the full-dataset gradient at θ_t."""
    from compute.run.train import build_run, minibatch_indices

    run = build_run(cfg)
    model, x, y = run.model, run.x, run.y
    theta, buf, thetas = flat_params(model), None, []
    for t in range(cfg.iters):
        thetas.append(theta.clone())
        load_flat_params(model, theta)
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()  # the full training loss at θ_t
        g_full = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        idx = minibatch_indices(t, len(y), cfg.batch_size, cfg.seed)
        model.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        buf = g.clone() if buf is None else cfg.momentum * buf + g  # torch's SGD, dampening 0
        delta = -cfg.lr * buf
        if masked:
            delta = torch.where(g_full * delta < 0, delta, torch.zeros_like(delta))
        theta = theta + delta
    thetas.append(theta.clone())
    return model, x, y, thetas


def test_lca_run_counterfactuals_equal_direct_loss_evaluations(tmp_path):
    from compute.run.train import run_lca
    from lcaviz.bundle import RunBundle

    cfg = _cfg(tmp_path, counterfactual_every=2)
    out = run_lca(cfg, tmp_path / "cf.h5", progress=False)
    model, x, y, thetas = _replay(cfg, masked=False)
    with RunBundle(out) as b:
        its, cf = b.counterfactual()
        lca_rows = b.rows().astype(np.float64)  # (T, P) float32 rows: for signs only
        residual = b.residual()
    assert its.tolist() == [0, 2, 4] and cf.shape == (3, 4, 2)
    for m, t in enumerate(its):
        th0, th1 = thetas[t], thetas[t + 1]
        L0 = _loss(model, th0, x, y)
        ref = compute_lca(model, x, y, [th0, th1], method="rk4").lca[0]
        normal = np.abs(ref.numpy()) > 1e-37  # float32 rows flush smaller values to 0
        assert np.array_equal(np.sign(ref.numpy()[normal]), np.sign(lca_rows[t][normal]))
        assert abs(cf[m, 0, 0] - (_loss(model, th1, x, y) - L0)) < 1e-12
        assert abs(cf[m, 0, 0] - cf[m, 0, 1] - residual[t]) < 1e-12
        for k, mask in enumerate((ref < 0, ref > 0, ref == 0), start=1):
            moved = th0 + torch.where(mask, th1 - th0, torch.zeros_like(th0))
            assert abs(cf[m, k, 0] - (_loss(model, moved, x, y) - L0)) < 1e-12
            assert abs(cf[m, k, 1] - float(ref[mask].sum())) < 1e-9
        # the parts' LCA adds up to the step's (the zero part is exactly zero)
        assert abs(cf[m, 1:, 1].sum() - cf[m, 0, 1]) < 1e-12 and cf[m, 3, 1] == 0


def test_update_mask_helping_equals_hand_written_masked_sgd(tmp_path):
    from compute.run.train import run_lca
    from lcaviz.bundle import RunBundle

    masked = run_lca(_cfg(tmp_path, update_mask="helping"), tmp_path / "m.h5", progress=False)
    plain = run_lca(_cfg(tmp_path), tmp_path / "p.h5", progress=False)
    model, x, y, thetas = _replay(_cfg(tmp_path), masked=True)
    want = np.array([_loss(model, th, x, y) for th in thetas])
    with RunBundle(masked) as b, RunBundle(plain) as p:
        assert b.config["update_mask"] == "helping"
        np.testing.assert_allclose(b.loss_train(), want, rtol=1e-12, atol=0)
        assert np.abs(p.loss_train() - want).max() > 1e-6  # the mask changed the run
    _, _, _, plain_thetas = _replay(_cfg(tmp_path), masked=False)
    with RunBundle(plain) as p:
        np.testing.assert_allclose(p.loss_train(), [_loss(model, th, x, y)
                                                    for th in plain_thetas], rtol=1e-12, atol=0)


def test_update_mask_is_refused_where_the_gradient_at_theta_t_is_not_evaluated(tmp_path):
    import pytest

    from compute.run.config import ConfigError

    with pytest.raises(ConfigError, match="--update-mask needs the gradient"):
        _cfg(tmp_path, update_mask="helping", lca_every=2).validate()
    with pytest.raises(ConfigError, match="unknown --update-mask"):
        _cfg(tmp_path, update_mask="hurting").validate()
    with pytest.raises(ConfigError, match="--counterfactual-every"):
        _cfg(tmp_path, counterfactual_every=-1).validate()


def test_a_resumed_run_has_the_same_counterfactuals(tmp_path):
    from dataclasses import replace

    from compute.run.train import run_lca
    from lcaviz.bundle import RunBundle

    cfg = replace(_cfg(tmp_path, counterfactual_every=2), checkpoint_every=2)
    whole = run_lca(cfg, tmp_path / "whole.h5", progress=False)
    cut = run_lca(cfg, tmp_path / "cut.h5", progress=False, stop_after=5)  # killed after t=4
    run_lca(None, cut, resume=True, progress=False)  # from the checkpoint at 4
    with RunBundle(whole) as a, RunBundle(cut) as b:
        (ia, ca), (ib, cb) = a.counterfactual(), b.counterfactual()
    assert ia.tolist() == ib.tolist() == [0, 2, 4]
    np.testing.assert_array_equal(ca, cb)
    # entries flushed after the checkpoint are dropped by a resume (reopen at iteration 3)
    import h5py

    from lcaviz.bundle.writer import BundleWriter

    with h5py.File(whole, "r+") as f:
        f.attrs["status"] = "running"  # as if killed after its last iteration
    BundleWriter.reopen(whole, 3).close("failed", "test")
    with h5py.File(whole, "r") as f:  # the file itself, not only the reader's view
        assert f["counterfactual_iters"][()].tolist() == [0, 2]
        assert f["counterfactual"].shape == (2, 4, 2)


def test_summary_reports_the_causal_test(tmp_path):
    from compute.run.train import run_lca
    from lcaviz.analysis import counterfactual_summary, counterfactual_table, summarize
    from lcaviz.bundle import RunBundle
    from lcaviz.reports.summary_cli import format_report

    out = run_lca(_cfg(tmp_path, counterfactual_every=2), tmp_path / "s.h5", progress=False)
    with RunBundle(out) as b:
        df, s = counterfactual_table(b), counterfactual_summary(b)
        its, cf = b.counterfactual()
        text = format_report(summarize(b, shift_resamples=10))
    assert df.iteration.tolist() == its.tolist()
    np.testing.assert_allclose(df.interaction, cf[:, 0, 0] - cf[:, 1:, 0].sum(1), atol=0)
    assert s["n"] == 3
    assert s["pct_help_lowers"] == 100 * np.mean(cf[:, 1, 0] < 0)
    assert s["pct_hurt_raises"] == 100 * np.mean(cf[:, 2, 0] > 0)
    assert f"causal   3 sampled steps: the helping coordinates alone lower the loss in " \
           f"{s['pct_help_lowers']:.0f} %" in text


def test_causal_report_pairs_plain_and_masked_runs_by_seed(tmp_path):
    from dataclasses import replace

    from compute.run.train import run_lca
    from lcaviz.bundle import RunBundle
    from lcaviz.reports import causal

    for seed in (1, 2):
        base = replace(_cfg(tmp_path), seed=seed, val_lca=True)
        run_lca(replace(base, counterfactual_every=3), tmp_path / f"plain_s{seed}.h5",
                progress=False)
        run_lca(replace(base, update_mask="helping"), tmp_path / f"masked_s{seed}.h5",
                progress=False)
    runs = causal.load_runs(tmp_path)
    assert sorted((r.seed, r.masked) for r in runs) == [(1, False), (1, True), (2, False),
                                                        (2, True)]
    text = causal.section(runs, "runs/causal")
    final = {}
    for name in ("plain", "masked"):
        losses = []
        for seed in (1, 2):
            with RunBundle(tmp_path / f"{name}_s{seed}.h5") as b:
                losses.append(b.loss_train()[-1])
        final[name] = np.array(losses)
    d = final["masked"] - final["plain"]
    row = [ln for ln in text.splitlines() if ln.startswith("| training loss at θ_T |")][0]
    assert f"{final['plain'].mean():.4f} ± {final['plain'].std(ddof=1):.4f}" in row
    assert f"{d.mean():.4f} ± {d.std(ddof=1):.4f}" in row
    assert "| plain_s1.h5 | 2 |" in text  # iterations 0 and 3 sampled
    assert "masked_s1.h5 |" not in text.split("**Training only")[0]  # no test in masked runs
