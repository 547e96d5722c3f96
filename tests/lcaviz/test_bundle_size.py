"""Bundle sizes a user can plan (issue 22.8): one-row chunks, compact counters, no float32
chunk overhead beside bfloat16 rows, repack at close, and the projected size printed at start."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from lcaviz.bundle import RunBundle
from lcaviz.bundle.layout import counter_dtype
from lcaviz.bundle.size import projected_bytes
from lcaviz.bundle.synthetic import SyntheticRun, write_synthetic_bundle

WIDE = (("fc1", (300, 300)), ("fc2", (10, 300)))  # P = 93,310
P = 300 * 300 + 300 + 10 * 300 + 10


def _storage(path, name: str) -> int:
    with h5py.File(path, "r", locking=False) as f:
        return f[name].id.get_storage_size()


def test_three_rows_of_a_long_run_cost_three_rows(tmp_path):
    run = SyntheticRun(layers=WIDE, n_iters=1000, n_classes=3, seed=1)  # planned: 1,000 rows
    path = tmp_path / "short.h5"
    w = run.create_writer(path)
    for _, rec in zip(range(3), run.records(), strict=False):
        w.append(rec)
    w.close("failed", "stopped after 3 iterations")
    # was 8 rows: one 8-row chunk allocated whole (column chunks pad P by 2 here)
    assert 3 * P * 4 <= _storage(path, "lca") <= 3 * P * 4 * 1.001
    with RunBundle.open(path) as b:
        assert b.n_rows == 3


def test_bfloat16_rows_cost_about_two_bytes_per_parameter(tmp_path):
    path = write_synthetic_bundle(tmp_path / "bf16.h5", n_iters=40, layers=WIDE, n_classes=3,
                                  seed=1, storage="bfloat16")
    assert _storage(path, "lca") <= 40 * P * 2 * 1.001
    assert _storage(path, "lca_cumsum") <= (40 // 16) * P * 4 * 1.001  # was 8 rows a chunk
    per_param_iter = path.stat().st_size / P / 40
    assert per_param_iter < 2.4, per_param_iter  # was 3 B (issue 22.8)


def test_counters_take_the_smallest_dtype_that_holds_the_run(tmp_path):
    assert counter_dtype(0) == np.int32  # length unknown (the tracker)
    assert counter_dtype(254) == np.uint8 and counter_dtype(255) == np.uint16
    assert counter_dtype(65534) == np.uint16 and counter_dtype(65535) == np.int32
    path = write_synthetic_bundle(tmp_path / "c.h5", n_iters=300, layers=WIDE, n_classes=3,
                                  seed=1)
    run = SyntheticRun(layers=WIDE, n_iters=300, n_classes=3, seed=1)
    for _ in run.records():  # the same planted run: its counters
        pass
    with h5py.File(path, "r", locking=False) as f:
        assert f["param_help_iters"].dtype == np.uint16
    with RunBundle.open(path) as b:
        assert b.param_help_iters().dtype == np.int32
        np.testing.assert_array_equal(b.param_help_iters(), run.help_iters)
        np.testing.assert_array_equal(b.param_nonzero_iters(), run.nonzero_iters)
    w = SyntheticRun(layers=WIDE, n_iters=200, n_classes=3).create_writer(tmp_path / "o.h5")
    too_many = np.full(P, 300, np.int32)  # beyond uint8: refused, never wrapped to 44
    with pytest.raises(ValueError, match="beyond its uint8 storage"):
        w.set_param_counters(too_many, too_many)
    w.close("failed", "test")


def test_a_gzip_bundle_is_repacked_at_close(tmp_path):
    run = SyntheticRun(layers=WIDE, n_iters=30, n_classes=3, seed=5, storage="bfloat16",
                       compression="gzip")
    live = 0
    for repack_at_close in (False, True):
        path = tmp_path / f"gz_{repack_at_close}.h5"
        w = run.create_writer(path, flush_seconds=0.0)
        w.repack_at_close = repack_at_close
        rng = np.random.default_rng(0)
        for rec in SyntheticRun(layers=WIDE, n_iters=30, n_classes=3, seed=5,
                                storage="bfloat16", compression="gzip").records():
            w.append(rec)  # each checkpoint rewrites the compressed counters, leaving garbage
            counts = rng.integers(0, 30, P).astype(np.int32)
            w.set_param_counters(counts, counts)
        w.close()
        with h5py.File(path, "r", locking=False) as f:
            used = sum(o.id.get_storage_size() for o in _datasets(f))
        size = path.stat().st_size
        if repack_at_close:
            assert size < 1.03 * used + 64_000, (size, used)
            assert size < 0.85 * live
            with RunBundle.open(path) as b, RunBundle.open(tmp_path / "gz_False.h5") as c:
                np.testing.assert_array_equal(b.rows(), c.rows())
                assert b.status == "complete"
        else:
            live = size
            assert size > 1.2 * used  # what close() now removes


def _datasets(f):
    out = []
    f.visititems(lambda _, o: out.append(o) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.mark.parametrize("kw", [{}, {"storage": "bfloat16"}, {"lca_layers": ["fc2"]},
                                {"val_lca": True}, {"save_trajectory": True}, {"stride": 5},
                                {"layers": (("a", (10, 10)),)},
                                {"examples": 5000, "thumbnail": 0},
                                {"examples": 5000, "storage": "bfloat16", "stride": "dense:9,3",
                                 "thumbnail": 0},
                                {"examples": 3000, "val_lca": True, "val_examples": 2000,
                                 "heads": 2, "thumbnail": 0}])
def test_projected_size_is_the_written_size(tmp_path, kw):
    settings = {"n_iters": 40, "layers": WIDE, "n_classes": 10, "seed": 1, **kw}
    path = write_synthetic_bundle(tmp_path / "s.h5", **settings)
    projected = projected_bytes(SyntheticRun(**settings).layout())["total"]
    assert abs(path.stat().st_size - projected) <= 0.02 * projected + 10_000, \
        (path.stat().st_size, projected)


def test_lca_run_prints_the_projected_size_at_start(tmp_path, capsys):
    from compute.run.config import RunConfig
    from compute.run.train import run_lca

    out = tmp_path / "run.h5"
    run_lca(RunConfig(net="mnist_fc", dataset="synthetic", train_size=120, batch_size=30,
                      iters=6, chunk_size=60, seed=1, lca_rows="dense:2,2"), out)
    err = capsys.readouterr().err
    note = next(x for x in err.splitlines() if x.startswith("bundle: ≈"))
    assert "for 6 iterations" in note
    mb = float(note.split("≈ ")[1].split(" MB")[0])
    assert abs(out.stat().st_size / 1e6 - mb) <= 0.05 * mb + 0.1, (note, out.stat().st_size)


def test_the_tracker_prints_its_size_per_1000_steps(tmp_path, capsys):
    import torch

    from compute.integrations.tracker import LCATracker

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    x, y = torch.randn(60, 8), torch.randint(0, 3, (60,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with LCATracker(model, x, y, out=tmp_path / "t.h5", optimizer=opt, chunk_size=60) as lca:
        for _ in range(2):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            lca.step()
    note = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("bundle: ≈"))
    assert "per 1,000 iterations" in note
