"""The run page's Examples section and the compare page's example (issue 24 item 4), server side:
the stream and block callbacks against a synthetic bundle with per-example LCA, the route,
exports, escaping and runs without examples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lcaviz.app import create_app, get_state, ids
from lcaviz.app import examples as exdata
from lcaviz.app.pages import compare_examples, run_examples
from lcaviz.app.pages.run_views import Controls
from lcaviz.bundle import RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle

LAYERS = (("fc1", (12, 16)), ("fc2", (3, 12)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("examples")
    kw = dict(n_iters=40, layers=LAYERS, n_classes=3, per_class=False, examples=120)
    write_synthetic_bundle(d / "img.h5", seed=0, thumbnail=8, stride=2, **kw)
    write_synthetic_bundle(d / "text.h5", seed=1, example_text=True, thumbnail=0,
                           tracked_examples=60, **kw)
    write_synthetic_bundle(d / "plain.h5", n_iters=10, layers=LAYERS, n_classes=3, seed=2,
                           per_class=False)
    return d


@pytest.fixture(scope="module")
def app(runs):
    return create_app(runs)


def _want_top(b, r: int, cols, k: int):
    rows = b.example_lca_rows(slice(0, r + 1))[..., cols].sum(-1)
    row, cum = rows[-1], rows.sum(0)

    def neg(v):  # the k most negative, only those below 0 (helped)
        o = np.argsort(v, kind="stable")[:k]
        return o[v[o] < 0]

    return neg(row), neg(-row), neg(cum), neg(-cum)


def test_block_holds_the_top_k_of_each_row_and_up_to_it(app, runs):
    state = get_state(app)
    s = run_examples.stream(state, "img.h5", {"R": 20}, "layer:1", 5)
    assert s["R"] == 20 and s["k"] == 5 and s["n_examples"] == 120
    assert s["url"].startswith(exdata.ROUTE) and s["scope_name"] == "fc2"
    b, _ = state.open("img.h5")
    blk = exdata.examples_block(b, "layer:1", 5, 3, 9)
    assert [blk["r0"], blk["r1"], len(blk["frames"])] == [3, 9, 6]
    for i, f in enumerate(blk["frames"]):
        helped, hurt, chelped, churt = _want_top(b, 3 + i, [1], 5)
        assert f["row"]["helped"] == helped.tolist() and f["row"]["hurt"] == hurt.tolist()
        assert f["cumulative"]["helped"] == chelped.tolist()
        assert f["cumulative"]["hurt"] == churt.tolist()
        assert np.sum(f["hist"]["row"]["counts"]) == 120  # every example once, by class
        assert len(f["hist"]["row"]["counts"]) == 3
    named = {p for f in blk["frames"] for t in ("row", "cumulative")
             for kind in ("helped", "hurt") for p in f[t][kind]}
    assert set(map(int, blk["examples"])) == named  # every example shown is rendered
    one = blk["examples"][str(min(named))]
    assert one["kind"] == "image" and one["src"].startswith("data:image/png;base64,")
    assert one["index"] == int(b.example_index()[min(named)])


def test_route_answers_one_bounded_block_and_refuses_bad_input(app):
    client = app.server.test_client()
    ok = client.get(f"{exdata.ROUTE}?run=img.h5&scope=all&k=4&r0=0&r1=999")
    assert ok.status_code == 200
    body = json.loads(ok.data)
    assert body["r0"] == 0 and body["r1"] == 20  # clipped to the run (and to one block)
    assert len(body["frames"][0]["row"]["helped"]) <= 4
    for q, code in (("run=plain.h5&scope=all", 400), ("run=img.h5&scope=layer:9", 400),
                    ("run=../img.h5&scope=all", 400), ("run=img.h5&scope=all&r0=20", 400),
                    ("run=img.h5&scope=<b>x</b>", 400)):
        got = client.get(f"{exdata.ROUTE}?{q}&k=4")
        assert got.status_code == code, q
        assert b"<b>" not in got.data


def test_text_examples_and_the_section_state(app):
    state = get_state(app)
    style, options = run_examples.section_state(state, "text.h5", {"R": 40})
    assert style == {} and [o["value"] for o in options] == ["all", "layer:0", "layer:1"]
    assert run_examples.section_state(state, "plain.h5", {"R": 10})[0] == {"display": "none"}
    assert run_examples.stream(state, "plain.h5", {"R": 10}, "all", 8) is None
    assert "error" in run_examples.stream(state, "text.h5", {"R": 40}, "layer:7", 8)
    b, _ = state.open("text.h5")
    blk = exdata.examples_block(b, "all", 3, 0, 2)
    ex = next(iter(blk["examples"].values()))
    assert ex["kind"] == "text" and "(mod 3)" in ex["text"]


def test_detail_and_exports_of_the_section(app, runs):
    state = get_state(app)
    with RunBundle.open(runs / "img.h5") as b:
        rows = b.example_lca_rows(None, sel=[7])[:, 0, :]
        idx = int(b.example_index()[7])
    fig = run_examples.detail(state, "img.h5", {"pos": 7, "index": idx})
    total = [t for t in fig.data if t.name == "all layers"][0]
    np.testing.assert_allclose(total.y, np.cumsum([0, *rows.sum(1)]), rtol=1e-12, atol=0)
    assert f"#{idx}" in fig.layout.title.text
    c = Controls.from_dict({"run_id": "img.h5", "row": 4, "ex_scope": "all", "ex_k": 3,
                            "ex_selected": {"pos": 7}})
    from lcaviz.app.pages.run_exports import build_figure, export_context
    from lcaviz.figures.export import figure_csv

    grid = build_figure(state, ids.EX_GRID, c)
    b, _ = state.open("img.h5")
    helped = exdata.examples_block(b, "all", 3, 4, 5)["frames"][0]["row"]["helped"]
    first = [t for t in grid.data if t.name == "this frame · helped most"][0]
    assert list(first.x) == [int(b.example_index()[p]) for p in helped]
    hist = build_figure(state, ids.EX_HIST, c)
    assert sum(sum(t.y) for t in hist.data) == 120
    csv = figure_csv(build_figure(state, ids.EX_DETAIL, c), export_context(state, ids.EX_DETAIL,
                                                                            c))
    assert "all layers" in csv and "nats" in csv


def test_compare_follows_one_example_across_runs(app):
    state = get_state(app)
    style, index, note = compare_examples.section_state(state, ["img.h5", "text.h5"])
    with RunBundle.open(state.runs_dir / "text.h5") as b:
        assert index == int(b.example_index().min())  # text.h5 tracks a subset
    assert style == {} and "tracked by all 2" in note
    fig = compare_examples.example_across_runs(state, ["img.h5", "text.h5", "plain.h5"], index,
                                               "fraction")
    cum = [t for t in fig.data if t.name in ("img.h5", "text.h5")]
    assert len(cum) == 2 and max(cum[0].x) == pytest.approx(1.0)
    assert cum[0].x[0] == 0 and cum[0].y[0] == 0  # the running total starts at 0
    with RunBundle.open(state.runs_dir / "img.h5") as b:
        p = int(np.flatnonzero(b.example_index() == index)[0])
        want = b.example_lca_rows(None, sel=[p])[:, 0, :].sum()
    assert cum[0].y[-1] == pytest.approx(want, rel=1e-12)
    assert "not tracked by plain.h5" in fig.layout.title.text
    assert compare_examples.section_state(state, ["plain.h5"])[0] == {"display": "none"}


def test_the_sections_are_wired_into_the_run_and_compare_pages(app):
    from lcaviz.app.pages.run import panels

    outputs = " ".join(app.callback_map)
    for out in ("run-ex-stream.data", "run-ex-detail.figure", "sec-examples.style",
                "cmp-example.figure", "cmp-sec-examples.style"):
        assert out in outputs, out
    assert any(p.id == "sec-examples" for p in panels())
    from lcaviz.app.pages.run_exports import CONTROL_STATES

    assert {"ex_scope", "ex_k", "ex_selected"} <= {name for name, _, _ in CONTROL_STATES}


def test_crafted_labels_and_big_images_stay_bounded(tmp_path):
    """Labels far past the classes and 1000-pixel images from a bundle: the histogram names
    at most MAX_CLASSES stacks (the rest "other labels") and the page gets small images."""
    import h5py

    write_synthetic_bundle(tmp_path / "x.h5", n_iters=6, layers=(("fc1", (3, 4)),),
                           n_classes=3, seed=0, per_class=False, examples=20, thumbnail=8)
    with h5py.File(tmp_path / "x.h5", "r+") as f:
        lab = f["examples/label"][()]
        lab[0] = 10**12
        f["examples/label"][...] = lab
        del f["examples/thumbnail"]
        f["examples"].create_dataset("thumbnail", data=np.zeros((20, 1000, 900), np.uint8))
    with RunBundle.open(tmp_path / "x.h5") as b:
        names = exdata.class_names(b)
        blk = exdata.examples_block(b, "all", 4, 0, 2)
        assert names == ["class 0", "class 1", "class 2"]  # the run's classes, not 10**12
        counts = blk["frames"][0]["hist"]["row"]["counts"]
        assert len(counts) == len(names) + 1 and np.sum(counts) == 20  # "other labels" row
        img = next(iter(blk["examples"].values()))["src"]
        assert len(img) < 40_000
        assert exdata.small_thumbnail(np.zeros((1000, 900))).shape == (112, 100)


def test_html_report_holds_the_examples_figures(app):
    from lcaviz.app.pages.run_exports import CONTROL_STATES, report

    values = [{"row": 3} if name == "row" else "img.h5" if name == "run_id" else None
              for name, _, _ in CONTROL_STATES]
    page = report(get_state(app), values)["content"]
    assert "Examples of all layers" in page and "stacked by class" in page
    plain = [v if name != "run_id" else "plain.h5" for (name, _, _), v in
             zip(CONTROL_STATES, values, strict=True)]
    assert "Examples of" not in report(get_state(app), plain)["content"]


def test_stream_and_detail_callbacks_through_dash(app):
    """Real callback requests: the stream for the scope and k typed, the clicked example."""
    client = app.server.test_client()
    body = {"output": f"{ids.EX_STREAM}.data",
            "outputs": {"id": ids.EX_STREAM, "property": "data"},
            "inputs": [{"id": ids.PANELS_META, "property": "data", "value": {"R": 20}},
                       {"id": ids.EX_SCOPE, "property": "value", "value": "layer:0"},
                       {"id": ids.EX_K, "property": "value", "value": 99},
                       {"id": ids.EX_SPLIT, "property": "value", "value": "train"},
                       {"id": ids.MODE, "property": "value", "value": "window"},
                       {"id": ids.WINDOW, "property": "value", "value": 3}],
            "state": [{"id": ids.RUN_ID, "property": "data", "value": "img.h5"}],
            "changedPropIds": [f"{ids.EX_SCOPE}.value"]}
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code == 200, r.data[:300]
    s = r.get_json()["response"][ids.EX_STREAM]["data"]
    assert (s["scope"], s["scope_name"], s["k"], s["R"]) == ("layer:0", "fc1", 32, 20)
    assert (s["split"], s["window"]) == ("train", 3) and "&window=3" in s["url"]
    body = {"output": f"{ids.EX_DETAIL}.figure",
            "outputs": {"id": ids.EX_DETAIL, "property": "figure"},
            "inputs": [{"id": ids.EX_SELECTED, "property": "data", "value": {"pos": 5}}],
            "state": [{"id": ids.RUN_ID, "property": "data", "value": "img.h5"}],
            "changedPropIds": [f"{ids.EX_SELECTED}.data"]}
    r = client.post("/_dash-update-component", json=body)
    fig = r.get_json()["response"][ids.EX_DETAIL]["figure"]
    assert fig["layout"]["title"]["text"].startswith("Example #")
    assert [t["name"] for t in fig["data"]][-1] == "all layers"
