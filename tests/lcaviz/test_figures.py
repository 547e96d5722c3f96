"""Pure figure functions on small arrays (no server, no bundle)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from lcaviz.figures import compare, curves, helping, synchrony, weibull
from lcaviz.figures.heatmap import (
    TensorFrame,
    click_to_param,
    downsample_label,
    layer_heatmap,
    panel_values,
    plan_layer,
)
from lcaviz.figures.layout2d import (
    block_sum,
    choose_blocks,
    flat_index,
    image_shape,
    pixel_to_index,
    region_from_relayout,
    symmetric_limit,
    tensor_image,
    tensor_images,
)
from lcaviz.figures.theme import DIVERGING, empty_figure, layer_color

RNG = np.random.default_rng(0)


def frames_for(tensors, weights=False):
    out = []
    for name, shape in tensors:
        n = int(np.prod(shape))
        out.append(TensorFrame(name, shape, RNG.normal(size=n).astype(np.float32),
                               RNG.normal(size=n) if weights else None))
    return out


# -- 2-D layout of tensors ---------------------------------------------------------------
def test_fc_image_is_out_by_in():
    v = np.arange(12)
    img = tensor_image(v, (3, 4))
    assert img.shape == (3, 4)
    assert img[1, 2] == 1 * 4 + 2


def test_conv_image_is_grid_of_kernel_blocks():
    o, i, kh, kw = 2, 3, 2, 2
    w = RNG.normal(size=(o, i, kh, kw))
    img = tensor_image(w.ravel(), (o, i, kh, kw))
    assert img.shape == (o * kh, i * kw)
    # block (row o, column i) is the kh×kw kernel w[o, i]
    assert np.array_equal(img[1 * kh:(1 + 1) * kh, 2 * kw:(2 + 1) * kw], w[1, 2])


def test_a_3d_weight_is_a_row_of_blocks_one_per_slice():
    h, d_in, d_out = 4, 6, 3  # a stack of attention heads (heads, d_in, d_out)
    w = RNG.normal(size=(h, d_in, d_out))
    img = tensor_image(w.ravel(), w.shape)
    assert img.shape == (d_in, h * d_out)
    for k in range(h):  # block k is head k's d_in × d_out matrix
        assert np.array_equal(img[:, k * d_out:(k + 1) * d_out], w[k])
    many = tensor_images(np.stack([w.ravel(), 2 * w.ravel()]), w.shape)
    assert np.array_equal(many[0], img) and np.array_equal(many[1], 2 * img)


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (2, 3, 2, 5), (2, 2, 2, 2, 2)])
def test_pixel_to_index_inverts_tensor_image(shape):
    n = int(np.prod(shape))
    img = tensor_image(np.arange(n), shape)
    rows, cols = image_shape(shape)
    assert img.shape == (rows, cols)
    for r, c in [(0, 0), (rows - 1, cols - 1), (rows // 2, cols // 3)]:
        idx = pixel_to_index(shape, r, c)
        assert flat_index(shape, idx) == img[r, c]


def test_pixel_outside_image_raises():
    with pytest.raises(IndexError):
        pixel_to_index((3, 4), 3, 0)


def test_block_sum_preserves_total_exactly_with_partial_edges():
    img = RNG.normal(size=(101, 783))
    for by, bx in [(1, 1), (2, 2), (4, 7), (101, 783), (3, 1000)]:
        z = block_sum(img, by, bx)
        assert z.shape == (-(-101 // by), -(-783 // bx))
        assert np.isclose(z.sum(), img.sum(), rtol=0, atol=1e-9)
    assert block_sum(np.ones((4, 4)), 2, 2).tolist() == [[4, 4], [4, 4]]


def test_choose_blocks_respects_budget():
    for rows, cols, budget in [(100, 784, 250_000), (1000, 1000, 250_000),
                               (4608, 1536, 250_000), (1, 10**6, 2048), (7, 3, 5)]:
        by, bx = choose_blocks(rows, cols, budget)
        assert -(-rows // by) * -(-cols // bx) <= budget
    assert choose_blocks(100, 784, 250_000) == (1, 1)


def test_symmetric_limit_positive_and_finite():
    assert symmetric_limit(np.zeros(10)) == 1.0
    assert symmetric_limit(np.array([np.nan, -2.0, 1.0]), 100) == 2.0


def test_region_from_relayout_maps_pixels_and_resets():
    r = region_from_relayout({"xaxis.range[0]": 9.5, "xaxis.range[1]": 19.5,
                              "yaxis.range[0]": 4.5, "yaxis.range[1]": -0.5}, 100, 784)
    assert r == (0, 5, 10, 20)
    assert region_from_relayout({"xaxis.autorange": True}, 100, 784) is None
    assert region_from_relayout({"dragmode": "pan"}, 100, 784) is None


# -- heatmap figure ----------------------------------------------------------------------
def test_fc_heatmap_shapes_colours_and_strip():
    tensors = [("fc1.weight", (100, 784)), ("fc1.bias", (100,))]
    plan = plan_layer(tensors)
    fig = layer_heatmap(frames_for(tensors), plan, zmax=2.5, title="fc1")
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert np.asarray(heat[0].z).shape == (100, 784)
    assert np.asarray(heat[1].z).shape == (1, 100)
    ca = fig.layout.coloraxis
    assert ca.cmin == -ca.cmax == -2.5 and ca.cmid == 0
    assert ca.colorscale[0][1] == DIVERGING[0][1] and ca.colorscale[-1][1] == DIVERGING[-1][1]
    assert all(t.coloraxis == "coloraxis" for t in heat)
    assert "fc1.weight[%{y}, %{x}]" in heat[0].hovertemplate
    assert downsample_label(plan) == ""


def test_conv_heatmap_image_shape_and_hover_indices():
    tensors = [("c.weight", (4, 3, 3, 3)), ("c.bias", (4,))]
    plan = plan_layer(tensors)
    fig = layer_heatmap(frames_for(tensors, weights=True), plan)
    img = fig.data[0]
    assert np.asarray(img.z).shape == (4 * 3, 3 * 3)
    cd = np.asarray(img.customdata)
    assert cd.shape == (12, 9, 5)  # o, i, kh, kw, weight
    assert cd[5, 7, :4].tolist() == [1, 2, 2, 1]
    assert "customdata[4]" in img.hovertemplate  # weight shown when a trajectory exists


def test_a_few_rows_get_whole_number_ticks():
    rows = [("emb.weight", (4, 1024))]
    fig = layer_heatmap(frames_for(rows), plan_layer(rows))
    assert fig.layout.yaxis.dtick == 1 and fig.layout.yaxis.tick0 == 0
    fc = [("fc1.weight", (100, 784))]
    assert layer_heatmap(frames_for(fc), plan_layer(fc)).layout.yaxis.dtick is None
    from lcaviz.figures.heatmap_axes import heatmap_axes  # what the browser's player draws

    assert heatmap_axes(plan_layer(rows)).layout.yaxis.dtick == 1
    assert heatmap_axes(plan_layer(fc)).layout.yaxis.dtick is None


def test_heads_are_blocks_with_one_labelled_tick_and_a_line_between_each():
    from lcaviz.figures.heatmap_axes import heatmap_axes

    heads = [("attn.q.weight", (4, 64, 16))]  # (heads, d_model, d_head)
    fig = layer_heatmap(frames_for(heads), plan_layer(heads))
    assert np.asarray(fig.data[0].z).shape == (64, 64)
    for f in (fig, heatmap_axes(plan_layer(heads))):
        assert list(f.layout.xaxis.ticktext) == ["0", "1", "2", "3"]
        assert list(f.layout.xaxis.tickvals) == [7.5, 23.5, 39.5, 55.5]  # block centres
        lines = [t for t in f.data if getattr(t, "mode", None) == "lines"]
        assert len(lines) == 1 and sorted({x for x in lines[0].x if x is not None}) == [
            15.5, 31.5, 47.5]  # three lines between four heads
    one = heatmap_axes(plan_layer(heads, region=(0, 64, 32, 48)))  # zoomed into head 2
    assert list(one.layout.xaxis.tickvals) == [32, 34, 36, 38, 40, 42, 44, 46]
    assert list(one.layout.xaxis.ticktext) == ["0", "2", "4", "6", "8", "10", "12", "14"]


def test_per_frame_range_is_symmetric():
    tensors = [("w", (10, 10))]
    fig = layer_heatmap(frames_for(tensors), plan_layer(tensors), zmax=None)
    assert fig.layout.coloraxis.cmin == -fig.layout.coloraxis.cmax > -np.inf
    assert fig.layout.coloraxis.cmax > 0


def test_large_layer_is_block_summed_exactly():
    tensors = [("big.weight", (1000, 1000))]
    plan = plan_layer(tensors)
    by, bx = plan[0]["by"], plan[0]["bx"]
    assert (by, bx) != (1, 1)
    f = frames_for(tensors)
    z = panel_values(plan[0], f[0].values)
    assert z.size <= 250_000
    assert np.isclose(z.sum(), f[0].values.astype(np.float64).sum())
    fig = layer_heatmap(f, plan, title="big")
    assert "block sums" in fig.layout.title.text
    assert fig.data[0].dx == bx and fig.data[0].dy == by
    full = plan_layer(tensors, full_resolution=True)
    assert (full[0]["by"], full[0]["bx"]) == (1, 1)


def test_zoom_region_crops_full_resolution_coordinates():
    tensors = [("w", (100, 784))]
    plan = plan_layer(tensors, region=(10, 20, 100, 150))
    p = plan[0]
    assert (p["r0"], p["c0"], p["nrows"], p["ncols"]) == (10, 100, 10, 50)
    v = np.arange(100 * 784, dtype=np.float64)
    z = panel_values(p, v)
    assert z[0, 0] == 10 * 784 + 100
    fig = layer_heatmap([TensorFrame("w", (100, 784), v)], plan)
    assert fig.data[0].x0 == 100 and fig.data[0].y0 == 10


def test_click_maps_back_to_parameter():
    tensors = [("c.weight", (4, 3, 3, 3)), ("c.bias", (4,))]
    plan = plan_layer(tensors)
    offsets = [1000, 1000 + 108]
    hit = click_to_param(plan, offsets, {"points": [{"x": 7, "y": 5, "curveNumber": 0}]})
    assert hit["tensor"] == "c.weight" and hit["index"] == [1, 2, 2, 1]
    assert hit["flat"] == 1000 + flat_index((4, 3, 3, 3), (1, 2, 2, 1))
    # the conv grid-line trace sits between image and strip
    hit = click_to_param(plan, offsets, {"points": [{"x": 3, "y": 0, "curveNumber": 2}]})
    assert hit == {"tensor": "c.bias", "index": [3], "flat": 1000 + 108 + 3, "block": False}
    assert click_to_param(plan, offsets, None) is None


def test_click_on_a_head_block_maps_to_its_parameter():
    tensors = [("attn.q.weight", (4, 8, 3)), ("attn.b", (5,))]  # (heads, d_in, d_out)
    plan = plan_layer(tensors)
    fig = layer_heatmap(frames_for(tensors), plan)
    assert [type(t).__name__ for t in fig.data] == ["Heatmap", "Scatter", "Heatmap"]
    hit = click_to_param(plan, [0, 96], {"points": [{"x": 7, "y": 5, "curveNumber": 0}]})
    assert hit["index"] == [2, 5, 1] and hit["flat"] == 2 * 24 + 5 * 3 + 1  # head 2, row 5
    hit = click_to_param(plan, [0, 96], {"points": [{"x": 4, "y": 0, "curveNumber": 2}]})
    assert hit["tensor"] == "attn.b" and hit["flat"] == 100  # past the head grid lines


# -- curves and the paper's figures --------------------------------------------------------
def test_decimate_keeps_extremes():
    y = np.zeros(100_000)
    y[12_345] = 5.0
    y[54_321] = -3.0
    x, d = curves.decimate(np.arange(y.size), y, 1000)
    assert len(d) <= 1000 and d.max() == 5.0 and d.min() == -3.0
    assert 12_345 in x


def test_loss_and_residual_figures():
    fig = curves.loss_figure(np.linspace(2, 0.1, 11), loss_val=np.linspace(2, 0.2, 11),
                             loss_minibatch=np.linspace(2, 0, 10), t_marker=4)
    assert len(fig.data) == 3 and all(t.type == "scatter" for t in fig.data)
    assert fig.layout.shapes[0].x0 == 4  # the time marker is always shapes[0]
    r = curves.residual_figure(np.array([1e-8, -1e-6, 0.0]), log_abs=True)
    assert r.layout.yaxis.type == "log"


def test_layer_curves_and_bars():
    a = RNG.normal(size=(50, 3))
    fig = curves.layer_curves_figure(a, ["a", "b", "c"], cumulative=True, t_marker=10)
    assert len(fig.data) == 3
    assert np.allclose(fig.data[1].y, np.cumsum(a[:, 1]))
    assert fig.data[2].line.color == layer_color(2)
    bars = curves.layer_bars_figure(np.array([-2.0, 1.0]), np.array([4, 2]), ["a", "b"],
                                    per_param=True)
    assert bars.data[0].type == "bar" and list(bars.data[0].y) == [-0.5, 0.5]


def test_param_drill_with_and_without_weights():
    windows = np.array([[0, 1], [1, 2], [2, 4], [4, 8], [8, 9]])  # dense, then wider rows
    fig = curves.param_drill_figure(windows, np.array([-1.0, 1, -2, 0, 2]), name="w[0]")
    assert len(fig.data) == 2 and "their mean" in fig.layout.annotations[0].text
    assert np.allclose(fig.data[0].y, [-1, 1, -1, 0, 2])  # per iteration: -2 over 2 its
    assert np.allclose(fig.data[0].width, [1, 1, 2, 4, 1])
    assert np.allclose(fig.data[0].x, [0, 1, 2.5, 5.5, 8])
    assert np.allclose(fig.data[1].x, [1, 2, 4, 8, 9])  # exact totals at each row's end
    assert np.allclose(fig.data[1].y, [-1, 0, -2, -2, 0])
    fig = curves.param_drill_figure(np.stack([np.arange(5), np.arange(1, 6)], 1), np.ones(5),
                                    name="w[0]", weights=np.arange(6.0))
    assert len(fig.data) == 3 and fig.layout.annotations[0].text == "LCA per iteration"


def test_helping_figures():
    h, u = np.full(20, 55.0), np.full(20, 35.0)
    fig = helping.help_hurt_time_figure(h, u, loss=np.linspace(1, 0, 21))
    assert [t.name for t in fig.data[:3]] == ["helping", "zero", "hurting"]
    assert np.allclose(fig.data[1].y, 10.0)
    assert fig.data[3].yaxis == "y2"
    edges = np.linspace(-1, 0, 5)
    fig = helping.help_hurt_hist_figure((np.ones(4), edges), (np.ones(4), -edges[::-1]))
    assert len(fig.data) == 2 and fig.data[0].x[0] < 0 < fig.data[1].x[0]
    fig = helping.help_per_layer_figure(np.array([51.0, 49.0]), ["a", "b"])
    assert list(fig.data[0].y) == [51.0, 49.0]
    fig = helping.help_fraction_hist_figure(np.arange(10), np.linspace(0, 1, 11))
    assert fig.data[0].type == "bar"


def test_weibull_pdf_and_figure():
    x = np.linspace(0.01, 5, 2000)
    pdf = weibull.weibull_pdf(x, 1.0, 1.0)
    assert np.allclose(pdf, np.exp(-x))
    edges = np.geomspace(1e-3, 10, 20)
    fig = weibull.weibull_figure([{"name": "helping", "counts": np.ones(19), "edges": edges,
                                   "k": 0.6, "lam": 0.5, "ks": 0.01}])
    names = [t.name for t in fig.data]
    assert any("k=0.6" in n and "λ=0.5" in n and "KS=0.01" in n for n in names)
    assert fig.layout.xaxis.type == "log"


def test_synchrony_figures():
    T, L = 60, 3
    curves_ = RNG.normal(size=(T, L))
    peaks = [np.array([5, 20, 40]), np.array([5, 21, 40]), np.array([5, 40])]
    fig = synchrony.class_peaks_figure(curves_, ["a", "b", "c"], peaks, np.array([5, 40]),
                                       class_name="3", k=3)
    assert "2 aligned" in fig.layout.title.text
    marks = [t for t in fig.data if t.name in (synchrony.PEAK_LABEL, synchrony.ALIGNED_LABEL)]
    assert len(marks) == 2 * L  # plain and aligned peaks of each layer
    assert sum(len(t.x) for t in marks) == sum(len(p) for p in peaks)
    assert len(fig.layout.shapes) == 2  # one band per aligned moment
    test = synchrony.shift_test_figure(np.array([0, 1, 1, 2]), 7, 0.001)
    assert test.data[0].type == "histogram" and "p = 0.001" in test.layout.title.text


def test_compare_figures_and_empty():
    fig = compare.overlay_figure([("a", np.arange(3), np.ones(3)), ("b", np.arange(4),
                                                                     np.zeros(4))],
                                 title="t", xlabel="x", ylabel="y", marker=1)
    assert len(fig.data) == 2 and fig.data[0].line.color != fig.data[1].line.color
    bars = compare.layer_totals_figure([("a", ["l1", "l2"], np.array([1.0, 2.0])),
                                        ("b", ["l2", "l3"], np.array([3.0, 4.0]))])
    assert list(bars.data[0].x) == ["l1", "l2", "l3"]
    assert np.isnan(bars.data[0].y[2])
    assert isinstance(empty_figure("x"), go.Figure)
