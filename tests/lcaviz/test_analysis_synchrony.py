"""Learning-moment peaks, aligned moments and the random-shift test."""

from __future__ import annotations

import numpy as np
import pytest

from lcaviz.analysis import peak_table, shift_test, synchrony, top_peaks
from lcaviz.analysis.synchrony import _aligned_counts, _alignment_table
from lcaviz.bundle import RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from tests.lcaviz._bundle_factory import SMALL_LAYERS


def test_top_peaks_by_hand():
    x = np.array([-9, -1, 0, -3, -2, -5, 1, -0.5, 2, 2, 0, 0, 1, -10])
    assert top_peaks(x, k=2).tolist() == [3, 5]  # ends and plateaus are not local minima
    assert top_peaks(x, k=10).tolist() == [3, 5, 7]  # t = 1 is above its left neighbour
    assert top_peaks(np.zeros(2)).size == 0


def _naive_counts(peaks, offsets, T):
    """Direct set intersection for every resample and class."""
    N, C, L = offsets.shape
    out = np.zeros((N, C), np.int64)
    for n in range(N):
        for c in range(C):
            sets = []
            for li in range(L):
                p = peaks[c, li][peaks[c, li] >= 0] + offsets[n, c, li]
                sets.append(set(p[(p >= 0) & (p < T)].tolist()))
            out[n, c] = len(set.intersection(*sets))
    return out


@pytest.mark.parametrize("L", [1, 2, 4])
def test_vectorised_shift_matches_naive(L):
    rng = np.random.default_rng(L)
    T = 60
    x = rng.normal(size=(T, 3, L))
    x[[10, 30, 58], :, :] -= 8  # some aligned moments, one at the edge
    peaks = peak_table(x, k=6)
    offsets = rng.integers(-2, 3, (50, 3, L))
    offsets[0] = 0
    has = _alignment_table(peaks, 4)
    np.testing.assert_array_equal(_aligned_counts(peaks, has, offsets, T, 4),
                                  _naive_counts(peaks, offsets, T))


def test_planted_synchronous_peaks_are_significant(tmp_path):
    path = write_synthetic_bundle(tmp_path / "s.h5", n_iters=150, layers=SMALL_LAYERS,
                                  sync_peaks=8, seed=3)
    with RunBundle.open(path) as b:
        res = synchrony(b, k=20, n_resamples=1000, seed=0)
        planted = b.config["synthetic"]["sync_iters"]
    assert res["source"] == "lca_class_layer" and res["p_value"] < 0.01
    # per class, p cannot go below ~P(all 3 offsets equal) = 1/25: such shifts keep every
    # alignment; the total over classes is the test
    assert (res["p_values"] < 0.1).all()
    for c, its in enumerate(planted):
        assert set(its) <= set(res["aligned_iterations"][c])
        assert all(set(its) <= set(layer) for layer in res["peaks"][c])
    assert res["actual_mean_per_class"] >= 8 > 2 * res["baseline_mean_per_class"]
    assert res["actual"].tolist() == [len(a) for a in res["aligned_iterations"]]


def test_random_peaks_are_not_significant():
    ps = [synchrony(np.random.default_rng(s).normal(size=(200, 10, 3)), n_resamples=300,
                    seed=s)["p_value"] for s in range(20)]
    assert sum(p > 0.05 for p in ps) >= 17, ps


def test_shift_test_definition():
    peaks = np.full((2, 3, 4), -1)
    peaks[0, :, :2] = [[5, 9]] * 3  # class 0: two moments aligned in all layers
    peaks[1, :, 0] = [3, 4, 5]  # class 1: none aligned
    res = shift_test(peaks, 20, max_shift=2, n_resamples=400, seed=1)
    assert res["actual"].tolist() == [2, 0] and res["actual_total"] == 2
    assert res["p_values"][1] == 1.0  # baseline ≥ 0 always
    base0 = res["baseline"][:, 0]
    assert res["p_values"][0] == pytest.approx((1 + (base0 >= 2).sum()) / 401)
    # both moments stay aligned only if all three offsets agree (1 in 25)
    assert res["baseline_mean"][0] == pytest.approx(2 / 25, abs=0.05)
    again = shift_test(peaks, 20, max_shift=2, n_resamples=400, seed=1)
    np.testing.assert_array_equal(res["baseline"], again["baseline"])


def test_layer_level_fallback(tmp_path):
    path = write_synthetic_bundle(tmp_path / "n.h5", n_iters=40, layers=SMALL_LAYERS,
                                  per_class=False)
    with RunBundle.open(path) as b:
        res = synchrony(b, n_resamples=50)
    assert res["source"] == "lca_layer" and res["class_names"] == ["all classes"]
    assert len(res["peaks"]) == 1 and len(res["peaks"][0]) == 3
