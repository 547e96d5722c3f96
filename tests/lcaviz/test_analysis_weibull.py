"""Weibull fits: known shape and scale recovered; sampling error measured across seeds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lcaviz.analysis import fit_weibull, scan_values, weibull_fits
from lcaviz.bundle import RunBundle
from tests.lcaviz._bundle_factory import matrix_bundle

N = 200_000


@pytest.mark.parametrize("k,lam", [(0.6, 2e-6), (0.45, 1.0), (1.7, 3e-3)])
def test_recovers_known_parameters(k, lam):
    x = lam * np.random.default_rng(7).weibull(k, N)
    fit = fit_weibull(x)
    assert fit.n == N
    assert fit.k == pytest.approx(k, rel=0.03) and fit.scale == pytest.approx(lam, rel=0.03)
    k_sp, _, lam_sp = stats.weibull_min.fit(x, floc=0)  # same MLE as scipy
    assert fit.k == pytest.approx(k_sp, rel=1e-4) and fit.scale == pytest.approx(lam_sp, rel=1e-4)
    assert fit.loglik == pytest.approx(stats.weibull_min(fit.k, 0, fit.scale).logpdf(x).sum(),
                                       rel=1e-9)
    assert fit.ks < 0.01 and fit.best == "weibull"


def test_model_comparison():
    rng = np.random.default_rng(3)
    assert fit_weibull(np.abs(rng.normal(0, 2, N))).best == "halfnormal"
    heavy = fit_weibull(rng.weibull(0.6, N))
    assert heavy.aic < heavy.aic_exponential < heavy.aic_halfnormal
    assert heavy.ks < heavy.ks_exponential
    assert np.isnan(fit_weibull(np.array([1.0, 2.0])).k)


@pytest.fixture(scope="module")
def weibull_bundle(tmp_path_factory):
    """2.5 million Weibull(0.6, 1e-4) LCA values: 55 % helping, 20 % exact zeros."""
    rng = np.random.default_rng(11)
    shape = (100, 25_000)
    signs = np.where(rng.random(shape) < 0.55, -1.0, 1.0) * (rng.random(shape) > 0.2)
    lca = (signs * 1e-4 * rng.weibull(0.6, shape)).astype(np.float32)
    return matrix_bundle(tmp_path_factory.mktemp("w") / "w.h5", lca, [20_000, 5_000])


def test_streamed_sample_recovers_parameters_and_sampling_error(weibull_bundle):
    """Refit on 8 sampler seeds: the spread of k̂ and λ̂ must match the documented relative
    standard errors 0.78/√n and 1.05/(k√n) (0.17 % and 0.39 % at n = 200,000, k = 0.6)."""
    ks, lams = [], []
    with RunBundle.open(weibull_bundle) as b:
        for seed in range(8):
            scan = scan_values(b, sample_size=N, layer_sample_size=0, seed=seed)
            assert scan.help_sample.size == N and scan.hurt_sample.size == N
            fit = fit_weibull(scan.help_sample)
            ks.append(fit.k)
            lams.append(fit.scale)
    ks, lams = np.array(ks), np.array(lams)
    assert ks.mean() == pytest.approx(0.6, rel=0.01) and lams.mean() == pytest.approx(1e-4,
                                                                                      rel=0.01)
    rse_k, rse_lam = ks.std(ddof=1) / ks.mean(), lams.std(ddof=1) / lams.mean()
    # sampling 200k of ~1.1M values without replacement is a little tighter than i.i.d.
    assert rse_k < 2 * 0.78 / np.sqrt(N) and rse_lam < 2 * 1.05 / (0.6 * np.sqrt(N))
    assert fit.rse_k == pytest.approx(0.78 / np.sqrt(N))


def test_per_layer_fits(weibull_bundle):
    with RunBundle.open(weibull_bundle) as b:
        res = weibull_fits(b, sample_size=20_000, layer_sample_size=10_000, seed=1)
    assert [d["layer"] for d in res["layers"]] == ["l0", "l1"]
    for d in res["layers"]:
        for sign in ("help", "hurt"):
            assert d[sign].n == 10_000 and d[sign].k == pytest.approx(0.6, rel=0.05)
    assert res["hurt"].n == 20_000
