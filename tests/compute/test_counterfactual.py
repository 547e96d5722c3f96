"""The causal test of helping (issue 15.3): partial steps of only helping / hurting / zero-LCA
coordinates, checked against plain float64 loss evaluations."""

import torch
from torch import nn
from torch.nn import functional as F

from compute.counterfactual import PARTS, counterfactual_step, helping_mask
from compute.lca import compute_lca
from compute.objective import FullDatasetObjective
from compute.params import flat_params, load_flat_params


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
