"""An old bundle's command reproduces its numbers under today's defaults (issue 25, done-when).

``sample_runs/lenet_sgd_mom0.9.h5`` was made on 2026-11-27, before ``--chunk-size auto`` and
``--bn-group`` existed (its config records ``chunk_size`` 1000, the default then, and no
``chunks``). Its recorded command is run again for its first iteration with the chunk left to
``auto`` (today's default), and the loss, per-layer, per-class and per-parameter LCA compared
with the stored ones. (The recorded ``chunk_size`` 1000 and ``auto`` give bit-identical bundles
here, and both equal the code before issue 25 bit for bit, checked by hand: docs/benchmarks.md.)
For a BatchNorm net, a run made with the old flag (``--chunk-size N``, which meant the
normalisation group) is rerun from its recorded config and as the new flags that say the same
with several groups per pass (``--bn-group N --chunk-size 2N``).
"""

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from compute.run.config import RunConfig
from compute.run.train import run_lca
from lcaviz.bundle.reader import RunBundle

SAMPLE = Path(__file__).resolve().parents[2] / "sample_runs" / "lenet_sgd_mom0.9.h5"
K = 1  # iterations rerun (loss at θ_0 and θ_1, the LCA of the first step: 2 s of CPU each)
BF16_ULP = 2.0 ** -7  # relative spacing of bfloat16, the sample's row storage


def _read(path, k: int) -> dict:
    with h5py.File(path, "r", locking=False) as f:
        out = {"loss": f["loss/train"][:k + 1], "lca_layer": f["lca_layer"][:k],
               "lca_class_layer": f["lca_class_layer"][()][:k] if "lca_class_layer" in f
               else None, "residual": f["lca_residual"][:k]}
        out["config"] = json.loads(f.attrs["config"])
    with RunBundle(path) as b:
        out["rows"] = b.rows(0, k)  # decoded (the sample stores bfloat16)
    return out


def _rerun(tmp_path, cfg: RunConfig, name: str, k: int) -> dict:
    return _read(run_lca(dataclasses.replace(cfg, iters=k), tmp_path / name, progress=False), k)


def _assert_same(a: dict, b: dict) -> None:
    for key in ("loss", "lca_layer", "lca_class_layer", "residual", "rows"):
        if a[key] is not None:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_pre_issue25_sample_reproduces_with_todays_defaults(tmp_path):
    with h5py.File(SAMPLE, "r", locking=False) as f:
        recorded = json.loads(f.attrs["config"])
    assert recorded["chunk_size"] == 1000 and "chunks" not in recorded  # made before issue 25
    old = _read(SAMPLE, K)
    # the command as a user types it today: no --chunk-size, so auto; per-class chunks never
    # cross a class boundary, so (each class < 1,000 examples) it evaluates one class per pass
    # in the same order as the recorded chunk 1,000 did
    cfg = dataclasses.replace(RunConfig.from_dict(recorded), chunk_size="auto")
    new = _rerun(tmp_path, cfg, "auto.h5", K)
    assert new["config"]["chunks"]["chunk_size_requested"] == "auto"
    assert new["config"]["chunks"]["chunks"] == 10
    # equal to float32 summation order (the sample was made with two threads; with two threads
    # on the machine that made it the rerun is bit-identical, with one it differs by ~3e-7)
    np.testing.assert_allclose(new["loss"], old["loss"], rtol=1e-6, atol=0)
    tol = 1e-5 * np.abs(np.diff(old["loss"])).max()  # of the iteration's |ΔL|
    for key in ("lca_layer", "residual", "lca_class_layer"):
        np.testing.assert_allclose(new[key], old[key], rtol=0, atol=tol, err_msg=key)
    # stored rows are bfloat16: at most one rounding step apart, nearly all equal
    np.testing.assert_allclose(new["rows"], old["rows"], rtol=BF16_ULP,
                               atol=1e-6 * np.abs(old["rows"]).max())
    assert np.mean(new["rows"] == old["rows"]) > 0.99


BN = dict(net="resnet20", dataset="synthetic", rgb32=True, train_size=64, val_size=16,
          batch_size=32, iters=1, per_class=False, lr=0.1, seed=0, checkpoint_every=100)


def test_old_chunk_flag_on_a_batchnorm_net_keeps_its_groups(tmp_path):
    """``--chunk-size 32`` on ResNet-20 (old meaning: BatchNorm groups of 32) keeps groups of 32:
    it equals the evaluation before issue 25 (``--bn-group 32 --chunk-size 32``: one group per
    pass, BatchNorm's own forward) to float32 summation order, bit for bit where ``auto`` also
    picks one group per pass; its recorded config run again gives the same bundle bit for bit."""
    with pytest.warns(FutureWarning, match="--bn-group 32"):
        made = _rerun(tmp_path, RunConfig(**BN, chunk_size=32), "old_flag.h5", 1)
    chunks = made["config"]["chunks"]
    assert chunks["bn_group"] == 32 and chunks["chunk_size_requested"] == "auto"
    before = _rerun(tmp_path, RunConfig(**BN, bn_group=32, chunk_size=32), "before.h5", 1)
    assert before["config"]["chunks"]["chunks"] == 2
    if chunks["chunks"] == 2:  # auto chose one group per pass: the same evaluation
        _assert_same(made, before)
    np.testing.assert_allclose(made["loss"], before["loss"], rtol=1e-6, atol=0)
    dL = abs(before["loss"][1] - before["loss"][0])
    np.testing.assert_allclose(made["lca_layer"], before["lca_layer"], rtol=0, atol=1e-5 * dL)
    with pytest.warns(FutureWarning):
        again = _rerun(tmp_path, RunConfig.from_dict(made["config"]), "again.h5", 1)
    assert again["config"]["chunks"] == chunks
    _assert_same(made, again)
