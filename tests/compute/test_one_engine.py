"""One engine (issue 23.1): ``lca-run`` and a hand-written loop driving ``LCATracker`` on the
same trajectory write bit-identical bundles, and every LCA option is one definition shared by
``lca-run --help``, the tracker's keywords and docstring, and the Lightning / HF callbacks."""

import inspect
import json
from dataclasses import fields

import h5py
import numpy as np
import pytest

from compute.engine.options import FACE_DEFAULTS, OPTION_NAMES, LCAOptions, flag_name
from compute.integrations.tracker import LCATracker
from compute.run.build import build_run
from compute.run.cli import build_parser
from compute.run.config import ConfigError, RunConfig
from compute.run.step import train_step
from compute.run.train import run_lca

NET = dict(net="mnist_fc", dataset="synthetic", train_size=300, val_size=50, batch_size=60,
           iters=5, seed=2, method="rk4", per_class=True)
NOT_COMPARED = {"timing/seconds"}  # wall-clock time of each iteration
# the config keys that name the face, or what it trains as the face knows it (lca-run: its
# flags "mnist_fc", "synthetic", "sgd"; the tracker: the class names and "fixed set")
FACE_KEYS = {"source", "net", "dataset", "optimizer"}


def _read(path):
    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visit(names.append)  # every dataset: lca, lca_layer, lca_residual, loss/train, ...
        data = {k: f[k][()] for k in names
                if isinstance(f[k], h5py.Dataset) and k not in NOT_COMPARED}
        attrs = {k: f.attrs[k] for k in ("status", "lca_cum_residual", "lca_cum_loss_change")}
        return data, attrs, json.loads(f.attrs["config"])


def _hand_loop(cfg: RunConfig, out) -> None:
    """The user's own loop: the reference net, optimizer and minibatches that lca-run builds
    (compute.run.build / step), trained here and allocated by the tracker."""
    run = build_run(cfg)
    with LCATracker(run.model, run.x, run.y, out=out, optimizer=run.optimizer,
                    class_names=run.class_names, seed=cfg.seed, iters=cfg.iters,
                    **cfg.lca_options()) as lca:
        for t in range(cfg.iters):
            lca.step(minibatch_loss=train_step(run, t))


@pytest.mark.parametrize(("modes", "written"), [
    ({}, {"lca_cumsum"}),
    ({"lca_every": 2, "lca_error_every": 2, "full_loss_every": 2, "lca_rows": "2"},
     {"lca_iters", "lca_error", "full_loss"}),
    ({"lca_error_every": 3, "counterfactual_every": 2, "lca_data": "0.5", "lca_layers": ["fc2"]},
     {"counterfactual", "lca_error", "lca_columns"}),
], ids=["exact", "lca_every+error+full_loss", "error+counterfactual+subset+layers"])
def test_lca_run_and_the_tracker_in_a_hand_loop_write_identical_bundles(tmp_path, modes,
                                                                          written):
    cfg = RunConfig(**NET, **modes)
    run_lca(cfg, tmp_path / "run.h5", progress=False)
    _hand_loop(cfg, tmp_path / "loop.h5")
    (a, a_attrs, a_cfg), (b, b_attrs, b_cfg) = _read(tmp_path / "run.h5"), \
        _read(tmp_path / "loop.h5")
    core = {"lca", "lca_layer", "lca_class_layer", "lca_residual", "loss/train",
            "param_help_iters", "param_nonzero_iters", "param_moves", "layer_oscillation"}
    assert a.keys() == b.keys() and core | written <= a.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k
    assert a_attrs == b_attrs and a_attrs["status"] == "complete"
    assert a_cfg["source"] == "lca-run" and b_cfg["source"] == "LCATracker"
    shared = [k for k in a_cfg.keys() & b_cfg.keys() if k not in FACE_KEYS]
    assert set(OPTION_NAMES) | {"seed", "iters", "chunks", "allocated_loss"} <= set(shared)
    assert {k: a_cfg[k] for k in shared} == {k: b_cfg[k] for k in shared}


def test_every_lca_option_is_a_flag_with_the_same_default():
    parser = build_parser()
    actions = {a.dest: a for a in parser._actions}
    for f in fields(LCAOptions):
        action = actions[f.name]
        assert flag_name(f) in action.option_strings, f.name
        assert action.default == getattr(LCAOptions(), f.name), f.name
    assert RunConfig().lca_options() == LCAOptions().lca_options()  # lca-run's defaults


def test_every_lca_option_is_a_documented_tracker_keyword_with_its_default(tmp_path):
    doc = inspect.getdoc(LCATracker)
    for name in OPTION_NAMES:
        assert f"``{name}``" in doc, name
    import torch

    model = torch.nn.Linear(3, 2)
    lca = LCATracker(model, torch.randn(8, 3), torch.arange(8) % 2, out=tmp_path / "t.h5")
    expected = {**LCAOptions().lca_options(), **FACE_DEFAULTS["tracker"]}
    assert lca.options == expected


def test_the_tracker_validates_options_as_lca_run_does(tmp_path):
    import torch

    args = (torch.nn.Linear(3, 2), torch.randn(8, 3), torch.arange(8) % 2)
    with pytest.raises(TypeError, match="'lca_evry'.*did you mean 'lca_every'"):
        LCATracker(*args, out=tmp_path / "t.h5", lca_evry=2)
    with pytest.raises(TypeError, match="did you mean 'optimizer'"):  # the tracker's own too
        LCATracker(*args, out=tmp_path / "t.h5", optimiser=None)
    for bad, flag in [({"lca_every": 0}, "lca_every="), ({"rtol": 0.1}, "rtol="),
                      ({"lca_data_resample": True}, "lca_data_resample="),
                      ({"method": "euler"}, "method=")]:
        with pytest.raises(ConfigError, match=flag):
            LCATracker(*args, out=tmp_path / "t.h5", **bad)
        with pytest.raises(ConfigError, match="--" + flag[:-1].replace("_", "-")):
            RunConfig(**bad).validate()


def test_the_callbacks_pass_every_tracker_keyword_through():
    from compute.integrations.hf import LCATrainerCallback
    from compute.integrations.lightning import LCACallback

    tracker = inspect.signature(LCATracker).parameters
    own = {n for n, p in tracker.items() if p.kind is p.KEYWORD_ONLY} - {"out"}
    for cb in (LCACallback, LCATrainerCallback):
        params = inspect.signature(cb).parameters
        assert any(p.kind is p.VAR_KEYWORD for p in params.values()), cb
        # nothing the tracker takes is shadowed by a callback argument of another meaning
        assert not (own | set(OPTION_NAMES)) & (set(params) - {"out", "model", "tracker"})
    kwargs = {name: getattr(LCAOptions(), name) for name in OPTION_NAMES}
    cb = LCACallback(None, out="x.h5", **kwargs)
    assert cb.kwargs == kwargs
    hf = LCATrainerCallback(None, out="x.h5", **kwargs)
    assert all(hf.kwargs[k] == v for k, v in kwargs.items())


@pytest.mark.parametrize("modes", [
    {"lca_every": 2, "full_loss_every": 2},
    {"lca_data": "100", "lca_data_resample": True, "method": "trapezoid"},
], ids=["lca_every", "resample"])
def test_the_tracker_resumes_the_cheaper_modes_bit_for_bit(tmp_path, modes):
    """lca-run's modes are the tracker's now, so is its resume: killed after a checkpoint at
    iteration 3 (not allocated with lca_every 2) and restarted, the bundle equals the run."""
    import copy

    cfg = RunConfig(**{**NET, **modes})
    _hand_loop(cfg, tmp_path / "ref.h5")

    def tracker(run, out, **kw):
        return LCATracker(run.model, run.x, run.y, out=out, optimizer=run.optimizer,
                          class_names=run.class_names, seed=cfg.seed, iters=cfg.iters,
                          **cfg.lca_options(), **kw)

    run = build_run(cfg)
    lca = tracker(run, tmp_path / "run.h5", resume=True)
    lca.start()
    for t in range(3):
        lca.step(train_step(run, t))
    ckpt = copy.deepcopy({"model": run.model.state_dict(), "opt": run.optimizer.state_dict(),
                          "lca": lca.state_dict()})
    lca.step(train_step(run, 3))  # written after the checkpoint: dropped on resume
    lca.writer.flush()
    lca.writer.f.close()  # what a SIGKILL leaves
    lca.watch.remove()
    run = build_run(cfg)
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["opt"])
    lca = tracker(run, tmp_path / "run.h5", resume=True)
    lca.load_state_dict(ckpt["lca"])
    with lca:
        assert lca.iteration == 3
        for t in range(3, cfg.iters):
            lca.step(train_step(run, t))
    (a, a_attrs, _), (b, b_attrs, _) = _read(tmp_path / "ref.h5"), _read(tmp_path / "run.h5")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k
    assert a_attrs == b_attrs
