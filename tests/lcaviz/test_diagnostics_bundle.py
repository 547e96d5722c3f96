"""The new optional datasets (--lca-error-every, hit_max_halvings, oscillation counters) through
the writer, a resume and the reader, and the analyses, summary and figures built on them, on a
bundle with known numbers. Bundles without them read as None, never as an error."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import h5py
import numpy as np
import pytest

from lcaviz.analysis import summarize
from lcaviz.analysis.lca_error import (
    conservation,
    error_table,
    rule_errors,
    table_s1,
    table_s1_markdown,
)
from lcaviz.analysis.oscillation import counter_oscillation
from lcaviz.bundle import RunBundle
from lcaviz.bundle.layout import ERROR_RULES, M_DATASETS, OSC_COUNTERS, ErrorRecord
from lcaviz.bundle.writer import BundleWriter, IterationRecord, LayoutInfo
from lcaviz.figures.lca_error import lca_error_figure, table_s1_figure
from lcaviz.reports.summary_cli import format_report
from tests.lcaviz._bundle_factory import matrix_bundle

SIZES = [3, 2]  # two layers of one tensor each: P = 5
T, EVERY = 6, 2  # error iterations 0, 2, 4
MOVES = np.array([6, 6, 0, 4, 5])  # per parameter, with the changes below
CHANGES = np.array([2, 5, 0, 1, 0])
GRAD_SIGNS = np.array([7, 7, 0, 7, 7])
GRAD_CHANGES = np.array([3, 6, 0, 2, 1])


def _error(t: int) -> ErrorRecord:
    """Made-up summaries whose statistics are easy to write down (rule k, layer l)."""
    R, L = len(ERROR_RULES), len(SIZES)
    k = np.arange(R)[:, None] + 1.0  # first_order 1, trapezoid 2, rk4 3, stored 4
    return ErrorRecord(
        iteration=t, error=np.full(5, 0.1 * (t + 1), np.float32), intervals=4,
        ref_residual=1e-9 * (t + 1), ref_layer=np.array([-2.0, 1.0]),
        ref_abs_layer=np.array([4.0, 2.0]), nonzero=np.array([3, 2]),
        rule_sum=np.array([-2.0, 1.0]) + 0.01 * k / (t + 1),
        abs_error=0.1 / k * np.ones((R, L)), median_rel=np.tile(1e-2 / k, (1, L)) * (t + 1),
        flips=np.array([[1, 0], [0, 0], [0, 0], [0, 0]]) * (t == 0))


def _bundle(path, *, T_written: int = T) -> str:
    P = sum(SIZES)
    layout = LayoutInfo(
        param_names=["l0.weight", "l1.weight"], param_shapes=[(3,), (2,)],
        param_offsets=np.array([0, 3, 5]), param_layer=np.array([0, 1], np.int32),
        param_module_type=["Linear", "Linear"], layer_names=["l0", "l1"],
        class_names=["a", "b"], config={"net": "toy", "tol": 1e-3, "rtol": 1e-4,
                                        "max_halvings": 3},
        method="adaptive", iters_planned=T, per_class=False, lca_error_every=EVERY,
        max_halvings_flags=True, oscillation_counters=True)
    w = BundleWriter.create(path, layout, theta0=None, loss_train0=2.0, acc_train0=0.1,
                            flush_seconds=0.0)
    loss = 2.0
    for t in range(T_written):
        dL = -0.1 / (t + 1)
        loss += dL
        w.append(IterationRecord(
            loss_train=loss, acc_train=0.5, loss_minibatch=loss, residual=0.02 * dL,
            splits=8 if t in (1, 3) else 2, lca_layer=np.array([dL, 0.0]) * 0.99,
            help_count=np.array([3, 0]), hurt_count=np.array([0, 0]), seconds=0.1,
            lca_row=np.full(P, dL / P), hit_max_halvings=t in (1, 3),
            lca_error=_error(t) if t % EVERY == 0 else None))
    counters = dict(zip(OSC_COUNTERS, (MOVES, CHANGES, GRAD_SIGNS, GRAD_CHANGES), strict=True))
    layer = np.array([[12, 7, 2, 14, 9, 2], [9, 1, 2, 14, 3, 2]])
    w.set_oscillation_counters(counters, layer)
    w.set_param_counters(np.zeros(P, np.int32), np.zeros(P, np.int32))
    w.close("complete", attrs={"lca_cum_error": 0.01, "lca_cum_abs_error": 0.01,
                               "lca_hit_max_halvings": 2})
    return path


def test_reader_returns_what_was_written(tmp_path):
    with RunBundle.open(_bundle(tmp_path / "d.h5")) as b:
        assert b.has_lca_error
        assert b.lca_error_iters().tolist() == [0, 2, 4]
        np.testing.assert_array_equal(b.lca_error()[:, 0], np.float32([0.1, 0.3, 0.5]))
        assert b.lca_error(1, 2, cols=b.layer_columns("l1")).shape == (1, 2)
        s = b.lca_error_stats()
        assert s["rules"] == list(ERROR_RULES) and s["every"] == EVERY and s["factor"] == 4
        assert s["median_rel"].shape == (3, 4, 2) and s["nonzero"].tolist() == [[3, 2]] * 3
        assert b.hit_max_halvings().tolist() == [0, 1, 0, 1, 0, 0]
        assert b.closing_error() == {"lca_cum_error": 0.01, "lca_cum_abs_error": 0.01,
                                     "lca_hit_max_halvings": 2}
        c = b.oscillation_counters()
        np.testing.assert_array_equal(c["param_grad_changes"], GRAD_CHANGES)
        lay = b.layer_oscillation()
        assert list(lay.layer) == ["l0", "l1"] and lay.moves.tolist() == [12, 9]
        assert b.oscillation_iters() == T  # written with the counters: the T they cover


def test_bundles_without_the_options_read_as_none(tmp_path):
    path = matrix_bundle(tmp_path / "old.h5", np.ones((4, 5), np.float32), SIZES)
    with RunBundle.open(path) as b:
        assert not b.has_lca_error
        for value in (b.lca_error_iters(), b.lca_error(), b.lca_error_stats(),
                      b.hit_max_halvings(), b.closing_error(), b.oscillation_counters(),
                      b.layer_oscillation(), b.oscillation_iters(), rule_errors(b),
                      error_table(b), table_s1(b),
                      counter_oscillation(b)):
            assert value is None
        assert conservation(b)["hit_max_halvings"] is None
    assert "--lca-error-every" in lca_error_figure(None).layout.annotations[0].text


def test_reopen_truncates_error_entries_and_flags_to_the_checkpoint(tmp_path):
    path = _bundle(tmp_path / "r.h5")
    with h5py.File(path, "r+") as f:  # as if killed: progress at T, checkpoint earlier
        f.attrs["status"] = "running"
    w = BundleWriter.reopen(path, 3)  # iterations 0..2 survive: error iterations 0 and 2
    with h5py.File(path, "r") as f:
        assert all(f[name].shape[0] == 2 for name in M_DATASETS)
        assert f["hit_max_halvings"].shape == (3,)
    for t in range(3, T):  # and the resumed run appends as the original did
        w.append(IterationRecord(
            loss_train=1.0, acc_train=0.5, loss_minibatch=1.0, residual=0.0, splits=2,
            lca_layer=np.zeros(2), help_count=np.zeros(2), hurt_count=np.zeros(2),
            seconds=0.1, lca_row=np.zeros(5), hit_max_halvings=False,
            lca_error=_error(t) if t % EVERY == 0 else None))
    w.close("complete")
    with RunBundle.open(path) as b:
        assert b.lca_error_iters().tolist() == [0, 2, 4]
        assert b.hit_max_halvings().tolist() == [0, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="error record of iteration 4 appended at 5"):
        w2 = BundleWriter.reopen(path, 5)
        try:
            w2.append(IterationRecord(
                loss_train=1.0, acc_train=0.5, loss_minibatch=1.0, residual=0.0, splits=2,
                lca_layer=np.zeros(2), help_count=np.zeros(2), hurt_count=np.zeros(2),
                seconds=0.1, hit_max_halvings=False, lca_error=_error(4)))
        finally:
            w2.close("failed", "test")


def test_entries_beyond_progress_are_not_shown(tmp_path):
    path = _bundle(tmp_path / "p.h5")
    with h5py.File(path, "r+") as f:  # a block written but not yet published
        for name in M_DATASETS:
            ds = f[name]
            ds.resize(ds.shape[0] + 1, axis=0)
        f["lca_error_iters"][-1] = T
    with RunBundle.open(path) as b:
        assert b.lca_error_iters().tolist() == [0, 2, 4]
        assert b.lca_error().shape == (3, 5) and b.lca_error_stats()["flips"].shape[0] == 3


def test_error_statistics_and_table_s1(tmp_path):
    with RunBundle.open(_bundle(tmp_path / "s.h5")) as b:
        df = rule_errors(b)
        t = error_table(b)
        s1 = table_s1(b)
    fo = df[(df.rule == "first_order") & (df.layer == "l0")].iloc[0]
    # per-iteration medians 1e-2·(t+1) for t = 0, 2, 4: their median is 3e-2
    assert fo.median_rel == pytest.approx(3e-2) and fo.n_iters == 3
    assert fo.pct_flipped == pytest.approx(100 * 1 / 9)  # one flip among 3 x 3 nonzero
    assert fo.rel_l1 == pytest.approx(0.3 / 12)  # Σ 0.1 over 3 iterations / Σ 4
    # layer-sum error: 0.01/(t+1) against |ref| 2, median over t = 0, 2, 4 -> 0.01/3/2
    assert fo.sum_rel == pytest.approx(0.01 / 3 / 2)
    net = df[(df.rule == "rk4") & (df.layer == "network")].iloc[0]
    assert math.isnan(net.median_rel) and net["size"] == 5
    assert net.rel_l1 == pytest.approx(3 * 2 * 0.1 / 3 / 18)
    assert list(t.layer) == ["l0", "l1", "network"] and "rule" not in t
    assert t.median_rel[0] == pytest.approx(3e-2 / 4)  # stored = rule 4
    assert s1.rel_l1_ratio[0] == pytest.approx(3.0)  # first order 0.1 vs rk4 0.1/3
    assert s1.median_rel_ratio[0] == pytest.approx(3.0)
    md = table_s1_markdown(s1)
    assert md.count("\n") == 1 + 3 and "| l0 | 3.00e-02 | 1.00e-02 | 3 |" in md
    assert "L1 rel. error" in md.splitlines()[0]


def test_table_s1_script(tmp_path, capsys):
    main = runpy.run_path(str(Path(__file__).parents[2] / "scripts" / "table_s1.py"))["main"]
    assert main([str(_bundle(tmp_path / "s.h5"))]) == 0
    out = capsys.readouterr().out
    assert "3 error iterations (every 2)" in out and "| network |" in out
    old = matrix_bundle(tmp_path / "old.h5", np.ones((2, 5), np.float32), SIZES)
    assert main([str(old)]) == 2
    assert "--lca-error-every" in capsys.readouterr().err


def test_unknown_rule_is_refused(tmp_path):
    _bundle(tmp_path / "s.h5")
    with pytest.raises(ValueError, match="no rule euler"):
        with RunBundle.open(tmp_path / "s.h5") as b:
            rule_errors(b, ("euler",))


def test_conservation_and_counter_oscillation(tmp_path):
    with RunBundle.open(_bundle(tmp_path / "c.h5")) as b:
        k = conservation(b)
        o = counter_oscillation(b)
    assert k["cum_error"] == pytest.approx(0.02) and k["cum_abs_error"] == pytest.approx(0.02)
    assert k["within_1pct"] is False and k["hit_max_halvings"] == 2
    assert k["rtol"] == 1e-4 and k["stored"]["lca_hit_max_halvings"] == 2
    # moves: Σ (moves − 1) over moving weights / Σ changes = (5 + 5 + 3 + 4) / 8
    assert o["moves"]["iters_per_change"] == pytest.approx(17 / 8)
    assert o["gradients"]["iters_per_change"] == pytest.approx(24 / 12)
    assert o["layers"][1]["gradients"]["iters_per_change"] == pytest.approx(12 / 3)
    assert o["layers"][1]["moves"]["iters_per_change"] == pytest.approx((3 + 4) / 1)


def test_summary_report_and_figures(tmp_path):
    path = _bundle(tmp_path / "f.h5")
    s = summarize(path, weibull_sample=100, shift_resamples=10)
    assert json.loads(json.dumps(s, allow_nan=False)) == s  # NaN medians become null
    assert s["lca_error"]["every"] == EVERY and len(s["lca_error"]["layers"]) == 3
    text = format_report(s)
    assert "its full gradient changes sign once every 2.00" in text
    assert "WARNING: 2 of 6 iterations hit --max-halvings 3" in text
    assert "l0                      7.50e-03" in text  # the stored rule's median, per layer
    assert "Table S1" in text
    fig = lca_error_figure(s["lca_error"]["layers"])  # JSON records work as they are
    med, flipped = fig.data
    assert list(med.x) == ["l0", "l1"] and med.y[0] == pytest.approx(7.5e-3)
    assert list(flipped.x) == ["l0", "l1", "network"]
    with RunBundle.open(path) as b:
        s1 = table_s1_figure(rule_errors(b))
    assert [tr.name for tr in s1.data] == ["first order", "first order", "RK4 (Simpson)",
                                           "RK4 (Simpson)"]
    assert s1.data[0].y[0] == pytest.approx(3e-2) and s1.data[2].y[0] == pytest.approx(1e-2)
    assert s1.layout.yaxis.type == "log"


def test_damaged_shapes_are_reported_not_misread(tmp_path):
    from lcaviz.bundle import CorruptBundleError

    path = _bundle(tmp_path / "bad.h5")
    with h5py.File(path, "r+") as f:
        del f["lca_error"], f["param_moves"]
        f.create_dataset("lca_error", data=np.zeros((3, 4), np.float32))
        f.create_dataset("param_moves", data=np.zeros(4, np.int32))
    with RunBundle.open(path) as b:
        with pytest.raises(CorruptBundleError, match="lca_error has 4 columns, expected 5"):
            b.lca_error()
        with pytest.raises(CorruptBundleError, match="param_moves should have 5 entries"):
            b.oscillation_counters()
        assert b.lca_error_iters().tolist() == [0, 2, 4]  # the rest still reads
