"""Per-example LCA, the pure parts (issue 24 item 4): top-k, scopes, histograms by class, the
renderers and the figures, on numpy arrays (no bundle, no app)."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest

from lcaviz.analysis import examples as ex
from lcaviz.figures import example_render as er
from lcaviz.figures.examples import (
    example_detail_figure,
    examples_grid_figure,
    examples_histogram_figure,
)


def _brute_top(v: np.ndarray, k: int):
    """The k most negative / most positive by a full sort (ties: lower position first)."""
    idx = sorted(range(len(v)), key=lambda i: (v[i], i))
    helped = [i for i in idx[:k] if v[i] < 0]
    idx = sorted(range(len(v)), key=lambda i: (-v[i], i))
    hurt = [i for i in idx[:k] if v[i] > 0]
    return helped, hurt


@pytest.mark.parametrize("n", [5, 300, 5000])
def test_top_k_equals_a_full_sort_with_ties_and_nans(n):
    rng = np.random.default_rng(n)
    v = np.round(rng.standard_normal(n), 1)  # many ties
    v[rng.integers(0, n, n // 10)] = 0.0
    v[rng.integers(0, n, max(1, n // 50))] = np.nan
    for k in (1, 3, 8, 64):
        got = ex._fast_top_k(v, k)
        helped, hurt = _brute_top(np.where(np.isnan(v), 0.0, v), k)
        assert got.helped.tolist() == helped and got.hurt.tolist() == hurt
        assert np.array_equal(got.helped_values, v[helped])
        assert ex.top_k(v, k).helped.tolist() == helped


def test_top_k_leaves_out_examples_it_did_not_move():
    t = ex.top_k(np.array([0.0, -1.0, 0.0, 2.0]), 3)
    assert t.helped.tolist() == [1] and t.hurt.tolist() == [3]


def test_scopes_select_layers_all_and_groups_and_refuse_the_rest():
    assert ex.scope_columns("all", 3) == [0, 1, 2]
    assert ex.scope_columns("layer:2", 3) == [2]
    assert ex.scope_columns("group:h1", 3, {"h1": [0, 2]}) == [0, 2]
    for bad in ("layer:3", "layer:-1", "group:h1", "<script>", "layer:x"):
        with pytest.raises(ValueError):
            ex.scope_columns(bad, 3)


def test_top_examples_in_each_row_and_cumulatively():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((6, 40, 3))
    before = rng.standard_normal((40, 3))
    got = ex.top_examples(rows, [0, 2], 4, before=before)
    for i, tops in enumerate(got):
        row = rows[i, :, 0] + rows[i, :, 2]
        cum = before[:, 0] + before[:, 2] + (rows[:i + 1, :, 0] + rows[:i + 1, :, 2]).sum(0)
        assert tops["row"].helped.tolist() == list(np.argsort(row)[:4])
        assert tops["cumulative"].hurt.tolist() == list(np.argsort(-cum)[:4])
        np.testing.assert_allclose(tops["cumulative"].hurt_values, np.sort(cum)[::-1][:4],
                                   rtol=1e-12)


def test_class_histogram_counts_every_example_once_per_class():
    rng = np.random.default_rng(1)
    v = rng.standard_normal(500)
    y = rng.integers(0, 4, 500)
    y[:3] = 99  # a label outside the classes: counted apart, not dropped
    edges = ex.histogram_edges(v, 20)
    assert 0.0 in edges and edges[0] == -edges[-1]
    counts = ex.class_histogram(v, y, 4, edges)
    assert counts.shape == (5, 20) and counts.sum() == 500 and counts[4].sum() == 3
    for c in range(4):
        want, _ = np.histogram(v[y == c], edges)
        assert np.array_equal(counts[c], want)
    assert ex.class_histogram(v, None, 4, edges).shape == (1, 20)


def _png_pixels(uri: str, shape):
    raw = base64.b64decode(uri.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    data = zlib.decompress(raw[raw.index(b"IDAT") + 4:raw.index(b"IEND") - 8])
    h, rowlen = shape[0], int(np.prod(shape[1:]))
    rows = [data[i * (rowlen + 1) + 1:(i + 1) * (rowlen + 1)] for i in range(h)]
    return np.frombuffer(b"".join(rows), np.uint8).reshape(shape)


def test_renderers_image_text_caption_and_a_users_own():
    img = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
    r = er.render_example(er.Example(index=7, label=3, thumbnail=img))
    assert r["kind"] == "image" and r["caption"] == "#7 · 3"
    assert np.array_equal(_png_pixels(r["src"], (28, 28)), img)  # lossless
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    assert np.array_equal(_png_pixels(er.data_uri(rgb), (8, 8, 3)), rgb)
    t = er.render_example(er.Example(index=2, text="3 + 4 ≡ 7 (mod 97)"))
    assert t == {"index": 2, "label": None, "caption": "#2", "kind": "text",
                 "text": "3 + 4 ≡ 7 (mod 97)"}
    assert er.render_example(er.Example(index=12, label=1))["text"] == "#12 · 1"

    def mine(e):
        if e.index == 5:
            raise RuntimeError("broken")
        return f"sentence {e.index}" if e.run.get("dataset") == "mine" else None

    er.register_example_renderer(mine)
    try:
        assert er.render_example(er.Example(index=9, run={"dataset": "mine"}))["text"] == \
            "sentence 9"
        assert er.render_example(er.Example(index=9, label=0))["text"] == "#9 · 0"
        broken = er.render_example(er.Example(index=5, label=0, run={"dataset": "mine"}))
        assert broken["text"] == "#5 · 0" and "broken" in broken["error"]
    finally:
        er.unregister_example_renderer(mine)
    import lcaviz

    assert lcaviz.register_example_renderer is er.register_example_renderer


def test_figures_escape_bundle_text_and_carry_their_data():
    from lcaviz.figures.export import figure_csv

    evil = '<img src=x onerror="alert(1)">'
    shown = [er.render_example(er.Example(index=i, text=evil if i == 4 else None, label=i))
             for i in (4, 8)]
    fig = examples_grid_figure([("this frame · helped most", shown, [-2.0, -1.0]),
                                (evil, shown[:1], [3.0])], title="t")
    texts = " ".join(a.text for a in fig.layout.annotations)
    assert "<img" not in texts and "&lt;img" in texts
    csv = figure_csv(fig)
    assert "helped most,4,-2.0" in csv and "8,-1.0" in csv
    hist = examples_histogram_figure(np.linspace(-1, 1, 5), np.array([[1, 2, 3, 4],
                                                                       [0, 1, 0, 1]]),
                                     ["zero", evil])
    assert [t.name for t in hist.data] == ["zero", "&lt;img src=x onerror=\"alert(1)\"&gt;"]
    assert list(hist.data[0].y) == [1, 2, 3, 4] and hist.layout.barmode == "stack"
    w = np.array([[0, 2], [2, 4], [4, 6]])
    det = example_detail_figure(w, np.array([[1.0, -2], [1, -2], [1, -2]]), ["a", evil],
                                loss=np.array([3.0, 2.5, 2.0, 1.0]),
                                loss_x=np.array([0, 2, 4, 6]), name=evil)
    total = [t for t in det.data if t.name == "all layers"][0]
    assert list(total.y) == [0.0, -1.0, -2.0, -3.0] and list(total.x) == [0, 2, 4, 6]
    assert "<img" not in det.layout.title.text
