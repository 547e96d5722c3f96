"""Per-example LCA under torchrun (issue 24): a user's DistributedDataParallel loop with
``LCATracker(per_example=...)`` on 2 gloo ranks. The tracker shards the fixed set's chunks over
the ranks (compute/lca/distributed.py) and the per-example values and losses are summed over
them, so rank 0 writes the bundle one process writes, to float64 rounding: an MLP with
per-class LCA (every example, 7 uneven chunks) and a tiny GPT-2 through the Hugging Face
wrapper (a seeded subset of 20 sequences)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.compute.test_distributed import _free_port

ROOT = Path(__file__).parents[2]
LOOP = Path(__file__).with_name("_per_example_ddp_loop.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
FLOAT64 = ("lca_example_cumsum", "loss_example_last", "lca_layer")
FLOAT32 = ("lca_example", "loss_example", "lca_example_cumsum_rows")


def _read(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in (*FLOAT64, *FLOAT32, "examples/index")}
        out["status"], out["world"] = f.attrs["status"], f.attrs["config"]
    return out


def _run(out_dir: Path, ranks: int) -> None:
    if ranks == 1:
        cmd = [sys.executable, str(LOOP)]
    else:
        torchrun = shutil.which("torchrun")
        if torchrun is None:
            pytest.fail("torchrun (installed with torch) is not on PATH")
        cmd = [torchrun, f"--nproc-per-node={ranks}", "--master-addr=127.0.0.1",
               f"--master-port={_free_port()}", str(LOOP)]
    out_dir.mkdir()
    res = subprocess.run([*cmd, str(out_dir)], env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """One process, then 2 ranks, each writing both bundles (mlp.h5, gpt2.h5)."""
    d = tmp_path_factory.mktemp("per_example_ddp")
    _run(d / "one", ranks=1)
    _run(d / "two", ranks=2)
    return d


@pytest.mark.parametrize("model, n", [("mlp", 200), ("gpt2", 20)])
def test_two_ranks_write_the_per_example_values_of_one_process(runs, model, n):
    assert sorted(os.listdir(runs / "two")) == ["gpt2.h5", "mlp.h5"]  # rank 1 wrote nothing
    one, two = _read(runs / "one" / f"{model}.h5"), _read(runs / "two" / f"{model}.h5")
    assert one["status"] == two["status"] == "complete"
    assert '"world_size": 2' in two["world"] and '"world_size": 1' in one["world"]
    np.testing.assert_array_equal(two["examples/index"], one["examples/index"])
    assert one["lca_example"].shape[1] == n and np.abs(one["lca_example"]).max() > 0
    # float64: the shards' sum and DDP's mean of half-batch gradients only reorder additions
    for k in FLOAT64:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-9, atol=1e-15, err_msg=k)
    for k in FLOAT32:  # float32 of those float64 values: equal, or one rounding apart
        np.testing.assert_allclose(two[k], one[k], rtol=2.0**-23, atol=1e-30, err_msg=k)
