"""LCATracker resume in the user's own loop (issue 23 item 2), in one process: a run stopped
as a kill leaves it and continued from the state saved with the model equals an uninterrupted
run bit for bit; a checkpoint and a bundle that disagree are refused, naming both iterations.
(tests/reliability/test_tracker_kill_resume.py SIGKILLs a real loop at 5 moments.)"""

import copy
import shutil
import warnings

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from compute import LCATracker
from compute.integrations.tracker_checks import LCAWarning
from compute.run.config import ConfigError

SERIES = ("lca", "lca_rows", "lca_layer", "lca_val_layer", "loss/train", "loss/val",
          "loss/minibatch", "lca_residual", "help_count", "param_help_iters",
          "param_nonzero_iters", "param_moves", "layer_oscillation")


def _setup():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 5, generator=gen), torch.randint(0, 3, (60,), generator=gen)
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    return model, opt, x, y


def _tracker(model, opt, x, y, out, **kw):
    return LCATracker(model, x, y, out=out, optimizer=opt, lca_rows=3, val_inputs=x[:20],
                      val_targets=y[:20], chunk_size=25, **kw)


def _train(model, opt, lca, x, y, steps):
    for t in steps:
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(50 + t))[:15]
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        lca.step(loss.item())


def _checkpoint(model, opt, lca) -> dict:
    return copy.deepcopy({"model": model.state_dict(), "optimizer": opt.state_dict(),
                          "lca": lca.state_dict()})


def _kill(lca) -> None:
    """What a SIGKILL leaves: no status, nothing after the last flush, the process gone."""
    lca.writer.f.close()
    lca.watch.remove()


def _restart(out, ckpt, **kw) -> tuple:
    model, opt, x, y = _setup()
    lca = _tracker(model, opt, x, y, out, resume=True, **kw)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        lca.load_state_dict(ckpt["lca"])
    return model, opt, x, y, lca


def _read(path) -> dict:
    with h5py.File(path, "r") as f:
        return {**{k: f[k][()] for k in SERIES}, "status": f.attrs["status"],
                "cum": f.attrs["lca_cum_residual"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    model, opt, x, y = _setup()
    with _tracker(model, opt, x, y, out) as lca:
        _train(model, opt, lca, x, y, range(7))
    return _read(out)


def _assert_equal(got: dict, ref: dict) -> None:
    assert got["status"] == "complete"
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def test_resume_from_the_users_checkpoint_equals_uninterrupted(tmp_path, reference):
    out = tmp_path / "run.h5"
    model, opt, x, y = _setup()
    lca = _tracker(model, opt, x, y, out, resume=True)
    lca.start()
    _train(model, opt, lca, x, y, range(4))
    ckpt = _checkpoint(model, opt, lca)
    _train(model, opt, lca, x, y, range(4, 6))  # written after the checkpoint: dropped
    lca.writer.flush()
    _kill(lca)
    model, opt, x, y, lca = _restart(out, ckpt)
    with lca:
        assert lca.iteration == 4
        _train(model, opt, lca, x, y, range(lca.iteration, 7))
    _assert_equal(_read(out), reference)


def test_restart_before_the_first_checkpoint_starts_again_with_a_warning(tmp_path, reference):
    out = tmp_path / "run.h5"
    model, opt, x, y = _setup()
    lca = _tracker(model, opt, x, y, out, resume=True)
    lca.start()
    _train(model, opt, lca, x, y, range(2))
    lca.writer.flush()
    _kill(lca)
    model, opt, x, y, lca = _restart(out, None)
    with pytest.warns(LCAWarning, match=r"unfinished run .* 2 iterations\) is started again "
                                        "from iteration 0"):
        lca.start()
    _train(model, opt, lca, x, y, range(lca.iteration, 7))
    lca.close()
    _assert_equal(_read(out), reference)


def test_a_checkpoint_ahead_of_its_bundle_is_refused_naming_both_iterations(tmp_path):
    out, old = tmp_path / "run.h5", tmp_path / "old.h5"
    model, opt, x, y = _setup()
    lca = _tracker(model, opt, x, y, out)
    lca.start()
    _train(model, opt, lca, x, y, range(2))
    lca.state_dict()  # flushes: the copy holds 2 iterations
    shutil.copy(out, old)
    _train(model, opt, lca, x, y, range(2, 5))
    ckpt = _checkpoint(model, opt, lca)
    _kill(lca)
    shutil.copy(old, out)  # an older bundle restored beside the newer checkpoint
    model, opt, x, y, lca = _restart(out, ckpt)
    with pytest.raises(ConfigError, match=r"checkpoint is at iteration 5, the bundle at 2"):
        lca.start()
    with h5py.File(out, "r", swmr=True, locking=False) as f:  # nothing was touched
        assert f["progress"][0] == 2 and f.attrs["status"] == "running"


def test_a_model_of_another_iteration_is_refused(tmp_path):
    out = tmp_path / "run.h5"
    model, opt, x, y = _setup()
    lca = _tracker(model, opt, x, y, out)
    lca.start()
    _train(model, opt, lca, x, y, range(2))
    early = copy.deepcopy(model.state_dict())
    _train(model, opt, lca, x, y, range(2, 4))
    ckpt = _checkpoint(model, opt, lca)
    _kill(lca)
    ckpt["model"] = early  # the model of iteration 2 with the LCA state of 4
    model, opt, x, y, lca = _restart(out, ckpt)
    with pytest.raises(ConfigError, match=r"not the ones the LCA state was saved with at "
                                          "iteration 4"):
        lca.start()


def test_a_complete_bundle_is_never_resumed_or_replaced(tmp_path):
    out = tmp_path / "run.h5"
    model, opt, x, y = _setup()
    with _tracker(model, opt, x, y, out) as lca:
        _train(model, opt, lca, x, y, range(3))
        ckpt = _checkpoint(model, opt, lca)
    for state in (ckpt, None):
        *_, lca = _restart(out, state)
        with pytest.raises(ConfigError, match=r"is complete \(3 iterations\).*there is "
                                              "nothing to resume"):
            lca.start()
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and f["progress"][0] == 3


def test_other_options_or_a_foreign_state_are_refused(tmp_path):
    out = tmp_path / "run.h5"
    model, opt, x, y = _setup()
    lca = _tracker(model, opt, x, y, out)
    lca.start()
    with pytest.raises(RuntimeError, match="after the tracker started"):
        lca.load_state_dict({})
    _train(model, opt, lca, x, y, range(2))
    ckpt = _checkpoint(model, opt, lca)
    _kill(lca)
    *_, lca = _restart(out, ckpt, method="trapezoid")
    with pytest.raises(ConfigError, match=r"resumed with method='trapezoid' \(the bundle "
                                          "'rk4'\\)"):
        lca.start()
    with pytest.raises(ValueError, match=r"not a state saved by LCATracker.state_dict\(\) "
                                         r"\(it holds model, optimizer"):
        lca.load_state_dict(ckpt)  # the whole checkpoint instead of its "lca" entry
    with pytest.raises(ValueError, match="resume=True continues out=, overwrite=True replaces"):
        _tracker(model, opt, x, y, out, resume=True, overwrite=True)
    with pytest.raises(RuntimeError, match="outside its with block"):
        _tracker(model, opt, x, y, tmp_path / "other.h5").state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain new run: no resume warning
        *_, lca = _restart(tmp_path / "new.h5", None)
        lca.start()
        lca.fail("test")
