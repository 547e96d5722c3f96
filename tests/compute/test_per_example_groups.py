"""Per-group (per-head) per-example values (compute/lca/per_example_groups.py), float64, against
explicit per-example autograd with the direction masked to each group.

Tolerances: D and E against the reference to 1e-10 of the largest reference value (measured
~1e-15: the order of float sums differs); Σ_s over a layer's groups against the layer's column,
and Σ_n E_group against the step's per-group LCA, to 1e-10 likewise.
"""

from __future__ import annotations

import pytest
import torch

from compute.lca.integrator import LCAIntegrator, layer_sums
from compute.lca.objective import FullDatasetObjective
from compute.lca.params import param_table
from compute.lca.per_example import PerExampleDirectional
from compute.lca.per_example_groups import SplitGroups
from compute.nets.groups import build_groups, component_groups, group_index
from tests.compute.per_example_models import reference_directional
from tests.compute.test_per_example import _case
from tests.compute.test_per_example_integrator import BN, METHODS, _at, _close, _nodes, _path

RTOL = 1e-10
SPECS = {  # a user's groups: rows and columns of Linears, a jvp-fallback parameter, a conv
    "mlp": {"fc1.rows": [("fc1.weight", slice(0, 3)), ("fc1.bias", slice(0, 3))],
            "fc2.cols": [("fc2.weight", (slice(None), slice(2, 6)))],
            "scale.gain": [("scale.gain", slice(1, 4))],
            "proj.rows": [("proj.weight", slice(0, 2))]},
    "cnn_batchnorm": {"conv1.out01": [("conv1.weight", slice(0, 2)), ("conv1.bias", slice(0, 2))],
                      "fc.cols": [("fc.weight", (slice(None), slice(0, 1)))]},
}


def _groups(name, model):
    if name == "transformer":
        return component_groups(model)  # its heads
    if name.startswith("mha"):  # nn.MultiheadAttention's heads: in_proj rows, out_proj columns
        return build_groups(model, param_table(model), "heads")
    return build_groups(model, param_table(model), SPECS[name])


def _split(model, groups):
    """(G_s,) split-group indices, their layers and flat masks, from the groups alone."""
    table = param_table(model)
    idx = group_index(groups, table.n_params)
    flat_layer = table.param_layer_index()
    layer_of = [int(flat_layer[ranges[0][0]]) for _, ranges in groups]
    count = {li: layer_of.count(li) for li in set(layer_of)}
    split = [g for g, li in enumerate(layer_of) if count[li] > 1]
    masks = [torch.as_tensor(idx == g) for g in split]
    return split, [layer_of[g] for g in split], masks, torch.as_tensor(idx)


def _masked_reference(model, x, y, flat_dir, masks, chunk):
    """(N, G_s): for each group, Σ_l of the explicit per-example D along the masked direction."""
    cols = []
    for m in masks:
        d = torch.where(m, flat_dir, torch.zeros((), dtype=flat_dir.dtype))
        parts = torch.split(d, [p.numel() for p in model.parameters()])
        dirs = [t.view_as(p) for t, p in zip(parts, model.parameters(), strict=True)]
        cols.append(reference_directional(model, x, y, dirs, chunk_size=chunk).sum(1))
    return torch.stack(cols, 1)


@pytest.mark.parametrize("name", ["transformer", "mlp", "cnn_batchnorm", "mha_batch_first",
                                  "mha_seq_first"])
def test_directional_group_columns_match_masked_autograd(name):
    model, x, y, v, _ = _case(name)
    groups = _groups(name, model)
    split, layers, masks, _ = _split(model, groups)
    assert len(split) >= 2
    chunk = 3 if name == "cnn_batchnorm" else 4
    obj = FullDatasetObjective(model, x, y, n_classes=int(y.max()) + 1,
                               **(BN if name == "cnn_batchnorm" else {"chunk_size": 4}))
    engine = PerExampleDirectional(obj, "auto", groups=groups)
    assert list(engine.split.index) == split
    flat_v = torch.cat([t.reshape(-1) for t in v])
    theta = torch.cat([p.detach().reshape(-1) for p in engine.params])
    _, D = engine.evaluate(theta, flat_v, keep=True)
    L = engine.n_layers
    assert D.shape == (len(y), L + len(split))
    ref_layers = reference_directional(model, x, y, v, chunk_size=chunk)
    ref = _masked_reference(model, x, y, flat_v, masks, chunk)
    assert _close(D[:, :L], ref_layers) and _close(D[:, L:], ref)
    assert ref.abs().min(0).values.gt(0).all()  # every group has a nonzero term to check
    for li in set(layers):  # Σ_s over the layer's groups = the layer's column
        cols = [L + j for j, lj in enumerate(layers) if lj == li]
        assert _close(D[:, cols].sum(1), D[:, li])
    # replay along another direction (hooks: from the kept δ's) gets the groups too
    w = torch.randn(flat_v.shape, generator=torch.Generator().manual_seed(3), dtype=flat_v.dtype)
    again = engine.replay(w)
    assert _close(again[:, L:], _masked_reference(model, x, y, w, masks, chunk))
    assert engine.repaired == []
    engine.close()


def _integrator(name, method):
    model, x, y, _, _ = _case(name)
    chunks = dict(BN) if name == "cnn_batchnorm" else {"chunk_size": 4}
    obj = FullDatasetObjective(model, x, y, n_classes=5 if name == "transformer" else 3, **chunks)
    integ = LCAIntegrator(obj, method, tol=1e-9, max_halvings=2,
                          per_example=torch.arange(len(y)))
    groups = _groups(name, model)
    integ.examples.set_groups(groups)
    return model, x, y, integ, groups


def _reference_groups(model, x, y, theta0, theta1, nodes, masks, chunk):
    delta = theta1 - theta0
    return sum(w * _masked_reference(_at(model, theta0 + s * delta), x, y, delta, masks, chunk)
               for s, w in nodes) / len(y)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["transformer", "mlp", "cnn_batchnorm"])
def test_integrator_group_values_match_masked_autograd_at_its_nodes(name, method):
    model, x, y, integ, groups = _integrator(name, method)
    split, layers, masks, gidx = _split(model, groups)
    chunk = 3 if name == "cnn_batchnorm" else 4
    table = param_table(model)
    thetas = _path(model)
    integ.start(thetas[0])
    for t in range(1, len(thetas)):
        st = integ.step(thetas[t])
        assert st.example.shape == (len(y), table.n_layers)
        assert st.example_group.shape == (len(y), len(split))
        ref = _reference_groups(model, x, y, thetas[t - 1], thetas[t],
                                _nodes(method, st.splits), masks, chunk)
        assert _close(st.example_group, ref)
        for li in set(layers):
            cols = [j for j, lj in enumerate(layers) if lj == li]
            assert _close(st.example_group[:, cols].sum(1), st.example[:, li])
        lca_group = layer_sums(st.lca, gidx, len(groups))[split]
        assert _close(st.example_group.sum(0), lca_group)
    tap = integ.examples
    assert tap.repaired == [] and list(tap.example_groups) == split
    assert (tap.extra_passes == 0) == (name != "cnn_batchnorm")  # start nodes replayed


def test_without_groups_the_step_has_none_and_the_same_layer_values():
    thetas = _path(_case("transformer")[0])
    plain = _integrator("transformer", "rk4")[3]
    plain.examples.set_groups(None)
    grouped = _integrator("transformer", "rk4")[3]
    for integ in (plain, grouped):
        integ.start(thetas[0])
    for th in thetas[1:]:
        a, b = plain.step(th), grouped.step(th)
        assert a.example_group is None and b.example_group is not None
        assert torch.equal(a.example, b.example)


def test_a_group_rule_that_goes_wrong_is_repaired_not_passed(monkeypatch):
    """A broken group column (here: one group's share dropped) fails Σ_s = the layer's column;
    the tap recomputes that layer's groups by forward mode and lists it as repaired."""
    model, x, y, integ, groups = _integrator("mlp", "rk4")
    split, _, masks, _ = _split(model, groups)
    original = SplitGroups.add

    def drop_first(self, acc, layer_of, share, vs, delta):
        original(self, acc, layer_of, share, vs, delta)
        acc[:, self.n_layers] = 0.0  # the first split group's column lost

    monkeypatch.setattr(SplitGroups, "add", drop_first)
    thetas = _path(model, steps=1)
    integ.start(thetas[0])
    st = integ.step(thetas[1])
    assert integ.examples.repaired  # the layer of that group was recomputed
    ref = _reference_groups(model, x, y, thetas[0], thetas[1], _nodes("rk4", 1), masks, 4)
    assert _close(st.example_group, ref)


def test_group_sums_that_cannot_be_repaired_raise():
    model, x, y, v, _ = _case("mlp")
    obj = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=4)
    engine = PerExampleDirectional(obj, "forward", groups=_groups("mlp", model))
    D = torch.randn(len(y), engine.n_cols, dtype=torch.float64)
    from compute.lca.per_example_groups import check_group_sums
    with pytest.raises(RuntimeError, match="do not sum to their layer"):
        check_group_sums(engine, D, final=True)
    assert check_group_sums(engine, D, final=False)  # the failing layers, to repair


def test_groups_that_do_not_fit_are_refused():
    model, x, y, _, _ = _case("mlp")
    obj = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=4)
    engine = PerExampleDirectional(obj, "hooks")
    P = sum(p.numel() for p in engine.params)
    with pytest.raises(ValueError, match="outside"):
        engine.set_groups([("a", [(0, P + 1)])])
    with pytest.raises(ValueError, match="overlaps"):
        engine.set_groups([("a", [(0, 4)]), ("b", [(2, 6)])])
    with pytest.raises(ValueError, match="do not cover"):
        engine.set_groups([("a", [(0, 4)]), ("b", [(4, 6)])])
    engine.set_groups([("all", [(0, P)])])  # one group per layer or coarser: no columns
    assert engine.split is None and engine.n_cols == engine.n_layers


def test_the_per_head_form_equals_the_masked_rule_calls():
    """HeadProjection heads take one product per projection (``share.per_head``); without
    it (every group by a masked rule call) the values are the same."""
    model, x, y, v, _ = _case("transformer")
    flat_v = torch.cat([t.reshape(-1) for t in v])
    out = []
    for per_head in (True, False):
        obj = FullDatasetObjective(model, x, y, n_classes=5, chunk_size=4)
        engine = PerExampleDirectional(obj, "hooks", groups=component_groups(model))
        assert len(engine.split.heads) == 8  # q, k, v, o of two blocks
        if not per_head:
            engine.split.heads = {}
        theta = torch.cat([p.detach().reshape(-1) for p in engine.params])
        out.append(engine.evaluate(theta, flat_v)[1])
        engine.close()
    assert _close(out[0], out[1], 1e-12)


@pytest.mark.parametrize("chunking", [None, "mixed"])
def test_per_class_runs_give_the_same_group_values(chunking):
    """Class-pure chunks (the objective sorts the examples) and mixed chunks (one masked
    backward per class: the shares of each class's δ add up)."""
    model, x, y, _, _ = _case("mlp")
    obj = FullDatasetObjective(model, x, y, n_classes=3, per_class=True, chunk_size=4,
                               **({"chunking": chunking} if chunking else {}))
    integ = LCAIntegrator(obj, "rk4", per_example=torch.arange(len(y)))
    groups = _groups("mlp", model)
    integ.examples.set_groups(groups)
    _, _, masks, _ = _split(model, groups)
    thetas = _path(model)
    integ.start(thetas[0])
    for t in range(1, len(thetas)):
        st = integ.step(thetas[t])
        ref = _reference_groups(model, x, y, thetas[t - 1], thetas[t], _nodes("rk4", 1), masks,
                                4)
        assert _close(st.example_group, ref)


def test_the_per_feature_form_equals_the_masked_rule_calls():
    """A Linear's row groups (with bias entries) and column groups take one product each
    (``share.per_feature``); without it (a masked rule call per group) the same values."""
    model, x, y, v, _ = _case("mlp")
    flat_v = torch.cat([t.reshape(-1) for t in v])
    out = []
    for per_feature in (True, False):
        obj = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=4)
        engine = PerExampleDirectional(obj, "hooks", groups=_groups("mlp", model))
        kinds = {n: engine.split.features[p][0] for n, p in obj.model.named_parameters()
                 if p in engine.split.features}
        assert kinds["fc1.weight"] == "out" and kinds["fc2.weight"] == "in"
        if not per_feature:
            engine.split.features = {}
        theta = torch.cat([p.detach().reshape(-1) for p in engine.params])
        out.append(engine.evaluate(theta, flat_v, keep=True)[1])
        out.append(engine.replay(2 * flat_v))
        engine.close()
    assert _close(out[0], out[2], 1e-12) and _close(out[1], out[3], 1e-12)


class _GPT2Like(torch.nn.Module):
    """Two Hugging Face Conv1D layers (y = a W + b, W (in, out)) on a token axis."""

    def __init__(self):
        super().__init__()
        from transformers.pytorch_utils import Conv1D
        self.c_attn = Conv1D(8, 6)  # nf = 8 outputs, nx = 6 inputs: weight (6, 8)
        self.c_proj = Conv1D(3, 8)  # weight (8, 3)

    def forward(self, x):
        return self.c_proj(torch.tanh(self.c_attn(x))).mean(1)


def test_conv1d_columns_and_rows_match_masked_autograd():
    """GPT-2's Conv1D heads are columns of c_attn (output features, with the bias entries) and
    rows of c_proj (input features): ``share.per_feature`` on the jvp fallback's outputs."""
    torch.manual_seed(0)
    model = _GPT2Like().double()
    x = torch.randn(9, 4, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    spec = {"attn.h0": [("c_attn.weight", (slice(None), slice(0, 4))),
                        ("c_attn.bias", slice(0, 4))],
            "proj.h0": [("c_proj.weight", slice(0, 4))]}
    groups = build_groups(model, param_table(model), spec)
    v = [torch.randn_like(p) for p in model.parameters()]
    flat_v = torch.cat([t.reshape(-1) for t in v])
    obj = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=4)
    engine = PerExampleDirectional(obj, "hooks", groups=groups)
    kinds = {n: engine.split.features[p][0] for n, p in obj.model.named_parameters()}
    assert kinds["c_attn.weight"] == "in" and kinds["c_proj.weight"] == "out"
    theta = torch.cat([p.detach().reshape(-1) for p in engine.params])
    _, D = engine.evaluate(theta, flat_v)
    _, _, masks, _ = _split(model, groups)
    ref = _masked_reference(model, x, y, flat_v, masks, 4)
    assert _close(D[:, engine.n_layers:], ref) and engine.repaired == []
    assert ref.abs().min(0).values.gt(0).all()
    engine.close()
