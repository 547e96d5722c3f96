"""LCATracker in a user's own DistributedDataParallel loop under torchrun (2 gloo processes)
equals the one-process run of the same loop to float64 rounding; rank 0 alone writes the bundle
(issue 23 item 4); a crashed 2-process loop resumes from its own checkpoint to the same
numbers (item 2 under item 4)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from lcaviz.bundle.layout import OSC_COUNTERS
from tests.compute.test_distributed import _free_port

ROOT = Path(__file__).parents[2]
LOOP = Path(__file__).with_name("_tracker_ddp_loop.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
FLOATS = ("lca", "lca_layer", "lca_class_layer", "loss/train", "loss/minibatch",
          "accuracy/train")
COUNTS = ("param_help_iters", "param_nonzero_iters", "help_count", "hurt_count",
          "layer_oscillation", *OSC_COUNTERS)


def _read(path: Path) -> tuple[dict, dict]:
    with h5py.File(path, "r") as f:
        return ({k: f[k][()] for k in (*FLOATS, *COUNTS, "lca_residual")},
                {**f.attrs, "config": json.loads(f.attrs["config"])})


def _torchrun(*args) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.fail("torchrun (installed with torch) is not on PATH")
    return subprocess.run([torchrun, "--nproc-per-node=2", "--master-addr=127.0.0.1",
                           f"--master-port={_free_port()}", str(LOOP), *map(str, args)],
                          env=ENV, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> tuple[dict, dict]:
    d = tmp_path_factory.mktemp("one")
    subprocess.run([sys.executable, str(LOOP), str(d / "run.h5"), str(d)], env=ENV,
                   check=True, timeout=300, capture_output=True)
    return _read(d / "run.h5")


def test_two_gloo_ranks_of_a_ddp_loop_equal_one_process(tmp_path, one_process):
    for d in ("two", "pids2"):
        (tmp_path / d).mkdir()
    res = _torchrun(tmp_path / "two/run.h5", tmp_path / "pids2")
    assert res.returncode == 0, res.stderr[-3000:]
    one, one_attrs = one_process
    two, attrs = _read(tmp_path / "two/run.h5")
    # rank 0 wrote the bundle, rank 1 nothing (no other file next to it)
    assert sorted(os.listdir(tmp_path / "two")) == ["run.h5"]
    assert int(attrs["writer_pid"]) == int((tmp_path / "pids2/rank0").read_text())
    assert (tmp_path / "pids2/rank1").read_text() != (tmp_path / "pids2/rank0").read_text()
    assert attrs["status"] == "complete"
    assert attrs["config"]["world_size"] == 2 and attrs["config"]["backend"] == "gloo"
    assert one_attrs["config"]["world_size"] == 1
    _assert_close(two, attrs, one, one_attrs)


def _assert_close(two: dict, attrs: dict, one: dict, one_attrs: dict) -> None:
    # float64 throughout; the shards' sum and DDP's mean of the two half-batch gradients only
    # reorder additions
    for k in FLOATS:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-9, atol=1e-15, err_msg=k)
    # a residual is a difference of two losses ~1: its rounding is a few ulps of the loss
    np.testing.assert_allclose(two["lca_residual"], one["lca_residual"], rtol=0, atol=1e-14)
    for k in COUNTS:
        np.testing.assert_array_equal(two[k], one[k], err_msg=k)
    for k in ("lca_cum_residual", "lca_cum_loss_change"):
        np.testing.assert_allclose(attrs[k], one_attrs[k], rtol=0, atol=1e-13, err_msg=k)


def test_a_crashed_ddp_loop_resumes_from_its_checkpoint(tmp_path, one_process):
    out, ckpt = tmp_path / "run.h5", tmp_path / "run.ckpt"
    res = _torchrun(out, tmp_path, ckpt, 6)  # every rank exits after iteration 6
    assert res.returncode != 0 and ckpt.exists()
    with h5py.File(out, "r", swmr=True, locking=False) as f:
        assert f.attrs["status"] == "running" and f["progress"][0] >= 4
    res = _torchrun(out, tmp_path, ckpt)  # both ranks load the checkpoint of iteration 4
    assert res.returncode == 0, res.stderr[-3000:]
    two, attrs = _read(out)
    assert attrs["status"] == "complete" and two["lca_layer"].shape[0] == 8
    _assert_close(two, attrs, *one_process)
