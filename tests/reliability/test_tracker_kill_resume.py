"""SIGKILL a user's own training loop with LCATracker (tests/reliability/_tracker_loop.py) at 5
moments, run it again from its own last checkpoint: the bundle is continued, and the finished
bundle equals an uninterrupted run bit for bit (issue 23 item 2)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from lcaviz.bundle.layout import OSC_COUNTERS

ROOT = Path(__file__).parents[2]
LOOP = Path(__file__).with_name("_tracker_loop.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # float32 sums: threads
COMPARED = ("lca", "lca_rows", "lca_cumsum", "lca_layer", "lca_class_layer", "lca_val",
            "lca_val_layer", "loss/train", "loss/val", "loss/minibatch", "accuracy/train",
            "accuracy/val", "lca_residual", "lca_val_residual", "splits", "help_count",
            "hurt_count", "param_help_iters", "param_nonzero_iters", "layer_oscillation",
            *OSC_COUNTERS)
CLOSING = ("status", "lca_cum_residual", "lca_cum_abs_residual", "lca_cum_loss_change",
           "lca_cum_abs_loss_change")
# moment -> (published iterations of the killed bundle at least, iteration the rerun starts at)
MOMENTS = {"created": (0, 0), "before-checkpoint": (0, 0), "mid-step": (8, 8),
           "after-state": (12, 8), "mid-save": (16, 12)}


def _run(out: Path, ckpt: Path) -> None:
    subprocess.run([sys.executable, str(LOOP), str(out), str(ckpt)], env=ENV, check=True,
                   timeout=300, capture_output=True)


def _read(path: Path) -> tuple[dict, dict]:
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in COMPARED}
        return data, {k: f.attrs[k] for k in CLOSING}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, dict]:
    d = tmp_path_factory.mktemp("uninterrupted")
    _run(d / "ref.h5", d / "ref.ckpt")
    return _read(d / "ref.h5")


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_then_rerun_from_own_checkpoint_equals_uninterrupted(tmp_path, reference,
                                                                     moment):
    out, ckpt = tmp_path / "run.h5", tmp_path / "run.ckpt"
    marker = Path(f"{out}.paused")
    proc = subprocess.Popen([sys.executable, str(LOOP), str(out), str(ckpt), moment], env=ENV,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # polling a condition: the loop writes the marker, then waits
    assert marker.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() else "no pause"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    published, resumes_at = MOMENTS[moment]
    with h5py.File(out, "r", swmr=True, locking=False) as f:  # what the kill left
        assert f.attrs["status"] == "running"
        assert f["progress"][0] >= published
    assert ckpt.exists() == (resumes_at > 0)
    _run(out, ckpt)
    assert Path(f"{out}.log").read_text().split() == ["start", "0", "start", str(resumes_at)]
    got, attrs = _read(out)
    ref, ref_attrs = reference
    assert attrs == ref_attrs and attrs["status"] == "complete"
    for k in COMPARED:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
