"""Per-example LCA of the validation examples and per split group (issue 24, contract 24b):
writer → reader round trips, identities, resume, live reading, repack, hostile shapes and the
reader's ``split=`` / ``by=`` faces."""

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from lcaviz.bundle import CorruptBundleError, RunBundle
from lcaviz.bundle.schema import from_bfloat16, to_bfloat16
from lcaviz.bundle.synthetic import SyntheticRun, write_synthetic_bundle
from lcaviz.bundle.writer import BundleWriter, ExampleInfo, IterationRecord, LayoutInfo
from tests.lcaviz.test_bundle_examples_hostile import _replace

ROOT = Path(__file__).resolve().parents[2]
LAYERS = (("fc1", (12, 20)), ("fc2", (6, 12)), ("fc3", (3, 6)))
T, N, NV = 23, 40, 24
SCHEDULE = "dense:7,5"  # 11 rows
SPLIT = 8  # fc1 and fc2 in 4 groups each (q/k × 2 heads); fc3 is one group, not split
SETS = ("lca_example", "lca_example_group", "lca_val_example", "lca_val_example_group")


def _run(**kw) -> SyntheticRun:
    args = {"layers": LAYERS, "n_iters": T, "n_classes": 3, "stride": SCHEDULE, "seed": 7,
            "examples": N, "val_lca": True, "val_examples": NV, "heads": 2} | kw
    return SyntheticRun(**args)


def _write(path, run: SyntheticRun):
    layout = run.layout()
    layout.cumsum_every = 3
    w = BundleWriter.create(path, layout, theta0=None, loss_train0=math.log(3), acc_train0=0.0,
                            loss_val0=math.log(3), acc_val0=0.0)
    records = list(run.records())
    for rec in records:
        w.append(rec)
    w.append_lca_row(run.partial_val_row, "lca_val")
    w.append_lca_row(run.partial_row)
    w.close()
    return path, records


def _window_sums(records, windows, field):
    out = []
    for a, e in windows:
        acc = np.zeros_like(getattr(records[0], field))
        for t in range(a, e):
            acc = acc + getattr(records[t], field)
        out.append(acc)
    return np.stack(out)


@pytest.mark.parametrize("storage", ["float32", "bfloat16"])
def test_val_and_group_rows_are_exact_window_sums_and_keep_the_identities(tmp_path, storage):
    path, records = _write(tmp_path / "v.h5", _run(storage=storage))
    with RunBundle.open(path) as b, h5py.File(path, "r", locking=False) as f:
        assert b.has_examples and b.has_val_examples and b.has_example_groups
        assert (b.n_examples, b.n_val_examples) == (N, NV)
        assert b.example_groups().tolist() == list(range(SPLIT))
        assert b.example_group_names == b.group_names[:SPLIT]
        assert b.example_group_names[1] == "fc1.q.head1"
        assert f["examples/groups"].dtype == np.int64
        for split, by, field, shape in (("train", "group", "example_group", (N, SPLIT)),
                                        ("val", "layer", "val_example", (NV, 3)),
                                        ("val", "group", "val_example_group", (NV, SPLIT))):
            exact = _window_sums(records, b.row_windows, field)
            stored = exact.astype(np.float32)
            if storage == "bfloat16":
                stored = from_bfloat16(to_bfloat16(stored))
            rows = b.example_lca_rows(split=split, by=by)
            assert rows.shape == (11, *shape)
            np.testing.assert_array_equal(rows, stored, err_msg=field)
            np.testing.assert_array_equal(b.example_lca(4, sel=[2, 0], split=split, by=by),
                                          stored[4][[2, 0]])
            total = sum(getattr(r, field) for r in records)
            np.testing.assert_allclose(b.example_cumsum(split=split, by=by), total,
                                       rtol=1e-12, atol=1e-17)
            # a stored running-total row (float32 of the exact sum) plus at most 2 rows
            # (float32: 1e-7 relative; bfloat16: 2⁻⁸ of each row's values)
            tol = 1e-6 if storage == "float32" else 2 * 2**-8
            for r in (-1, 2, 5, 10):
                np.testing.assert_allclose(b.example_cumsum_upto(r, split=split, by=by),
                                           exact[:r + 1].sum(0), rtol=0,
                                           atol=tol * np.abs(exact).max() + 1e-12)
        # Σ over a layer's split groups = the layer's per-example values (float64 totals)
        layer_of = b.group_layer[b.example_groups()]
        for split in ("train", "val"):
            per_layer, per_group = (b.example_cumsum(split=split, by=by)
                                    for by in ("layer", "group"))
            for layer in (0, 1):
                np.testing.assert_allclose(per_group[:, layer_of == layer].sum(1),
                                           per_layer[:, layer], rtol=1e-9, atol=1e-15)
        # all validation examples tracked: Σ_n E_val = lca_val_layer, Σ_n E_val_group = group
        np.testing.assert_allclose(b.example_cumsum(split="val").sum(0),
                                   b.lca_val_layer().sum(0), rtol=1e-9)
        np.testing.assert_allclose(b.example_cumsum(split="val", by="group").sum(0),
                                   b.lca_val_group().sum(0)[:SPLIT], rtol=1e-9)
        # the validation losses and their metadata
        starts = b.row_windows[:, 0]
        expect = np.stack([records[t].val_example_loss_before for t in starts])
        np.testing.assert_array_equal(b.example_loss(split="val"), expect.astype(np.float32))
        np.testing.assert_array_equal(b.example_loss_last(split="val"),
                                      records[-1].val_example_loss_after)
        assert int(f["lca_val_example_iters"][0]) == T
        assert b.example_index(split="val").tolist() == list(range(NV))
        assert b.example_labels(split="val").shape == (NV,)
        assert b.example_thumbnails([3], split="val").shape == (1, 8, 8)
        assert b.config["per_example_val_of"] == NV
        assert "positions in the validation split" in f["val_examples/index"].attrs[
            "description"]


def test_reader_refuses_a_split_or_by_the_bundle_lacks(tmp_path):
    only_train = write_synthetic_bundle(tmp_path / "t.h5", n_iters=6, layers=LAYERS,
                                        n_classes=3, examples=10)
    with RunBundle.open(only_train) as b:
        assert b.has_examples and not b.has_val_examples and not b.has_example_groups
        assert b.n_val_examples == 0 and b.example_group_names == []
        with pytest.raises(ValueError, match="no per-example LCA of the validation loss"):
            b.example_lca_rows(split="val")
        with pytest.raises(ValueError, match="no per-example values per group"):
            b.example_cumsum(by="group")
        with pytest.raises(ValueError, match="no per-example values per group"):
            b.example_groups()
        with pytest.raises(ValueError, match="split must be one of"):
            b.example_lca(0, split="test")
        with pytest.raises(ValueError, match="by one of"):
            b.example_lca(0, by="head")
        assert b.example_lca_rows(split="train", by="layer").shape == (6, 10, 3)


def _resumed(tmp_path, stop: int, checkpoint: int, storage: str):
    run = _run(storage=storage)
    layout = run.layout()
    layout.cumsum_every = 3
    path = tmp_path / "resumed.h5"
    w = BundleWriter.create(path, layout, theta0=None, loss_train0=math.log(3),
                            acc_train0=0.0, loss_val0=math.log(3), acc_val0=0.0)
    records = list(run.records())
    state = None
    for t, rec in enumerate(records[:stop]):
        w.append(rec)
        if t + 1 == checkpoint:
            w.flush()
            state = w.running_total.copy()
    w.flush()
    w.f.close()  # killed
    n_sets = 2 * N * 3 + 2 * N + 2 * N * SPLIT + 2 * NV * 3 + 2 * NV + 2 * NV * SPLIT
    assert state.size == layout.param_offsets[-1] + n_sets  # the sets in SETS order
    with pytest.raises(ValueError, match="belongs to another run"):
        BundleWriter.reopen(path, checkpoint, running_total=state[:-1])
    w = BundleWriter.reopen(path, checkpoint, running_total=state)
    for rec in records[checkpoint:]:
        w.append(rec)
    w.append_lca_row(run.partial_val_row, "lca_val")
    w.append_lca_row(run.partial_row)
    w.close()
    return path


@pytest.mark.parametrize("checkpoint", [9, 12])  # inside the window [7, 12), and at its end
@pytest.mark.parametrize("storage", ["float32", "bfloat16"])
def test_resume_equals_an_uninterrupted_run_for_every_set(tmp_path, checkpoint, storage):
    path = _resumed(tmp_path, stop=19, checkpoint=checkpoint, storage=storage)
    ref, _ = _write(tmp_path / "ref.h5", _run(storage=storage))
    names = [n for s in SETS for n in (s, f"{s}_cumsum_rows", f"{s}_cumsum")]
    names += ["loss_example", "loss_val_example", "loss_val_example_last",
              "lca_val_example_iters", "examples/groups", "val_examples/index"]
    with h5py.File(path, "r", locking=False) as f, h5py.File(ref, "r", locking=False) as g:
        assert f["progress"][()].tolist() == g["progress"][()].tolist() == [T, 11]
        for name in names:
            assert f[name].shape == g[name].shape, name
            np.testing.assert_array_equal(f[name][()], g[name][()], err_msg=name)


def test_a_format_3_state_still_fits_a_bundle_with_training_examples_only(tmp_path):
    """The running state of a bundle without the new sets is what today's format-3 writer
    checkpoints: P_rows row sums, then window, closed rows, loss at start, last loss."""
    run = SyntheticRun(layers=LAYERS, n_iters=T, n_classes=3, stride=SCHEDULE, seed=7,
                       examples=N)
    w = run.create_writer(tmp_path / "f3.h5")
    records = list(run.records())
    for rec in records[:9]:
        w.append(rec)
    state = w.running_total
    P = int(run.layout().param_offsets[-1])
    assert state.size == P + 2 * N * 3 + 2 * N
    window = sum(r.example for r in records[7:9])  # the open window [7, 9)
    np.testing.assert_array_equal(state[P:P + N * 3].reshape(N, 3), window)
    np.testing.assert_array_equal(state[-N:], records[8].example_loss_after)
    w.close()


_LIVE = textwrap.dedent("""
    import sys
    from lcaviz.bundle.synthetic import SyntheticRun
    run = SyntheticRun(layers=(("a", (6, 5)), ("b", (3, 6))), n_iters=40, stride=3,
                       examples=12, val_lca=True, val_examples=9, heads=1)
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


def test_a_live_run_shows_the_val_and_group_rows_its_progress_counts(tmp_path):
    path = tmp_path / "live.h5"
    proc = subprocess.Popen([sys.executable, "-c", _LIVE, str(path)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "flushed"
        with RunBundle.open(path) as b:
            assert b.live and (b.n_iters, b.n_rows) == (10, 3)
            assert b.example_group_names == ["a.q.head0", "a.k.head0"]
            assert b.example_lca_rows(split="val").shape == (3, 9, 2)
            assert b.example_lca_rows(split="val", by="group").shape == (3, 9, 2)
            assert b.example_lca_rows(by="group").shape == (3, 12, 2)
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "flushed"
            b.refresh()
            assert (b.n_iters, b.n_rows) == (22, 7)
            assert b.example_loss(split="val").shape == (7, 9)
            np.testing.assert_allclose(b.example_cumsum_upto(2, split="val").sum(),
                                       b.lca_val_layer()[:9].sum(), rtol=1e-5)
            proc.stdin.write("\n")
            proc.stdin.flush()
    finally:
        proc.kill()
        proc.wait()


def test_repack_keeps_every_set(tmp_path):
    kw = {"n_iters": T, "layers": LAYERS, "n_classes": 3, "stride": SCHEDULE, "seed": 7,
          "examples": N, "val_lca": True, "val_examples": NV, "heads": 2,
          "storage": "bfloat16", "flush_seconds": 0.0}
    packed = write_synthetic_bundle(tmp_path / "gz.h5", compression="gzip", **kw)
    plain = write_synthetic_bundle(tmp_path / "plain.h5", **kw)
    from lcaviz.bundle.repack import repack

    repack(packed, gzip_level=9, compress_all=True)
    names = [n for s in SETS for n in (s, f"{s}_cumsum_rows", f"{s}_cumsum")]
    names += ["loss_val_example", "loss_val_example_last", "examples/groups",
              "val_examples/index", "val_examples/thumbnail"]
    with h5py.File(packed, "r", locking=False) as f, h5py.File(plain, "r", locking=False) as g:
        for name in names:
            np.testing.assert_array_equal(f[name][()], g[name][()], err_msg=name)
        assert f["lca_val_example_group"].compression == "gzip"
    with RunBundle.open(packed) as b:
        assert b.example_lca_rows(split="val", by="group").shape == (11, NV, SPLIT)


@pytest.mark.parametrize("edit, message", [
    (_replace("lca_val_example", (11, NV, 2)), "lca_val_example is (11, 24, 2), expected "
                                               "(R, N_e, 3)"),
    (_replace("lca_val_example", (11, NV + 1, 3)), "val_examples/index has shape (24,), "
                                                   "expected (25,)"),
    (_replace("lca_val_example", (11, NV, 3), np.int32), "lca_val_example holds int32"),
    (_replace("lca_val_example", (4, NV, 3)), "progress says 11 entries of lca_val_example"),
    (_replace("loss_val_example", (11, 3)), "loss_val_example has shape"),
    (_replace("lca_example_group", (11, N, SPLIT + 1)), "lca_example_group has shape "
                                                        "(11, 40, 9), expected (R, 40, 8)"),
    (_replace("lca_example_group", (11, N, SPLIT), "S2"), "lca_example_group holds"),
    (_replace("lca_val_example_group_cumsum", (NV, 2), np.float64),
     "lca_val_example_group_cumsum has shape"),
    (_replace("lca_example_group", (3, N, SPLIT)), "progress says 11 entries of "
                                                   "lca_example_group"),
    (_replace("examples/groups", (3, 2), np.int64), "examples/groups must be a (G_s,) integer"),
    (lambda f: f["examples/groups"].__setitem__(0, 99), "examples/groups refers to groups "
                                                        "outside 0..8"),
    (lambda f: f.__delitem__("examples/groups"), "lca_example_group needs a valid "
                                                 "examples/groups"),
    (lambda f: f.__delitem__("lca_val_example"), "lca_val_example_group without "
                                                 "lca_val_example"),
])
def test_hostile_val_and_group_shapes_are_refused_with_a_clear_error(tmp_path, edit, message):
    good, _ = _write(tmp_path / "good.h5", _run())
    bad = tmp_path / "bad.h5"
    bad.write_bytes(good.read_bytes())
    with h5py.File(bad, "r+") as f:
        edit(f)
    with pytest.raises(CorruptBundleError, match="inconsistent bundle") as info:
        RunBundle.open(bad)
    assert message in str(info.value)


def _hand_layout(**kw) -> LayoutInfo:
    base = dict(
        param_names=["a.weight", "b.weight"], param_shapes=[(4,), (3,)],
        param_offsets=np.array([0, 4, 7]), param_layer=np.array([0, 1], np.int32),
        param_module_type=["Linear", "Linear"], layer_names=["a", "b"], class_names=["x"],
        config={}, method="rk4", per_class=False, row_schedule="stride:2", val_lca=True,
        groups=[("a.head0", [(0, 2)]), ("a.head1", [(2, 4)]), ("b", [(4, 7)])],
        examples=ExampleInfo(index=np.array([4, 0, 9])),
        val_examples=ExampleInfo(index=np.array([1, 2])), example_groups=np.array([0, 1]))
    return LayoutInfo(**(base | kw))


def _rec(**kw) -> IterationRecord:
    base = dict(loss_train=1.0, acc_train=0.0, loss_minibatch=1.0, residual=0.0, splits=1,
                lca_layer=np.zeros(2), help_count=np.zeros(2, int), hurt_count=np.zeros(2, int),
                seconds=0.0, lca_group=np.zeros(3), loss_val=1.0, acc_val=0.0,
                lca_val_layer=np.zeros(2), val_residual=0.0, lca_val_group=np.zeros(3),
                example=np.ones((3, 2)), example_group=np.ones((3, 2)),
                val_example=np.ones((2, 2)), val_example_group=np.ones((2, 2)))
    return IterationRecord(**(base | kw))


def test_layouts_and_records_that_do_not_fit_are_refused_before_anything_is_kept(tmp_path):
    for kw, match in (({"val_lca": False}, "val_examples needs val_lca"),
                      ({"groups": None}, "example_groups needs groups and examples"),
                      ({"example_groups": np.array([1, 0])}, "increasing indices"),
                      ({"example_groups": np.array([3])}, "increasing indices"),
                      ({"val_examples": ExampleInfo(index=np.zeros((2, 2), int))},
                       "examples.index must be")):
        with pytest.raises(ValueError, match=match):
            BundleWriter.create(tmp_path / "x.h5", _hand_layout(**kw), theta0=None,
                                loss_train0=1.0, acc_train0=0.0, loss_val0=1.0, acc_val0=0.0)
        assert not (tmp_path / "x.h5").exists()
    w = BundleWriter.create(tmp_path / "h.h5", _hand_layout(), theta0=None, loss_train0=1.0,
                            acc_train0=0.0, loss_val0=1.0, acc_val0=0.0)
    for bad, match in (({"val_example": None}, "lca_val_example: give IterationRecord."
                                               "val_example"),
                       ({"val_example_group": np.ones((2, 3))}, "val_example_group has shape"),
                       ({"example_group": None}, "every allocated iteration"),
                       ({"val_example_loss_after": np.ones(3)}, "expected 2")):
        with pytest.raises(ValueError, match=match):
            w.append(_rec(**bad))
    assert w.T == 0 and not w._buffer
    w.append(_rec(val_example=np.full((2, 2), 2.0)))
    w.append(_rec())
    w.append_lca_row(np.zeros(7), "lca_val")
    w.append_lca_row(np.zeros(7))
    w.close()
    with RunBundle.open(tmp_path / "h.h5") as b:
        np.testing.assert_array_equal(b.example_lca_rows(split="val"), [np.full((2, 2), 3.0)])
        np.testing.assert_array_equal(b.example_index(split="val"), [1, 2])
        assert b.example_group_names == ["a.head0", "a.head1"]
    plain = _hand_layout(val_examples=None, example_groups=None)
    w = BundleWriter.create(tmp_path / "p.h5", plain, theta0=None, loss_train0=1.0,
                            acc_train0=0.0, loss_val0=1.0, acc_val0=0.0)
    with pytest.raises(ValueError, match="without examples for IterationRecord.val_example"):
        w.append(_rec(example_group=None))
    w.close()


def test_the_notebook_api_gives_validation_and_group_tables(tmp_path):
    import lcaviz

    path, _ = _write(tmp_path / "api.h5", _run())
    with lcaviz.open(path) as run, RunBundle.open(path) as b:
        total = run.examples(split="val", by="group")
        assert list(total.columns) == b.example_group_names and total.columns.name == "group"
        assert list(total.index) == b.example_index(split="val").tolist()
        np.testing.assert_array_equal(total.to_numpy(), b.example_cumsum(split="val", by="group"))
        rows = run.examples(cumulative=False, split="val")
        assert rows.shape == (11 * NV, 4) and list(rows.columns[1:]) == ["fc1", "fc2", "fc3"]
        np.testing.assert_array_equal(rows[["fc1", "fc2", "fc3"]].to_numpy(),
                                      b.example_lca_rows(split="val").reshape(-1, 3))
    only = write_synthetic_bundle(tmp_path / "t.h5", n_iters=4, layers=LAYERS, examples=5)
    with lcaviz.open(only) as run, pytest.raises(ValueError, match="validation loss"):
        run.examples(split="val")
