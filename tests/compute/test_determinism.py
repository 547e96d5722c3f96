"""The allocated loss is a deterministic function of θ, or the model is refused (float64)."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from compute.api import compute_lca
from compute.lca.objective import (
    ChunkingError,
    FullDatasetObjective,
    NondeterministicLossError,
)
from compute.lca.params import flat_params

# (dropout module, the shape its input is viewed as; 8 hidden units per example)
DROPOUTS = [
    (nn.Dropout(0.5), (8,)),
    (nn.Dropout1d(0.5), (4, 2)),
    (nn.Dropout2d(0.5), (2, 2, 2)),
    (nn.Dropout3d(0.5), (1, 2, 2, 2)),
    (nn.AlphaDropout(0.5), (8,)),
    (nn.FeatureAlphaDropout(0.5), (2, 2, 2)),
]


class _Net(nn.Module):
    """Linear → tanh → ``mid`` (on the hidden units viewed as ``shape``) → Linear."""

    def __init__(self, mid: nn.Module, shape: tuple[int, ...], seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1, self.mid, self.fc2 = nn.Linear(6, 8), mid, nn.Linear(8, 3)
        self.shape = shape
        self.double()

    def forward(self, x):
        h = torch.tanh(self.fc1(x))
        h = self.mid(h.view(len(x), *self.shape)).reshape(len(x), 8)
        return self.fc2(h)


class _FunctionalDropout(nn.Module):
    """Dropout that ignores train/eval: the classic bug ``F.dropout(x, training=True)``."""

    def forward(self, x):
        return F.dropout(x, p=0.5, training=True)


class _Noise(nn.Module):
    """Additive noise drawn in forward (a stand-in for random augmentation)."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x + self.scale * torch.randn_like(x)


def _data(n=96, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,),
                                                                             generator=g)


def _evaluate(model, x, y, **kw):
    obj = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=10, **kw)
    return obj, obj.evaluate(flat_params(model))


@pytest.mark.parametrize("drop,shape", DROPOUTS, ids=lambda v: type(v).__name__)
def test_every_dropout_variant_is_off_and_the_loss_equals_the_net_without_it(drop, shape):
    x, y = _data()
    net, plain = _Net(drop, shape), _Net(nn.Identity(), shape)
    torch.testing.assert_close(flat_params(net), flat_params(plain), rtol=0, atol=0)
    net.train()
    torch.manual_seed(3)
    # the training model really is random: the test would notice dropout left on
    assert not torch.equal(net(x), net(x))
    obj, e1 = _evaluate(net, x, y, per_class=True)
    e2 = obj.evaluate(flat_params(net))
    _, ref = _evaluate(plain, x, y, per_class=True)
    for e in (e1, e2):  # bit-identical: an eval-mode dropout returns its input unchanged
        assert torch.equal(e.loss, ref.loss)
        assert torch.equal(e.grad, ref.grad)
        assert torch.equal(e.class_grad, ref.class_grad)
    assert not obj.model.mid.training and obj.model.training is False
    assert net.training and net.mid.training  # the caller's model is left as it was


def test_rrelu_uses_its_deterministic_eval_slope():
    x, y = _data()
    rrelu = nn.RReLU(0.1, 0.3)
    _, e = _evaluate(_Net(rrelu, (8,)), x, y)
    _, ref = _evaluate(_Net(nn.LeakyReLU(0.2), (8,)), x, y)
    torch.testing.assert_close(e.loss, ref.loss, rtol=0, atol=1e-15)
    torch.testing.assert_close(e.grad, ref.grad, rtol=0, atol=1e-15)


def test_batchnorm_stays_in_training_mode_with_momentum_zero_beside_eval_dropout():
    x, y = _data()
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    net = net.double().eval()  # even a caller's eval-mode BatchNorm uses chunk statistics
    obj = FullDatasetObjective(net, x, y, n_classes=3, chunk_size=32)
    assert obj.model[1].training and obj.model[1].momentum == 0.0
    assert not obj.model[2].training
    ev = obj.evaluate(flat_params(net))
    # by hand: each chunk of 32 normalised with its own batch statistics, dropout off
    ref = copy.deepcopy(net)
    ref[1].train()
    loss = sum(F.cross_entropy(ref[3](ref[1](ref[0](x[s:s + 32]))), y[s:s + 32],
                               reduction="sum") for s in range(0, 96, 32)) / 96
    torch.testing.assert_close(ev.loss, loss.detach(), rtol=0, atol=1e-14)


@pytest.mark.parametrize("mid", [_FunctionalDropout(), _Noise(0.1), _Noise(1e-8)],
                         ids=["functional_dropout", "noise", "tiny_noise"])
def test_a_random_forward_is_refused(mid):
    x, y = _data()
    net = _Net(mid, (8,))
    with pytest.raises(NondeterministicLossError, match=r"F\.dropout.*random augmentation"):
        _evaluate(net, x, y)
    with pytest.raises(ValueError, match="not a deterministic function"):
        compute_lca(net, x, y, [flat_params(net)] * 2)


def test_rounding_level_nondeterminism_is_tolerated():
    # noise of 1e-14 on the logits moves the float64 loss by ~1e-15 relative, far below the
    # 1e-12 bound; 1e-8 noise (refused above) moves it by ~1e-9
    x, y = _data()
    _, e = _evaluate(_Net(_Noise(1e-14), (8,)), x, y)
    _, ref = _evaluate(_Net(nn.Identity(), (8,)), x, y)
    torch.testing.assert_close(e.loss, ref.loss, rtol=1e-12, atol=0)


def test_class_chunking_with_batchnorm_is_refused():
    x, y = _data()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()
    with pytest.raises(ChunkingError, match="BatchNorm.*single-class statistics"):
        FullDatasetObjective(net, x, y, n_classes=3, per_class=True, chunking="class")
    with pytest.raises(ValueError, match="chunking='class' is refused"):
        compute_lca(net, x, y, [flat_params(net)] * 2, per_class=True, chunking="class")
    # the default for BatchNorm models is mixed chunks, and that is accepted
    assert FullDatasetObjective(net, x, y, n_classes=3, per_class=True).chunking == "mixed"
