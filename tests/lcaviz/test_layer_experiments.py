"""The last-layer experiment report, on tiny real runs that treat the last layer differently
(two seeds of the regular and frozen runs, so the seed-paired claims have something to pair)."""

from pathlib import Path

import numpy as np
import pytest

from compute.run.config import RunConfig
from compute.run.train import run_lca
from lcaviz.reports import layer_claims as lc
from lcaviz.reports import layer_experiments as lx
from lcaviz.reports.reproduction import LAST_BEGIN, LAST_END, main

BASE = dict(net="mnist_fc", dataset="synthetic", train_size=300, val_size=50, batch_size=50,
            iters=4, chunk_size=150, per_class=False, lr=0.05, momentum=0.9, seed=1)
VARIANTS = {"a_regular": {}, "b_frozen": dict(freeze=["fc3"]),
            "c_lr": dict(layer_lr={"fc3": 0.005}), "d_delay0": dict(layer_momentum={"fc3": 0.0}),
            "e_delay1": dict(layer_momentum={"fc3": 0.5}),
            "f_regular_s2": dict(seed=2), "g_frozen_s2": dict(freeze=["fc3"], seed=2)}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("last_layer")
    for name, kw in VARIANTS.items():
        run_lca(RunConfig(**{**BASE, **kw}), d / f"{name}.h5", progress=False)
    return d


def test_runs_are_classified_by_what_they_do_to_the_last_layer(runs_dir):
    runs = {r.name: r for r in lx.load_runs(runs_dir)}
    assert {n: (r.treatment, r.delay, r.seed) for n, r in runs.items()} == {
        "a_regular": ("regular", pytest.approx(9.0), 1), "b_frozen": ("frozen", None, 1),
        "c_lr": ("lr 0.005", pytest.approx(9.0), 1), "d_delay0": ("delay 0", 0.0, 1),
        "e_delay1": ("delay 1", pytest.approx(1.0), 1),
        "f_regular_s2": ("regular", pytest.approx(9.0), 2), "g_frozen_s2": ("frozen", None, 2)}
    assert runs["b_frozen"].totals[-1] == 0.0  # a frozen layer never moves: exactly zero LCA
    assert runs["a_regular"].totals[-1] != 0.0
    for r in runs.values():  # layer totals add up to the loss change (up to the residual)
        assert r.totals.sum() == pytest.approx(r.loss_final - r.loss0, rel=1e-2)
        assert abs(r.totals.sum() - (r.loss_final - r.loss0)) <= r.residual_abs + 1e-12
        assert np.array_equal(r.early, r.totals)  # 4 iterations < EARLY: the same window


def test_delay_fit_uses_only_the_momentum_sweep(runs_dir):
    runs = lx.load_runs(runs_dir)
    a, b, r2 = lx.delay_fit(runs)
    pts = [(r.delay, r.totals[-1]) for r in runs
           if r.name in ("a_regular", "f_regular_s2", "d_delay0", "e_delay1")]
    slope, icept = np.polyfit(*np.array(pts).T, 1)
    assert (a, b) == pytest.approx((icept, slope), rel=1e-9)
    assert 0.0 <= r2 <= 1.0
    assert lx.delay_fit([r for r in runs if r.name != "e_delay1"]) is None  # two delays: no fit


def test_claims_pair_runs_by_seed(runs_dir):
    runs = {r.name: r for r in lx.load_runs(runs_dir)}
    cs = {c.text: c for c in lc.claims(list(runs.values()))}
    frozen = cs["Freezing the last layer lowers the final train loss (regular − frozen)"]
    assert frozen.seeds == [1, 2] and frozen.lca_error is None  # losses are measured directly
    assert frozen.values == pytest.approx(
        [runs["a_regular"].loss_final - runs["b_frozen"].loss_final,
         runs["f_regular_s2"].loss_final - runs["g_frozen_s2"].loss_final], rel=1e-12)
    first = cs["First layer hurts over training (regular)"]
    assert first.values == pytest.approx([runs["a_regular"].totals[0],
                                          runs["f_regular_s2"].totals[0]])
    assert first.lca_error == max(runs["a_regular"].residual_abs, runs["f_regular_s2"].residual_abs)
    control = next(c for t, c in cs.items() if t.startswith("Fresher information"))
    assert control.seeds == [1]  # only seed 1 has both the lr and the delay-0 run
    assert control.values[0] == pytest.approx(runs["c_lr"].totals[-1] - runs["d_delay0"].totals[-1])
    slope = cs["Less delay for the last layer makes it help more (slope of its LCA in d)"]
    assert slope.seeds == [1]  # seed 2 has one delay only: no sweep


@pytest.mark.parametrize("values, err, expected", [
    ([0.5, 0.6, 0.55, 0.52], None, "agrees"),
    ([-0.5, -0.6, -0.55, -0.52], 0.01, "differs"),
    ([0.5, 0.6, 0.55], 0.9, "within error (smaller than the LCA residual)"),
    ([1.0, -0.8, 0.1], None, "within error (smaller than the seed spread)"),
    ([0.3, 0.1, 0.5], None, "not significant"),  # mean 0.3 > sd 0.2 but p = 0.1 with 3 seeds
    ([0.2], 0.01, "agrees (one seed, no test)"),
])
def test_verdicts_say_within_error_when_the_effect_is_smaller_than_residual_or_spread(
        values, err, expected):
    p, v = lc.verdict(np.array(values), err)
    assert v == expected
    if expected in ("agrees", "differs", "not significant"):
        assert (p < lc.ALPHA) == (expected != "not significant")
    else:
        assert p is None


def test_reproduction_writes_the_last_layer_section(runs_dir, tmp_path):
    out = tmp_path / "repro.md"
    out.write_text("# Reproduction\n")
    sample = Path(__file__).resolve().parents[2] / "sample_runs"
    assert main(["--runs", str(sample), "--out", str(out), "--last-layer", str(runs_dir)]) == 0
    text = out.read_text()
    body = text.split(LAST_BEGIN, 1)[1].split(LAST_END, 1)[0]
    assert "| b_frozen | frozen | 1 |" in body and "Linear fit" in body
    assert "| frozen | 2 |" in body  # the per-treatment table counts seeds
    assert "| Freezing the last layer lowers the final train loss (regular − frozen) |" in body
    assert body.count("| fc2 |") == 1  # per-layer table, one row per layer


def test_figure_has_one_bar_series_per_treatment_with_seed_error_bars(runs_dir):
    runs = lx.load_runs(runs_dir)
    fig = lx.figure(runs)
    assert [t.name for t in fig.data] == ["regular (2 seeds)", "frozen (2 seeds)",
                                          "lr 0.005 (1 seed)", "delay 0 (1 seed)",
                                          "delay 1 (1 seed)"]
    frozen = fig.data[1]
    assert list(frozen.x) == ["fc1", "fc2", "fc3"] and frozen.y[-1] == 0.0
    regular = [r for r in runs if r.treatment == "regular"]
    assert frozen.error_y.array is not None and fig.data[2].error_y.array is None
    assert np.allclose(fig.data[0].y, np.mean([r.totals for r in regular], axis=0))
    assert np.allclose(fig.data[0].error_y.array,
                       np.std([r.totals for r in regular], axis=0, ddof=1))
