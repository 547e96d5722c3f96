"""Per-example directional derivatives (compute/lca/per_example.py): every rule and the jvp
fallback against explicit per-example autograd gradients, in float64.

Tolerance: max |D − D_ref| <= 1e-12 · max |D_ref| (measured 1e-16 … 2e-15)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from compute.lca.objective import FullDatasetObjective
from compute.lca.per_example import PerExampleDirectional
from compute.lca.per_example_lca import per_example_directional
from compute.nets.models import build_model
from tests.compute.per_example_models import (
    CNN,
    MLP,
    ConvNoBN,
    TokenAttention,
    reference_directional,
)

RTOL = 1e-12


def _transformer():
    return build_model("transformer", (3,), 5, seed=0, layernorm=True, n_layers=2, d_model=8,
                       n_heads=2, d_mlp=16).double()


CASES = {  # model, inputs, labels, handlers expected (module -> kind) in hooks mode
    "mlp": (MLP, lambda: torch.randn(9, 6), 3,
            {"fc1": "rule", "fc2": "rule", "scale": "jvp", "": "jvp"}),
    "conv": (ConvNoBN, lambda: torch.randn(9, 2, 6, 6), 3,
             {"conv1": "rule", "conv2": "rule", "gn": "rule", "conv3": "rule", "fc": "rule"}),
    "conv3d": (lambda: nn.Sequential(nn.Conv3d(1, 2, 2, stride=(1, 2, 1), padding=1),
                                     nn.Tanh(), nn.Flatten(), nn.Linear(96, 3)),
               lambda: torch.randn(9, 1, 3, 4, 3), 3, {"0": "rule", "3": "rule"}),
    "instancenorm": (lambda: nn.Sequential(nn.Conv2d(2, 3, 3),
                                           nn.InstanceNorm2d(3, affine=True), nn.Tanh(),
                                           nn.Flatten(), nn.Linear(48, 3)),
                     lambda: torch.randn(9, 2, 6, 6), 3, {"0": "rule", "1": "jvp"}),
    "cnn_batchnorm": (CNN, lambda: torch.randn(9, 2, 6, 6), 3, {}),
    "mha_batch_first": (TokenAttention, lambda: torch.randint(0, 7, (9, 4)), 7,
                        {"embed": "rule", "ln": "rule", "attn": "jvp", "head": "rule"}),
    "mha_seq_first": (lambda: TokenAttention(batch_first=False),
                      lambda: torch.randint(0, 7, (9, 4)), 7,
                      {"embed": "rule", "ln": "rule", "attn": "jvp", "head": "rule"}),
    "transformer_plain": (lambda: build_model("transformer", (3,), 5, seed=1, d_model=8,
                                              n_heads=2, d_mlp=16).double(),
                          lambda: torch.randint(0, 6, (9, 3)).double(), 5,
                          {"blocks.0.attn": "rule", "": "rule", "blocks.0.mlp.fc_in": "rule"}),
    "mha_untied": (lambda: TokenAttention(batch_first=False, tie=False),
                   lambda: torch.randint(0, 7, (9, 4)), 7, {"head": "rule", "attn": "jvp"}),
    "transformer": (_transformer, lambda: torch.randint(0, 6, (9, 3)).double(), 5,
                    {"blocks.0.attn": "rule", "blocks.1.attn": "rule", "blocks.0.ln1": "rule",
                     "blocks.1.mlp.fc_in": "rule", "ln_final": "rule", "": "rule"}),
}


def _case(name):
    torch.manual_seed(0)
    build, inputs, classes, handlers = CASES[name]
    with torch.random.fork_rng():
        torch.set_default_dtype(torch.float64)
        try:
            model = build()
            x = inputs()
        finally:
            torch.set_default_dtype(torch.float32)
    model = model.double()
    x = x.double() if x.is_floating_point() else x
    y = torch.randint(0, classes, (len(x),))
    v = [torch.randn_like(p) for p in model.parameters()]
    return model, x, y, v, handlers


def _engine(model, x, y, mode, check=True):
    obj = FullDatasetObjective(model, x, y, n_classes=int(y.max()) + 1, chunk_size=4)
    return PerExampleDirectional(obj, mode, check=check)


@pytest.mark.parametrize("check", [True, False])
@pytest.mark.parametrize("name", list(CASES))
def test_rules_and_fallback_match_per_example_autograd(name, check):
    """check=False: the backward stops at the hooked outputs (no weight gradients)."""
    model, x, y, v, handlers = _case(name)
    ref = reference_directional(model, x, y, v, chunk_size=4)
    engine = _engine(model, x, y, "auto", check)
    theta = torch.cat([p.detach().reshape(-1) for p in engine.params])
    _, D = engine.evaluate(theta, torch.cat([t.reshape(-1) for t in v]))
    assert D.shape == ref.shape == (len(x), engine.n_layers)
    assert float((D - ref).abs().max()) <= RTOL * float(ref.abs().max())
    assert ref.abs().min(0).values.gt(0).all()  # every layer has a nonzero term to check
    if name == "cnn_batchnorm":
        assert engine.mode == "forward"
    else:
        assert engine.mode == "hooks" and engine.repaired == []
        assert {k: engine.handlers[k] for k in handlers} == handlers


@pytest.mark.parametrize("name", ["mlp", "conv", "mha_untied", "transformer"])
def test_forward_mode_matches_per_example_autograd(name):
    model, x, y, v, _ = _case(name)
    ref = reference_directional(model, x, y, v, chunk_size=4)
    D = per_example_directional(model, x, y, v, chunk_size=4, mode="forward")
    assert float((D - ref).abs().max()) <= RTOL * float(ref.abs().max())


def test_forward_mode_refuses_a_tied_padding_embedding():
    model, x, y, v, _ = _case("mha_batch_first")
    with pytest.raises(ValueError, match="tied Embedding"):
        per_example_directional(model, x, y, v, chunk_size=4, mode="forward")


def test_batchnorm_terms_depend_on_the_chunk():
    """ℓ_n of a BatchNorm net is the term of its chunk-normalised loss: another partition
    changes D (and the reference agrees with each)."""
    model, x, y, v, _ = _case("cnn_batchnorm")
    d4 = per_example_directional(model, x, y, v, chunk_size=4)
    d3 = per_example_directional(model, x, y, v, chunk_size=3)
    ref3 = reference_directional(model, x, y, v, chunk_size=3)
    assert float((d3 - ref3).abs().max()) <= RTOL * float(ref3.abs().max())
    assert float((d4 - d3).abs().max()) > 1e-3 * float(d3.abs().max())
    with pytest.raises(ValueError, match="BatchNorm"):
        _engine(model, x, y, "hooks")


class ReadsChildWeight(nn.Module):
    """fc's weight is used by fc's forward and again, read directly, by the parent."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(self.fc(x))
        return self.out(F.linear(h, self.fc.weight))


def test_a_use_no_hook_sees_is_caught_and_recomputed():
    torch.manual_seed(1)
    model = ReadsChildWeight().double()
    x, y = torch.randn(7, 4, dtype=torch.float64), torch.randint(0, 3, (7,))
    v = [torch.randn_like(p) for p in model.parameters()]
    ref = reference_directional(model, x, y, v, chunk_size=4)
    engine = _engine(model, x, y, "hooks")
    theta = torch.cat([p.detach().reshape(-1) for p in engine.params])
    _, D = engine.evaluate(theta, torch.cat([t.reshape(-1) for t in v]))
    assert engine.repaired == ["fc"]
    assert float((D - ref).abs().max()) <= RTOL * float(ref.abs().max())


def test_an_output_changed_in_place_still_gets_its_gradient():
    """ReLU(inplace=True) overwrites fc1's output: the hooks keep the gradient of the value
    fc1 returned, and without check the backward still runs to the parameters."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(inplace=True), nn.Linear(6, 3)).double()
    x, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 3, (8,))
    v = [torch.randn_like(p) for p in model.parameters()]
    ref = reference_directional(model, x, y, v, chunk_size=4)
    for check in (True, False):
        engine = _engine(model, x, y, "hooks", check)
        theta = torch.cat([p.detach().reshape(-1) for p in engine.params])
        _, D = engine.evaluate(theta, torch.cat([t.reshape(-1) for t in v]))
        assert float((D - ref).abs().max()) <= RTOL * float(ref.abs().max())


def test_bad_direction_is_refused():
    model = nn.Linear(3, 2).double()
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="one tensor per parameter"):
        per_example_directional(model, x, y, [torch.zeros(2, 3)])
    with pytest.raises(ValueError, match="shape"):
        per_example_directional(model, x, y, [torch.zeros(3, 2), torch.zeros(2)])
    with pytest.raises(ValueError, match="mode"):
        per_example_directional(model, x, y, [torch.zeros(2, 3), torch.zeros(2)], mode="x")


def test_a_subset_of_parameters_has_its_own_layers():
    """param_names: θ is those parameters (the others fixed), the layers param_table's."""
    model, x, y, v, _ = _case("mlp")
    names = ["fc2.weight", "fc2.bias", "scale.gain"]
    named = list(zip([n for n, _ in model.named_parameters()], v, strict=True))
    full = reference_directional(
        model, x, y, [t if n in names else torch.zeros_like(t) for n, t in named], chunk_size=4)
    chosen = [t for n, t in named if n in names]
    D = per_example_directional(model, x, y, torch.cat([t.reshape(-1) for t in chosen]),
                                chunk_size=4, param_names=names)
    assert D.shape == (len(x), 2)  # fc2 and scale
    expect = full[:, [1, 2]]  # the reference's layers: fc1, fc2, scale, proj
    assert float((D - expect).abs().max()) <= RTOL * float(expect.abs().max())


class KeywordCalls(nn.Module):
    """Modules called by keyword only (fc(input=x), attn(query=..., key=..., value=...))."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.attn = nn.MultiheadAttention(4, 2)  # (L, N, E)
        self.out = nn.Linear(4, 3)

    def forward(self, x):  # x (N, L, 4)
        h = torch.tanh(self.fc(input=x)).transpose(0, 1)
        a, _ = self.attn(query=h, key=h, value=h, need_weights=False)
        return self.out(a.transpose(0, 1).mean(1))


class FeaturesFirst(nn.Module):
    """A custom module whose output puts the examples last: the rules cannot pair it."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4))

    def forward(self, x):
        return self.w @ x.T  # (3, N)


def test_keyword_calls_and_a_misplaced_example_axis():
    torch.manual_seed(5)
    model = KeywordCalls().double()
    x, y = torch.randn(6, 5, 4, dtype=torch.float64), torch.randint(0, 3, (6,))
    v = [torch.randn_like(p) for p in model.parameters()]
    ref = reference_directional(model, x, y, v, chunk_size=4)
    D = per_example_directional(model, x, y, v, chunk_size=4)
    assert float((D - ref).abs().max()) <= RTOL * float(ref.abs().max())

    model = nn.Sequential(nn.Linear(4, 4), FeaturesFirst()).double()
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 3, (5,))
    v = [torch.randn_like(p) for p in model.parameters()]

    def loss_fn(out, y):  # out (3, N)
        return torch.nn.functional.cross_entropy(out.T, y, reduction="none")

    with pytest.raises(ValueError, match="example axis"):
        per_example_directional(model, x, y, v, loss_fn=loss_fn)
    ref = reference_directional(model, x, y, v, chunk_size=5, loss_fn=loss_fn)
    D = per_example_directional(model, x, y, v, loss_fn=loss_fn, mode="forward")
    assert float((D - ref).abs().max()) <= RTOL * float(ref.abs().max())


@pytest.mark.parametrize("name", ["mlp", "mha_seq_first", "transformer", "cnn_batchnorm"])
def test_replay_gives_another_direction_at_the_kept_theta(name):
    """evaluate(θ, v, keep=True), another evaluation elsewhere, then replay(w) = D at θ along
    w (from the kept δ's in hooks mode; by a new evaluation in forward mode)."""
    model, x, y, v, _ = _case(name)
    w = [torch.randn_like(t) for t in v]
    engine = _engine(model, x, y, "auto")
    theta = torch.cat([p.detach().reshape(-1) for p in engine.params])
    flat_v, flat_w = (torch.cat([t.reshape(-1) for t in d]) for d in (v, w))
    with pytest.raises(RuntimeError, match="keep=True"):
        engine.replay(flat_w)
    _, d_v = engine.evaluate(theta, flat_v, keep=True)
    engine.evaluate(theta + 0.1 * flat_v, flat_v)  # the midpoint of a step, say
    D = engine.replay(flat_w)
    ref = reference_directional(model, x, y, w, chunk_size=4)
    assert float((D - ref).abs().max()) <= RTOL * float(ref.abs().max())
    assert float((d_v - ref).abs().max()) > 1e-3 * float(ref.abs().max())  # w is not v
