"""Disk full mid-run: the bundle writer starts failing with ENOSPC after some successful writes.

lca-run must stop with a clear ``RunFailed`` (naming the write error and ``--resume``), the
bundle on disk must stay readable by the app's reader with every published iteration
consistent, and ``--resume`` once space is back must finish the run exactly as an uninterrupted
one would have.
"""

from __future__ import annotations

import errno

import h5py
import numpy as np
import pytest

from compute.run.config import RunConfig
from compute.run.train import RunFailed, checkpoint_path, run_lca
from lcaviz.bundle import RunBundle
from lcaviz.bundle import writer as bundle_writer

SETTINGS = dict(net="mnist_fc", dataset="synthetic", train_size=300, batch_size=30, iters=20,
                chunk_size=100, checkpoint_every=2, seed=5)
KEYS = ("lca", "lca_layer", "lca_class_layer", "loss/train", "loss/minibatch", "lca_residual",
        "help_count", "hurt_count", "param_help_iters", "param_nonzero_iters")


def _read(path) -> dict:
    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in KEYS}
        out["status"] = str(f.attrs["status"])
    return out


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Every run here on one intra-op thread, as the lca-run subprocesses (OMP_NUM_THREADS=1):
    float32 sums split over another number of threads differ in the last bits, and a resume is
    compared with an uninterrupted run made in this process."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, _one_thread):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    run_lca(RunConfig(**SETTINGS), out, progress=False)
    return _read(out)


def _enospc():
    return OSError(errno.ENOSPC, "No space left on device")


class _DiskFull:
    """Wraps a function so that every call after the first ``ok_calls`` raises ENOSPC (the disk
    stays full until the test lifts the patch)."""

    def __init__(self, fn, ok_calls: int):
        self.fn, self.ok_calls, self.calls, self.failures = fn, ok_calls, 0, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.ok_calls:
            self.failures += 1
            raise _enospc()
        return self.fn(*args, **kwargs)


# "flush": the whole BundleWriter.flush fails (nothing of the batch written);
# "resize": h5py's Dataset.resize fails inside a flush, after some datasets already grew, so
# the file holds rows beyond the published progress.
@pytest.mark.timeout(300)  # a safety net, generous: the suite must pass beside a CPU hog
@pytest.mark.parametrize("where,ok_calls", [("flush", 4), ("resize", 70)])
def test_disk_full_mid_run_fails_cleanly_and_resume_equals_uninterrupted(
        tmp_path, monkeypatch, reference, where, ok_calls):
    out = tmp_path / "run.h5"
    with monkeypatch.context() as m:
        if where == "flush":
            patch = _DiskFull(bundle_writer.BundleWriter.flush, ok_calls)
            m.setattr(bundle_writer.BundleWriter, "flush", lambda self: patch(self))
        else:
            patch = _DiskFull(h5py.Dataset.resize, ok_calls)
            m.setattr(h5py.Dataset, "resize", lambda self, *a, **k: patch(self, *a, **k))
        with pytest.raises(RunFailed) as exc:
            run_lca(RunConfig(**SETTINGS), out, progress=False)
        assert patch.failures >= 1, "the simulated disk-full error was never hit"
    msg = str(exc.value)
    assert "No space left on device" in msg and "--resume" in msg and str(out) in msg
    assert isinstance(exc.value.__cause__, OSError)
    assert exc.value.__cause__.errno == errno.ENOSPC

    # the bundle is readable by the app, every published iteration is complete and correct
    with RunBundle.open(out) as b:
        T = b.n_iters
        assert b.status in ("failed", "running")
        assert 0 < T < SETTINGS["iters"], f"progress T={T} should be mid-run"
        assert len(b.loss_train()) == T + 1 and b.rows().shape[0] == b.n_rows == T
        for name in ("loss_minibatch", "residual", "splits", "lca_layer", "help_count",
                     "hurt_count", "seconds", "lca_class_layer"):
            assert len(getattr(b, name)()) == T, name
        np.testing.assert_allclose(b.rows(), reference["lca"][:T], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(b.loss_train(), reference["loss/train"][: T + 1], rtol=1e-6)
        np.testing.assert_allclose(b.lca_layer(), reference["lca_layer"][:T], rtol=1e-6,
                                   atol=1e-12)
        assert b.status == "failed" and "No space left on device" in b.status_reason
        assert not b.live  # the failed writer closed the file
    if where == "resize":  # the failed flush grew some datasets: rows the reader must ignore
        with h5py.File(out, "r") as f:
            assert f["loss/train"].shape[0] > T + 1
    # the checkpoint never runs ahead of what the bundle published
    import torch

    ckpt_T = int(torch.load(checkpoint_path(out), weights_only=True)["T"])
    assert ckpt_T <= T
    print(f"[{where}] write failed after {patch.calls - patch.failures} good calls: bundle "
          f"published T={T}, checkpoint at {ckpt_T}")

    # space is back: resume finishes and equals the uninterrupted run
    run_lca(None, out, resume=True, progress=False)
    got = _read(out)
    assert got["status"] == "complete" and not checkpoint_path(out).exists()
    for key in KEYS:
        np.testing.assert_allclose(got[key], reference[key], rtol=1e-6, atol=1e-9, err_msg=key)


# -- a real full disk: a small tmpfs (CI runs as root), and the file-size limit (ulimit -f) ----
CLI_FLAGS = ["--net", "mnist_fc", "--dataset", "synthetic", "--train-size", "300",
             "--batch-size", "30", "--iters", "20", "--chunk-size", "100",
             "--checkpoint-every", "2", "--seed", "5", "--no-progress"]


def _lca_run(out, fsize_limit: int | None = None):
    """``lca-run`` of SETTINGS in a subprocess (optionally under RLIMIT_FSIZE)."""
    import os
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "compute.run.cli", *CLI_FLAGS, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600,
                          preexec_fn=limit if fsize_limit else None)


def _mount_tmpfs(where, size: str) -> bool:
    import subprocess

    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True)
    return r.returncode == 0


def _check_stopped_cleanly(proc, out, reference, reason: str) -> int:
    """The run stopped with one clear line, the bundle reads, the checkpoint resumes."""
    import torch

    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("lca-run: error:"), proc.stderr
    assert reason in lines[0] and f"lca-run --resume {out}" in lines[0], lines[0]
    assert not out.with_name(out.name + ".ckpt.tmp").exists()  # no half checkpoint
    assert not out.with_name(out.name + ".lock").exists()
    with RunBundle.open(out) as b:  # the last flushed iteration reads, as the app reads it
        T = b.n_iters
        assert b.status == "failed" and reason in b.status_reason and not b.live
        assert 0 <= T < SETTINGS["iters"]
        assert len(b.loss_train()) == T + 1 and b.rows().shape[0] == b.n_rows == T
        np.testing.assert_allclose(b.rows(), reference["lca"][:T], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(b.lca_layer(), reference["lca_layer"][:T], rtol=1e-6,
                                   atol=1e-12)
    ckpt = checkpoint_path(out)
    if ckpt.exists():  # else the run failed before its first checkpoint: resume restarts it
        assert int(torch.load(ckpt, weights_only=True)["T"]) <= T
    return T


def _resume_equals_reference(out, reference) -> None:
    run_lca(None, out, resume=True, progress=False)
    got = _read(out)
    assert got["status"] == "complete" and not checkpoint_path(out).exists()
    for key in KEYS:
        np.testing.assert_allclose(got[key], reference[key], rtol=1e-6, atol=1e-9, err_msg=key)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("size", ["3m", "12m"])  # 3m: not even the first checkpoint fits
def test_full_tmpfs_stops_cleanly_and_resumes_once_space_is_free(tmp_path, reference, size):
    import subprocess

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, size):
        pytest.skip("mounting a tmpfs was refused (not root); "
                    "test_file_size_limit_stops_cleanly covers the same path")
    try:
        out = disk / "run.h5"
        proc = _lca_run(out)
        T = _check_stopped_cleanly(proc, out, reference, "No space left on device")
        if size == "12m":
            assert T > 0 and checkpoint_path(out).exists()
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        _resume_equals_reference(out, reference)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.timeout(600)
def test_file_size_limit_stops_cleanly_and_resumes_without_it(tmp_path, reference):
    out = tmp_path / "run.h5"
    proc = _lca_run(out, fsize_limit=6_000_000)  # the checkpoint (~4.2 MB) fits, the bundle not
    T = _check_stopped_cleanly(proc, out, reference, "File too large")
    assert T > 0 and checkpoint_path(out).exists()
    _resume_equals_reference(out, reference)


def test_resume_on_a_still_full_disk_refuses_before_touching_the_bundle(tmp_path, monkeypatch,
                                                                       capsys):
    import hashlib

    from compute.run import cli
    from lcaviz.bundle import space

    out = tmp_path / "run.h5"
    run_lca(RunConfig(**{**SETTINGS, "iters": 6}), out, progress=False, stop_after=3)
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    with monkeypatch.context() as m:
        m.setattr(space, "free_bytes", lambda _: 1000)  # the disk is still full
        rc = cli.main(["--resume", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "could not reopen" in err and "No space left on device" in err
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before  # untouched
    assert cli.main(["--resume", str(out), "--no-progress"]) == 0  # room again: it finishes
    with RunBundle.open(out) as b:
        assert b.status == "complete" and b.n_iters == 6


def test_a_failed_checkpoint_write_leaves_the_previous_one_and_no_tmp(tmp_path, monkeypatch):
    import torch

    from compute.run import checkpoint

    out = tmp_path / "run.h5"
    run_lca(RunConfig(**{**SETTINGS, "iters": 6}), out, progress=False, stop_after=3)
    ckpt = checkpoint_path(out)
    good = ckpt.read_bytes()

    def half_written(obj, path):  # what torch.save does when the disk fills under it
        open(path, "wb").write(b"PK\x03\x04 half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(OSError, match="could not write the checkpoint"):
        checkpoint.save_checkpoint(ckpt, 9, _FakeRun(), _FakeState(), _FakeWriter())
    assert ckpt.read_bytes() == good and not ckpt.with_suffix(".ckpt.tmp").exists()


class _FakeRun:
    """What save_checkpoint reads of a run: a model and its optimizer."""

    def __init__(self):
        import torch

        self.model = torch.nn.Linear(2, 2)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)


class _FakeState:
    @staticmethod
    def state_dict():
        return {}


class _FakeWriter:
    running_total = np.zeros(3)
