"""The notebook API (lcaviz.open / Run / compare) against the bundle's own numbers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import lcaviz
from lcaviz.api import NotInBundleError
from lcaviz.bundle import BundleNotFoundError, MissingRowsError, RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from tests.lcaviz._bundle_factory import matrix_bundle

ROOT = Path(__file__).resolve().parents[2]
SIZES = [6, 4, 3]
T = 12


def _lca(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1e-3, (T, sum(SIZES)))
    a[:, 0] = 0.0  # one dead parameter: the helping percentages skip it
    return a.astype(np.float32)


@pytest.fixture()
def known(tmp_path):
    lca = _lca()
    path = matrix_bundle(tmp_path / "known.h5", lca, SIZES, stride=1)
    with lcaviz.open(path) as run:
        yield run, lca.astype(np.float64)


def _layer_sums(lca: np.ndarray) -> np.ndarray:
    edges = np.cumsum([0, *SIZES])
    pairs = zip(edges[:-1], edges[1:], strict=True)
    return np.stack([lca[:, a:b].sum(axis=1) for a, b in pairs], axis=1)


def test_open_errors_and_repr(tmp_path, known):
    run, _ = known
    assert isinstance(run, lcaviz.Run) and "known" in repr(run)
    assert run.config["net"] == "matrix" and run.status == "complete"
    run.config["net"] = "changed"  # a copy: the bundle's config is not touched
    assert run.config["net"] == "matrix"
    with pytest.raises(BundleNotFoundError):
        lcaviz.open(tmp_path / "missing.h5")


def test_layers_tables_equal_the_matrix(known):
    run, lca = known
    sums = _layer_sums(lca)
    df = run.layers()
    assert df.index.name == "iteration" and df.columns.name == "layer"
    assert list(df.columns) == ["l0", "l1", "l2"] and df.shape == (T, 3)
    np.testing.assert_allclose(df.to_numpy(), sums, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(run.layers(cumulative=True).to_numpy(), np.cumsum(sums, 0),
                               rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(run.layers(per_param=True).to_numpy(), sums / SIZES,
                               rtol=1e-6, atol=1e-12)


def test_classes_long_format_sums_to_layers(known):
    run, lca = known
    df = run.classes()
    assert list(df.columns) == ["iteration", "class", "layer", "lca"]
    assert len(df) == T * 3 * 3
    wide = df.groupby(["iteration", "layer"])["lca"].sum().unstack("layer")
    np.testing.assert_allclose(wide.to_numpy(), _layer_sums(lca), rtol=1e-6, atol=1e-12)


def test_helping_counts_signs(known):
    run, lca = known
    edges = np.cumsum([0, *SIZES])
    want = np.stack([100 * (lca[:, a:b] < 0).sum(1) / (lca[:, a:b] != 0).sum(1)
                     for a, b in zip(edges[:-1], edges[1:], strict=True)], axis=1)
    np.testing.assert_allclose(run.helping().to_numpy(), want, rtol=1e-12)
    whole = run.helping(by="run")
    np.testing.assert_array_equal(whole["helped"].to_numpy(), (lca < 0).sum(1))
    with pytest.raises(ValueError, match="by="):
        run.helping(by="tensor")


def test_loss_table(known):
    run, lca = known
    df = run.loss()
    assert df.index.name == "iteration" and len(df) == T + 1
    want = 2.0 + np.concatenate([[0.0], np.cumsum(lca.sum(1))])
    np.testing.assert_allclose(df["train"].to_numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(df["minibatch"].to_numpy()[:T], want[1:], rtol=1e-6)
    assert np.isnan(df["minibatch"].iloc[-1]) and np.isnan(df["residual"].iloc[-1])
    assert "val" not in df


def test_frame_modes_equal_row_sums(known):
    run, lca = known
    cols = slice(6, 10)  # layer l1
    np.testing.assert_allclose(run.frame("l1", 5), lca[5, cols], rtol=1e-6)
    np.testing.assert_allclose(run.frame(1, 5, "cumulative"), lca[:6, cols].sum(0), rtol=1e-5)
    np.testing.assert_allclose(run.frame("l1.weight", 7, "window", window=3),
                               lca[5:8, cols].sum(0), rtol=1e-5)
    with pytest.raises(IndexError, match="out of range"):
        run.frame("l1", T)
    with pytest.raises(ValueError, match="mode"):
        run.frame("l1", 0, mode="sum")
    with pytest.raises(KeyError):
        run.frame("nope", 0)


def test_frame_of_a_strided_bundle_is_the_rows_window(tmp_path):
    lca = _lca(1)
    with lcaviz.open(matrix_bundle(tmp_path / "s.h5", lca, SIZES, stride=4)) as run:
        np.testing.assert_allclose(run.frame("l0", 5), lca[4:8, :6].sum(0), rtol=1e-5,
                                   atol=1e-9)


def test_frame_in_tensor_shapes(tmp_path):
    path = write_synthetic_bundle(tmp_path / "syn.h5", n_iters=8, n_classes=3,
                                  layers=(("fc1", (5, 7)), ("fc2", (3, 5))))
    with lcaviz.open(path) as run, RunBundle.open(path) as b:
        f = run.frame("fc1", 3)
        assert set(f) == {"fc1.weight", "fc1.bias"}
        assert f["fc1.weight"].shape == (5, 7) and f["fc1.bias"].shape == (5,)
        flat = b.row(3, b.layer_columns("fc1"))
        np.testing.assert_array_equal(f["fc1.weight"].ravel(), flat[:35])
        np.testing.assert_array_equal(f["fc1.bias"], flat[35:])


def test_groups_of_the_grokking_sample():
    with lcaviz.open(ROOT / "sample_runs" / "grokking_transformer.h5") as run:
        b = run.bundle
        df = run.groups()
        assert list(df.columns) == b.group_names and df.columns.name == "group"
        np.testing.assert_allclose(df.to_numpy(), b.lca_group(), rtol=1e-12)
        assert "val" in run.loss()


def test_missing_optional_data_says_so(known, tmp_path):
    run, _ = known
    with pytest.raises(NotInBundleError, match="no parameter groups"):
        run.groups()
    with pytest.raises(NotInBundleError, match="no per-example values"):
        run.examples()
    with pytest.raises(NotInBundleError, match="no per-example values"):
        run.figure("examples")
    path = write_synthetic_bundle(tmp_path / "noclass.h5", n_iters=5, per_class=False,
                                  layers=(("a", (3, 4)),))
    with lcaviz.open(path) as r, pytest.raises(NotInBundleError, match="per-class"):
        r.classes()


def test_examples_read_the_planned_datasets(tmp_path):
    path = matrix_bundle(tmp_path / "ex.h5", _lca(), SIZES, stride=4)
    rng = np.random.default_rng(3)
    per = rng.normal(size=(3, 5, 3))  # (R, N_e, L)
    with h5py.File(path, "a") as f:
        f["lca_example"] = per
        f["examples/index"] = np.array([10, 11, 42, 7, 3])
    with lcaviz.open(path) as run:
        cum = run.examples()
        assert cum.index.name == "example" and list(cum.index) == [10, 11, 42, 7, 3]
        np.testing.assert_allclose(cum.to_numpy(), per.sum(0))
        rows = run.examples(cumulative=False)
        assert rows.index.names == ["row", "example"] and len(rows) == 15
        np.testing.assert_allclose(rows[["l0", "l1", "l2"]].to_numpy(), per.reshape(15, 3))
        assert list(rows["iteration"].iloc[::5]) == [0, 4, 8]
        fig = run.figure("examples", top=2)
        assert len(fig.data[0].x) == 4


def test_figures_are_the_dashboards_and_hold_the_bundles_numbers(known):
    run, lca = known
    sums = _layer_sums(lca)
    curves = run.figure("curves")
    y = {tr.name: np.asarray(tr.y, float) for tr in curves.data if tr.name in ("l0", "l1")}
    np.testing.assert_allclose(y["l1"], sums[:, 1], rtol=1e-6, atol=1e-12)
    bars = run.figure("bars")
    np.testing.assert_allclose(np.asarray(bars.data[0].y, float), sums.sum(0), rtol=1e-6)
    upto = run.figure("bars", iteration=3)  # totals up to the marker, as the page's "up to"
    np.testing.assert_allclose(np.asarray(upto.data[0].y, float), sums[:4].sum(0), rtol=1e-6)
    loss = run.figure("loss")
    train = next(tr for tr in loss.data if "train" in (tr.name or "").lower())
    np.testing.assert_allclose(np.asarray(train.y, float), run.loss()["train"], rtol=1e-6)
    for name in ("residual", "help", "help_layer", "help_fraction", "histogram", "weibull",
                 "peaks", "drill"):
        fig = run.figure(name, **({"param": 7} if name == "drill" else {}))
        assert isinstance(fig, go.Figure) and fig.data, name
    drill = run.figure("drill", param=7)
    np.testing.assert_allclose(np.asarray(drill.data[0].y, float), lca[:, 7], rtol=1e-6)


def test_heatmap_figure_is_the_frame(tmp_path):
    path = write_synthetic_bundle(tmp_path / "h.h5", n_iters=6, n_classes=3,
                                  layers=(("fc1", (5, 7)),))
    with lcaviz.open(path) as run:
        fig = run.figure("heatmap", layer="fc1", iteration=4, fixed_range=False)
        z = np.asarray(fig.data[0].z, float)
        np.testing.assert_allclose(z, run.frame("fc1", 4)["fc1.weight"], rtol=1e-6)
        assert "iteration 4" in fig.layout.title.text
        cum = run.figure("heatmap", layer=0, iteration=4, mode="cumulative")
        np.testing.assert_allclose(np.asarray(cum.data[0].z, float),
                                   run.frame("fc1.weight", 4, "cumulative"), rtol=1e-6)


def test_synchrony_figure_carries_the_shift_test(tmp_path):
    path = write_synthetic_bundle(tmp_path / "sync.h5", n_iters=60, n_classes=3,
                                  sync_peaks=4, layers=(("a", (4, 5)), ("b", (3, 4))))
    with lcaviz.open(path) as run:
        fig = run.figure("synchrony", k=5, resamples=200)
        result = run.synchrony(k=5, resamples=200)
        assert fig.layout.meta["p_value"] == pytest.approx(result["p_value"])
        assert fig.layout.meta["actual_total"] == result["actual_total"]
        assert f"{result['actual_total']} aligned moments" in fig.layout.title.text


def test_figure_names_and_options_are_checked(known):
    run, _ = known
    with pytest.raises(ValueError, match="heatmap"):
        run.figure("heatmapp")
    with pytest.raises(TypeError):
        run.figure("loss", colour="red")
    with pytest.raises(ValueError, match="group"):
        run.figure("weibull", group="tensor")


def test_compare_figures_and_table(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = matrix_bundle(tmp_path / "a" / "seed.h5", _lca(0), SIZES)
    b = matrix_bundle(tmp_path / "b" / "seed.h5", _lca(1), SIZES)
    run_a = lcaviz.open(a)
    with lcaviz.compare([run_a, b]) as cmp:
        assert cmp.names == ["seed", "seed#2"]
        loss = cmp.figure("loss")
        assert [tr.name for tr in loss.data] == cmp.names
        for tr, path in zip(loss.data, (a, b), strict=True):
            with RunBundle.open(path) as bb:
                np.testing.assert_allclose(np.asarray(tr.y, float), bb.loss_train(), rtol=1e-6)
        layers = cmp.figure("layers")
        np.testing.assert_allclose(np.asarray(layers.data[1].y, float),
                                   _layer_sums(_lca(1).astype(np.float64)).sum(0), rtol=1e-5)
        heat = cmp.figure("heatmap", layer="l1", iteration=3)
        assert len(heat) == 2 and all(isinstance(f, go.Figure) for f in heat)
        assert heat[0].layout.coloraxis.cmax == heat[1].layout.coloraxis.cmax
        table = cmp.table()
        assert isinstance(table, pd.DataFrame) and list(table["name"]) == ["l0", "l1", "l2"]
        with pytest.raises(KeyError, match="no run has a layer"):
            cmp.figure("heatmap", layer="l9")
        with pytest.raises(ValueError, match="compare figure"):
            cmp.figure("weibull")
    assert run_a.bundle._f is not None  # a Run the caller gave stays open
    run_a.close()
    with pytest.raises(ValueError, match="at least two"):
        lcaviz.compare([a])


_WRITER = textwrap.dedent("""
    import sys
    from lcaviz.bundle.synthetic import SyntheticRun
    run = SyntheticRun(layers=(("a", (6, 5)),), n_iters=30, stride=2, n_classes=3)
    w = run.create_writer(sys.argv[1], flush_seconds=0.0)
    it = run.records()
    for n in (6, 8):
        for _ in range(n):
            w.append(next(it))
        w.flush()
        print("flushed", flush=True)
        sys.stdin.readline()
    w.close("complete")
    print("closed", flush=True)
""")


def test_refresh_follows_a_live_run(tmp_path):
    path = tmp_path / "live.h5"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "flushed"
        run = lcaviz.open(path)
        assert run.status == "running" and len(run.layers()) == 6
        assert len(run.figure("curves").data[0].y) == 6
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "flushed"
        assert run.refresh() is run and len(run.layers()) == 14
        assert len(run.figure("curves").data[0].y) == 14  # no stale cached figure data
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "closed"
        assert run.refresh().status == "complete"
        run.close()
    finally:
        proc.kill()
        proc.wait()


def test_the_api_never_imports_torch():
    code = ("import sys, lcaviz; lcaviz.open; lcaviz.compare; lcaviz.show; "
            "import lcaviz.export.tensorboard, lcaviz.export.wandb, lcaviz.export.cli; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "sample_runs").glob("*.h5")))
def test_every_sample_run_opens_with_consistent_tables(name):
    with lcaviz.open(ROOT / "sample_runs" / name) as run:
        b = run.bundle
        T, L = b.n_iters, b.n_layers
        assert run.layers().shape == run.helping().shape == (T, L)
        assert len(run.loss()) == T + 1
        np.testing.assert_allclose(run.layers(cumulative=True).iloc[-1].to_numpy(),
                                   np.nansum(b.lca_layer(), axis=0), rtol=1e-9)
        # what the loss changed by = what the layers were allocated + the residual
        loss = run.loss()
        np.testing.assert_allclose(loss["train"].iloc[-1] - loss["train"].iloc[0],
                                   run.layers().sum().sum() + loss["residual"].sum(),
                                   rtol=1e-6, atol=1e-9)
        li = b.row_layers[0]
        frame = run.frame(li, T - 1)
        values = np.concatenate([np.ravel(v) for v in
                                 (frame.values() if isinstance(frame, dict) else [frame])])
        np.testing.assert_array_equal(values, b.row(b.n_rows - 1, b.layer_columns(li)))
        missing = [i for i in range(L) if i not in b.row_layers]
        if missing:  # --lca-layers: per-parameter rows of the other layers were not kept
            with pytest.raises(MissingRowsError, match="no per-parameter rows"):
                run.frame(missing[0], 0)
