"""Two writers on one bundle path (issue 28.11): exactly one wins, the loser says so in one line
before touching the bundle, its checkpoint or anything else."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import pytest

from compute.run import cli
from compute.run.train import checkpoint_path
from lcaviz.bundle import RunBundle
from lcaviz.bundle.lock import WriterLock, lock_path

FLAGS = ["--net", "mnist_fc", "--dataset", "synthetic", "--train-size", "120", "--batch-size",
         "30", "--iters", "4", "--chunk-size", "60", "--no-progress"]


def test_a_second_writer_is_refused_before_it_touches_anything(tmp_path, capsys):
    out = tmp_path / "race.h5"
    out.write_bytes(b"the first writer's bundle")  # --overwrite must not replace it either
    with WriterLock(out):  # the first writer holds the path
        rc = cli.main([*FLAGS, "--out", str(out), "--overwrite"])
        assert lock_path(out).read_text().strip() == str(os.getpid())
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lca-run: error:"), err
    assert f"being written by process {os.getpid()}" in lines[0] and "another --out" in lines[0]
    assert out.read_bytes() == b"the first writer's bundle"
    assert not checkpoint_path(out).exists() and not lock_path(out).exists()
    # once the lock is free (its holder finished or died) the path is writable again
    assert cli.main([*FLAGS, "--out", str(out), "--overwrite"]) == 0
    assert not lock_path(out).exists()


def test_a_stale_lock_file_of_a_killed_writer_does_not_block(tmp_path):
    out = tmp_path / "stale.h5"
    lock_path(out).write_text("999999999\n")  # left by a SIGKILLed writer: nobody holds it
    assert cli.main([*FLAGS, "--out", str(out)]) == 0
    with RunBundle.open(out) as b:
        assert b.status == "complete"


@pytest.mark.timeout(600)
def test_two_lca_run_at_once_on_one_out_exactly_one_wins(tmp_path):
    out = tmp_path / "race.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "compute.run.cli", *FLAGS, "--out", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], results
    (_, won, _), = [r for r in results if r[0] == 0]
    (_, _, lost), = [r for r in results if r[0] == 2]
    assert won.strip() == f"wrote {out}"
    assert "Traceback" not in lost and len(lost.strip().splitlines()) == 1, lost
    # whichever came second: refused while the first ran, or told the run is complete
    assert lost.startswith("lca-run: error: ") and str(out) in lost, lost
    with RunBundle.open(out) as b, h5py.File(out, "r", locking=False) as f:
        assert b.status == "complete" and b.n_iters == 4
        assert len(f["params/names"]) > 0 and f["params/offsets"][-1] > 0
    assert not lock_path(out).exists()
