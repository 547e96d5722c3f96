"""Format version 2: row schedules (``lca_rows``), per-layer row selection (``lca_columns``),
bfloat16 rows; version-1 bundles still open."""

import h5py
import numpy as np
import pytest

from lcaviz.bundle import FORMAT_VERSION, MissingRowsError, RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle

LAYERS = (("fc1", (12, 20)), ("fc2", (6, 12)), ("fc3", (3, 6)))
T = 23


def _bundle(path, **kw):
    return write_synthetic_bundle(path, n_iters=T, layers=LAYERS, n_classes=3, seed=5,
                                  val_lca=True, **kw)


@pytest.fixture(scope="module")
def per_iteration(tmp_path_factory):
    """Stride 1: every iteration's LCA (the synthetic draws do not depend on the schedule)."""
    return _bundle(tmp_path_factory.mktemp("v2") / "s1.h5")


@pytest.mark.parametrize("status", ["complete", "running"])
def test_dense_schedule_rows_are_exact_window_sums(tmp_path, per_iteration, status):
    path = _bundle(tmp_path / "dense.h5", stride="dense:7,5", status=status)
    with RunBundle.open(path) as b, RunBundle.open(per_iteration) as one:
        expect = [[t, t + 1] for t in range(7)] + [[7, 12], [12, 17], [17, 22]]
        if status == "complete":
            expect.append([22, 23])
        assert b.format_version == FORMAT_VERSION and b.row_windows.tolist() == expect
        assert b.row_schedule.spec == "dense:7,5" and b.n_rows == len(expect)
        for source in ("lca", "lca_val"):
            rows = b.rows(source=source)
            every = one.rows(source=source)
            for r, (a, e) in enumerate(expect):
                np.testing.assert_allclose(rows[r], every[a:e].sum(0, dtype=np.float64),
                                           rtol=1e-6, atol=1e-12)
        np.testing.assert_array_equal(b.single_iteration_rows(), np.arange(7) if
                                      status == "running" else [0, 1, 2, 3, 4, 5, 6, 10])
        assert b.row_of_iteration(0) == 0 and b.row_of_iteration(9) == 7
        assert b.iteration_of_row(8) == (12, 17)
        np.testing.assert_allclose(b.cumulative(8), one.rows()[:17].sum(0, dtype=np.float64),
                                   rtol=1e-5, atol=1e-9)
        np.testing.assert_array_equal(b.lca_layer(), one.lca_layer())


def test_bfloat16_rows_round_trip_within_2e_8(tmp_path, per_iteration):
    path = _bundle(tmp_path / "bf.h5", storage="bfloat16")
    with h5py.File(path) as f:
        assert f["lca"].dtype == np.uint16 and f["lca"].attrs["encoding-type"] == \
            "bfloat16-array" and f["lca_cumsum"].dtype == np.float32
    with RunBundle.open(path) as b, RunBundle.open(per_iteration) as one:
        assert b.storage == "bfloat16"
        x, y = one.rows(), b.rows()
        assert y.dtype == np.float32
        np.testing.assert_array_equal(np.sign(y), np.sign(x))
        nz = x != 0
        assert np.max(np.abs(y[nz] - x[nz]) / np.abs(x[nz])) <= 2.0 ** -8
        # aggregates are exact, not rounded: identical to the float32 run's
        np.testing.assert_array_equal(b.lca_layer(), one.lca_layer())
        np.testing.assert_array_equal(b.help_count(), one.help_count())
        # cumulative sums: exact float64 running sums (stored as float32) every 16 rows ...
        assert b._dataset("lca_cumsum").attrs["every"] == 16
        np.testing.assert_allclose(b.cumulative(15), x[:16].sum(0, dtype=np.float64),
                                   rtol=1e-6, atol=1e-12)
        # ... and in between, the rounding of at most 15 bfloat16 rows
        exact = x.sum(0, dtype=np.float64)
        bound = 2.0 ** -8 * np.abs(x[16:]).sum(0, dtype=np.float64) + 1e-6 * np.abs(exact)
        assert np.all(np.abs(b.cumulative(T - 1) - exact) <= bound + 1e-12)


def test_layer_subset_stores_only_those_columns(tmp_path, per_iteration):
    path = _bundle(tmp_path / "sub.h5", lca_layers=["fc1", "fc3"])
    with RunBundle.open(path) as b, RunBundle.open(per_iteration) as one:
        P = b.n_params
        sizes = [12 * 20 + 12, 6 * 12 + 6, 3 * 6 + 3]
        assert b.n_row_cols == sizes[0] + sizes[2] and b.rows().shape == (T, b.n_row_cols)
        assert [b.has_rows(x) for x in ("fc1", "fc2", "fc3")] == [True, False, True]
        assert b.row_layers == [0, 2]
        for layer in ("fc1", "fc3"):
            np.testing.assert_array_equal(b.layer_window(layer, 3, 9),
                                          one.layer_window(layer, 3, 9))
            cols = b.layer_columns(layer)
            np.testing.assert_allclose(b.cumulative(T - 1, cols),
                                       one.cumulative(T - 1, cols), rtol=1e-6)
        np.testing.assert_array_equal(b.param_curve(P - 1), one.param_curve(P - 1))
        with pytest.raises(MissingRowsError, match="'fc2' has no per-parameter rows"):
            b.layer_window("fc2")
        with pytest.raises(MissingRowsError):
            b.param_curve(sizes[0] + 1)
        idx = np.array([0, sizes[0] + sizes[1], P - 1])
        np.testing.assert_array_equal(b.rows(0, 4, idx), one.rows(0, 4, idx))
        np.testing.assert_array_equal(b.stored_column_layers(),
                                      np.repeat([0, 2], [sizes[0], sizes[2]]))
        # aggregates and counters stay for every layer
        np.testing.assert_array_equal(b.lca_layer(), one.lca_layer())
        np.testing.assert_array_equal(b.param_help_iters(), one.param_help_iters())


def test_aggregates_only_bundle(tmp_path):
    path = _bundle(tmp_path / "none.h5", lca_layers=[])
    with RunBundle.open(path) as b:
        assert b.n_row_cols == 0 and b.row_layers == [] and b.lca_layer().shape == (T, 3)


def _as_version_1(src, dst, stride):
    """The same bundle as version 1 wrote it: no lca_rows / lca_columns, windows of stride."""
    with h5py.File(src) as f, h5py.File(dst, "w", libver="latest") as g:
        for k, v in f.attrs.items():
            if k not in ("lca_rows_spec", "lca_storage", "writer_pid"):
                g.attrs[k] = v
        g.attrs["format_version"] = 1
        for name in f:
            if name not in ("lca_rows", "lca_columns"):
                f.copy(name, g)
    return dst


def test_version_1_bundle_still_opens(tmp_path, per_iteration):
    v2 = _bundle(tmp_path / "s4.h5", stride=4)
    v1 = _as_version_1(v2, tmp_path / "v1.h5", 4)
    with RunBundle.open(v1) as old, RunBundle.open(v2) as new:
        assert old.format_version == 1 and new.format_version == FORMAT_VERSION
        np.testing.assert_array_equal(old.row_windows, new.row_windows)
        assert old.row_windows[-1].tolist() == [20, 23] and old.storage == "float32"
        np.testing.assert_array_equal(old.rows(), new.rows())
        np.testing.assert_array_equal(old.cumulative(3), new.cumulative(3))
        assert old.row_of_iteration(9) == 2 and old.row_layers == [0, 1, 2]


def test_gzip_rows_are_lossless_and_smaller(tmp_path, per_iteration):
    path = _bundle(tmp_path / "gz.h5", compression="gzip", storage="bfloat16")
    plain = _bundle(tmp_path / "plain.h5", storage="bfloat16")
    with h5py.File(path) as f:
        assert f["lca"].compression == "gzip" and f.attrs["lca_compression"] == "gzip"
    with RunBundle.open(path) as b, RunBundle.open(plain) as p:
        np.testing.assert_array_equal(b.rows(), p.rows())
        np.testing.assert_array_equal(b.cumulative(T - 1), p.cumulative(T - 1))
    assert path.stat().st_size < plain.stat().st_size


def test_repack_shrinks_a_live_written_gzip_bundle_without_changing_it(tmp_path):
    from lcaviz.bundle.repack import repack

    # counters rewritten every iteration: each rewrite of a compressed chunk leaves the old
    # one's space behind, and BundleWriter.close repacks such a file (issue 22.8)
    path = write_synthetic_bundle(tmp_path / "live.h5", n_iters=40, layers=LAYERS, n_classes=3,
                                  seed=5, storage="bfloat16", compression="gzip",
                                  flush_seconds=0.0, counters_every=1)
    with RunBundle.open(path) as b:
        rows, windows, cum = b.rows(), b.row_windows.copy(), b.cumulative(39)
    before = path.stat().st_size
    repack(path)
    from lcaviz.bundle.writer import REPACK_WASTE

    assert path.stat().st_size > (1 - REPACK_WASTE) * before  # close() left it packed
    with RunBundle.open(path) as b, h5py.File(path, locking=False) as f:
        np.testing.assert_array_equal(b.rows(), rows)
        np.testing.assert_array_equal(b.row_windows, windows)
        np.testing.assert_array_equal(b.cumulative(39), cum)
        assert f["lca"].compression == "gzip" and f["lca"].dtype == np.uint16
    with RunBundle.open(path) as b:
        layer, counts = b.lca_layer(), b.help_count()
    repack(path, gzip_level=9, compress_all=True)  # recompressed harder: the same values
    with RunBundle.open(path) as b, h5py.File(path, locking=False) as f:
        np.testing.assert_array_equal(b.rows(), rows)
        np.testing.assert_array_equal(b.lca_layer(), layer)
        np.testing.assert_array_equal(b.help_count(), counts)
        assert f["lca"].compression_opts == 9
        assert f["lca_layer"].compression == "gzip" and f["help_count"].compression == "gzip"
