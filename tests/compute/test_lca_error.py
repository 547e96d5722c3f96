"""The error estimate of ``step(..., refine=True)`` against references computed here with plain
autograd in float64, and the adaptive rule (``rtol``, steps that hit ``max_halvings``)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from compute.api import compute_lca
from compute.lca.integrator import LCAIntegrator
from compute.lca.lca_error import RULES, error_record, is_error_iteration
from compute.lca.objective import FullDatasetObjective
from compute.lca.params import load_flat_params, param_table
from tests.compute.test_lca import _data, _mlp, _sgd_path


def _grad(model, x, y, theta):
    """Full-dataset gradient at θ with plain autograd (one pass, mean cross-entropy)."""
    m = copy.deepcopy(model)
    load_flat_params(m, theta)
    loss = nn.functional.cross_entropy(m(x), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(m.parameters()))])


def _simpson(model, x, y, th0, th1, n):
    """Composite Simpson on n intervals of the step th0 -> th1, every node evaluated here."""
    d = th1 - th0
    acc = torch.zeros_like(d)
    for k in range(2 * n + 1):
        w = 1 if k in (0, 2 * n) else (4 if k % 2 else 2)
        acc += w * _grad(model, x, y, th0 + (k / (2 * n)) * d)
    return d * acc / (6 * n)


class _Counted:
    """Counts the objective's full-dataset evaluations."""

    def __init__(self, obj):
        self.n, self._evaluate = 0, obj.evaluate
        obj.evaluate = self

    def __call__(self, *a, **kw):
        self.n += 1
        return self._evaluate(*a, **kw)


def _integrator(method, per_class=True, **kw):
    model, (x, y) = _mlp(), _data()
    obj = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=32, per_class=per_class)
    return model, x, y, LCAIntegrator(obj, method, **kw)


def test_rk4_refinement_reuses_its_nodes_and_equals_4_interval_simpson():
    model, x, y, integ = _integrator("rk4")
    path = _sgd_path(model, x, y, steps=4, lr=0.5)
    integ.start(path[0])
    calls = _Counted(integ.objective)
    for t in range(4):
        before = calls.n
        st = integ.step(path[t + 1], refine=True)
        # θ_{t+1} and the midpoint for rk4, then only the 6 new nodes k/8 (k ≠ 0, 4, 8)
        assert calls.n - before == 2 + 6 and st.refined.new_gradients == 6
        assert st.refined.intervals == 4
        ref = _simpson(model, x, y, path[t], path[t + 1], 4)
        torch.testing.assert_close(st.refined.lca, ref, rtol=1e-10, atol=1e-17)
        assert torch.equal(st.refined.rules["rk4"], st.lca)  # the stored rule, bit for bit
        fo = (path[t + 1] - path[t]) * _grad(model, x, y, path[t])
        torch.testing.assert_close(st.refined.rules["first_order"], fo, rtol=1e-10, atol=1e-17)
        assert st.class_lca is not None  # per-class LCA is untouched by the refinement


@pytest.mark.parametrize("method, new", [("first_order", 7), ("trapezoid", 7)])
def test_refinement_of_one_gradient_rules_adds_the_midpoint(method, new):
    model, x, y, integ = _integrator(method, per_class=False)
    path = _sgd_path(model, x, y, steps=2, lr=0.5)
    integ.start(path[0])
    calls = _Counted(integ.objective)
    st = integ.step(path[1], refine=True)
    assert calls.n == 1 + new and st.refined.new_gradients == new
    torch.testing.assert_close(st.refined.lca, _simpson(model, x, y, path[0], path[1], 4),
                               rtol=1e-10, atol=1e-17)
    torch.testing.assert_close(st.refined.rules["rk4"], _simpson(model, x, y, path[0], path[1], 1),
                               rtol=1e-10, atol=1e-17)


def test_adaptive_refines_from_the_intervals_it_ended_with():
    model, x, y, integ = _integrator("adaptive", tol=1e-7, max_halvings=6)
    path = _sgd_path(model, x, y, steps=3, lr=1.0)
    integ.start(path[0])
    calls = _Counted(integ.objective)
    seen = set()
    for t in range(3):
        before = calls.n
        st = integ.step(path[t + 1], refine=True)
        n = st.splits
        seen.add(n)
        assert st.refined.intervals == 4 * n and st.refined.new_gradients == 6 * n
        assert calls.n - before == 1 + (2 * n - 1) + 6 * n  # θ_{t+1}, its n-interval nodes, 6n
        torch.testing.assert_close(st.refined.lca,
                                   _simpson(model, x, y, path[t], path[t + 1], 4 * n),
                                   rtol=1e-10, atol=1e-17)
    assert max(seen) > 1  # the tolerance made it refine, so reuse beyond rk4 is exercised


def test_error_estimate_tracks_the_true_error_and_first_order_is_worse():
    # smooth tanh MLP: against an independent 16-interval Simpson reference (error ~1/256 of the
    # 4-interval one), the estimate |A_rk4 - A_ref4| is within 3x of the true per-parameter
    # error for >= 95 % of parameters, and first order's error is far larger than rk4's
    model, x, y, integ = _integrator("rk4")
    path = _sgd_path(model, x, y, steps=4, lr=0.5)
    table = param_table(model)
    layer_idx = torch.as_tensor(table.param_layer_index())
    integ.start(path[0])
    for t in range(4):
        st = integ.step(path[t + 1], refine=True)
        ref16 = _simpson(model, x, y, path[t], path[t + 1], 16)
        true_rk4 = (st.lca - ref16).abs()
        true_fo = (st.refined.rules["first_order"] - ref16).abs()
        est = (st.lca - st.refined.lca).abs()
        big = true_rk4 > 1e-9 * true_rk4.max()  # above float64 rounding of the references
        ratio = est[big] / true_rk4[big]
        assert big.sum() > 0.9 * len(big)
        assert ((ratio > 1 / 3) & (ratio < 3)).double().mean() >= 0.95
        rec = error_record(t, st, layer_idx, table.n_layers, None)
        fo, rk = RULES.index("first_order"), RULES.index("rk4")
        for li in range(table.n_layers):
            cols = layer_idx == li
            assert true_fo[cols].sum() > 20 * true_rk4[cols].sum()
            assert rec.abs_error[fo, li] > 20 * rec.abs_error[rk, li]
            assert rec.median_rel[fo, li] > 10 * rec.median_rel[rk, li]


def test_error_record_statistics_equal_numpy():
    model, x, y, integ = _integrator("rk4")
    path = _sgd_path(model, x, y, steps=2, lr=1.0)
    table = param_table(model)
    layer_idx = torch.as_tensor(table.param_layer_index())
    integ.start(path[0])
    integ.step(path[1])
    st = integ.step(path[2], refine=True)
    rows = torch.as_tensor(np.r_[0:10, 60:70])
    rec = error_record(7, st, layer_idx, table.n_layers, rows)
    ref = st.refined.lca.numpy()
    li = table.param_layer_index()
    assert rec.iteration == 7 and rec.intervals == 4
    np.testing.assert_array_equal(rec.error, np.abs(st.lca.numpy() - ref)[rows.numpy()]
                                  .astype(np.float32))
    for k, rule in enumerate(RULES):
        a = (st.lca if rule == "stored" else st.refined.rules[rule]).numpy()
        for layer in range(table.n_layers):
            c = li == layer
            nz = c & (ref != 0)
            rel = np.abs(a[nz] - ref[nz]) / np.abs(ref[nz])
            assert rec.median_rel[k, layer] == pytest.approx(np.median(rel), rel=1e-12)
            assert rec.flips[k, layer] == int((np.sign(a[nz]) != np.sign(ref[nz])).sum())
            assert rec.abs_error[k, layer] == pytest.approx(np.abs(a[c] - ref[c]).sum(),
                                                            rel=1e-12)
            assert rec.rule_sum[k, layer] == pytest.approx(a[c].sum(), rel=1e-12)
    for layer in range(table.n_layers):
        c = li == layer
        assert rec.nonzero[layer] == int((ref[c] != 0).sum())
        assert rec.ref_layer[layer] == pytest.approx(ref[c].sum(), rel=1e-12)
    dL = st.loss_after - st.loss_before
    assert rec.ref_residual == pytest.approx(dL - ref.sum(), abs=1e-15)
    assert abs(rec.ref_residual) < abs(st.residual)  # the reference conserves better
    assert [is_error_iteration(t, 5) for t in range(7)] == [1, 0, 0, 0, 0, 1, 0]
    assert not is_error_iteration(0, 0)


def test_rtol_refines_late_iterations_that_tol_accepts():
    # small steps, as late in training: every |residual| of rk4 is far below tol = 1e-3 (the
    # paper's), so the absolute rule never refines, though it misses 1e-8·|ΔL| by far
    model, (x, y) = _mlp(), _data()
    path = _sgd_path(model, x, y, steps=8, lr=0.5)
    absolute = compute_lca(model, x, y, path, method="adaptive", tol=1e-3)
    relative = compute_lca(model, x, y, path, method="adaptive", tol=1e-3, rtol=1e-8,
                           max_halvings=10)
    dL = absolute.loss.diff().abs()
    assert absolute.splits.tolist() == [1] * 8
    assert (absolute.residual.abs() < 1e-5).all()
    assert (absolute.residual.abs() > 1e-8 * dL).all()
    # rtol refines each of them until |residual| <= rtol·|ΔL|, and none hits the cap
    assert (relative.splits > 1).all()
    assert (relative.residual.abs() <= 1e-8 * dL).all()
    assert not relative.hit_max.any()
    with pytest.raises(ValueError, match="relative tolerance"):
        LCAIntegrator(FullDatasetObjective(model, x, y, n_classes=3), "adaptive", rtol=-1.0)


def test_hit_max_halvings_is_exact_on_a_crafted_loss():
    # L(θ) = θ² + relu(θ)⁵ of one weight: Simpson is exact where θ <= 0 along the whole step
    # (a quadratic), and never reaches tol 1e-12 on 4 intervals where the step touches θ > 0
    model = nn.Linear(1, 1, bias=False).double()
    x, target = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    path = [torch.tensor([v], dtype=torch.float64) for v in (-2.0, -1.0, -0.5, 0.5, 1.5, 2.5)]
    res = compute_lca(model, x, target, path, method="adaptive", tol=1e-12, max_halvings=2,
                      loss_fn=lambda out, t: out[:, 0] ** 2 + torch.relu(out[:, 0]) ** 5)
    assert res.hit_max.tolist() == [False, False, True, True, True]
    assert res.splits.tolist() == [1, 1, 4, 4, 4]
    assert (res.residual[:2].abs() < 1e-12).all() and (res.residual[2:].abs() >= 1e-12).all()
