"""Ghost BatchNorm: K normalisation groups in one pass equal group-by-group, in float64."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from compute.lca.ghost_bn import GhostBatchError
from compute.lca.objective import FullDatasetObjective

TOL = 1e-12


class Net1d(nn.Module):
    """BatchNorm1d on (N, C) features and on (N, C, L) sequences."""

    def __init__(self, affine: bool):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8, affine=affine)
        self.conv = nn.Conv1d(2, 4, 3)
        self.bn_seq = nn.BatchNorm1d(4, affine=affine)
        self.out = nn.Linear(8 + 4, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.fc(x)))
        s = torch.relu(self.bn_seq(self.conv(x.view(-1, 2, 3)))).mean(2)
        return self.out(torch.cat([h, s], 1))


class Net2d(nn.Module):
    def __init__(self, affine: bool):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, affine=affine)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _data(net: str, n: int):
    g = torch.Generator().manual_seed(0)
    shape = (n, 6) if net == "1d" else (n, 1, 4, 4)
    return (torch.randn(shape, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g))


def _model(net: str, affine: bool) -> nn.Module:
    torch.manual_seed(1)
    m = (Net1d if net == "1d" else Net2d)(affine).double()
    with torch.no_grad():  # non-trivial affine parameters
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def _group_by_group(model, x, y, group: int, n_classes: int = 3):
    """Plain autograd: each group of ``group`` consecutive examples normalised on its own."""
    ref = copy.deepcopy(model).train()
    for mod in ref.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.momentum = 0.0
    params = list(ref.parameters())
    losses = torch.cat([F.cross_entropy(ref(x[s:s + group]), y[s:s + group], reduction="none")
                        for s in range(0, len(y), group)]) / len(y)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses.sum(), params,
                                                                 retain_graph=True)])
    class_grads = []
    for c in range(n_classes):
        gs = torch.autograd.grad(losses[y == c].sum(), params, retain_graph=True)
        class_grads.append(torch.cat([g.reshape(-1) for g in gs]))
    return losses.sum().detach(), grad, torch.stack(class_grads)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("net", ["1d", "2d"])
@pytest.mark.parametrize("affine", [True, False])
def test_k_groups_together_equal_group_by_group(net, affine):
    # 230 examples in groups of 50: chunks of 3 groups (150), then 1 whole group and the
    # partial last group of 30, each normalised on its own
    x, y = _data(net, 230)
    model = _model(net, affine)
    loss, grad, class_grad = _group_by_group(model, x, y, 50)
    ghost = FullDatasetObjective(model, x, y, n_classes=3, bn_group=50, chunk_size=150,
                                 per_class=True)
    assert ghost.all_chunks == [(0, 150, -1), (150, 200, -1), (200, 230, -1)]
    ev = ghost.evaluate()
    assert abs(float(ev.loss) - float(loss)) <= TOL * abs(float(loss))
    assert _rel(ev.grad, grad) <= TOL
    assert _rel(ev.class_grad, class_grad) <= TOL  # per-class in mixed chunks, still exact
    plain = FullDatasetObjective(model, x, y, n_classes=3, bn_group=50, chunk_size=50).evaluate()
    assert _rel(ev.grad, plain.grad) <= TOL
    # the whole set in one chunk would normalise differently: the groups are really separate
    whole = FullDatasetObjective(model, x, y, n_classes=3, bn_group=230).evaluate()
    assert abs(float(whole.loss) - float(loss)) > 1e-6 * abs(float(loss))


def test_probe_ghosting_leaves_the_users_model_alone():
    x, y = _data("2d", 120)
    model = _model("2d", True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    obj = FullDatasetObjective(model, x, y, n_classes=3, bn_group=40, chunk_size=120)
    obj.evaluate()
    assert "forward" not in vars(model.bn)  # only the probe copy's layer is replaced
    assert "forward" in vars(obj.model.bn)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_auto_chunk_holds_whole_groups_and_keeps_the_loss():
    x, y = _data("2d", 230)
    model = _model("2d", True)
    loss, grad, _ = _group_by_group(model, x, y, 50)
    obj = FullDatasetObjective(model, x, y, n_classes=3, bn_group=50)  # chunk_size auto
    ev = obj.evaluate()
    assert obj.chunk_size % 50 == 0 and obj.chunk_info["bn_group"] == 50
    assert all(e - s == 30 or (e - s) % 50 == 0 for s, e, _ in obj.all_chunks)
    assert _rel(ev.grad, grad) <= TOL
    tiny = FullDatasetObjective(model, x, y, n_classes=3, bn_group=50, memory_budget=1)
    tiny.evaluate()
    assert tiny.chunk_size == 50 and tiny.chunk_info["over_budget"]  # one group at least


def test_chunk_size_alone_keeps_meaning_the_group_with_a_warning():
    x, y = _data("1d", 100)
    model = _model("1d", True)
    with pytest.warns(FutureWarning, match="bn_group=25"):
        old = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=25)
    assert old.bn_group == 25 and old.chunk_request == "auto"
    _, grad, _ = _group_by_group(model, x, y, 25)
    assert _rel(old.evaluate().grad, grad) <= TOL
    with pytest.raises(ValueError, match="whole number of BatchNorm groups"):
        FullDatasetObjective(model, x, y, n_classes=3, chunk_size=30, bn_group=25)


class FoldedBatch(nn.Module):
    """BatchNorm over (N·T, C) rows: groups of examples cannot be told apart."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        n = x.shape[0]
        return self.fc(self.bn(x.reshape(n * 2, 3))).reshape(n, 2, 3).mean(1)


def test_a_batchnorm_on_folded_rows_is_refused_when_groups_share_a_pass():
    x = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    model = FoldedBatch().double()
    FullDatasetObjective(model, x, y, n_classes=3, bn_group=20, chunk_size=20).evaluate()
    with pytest.raises(GhostBatchError, match="80 rows for a chunk of 40"):
        FullDatasetObjective(model, x, y, n_classes=3, bn_group=20, chunk_size=40).evaluate()
