"""The Python API says what a Python caller means (issue 22, "Smaller API defects"):
``lca_layers`` as a string, the overwrite message, the dashboard's hint for a tracker run
without validation LCA, wrapper names, and ``compute_lca`` on state dicts with ``out=``."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from compute import LCATracker, compute_lca
from compute.lca.params import flat_params
from compute.run.config import ConfigError
from lcaviz.bundle import RunBundle


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(30, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (30,),
                                                                               generator=g)


def _train(model, x, y, lca=None, steps=3):
    """SGD steps; the state dict after each one."""
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    states = [copy.deepcopy(model.state_dict())]
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        states.append(copy.deepcopy(model.state_dict()))
        if lca is not None:
            lca.step()
    return states


@pytest.mark.parametrize("layers, kept", [("none", 0), ("None", 0), ("2", 21),
                                          ("0, 2", 51)])
def test_lca_layers_as_a_string(tmp_path, layers, kept):
    model, (x, y) = _net(), _data()
    with LCATracker(model, x, y, out=tmp_path / "r.h5", lca_layers=layers) as lca:
        _train(model, x, y, lca, steps=2)
    with RunBundle.open(tmp_path / "r.h5") as b:
        assert b.status == "complete" and b.n_row_cols == kept


def test_an_existing_out_names_the_python_argument(tmp_path):
    model, (x, y) = _net(), _data()
    with LCATracker(model, x, y, out=tmp_path / "r.h5") as lca:
        _train(model, x, y, lca, steps=1)
    with pytest.raises(ConfigError) as e:
        LCATracker(model, x, y, out=tmp_path / "r.h5").start()
    assert "overwrite=True" in str(e.value) and "--overwrite" not in str(e.value)
    assert f"out={tmp_path / 'r.h5'}" in str(e.value) and "--out" not in str(e.value)
    LCATracker(model, x, y, out=tmp_path / "r.h5", overwrite=True).start()  # replaced


def test_a_wrapped_model_is_named_by_the_network_inside(tmp_path):
    model, (x, y) = _net(), _data()
    wrapped = nn.DataParallel(model)  # on the CPU a pass-through; names get "module."
    with LCATracker(wrapped, x, y, out=tmp_path / "r.h5") as lca:
        _train(model, x, y, lca, steps=1)
    with RunBundle.open(tmp_path / "r.h5") as b:
        assert b.config["net"] == "Sequential"
        assert b.config["parameters"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
        assert list(b.layer_names) == ["0", "2"]


def test_compute_lca_takes_state_dicts(tmp_path):
    model, (x, y) = _net(), _data()
    start = copy.deepcopy(model)
    states = _train(model, x, y)
    flat = [torch.cat([s[n].reshape(-1) for n, _ in start.named_parameters()]) for s in states]
    ref = compute_lca(start, x, y, flat)
    for traj in (states, [{f"module.{k}": v for k, v in s.items()} for s in states]):
        got = compute_lca(start, x, y, traj)
        torch.testing.assert_close(got.lca, ref.lca, rtol=0, atol=0)
        torch.testing.assert_close(got.loss, ref.loss, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no entry for 1 of the model's parameters: 2.bias"):
        compute_lca(start, x, y, [{k: v for k, v in s.items() if k != "2.bias"}
                                  for s in states])
    assert torch.equal(flat_params(start), flat[0])  # the model is not modified


def test_compute_lca_writes_a_bundle(tmp_path):
    model, (x, y) = _net(), _data()
    start = copy.deepcopy(model)
    states = _train(model, x, y)
    ref = compute_lca(start, x, y, states, per_class=True)
    got = compute_lca(start, x, y, states, per_class=True, out=tmp_path / "c.h5")
    torch.testing.assert_close(got.lca, ref.lca, rtol=0, atol=0)
    torch.testing.assert_close(got.loss, ref.loss, rtol=0, atol=0)
    with RunBundle.open(tmp_path / "c.h5") as b:
        assert b.status == "complete" and b.n_iters == 3
        np.testing.assert_allclose(b.lca_layer(), ref.lca_layer.numpy(), rtol=1e-12, atol=0)
        np.testing.assert_allclose(b.loss_train(), ref.loss.numpy(), rtol=1e-12)
        np.testing.assert_allclose(b.rows(), ref.lca.numpy(), rtol=1e-6)  # float32 rows
        assert list(b.layer_names) == ref.layer_names
    with pytest.raises(ConfigError, match="overwrite=True"):
        compute_lca(start, x, y, states, out=tmp_path / "c.h5")
    with pytest.raises(ValueError, match="chunking"):
        compute_lca(start, x, y, states, out=tmp_path / "d.h5", chunking="mixed")


def test_the_dashboard_tells_a_tracker_run_how_to_get_validation_lca(tmp_path):
    from lcaviz.app import create_app, get_state
    from lcaviz.app.pages import run_views

    model, (x, y) = _net(), _data()
    with LCATracker(model, x, y, out=tmp_path / "r.h5") as lca:
        _train(model, x, y, lca, steps=1)
    state = get_state(create_app(tmp_path))
    fig = run_views.train_val(state, run_views.Controls(run_id=state.run_id(tmp_path / "r.h5")))
    text = fig.layout.annotations[0].text
    assert "val_inputs=" in text and "lca-run" not in text
