"""Numerical checks of the LCA engine against plain autograd, in float64."""

import pytest
import torch
from torch import nn

from compute.api import compute_lca
from compute.lca.integrator import LCAIntegrator, layer_sums
from compute.lca.objective import FullDatasetObjective
from compute.lca.params import flat_params, load_flat_params, param_table


def _mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _data(n=96, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y


def _sgd_path(model, x, y, steps=5, lr=0.5, batch=16):
    """θ_0..θ_T of plain minibatch SGD, for the engine to allocate."""
    model = _copy(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    path = [flat_params(model)]
    for t in range(steps):
        s = (t * batch) % len(x)
        loss = nn.functional.cross_entropy(model(x[s:s + batch]), y[s:s + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        path.append(flat_params(model))
    return path


def _copy(model):
    import copy

    return copy.deepcopy(model)


def _full_loss(model, x, y, theta):
    m = _copy(model)
    load_flat_params(m, theta)
    with torch.no_grad():
        return nn.functional.cross_entropy(m(x), y, reduction="sum").item() / len(x)


def test_objective_matches_plain_autograd():
    model, (x, y) = _mlp(), _data()
    obj = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=10, per_class=True)
    theta = flat_params(model)
    ev = obj.evaluate(theta)
    m = _copy(model)
    loss = nn.functional.cross_entropy(m(x), y)
    loss.backward()
    ref = torch.cat([p.grad.reshape(-1) for p in m.parameters()])
    assert abs(float(ev.loss) - loss.item()) < 1e-14
    torch.testing.assert_close(ev.grad, ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(ev.class_grad.sum(0), ref, rtol=0, atol=1e-14)
    assert int(ev.correct) == int((m(x).argmax(1) == y).sum())


def test_adaptive_conserves_to_1e8_per_iteration():
    model, (x, y) = _mlp(), _data()
    res = compute_lca(model, x, y, _sgd_path(model, x, y), method="adaptive", tol=1e-8,
                      chunk_size=32, max_halvings=12)
    assert res.residual.abs().max() <= 1e-8
    # the loss it allocates is the plain full-dataset loss at every θ_t
    path = _sgd_path(model, x, y)
    for t in (0, len(path) - 1):
        assert abs(res.loss[t].item() - _full_loss(model, x, y, path[t])) < 1e-13


def test_rk4_exact_on_quadratic_loss():
    # linear model + squared error: L is quadratic in θ, so Simpson's rule is exact
    torch.manual_seed(0)
    model = nn.Linear(5, 2).double()
    x = torch.randn(40, 5, dtype=torch.float64)
    target = torch.randn(40, 2, dtype=torch.float64)
    path = [flat_params(model) + 0.3 * torch.randn(12, dtype=torch.float64) * k for k in range(4)]
    res = compute_lca(model, x, target, path, method="rk4",
                      loss_fn=lambda out, t: ((out - t) ** 2).sum(1))
    assert res.residual.abs().max() < 1e-13
    assert res.loss.diff().abs().min() > 1e-3  # the steps really change the loss


def test_rk4_residual_far_below_first_order():
    model, (x, y) = _mlp(), _data()
    path = _sgd_path(model, x, y, steps=6, lr=1.0)
    fo = compute_lca(model, x, y, path, method="first_order")
    rk = compute_lca(model, x, y, path, method="rk4")
    torch.testing.assert_close(fo.loss, rk.loss, rtol=0, atol=0)
    assert rk.residual.abs().sum() * 100 <= fo.residual.abs().sum()
    assert fo.residual.abs().sum() > 1e-4  # first order is visibly off on these steps


def test_group_sums_equal_the_whole():
    model, (x, y) = _mlp(), _data()
    res = compute_lca(model, x, y, _sgd_path(model, x, y), per_class=True, chunk_size=7)
    table = param_table(model)
    for k in range(table.n_layers):
        cols = torch.as_tensor(table.param_layer_index() == k)
        torch.testing.assert_close(res.lca[:, cols].sum(1), res.lca_layer[:, k], rtol=0,
                                   atol=1e-14)
    torch.testing.assert_close(res.class_lca_layer.sum(1), res.lca_layer, rtol=0, atol=1e-14)
    torch.testing.assert_close(res.lca_layer.sum(1), res.lca.sum(1), rtol=0, atol=1e-14)


def test_class_and_mixed_chunking_agree_without_batchnorm():
    model, (x, y) = _mlp(), _data()
    path = _sgd_path(model, x, y, steps=3)
    a = compute_lca(model, x, y, path, per_class=True, chunking="class", chunk_size=9)
    b = compute_lca(model, x, y, path, per_class=True, chunking="mixed", chunk_size=9)
    torch.testing.assert_close(a.lca, b.lca, rtol=0, atol=1e-14)
    torch.testing.assert_close(a.class_lca_layer, b.class_lca_layer, rtol=0, atol=1e-14)


def test_batchnorm_loss_is_deterministic_and_buffers_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = _data()
    before = model[1].running_mean.clone()
    obj = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=32, per_class=True)
    assert obj.chunking == "mixed"
    theta = flat_params(model)
    e1, e2 = obj.evaluate(theta), obj.evaluate(theta)
    assert float(e1.loss) == float(e2.loss)
    torch.testing.assert_close(e1.class_grad.sum(0), e1.grad, rtol=0, atol=1e-14)
    assert torch.equal(obj.model[1].running_mean, before)
    assert torch.equal(model[1].running_mean, before)
    res = compute_lca(model, x, y, _sgd_path(model, x, y), method="adaptive", tol=1e-9,
                      chunk_size=32, max_halvings=12)
    assert res.residual.abs().max() <= 1e-9


def test_layer_sums_and_bad_arguments():
    v = torch.arange(6, dtype=torch.float64)
    idx = torch.tensor([0, 0, 1, 1, 1, 2])
    assert layer_sums(v, idx, 3).tolist() == [1.0, 9.0, 5.0]
    model, (x, y) = _mlp(), _data()
    obj = FullDatasetObjective(model, x, y, n_classes=3)
    with pytest.raises(ValueError, match="unknown LCA method"):
        LCAIntegrator(obj, "rk5")
    with pytest.raises(ValueError, match="tolerance"):
        LCAIntegrator(obj, "adaptive", tol=0)
    with pytest.raises(ValueError, match="chunk_size"):
        FullDatasetObjective(model, x, y, n_classes=3, chunk_size=0)
