"""Training vs validation LCA per layer (issue 15.5): the analysis, its figure and summary."""

import numpy as np

from lcaviz.analysis import summarize
from lcaviz.analysis.generalization import train_val_curves, train_val_layers
from lcaviz.bundle import RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from lcaviz.figures.train_val import train_val_figure
from lcaviz.reports.summary_cli import format_report

LAYERS = (("fc1", (6, 8)), ("fc2", (4, 6)), ("fc3", (3, 4)))


def test_train_val_layers_match_hand_sums_and_flag_the_overfitting_layer(tmp_path):
    path = write_synthetic_bundle(tmp_path / "v.h5", n_iters=30, layers=LAYERS, n_classes=3,
                                  val_lca=True, seed=3)
    import h5py

    with h5py.File(path, "r+") as f:  # make fc2 lower the training loss but raise validation
        v = f["lca_val_layer"][()]
        t = f["lca_layer"][()]
        v[:, 1] = np.abs(t[:, 1]) + 1e-3
        f["lca_val_layer"][...] = v
    with RunBundle.open(path) as b:
        table = train_val_layers(b)
        np.testing.assert_allclose(table["train"], b.lca_layer().sum(0), rtol=1e-12)
        np.testing.assert_allclose(table["val"], b.lca_val_layer().sum(0), rtol=1e-12)
        assert list(table["helps_train_hurts_val"]) == [False, True, False]
        part = train_val_layers(b, 10, 20)
        np.testing.assert_allclose(part["val"], b.lca_val_layer()[10:20].sum(0), rtol=1e-12)
        tr, va = train_val_curves(b)
        np.testing.assert_allclose(tr[-1], table["train"], rtol=1e-12)
        fig = train_val_figure(table, (tr, va))
        assert [t.name for t in fig.data[:2]] == ["training loss", "validation loss"]
        assert any(t.name and t.name.startswith("⚠") and list(t.x) == ["fc2"]
                   for t in fig.data)
        s = summarize(b, weibull_sample=2000, shift_resamples=50)
    assert s["train_val"][1]["helps_train_hurts_val"] is True
    assert "fc2" in format_report(s).split("LCA validation")[1].split("\n")[2]
    assert "helps training, hurts validation" in format_report(s)


def test_without_validation_lca_it_says_how_to_get_it(tmp_path):
    path = write_synthetic_bundle(tmp_path / "n.h5", n_iters=5, layers=LAYERS, n_classes=3)
    with RunBundle.open(path) as b:
        assert train_val_layers(b) is None and train_val_curves(b) is None
    fig = train_val_figure(None)
    assert "--val-lca" in fig.layout.annotations[0].text
