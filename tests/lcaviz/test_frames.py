"""The player's frames (``/lcaviz/frames``) are exactly what the server-side heatmap shows:
same plan, same block sums, same cumulative and window sums, for every mode and zoom."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lcaviz.app import create_app, get_state
from lcaviz.app.frames import frame_block, plan_items, stream_descriptor
from lcaviz.app.queries import _layer_values, layer_tensors, split_frames
from lcaviz.bundle import RunBundle
from lcaviz.bundle.synthetic import write_synthetic_bundle
from lcaviz.figures.heatmap import panel_values
from tests.e2e.runs_fixture import make_runs_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = make_runs_dir(tmp_path_factory.mktemp("frames"))
    # a layer too large for full resolution (block sums) and a dense-then-windowed schedule
    write_synthetic_bundle(root / "big.h5", n_iters=12, layers=(("big", (600, 500)),),
                           n_classes=3, stride="dense:5,3", per_class=False, seed=4)
    return root


@pytest.fixture(scope="module")
def state(runs):
    return get_state(create_app(runs))


def _expected(b, layer, plan, r, mode, window):
    """The heatmap figure's values for frame ``r`` (the path exports take)."""
    values = _layer_values(b, layer, r, mode, window)
    frames = split_frames(layer_tensors(b, layer), plan, values, None)
    return np.concatenate([panel_values(p, f.values).ravel() for p, f in zip(plan, frames,
                                                                              strict=True)])


@pytest.mark.parametrize("run, layer", [("fc.h5", 0), ("fc.h5", 1), ("nested/conv.h5", 0),
                                        ("big.h5", 0)])
@pytest.mark.parametrize("mode, window", [("row", 1), ("cumulative", 1), ("window", 3),
                                          ("window", 40)])
@pytest.mark.parametrize("zoom", [None, [2, 9, 3, 11]])
def test_frames_equal_the_server_heatmap(runs, run, layer, mode, window, zoom):
    with RunBundle.open(runs / run) as b:
        plan = plan_items(b, layer, "auto", zoom)
        R = b.n_rows
        r0, r1 = (1, R - 1) if R > 3 else (0, R)
        header, values = frame_block(b, layer, plan, mode, window, r0, r1, percentile=True)
        assert values.shape == (r1 - r0, sum(p["ny"] * p["nx"] for p in plan))
        assert values.dtype == np.float32
        for k, r in enumerate(range(r0, r1)):
            want = _expected(b, layer, plan, r, mode, window)
            np.testing.assert_allclose(values[k], want, rtol=2e-6,
                                       atol=1e-6 * np.abs(want).max() + 1e-30)
            # the layer's exact total of the frame, from the float64 per-iteration aggregates
            a, e = (0 if mode == "cumulative" else max(0, r - window + 1)
                    if mode == "window" else r), r + 1
            t0, t1 = b.row_windows[a, 0], b.row_windows[e - 1, 1]
            assert header["totals"][k] == pytest.approx(b.lca_layer()[t0:t1, layer].sum(),
                                                        rel=1e-12, abs=1e-15)
        if run == "big.h5":
            assert zoom is not None or plan[0]["by"] > 1  # block sums unless zoomed in


def test_stream_descriptor(state):
    s = stream_descriptor(state, "nested/conv.h5", 0, "row", 1, "fixed", "auto", None)
    assert s["starts"] == list(range(0, 30, 3)) and s["R"] == 10 and s["T"] == 30
    assert s["n_cells"] == sum(p["ny"] * p["nx"] for p in s["items"]) and s["zmax"] > 0
    assert s["has_rows"] and s["url"].startswith("/lcaviz/frames?run=nested%2Fconv.h5&")
    again = stream_descriptor(state, "nested/conv.h5", 0, "row", 1, "frame", "auto", None)
    assert again["zmax"] is None and again["key"] == s["key"]  # same frames, other range
    json.dumps(s)  # it travels through a dcc.Store


def test_frames_route(state, runs):
    client = state_client(state)
    s = stream_descriptor(state, "fc.h5", 0, "window", 4, "frame", "auto", None)
    r = client.get(s["url"] + "&r0=5&r1=9&pct=1")
    assert r.status_code == 200 and r.mimetype == "application/octet-stream"
    body = r.data
    n = int.from_bytes(body[:4], "little")
    head = json.loads(body[4:4 + n])
    vals = np.frombuffer(body[4 + n:], "<f4").reshape(head["r1"] - head["r0"], -1)
    assert (head["r0"], head["r1"], head["n_cells"]) == (5, 9, s["n_cells"])
    assert len(head["zmax"]) == 4 and all(z > 0 for z in head["zmax"])
    with RunBundle.open(runs / "fc.h5") as b:
        np.testing.assert_allclose(vals[2], _expected(b, 0, s["items"], 7, "window", 4),
                                   rtol=2e-6, atol=1e-12)
    bad = {"run=..%2F..%2Fetc%2Fpasswd": 400, "run=fc.h5&layer=9": 400,
           "run=fc.h5&mode=sideways": 400, "run=fc.h5&r0=60&r1=70": 400,
           "run=corrupt.h5": 404, "run=fc.h5&region=1,2": 400}
    for query, status in bad.items():
        resp = client.get(f"/lcaviz/frames?{query}")
        assert resp.status_code == status, (query, resp.data[:200])
        assert b"Traceback" not in resp.data


def test_frames_route_caps_a_block(state, monkeypatch):
    from lcaviz.app import frames

    monkeypatch.setattr(frames, "MAX_BLOCK_BYTES", 4 * 700 * 3)  # three frames of fc1
    client = state_client(state)
    r = client.get("/lcaviz/frames?run=fc.h5&layer=0&r0=0&r1=50")
    n = int.from_bytes(r.data[:4], "little")
    head = json.loads(r.data[4:4 + n])
    assert head["r1"] - head["r0"] == 3  # the browser asks again for the rest


def state_client(state):
    from flask import Flask

    from lcaviz.app.frames import register_route

    app = Flask(__name__)
    register_route(app, state)
    return app.test_client()


def test_server_heatmap_titles_follow_the_row_windows(state):
    """Exports and the HTML report name a row's iterations from ``lca_rows`` (any schedule)."""
    from lcaviz.app.pages.run_views import Controls, heatmap

    for row, when in ((3, "iteration 3"), (5, "iterations 5–7"), (6, "iterations 8–10")):
        fig = heatmap(state, Controls.from_dict({"run_id": "big.h5", "row": row}))[0]
        assert fig.layout.title.text.startswith(f"big — LCA at {when}"), fig.layout.title.text
