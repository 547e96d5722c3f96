"""Per-example LCA through both faces of the engine: ``lca-run --per-example`` and
``LCATracker(per_example=...)`` write the bundle's ``lca_example`` rows (issue 24)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from compute import LCATracker
from compute.run.config import ConfigError, RunConfig
from compute.run.train import run_lca
from lcaviz.bundle import RunBundle

SMALL = dict(net="mnist_fc", dataset="synthetic", train_size=300, val_size=60, batch_size=50,
             iters=6, chunk_size=128, checkpoint_every=2, seed=4, lca_rows="2")


def _examples(path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ("lca_example", "lca_example_cumsum", "loss_example",
                                      "loss_example_last", "examples/index", "lca_layer")}


def _window_sums(b: RunBundle) -> np.ndarray:
    lay = b.lca_layer()
    return np.stack([lay[s:e].sum(axis=0) for s, e in b.row_windows])  # (R, L)


def test_lca_run_rows_split_the_layer_lca_among_all_examples(tmp_path):
    out = run_lca(RunConfig(**SMALL, per_example="all"), tmp_path / "a.h5", progress=False)
    with RunBundle.open(out) as b:
        rows = b.example_lca_rows()  # (R, N, L), float32 in the bundle
        assert rows.shape == (3, 300, b.n_layers) and b.format_version == 4
        # Σ_n E = lca_layer over each row window (float32 storage: ~1e-7 of each value)
        np.testing.assert_allclose(rows.sum(axis=1), _window_sums(b), rtol=0, atol=1e-6 *
                                   np.abs(rows).sum(axis=1).max())
        # the float64 running sum against the whole run's per-layer LCA: the net evaluates in
        # float32, so the two routes (hooks vs gradient · Δθ) agree to float32 rounding
        np.testing.assert_allclose(b.example_cumsum().sum(axis=0), b.lca_layer().sum(axis=0),
                                   rtol=1e-6)
        assert list(b.example_index()) == list(range(300))
        assert b.config["per_example"] == "all" and b.config["per_example_of"] == 300
        thumbs = b.example_thumbnails(np.arange(3))
        assert thumbs.dtype == np.uint8 and thumbs.shape[0] == 3


def test_label_noise_is_recorded_and_trained_on(tmp_path):
    out = run_lca(RunConfig(**SMALL, per_example=40, label_noise=0.2), tmp_path / "n.h5",
                  progress=False)
    with RunBundle.open(out) as b:
        noise = b.label_noise()
        assert noise["fraction"] == pytest.approx(0.2) and len(noise["flipped"]) == 60
        index, labels = b.example_index(), b.example_labels()
        assert len(index) == 40 and np.all(np.diff(index) > 0)
        flipped = dict(zip(noise["flipped"].tolist(), noise["original"].tolist(), strict=True))
        hit = [i for i, n in enumerate(index) if int(n) in flipped]
        assert hit, "a 40-example stratified subset of 300 with 60 flipped holds some"
        for i in hit:  # the bundle's labels are the noisy ones the run trained on
            assert labels[i] != flipped[int(index[i])]
    # the same seed tracks the same examples and flips the same labels
    again = run_lca(RunConfig(**{**SMALL, "iters": 2}, per_example=40, label_noise=0.2),
                    tmp_path / "n2.h5", progress=False)
    with RunBundle.open(again) as b2:
        assert np.array_equal(b2.example_index(), index)
        assert np.array_equal(b2.label_noise()["flipped"], noise["flipped"])


def test_resume_continues_the_example_rows_bit_for_bit(tmp_path):
    cfg = RunConfig(**SMALL, per_example=50)
    ref = _examples(run_lca(cfg, tmp_path / "ref.h5", progress=False))
    out = tmp_path / "killed.h5"
    run_lca(cfg, out, progress=False, stop_after=5)  # last checkpoint at T=4
    run_lca(None, out, resume=True, progress=False)
    got = _examples(out)
    for key, value in ref.items():
        assert np.array_equal(got[key], value, equal_nan=True), key


def test_the_tracker_takes_per_example(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.randn(90, 6, dtype=torch.float64), torch.randint(0, 3, (90,))
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    with LCATracker(model, x, y, out=tmp_path / "t.h5", optimizer=opt, per_example=True,
                    lca_rows=1) as lca:
        for t in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[t * 30:(t + 1) * 30]), y[t * 30:(t + 1) * 30]
                                        ).backward()
            opt.step()
            lca.step()
    with RunBundle.open(tmp_path / "t.h5") as b:
        rows = b.example_lca_rows()  # float32 rows of float64 values
        np.testing.assert_allclose(rows.sum(axis=1), b.lca_layer(), rtol=1e-5, atol=1e-9)
        assert b.n_examples == 90 and b.example_thumbnails(np.arange(2)) is None


@pytest.mark.parametrize("kw, match", [
    ({"per_example": 0}, "per_example= must be 'all' or a positive integer"),
    ({"per_example": "some"}, "per_example= must be 'all' or a positive integer"),
    ({"per_example": "all", "lca_data": "100", "lca_data_resample": True}, "fixed allocated"),
    ({"per_example": "all", "compile": True}, "eager forward"),
])
def test_bad_per_example_settings_are_refused(tmp_path, kw, match):
    model = nn.Linear(4, 3)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    with pytest.raises(ConfigError, match=match):
        LCATracker(model, x, y, out=tmp_path / "x.h5", **kw)
    assert not (tmp_path / "x.h5").exists()


def test_label_noise_flag_is_checked():
    with pytest.raises(ConfigError, match="--label-noise must be a fraction"):
        RunConfig(**SMALL, label_noise=1.5).validate()


def test_with_lca_every_the_rows_sum_the_allocated_iterations(tmp_path):
    out = run_lca(RunConfig(**SMALL, per_example="all", lca_every=2), tmp_path / "e.h5",
                  progress=False)
    with RunBundle.open(out) as b:
        rows, lay = b.example_lca_rows(), np.nan_to_num(b.lca_layer())  # NaN: not allocated
        sums = np.stack([lay[s:e].sum(axis=0) for s, e in b.row_windows])
        np.testing.assert_allclose(rows.sum(axis=1), sums, rtol=0,
                                   atol=1e-6 * np.abs(rows).sum(axis=1).max())
        # iterations 0, 2, 4 are allocated: after the last one (5) no example loss exists
        assert np.isnan(b.example_loss_last()).all()
