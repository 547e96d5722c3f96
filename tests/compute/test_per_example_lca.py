"""Per-example LCA of one step (compute/lca/per_example_lca.py), float64.

* Σ_n E[n, l] equals compute_lca's lca_layer of the same step: |diff| <= 1e-12 · max|lca_layer|
  per step (the two differ only in the order of float sums).
* Σ_l E[n, l] = (ℓ_n(θ_1) − ℓ_n(θ_0)) / N: exactly (1e-12 relative) where the quadrature is
  exact (trapezoid and rk4 on a loss quadratic in θ, rk4 on a quartic one), and otherwise the
  per-example residuals sum to compute_lca's residual (1e-12 relative to |ΔL|).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compute.api import compute_lca
from compute.lca.per_example_lca import per_example_step_lca
from tests.compute.test_per_example import _case

RTOL = 1e-12


def _step(model, scale=0.3, seed=2):
    g = torch.Generator().manual_seed(seed)
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return theta0, theta0 + scale * torch.randn(theta0.shape, generator=g, dtype=theta0.dtype)


@pytest.mark.parametrize("method", ["first_order", "trapezoid", "rk4"])
@pytest.mark.parametrize("name", ["mlp", "cnn_batchnorm", "mha_batch_first", "transformer"])
def test_sum_over_examples_is_the_layer_lca(name, method):
    model, x, y, _, _ = _case(name)
    theta0, theta1 = _step(model)
    res = per_example_step_lca(model, x, y, theta0, theta1, method=method, chunk_size=4)
    ref = compute_lca(model, x, y, [theta0, theta1], method=method, chunk_size=4)
    assert res.layer_names == ref.layer_names
    layer = ref.lca_layer[0]
    assert float((res.lca.sum(0) - layer).abs().max()) <= RTOL * float(layer.abs().max())
    # the per-example residuals add up to the step's residual
    dL = float(ref.loss[1] - ref.loss[0])
    assert abs(float(res.residual.sum()) - float(ref.residual[0])) <= RTOL * abs(dL)
    assert torch.allclose(res.loss_before.mean(), ref.loss[0], rtol=1e-13, atol=0)
    assert torch.allclose(res.loss_after.mean(), ref.loss[1], rtol=1e-13, atol=0)


def _squared_error(out, y):
    return ((out - y) ** 2).sum(1)


@pytest.mark.parametrize(("depth", "method"), [(1, "trapezoid"), (1, "rk4"), (2, "rk4")])
def test_per_example_conservation_where_the_rule_is_exact(depth, method):
    """ℓ_n of a linear model with squared error is quadratic in θ (its gradient linear along
    the step: trapezoid and Simpson are exact); of a two-layer linear net quartic (gradient
    cubic: Simpson is exact)."""
    torch.manual_seed(3)
    layers = [nn.Linear(4, 5)] + ([nn.Linear(5, 5)] if depth == 2 else [])
    model = nn.Sequential(*layers).double()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 5, dtype=torch.float64)
    theta0, theta1 = _step(model, scale=0.5)
    res = per_example_step_lca(model, x, y, theta0, theta1, method=method, chunk_size=3,
                               loss_fn=_squared_error)
    change = (res.loss_after - res.loss_before) / len(y)
    assert float(change.abs().min()) > 1e-3  # every example's loss moves
    assert float((res.lca.sum(1) - change).abs().max()) <= RTOL * float(change.abs().max())


def test_first_order_is_not_exact_on_the_same_step():
    """The identity above is a property of the quadrature: first order misses it."""
    torch.manual_seed(3)
    model = nn.Linear(4, 5).double()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 5, dtype=torch.float64)
    theta0, theta1 = _step(model, scale=0.5)
    res = per_example_step_lca(model, x, y, theta0, theta1, method="first_order",
                               loss_fn=_squared_error)
    assert float(res.residual.abs().max()) > 1e-3 * float(res.lca.abs().max())


def test_unknown_method_is_refused():
    model = nn.Linear(3, 2).double()
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1])
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    with pytest.raises(ValueError, match="rk4"):
        per_example_step_lca(model, x, y, theta, theta, method="adaptive")
