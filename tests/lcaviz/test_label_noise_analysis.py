"""lcaviz.analysis.label_noise on arrays: AUROC against a pairwise count, the timeline's sums."""

from __future__ import annotations

import numpy as np
import pytest

from lcaviz.analysis import label_noise as ln


def _pairwise_auroc(s: np.ndarray, pos: np.ndarray) -> float:
    a, b = s[pos][:, None], s[~pos][None, :]
    return float(((a > b) + 0.5 * (a == b)).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_equals_the_pairwise_probability_with_ties(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 6, 200).astype(float)  # many ties
    pos = rng.random(200) < 0.3
    assert ln.auroc(s, pos) == pytest.approx(_pairwise_auroc(s, pos), abs=1e-12)


def test_auroc_of_a_perfect_and_a_reversed_score():
    pos = np.array([True, True, False, False, False])
    s = np.array([5.0, 4.0, 1.0, 2.0, 3.0])
    assert ln.auroc(s, pos) == 1.0
    assert ln.auroc(-s, pos) == 0.0
    with pytest.raises(ValueError, match="positive and one negative"):
        ln.auroc(s, np.zeros(5, bool))


def _data(seed=0, R=6, N=40, L=3):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(R, N, L))
    flipped = rng.random(N) < 0.25
    flipped[:2] = [True, False]
    windows = np.stack([np.arange(R) * 5, np.arange(R) * 5 + 5], axis=1)
    first = rng.random(N) + 1
    return ln.NoiseData(flipped, rows, windows, first, first + rows.sum(axis=(0, 2)),
                        [f"layer{i}" for i in range(L)])


def test_the_timeline_is_the_group_mean_of_the_cumulative_rows():
    d = _data()
    t = ln.timeline(d, [0, 3, 5])
    for k, r in enumerate([0, 3, 5]):
        cum = d.rows[: r + 1].sum(axis=0)
        np.testing.assert_allclose(t["flipped"][k], cum[d.flipped].mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(t["clean"][k], cum[~d.flipped].mean(axis=0), rtol=1e-12)
    assert list(t["iteration"]) == [5, 20, 30]


def test_rankings_by_the_loss_change_and_by_the_whole_lca_agree_when_conserved():
    d = _data(1)
    r = ln.rankings(d, early_rows=2)
    # loss_last − loss_first equals the rows' sum here (exact conservation): same ranking
    assert r["loss change"] == pytest.approx(r["cumulative LCA (all layers)"], abs=1e-12)
    assert {f"early LCA, layer{i}" for i in range(3)} <= set(r)
