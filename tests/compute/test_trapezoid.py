"""``method="trapezoid"``: weights (1/2, 1/2) at θ_t and θ_{t+1}, one new gradient per step."""

import pytest
import torch
from torch import nn

from compute.api import compute_lca
from compute.lca.integrator import METHODS, LCAIntegrator
from compute.lca.objective import FullDatasetObjective
from compute.lca.params import flat_params, param_table
from tests.compute.test_lca import _data, _mlp, _sgd_path


def _rel_err(a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-iteration relative L2 error of per-parameter LCA rows, (T,)."""
    return (a - ref).norm(dim=1) / ref.norm(dim=1)


def test_trapezoid_is_a_method():
    assert "trapezoid" in METHODS


def test_trapezoid_exact_on_quadratic_loss_per_parameter():
    # linear model + squared error: the gradient is linear in θ, so the trapezoid rule is exact
    torch.manual_seed(0)
    model = nn.Linear(5, 2).double()
    x = torch.randn(40, 5, dtype=torch.float64)
    target = torch.randn(40, 2, dtype=torch.float64)
    path = [flat_params(model) + 0.3 * torch.randn(12, dtype=torch.float64) * k for k in range(4)]
    mse = lambda out, t: ((out - t) ** 2).sum(1)  # noqa: E731
    tr = compute_lca(model, x, target, path, method="trapezoid", loss_fn=mse)
    rk = compute_lca(model, x, target, path, method="rk4", loss_fn=mse)
    assert tr.residual.abs().max() < 1e-13
    assert tr.loss.diff().abs().min() > 1e-3  # the steps really change the loss
    torch.testing.assert_close(tr.lca, rk.lca, rtol=0, atol=1e-14)  # both exact per parameter
    assert tr.splits.tolist() == [1, 1, 1]


def test_trapezoid_error_between_rk4_and_first_order_on_a_smooth_problem():
    # tanh MLP (smooth): against composite Simpson on 64 intervals (converged to ~4e-12), per
    # iteration trapezoid's per-parameter error is ≥ 500× rk4's and ≤ 1/20 of first order's
    model, (x, y) = _mlp(), _data()
    path = _sgd_path(model, x, y, steps=6, lr=0.5)
    ref = compute_lca(model, x, y, path, method="adaptive", tol=1e-300, max_halvings=6).lca
    err = {m: _rel_err(compute_lca(model, x, y, path, method=m).lca, ref)
           for m in ("first_order", "trapezoid", "rk4")}
    assert (err["rk4"] * 10 < err["trapezoid"]).all()
    assert (err["trapezoid"] * 10 < err["first_order"]).all()
    assert (err["trapezoid"] < 0.1).all()  # and it is a usable estimate, not just "better"


@pytest.mark.parametrize("chunking", ["class", "mixed"])
def test_trapezoid_group_and_class_sums_equal_the_whole(chunking):
    model, (x, y) = _mlp(), _data()
    path = _sgd_path(model, x, y)
    res = compute_lca(model, x, y, path, method="trapezoid", per_class=True, chunk_size=7,
                      chunking=chunking)
    table = param_table(model)
    for k in range(table.n_layers):
        cols = torch.as_tensor(table.param_layer_index() == k)
        torch.testing.assert_close(res.lca[:, cols].sum(1), res.lca_layer[:, k], rtol=0,
                                   atol=1e-14)
    torch.testing.assert_close(res.class_lca_layer.sum(1), res.lca_layer, rtol=0, atol=1e-14)
    # the per-parameter rows equal those of a run without per-class splitting
    plain = compute_lca(model, x, y, path, method="trapezoid", chunk_size=7)
    torch.testing.assert_close(res.lca, plain.lca, rtol=0, atol=1e-14)


def test_trapezoid_step_is_the_mean_endpoint_gradient_and_class_lca_sums_to_lca():
    model, (x, y) = _mlp(), _data()
    path = _sgd_path(model, x, y, steps=3)
    obj = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=10, per_class=True)
    check = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=96)  # for the hand sum
    integ = LCAIntegrator(obj, "trapezoid")
    integ.start(path[0])
    for before, after in zip(path, path[1:], strict=False):
        st = integ.step(after)
        g0, g1 = check.evaluate(before).grad, check.evaluate(after).grad
        torch.testing.assert_close(st.lca, (after - before) * (g0 + g1) / 2, rtol=0, atol=1e-15)
        assert st.class_lca.shape == (3, st.lca.numel()) and st.splits == 1
        torch.testing.assert_close(st.class_lca.sum(0), st.lca, rtol=0, atol=1e-15)


@pytest.mark.parametrize("method,per_step", [("trapezoid", 1), ("rk4", 2), ("first_order", 1)])
def test_full_dataset_gradients_per_step(method, per_step):
    model, (x, y) = _mlp(), _data()
    path = _sgd_path(model, x, y, steps=4)
    obj = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=32)
    calls = []
    evaluate = obj.evaluate
    obj.evaluate = lambda *a, **kw: calls.append(1) or evaluate(*a, **kw)
    integ = LCAIntegrator(obj, method)
    integ.start(path[0])
    assert len(calls) == 1
    for t, theta in enumerate(path[1:], start=1):
        integ.step(theta)
        assert len(calls) == 1 + per_step * t
