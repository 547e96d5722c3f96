"""Per-example LCA in the bundle (issue 24): what the reader refuses (hostile or damaged example
datasets, always a clear error, never a crash) and what it accepts from another program."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from lcaviz.bundle import CorruptBundleError, RunBundle
from lcaviz.bundle.errors import RefusedBundleError, TruncatedBundleError
from lcaviz.bundle.synthetic import write_synthetic_bundle

LAYERS = (("fc1", (12, 20)), ("fc2", (6, 12)), ("fc3", (3, 6)))
T, N = 23, 60
SCHEDULE = "dense:7,5"


def _edit(src: Path, dst: Path, edit) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _replace(name, shape, dtype=np.float32):
    def edit(f):
        attrs = dict(f[name].attrs)
        del f[name]
        f.create_dataset(name, data=np.zeros(shape, dtype))
        f[name].attrs.update(attrs)
    return edit


@pytest.mark.parametrize("edit, message", [
    (_replace("lca_example", (11, N + 1, 3)), "examples/index has shape (60,), expected (61,)"),
    (_replace("lca_example", (11, N, 2)), "lca_example is (11, 60, 2), expected (R, N_e, 3)"),
    (_replace("lca_example", (11, N, 3), np.int32), "lca_example holds int32"),
    (_replace("lca_example", (4, N, 3)), "progress says 11 entries of lca_example"),
    (_replace("examples/index", (N, 2), np.int64), "examples/index has shape"),
    (_replace("loss_example", (11, 3)), "loss_example has shape"),
    (_replace("lca_example_cumsum", (N,), np.float64), "lca_example_cumsum has shape"),
    (_replace("examples/thumbnail", (N, 8, 8), np.float32), "examples/thumbnail is float32"),
    (_replace("examples/label", (N,), "S4"), "examples/label holds"),
    (_replace("label_noise/original", (2,), np.int64), "label_noise/flipped and"),
    (lambda f: (f.__delitem__("lca_example"), f.create_group("lca_example")),
     "lca_example is a group"),
    (lambda f: (f.__delitem__("examples/thumbnail"), f.create_group("examples/thumbnail")),
     "examples/thumbnail is not a dataset"),
    (lambda f: (f.__delitem__("label_noise"), f.create_dataset("label_noise", data=[1])),
     "label_noise/original must be two (K,) integer datasets in a group"),
])
def test_hostile_example_shapes_are_refused_with_a_clear_error(tmp_path, edit, message):
    good = write_synthetic_bundle(tmp_path / "good.h5", n_iters=T, layers=LAYERS, n_classes=3,
                                  stride=SCHEDULE, examples=N, label_noise=0.1)
    bad = _edit(good, tmp_path / "bad.h5", edit)
    with pytest.raises(CorruptBundleError, match="inconsistent bundle") as info:
        RunBundle.open(bad)
    assert message in str(info.value)


def _declare(name, shape, dtype, chunks):
    """``name`` replaced by a chunked dataset of ``shape`` whose chunks were never written."""
    def edit(f):
        attrs = dict(f[name].attrs)
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)
        f[name].attrs.update(attrs)
    return edit


@pytest.mark.parametrize("edit, error", [
    (_declare("examples/thumbnail", (N, 60_000, 60_000), np.uint8, (1, 64, 64)),
     RefusedBundleError),
    (_declare("lca_example", (11, N, 3), np.float32, (1, N, 3)), TruncatedBundleError),
])
def test_declared_but_absent_example_data_is_refused_not_read_as_zeros(tmp_path, edit, error):
    good = write_synthetic_bundle(tmp_path / "good.h5", n_iters=T, layers=LAYERS, n_classes=3,
                                  stride=SCHEDULE, examples=N)
    with pytest.raises(error):
        RunBundle.open(_edit(good, tmp_path / "bad.h5", edit))


def test_a_bundle_with_only_lca_example_reads_with_the_rows_as_its_totals(tmp_path):
    """Another program's bundle: ``lca_example`` (float64 here) is all that is required."""
    good = write_synthetic_bundle(tmp_path / "good.h5", n_iters=T, layers=LAYERS, n_classes=3,
                                  stride=SCHEDULE, examples=N)
    optional = ("lca_example_cumsum_rows", "lca_example_cumsum", "loss_example",
                "loss_example_last", "lca_example_iters", "examples")

    def strip(f):
        rows = f["lca_example"][()]
        del f["lca_example"]
        f["lca_example"] = rows.astype(np.float64)
        for name in optional:
            del f[name]

    bare = _edit(good, tmp_path / "bare.h5", strip)
    with RunBundle.open(good) as g, RunBundle.open(bare) as b:
        assert b.has_examples and b.n_examples == N
        np.testing.assert_array_equal(b.example_index(), np.arange(N))
        np.testing.assert_array_equal(b.example_lca_rows(), g.example_lca_rows())
        np.testing.assert_allclose(b.example_cumsum(), g.example_cumsum(), rtol=1e-6,
                                   atol=1e-9)
        np.testing.assert_allclose(b.example_cumsum_upto(5), g.example_cumsum_upto(5),
                                   rtol=1e-6, atol=1e-9)
        assert b.example_loss() is None and b.example_loss_last() is None
        assert b.example_labels() is None and b.example_thumbnails() is None
