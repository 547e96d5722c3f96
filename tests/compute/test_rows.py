"""lca-run's per-parameter rows: a dense-then-windowed schedule, a subset of layers, bfloat16.
Every stored row must equal the exact sum of the per-iteration LCA of the same run."""

import h5py
import numpy as np

from compute.run.config import RunConfig
from compute.run.train import run_lca
from lcaviz.bundle import RunBundle

SMALL = dict(net="mnist_fc", dataset="synthetic", train_size=400, batch_size=50, iters=11,
             chunk_size=128, checkpoint_every=4, seed=7, precision="float64", val_lca=True,
             val_size=100)


def _run(path, **kw):
    return run_lca(RunConfig(**{**SMALL, **kw}), path, progress=False)


def test_schedule_layers_and_storage_against_per_iteration_rows(tmp_path):
    ref = _run(tmp_path / "ref.h5")  # one row per iteration, every layer, float32
    dense = _run(tmp_path / "dense.h5", lca_rows="dense:4,3")
    sub = _run(tmp_path / "sub.h5", lca_layers=["fc1", "fc3"], lca_storage="bfloat16")
    with RunBundle.open(ref) as r, RunBundle.open(dense) as d, RunBundle.open(sub) as s:
        assert d.row_windows.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4], [4, 7], [7, 10],
                                         [10, 11]]
        for source in ("lca", "lca_val"):
            every = r.rows(source=source).astype(np.float64)
            for k, (a, e) in enumerate(d.row_windows):
                # the row is the float32 of an exact float64 window sum
                np.testing.assert_allclose(d.row(k, source=source), every[a:e].sum(0),
                                           rtol=2e-6, atol=1e-12)
        np.testing.assert_array_equal(d.lca_layer(), r.lca_layer())
        np.testing.assert_array_equal(s.lca_layer(), r.lca_layer())
        assert s.row_layers == [0, 2] and s.storage == "bfloat16"
        for layer in ("fc1", "fc3"):
            x, y = r.layer_window(layer), s.layer_window(layer)
            np.testing.assert_array_equal(np.sign(y), np.sign(x))
            nz = x != 0
            assert np.max(np.abs(y[nz] - x[nz]) / np.abs(x[nz])) <= 2.0 ** -8
        np.testing.assert_array_equal(s.param_help_iters(), r.param_help_iters())
    with h5py.File(sub) as f:
        cfg = f.attrs["config"]
        assert '"lca_layers": ["fc1", "fc3"]' in cfg and f.attrs["lca_rows_spec"] == "stride:1"
