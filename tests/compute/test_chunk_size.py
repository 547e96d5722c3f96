"""chunk_size="auto": measured on the first evaluation, within its budget, loss unchanged."""

from __future__ import annotations

import dataclasses
import json

import h5py
import pytest
import torch
from torch import nn

from compute.lca.chunk_size import CPU_BUDGET_BYTES, CPU_PEAK_FACTOR
from compute.lca.objective import FullDatasetObjective
from compute.run.cli import build_parser, config_from_args
from compute.run.config import ConfigError, RunConfig
from compute.run.defaults import choose_memory_format, cuda_backend_defaults
from compute.run.train import build_run, run_lca

TOL = 1e-12


def _mlp_data(n: int = 300):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3)).double()
    x = torch.randn(n, 10, dtype=torch.float64)
    return model, x, torch.randint(0, 3, (n,))


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_auto_chunks_are_class_pure_and_exact():
    model, x, y = _mlp_data()
    auto = FullDatasetObjective(model, x, y, n_classes=3, per_class=True)
    assert auto.chunk_size is None  # measured on the first evaluation, not before
    ev = auto.evaluate()
    ref = FullDatasetObjective(model, x, y, n_classes=3, per_class=True, chunk_size=7).evaluate()
    assert auto.chunking == "class" and auto.chunk_info["chunk_size"] == 300
    for s, e, c in auto.all_chunks:  # one chunk per class here: never across a boundary
        assert set(auto.y[s:e].tolist()) == {c}
    assert abs(float(ev.loss) - float(ref.loss)) <= TOL * float(ref.loss)
    assert _rel(ev.grad, ref.grad) <= TOL and _rel(ev.class_grad, ref.class_grad) <= TOL


def test_the_chunk_fits_the_budget_and_follows_it():
    model, x, y = _mlp_data()
    first = FullDatasetObjective(model, x, y, n_classes=3)
    first.evaluate()
    per_example = first.chunk_info["bytes_per_example"]
    # saved for backward per example: ReLU's 32 outputs and the 3 log-probabilities (float64)
    # at least, every activation at most; times the factor for the gradients flowing back
    assert CPU_PEAK_FACTOR * 32 * 8 <= per_example <= CPU_PEAK_FACTOR * (32 + 32 + 3 + 3) * 8
    budget = int(first.chunk_info["fixed_bytes"] + 40 * per_example)
    small = FullDatasetObjective(model, x, y, n_classes=3, memory_budget=budget)
    ev = small.evaluate()
    assert small.chunk_size <= 40 and small.chunk_info["estimated_bytes"] <= budget
    assert len(small.all_chunks) == -(-300 // small.chunk_size)
    assert small.chunk_info["budget_rule"] == "given"
    assert _rel(ev.grad, first.evaluate().grad) <= TOL
    with pytest.raises(ValueError, match="chunk_size must be a positive integer or 'auto'"):
        FullDatasetObjective(model, x, y, n_classes=3, chunk_size="big")


def test_cli_and_config_accept_auto_and_check_groups():
    parse = build_parser().parse_args
    assert config_from_args(parse([])).chunk_size == "auto"
    assert config_from_args(parse(["--chunk-size", "AUTO"])).chunk_size == "auto"
    cfg = config_from_args(parse(["--chunk-size", "500", "--bn-group", "250"]))
    assert (cfg.chunk_size, cfg.bn_group) == (500, 250)
    cfg.validate()
    with pytest.raises(SystemExit):
        parse(["--chunk-size", "lots"])
    for bad, match in [(dict(chunk_size=0), "--chunk-size must be"),
                       (dict(bn_group=0), "--bn-group must be"),
                       (dict(chunk_size=300, bn_group=200), "whole number of --bn-group")]:
        with pytest.raises(ConfigError, match=match):
            RunConfig(**bad).validate()
    old = RunConfig.from_dict({"chunk_size": 1000, "memory_format": "contiguous"})
    assert (old.chunk_size, old.bn_group) == (1000, None)  # an old bundle's config still loads


SMALL = dict(net="mnist_fc", dataset="synthetic", train_size=300, batch_size=50, iters=2,
             checkpoint_every=10, seed=4)


def test_a_run_records_its_chunks_and_layout(tmp_path):
    out = run_lca(RunConfig(**SMALL), tmp_path / "auto.h5", progress=False)
    with h5py.File(out, "r") as f:
        cfg = json.loads(f.attrs["config"])
    assert cfg["chunk_size"] == "auto" and cfg["chunks"]["chunk_size_requested"] == "auto"
    assert isinstance(cfg["chunks"]["chunk_size"], int) and cfg["chunks"]["chunks"] >= 10
    assert cfg["chunks"]["budget_bytes"] == CPU_BUDGET_BYTES
    assert cfg["memory_format"] == "contiguous"
    assert cfg["memory_format_choice"]["memory_format_requested"] == "auto"
    assert cfg["precision_flags"]["cudnn_benchmark"] is False
    with pytest.raises(ConfigError, match="--bn-group only applies to nets with BatchNorm"):
        build_run(RunConfig(**SMALL, bn_group=100))


def _fake_check(passes: dict):
    calls = []

    def check(cfg):
        calls.append(cfg.memory_format)
        ok = passes[cfg.memory_format]
        return {"passed": ok, "max_rel_error": 1e-5 if ok else 1e-3, "min_sign_agreement": 1.0}

    return check, calls


def test_memory_format_auto_follows_the_precision_check():
    cuda = RunConfig(net="resnet20", device="cuda")
    check, calls = _fake_check({"channels_last": True, "contiguous": True})
    cfg, result, rec = choose_memory_format(cuda, check)
    assert cfg.memory_format == "channels_last" and calls == ["channels_last"]
    assert rec["channels_last_check"]["passed"] and result["passed"]
    check, calls = _fake_check({"channels_last": False, "contiguous": True})
    cfg, result, rec = choose_memory_format(cuda, check)
    assert cfg.memory_format == "contiguous" and calls == ["channels_last", "contiguous"]
    assert rec["reason"] == "channels_last failed the precision check" and result["passed"]
    for other in (RunConfig(net="resnet20"), RunConfig(net="mnist_fc", device="cuda")):
        check, calls = _fake_check({"channels_last": True, "contiguous": True})
        cfg, _, rec = choose_memory_format(other, check)
        assert cfg.memory_format == "contiguous" and calls == ["contiguous"]
    asked = dataclasses.replace(cuda, memory_format="channels_last")
    check, calls = _fake_check({"channels_last": False, "contiguous": True})
    assert choose_memory_format(asked, check)[0].memory_format == "channels_last"


def test_cudnn_benchmark_only_for_cuda_runs():
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        assert cuda_backend_defaults(torch.device("cpu")) == {"cudnn_benchmark": False}
        assert torch.backends.cudnn.benchmark is False
        cuda_backend_defaults(torch.device("cuda"))  # setting the flag needs no GPU
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = before


def test_lca_run_chunk_size_on_a_batchnorm_net_keeps_meaning_the_group():
    bn = dict(net="resnet20", dataset="synthetic", rgb32=True, train_size=60, batch_size=20)
    with pytest.warns(FutureWarning, match="--bn-group 30"):
        old = build_run(RunConfig(**bn, chunk_size=30)).train_lca.objective
    assert (old.bn_group, old.chunk_request) == (30, "auto")
    assert old.chunk_info["chunk_size_as_bn_group"] == 30
    new = build_run(RunConfig(**bn, bn_group=20, chunk_size=40)).train_lca.objective
    assert (new.bn_group, new.chunk_size) == (20, 40)
    assert new.all_chunks == [(0, 40, -1), (40, 60, -1)]
    assert build_run(RunConfig(**bn)).train_lca.objective.bn_group == 1000  # today's loss


def test_two_gloo_processes_cut_the_same_auto_partition(tmp_path):
    from tests.compute.test_distributed import _read, _single, _torchrun

    _single(tmp_path / "one.h5", ["--chunk-size", "auto"])
    res = _torchrun(2, ["--out", str(tmp_path / "two.h5"), "--chunk-size", "auto"])
    assert res.returncode == 0, res.stderr[-2000:]
    one, _ = _read(tmp_path / "one.h5")
    two, attrs = _read(tmp_path / "two.h5")
    chunks = json.loads(attrs["config"])["chunks"]
    assert chunks["chunk_size_requested"] == "auto" and chunks["chunks"] >= 1
    for k in one:  # float64; only the order of the cross-process sum differs
        assert torch.allclose(torch.as_tensor(two[k]), torch.as_tensor(one[k]), rtol=1e-9,
                              atol=1e-15), k


def test_lca_run_prints_the_deprecation_as_one_note(tmp_path, capsys):
    from compute.run.cli import main

    args = ["--net", "resnet20", "--dataset", "synthetic", "--rgb32", "--train-size", "40",
            "--batch-size", "20", "--iters", "1", "--chunk-size", "20", "--no-per-class",
            "--no-progress", "--out", str(tmp_path / "r.h5")]
    import warnings

    before = warnings.formatwarning
    try:
        with pytest.warns(FutureWarning):  # pytest records it; the format is checked directly
            assert main(args) == 0
        note = warnings.formatwarning("old --chunk-size", FutureWarning, "train.py", 1)
        assert note == "lca-run: note: old --chunk-size\n"
        assert "UserWarning" in warnings.formatwarning("other", UserWarning, "x.py", 1)
    finally:
        warnings.formatwarning = before
    with h5py.File(tmp_path / "r.h5", "r") as f:
        chunks = json.loads(f.attrs["config"])["chunks"]
    assert chunks["bn_group"] == 20 and chunks["chunk_size_as_bn_group"] == 20
