"""TF32 flags set and read back for the CUDA branch (no GPU needed), and the automatic
precision check's JSON result."""

import json
import warnings

import pytest
import torch

from compute.lca import backends
from compute.lca.backends import has_fp32_precision_api, precision_flags, set_matmul_precision
from compute.run.config import RunConfig
from compute.run.precision import auto_precision_check, precision_check, precision_check_result

_RAW = [("generic", "all"), ("cuda", "all"), ("mkldnn", "all"), ("cuda", "matmul"),
        ("cuda", "conv"), ("cuda", "rnn"), ("mkldnn", "matmul"), ("mkldnn", "conv"),
        ("mkldnn", "rnn")]


def _snapshot() -> dict:
    state = {"cudnn": torch._C._get_cudnn_allow_tf32(),
             "matmul": torch.get_float32_matmul_precision()}
    if has_fp32_precision_api():
        state.update({k: torch._C._get_fp32_precision_getter(*k) for k in _RAW})
    return state


@pytest.fixture(autouse=True)
def restore_flags():
    """The flags are process-wide: put back exactly what each test found."""
    before = _snapshot()
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.cudnn.allow_tf32 = before["cudnn"]
        torch.set_float32_matmul_precision(before["matmul"])
        for key in _RAW:  # parents first: setting a parent resets its children
            if key in before:
                torch._C._set_fp32_precision_setter(*key, before[key])
    assert _snapshot() == before


def test_torch_213_has_the_fp32_precision_api_and_cudnn_tf32_is_on_by_default():
    # what issue 15 measured and what makes this module necessary
    assert has_fp32_precision_api()
    flags = precision_flags("cuda")
    assert flags["api"] == "fp32_precision"
    assert flags["conv"] == "tf32" and flags["tf32_conv"] is True
    assert flags["matmul"] == "ieee"


def test_cuda_branch_sets_full_fp32_and_reads_it_back():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing printed: no deprecation warning escapes
        flags = set_matmul_precision("cuda", allow_tf32=False)
    b = torch.backends
    assert b.cuda.matmul.fp32_precision == "ieee"
    assert b.cudnn.conv.fp32_precision == "ieee"
    assert b.cudnn.rnn.fp32_precision == "ieee"
    assert b.cudnn.fp32_precision == "ieee"
    # the legacy getters agree (and do not raise on a mixed-API state)
    assert b.cudnn.allow_tf32 is False and b.cuda.matmul.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"
    assert flags["set"] is True and flags["allow_tf32"] is False
    assert (flags["matmul"], flags["conv"], flags["rnn"]) == ("ieee", "ieee", "ieee")
    assert flags["tf32_matmul"] is False and flags["tf32_conv"] is False
    assert flags["torch.backends.cudnn.conv.fp32_precision"] == "ieee"
    assert flags["torch.backends.cudnn.allow_tf32"] is False
    assert json.loads(json.dumps(flags)) == flags


def test_allow_tf32_leaves_tf32_allowed_even_after_a_full_fp32_call():
    set_matmul_precision("cuda:0", allow_tf32=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flags = set_matmul_precision("cuda:0", allow_tf32=True)
    b = torch.backends
    assert b.cuda.matmul.fp32_precision == "tf32" and b.cudnn.conv.fp32_precision == "tf32"
    assert b.cudnn.allow_tf32 is True and b.cuda.matmul.allow_tf32 is True
    assert flags["tf32_matmul"] is True and flags["tf32_conv"] is True
    assert flags["allow_tf32"] is True
    # CPU (oneDNN) matmuls are left as they were
    assert b.mkldnn.matmul.fp32_precision == "none"
    assert json.loads(json.dumps(flags)) == flags


def test_cpu_device_changes_nothing_and_reports_the_flags():
    before = precision_flags("cpu")
    flags = set_matmul_precision("cpu", allow_tf32=False)
    assert flags["set"] is False and flags["device_type"] == "cpu"
    assert {k: v for k, v in flags.items() if k not in ("set", "allow_tf32")} == before
    assert flags["tf32_conv"] is True  # torch's default, untouched: it only matters on CUDA


def test_legacy_branch_for_torch_without_fp32_precision(monkeypatch):
    monkeypatch.setattr(backends, "has_fp32_precision_api", lambda: False)
    flags = set_matmul_precision("cuda", allow_tf32=False)
    assert flags["api"] == "allow_tf32"
    assert torch.backends.cudnn.allow_tf32 is False
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert flags["tf32_conv"] is False and flags["tf32_matmul"] is False
    flags = set_matmul_precision("cuda", allow_tf32=True)
    assert flags["tf32_conv"] is True and flags["tf32_matmul"] is True
    assert json.loads(json.dumps(flags)) == flags


def test_resolve_follows_torchs_parent_rule():
    assert backends._resolve("none", ("ieee", "none")) == "ieee"
    assert backends._resolve("none", ("none", "tf32")) == "tf32"
    assert backends._resolve("tf32", ("ieee", "ieee")) == "tf32"
    assert backends._resolve("none", ("none", "none")) == "ieee"
    assert backends._resolve("bf16", ()) == "ieee"  # cuda ignores bf16


SMALL = dict(net="mnist_fc", dataset="synthetic", train_size=400, batch_size=50, chunk_size=128,
             seed=3)


def test_precision_check_result_is_json_and_passes_for_float32_on_cpu():
    r = precision_check_result(RunConfig(**SMALL), steps=2)
    assert json.loads(json.dumps(r)) == r
    assert len(r["rel_error"]) == len(r["sign_agreement"]) == len(r["signs_flipped"]) == 2
    assert 0 < r["max_rel_error"] <= 1e-4  # float32 differs from float64, but not by much
    assert r["min_sign_agreement"] >= 0.999 and r["passed"] is True
    assert set(r["layer_rel_error"]) == {"fc1", "fc2", "fc3"}
    assert max(r["layer_rel_error"].values()) >= r["max_rel_error"] * 0.999
    assert r["backend"]["set"] is False and r["backend"]["device_type"] == "cpu"


def test_precision_check_fails_beyond_the_thresholds(monkeypatch):
    import compute.run.precision as precision

    monkeypatch.setattr(precision, "MAX_REL_ERROR", 1e-12)  # float32 cannot meet this
    r = precision.precision_check_result(RunConfig(**SMALL), steps=1)
    assert r["passed"] is False
    assert precision_check(RunConfig(**SMALL), steps=1).splitlines()[-1].startswith("FAIL")


def test_auto_precision_check_only_for_float32_on_cuda():
    assert auto_precision_check(RunConfig(**SMALL)) is None  # CPU
    assert auto_precision_check(RunConfig(**SMALL, device="cuda", precision="float64")) is None


def test_check_subset_takes_whole_chunks_spread_over_the_set():
    from compute.run.precision import _check_subset

    idx = _check_subset(1000, 128, 200)  # 200 examples round up to two chunks of 128
    assert idx is not None and len(idx) == 256
    assert idx[0] == 0 and idx[-1] >= 990 and bool((idx.diff() > 0).all())  # spread, unique
    assert _check_subset(1000, 128, 950) is None  # 8 chunks would cover the whole set
    assert _check_subset(1000, 128, None) is None


def test_precision_check_on_a_subset_compares_those_examples(monkeypatch):
    import compute.run.precision as precision

    r = precision_check_result(RunConfig(**SMALL), steps=2, max_examples=200)
    assert (r["examples"], r["examples_total"]) == (256, 400)
    assert 0 < r["max_rel_error"] <= 1e-4 and r["passed"] is True
    full = precision_check_result(RunConfig(**SMALL), steps=2)
    assert (full["examples"], full["examples_total"]) == (400, 400)
    assert r["rel_error"] != full["rel_error"]  # a different loss was allocated
    monkeypatch.setattr(precision, "MAX_REL_ERROR", 1e-12)  # and it still fails where it should
    assert precision_check_result(RunConfig(**SMALL), steps=1, max_examples=200)["passed"] is False


def test_the_automatic_check_uses_the_subset(monkeypatch):
    import compute.run.precision as precision

    seen = {}
    monkeypatch.setattr(precision, "precision_check_result",
                        lambda cfg, steps, max_examples=None: seen.update(n=max_examples))
    precision.auto_precision_check(RunConfig(**SMALL, device="cuda"))
    assert seen["n"] == precision.AUTO_CHECK_EXAMPLES


def test_a_channels_last_run_is_checked_in_channels_last(monkeypatch):
    import compute.run.precision as precision

    layouts = []
    real = precision.FullDatasetObjective

    def recording(model, x, y, **kw):
        layouts.append(x.is_contiguous(memory_format=torch.channels_last))
        return real(model, x, y, **kw)

    monkeypatch.setattr(precision, "FullDatasetObjective", recording)
    cfg = RunConfig(**{**SMALL, "net": "lenet", "memory_format": "channels_last"})
    r = precision_check_result(cfg, steps=1, max_examples=100)
    assert r["examples"] == 128 and layouts == [True, True]  # the float32 and float64 probes
