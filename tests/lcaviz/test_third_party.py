"""A bundle written by another program from docs/bundle-format.md's table "A bundle of your
own" alone (plain h5py, no lcaviz writer) opens in the reader and the app; the torch-free
writer round-trips through the reader with torch unimportable (issue 16.3)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np

from lcaviz.app import create_app, get_state
from lcaviz.app.frames import frame_block, stream_descriptor
from lcaviz.app.pages import run_callbacks
from lcaviz.bundle import RunBundle

ROOT = Path(__file__).resolve().parents[2]
T = 12


def _write(path: Path, rows_per_iteration: bool = True):
    """What a JAX user would write: a 2-layer MLP (4x3 + 3, 2x4 + 2), T iterations."""
    rng = np.random.default_rng(0)
    P = 12 + 3 + 8 + 2
    lca = rng.standard_normal((T, P)).astype(np.float32) * 1e-3
    lca[:, 5] = 0  # a parameter that never moved
    loss = 2.0 + np.concatenate([[0], np.cumsum(lca.sum(1, dtype=np.float64))])
    loss[1:] += 1e-7  # a tiny conservation error
    str_ = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "lca-bundle", 2
        if rows_per_iteration:
            windows = np.stack([np.arange(T), np.arange(1, T + 1)], 1)
            rows = lca
        else:
            windows = np.array([[0, 4], [4, 8], [8, 12]])
            rows = lca.reshape(3, 4, P).sum(1)
        f["progress"] = np.array([T, len(rows)], np.int64)
        f["params/names"] = np.array(["l1.w", "l1.b", "l2.w", "l2.b"], dtype=str_)
        f["params/shapes"] = np.array([[4, 3, -1, -1], [3, -1, -1, -1], [2, 4, -1, -1],
                                       [2, -1, -1, -1]], np.int64)
        f["params/offsets"] = np.array([0, 12, 15, 23, 25], np.int64)
        f["params/layer"] = np.array([0, 0, 1, 1], np.int32)
        f["params/layer_names"] = np.array(["l1", "l2"], dtype=str_)
        f["lca"] = rows
        f["lca_rows"] = windows.astype(np.int64)
        f["loss/train"] = loss
    return lca, loss


def test_a_core_only_bundle_opens_and_derives_the_rest(tmp_path):
    path = tmp_path / "jax.h5"
    lca, loss = _write(path)
    with RunBundle.open(path) as b:
        assert (b.n_iters, b.n_rows, b.n_params, b.n_layers, b.n_classes) == (T, T, 25, 2, 0)
        assert list(b.layer_sizes) == [15, 10] and b.status == ""
        want_layer = np.stack([lca[:, :15].sum(1, dtype=np.float64),
                               lca[:, 15:].sum(1, dtype=np.float64)], 1)
        np.testing.assert_allclose(b.lca_layer(), want_layer, rtol=1e-12)
        np.testing.assert_array_equal(b.help_count()[:, 0], (lca[:, :15] < 0).sum(1))
        np.testing.assert_array_equal(b.hurt_count()[:, 1], (lca[:, 15:] > 0).sum(1))
        np.testing.assert_array_equal(b.param_nonzero_iters()[5], 0)
        np.testing.assert_allclose(b.residual(), np.diff(loss) - want_layer.sum(1), atol=1e-15)
        np.testing.assert_allclose(b.cumulative(T - 1), lca.sum(0, dtype=np.float64),
                                   rtol=1e-6)
        assert np.isnan(b.loss_minibatch()).all() and (b.splits() == -1).all()
    # and the app shows it: run page, heatmap stream and frames, panels
    state = get_state(create_app(tmp_path))
    meta, title, sub, err = run_callbacks.init_run(state, "jax.h5")[:4]
    assert err is None and meta["T"] == T and meta["layers"] == ["l1", "l2"]
    stream = stream_descriptor(state, "jax.h5", 0, "cumulative", 1, "fixed", "auto", None)
    b, _ = state.open("jax.h5")
    head, values = frame_block(b, 0, stream["items"], "cumulative", 1, 0, T)
    np.testing.assert_allclose(values[-1], lca[:, :15].sum(0), rtol=1e-5)
    for name in ("layer_bars", "loss", "residual", "help_time", "help_layer", "help_fraction"):
        assert run_callbacks.simple_view(state, name, "jax.h5", meta).data, name


def test_windows_without_layer_sums_say_what_is_missing(tmp_path):
    path = tmp_path / "win.h5"
    _write(path, rows_per_iteration=False)
    with RunBundle.open(path) as b:
        assert b.n_rows == 3 and b.row_windows.tolist() == [[0, 4], [4, 8], [8, 12]]
        try:
            b.lca_layer()
        except Exception as e:  # noqa: BLE001 - the message is the point
            assert "one lca row per iteration" in str(e) and type(e).__name__ == \
                "CorruptBundleError"
        else:
            raise AssertionError("lca_layer cannot be derived from window sums")


def test_the_writer_works_without_torch(tmp_path):
    """The torch-free writer and the reader, with torch made unimportable."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import numpy as np
        from lcaviz.bundle import RunBundle
        from lcaviz.bundle.synthetic import write_synthetic_bundle
        p = write_synthetic_bundle({str(tmp_path / "w.h5")!r}, n_iters=9, stride="dense:4,2",
                                   layers=(("a", (3, 4)),), n_classes=2, storage="bfloat16")
        with RunBundle.open(p) as b:
            assert b.n_iters == 9 and b.row_windows.tolist()[-1] == [8, 9]
            print(b.lca_layer().shape, "torch" in sys.modules and sys.modules["torch"])
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "(9, 1) None"
