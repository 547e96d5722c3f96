"""The last-layer experiment report, on tiny real runs that treat the last layer differently."""

from pathlib import Path

import numpy as np
import pytest

from compute.config import RunConfig
from compute.train import run_lca
from lcaviz.reports import layer_experiments as lx
from lcaviz.reports.reproduction import LAST_BEGIN, LAST_END, main

BASE = dict(net="mnist_fc", dataset="synthetic", train_size=300, val_size=50, batch_size=50,
            iters=4, chunk_size=150, per_class=False, lr=0.05, momentum=0.9, seed=1)
VARIANTS = {"a_regular": {}, "b_frozen": dict(freeze=["fc3"]),
            "c_lr": dict(layer_lr={"fc3": 0.005}), "d_delay0": dict(layer_momentum={"fc3": 0.0}),
            "e_delay1": dict(layer_momentum={"fc3": 0.5})}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("last_layer")
    for name, kw in VARIANTS.items():
        run_lca(RunConfig(**{**BASE, **kw}), d / f"{name}.h5", progress=False)
    return d


def test_runs_are_classified_by_what_they_do_to_the_last_layer(runs_dir):
    runs = {r.name: r for r in lx.load_runs(runs_dir)}
    assert {n: (r.treatment, r.delay) for n, r in runs.items()} == {
        "a_regular": ("regular", pytest.approx(9.0)), "b_frozen": ("frozen", None),
        "c_lr": ("lr 0.005", pytest.approx(9.0)), "d_delay0": ("delay 0", 0.0),
        "e_delay1": ("delay 1", pytest.approx(1.0))}
    assert runs["b_frozen"].totals[-1] == 0.0  # a frozen layer never moves: exactly zero LCA
    assert runs["a_regular"].totals[-1] != 0.0
    for r in runs.values():  # layer totals add up to the loss change (up to the residual)
        assert r.totals.sum() == pytest.approx(r.loss_final - r.loss0, rel=1e-2)
        assert np.array_equal(r.early, r.totals)  # 4 iterations < EARLY: the same window


def test_delay_fit_uses_only_the_momentum_sweep(runs_dir):
    runs = lx.load_runs(runs_dir)
    a, b, r2 = lx.delay_fit(runs)
    pts = {r.delay: r.totals[-1] for r in runs if r.name in ("a_regular", "d_delay0", "e_delay1")}
    slope, icept = np.polyfit(list(pts), list(pts.values()), 1)
    assert (a, b) == pytest.approx((icept, slope), rel=1e-9)
    assert 0.0 <= r2 <= 1.0
    assert lx.delay_fit([r for r in runs if r.name != "e_delay1"]) is None  # two delays: no fit


def test_reproduction_writes_the_last_layer_section(runs_dir, tmp_path):
    out = tmp_path / "repro.md"
    out.write_text("# Reproduction\n")
    sample = Path(__file__).resolve().parents[2] / "sample_runs"
    assert main(["--runs", str(sample), "--out", str(out), "--last-layer", str(runs_dir)]) == 0
    text = out.read_text()
    body = text.split(LAST_BEGIN, 1)[1].split(LAST_END, 1)[0]
    assert "| b_frozen | frozen |" in body and "Linear fit" in body
    assert "Last layer frozen: final loss" in body
    assert body.count("| fc2 |") == 1  # per-layer table, one row per layer


def test_figure_has_one_bar_series_per_run_in_layer_order(runs_dir):
    runs = lx.load_runs(runs_dir)
    fig = lx.figure(runs)
    assert [t.name for t in fig.data] == [f"{r.name} ({r.treatment})" for r in runs]
    frozen = next(t for t in fig.data if "frozen" in t.name)
    assert list(frozen.x) == ["fc1", "fc2", "fc3"] and frozen.y[-1] == 0.0
