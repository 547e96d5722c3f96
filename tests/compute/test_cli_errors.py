"""One clear line, not a traceback (issue 28.12): Ctrl-C, a checkpoint that does not match the
model, and a resume whose stored config was edited (``config_sha256``)."""

from __future__ import annotations

import json

import h5py
import pytest
import torch

from compute.run import cli, train
from compute.run.config import RunConfig
from compute.run.train import checkpoint_path, run_lca
from lcaviz.bundle import RunBundle

SETTINGS = dict(net="mnist_fc", dataset="synthetic", train_size=120, batch_size=30, iters=6,
                chunk_size=60, checkpoint_every=2, seed=3)


def _one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _killed_run(tmp_path, name="run.h5"):
    out = tmp_path / name
    run_lca(RunConfig(**SETTINGS), out, progress=False, stop_after=3)  # killed after 3
    assert checkpoint_path(out).exists()
    return out


def test_ctrl_c_prints_one_line_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run.h5"
    step = train.train_step

    def interrupted(run, t):
        if t == 3:
            raise KeyboardInterrupt
        return step(run, t)

    monkeypatch.setattr(train, "train_step", interrupted)
    rc = cli.main(["--net", "mnist_fc", "--dataset", "synthetic", "--train-size", "120",
                   "--batch-size", "30", "--iters", "6", "--chunk-size", "60",
                   "--checkpoint-every", "2", "--seed", "3", "--no-progress", "--out", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert rc == 130 and line.startswith("lca-run: interrupted")
    assert f"lca-run --resume {out}" in line
    with RunBundle.open(out) as b:
        assert b.status == "failed" and "interrupted" in b.status_reason
    monkeypatch.setattr(train, "train_step", step)
    assert cli.main(["--resume", str(out), "--no-progress"]) == 0
    with RunBundle.open(out) as b:
        assert b.status == "complete" and b.n_iters == 6


def test_resume_with_a_checkpoint_of_another_model_is_one_line(tmp_path, capsys):
    out = _killed_run(tmp_path)
    ckpt = torch.load(checkpoint_path(out), weights_only=True)
    name = next(iter(ckpt["model"]))
    ckpt["model"][name] = torch.zeros(3, 3)  # another model's tensor: shapes do not match
    torch.save(ckpt, checkpoint_path(out))
    rc = cli.main(["--resume", str(out), "--no-progress"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith("lca-run: error: --resume: the checkpoint")
    assert "does not match the model" in line and name in line


def test_resume_with_an_unreadable_checkpoint_is_one_line(tmp_path, capsys):
    out = _killed_run(tmp_path)
    checkpoint_path(out).write_bytes(b"PK\x03\x04 not a checkpoint")
    rc = cli.main(["--resume", str(out), "--no-progress"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and "cannot read the checkpoint" in line


@pytest.mark.parametrize("with_checkpoint", [True, False])
def test_resume_refuses_an_edited_config(tmp_path, capsys, with_checkpoint):
    out = _killed_run(tmp_path)
    if not with_checkpoint:  # killed before its first checkpoint: resume restarts from config
        checkpoint_path(out).unlink()
    with RunBundle.open(out) as b:
        T = b.n_iters
    with h5py.File(out, "r+") as f:
        text = f.attrs["config"]
        assert f.attrs["config_sha256"]
        cfg = json.loads(text)
        cfg["lr"] *= 2  # someone "fixed" the learning rate in the stored config
        f.attrs["config"] = json.dumps(cfg, sort_keys=True)
    rc = cli.main(["--resume", str(out), "--no-progress"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and "was changed after the run started" in line
    with RunBundle.open(out) as b:  # left as it was
        assert b.status == "running" and b.n_iters == T
