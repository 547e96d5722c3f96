"""End-to-end runs of lca-run on small synthetic data: bundle contents, stride, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from compute.run.cli import main as lca_run
from compute.run.config import ConfigError, RunConfig
from compute.run.train import checkpoint_path, minibatch_indices, run_lca

SMALL = dict(net="mnist_fc", dataset="synthetic", train_size=600, val_size=100, batch_size=50,
             iters=12, chunk_size=128, checkpoint_every=4, seed=3)


def _run(tmp_path, name="run.h5", **kw):
    cfg = RunConfig(**{**SMALL, **kw})
    return run_lca(cfg, tmp_path / name, progress=False)


def _read(path):
    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in ("lca", "lca_layer", "lca_class_layer", "loss/train",
                                     "lca_residual", "help_count", "hurt_count",
                                     "param_help_iters", "param_nonzero_iters", "progress",
                                     "loss/minibatch")}
        out["attrs"] = dict(f.attrs)
    return out


def test_bundle_contents_and_conservation(tmp_path):
    b = _read(_run(tmp_path, method="rk4", precision="float64"))
    T, P = 12, 84060
    assert b["attrs"]["status"] == "complete" and b["attrs"]["format"] == "lca-bundle"
    assert list(b["progress"]) == [T, T]
    assert b["lca"].shape == (T, P) and b["loss/train"].shape == (T + 1,)
    cfg = json.loads(b["attrs"]["config"])
    assert cfg["seed"] == 3 and cfg["method"] == "rk4"
    dL = np.diff(b["loss/train"])
    # residual is ΔL − ΣA by definition, and rk4 keeps it tiny in float64
    np.testing.assert_allclose(b["lca_residual"], dL - b["lca_layer"].sum(1), rtol=0, atol=1e-12)
    assert np.abs(b["lca_residual"]).sum() < 1e-2 * np.abs(dL).sum()  # < 1 % of |ΔL|
    np.testing.assert_allclose(b["lca_class_layer"].sum(1), b["lca_layer"], rtol=0, atol=1e-12)
    # layer sums of the stored rows (float32) equal the float64 layer aggregates
    sizes = [784 * 100 + 100, 100 * 50 + 50, 50 * 10 + 10]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for k in range(3):
        seg = b["lca"][:, bounds[k]:bounds[k + 1]].astype(np.float64).sum(1)
        np.testing.assert_allclose(seg, b["lca_layer"][:, k], rtol=1e-5, atol=1e-9)
        np.testing.assert_array_equal(b["help_count"][:, k],
                                      (b["lca"][:, bounds[k]:bounds[k + 1]] < 0).sum(1))
    np.testing.assert_array_equal(b["param_help_iters"], (b["lca"] < 0).sum(0))
    np.testing.assert_array_equal(b["param_nonzero_iters"], (b["lca"] != 0).sum(0))


def test_stride_rows_are_exact_window_sums(tmp_path):
    full = _read(_run(tmp_path, "s1.h5", lca_stride=1, precision="float64"))
    strided = _read(_run(tmp_path, "s5.h5", lca_stride=5, precision="float64"))
    assert strided["lca"].shape[0] == 3  # windows [0,5) [5,10) [10,12)
    for r, (a, b) in enumerate([(0, 5), (5, 10), (10, 12)]):
        np.testing.assert_allclose(strided["lca"][r], full["lca"][a:b].astype(np.float64).sum(0),
                                   rtol=1e-5, atol=1e-10)
    np.testing.assert_array_equal(strided["lca_layer"], full["lca_layer"])


def test_resume_after_stop_equals_uninterrupted(tmp_path):
    ref = _read(_run(tmp_path, "ref.h5"))
    cfg = RunConfig(**SMALL)
    out = tmp_path / "killed.h5"
    run_lca(cfg, out, progress=False, stop_after=7)  # last checkpoint at T=4
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "running" and f["progress"][0] >= 4
    run_lca(None, out, resume=True, progress=False)
    got = _read(out)
    assert got["attrs"]["status"] == "complete" and not checkpoint_path(out).exists()
    for key in ("lca", "lca_layer", "loss/train", "loss/minibatch", "lca_residual",
                "param_help_iters"):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-6, atol=1e-9, err_msg=key)


def test_resume_after_sigkill(tmp_path):
    ref = _read(_run(tmp_path, "ref.h5", iters=30, checkpoint_every=3))
    out = tmp_path / "k.h5"
    args = [sys.executable, "-m", "compute.run.cli", "--no-progress", "--out", str(out)]
    for k, v in {**SMALL, "iters": 30, "checkpoint_every": 3}.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill once a mid-run checkpoint exists
        if checkpoint_path(out).exists() and _progress(out) >= 7:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _progress(out) < 30
    assert lca_run(["--resume", str(out), "--no-progress"]) == 0
    got = _read(out)
    np.testing.assert_allclose(got["lca"], ref["lca"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got["loss/train"], ref["loss/train"], rtol=1e-9)


def _progress(path) -> int:
    try:
        with h5py.File(path, "r", swmr=True, locking=False) as f:
            return int(f["progress"][0])
    except (OSError, KeyError):
        return -1


def test_freeze_and_layer_overrides(tmp_path):
    b = _read(_run(tmp_path, freeze=["fc3"], layer_lr={"fc1": 0.05}, layer_momentum={"fc2": 0.5}))
    assert np.all(b["lca_layer"][:, 2] == 0) and np.all(b["lca"][:, -510:] == 0)
    assert np.all(b["lca_layer"][:, 0] != 0)
    from compute.nets.models import build_model
    from compute.run.optim import build_optimizer

    model = build_model("mnist_fc", (1, 28, 28), 10)
    opt = build_optimizer(model, RunConfig(layer_lr={"fc1": 0.05}, layer_momentum={"fc2": 0.5},
                                           freeze=["fc3"]))
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"fc1", "fc2"}
    assert groups["fc1"]["lr"] == 0.05 and groups["fc2"]["momentum"] == 0.5
    assert groups["fc2"]["lr"] == 0.01


def test_adam_and_momentum_zero_run(tmp_path):
    for kw in ({"optimizer": "adam", "lr": 1e-3}, {"momentum": 0.0}):
        b = _read(_run(tmp_path, f"{kw}.h5".replace(" ", ""), iters=4, **kw))
        assert b["attrs"]["status"] == "complete" and np.all(np.diff(b["loss/train"]) != 0)


def test_minibatch_order_is_a_pure_function_of_t_and_seed():
    a = minibatch_indices(17, 600, 50, seed=1)
    assert torch.equal(a, minibatch_indices(17, 600, 50, seed=1))
    assert not torch.equal(a, minibatch_indices(17, 600, 50, seed=2))
    epoch = torch.cat([minibatch_indices(t, 600, 50, 1) for t in range(12)])
    assert sorted(epoch.tolist()) == list(range(600))  # each example once per epoch


def test_nan_loss_marks_run_failed(tmp_path, capsys):
    out = tmp_path / "nan.h5"
    code = lca_run(["--net", "mnist_fc", "--dataset", "synthetic", "--train-size", "200",
                    "--batch-size", "50", "--iters", "20", "--lr", "1e12", "--no-progress",
                    "--out", str(out)])
    assert code == 1 and "NaN" in capsys.readouterr().err
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "failed" and "NaN" in f.attrs["status_reason"]


@pytest.mark.parametrize("argv, message", [
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--batch-size", "100000", "--dataset", "synthetic", "--train-size", "100"],
     "larger than the training set"),
    (["--freeze", "fc9", "--dataset", "synthetic", "--train-size", "100", "--batch-size", "10"],
     "names no layer"),
    (["--momentum", "1.5"], "--momentum must be in [0, 1)"),
    (["--dataset", "mnist", "--data-root", "/nonexistent-dir"], "lca-data fetch mnist"),
    (["--resume", "/nonexistent.h5"], "no bundle"),
])
def test_bad_arguments_give_clear_errors(tmp_path, capsys, argv, message):
    code = lca_run([*argv, "--iters", "2", "--no-progress", "--out", str(tmp_path / "x.h5")])
    assert code == 2
    assert message in capsys.readouterr().err


def test_unknown_net_is_rejected(capsys):
    with pytest.raises(SystemExit) as e:
        lca_run(["--net", "vgg99"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown --net"):
        RunConfig(net="vgg99").validate()


def test_unwritable_output_directory(tmp_path, capsys):
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    code = lca_run(["--dataset", "synthetic", "--train-size", "100", "--iters", "2",
                    "--no-progress", "--out", str(not_a_dir / "x.h5")])
    assert code == 2 and "cannot write the bundle" in capsys.readouterr().err


def test_precision_check_reports_float32_against_float64(capsys):
    code = lca_run(["--precision-check", "--dataset", "synthetic", "--train-size", "400",
                    "--batch-size", "50", "--chunk-size", "128"])
    out = capsys.readouterr().out
    assert code == 0 and "float32 vs float64" in out
    errors = [float(line.split("error ")[1].split(",")[0]) for line in out.splitlines()
              if "relative L2 error" in line]
    assert len(errors) == 3 and max(errors) < 1e-4 and out.rstrip().splitlines()[-1][:4] == "PASS"


def test_resnet20_batchnorm_run_conserves_and_splits_by_class(tmp_path):
    # BatchNorm net: mixed chunks (fixed partition) and masked per-class backward passes
    b = _read(_run(tmp_path, net="resnet20", rgb32=True, train_size=60, batch_size=20, iters=2,
                   chunk_size=30, lr=0.005, method="rk4"))
    cfg = json.loads(b["attrs"]["config"])
    assert cfg["net"] == "resnet20" and cfg["rgb32"] is True
    assert b["lca"].shape == (2, 269_722)
    dL = np.diff(b["loss/train"])
    assert np.abs(b["lca_residual"]).max() < 1e-2 * np.abs(dL).max() and np.abs(dL).min() > 1e-4
    np.testing.assert_allclose(b["lca_class_layer"].sum(1), b["lca_layer"], rtol=1e-5,
                               atol=1e-7 * np.abs(b["lca_layer"]).max())


def test_channels_last_gives_the_same_lca_and_is_recorded(tmp_path):
    # NHWC activations only change the kernels' summation order: float64 LCA must agree to
    # round-off (rtol 1e-10), and the bundle must say which layout was used.
    kw = dict(net="lenet", precision="float64", iters=3, train_size=200, batch_size=50)
    nhwc = _read(_run(tmp_path, "nhwc.h5", memory_format="channels_last", **kw))
    nchw = _read(_run(tmp_path, "nchw.h5", **kw))
    assert json.loads(nhwc["attrs"]["config"])["memory_format"] == "channels_last"
    assert json.loads(nchw["attrs"]["config"])["memory_format"] == "contiguous"
    np.testing.assert_allclose(nhwc["lca"], nchw["lca"], rtol=1e-10,
                               atol=1e-12 * np.abs(nchw["lca"]).max())
    np.testing.assert_allclose(nhwc["loss/train"], nchw["loss/train"], rtol=1e-12)
    with pytest.raises(ConfigError, match="memory-format"):
        RunConfig(memory_format="nhwc").validate()


def test_compiled_passes_give_the_same_lca(tmp_path):
    # torch.compile only changes kernels: float64 LCA and its per-class split agree to 1e-10
    kw = dict(precision="float64", iters=2, train_size=300, batch_size=50, chunk_size=128)
    comp = _read(_run(tmp_path, "comp.h5", compile=True, **kw))
    eager = _read(_run(tmp_path, "eager.h5", **kw))
    assert json.loads(comp["attrs"]["config"])["compile"] is True
    for key in ("lca", "lca_class_layer", "loss/train"):
        np.testing.assert_allclose(comp[key], eager[key], rtol=1e-10,
                                   atol=1e-13 * np.abs(eager[key]).max())
    # mixed chunks split per class with one retained backward per class: not compilable
    with pytest.raises(ConfigError, match="--no-per-class"):
        _run(tmp_path, "mixed.h5", compile=True, chunking="mixed", **kw)
