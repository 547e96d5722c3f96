"""Per-example LCA inside the integrator (``LCAIntegrator(per_example=idx)``), float64, against
explicit per-example autograd gradients at the integrator's own nodes.

Tolerances: E against the reference and Σ_n E against the step's per-layer LCA to 1e-10 of the
largest value (measured ~1e-15: only the order of float sums differs); per-example losses to
1e-12 relative.
"""

from __future__ import annotations

import copy

import pytest
import torch

from compute.lca.integrator import LCAIntegrator, layer_sums
from compute.lca.objective import FullDatasetObjective, _probe_copy
from compute.lca.params import flat_params, load_flat_params, param_table
from tests.compute.per_example_models import reference_directional
from tests.compute.test_per_example import _case

RTOL = 1e-10
METHODS = ["first_order", "trapezoid", "rk4", "adaptive"]
BN = {"bn_group": 3, "chunk_size": 6}  # 9 examples: a chunk of two groups, then one group


def _integrator(name, method, *, per_class=False, index=None, x=None, y=None, **kw):
    model, x0, y0, _, _ = _case(name)
    x, y = (x0, y0) if x is None else (x, y)
    chunks = dict(BN) if name == "cnn_batchnorm" else {"chunk_size": 4}
    chunks.update({k: kw.pop(k) for k in ("chunking",) if k in kw})
    obj = FullDatasetObjective(model, x, y, n_classes=5 if name == "transformer" else 3,
                               per_class=per_class, **chunks)
    idx = torch.arange(len(y)) if index is None else index
    return model, x, y, LCAIntegrator(obj, method, tol=1e-9, max_halvings=2, per_example=idx,
                                      **kw)


def _path(model, steps=2, scale=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    thetas = [flat_params(model)]
    for _ in range(steps):
        thetas.append(thetas[-1] + scale * torch.randn(thetas[0].shape, generator=g,
                                                       dtype=thetas[0].dtype))
    return thetas


def _nodes(method, splits):
    if method == "first_order":
        return [(0.0, 1.0)]
    if method == "trapezoid":
        return [(0.0, 0.5), (1.0, 0.5)]
    n = splits
    return [(k / (2 * n), (1 if k in (0, 2 * n) else 4 if k % 2 else 2) / (6 * n))
            for k in range(2 * n + 1)]


def _at(model, theta):
    m = copy.deepcopy(model)
    load_flat_params(m, theta)
    return m


def _reference(model, x, y, theta0, theta1, nodes, chunk):
    """E (N, L) = (1/N) Σ_k w_k D_k by explicit per-example autograd at θ_0 + s_k Δθ."""
    delta = theta1 - theta0
    parts = torch.split(delta, [p.numel() for p in model.parameters()])
    dirs = [d.view_as(p) for d, p in zip(parts, model.parameters(), strict=True)]
    return sum(w * reference_directional(_at(model, theta0 + s * delta), x, y, dirs,
                                         chunk_size=chunk) for s, w in nodes) / len(y)


def _losses(model, theta, x, y, chunk):
    probe = _probe_copy(_at(model, theta))
    with torch.no_grad():
        return torch.cat([torch.nn.functional.cross_entropy(probe(x[s:s + chunk]),
                                                            y[s:s + chunk], reduction="none")
                          for s in range(0, len(y), chunk)])


def _close(a, b, rtol=RTOL):
    return float((a - b).abs().max()) <= rtol * float(b.abs().max())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["mlp", "cnn_batchnorm", "transformer"])
def test_matches_per_example_autograd_at_the_integrators_nodes(name, method):
    model, x, y, integ = _integrator(name, method)
    chunk = 3 if name == "cnn_batchnorm" else 4  # the reference's BatchNorm groups
    table = param_table(model)
    layer = torch.as_tensor(table.param_layer_index())
    thetas = _path(model)
    integ.start(thetas[0])
    for t in range(1, len(thetas)):
        st = integ.step(thetas[t])
        assert st.example.shape == (len(y), table.n_layers) and st.example.dtype == torch.float64
        if method == "adaptive":
            assert st.splits >= 2  # refined: the values follow the refinement
        ref = _reference(model, x, y, thetas[t - 1], thetas[t], _nodes(method, st.splits),
                         chunk)
        assert _close(st.example, ref)
        assert _close(st.example.sum(0), layer_sums(st.lca, layer, table.n_layers))
        assert _close(st.example_loss_before, _losses(model, thetas[t - 1], x, y, chunk), 1e-12)
        assert _close(st.example_loss_after, _losses(model, thetas[t], x, y, chunk), 1e-12)
        assert abs(float(st.example_loss_after.mean()) - st.loss_after) <= 1e-12 * st.loss_after
    tap = integ.examples
    assert tap.repaired == []
    # hooks nets: no pass beyond the objective's (the start node is replayed); BatchNorm
    # nets: forward mode, one extra pass per node
    assert (tap.extra_passes == 0) == (name != "cnn_batchnorm")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("name", "chunking"), [("mlp", None), ("mlp", "mixed"),
                                                ("cnn_batchnorm", None)])
def test_per_class_sums_to_the_class_lca(name, chunking, method):
    """chunking None: class-pure chunks for the MLP (the objective sorts the examples; rows
    come back in the input order), masked per-class backwards for mixed chunks."""
    kw = {"chunking": chunking} if chunking else {}
    model, x, y, integ = _integrator(name, method, per_class=True, **kw)
    table = param_table(model)
    layer = torch.as_tensor(table.param_layer_index())
    thetas = _path(model)
    integ.start(thetas[0])
    for t in range(1, len(thetas)):
        st = integ.step(thetas[t])
        cl = layer_sums(st.class_lca, layer, table.n_layers)
        for c in range(cl.shape[0]):
            assert _close(st.example[y == c].sum(0), cl[c])
        if name == "mlp" and chunking is None:
            ref = _reference(model, x, y, thetas[t - 1], thetas[t], _nodes(method, st.splits), 4)
            assert _close(st.example, ref)


def test_per_example_conservation_tightens_with_rk4():
    """Σ_{t,l} E[t, n, l] = (ℓ_n(θ_T) − ℓ_n(θ_0))/N up to the quadrature residual."""
    resid = {}
    for method in ("first_order", "rk4"):
        model, x, y, integ = _integrator("mlp", method)
        thetas = _path(model, steps=3, scale=0.05)
        integ.start(thetas[0])
        steps = [integ.step(th) for th in thetas[1:]]
        total = sum(st.example.sum(1) for st in steps)
        change = (steps[-1].example_loss_after - steps[0].example_loss_before) / len(y)
        resid[method] = float((total - change).abs().max()) / float(change.abs().max())
    assert resid["rk4"] < 1e-4
    assert resid["rk4"] < 1e-2 * resid["first_order"], resid


def test_a_subset_gives_the_same_rows_in_its_order():
    idx = torch.tensor([7, 2, 5])
    full, sub = (_integrator("mlp", "rk4", per_class=True, index=i)[3]
                 for i in (None, idx))
    thetas = _path(_case("mlp")[0])
    for integ in (full, sub):
        integ.start(thetas[0])
    for th in thetas[1:]:
        a, b = full.step(th), sub.step(th)
        assert torch.equal(b.example, a.example[idx])
        assert torch.equal(b.example_loss_before, a.example_loss_before[idx])
        assert torch.equal(b.example_loss_after, a.example_loss_after[idx])


def test_without_kept_records_the_start_node_is_an_extra_pass_with_the_same_values():
    thetas = _path(_case("transformer")[0])
    runs = []
    for keep in (1 << 30, 0):
        integ = _integrator("transformer", "rk4", per_example_keep_bytes=keep)[3]
        integ.start(thetas[0])
        runs.append(([integ.step(th).example for th in thetas[1:]], integ.examples))
    (kept, tap_kept), (extra, tap_extra) = runs
    assert tap_kept.extra_passes == 0 and tap_extra.extra_passes == len(thetas) - 1
    for a, b in zip(kept, extra, strict=True):
        assert _close(a, b, 1e-12)


def test_a_validation_integrator_works_the_same():
    model, x, y, _, _ = _case("mlp")
    g = torch.Generator().manual_seed(5)
    xv, yv = torch.randn(6, 6, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2] * 2)
    _, _, _, val = _integrator("mlp", "rk4", x=xv, y=yv)
    thetas = _path(model)
    val.start(thetas[0])
    table = param_table(model)
    for t in range(1, len(thetas)):
        st = val.step(thetas[t])
        assert _close(st.example, _reference(model, xv, yv, thetas[t - 1], thetas[t],
                                             _nodes("rk4", 1), 4))
        assert _close(st.example.sum(0), layer_sums(
            st.lca, torch.as_tensor(table.param_layer_index()), table.n_layers))


def test_off_by_default_and_bad_indices_are_refused():
    model, x, y, _, _ = _case("mlp")
    obj = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=4)
    integ = LCAIntegrator(obj, "rk4")
    thetas = _path(model, steps=1)
    integ.start(thetas[0])
    st = integ.step(thetas[1])
    assert st.example is None and st.example_loss_before is None and st.example_loss_after is None
    assert integ.examples is None and obj.tap is None
    assert all(not m._forward_hooks for m in obj.model.modules())  # no hook was installed
    for bad, match in ((torch.tensor([0, 9]), "out of range"), (torch.tensor([0.5]), "integer"),
                       (torch.tensor([], dtype=torch.int64), "empty")):
        with pytest.raises(ValueError, match=match):
            LCAIntegrator(obj, "rk4", per_example=bad)
    compiled = FullDatasetObjective(model, x, y, n_classes=3, chunk_size=4, compile=True)
    with pytest.raises(ValueError, match="eager forward"):
        LCAIntegrator(compiled, "rk4", per_example=torch.arange(len(y)))


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_a_resumed_integrator_gives_the_uninterrupted_values(name):
    """Resuming at θ_t (a fresh integrator, start(θ_t)) gives step t's values bit for bit."""
    thetas = _path(_case(name)[0], steps=3)
    whole = _integrator(name, "rk4")[3]
    whole.start(thetas[0])
    steps = [whole.step(th) for th in thetas[1:]]
    resumed = _integrator(name, "rk4")[3]
    resumed.start(thetas[2])
    again = resumed.step(thetas[3])
    assert torch.equal(again.example, steps[2].example)
    assert torch.equal(again.example_loss_before, steps[2].example_loss_before)


def test_an_error_estimate_leaves_the_per_example_values_alone():
    """step(refine=True) evaluates more nodes for the error estimate, untapped."""
    thetas = _path(_case("mlp")[0])
    plain, refined = (_integrator("mlp", "rk4")[3] for _ in range(2))
    plain.start(thetas[0])
    refined.start(thetas[0])
    for th in thetas[1:]:
        a, b = plain.step(th), refined.step(th, refine=True)
        assert b.refined is not None and torch.equal(a.example, b.example)
    assert refined.examples.extra_passes == 0
