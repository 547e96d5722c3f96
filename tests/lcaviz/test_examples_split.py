"""The Examples section with validation examples, group / head scopes and the player's window
(contract 24b), server side and without a browser: menus, streams, blocks, the route, the
detail and exports, and a hostile bundle beside a good one."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from lcaviz.app import create_app, get_state
from lcaviz.app import examples as exdata
from lcaviz.app.examples_scope import head_columns, scope_options, scope_source, split_options
from lcaviz.app.pages import run_examples
from lcaviz.app.pages.run_views import Controls
from lcaviz.bundle.synthetic import write_synthetic_bundle

LAYERS = (("fc1", (12, 16)), ("fc2", (6, 12)), ("fc3", (3, 6)))
R = 40  # one row per iteration: blocks of 32 rows (16 with a window)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("split")
    kw = dict(n_iters=R, layers=LAYERS, n_classes=3, per_class=False, examples=90)
    write_synthetic_bundle(d / "vg.h5", seed=3, val_lca=True, val_examples=50, heads=2, **kw)
    write_synthetic_bundle(d / "train.h5", seed=4, **kw)
    # groups but per-example values per layer only (a bundle of format 3)
    shutil.copy(d / "vg.h5", d / "layers_only.h5")
    with h5py.File(d / "layers_only.h5", "r+") as f:
        for name in [n for n in f if "example_group" in n] + ["examples/groups"]:
            del f[name]
    shutil.copy(d / "vg.h5", d / "hostile.h5")
    with h5py.File(d / "hostile.h5", "r+") as f:
        del f["lca_val_example"]
        f["lca_val_example"] = np.zeros((R, 50, 2), np.float32)  # 2 layers, not 3
    return d


@pytest.fixture(scope="module")
def app(runs):
    return create_app(runs)


def _neg(v, k):
    o = np.argsort(v, kind="stable")[:k]
    return o[v[o] < 0].tolist()


def test_menus_offer_the_split_groups_and_heads_and_say_why_not_the_rest(app):
    state = get_state(app)
    b, _ = state.open("vg.h5")
    assert [o["value"] for o in split_options(b)] == ["train", "val"]
    opts = {o["value"]: o for o in scope_options(b, "train")}
    assert opts["head:fc1.head1"]["label"] == "head 1 of fc1 (q + k)"
    assert not opts["group:fc2.k.head0"].get("disabled")
    assert opts["group:fc3"]["disabled"] and "whole layer" in opts["group:fc3"]["label"]
    assert {k for k in opts if k.startswith("head:")} == {
        "head:fc1.head0", "head:fc1.head1", "head:fc2.head0", "head:fc2.head1"}
    assert head_columns(b.example_group_names)["fc2.head1"][3] == [5, 7]
    assert [o["value"] for o in scope_options(b, "val")] == list(opts)
    flat, _ = state.open("layers_only.h5")
    assert flat.has_groups and not flat.has_example_groups
    fopts = scope_options(flat, "train")
    assert all(o.get("disabled") for o in fopts if o["value"].startswith("group:"))
    assert not any(o["value"].startswith("head:") for o in fopts)
    with pytest.raises(ValueError, match="unknown examples scope"):
        scope_source(flat, "head:fc1.head0")
    one, _ = state.open("train.h5")
    assert split_options(one) == []
    style, options = run_examples.section_state(state, "vg.h5", {"R": R}, "val")
    assert style == {} and any(o["value"] == "group:fc1.q.head0" for o in options)
    assert run_examples.section_state(state, "train.h5", {"R": R}, "val")[0] == {}
    assert run_examples.split_state(state, "vg.h5", {"R": R}) == ({}, "train")
    assert run_examples.split_state(state, "train.h5", {"R": R})[0] == {"display": "none"}
    assert run_examples._scope_kept(fopts, "group:fc1.q.head0") == "all"


@pytest.mark.parametrize("split, scope, cols, by", [
    ("val", "layer:2", [2], "layer"), ("val", "all", [0, 1, 2], "layer"),
    ("train", "group:fc2.q.head1", [5], "group"), ("val", "head:fc1.head0", [0, 2], "group")])
def test_blocks_rank_the_split_and_scope_asked_for(app, split, scope, cols, by):
    state = get_state(app)
    b, _ = state.open("vg.h5")
    blk = exdata.examples_block(b, scope, 4, 3, 9, split)
    rows = b.example_lca_rows(slice(0, 9), split=split, by=by)[..., cols].sum(-1)
    n = 50 if split == "val" else 90
    for i, f in enumerate(blk["frames"]):
        row, cum = rows[3 + i], rows[:4 + i].sum(0)
        assert f["row"]["helped"] == _neg(row, 4) and f["row"]["hurt"] == _neg(-row, 4)
        assert f["cumulative"]["helped"] == _neg(cum, 4)
        assert np.sum(f["hist"]["row"]["counts"]) == n and "window" not in f
    shown = {int(p) for p in blk["examples"]}
    labels = b.example_labels(split=split)
    p = min(shown)
    assert blk["examples"][str(p)]["index"] == int(b.example_index(split=split)[p])
    assert blk["examples"][str(p)]["caption"].endswith(f" · {labels[p]}")
    assert blk["split"] == split


@pytest.mark.parametrize("W, r0, r1", [(3, 0, 8), (3, 20, 36), (25, 30, 40), (60, 5, 12)])
def test_window_frames_rank_the_sum_of_the_last_W_rows(app, W, r0, r1):
    state = get_state(app)
    b, _ = state.open("vg.h5")
    blk = exdata.examples_block(b, "layer:0", 5, r0, r1, "val", W)
    rows = b.example_lca_rows(split="val")[..., 0]
    for i, f in enumerate(blk["frames"]):
        r = r0 + i
        win = rows[max(0, r - W + 1):r + 1].sum(0)
        assert f["window"]["helped"] == _neg(win, 5), (W, r)
        assert f["window"]["hurt"] == _neg(-win, 5)
        # a difference of two running totals (float32 of the exact sums, ~6e-8 relative)
        np.testing.assert_allclose(f["window"]["helped_values"], win[_neg(win, 5)],
                                   rtol=1e-6, atol=1e-9)
        assert f["row"]["helped"] == _neg(rows[r], 5)  # the row lists stay
        assert np.sum(f["hist"]["window"]["counts"]) == 50
    named = {p for f in blk["frames"] for t in ("window",) for kind in ("helped", "hurt")
             for p in f[t][kind]}
    assert named <= {int(p) for p in blk["examples"]}


def test_streams_and_the_route_carry_split_and_window(app):
    state = get_state(app)
    row = run_examples.stream(state, "vg.h5", {"R": R}, "head:fc1.head0", 4, "val", "row", 7)
    win = run_examples.stream(state, "vg.h5", {"R": R}, "head:fc1.head0", 4, "val", "window",
                              7)
    assert (row["split"], row["window"], win["window"]) == ("val", 1, 7)
    assert row["n_examples"] == 50 and row["scope_name"] == "head 0 of fc1"
    assert row["key"] != win["key"] and win["block"] == row["block"] == 32
    from types import SimpleNamespace  # MNIST's 55,000 examples: the read budget binds

    big = SimpleNamespace(n_examples=55_000, n_val_examples=5_000, n_layers=3,
                          example_group_names=["h"] * 12)
    assert exdata.rows_per_block(big) == 25 and exdata.rows_per_block(big, window=7) == 12
    assert exdata.rows_per_block(big, "val", "group") == 32
    assert "error" in run_examples.stream(state, "train.h5", {"R": R}, "all", 4, "val")
    client = app.server.test_client()
    got = client.get(f"{win['url']}&r0=0&r1=999")
    assert got.status_code == 200
    body = json.loads(got.data)
    assert body["r1"] == win["block"] and body["window"] == 7 and body["split"] == "val"
    assert "window" in body["frames"][0]
    for q in ("run=train.h5&scope=all&split=val", "run=vg.h5&scope=all&split=<b>x</b>",
              "run=vg.h5&scope=head:<b>x</b>&split=val", "run=layers_only.h5&scope=head:"
                                                          "fc1.head0"):
        bad = client.get(f"{exdata.ROUTE}?{q}&k=4")
        assert bad.status_code == 400, q
        assert b"<b>" not in bad.data
    plain = client.get(f"{exdata.ROUTE}?run=vg.h5&scope=all&k=4&window=zz")
    assert plain.status_code == 200 and json.loads(plain.data)["window"] == 1


def test_detail_and_exports_follow_the_split_and_window(app):
    state = get_state(app)
    fig = run_examples.detail(state, "vg.h5", {"pos": 3, "split": "val"})
    assert fig.layout.title.text.startswith("Example validation #")
    b, _ = state.open("vg.h5")
    want = b.example_lca_rows(split="val")[:, 3, :].sum(1)
    assert np.allclose(np.asarray(fig.data[-1].y)[-1], want.sum(), rtol=1e-6)
    c = Controls.from_dict({"run_id": "vg.h5", "row": 12, "mode": "window", "window": 4,
                            "ex_scope": "group:fc1.k.head1", "ex_split": "val",
                            "ex_hist_mode": "row"})
    hist = run_examples.build(state, run_examples.ids.EX_HIST, c)
    assert "sum of the last 4 rows" in hist.layout.title.text
    assert "validation examples" in hist.layout.title.text
    v = run_examples._frame_values(b, "group:fc1.k.head1", 12, "row", "val", 4)
    np.testing.assert_allclose(v, b.example_lca_rows(slice(9, 13), split="val",
                                                     by="group")[..., 3].sum(0))
    assert sum(sum(t.y) for t in hist.data) == 50
    grid = run_examples.build(state, run_examples.ids.EX_GRID, c)
    assert "iterations 9–12" in grid.layout.title.text


def test_a_hostile_validation_set_is_refused_and_the_app_keeps_serving(app):
    state = get_state(app)
    assert run_examples.section_state(state, "hostile.h5", {"R": R})[0] == {"display": "none"}
    err = run_examples.stream(state, "hostile.h5", {"R": R}, "all", 4, "val")
    assert "lca_val_example is (40, 50, 2), expected (R, N_e, 3)" in err["error"]
    client = app.server.test_client()
    assert client.get(f"{exdata.ROUTE}?run=hostile.h5&scope=all&k=4").status_code == 404
    ok = client.get(f"{exdata.ROUTE}?run=vg.h5&scope=all&k=4&split=val")
    assert ok.status_code == 200


def test_compare_follows_a_validation_example_across_runs(app):
    from lcaviz.app.pages import compare_examples

    state = get_state(app)
    assert compare_examples.split_style(state, ["train.h5", "vg.h5"]) == {}
    assert compare_examples.split_style(state, ["train.h5"]) == {"display": "none"}
    fig = compare_examples.example_across_runs(state, ["vg.h5", "train.h5"], 7, "iteration",
                                               "val")
    cum = [t for t in fig.data if t.name == "vg.h5"]
    b, _ = state.open("vg.h5")
    want = b.example_lca_rows(None, sel=[7], split="val")[:, 0, :].sum()
    assert len(cum) == 1 and cum[0].y[-1] == pytest.approx(want, rel=1e-12)
    assert "validation #7" in fig.layout.title.text
    assert "not tracked by train.h5" in fig.layout.title.text
    train = compare_examples.example_across_runs(state, ["vg.h5"], 7, "iteration")
    assert train.layout.title.text != fig.layout.title.text


def test_a_users_renderer_is_told_the_split(app):
    import lcaviz
    from lcaviz.figures import example_render

    seen = []

    def mine(example):
        seen.append((example.run["split"], example.index))
        return None

    lcaviz.register_example_renderer(mine)
    try:
        b, _ = get_state(app).open("vg.h5")
        exdata.renderings(b, [3], "val")
        exdata.renderings(b, [3], "train")
    finally:
        example_render.unregister_example_renderer(mine)
    assert seen == [("val", int(b.example_index(split="val")[3])),
                    ("train", int(b.example_index()[3]))]
