"""LCATracker: LCA of any training loop into a standard bundle, against compute_lca (float64)."""

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from compute import LCATracker, compute_lca
from compute.lca.params import flat_params
from lcaviz.bundle import RunBundle

N, D, C, STEPS = 96, 6, 3, 7


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()  # 3 classes
    return x, y


def _model(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 5), nn.Tanh(),
                         nn.Linear(5, C)).double()


def _train(model, x, y, lca=None, steps=STEPS, fail_at=None):
    """A plain loop: SGD with momentum on minibatches; returns θ_0..θ_T (all parameters)."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.3,
                          momentum=0.9)
    path = [flat_params(model)]
    for t in range(steps):
        idx = torch.arange(t * 16, t * 16 + 32) % N
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        if t == fail_at:
            raise RuntimeError("the loss exploded")
        path.append(flat_params(model))
        if lca is not None:
            lca.step(minibatch_loss=loss.item())
    return path, opt


def _bundle(path):
    with RunBundle.open(path) as b:
        return {"rows": b.rows().astype(np.float64), "layer": b.lca_layer(),
                "res": b.residual(), "loss": b.loss_train(), "status": b.status,
                "cls": b.lca_class_layer(), "cfg": b.config, "names": b.params["name"].tolist(),
                "layers": list(b.layer_names), "windows": b.row_windows.copy(),
                "mb": b.loss_minibatch()}


def test_tracker_equals_compute_lca_on_the_same_trajectory(tmp_path):
    x, y = _data()
    model = _model()
    start = copy.deepcopy(model)
    with LCATracker(model, x, y, out=tmp_path / "t.h5", per_class=True, chunk_size=40) as lca:
        path, opt = _train(model, x, y, lca)
    ref = compute_lca(start, x, y, path, method="rk4", per_class=True, chunk_size=40)
    got = _bundle(tmp_path / "t.h5")
    assert got["status"] == "complete" and got["rows"].shape == (STEPS, 8 * D + 8 + 45 + 18)
    np.testing.assert_allclose(got["layer"], ref.lca_layer.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["res"], ref.residual.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["loss"], ref.loss.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["cls"], ref.class_lca_layer.numpy(), rtol=0, atol=1e-12)
    # per-parameter rows are stored as float32: equal to its rounding
    np.testing.assert_allclose(got["rows"], ref.lca.numpy(), rtol=2e-7, atol=1e-30)
    assert np.isfinite(got["mb"]).all() and got["cfg"]["source"] == "LCATracker"
    assert got["cfg"]["net"] == "Sequential" and got["cfg"]["frozen_params"] == []


def test_frozen_parameters_are_left_out_and_listed(tmp_path):
    x, y = _data()
    model = _model()
    model[2].requires_grad_(False)  # the middle layer is frozen
    start = copy.deepcopy(model)
    with LCATracker(model, x, y, out=tmp_path / "f.h5", per_class=False,
                    lca_rows="dense:3,2") as lca:
        path, _ = _train(model, x, y, lca)
    got = _bundle(tmp_path / "f.h5")
    assert got["cfg"]["frozen_params"] == ["2.weight", "2.bias"]
    assert "2.weight" not in got["names"] and got["layers"] == ["0", "4"]
    ref = compute_lca(start, x, y, path, method="rk4")  # all parameters: layer 1 stays 0
    np.testing.assert_allclose(ref.lca_layer[:, 1].numpy(), 0, atol=0)
    np.testing.assert_allclose(got["layer"], ref.lca_layer[:, [0, 2]].numpy(), atol=1e-12)
    np.testing.assert_allclose(got["res"], ref.residual.numpy(), atol=1e-12)
    assert got["windows"].tolist() == [[0, 1], [1, 2], [2, 3], [3, 5], [5, 7]]


def test_dataset_and_dataloader_inputs_allocate_the_same_loss(tmp_path):
    x, y = _data()
    results = []
    for k, inputs in enumerate((torch.utils.data.TensorDataset(x, y),
                                torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                                            batch_size=25))):
        model = _model()
        with LCATracker(model, inputs, out=tmp_path / f"d{k}.h5", per_class=False) as lca:
            _train(model, x, y, lca)
        results.append(_bundle(tmp_path / f"d{k}.h5"))
    model = _model()
    with LCATracker(model, x, y, out=tmp_path / "t.h5", per_class=False) as lca:
        _train(model, x, y, lca)
    tensors = _bundle(tmp_path / "t.h5")
    for r in results:
        np.testing.assert_allclose(r["layer"], tensors["layer"], rtol=0, atol=1e-12)
        assert r["cfg"]["n_examples"] == N


def test_a_failure_in_the_block_leaves_a_failed_readable_bundle(tmp_path):
    x, y = _data()
    model = _model()
    opt_model = model
    with pytest.raises(RuntimeError, match="exploded"):
        with LCATracker(model, x, y, out=tmp_path / "x.h5", per_class=False,
                        flush_seconds=0.0) as lca:
            _train(opt_model, x, y, lca, fail_at=4)
    with RunBundle.open(tmp_path / "x.h5") as b:
        assert b.status == "failed" and "RuntimeError: the loss exploded" in b.status_reason
        assert b.n_iters == 4 and len(b.loss_train()) == 5
    with pytest.raises(ValueError, match="overwrite"):  # never replaces a bundle by default
        LCATracker(model, x, y, out=tmp_path / "x.h5").start()


def test_optimizer_settings_are_recorded(tmp_path):
    x, y = _data()
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99))
    with LCATracker(model, x, y, out=tmp_path / "o.h5", per_class=False,
                    optimizer=opt) as lca:
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            lca.step()
    cfg = _bundle(tmp_path / "o.h5")["cfg"]
    assert cfg["optimizer"] == "Adam" and cfg["lr"] == 0.01
    assert cfg["optimizer_groups"][0]["betas"] == [0.8, 0.99]
    json.dumps(cfg)
