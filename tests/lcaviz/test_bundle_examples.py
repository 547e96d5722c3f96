"""Per-example LCA in the bundle (issue 24, format version 3): writer → reader round trips over
row windows, running sums, resume, older files, hostile shapes, repack and live reading."""

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from lcaviz.bundle import (
    FORMAT_VERSION,
    MissingExamplesError,
    RunBundle,
)
from lcaviz.bundle.schema import from_bfloat16, to_bfloat16
from lcaviz.bundle.synthetic import SyntheticRun, write_synthetic_bundle
from lcaviz.bundle.writer import BundleWriter, ExampleInfo, IterationRecord, LayoutInfo

ROOT = Path(__file__).resolve().parents[2]
LAYERS = (("fc1", (12, 20)), ("fc2", (6, 12)), ("fc3", (3, 6)))
T, N = 23, 60
SCHEDULE = "dense:7,5"  # rows [0,1) … [6,7), then [7,12), [12,17), [17,22), [22,23)


def _run(**kw) -> SyntheticRun:
    args = {"layers": LAYERS, "n_iters": T, "n_classes": 3, "stride": SCHEDULE, "seed": 5,
            "examples": N, "label_noise": 0.1} | kw
    return SyntheticRun(**args)


def _write(path, run: SyntheticRun, *, cumsum_every: int = 3, flush_seconds: float = 2.0):
    """Write ``run`` completely; returns (path, records) with the records as appended."""
    layout = run.layout()
    layout.cumsum_every = cumsum_every  # small: the cumulative reads use the stored sums
    w = BundleWriter.create(path, layout, theta0=None, loss_train0=math.log(3),
                            acc_train0=0.0, flush_seconds=flush_seconds)
    records = list(run.records())
    for rec in records:
        w.append(rec)
    w.append_lca_row(run.partial_row)
    w.close()
    return path, records


def _window_sums(records, windows):
    """Σ of E over each window, summed in float64 one iteration after another (the writer's
    order), (R, N_e, L)."""
    out = []
    for a, e in windows:
        acc = np.zeros_like(records[0].example)
        for t in range(a, e):
            acc = acc + records[t].example
        out.append(acc)
    return np.stack(out)


@pytest.mark.parametrize("storage", ["float32", "bfloat16"])
def test_rows_are_the_exact_window_sums_of_the_per_parameter_rows(tmp_path, storage):
    path, records = _write(tmp_path / f"{storage}.h5", _run(storage=storage))
    with RunBundle.open(path) as b, h5py.File(path, "r", locking=False) as f:
        assert b.format_version == FORMAT_VERSION == 4 and b.has_examples
        windows = b.row_windows
        assert windows.tolist() == [[t, t + 1] for t in range(7)] + [[7, 12], [12, 17],
                                                                     [17, 22], [22, 23]]
        exact = _window_sums(records, windows)
        stored = exact.astype(np.float32)
        if storage == "bfloat16":
            assert f["lca_example"].dtype == np.uint16
            assert f["lca_example"].attrs["encoding-type"] == "bfloat16-array"
            stored = from_bfloat16(to_bfloat16(stored))
        else:
            assert f["lca_example"].dtype == np.float32
        rows = b.example_lca_rows()
        assert rows.shape == (11, N, 3) and rows.dtype == np.float64
        np.testing.assert_array_equal(rows, stored)
        np.testing.assert_array_equal(b.example_lca(8), stored[8])
        np.testing.assert_array_equal(b.example_lca(-1), stored[-1])
        np.testing.assert_array_equal(b.example_lca_rows([9, 2]), stored[[9, 2]])
        np.testing.assert_array_equal(b.example_lca_rows(slice(3, 6), sel=[5, 1]),
                                      stored[3:6][:, [5, 1]])
        # every example tracked: Σ_n of a row = the layers' LCA over the same window
        layer = b.lca_layer()
        sums = np.stack([layer[a:e].sum(0) for a, e in windows])
        tol = 2**-8 if storage == "bfloat16" else 1e-6
        np.testing.assert_allclose(exact.sum(1), sums, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(rows.sum(1), sums, rtol=0,
                                   atol=tol * np.abs(exact).sum(1).max())
        # the tracked examples and what is known about them
        np.testing.assert_array_equal(b.example_index(), np.arange(N))
        assert b.n_examples == N and b.example_labels().shape == (N,)
        thumbs = b.example_thumbnails([3, 0])
        assert thumbs.dtype == np.uint8 and thumbs.shape == (2, 8, 8)
        np.testing.assert_array_equal(thumbs, b.example_thumbnails()[[3, 0]])
        scattered = [59, 0, 31, 0, -1]  # far apart, repeated, negative: read span by span
        np.testing.assert_array_equal(b.example_thumbnails(scattered),
                                      b.example_thumbnails()[scattered])
        np.testing.assert_array_equal(b.example_lca(4, sel=scattered), stored[4][scattered])
        with pytest.raises(IndexError, match="example 60 out of range"):
            b.example_lca(4, sel=[1, 60])
        assert b.example_texts() is None


def test_running_sums_and_losses_agree_with_the_rows(tmp_path):
    run = _run()
    path, records = _write(tmp_path / "sums.h5", run)
    with RunBundle.open(path) as b, h5py.File(path, "r", locking=False) as f:
        assert f["lca_example_cumsum_rows"].attrs["every"] == 3
        assert f["lca_example_cumsum_rows"].shape == (11 // 3, N, 3)
        every_iteration = np.zeros((N, 3))
        for rec in records:
            every_iteration = every_iteration + rec.example
        # float64 sums of the windows' float64 sums: equal to float64 rounding
        np.testing.assert_allclose(b.example_cumsum(), every_iteration, rtol=1e-13, atol=1e-17)
        assert int(f["lca_example_iters"][0]) == T
        rows = b.example_lca_rows()
        for r in range(-1, 11):
            np.testing.assert_allclose(b.example_cumsum_upto(r), rows[:r + 1].sum(0),
                                       rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(b.example_cumsum_upto(10, sel=[4]), rows.sum(0)[[4]],
                                   rtol=1e-6, atol=1e-9)
        # the losses: at the θ that opens each window, and after the last iteration
        starts = b.row_windows[:, 0]
        expect = np.stack([records[t].example_loss_before for t in starts]).astype(np.float32)
        np.testing.assert_array_equal(b.example_loss(), expect)
        np.testing.assert_array_equal(b.example_loss_last(), records[-1].example_loss_after)
        # their mean follows the allocated loss, and each example's change is N Σ E + Σ residual
        assert b.example_loss_last().mean() == pytest.approx(b.final_loss(), rel=1e-12)
        change = b.example_loss_last() - records[0].example_loss_before
        np.testing.assert_allclose(change, N * every_iteration.sum(1) + b.residual().sum(),
                                   rtol=1e-9, atol=1e-12)
        noise = b.label_noise()
        assert noise["fraction"] == 0.1 and noise["seed"] == 5 and len(noise["flipped"]) == 6
        truth = b.config["synthetic"]["examples"]
        assert noise["flipped"].tolist() == truth["flipped"]
        assert np.all(b.example_labels()[noise["flipped"]] != noise["original"])


def test_a_tracked_subset_keeps_its_index_and_bundles_without_examples_are_unchanged(tmp_path):
    path, _ = _write(tmp_path / "sub.h5", _run(tracked_examples=17, example_text=True,
                                               label_noise=0.0))
    with RunBundle.open(path) as b:
        idx = b.example_index()
        assert idx.shape == (17,) and np.all(np.diff(idx) > 0) and idx.max() < N
        assert b.example_lca_rows().shape == (11, 17, 3) and b.example_thumbnails() is None
        texts = b.example_texts([0, 16])
        assert len(texts) == 2 and all("(mod 3)" in s for s in texts)
        assert b.label_noise() is None
    plain = write_synthetic_bundle(tmp_path / "plain.h5", n_iters=5, layers=LAYERS)
    with RunBundle.open(plain) as b, h5py.File(plain, "r", locking=False) as f:
        assert not b.has_examples and b.n_examples == 0 and b.label_noise() is None
        assert not any(k in f for k in ("examples", "lca_example", "lca_example_cumsum",
                                        "loss_example", "label_noise"))
        with pytest.raises(MissingExamplesError, match="no per-example LCA"):
            b.example_lca(0)


def test_older_bundles_read_as_before(tmp_path):
    old = ROOT / "sample_runs" / "mnist_fc_sgd_mom0.h5"  # written as format version 2
    with h5py.File(old, "r", locking=False) as f:
        assert int(f.attrs["format_version"]) == 2
    with RunBundle.open(old) as b:
        assert b.format_version == 2 and not b.has_examples and b.n_rows > 0
        assert b.rows(0, 1).shape == (1, b.n_row_cols)
        for call in (b.example_index, b.example_labels, b.example_cumsum, b.example_loss):
            with pytest.raises(MissingExamplesError):
                call()


def _resumed(tmp_path, run_kw, stop: int, checkpoint: int):
    """Write to ``stop``, 'kill' it, resume from the state saved at ``checkpoint``."""
    run = _run(**run_kw)
    layout = run.layout()
    layout.cumsum_every = 3
    path = tmp_path / "resumed.h5"
    w = BundleWriter.create(path, layout, theta0=None, loss_train0=math.log(3),
                            acc_train0=0.0)
    records = list(run.records())
    state = None
    for t, rec in enumerate(records[:stop]):
        w.append(rec)
        if t + 1 == checkpoint:
            w.flush()  # lca-run and the tracker flush before they checkpoint
            state = w.running_total.copy()
    w.flush()
    w.f.close()  # killed: no status written, rows after the checkpoint in the file
    with pytest.raises(ValueError, match="belongs to another run"):
        BundleWriter.reopen(path, checkpoint, running_total=state[:-1])
    with pytest.raises(ValueError, match="needs the writer's running_total"):
        BundleWriter.reopen(path, checkpoint, running_total=None)
    with h5py.File(path, "r", locking=False) as f:  # the refused resumes cut nothing
        assert f["progress"][0] == stop and f["lca_example"].shape[0] > 0
    w = BundleWriter.reopen(path, checkpoint, running_total=state)
    for rec in records[checkpoint:]:
        w.append(rec)
    w.append_lca_row(run.partial_row)
    w.close()
    return path, run


@pytest.mark.parametrize("checkpoint", [9, 12])  # inside the window [7, 12), and at its end
@pytest.mark.parametrize("storage", ["float32", "bfloat16"])
def test_resume_equals_an_uninterrupted_run(tmp_path, checkpoint, storage):
    path, _ = _resumed(tmp_path, {"storage": storage}, stop=19, checkpoint=checkpoint)
    ref, _ = _write(tmp_path / "ref.h5", _run(storage=storage))
    names = ("lca_example", "lca_example_cumsum_rows", "lca_example_cumsum", "loss_example",
             "loss_example_last", "lca_example_iters", "lca_rows", "lca_layer")
    with h5py.File(path, "r", locking=False) as f, h5py.File(ref, "r", locking=False) as g:
        assert f["progress"][()].tolist() == g["progress"][()].tolist() == [T, 11]
        for name in names:
            assert f[name].shape == g[name].shape, name
            np.testing.assert_array_equal(f[name][()], g[name][()], err_msg=name)


_LIVE = textwrap.dedent("""
    import sys
    from lcaviz.bundle.synthetic import SyntheticRun
    run = SyntheticRun(layers=(("a", (6, 5)), ("b", (3, 6))), n_iters=40, stride=3,
                       examples=30)
    w = run.create_writer(sys.argv[1], flush_seconds=0.0)
    it = run.records()
    for n in (10, 12):
        for _ in range(n):
            w.append(next(it))
        w.flush()
        print("flushed", flush=True)
        sys.stdin.readline()
    w.close("failed", "killed by test")
""")


def test_a_live_run_shows_the_example_rows_its_progress_counts(tmp_path):
    path = tmp_path / "live.h5"
    proc = subprocess.Popen([sys.executable, "-c", _LIVE, str(path)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "flushed"
        with RunBundle.open(path) as b:
            assert b.live and (b.n_iters, b.n_rows) == (10, 3)
            assert b.example_lca_rows().shape == (3, 30, 2)
            assert b.example_loss().shape == (3, 30)
            first = b.example_cumsum()
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "flushed"
            b.refresh()
            assert (b.n_iters, b.n_rows) == (22, 7) and b.example_lca_rows().shape[0] == 7
            np.testing.assert_allclose(b.example_cumsum_upto(2).sum(), b.lca_layer()[:9].sum(),
                                       rtol=1e-5)
            assert not np.array_equal(first, b.example_cumsum())
            proc.stdin.write("\n")
            proc.stdin.flush()
    finally:
        proc.kill()
        proc.wait()


def test_repack_at_close_keeps_the_example_datasets(tmp_path):
    kw = {"n_iters": T, "layers": LAYERS, "n_classes": 3, "stride": SCHEDULE, "seed": 5,
          "examples": N, "storage": "bfloat16", "flush_seconds": 0.0, "counters_every": 1}
    packed = write_synthetic_bundle(tmp_path / "gz.h5", compression="gzip", **kw)
    plain = write_synthetic_bundle(tmp_path / "plain.h5", **kw)
    with h5py.File(packed, "r", locking=False) as f, h5py.File(plain, "r", locking=False) as g:
        assert f["lca_example"].compression == "gzip" and f["lca_example"].dtype == np.uint16
        for name in ("lca_example", "lca_example_cumsum_rows", "loss_example",
                     "lca_example_cumsum", "loss_example_last", "examples/index",
                     "examples/label", "examples/thumbnail"):
            np.testing.assert_array_equal(f[name][()], g[name][()], err_msg=name)
            assert f[name].attrs["encoding-type"] == g[name].attrs["encoding-type"]
    from lcaviz.bundle.repack import repack

    with RunBundle.open(packed) as b:
        before = (b.example_lca_rows(), b.example_cumsum_upto(9), b.example_loss())
    repack(packed, gzip_level=9, compress_all=True)
    with RunBundle.open(packed) as b:
        for x, y in zip(before, (b.example_lca_rows(), b.example_cumsum_upto(9),
                                 b.example_loss()), strict=True):
            np.testing.assert_array_equal(x, y)


def test_records_that_do_not_fit_the_bundle_are_refused_before_anything_is_kept(tmp_path):
    """The writer API by hand: two layers, three examples, one unallocated iteration."""
    layout = LayoutInfo(
        param_names=["a.weight", "b.weight"], param_shapes=[(2,), (3,)],
        param_offsets=np.array([0, 2, 5]), param_layer=np.array([0, 1], np.int32),
        param_module_type=["Linear", "Linear"], layer_names=["a", "b"], class_names=["x"],
        config={}, method="rk4", per_class=False, row_schedule="stride:2", lca_every=2,
        examples=ExampleInfo(index=np.array([4, 0, 9]), label=np.array([0, 0, 0])))
    w = BundleWriter.create(tmp_path / "hand.h5", layout, theta0=None, loss_train0=1.0,
                            acc_train0=0.0)

    def rec(example, allocated=True, **kw):
        return IterationRecord(loss_train=1.0, acc_train=0.0, loss_minibatch=1.0, residual=0.0,
                               splits=1, lca_layer=np.zeros(2), help_count=np.zeros(2, int),
                               hurt_count=np.zeros(2, int), seconds=0.0, example=example,
                               allocated=allocated, **kw)

    e = np.arange(6.0).reshape(3, 2)
    with pytest.raises(ValueError, match="shape"):
        w.append(rec(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="every allocated iteration"):
        w.append(rec(None))
    assert w.T == 0 and not w._buffer  # nothing of the refused records was kept
    w.append(rec(e, example_loss_before=np.ones(3), example_loss_after=np.full(3, 0.5)))
    w.append(rec(None, allocated=False), )  # --lca-every gap: no per-example values
    w.append_lca_row(np.zeros(5))
    w.append(rec(2 * e, example_loss_before=np.full(3, 0.4), example_loss_after=np.zeros(3)))
    w.close()
    with RunBundle.open(tmp_path / "hand.h5") as b:
        np.testing.assert_array_equal(b.example_index(), [4, 0, 9])
        assert b.row_windows.tolist() == [[0, 2]]
        np.testing.assert_array_equal(b.example_lca_rows(), [e])
        np.testing.assert_array_equal(b.example_loss(), [np.ones(3)])
        np.testing.assert_array_equal(b.example_cumsum(), 3 * e)  # the open window counts
        np.testing.assert_array_equal(b.example_loss_last(), np.zeros(3))
    plain = tmp_path / "plain.h5"
    layout.examples = None
    w = BundleWriter.create(plain, layout, theta0=None, loss_train0=1.0, acc_train0=0.0)
    with pytest.raises(ValueError, match="without examples"):
        w.append(rec(e))
    assert w.running_total.shape == (5,)
    w.close()


def test_the_notebook_api_decodes_bfloat16_example_rows(tmp_path):
    import lcaviz

    path, _ = _write(tmp_path / "bf.h5", _run(storage="bfloat16"))
    with lcaviz.open(path) as run, RunBundle.open(path) as b:
        rows = run.examples(cumulative=False)
        np.testing.assert_array_equal(rows[["fc1", "fc2", "fc3"]].to_numpy(),
                                      b.example_lca_rows().reshape(-1, 3))
        total = run.examples()
        np.testing.assert_array_equal(total.to_numpy(), b.example_cumsum())
        assert list(total.index) == b.example_index().tolist()


def test_scattered_selections_read_span_by_span_in_the_order_asked(tmp_path):
    path, _ = _write(tmp_path / "s.h5", _run())
    with h5py.File(path, "r+") as f:  # small chunks: the selection below spans several
        thumbs, attrs = f["examples/thumbnail"][()], dict(f["examples/thumbnail"].attrs)
        del f["examples/thumbnail"]
        f.create_dataset("examples/thumbnail", data=thumbs, chunks=(4, 8, 8))
        f["examples/thumbnail"].attrs.update(attrs)
    sel = np.array([57, 2, 30, 2, 58, -3])
    with RunBundle.open(path) as b:
        np.testing.assert_array_equal(b.example_thumbnails(sel), thumbs[sel])
        mask = np.zeros(N, bool)
        mask[[50, 1, 20]] = True
        np.testing.assert_array_equal(b.example_thumbnails(mask), thumbs[mask])
        assert b.example_thumbnails([]).shape == (0, 8, 8)
