"""Helping / hurting / zero percentages against planted patterns with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from lcaviz.analysis import (
    help_series,
    layer_helping,
    overall_helping,
    param_help_fraction,
    param_help_histogram,
)
from lcaviz.bundle import RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from tests.lcaviz._bundle_factory import SMALL_LAYERS, matrix_bundle


def planted(T: int = 30, seed: int = 0) -> np.ndarray:
    """Layer 0 (20 params): 12 help, 6 hurt, 2 zero; layer 1 (20): 5 help, 10 hurt, 5 zero —
    at every iteration, with the roles shuffled between parameters."""
    rng = np.random.default_rng(seed)
    lca = np.zeros((T, 40), np.float32)
    for t in range(T):
        for lo, (h, u) in ((0, (12, 6)), (20, (5, 10))):
            signs = np.array([-1] * h + [1] * u + [0] * (20 - h - u))
            lca[t, lo:lo + 20] = rng.permutation(signs) * rng.uniform(0.1, 2, 20)
    return lca


@pytest.mark.parametrize("stride", [1, 4])
def test_planted_percentages_exact(tmp_path, stride):
    lca = planted()
    with RunBundle.open(matrix_bundle(tmp_path / "p.h5", lca, [20, 20], stride=stride)) as b:
        s = help_series(b)
        np.testing.assert_allclose(s.pct_help, 100 * 17 / 33)
        np.testing.assert_allclose(s.frac_zero, 100 * 7 / 40)
        np.testing.assert_allclose(s.frac_help + s.frac_hurt + s.frac_zero, 100)
        o = overall_helping(b)
        assert o["pct_help"] == pytest.approx(100 * 17 / 33)
        assert o["pct_help_pooled"] == pytest.approx(100 * 17 / 33)
        assert o["pct_hurt"] == pytest.approx(100 * 16 / 33) and o["n_iters"] == 30
        lay = layer_helping(b)
        np.testing.assert_allclose(lay.pct_help, [100 * 12 / 18, 100 * 5 / 15])
        np.testing.assert_allclose(lay.pct_zero, [10, 25])


def test_param_help_fraction_matches_matrix(tmp_path):
    lca = planted(seed=1)
    with RunBundle.open(matrix_bundle(tmp_path / "p.h5", lca, [20, 20])) as b:
        nonzero = (lca != 0).sum(0)
        want = (lca < 0).sum(0)[nonzero > 0] / nonzero[nonzero > 0]
        np.testing.assert_allclose(param_help_fraction(b), want)
        np.testing.assert_allclose(param_help_fraction(b, "l1", denominator="all"),
                                   (lca[:, 20:] < 0).sum(0) / 30)
        counts, edges = param_help_histogram(b, bins=10)
        assert counts.sum() == want.size and edges[0] == 0 and edges[-1] == 1


def test_iterations_without_nonzero_lca_are_skipped(tmp_path):
    lca = planted(T=6)
    lca[2] = 0
    with RunBundle.open(matrix_bundle(tmp_path / "z.h5", lca, [20, 20])) as b:
        assert np.isnan(help_series(b).pct_help[2])
        assert overall_helping(b)["pct_help"] == pytest.approx(100 * 17 / 33)


def test_synthetic_planted_fractions(tmp_path):
    path = write_synthetic_bundle(tmp_path / "s.h5", n_iters=60, layers=SMALL_LAYERS,
                                  zero_fraction=0.3, help_fraction=[0.6, 0.5, 0.7], seed=2)
    with RunBundle.open(path) as b:
        o = overall_helping(b)
        dead = b.config["synthetic"]["n_dead"] / b.n_params
        assert o["pct_zero"] == pytest.approx(100 * dead, abs=1e-9)  # dead params only
        assert abs(dead - 0.3) < 0.03
        lay = layer_helping(b)
        np.testing.assert_allclose(lay.pct_help, [60, 50, 70], atol=1.5)
        frac = param_help_fraction(b)
        assert frac.size == b.n_params - b.config["synthetic"]["n_dead"]
        assert abs(frac.mean() - np.average([0.6, 0.5, 0.7], weights=b.layer_sizes)) < 0.02
