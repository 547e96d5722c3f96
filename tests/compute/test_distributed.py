"""lca-run under torchrun with gloo on 2 CPU processes equals the single-process run."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.compute.test_train import _progress

ROOT = Path(__file__).parents[2]
ARGS = ["--net", "mnist_fc", "--dataset", "synthetic", "--train-size", "600", "--batch-size",
        "50", "--iters", "6", "--chunk-size", "100", "--seed", "5", "--precision", "float64",
        "--checkpoint-every", "3", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(n: int, extra: list[str]) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.fail("torchrun (installed with torch) is not on PATH")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, f"--nproc-per-node={n}", "--master-addr=127.0.0.1",
           f"--master-port={_free_port()}", "-m", "compute.run.cli", *ARGS, *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _single(out: Path, extra=()) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "compute.run.cli", *ARGS, "--out", str(out), *extra],
                   env=env, check=True, capture_output=True, timeout=300)


def _read(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ("lca", "lca_class_layer", "loss/train", "lca_residual")}, \
            dict(f.attrs)


# "mixed" only: class-pure chunks (the default) under two ranks are compared with one process
# by test_resume_with_a_different_world_size (its iterations 5-6) and, per class, by
# tests/compute/test_tracker_distributed.py
@pytest.mark.parametrize("mode", ["mixed"])
def test_two_gloo_processes_equal_one(tmp_path, mode):
    _single(tmp_path / "one.h5", ["--chunking", mode])
    res = _torchrun(2, ["--out", str(tmp_path / "two.h5"), "--chunking", mode])
    assert res.returncode == 0, res.stderr[-2000:]
    one, _ = _read(tmp_path / "one.h5")
    two, attrs = _read(tmp_path / "two.h5")
    import json

    cfg = json.loads(attrs["config"])
    assert cfg["world_size"] == 2 and cfg["backend"] == "gloo"
    # float64 throughout; only the order of the cross-process sum differs
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-9, atol=1e-15, err_msg=k)


def test_resume_with_a_different_world_size(tmp_path):
    _single(tmp_path / "ref.h5")
    out = tmp_path / "run.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = ("import sys; from compute.run.train import run_lca; from compute.run.cli import *; "
            "a = build_parser().parse_args(sys.argv[1:]); "
            "run_lca(config_from_args(a), a.out, progress=False, stop_after=4)")
    subprocess.run([sys.executable, "-c", code, *ARGS, "--out", str(out)], env=env, check=True,
                   timeout=300)
    res = _torchrun(2, ["--resume", str(out)])
    assert res.returncode == 0, res.stderr[-2000:]
    ref, _ = _read(tmp_path / "ref.h5")
    got, attrs = _read(out)
    assert attrs["status"] == "complete"
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-9, atol=1e-15, err_msg=k)


def test_a_dead_rank_stops_the_run_cleanly_and_it_resumes(tmp_path):
    import signal
    import time

    _single(tmp_path / "ref.h5", ["--iters", "40"])
    out = tmp_path / "run.h5"
    torchrun = shutil.which("torchrun")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "LCA_DIST_TIMEOUT": "30"}
    cmd = [torchrun, "--nproc-per-node=2", "--master-addr=127.0.0.1",
           f"--master-port={_free_port()}", "-m", "compute.run.cli", *ARGS, "--iters", "40",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and _progress(out) < 4:
        time.sleep(0.1)
    workers = subprocess.run(["pgrep", "-f", f"compute.run.cli.*{out}"], capture_output=True,
                             text=True).stdout.split()
    workers = [int(p) for p in workers if int(p) != proc.pid]
    assert len(workers) == 2
    os.kill(max(workers), signal.SIGKILL)  # one rank dies
    proc.communicate(timeout=90)  # no hang: the run stops well within the timeout
    assert proc.returncode != 0
    with h5py.File(out, "r", swmr=True, locking=False) as f:
        assert f.attrs["status"] in ("failed", "running")
        assert 4 <= f["progress"][0] < 40
    env.pop("LCA_DIST_TIMEOUT")
    subprocess.run([sys.executable, "-m", "compute.run.cli", "--resume", str(out), "--no-progress"],
                   env=env, check=True, capture_output=True, timeout=300)
    ref, _ = _read(tmp_path / "ref.h5")
    got, attrs = _read(out)
    assert attrs["status"] == "complete"
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-9, atol=1e-15, err_msg=k)

