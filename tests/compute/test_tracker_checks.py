"""LCATracker refuses or warns where it used to give a wrong answer silently (issue 22, items
3, 5, 6, 7, 9): parameters unfrozen during training, the caller's autocast / no_grad /
inference_mode, a loss that becomes NaN, a forgotten or doubled ``step()``, a quadrature error
beyond the paper's 1 %, and the cost of ``per_class``. Float64 unless the item needs float32."""

import contextlib
import copy
import importlib.util
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from compute import LCATracker, compute_lca
from compute.engine.approx import RunFailed
from compute.integrations.tracker import LCAWarning
from compute.lca.params import flat_params, load_flat_params
from lcaviz.bundle import RunBundle
from tests.compute.test_tracker import N, _bundle, _data, _model


def _sgd_steps(model, x, y, steps, lca=None, *, lr=0.3, calls=1, on_step=None, opt=None):
    """``steps`` SGD steps on minibatches; ``lca.step()`` ``calls`` times after each."""
    opt = opt or torch.optim.SGD(model.parameters(), lr=lr)
    path = [flat_params(model)]
    for t in range(steps):
        if on_step is not None:
            on_step(t)
        idx = torch.arange(t * 16, t * 16 + 32) % N
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        path.append(flat_params(model))
        for _ in range(calls if lca is not None else 0):
            lca.step()
    return path


def _real_loss(model, x, y) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


# -- item 3: parameters unfrozen during training --------------------------------------------
def _unfreeze_at_5(model):
    model[0].requires_grad_(False)  # the first block is frozen at start ...
    return lambda t: model[0].requires_grad_(True) if t == 5 else None  # ... and unfrozen


def test_a_block_unfrozen_during_training_is_allocated(tmp_path):
    x, y = _data()
    model = _model()
    unfreeze = _unfreeze_at_5(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)  # every parameter the loop can move
    with LCATracker(model, x, y, out=tmp_path / "u.h5", optimizer=opt) as lca:
        _sgd_steps(model, x, y, 8, lca, on_step=unfreeze, opt=opt)
    got = _bundle(tmp_path / "u.h5")
    # the allocated loss is the model's real loss, to float64 rounding
    assert abs(got["loss"][-1] - _real_loss(model, x, y)) < 1e-12
    assert got["status"] == "complete" and "0.weight" in got["names"]
    assert got["cfg"]["frozen_params"] == []
    conserved = got["loss"][0] + np.cumsum(got["layer"].sum(1) + got["res"])
    np.testing.assert_allclose(conserved, got["loss"][1:], rtol=0, atol=1e-12)
    assert (got["layer"][:5, 0] == 0).all() and (got["layer"][5:, 0] != 0).all()


def test_a_block_unfrozen_without_the_optimizer_is_refused(tmp_path):
    x, y = _data()
    model = _model()
    unfreeze = _unfreeze_at_5(model)
    with pytest.raises(RunFailed, match=r"0\.weight.*optimizer="):
        with LCATracker(model, x, y, out=tmp_path / "r.h5", flush_seconds=0.0) as lca:
            _sgd_steps(model, x, y, 8, lca, on_step=unfreeze)
    with RunBundle.open(tmp_path / "r.h5") as b:
        assert b.status == "failed" and "0.weight" in b.status_reason
        assert "requires_grad" in b.status_reason and b.n_iters == 5  # steps 0..4 kept


# -- item 5: the engine's own context, whatever the caller's --------------------------------
def _replay(model0, path, out, x, y, context, **kw):
    model = copy.deepcopy(model0)
    with LCATracker(model, x, y, out=out, chunk_size=40, **kw) as lca:
        for theta in path[1:]:
            load_flat_params(model, theta)
            with context():
                lca.step()
    return _bundle(out)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_step_inside_no_grad_or_inference_mode(tmp_path, context):
    x, y = _data()
    model0 = _model()
    path = _sgd_steps(copy.deepcopy(model0), x, y, 4)
    ref = compute_lca(model0, x, y, path, method="rk4", chunk_size=40)
    got = _replay(model0, path, tmp_path / "c.h5", x, y, context)
    assert got["status"] == "complete"
    np.testing.assert_allclose(got["layer"], ref.lca_layer.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["loss"], ref.loss.numpy(), rtol=0, atol=1e-12)
    with context():  # compute_lca too
        inside = compute_lca(model0, x, y, path, method="rk4", chunk_size=40)
    np.testing.assert_allclose(inside.lca_layer.numpy(), ref.lca_layer.numpy(), atol=1e-12)


def test_step_inside_autocast_is_evaluated_in_the_models_dtype(tmp_path):
    x, y = _data()
    x = x.float()
    model0 = _model().float()  # autocast leaves float64 alone: float32 shows it
    path = _sgd_steps(copy.deepcopy(model0), x, y, 4)
    plain = _replay(model0, path, tmp_path / "p.h5", x, y, contextlib.nullcontext)
    cast = _replay(model0, path, tmp_path / "a.h5", x, y,
                   lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    # the same float32 evaluations; in bfloat16 the losses differ by ~1e-3 relative
    np.testing.assert_allclose(cast["loss"], plain["loss"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(cast["layer"], plain["layer"], rtol=0, atol=1e-6)


# -- item 6: status, non-finite loss, forgotten or doubled step() -----------------------------
def test_a_nan_loss_stops_the_run_failed(tmp_path):
    x, y = _data()
    model = _model()

    def blow_up(t):
        if t == 3:  # the weights go non-finite, as after an exploding loss
            with torch.no_grad():
                model[4].weight.mul_(float("inf"))

    with pytest.raises(RunFailed, match="NaN/Inf at iteration 3"):
        with LCATracker(model, x, y, out=tmp_path / "n.h5", flush_seconds=0.0) as lca:
            _sgd_steps(model, x, y, 6, lca, on_step=blow_up)
    with RunBundle.open(tmp_path / "n.h5") as b:
        assert b.status == "failed" and "NaN/Inf at iteration 3" in b.status_reason
        assert b.n_iters == 3 and np.isfinite(b.loss_train()).all()


@pytest.mark.parametrize("with_optimizer", [True, False])
def test_a_forgotten_step_is_not_complete(tmp_path, with_optimizer):
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    with pytest.warns(LCAWarning, match=r"lca\.step\(\) was never called"):
        with LCATracker(model, x, y, out=tmp_path / "f.h5",
                        optimizer=opt if with_optimizer else None):
            _sgd_steps(model, x, y, 5, opt=opt)  # no lca.step()
    with RunBundle.open(tmp_path / "f.h5") as b:
        assert b.status == "failed" and b.n_iters == 0
        assert "never called" in b.status_reason
        assert ("5 optimizer steps" if with_optimizer else "parameters moved") in b.status_reason


@pytest.mark.parametrize("with_optimizer", [True, False])
def test_step_called_twice_per_optimizer_step_counts_once(tmp_path, with_optimizer):
    x, y = _data()
    model0 = _model()
    ref_model = copy.deepcopy(model0)
    with LCATracker(ref_model, x, y, out=tmp_path / "once.h5") as lca:
        _sgd_steps(ref_model, x, y, 5, lca)
    model = copy.deepcopy(model0)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with LCATracker(model, x, y, out=tmp_path / "twice.h5",
                        optimizer=opt if with_optimizer else None) as lca:
            _sgd_steps(model, x, y, 5, lca, calls=2, opt=opt)
    ours = [w for w in seen if issubclass(w.category, LCAWarning)]
    assert len(ours) == 1 and "called twice" in str(ours[0].message)  # warned once
    once, twice = _bundle(tmp_path / "once.h5"), _bundle(tmp_path / "twice.h5")
    assert twice["status"] == "complete" and len(twice["res"]) == 5
    np.testing.assert_array_equal(twice["layer"], once["layer"])


def test_steps_missed_between_calls_are_warned(tmp_path):
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    with pytest.warns(LCAWarning, match="2 optimizer steps since the last"):
        with LCATracker(model, x, y, out=tmp_path / "m.h5", optimizer=opt) as lca:
            for _ in range(3):
                _sgd_steps(model, x, y, 2, opt=opt)
                lca.step()
    with RunBundle.open(tmp_path / "m.h5") as b:
        assert b.status == "complete" and b.n_iters == 3
        assert any("2 optimizer steps" in w for w in b.warnings)


# -- item 7: quadrature error beyond 1 % of the loss change -----------------------------------
def _big_steps(tmp_path, method, name):
    """Large SGD steps on a tanh net (lr 3, the loss falls 0.52): rk4's cumulative residual
    is 2.8 % of ΔL, adaptive's 2e-5 (measured with compute_lca); at lr 1.5 rk4 is at 0.06 %."""
    x, y = _data()
    model = _model()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with LCATracker(model, x, y, out=tmp_path / name, method=method) as lca:
            _sgd_steps(model, x, y, 6, lca, lr=3.0)
    with RunBundle.open(tmp_path / name) as b:
        err = b.closing_error()
        return [w for w in seen if issubclass(w.category, LCAWarning)], b.warnings, err


def test_a_cumulative_residual_beyond_one_percent_is_warned_and_recorded(tmp_path):
    ours, recorded, err = _big_steps(tmp_path, "rk4", "rk4.h5")
    assert 0.02 < err["lca_cum_error"] < 0.04  # the case: rk4 is not accurate enough here
    assert len(ours) == 1 and 'method="adaptive"' in str(ours[0].message)
    assert len(recorded) == 1 and 'method="adaptive"' in recorded[0]
    assert f"{100 * err['lca_cum_error']:.1f} %" in recorded[0]  # the final figure
    ours, recorded, err = _big_steps(tmp_path, "adaptive", "adaptive.h5")
    assert err["lca_cum_error"] < 0.01 and ours == [] and recorded == []


# -- item 9: per_class is opt-in --------------------------------------------------------------
def test_per_class_is_off_by_default(tmp_path):
    x, y = _data()
    model = _model()
    with LCATracker(model, x, y, out=tmp_path / "d.h5") as lca:
        _sgd_steps(model, x, y, 2, lca)
    got = _bundle(tmp_path / "d.h5")
    assert got["cls"] is None and got["cfg"]["per_class"] is False
    assert "per_class" in LCATracker.__doc__ and "slower" in LCATracker.__doc__


def test_the_callbacks_leave_per_class_off_by_default(tmp_path):
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trackers = []
    if importlib.util.find_spec("lightning") is not None:
        from compute.integrations.lightning import LCACallback

        cb = LCACallback(x, y, out=tmp_path / "lit.h5")
        cb.on_fit_start(SimpleNamespace(optimizers=[opt], global_step=0), model)
        trackers.append(cb.tracker)
    transformers = pytest.importorskip("transformers")
    from compute.integrations.hf import LCATrainerCallback

    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=8, max_position_embeddings=8, num_labels=3))
    data = [{"input_ids": torch.tensor([1 + i % 7, 2, 3]), "labels": i % 3} for i in range(6)]

    def collate(items):
        return {"input_ids": torch.stack([d["input_ids"] for d in items]),
                "labels": torch.tensor([d["labels"] for d in items])}

    hf = LCATrainerCallback(data, collator=collate, out=tmp_path / "hf.h5")
    hf.on_train_begin(None, None, None, model=bert,
                      optimizer=torch.optim.SGD(bert.parameters(), lr=0.1))
    trackers.append(hf.tracker)
    for tracker in trackers:
        assert tracker.options["per_class"] is False
        tracker.fail("test")  # nothing to allocate


def test_the_run_page_shows_the_recorded_warnings_at_the_top(tmp_path):
    from lcaviz.app import create_app, get_state
    from lcaviz.app.pages import run_callbacks

    _big_steps(tmp_path, "rk4", "warned.h5")
    _big_steps(tmp_path, "adaptive", "clean.h5")
    state = get_state(create_app(tmp_path))
    card = run_callbacks.init_run(state, "warned.h5")[3]
    texts = [p.children for p in card.children[1:]]
    assert len(texts) == 1 and 'method="adaptive"' in texts[0]
    assert run_callbacks.init_run(state, "clean.h5")[3] is None


def test_lca_run_warns_in_its_progress_output_and_records_it(tmp_path, capsys):
    from compute.run.config import RunConfig
    from compute.run.train import run_lca

    small = dict(net="mnist_fc", dataset="synthetic", train_size=300, val_size=50,
                 batch_size=50, iters=6, chunk_size=300, seed=3, lca_layers=[],
                 precision="float64")
    for method, warned in (("first_order", True), ("rk4", False)):
        path = run_lca(RunConfig(**small, method=method), tmp_path / f"{method}.h5",
                       progress=False)
        with RunBundle.open(path) as b:
            err, recorded = b.closing_error()["lca_cum_error"], b.warnings
        assert (err > 0.01) == warned and (len(recorded) == 1) == warned
        printed = capsys.readouterr().err
        assert ("--method adaptive" in printed) == warned
        if warned:
            assert "--method adaptive" in recorded[0] and f"{100 * err:.1f} %" in recorded[0]
