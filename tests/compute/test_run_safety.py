"""Data safety of lca-run: an existing bundle is never replaced without --overwrite, a run killed
before its first checkpoint resumes from iteration 0, and checkpoints follow the clock too."""

import h5py
import numpy as np
import pytest

from compute.run.cli import main as lca_run
from compute.run.config import ConfigError, RunConfig
from compute.run.train import checkpoint_path, run_lca

SMALL = dict(net="mnist_fc", dataset="synthetic", train_size=300, batch_size=50, iters=6,
             chunk_size=128, checkpoint_every=4, seed=2)


def _lca(path):
    with h5py.File(path) as f:
        return f["lca"][()], f["loss/train"][()], f.attrs["status"]


def test_existing_bundle_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run.h5"
    run_lca(RunConfig(**SMALL), out, progress=False)
    before = out.read_bytes()
    with pytest.raises(ConfigError, match="complete run.*--overwrite"):
        run_lca(RunConfig(**{**SMALL, "seed": 9}), out, progress=False)
    assert out.read_bytes() == before  # untouched
    args = ["--net", "mnist_fc", "--dataset", "synthetic", "--train-size", "300", "--iters",
            "2", "--batch-size", "50", "--no-progress", "--out", str(out)]
    assert lca_run(args) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert lca_run(args + ["--overwrite"]) == 0
    assert _lca(out)[0].shape[0] == 2


def test_unfinished_bundle_names_resume(tmp_path):
    out = tmp_path / "run.h5"
    run_lca(RunConfig(**SMALL), out, progress=False, stop_after=3)
    with pytest.raises(ConfigError, match=r"unfinished run.*lca-run --resume .*--overwrite"):
        run_lca(RunConfig(**SMALL), out, progress=False)
    other = tmp_path / "other.h5"
    other.write_text("my notes")
    with pytest.raises(ConfigError, match="not a readable LCA bundle"):
        run_lca(RunConfig(**SMALL), other, progress=False)
    assert other.read_text() == "my notes"


def test_resume_without_checkpoint_restarts_from_zero(tmp_path):
    ref = tmp_path / "ref.h5"
    run_lca(RunConfig(**SMALL), ref, progress=False)
    out = tmp_path / "run.h5"
    run_lca(RunConfig(**SMALL), out, progress=False, stop_after=3)
    checkpoint_path(out).unlink()  # as if killed before the first checkpoint was written
    run_lca(None, out, resume=True, progress=False)
    (a, la, sa), (b, lb, sb) = _lca(ref), _lca(out)
    assert sa == sb == "complete"
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    with pytest.raises(ConfigError, match="complete; there is nothing to resume"):
        run_lca(None, out, resume=True, progress=False)


def test_checkpoints_follow_the_clock(tmp_path, monkeypatch):
    """With checkpoint_seconds tiny, every iteration is checkpointed although
    checkpoint_every is larger than the run."""
    import compute.run.train as train

    saved = []
    real = train.save_checkpoint
    monkeypatch.setattr(train, "save_checkpoint",
                        lambda path, T, *a: (saved.append(T), real(path, T, *a)))
    cfg = RunConfig(**{**SMALL, "checkpoint_every": 1000, "checkpoint_seconds": 1e-9})
    run_lca(cfg, tmp_path / "run.h5", progress=False)
    assert saved == [0, 1, 2, 3, 4, 5]
    saved.clear()
    cfg = RunConfig(**{**SMALL, "checkpoint_every": 1000, "checkpoint_seconds": 1e9})
    run_lca(cfg, tmp_path / "run2.h5", progress=False)
    assert saved == [0]  # only the one at the start
