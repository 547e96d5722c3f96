"""Streaming histograms of helping / hurting LCA and the heavy-tail measure."""

from __future__ import annotations

import numpy as np
import pytest

from lcaviz.analysis import lca_histograms, moments, scan_values, tail_mass
from lcaviz.analysis.scan import FINITE, fine_edges
from lcaviz.bundle import RunBundle
from tests.lcaviz._bundle_factory import matrix_bundle


@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    """Weibull(k = 0.6) magnitudes with random signs, 25 % exact zeros: (path, values)."""
    rng = np.random.default_rng(0)
    mags = 3e-4 * rng.weibull(0.6, (40, 2500))
    signs = np.where(rng.random((40, 2500)) < 0.55, -1.0, 1.0)
    lca = (signs * mags * (rng.random((40, 2500)) > 0.25)).astype(np.float32)
    return matrix_bundle(tmp_path_factory.mktemp("d") / "h.h5", lca, [2000, 500]), lca


@pytest.fixture(scope="module")
def gauss(tmp_path_factory):
    lca = np.random.default_rng(1).normal(0, 2e-3, (40, 25000)).astype(np.float32)
    return matrix_bundle(tmp_path_factory.mktemp("g") / "g.h5", lca, [25000]), lca


def test_fine_counts_are_exact(heavy):
    path, lca = heavy
    edges = fine_edges()
    with RunBundle.open(path) as b:
        scan = scan_values(b, sample_size=0, layer_sample_size=0)
    assert scan.n_zero() == (lca == 0).sum() and scan.n_nonfinite() == 0
    for sign, vals in (("help", -lca[lca < 0]), ("hurt", lca[lca > 0])):
        want = np.bincount(np.searchsorted(edges, vals, side="right") - 1, minlength=FINITE)
        np.testing.assert_array_equal(scan.fine_counts(sign), want)
    layer1 = lca[:, 2000:]
    assert scan.fine_counts("help", layer=1).sum() == (layer1 < 0).sum()


def test_block_size_does_not_change_the_result(heavy):
    with RunBundle.open(heavy[0]) as b:
        a = scan_values(b, sample_size=500, layer_sample_size=100, seed=4)
        c = scan_values(b, sample_size=500, layer_sample_size=100, seed=4, budget_bytes=4096)
    np.testing.assert_array_equal(a.counts, c.counts)
    np.testing.assert_array_equal(a.help_sample, c.help_sample)
    np.testing.assert_array_equal(a.layer_hurt_samples[1], c.layer_hurt_samples[1])


@pytest.mark.parametrize("log_bins", [False, True])
def test_histograms_match_numpy(heavy, log_bins):
    path, lca = heavy
    with RunBundle.open(path) as b:
        h = lca_histograms(b, bins=40, clip_percentile=None, log_bins=log_bins)
    for sign, vals in (("help", lca[lca < 0]), ("hurt", lca[lca > 0])):
        edges, counts = h[sign]["edges"], h[sign]["counts"]
        assert h[f"n_{sign}"] == vals.size and counts.sum() == pytest.approx(vals.size, abs=1)
        want, _ = np.histogram(vals.astype(np.float64), bins=edges)
        # only the fine bin (≤ 1.6 % wide) cut by each output edge is split by interpolation
        assert np.abs(counts - want).sum() / vals.size < 0.01
    assert h["n_zero"] == (lca == 0).sum()
    if not log_bins:
        assert h["help"]["edges"][-1] == 0 and h["hurt"]["edges"][0] == 0


def test_tail_clipping(heavy):
    path, lca = heavy
    with RunBundle.open(path) as b:
        h = lca_histograms(b, bins=50, clip_percentile=99.0)
    for sign in ("help", "hurt"):
        assert h[f"clipped_{sign}"] / h[f"n_{sign}"] == pytest.approx(0.01, abs=0.001)
    top = np.quantile(lca[lca > 0], 0.99)
    assert h["hurt"]["edges"][-1] == pytest.approx(top, rel=0.02)


def test_moments_and_tail_mass(heavy, gauss):
    with RunBundle.open(gauss[0]) as b:
        g = tail_mass(b)
    vals = gauss[1].astype(np.float64)
    assert g["mean"] == pytest.approx(vals.mean(), abs=1e-3 * vals.std())
    assert g["std"] == pytest.approx(vals.std(), rel=1e-4)
    assert g["ratio"] == pytest.approx(1.0, abs=0.1)  # a Gaussian is its own reference
    assert g["contribution_ratio"] == pytest.approx(1.0, abs=0.1)
    assert g["frac_beyond"] == pytest.approx((np.abs(vals - vals.mean()) > 3 * vals.std()).mean(),
                                             rel=0.02)
    with RunBundle.open(heavy[0]) as b:
        scan = scan_values(b, sample_size=0, layer_sample_size=0)
    h = tail_mass(scan)
    assert h["ratio"] > 2 and h["contribution_ratio"] > 2  # heavy tails
    nz = heavy[1][heavy[1] != 0].astype(np.float64)
    assert moments(scan)["std"] == pytest.approx(nz.std(), rel=1e-3)
    assert tail_mass(scan, layer=1)["n"] == (heavy[1][:, 2000:] != 0).sum()


def test_distributions_use_per_iteration_rows_and_say_so(tmp_path):
    """A dense-then-windowed run: the value statistics use the per-iteration rows only (the
    window sums would mix magnitudes of 1 and 10 iterations), and say which rows they used."""
    from lcaviz.analysis.scan import distribution_rows, scan_values
    from lcaviz.bundle import RunBundle
    from lcaviz.bundle.synthetic import write_synthetic_bundle

    layers = (("fc1", (8, 10)), ("fc2", (4, 8)))
    dense = write_synthetic_bundle(tmp_path / "d.h5", n_iters=30, layers=layers, n_classes=3,
                                   stride="dense:12,6", seed=2, lca_layers=["fc2"])
    with RunBundle.open(dense) as b:
        rows, note, per_it = distribution_rows(b)
        assert list(rows) == list(range(12)) and per_it
        assert note == "per-iteration LCA of 12 iterations (iterations 0–11)"
        scan = scan_values(b, sample_size=100, layer_sample_size=50)
        assert scan.n_rows == 12 and scan.rows_note == note and scan.layers_with_rows == [1]
        vals = b.rows(0, 12, b.layer_columns("fc2"))  # the only layer with rows
        assert scan.counts.sum() == vals.size and scan.counts[0].sum() == 0
        assert scan.n_zero() == int((vals == 0).sum())
        assert scan.counts[1, 1].sum() - scan.counts[1, 1, 0] == int((vals < 0).sum())
