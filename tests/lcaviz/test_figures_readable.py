"""The figures read right (issue 14, items 6 and 7): the shift test leads with the pooled
result, axes carry one number format and sensible ticks, every mark has a legend entry."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np
import plotly.io as pio
import pytest

from lcaviz.analysis.synchrony import synchrony
from lcaviz.app.pages import run_analysis, run_sync
from lcaviz.bundle import RunBundle
from lcaviz.figures import curves, helping, weibull
from lcaviz.figures import synchrony as fsync
from lcaviz.figures.export import figure_csv

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_runs"
SI = re.compile(r"[afpnμumkMGBT]$|[μ]")
EXPONENT = re.compile(r"^-?\d+(\.\d+)?e-?\d+$")
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")


def one_format(labels) -> bool:
    """All labels plain decimals, or all ``2e-6`` style (never SI prefixes)."""
    labels = [str(t) for t in labels if str(t) != "0"]
    return bool(labels) and (all(DECIMAL.match(t) for t in labels)
                             or all(EXPONENT.match(t) for t in labels))


def is_nice(values) -> bool:
    """Every value is a multiple of one 1-2-5 step (0.5, 1, 1.5 … not 0.104, 0.589)."""
    v = np.asarray(values, float)
    step = float(np.min(np.diff(v)))
    mant = step / 10 ** math.floor(math.log10(step))
    return any(math.isclose(mant, m, rel_tol=1e-6) for m in (1, 2, 5)) and np.allclose(
        v / step, np.round(v / step), atol=1e-6)


def planted_result(n_classes: int = 3, n_layers: int = 3) -> dict:
    """A synchrony result on curves with strong common peaks in every class and layer."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.1, (200, n_classes, n_layers))
    for c in range(n_classes):
        for t in rng.choice(np.arange(5, 195), 8, replace=False):
            x[t, c, :] -= 5.0
    return synchrony(x, k=10, max_shift=2, n_resamples=400)


# -- item 6: the random-shift test panel ------------------------------------------------------
def test_shift_test_panel_leads_with_the_pooled_result_and_explains_the_floor():
    res = planted_result()
    res["class_names"] = ["0", "1", "2"]  # as lca-run names MNIST's classes
    fig = run_sync.test_view(res, 0)
    title = fig.layout.title.text
    assert title.startswith("All 3 classes pooled"), title
    assert f"{res['actual_total']} aligned" in title and "p ≤ 0.0025" in title  # 1/(400+1)
    assert "synchronised" in fig.layout.title.subtitle.text  # what the result means
    texts = " ".join(a.text for a in fig.layout.annotations)
    assert "class 0 only" in texts and "class 0:" in texts  # never a bare "0"
    assert "cannot go below ≈ 1/25" in texts  # (2·2+1)^(3−1): the per-class floor
    # the pooled histogram is the first (left) panel, the class's the second
    pooled = [t for t in fig.data if t.type == "histogram"][0]
    assert np.array_equal(np.asarray(pooled.x), res["baseline"].sum(axis=1))
    assert fsync.per_class_floor(3, 2) == pytest.approx(1 / 25)


def test_shift_test_panel_says_when_there_is_no_synchrony():
    rng = np.random.default_rng(5)
    res = synchrony(rng.normal(size=(120, 2, 3)), k=5, max_shift=2, n_resamples=200)
    fig = fsync.shift_test_panel(res, 1)
    assert res["p_value"] >= 0.05 and "no evidence" in fig.layout.title.subtitle.text
    assert "class 1 only" in " ".join(a.text for a in fig.layout.annotations)


# -- item 7: axes --------------------------------------------------------------------------------
def test_log_loss_axis_is_labelled_with_the_numbers():
    loss = np.geomspace(2.3, 0.21, 500)  # MNIST-FC: ~1 decade, once labelled "2,1,9,8…2"
    fig = curves.loss_figure(loss, loss_minibatch=loss * 1.1, log_y=True)
    ya = fig.layout.yaxis
    assert ya.type == "log" and ya.tickmode == "array"
    vals, text = list(ya.tickvals), list(ya.ticktext)
    assert len(vals) >= 3 and one_format(text)
    assert all(math.isclose(float(t), v, rel_tol=1e-9) for t, v in zip(text, vals, strict=True))
    assert 10 ** ya.range[0] <= loss.min() and 10 ** ya.range[1] >= loss.max() * 1.1


def test_loss_on_the_help_time_figure_has_nice_nonnegative_ticks():
    # LeNet: plotly synced this axis to the % grid: -0.067, 0.471, 1.008 …
    loss = 0.08 + 2.4 * np.exp(-np.arange(151) / 12)
    fig = helping.help_hurt_time_figure(np.full(150, 55.0), np.full(150, 35.0), loss=loss)
    y2 = fig.layout.yaxis2
    assert y2.tickmode == "array" and min(y2.tickvals) == 0 and y2.range[0] == 0
    assert is_nice(y2.tickvals) and y2.range[1] >= loss.max()
    assert one_format(y2.ticktext)
    assert curves.loss_figure(loss).layout.yaxis.rangemode == "nonnegative"


def test_histogram_b_shows_both_signs_and_its_axis_matches_the_csv():
    with RunBundle.open(SAMPLE / "mnist_fc_sgd_mom0.9.h5") as b:
        fig = run_analysis.histogram_figure(run_analysis.value_scan_job(b))
    help_, hurt = fig.data
    # equal bin widths: a bar's height is comparable across signs (hurting was hairlines)
    assert np.allclose(help_.width, hurt.width[0]) and np.allclose(hurt.width, hurt.width[0])
    assert max(hurt.y) > 0.2 * max(help_.y)
    assert fig.layout.yaxis.title.text == "% of nonzero LCA values"
    total = sum(help_.y) + sum(hurt.y)
    assert 99.0 < total <= 100.0 + 1e-9  # percentages of all nonzero values (tails clipped)
    rows = list(csv.DictReader(io.StringIO(figure_csv(fig))))
    assert math.isclose(sum(float(r["y"]) for r in rows), total, rel_tol=1e-9)


def test_weibull_axes_use_one_exponent_format_and_follow_the_histograms():
    edges = np.geomspace(3e-17, 2e-4, 40)  # as LeNet's |LCA|: 13 decades
    counts = np.geomspace(1e6, 1, 39)
    fig = weibull.weibull_figure([{"name": "helping", "counts": counts, "edges": edges,
                                   "k": 0.29, "lam": 1.7e-7, "ks": 0.01}])
    for ax in (fig.layout.xaxis, fig.layout.yaxis):
        assert ax.type == "log" and ax.tickmode == "array"
        text = list(ax.ticktext)
        assert len(text) >= 3 and one_format(text) and all(EXPONENT.match(t) for t in text)
        assert not any(SI.search(t) for t in text)
        lo, hi = 10 ** ax.range[0], 10 ** ax.range[1]
        assert all(lo <= v <= hi for v in ax.tickvals)  # no lone tick outside the data
    dens = counts / (counts.sum() * np.diff(edges))
    assert 10 ** fig.layout.yaxis.range[0] > dens.min() / 10  # a fit's 1e-16 tail is cut


def test_theme_never_uses_si_prefixes():
    layout = pio.templates["lcaviz"].layout
    assert layout.xaxis.exponentformat == "e" and layout.yaxis.exponentformat == "e"


@pytest.mark.parametrize("lo,hi", [(0.2, 2.3), (0.05, 0.09), (3e-17, 2e-4), (1e-9, 1e-8),
                                   (2.1, 2.2), (1e2, 1e14)])
def test_log_ticks_are_inside_and_formatted_alike(lo, hi):
    from lcaviz.figures.ticks import log_ticks, tick_labels

    t = log_ticks(lo, hi)
    assert 2 <= len(t) <= 8 and all(lo * 0.999 <= v <= hi * 1.001 for v in t)
    assert one_format(tick_labels(t))


def test_linear_ticks_are_nice():
    from lcaviz.figures.ticks import linear_ticks

    ticks, rng = linear_ticks(0, 2.62)
    assert is_nice(ticks) and rng == [0, 3.0] and ticks[0] == 0


# -- item 7: legends ------------------------------------------------------------------------------
def test_peaks_plot_has_a_legend_entry_for_every_mark():
    rng = np.random.default_rng(0)
    peaks = [np.array([5, 20, 40]), np.array([5, 21, 40]), np.array([5, 40])]
    fig = fsync.class_peaks_figure(rng.normal(size=(60, 3)), ["a", "b", "c"], peaks,
                                   np.array([5, 40]), class_name="3", k=3)
    assert fig.layout.showlegend
    shown = {t.name for t in fig.data if t.showlegend is not False}
    assert {fsync.PEAK_LABEL, fsync.ALIGNED_LABEL, fsync.BAND_LABEL} <= shown
    assert fig.layout.title.text.startswith("Class 3:")
    black = [t for t in fig.data if t.name == fsync.PEAK_LABEL]
    red = [t for t in fig.data if t.name == fsync.ALIGNED_LABEL]
    assert {t.marker.color for t in black} == {fsync.PEAK_COLOR}
    assert {t.marker.color for t in red} == {fsync.ALIGNED_COLOR}
    assert sum(len(t.x) for t in red) == 2 * 3  # two aligned moments, three layers
