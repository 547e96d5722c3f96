"""SIGKILL lca-run at many points (mid-write included), resume each time: the partial bundle is
readable by the app's reader at every kill point and the finished bundle equals an
uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from lcaviz.bundle import BundleError, RunBundle
from tests.compute.test_train import _progress

ROOT = Path(__file__).parents[2]
SETTINGS = dict(net="mnist_fc", dataset="synthetic", train_size=400, batch_size=40, iters=60,
                chunk_size=100, checkpoint_every=2, seed=11)
KILL_POINTS = 8  # 3 before the first iteration, 5 at random moments after (suite time)


def _args(out: Path, resume: bool) -> list[str]:
    if resume:
        return [sys.executable, "-m", "compute.run.cli", "--resume", str(out), "--no-progress"]
    args = [sys.executable, "-m", "compute.run.cli", "--no-progress", "--out", str(out)]
    for k, v in SETTINGS.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def _read(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ("lca", "lca_layer", "loss/train", "lca_residual",
                                      "lca_class_layer", "param_help_iters")}


def test_sigkill_at_many_points_then_resume_equals_uninterrupted(tmp_path):
    # the reference runs in a subprocess with the same thread count: float32 sums depend on it
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(_args(tmp_path / "ref.h5", False), env=env, check=True, timeout=300)
    ref = _read(tmp_path / "ref.h5")
    out = tmp_path / "run.h5"
    rng = np.random.default_rng(0)
    kills, seen_progress, early = 0, [], 0
    for attempt in range(KILL_POINTS * 3):
        if kills == KILL_POINTS:
            break
        resume = out.exists()  # with or without a checkpoint: --resume continues or restarts
        proc = subprocess.Popen(_args(out, resume), env=env, stderr=subprocess.DEVNULL)
        start = _progress(out) if resume else -1
        deadline = time.time() + 120
        if attempt < 3:
            # before the first iteration completes: as soon as the new bundle file appears
            # (a restart re-creates it: wait for the writer's own pid in it)
            while time.time() < deadline and proc.poll() is None and \
                    _writer_pid(out) != proc.pid:
                time.sleep(0.005)
        else:
            # a random moment after the run has moved on (a new flush), whatever the
            # machine's speed: often mid-iteration or mid-write
            while time.time() < deadline and proc.poll() is None and \
                    _progress(out) <= start + 1:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:  # it finished before we could kill it
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        early += attempt < 3 and _progress(out) <= 0
        if not out.exists():
            continue
        try:  # a partial bundle must open cleanly in the app's reader, or fail with its typed
            b = RunBundle.open(out)  # error when the kill landed inside the file's creation
        except BundleError:
            continue
        with b:
            if b.status == "complete":  # it finished between our last look and the signal
                break
            T = b.n_iters
            assert b.status == "running" and T < SETTINGS["iters"]
            assert len(b.loss_train()) == T + 1 and b.lca_layer().shape[0] == T
            if b.n_rows:
                assert np.isfinite(b.row(b.n_rows - 1)).all()
            seen_progress.append(T)
    assert kills >= KILL_POINTS - 2, f"only {kills} kill points reached"
    assert early >= 1, "no kill landed before the first iteration completed"
    assert len(set(seen_progress)) >= 3  # the kills landed at different points of the run
    if _status(out) != "complete":  # finish the run
        subprocess.run(_args(out, True), env=env, check=True, timeout=300)
    got = _read(out)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def _writer_pid(path: Path) -> int:
    try:
        with h5py.File(path, "r", swmr=True, locking=False) as f:
            return int(f.attrs.get("writer_pid", 0))
    except (OSError, KeyError):
        return 0


def _status(path: Path) -> str:
    with RunBundle.open(path) as b:
        return b.status
