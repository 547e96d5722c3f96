"""lca-run records the effective matmul/conv precision in every bundle, and every float32 CUDA
run's automatic precision check (the CUDA branch exercised through the backends' flags)."""

import json

import h5py
import torch

import compute.run.build as build
import compute.run.train as train
from compute.lca.backends import set_matmul_precision
from compute.run.cli import build_parser, config_from_args
from compute.run.config import RunConfig

SMALL = dict(net="mnist_fc", dataset="synthetic", train_size=200, batch_size=50, iters=2,
             chunk_size=128, seed=1)


def _config(path):
    with h5py.File(path) as f:
        return json.loads(f.attrs["config"])


def test_cpu_run_records_its_precision_flags(tmp_path):
    out = train.run_lca(RunConfig(**SMALL), tmp_path / "a.h5", progress=False)
    cfg = _config(out)
    assert cfg["allow_tf32"] is False and cfg["precision_flags"]["device_type"] == "cpu"
    assert "precision_check" not in cfg  # CPU: nothing to check against


def test_cuda_branch_sets_full_fp32_and_records_the_check(tmp_path, monkeypatch):
    saved = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.fp32_precision,
             torch.backends.cudnn.conv.fp32_precision, torch.get_float32_matmul_precision())
    seen = {}

    def as_if_cuda(device, allow_tf32=False):
        seen["allow_tf32"] = allow_tf32
        return set_matmul_precision("cuda", allow_tf32)  # the CUDA branch, no GPU needed

    check = {"passed": True, "max_rel_error": 2e-5, "min_sign_agreement": 0.9999}
    monkeypatch.setattr(build, "set_matmul_precision", as_if_cuda)  # build_run calls it
    monkeypatch.setattr(train, "auto_precision_check", lambda cfg: check)
    try:
        out = train.run_lca(RunConfig(**SMALL), tmp_path / "b.h5", progress=False)
        cfg = _config(out)
        assert seen["allow_tf32"] is False
        assert cfg["precision_flags"]["matmul"] == "ieee"
        assert cfg["precision_flags"]["conv"] == "ieee"
        assert cfg["precision_check"] == check
        args = build_parser().parse_args(["--allow-tf32", "--device", "cpu"])
        assert config_from_args(args).allow_tf32 is True
        out = train.run_lca(RunConfig(**SMALL, allow_tf32=True), tmp_path / "c.h5",
                            progress=False)
        assert seen["allow_tf32"] is True
        assert _config(out)["precision_flags"]["conv"] == "tf32"
    finally:
        torch.backends.cuda.matmul.fp32_precision = saved[0]
        torch.backends.cudnn.fp32_precision = saved[1]
        torch.backends.cudnn.conv.fp32_precision = saved[2]
        torch.set_float32_matmul_precision(saved[3])
