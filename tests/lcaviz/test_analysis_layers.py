"""Per-layer totals, cumulative curves and the across-runs t-test."""

from __future__ import annotations

import numpy as np
import pytest

from lcaviz.analysis import compare_runs, cumulative_layer_lca, layer_totals
from lcaviz.bundle import RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from tests.lcaviz._bundle_factory import SMALL_LAYERS, matrix_bundle


def test_totals_match_matrix(tmp_path):
    lca = np.random.default_rng(0).normal(0.0, 1.0, (25, 12)).astype(np.float32)
    lca[:, 8:] = np.abs(lca[:, 8:])  # the last layer only hurts
    with RunBundle.open(matrix_bundle(tmp_path / "m.h5", lca, [5, 3, 4], stride=3)) as b:
        t = layer_totals(b)
        want = [lca[:, :5].sum(dtype=float), lca[:, 5:8].sum(dtype=float),
                lca[:, 8:].sum(dtype=float)]
        np.testing.assert_allclose(t.total, want, rtol=1e-6)
        np.testing.assert_allclose(t.per_param, np.array(want) / [5, 3, 4], rtol=1e-6)
        assert bool(t.hurts[2]) and t.share.sum() == pytest.approx(1)
        cum = cumulative_layer_lca(b)
        assert cum.shape == (25, 3)
        np.testing.assert_allclose(cum[-1], want, rtol=1e-6)
        np.testing.assert_allclose(cumulative_layer_lca(b, per_param=True)[-1],
                                   np.array(want) / [5, 3, 4], rtol=1e-6)


def test_compare_runs_finds_the_hurting_layer(tmp_path):
    paths = [write_synthetic_bundle(tmp_path / f"r{s}.h5", n_iters=30, layers=SMALL_LAYERS,
                                    help_fraction=[0.55, 0.55, 0.45], per_class=False, seed=s)
             for s in range(5)]
    res = compare_runs(paths)
    assert list(res.verdict) == ["helps", "helps", "hurts"]
    assert (res.p < 0.01).all() and (res.n_runs == 5).all()
    assert res.text[2].startswith("fc3 hurts, p = ")
    per = compare_runs(paths, per_param=True)
    assert (np.sign(per["mean"]) == np.sign(res["mean"])).all()
    one = compare_runs(paths[:1])
    assert (one.verdict == "n.s.").all() and np.isnan(one.p).all()


def test_compare_runs_rejects_different_layers(tmp_path):
    a = write_synthetic_bundle(tmp_path / "a.h5", n_iters=5, layers=SMALL_LAYERS)
    b = write_synthetic_bundle(tmp_path / "b.h5", n_iters=5, layers=SMALL_LAYERS[:2])
    with pytest.raises(ValueError, match="differ"):
        compare_runs([a, b])
